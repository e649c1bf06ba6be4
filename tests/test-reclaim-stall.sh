#!/bin/bash
# A reclaim, then a stall: s1 (--size auto in a memory cgroup of its
# own, --reclaim-deadline-ms 10000) asks for extents back when a
# process in its cgroup takes memory, and s2 -- where many of those
# copies would move, and which holds other copies -- stalls past
# timeout-ms while the client moves them.  The client moves what it can
# to s3 and gives back at half the deadline what it cannot (degraded
# until s2 is back), never the only good copy of an extent; s1 drops
# nothing at its deadline; once s2 resumes the pool is healthy again,
# and the disk reads back exact, also with s3 killed -9.
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires nbdcopy libnbd-bin
requires python3
source "${srcdir:-.}/memcg.sh"

memcg_pool 10000
# recovery-rate=16M: the moves take seconds, so the stall falls inside
# them even on a slow machine.
memcg_disk timeout-ms=1000 rejoin-grace-ms=500 recovery-rate=16M

memcg_hog 224
asked () { grep -q "asked session .* for .* extent" "$TMP/s1.log"; }
wait_until 30 "s1 to ask for extents back" asked
kill_memserver s2 STOP
wait_until 10 "s2 seen down" server_is s2 down
# Half the deadline passes with s2 stalled: the client gives back what
# it could not move.
given_up () { stats_are reclaim_given_up -gt 0; }
wait_until 30 "the client to give back what it could not move" given_up
kill_memserver s2 CONT
wait_until 60 "health again, with s2 back" \
  healthy extents_degraded -eq 0 extents_lost -eq 0 servers_up -eq 3
echo "moved $(stat_of migrated), given back $(stat_of reclaim_given_up)," \
  "held $(stat_of reclaim_held)"
! grep -q "dropped extent" "$TMP/s1.log" ||
  fail "s1 dropped extents at its deadline: $(grep -c "dropped extent" "$TMP/s1.log")"
nbdcopy "$NBD_URI" "$TMP/out"
cmp "$TMP/data" "$TMP/out" || fail "data differs after the reclaim and the stall"
kill_memserver s3 KILL
wait_until 10 "s3 seen down" server_is s3 down
nbdcopy "$NBD_URI" "$TMP/out"
cmp "$TMP/data" "$TMP/out" || fail "data differs with s3 killed"
kill -0 "$HOG_PID" 2>/dev/null || fail "the donor's own workload was killed (OOM?)"
echo "PASS"
