#!/bin/bash
# A donor whose host needs its memory back, under real memory pressure.
#
# s1 runs with --size auto in a memory cgroup of its own (limit 384
# MiB, head-room 64 MiB); s2 and s3 have fixed sizes.  replicas=2, 192
# MiB of known data: s1 holds about a third of the copies.  Then a
# process in s1's cgroup takes 224 MiB, as a donor host's own workload
# would: s1 sees less than its head-room left, lowers its limit and
# asks the client (RECLAIM notices) for its least recently used
# extents back.  The client must move them to s2 and s3 (copy first,
# then FREE on s1) before s1's deadline, so s1 drops nothing; s1's
# memory must really shrink; every byte must read back; and then,
# as a second event, s2 is killed with -9: every byte must still read
# back (a copy released before its replacement was filled, or counted
# on s1 after s1 let it go, would be missing now).
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires nbdcopy libnbd-bin
requires python3

source "${srcdir:-.}/memcg.sh"

memcg_pool 10000
S1=$MS_ADDR_s1
memcg_disk timeout-ms=2000 rejoin-grace-ms=500
before=$(server_used "$S1")
echo "s1 holds $((before / MiB)) MiB before the pressure"
[ "$before" -gt $((32 * MiB)) ] || fail "s1 holds too little to reclaim from"

# The host's own workload arrives in s1's cgroup.
memcg_hog 224

asked () { grep -q "asked session .* for .* extent" "$TMP/s1.log"; }
wait_until 30 "s1 to ask for extents back" asked
# Every extent asked back so far moved (copies counted by the client),
# and the pool whole again.
nasked () {
  sed -n 's/.*asked session [0-9]* for \([0-9]*\) extent.*/\1/p' "$TMP/s1.log" |
    awk '{ n += $1 } END { print n + 0 }'
}
moved () { healthy migrated -ge "$(nasked)" extents_degraded -eq 0; }
wait_until 60 "the client to move the extents asked back" moved
after=$(server_used "$S1")
echo "s1 holds $((after / MiB)) MiB after the pressure ($(stat_of migrated) copies moved)"
[ "$after" -lt "$before" ] || fail "s1 holds as much as before ($after bytes)"
grep "reclaim" "$TMP/s1.log" | tail -5
! grep -q "dropped extent" "$TMP/s1.log" || fail "s1 dropped extents the client should have moved"
[ "$(stat_of reclaim_given_up)" = 0 ] || fail "copies given up though s2 and s3 had room"
kill -0 "$HOG_PID" 2>/dev/null || fail "the donor's own workload was killed (OOM?)"
[ "$(cat "$CG/memory.failcnt" 2>/dev/null || echo 0)" = 0 ] ||
  echo "note: the cgroup hit its limit $(cat "$CG/memory.failcnt") times (reclaimed page cache)"
nbdcopy "$NBD_URI" "$TMP/out1"
cmp "$TMP/data" "$TMP/out1" || fail "data differs after the reclaim"

# The workload ends: the donation grows back.
limit_of_s1 () { "$RAMPOOL" status --raw "$S1" | awk '{ print $8 }'; }
low=$(limit_of_s1)
kill -9 "$HOG_PID"; wait "$HOG_PID" 2>/dev/null || true
grown () { [ "$(limit_of_s1)" -gt $((low + 64 * MiB)) ]; }
wait_until 30 "s1's donation to grow back" grown
echo "s1 donates $((low / MiB)) MiB under pressure, $(( $(limit_of_s1) / MiB )) MiB after it"

kill_memserver s2 KILL
nbdcopy "$NBD_URI" "$TMP/out2"
cmp "$TMP/data" "$TMP/out2" || fail "data differs after the reclaim and s2's loss"
cat "$STATS"
echo "PASS: s1 gave back $(((before - after) / MiB)) MiB under pressure, nothing lost after a second failure"
