#!/bin/bash
# Draining a donor under load, and losing another one after or during
# the drain.
#
# 4 memservers, replicas=2, 32 random reads and writes in flight
# (test_parallel_io, every byte checked against its shadow copy) while
# s1 is told to drain (A: `rampool drain`, which must show progress and
# end with status 0; B: SIGUSR2, as `systemctl stop` does).  The client
# must move every copy off s1 (a replacement placed and filled first,
# then FREE on s1); s1 must stop by itself with status 0 once empty
# (nothing dropped, nothing left); no request may fail or read wrong.
#
# A. After the drain, still under load, s2 is killed with -9: had the
#    drain released a copy before its replacement was filled, or left a
#    copy counted on s1, the extents it held would now be unreadable.
# B. encrypt=on and recovery-rate=8M, so the drain takes seconds: s2,
#    one of the servers the copies move to, is killed with -9 once the
#    first copies have moved.  Extents whose other copy was on s2 now
#    have their only good copy on the draining s1: it must be the source
#    of two new copies before it is released, and every copy moved must
#    still authenticate.
# Each time the pool must end healthy on s3 and s4, and the checker
# reads the whole disk back against its shadow.
source "${srcdir:-.}/functions.sh"
requires nbdkit

STATS=$TMP/stats
addr_of () { local v=MS_PORT_$1; echo "127.0.0.1:${!v}"; }

# drain_s1 HOW MIB NBDKIT-KEYS...: four fresh memservers and nbdkit; I/O
# starts; once s1 holds MIB MiB, s1 is told to drain: HOW is cli
# (rampool drain, in the background: DRAIN_PID) or signal (SIGUSR2).
drain_s1 () {
  local how=$1 mib=$2; shift 2
  SERVERS=
  rm -f "$STATS" "$TMP/stop" "$TMP"/s?.log "$TMP/nbdkit.log"
  for i in 1 2 3 4; do start_memserver "s$i"; done
  start_nbdkit size=128M replicas=2 timeout-ms=1000 heartbeat-ms=200 \
    rejoin-grace-ms=500 stats-file="$STATS" "$@"
  "$TESTS_BIN/test_parallel_io" --ops 2000000 --until-file "$TMP/stop" \
    "$NBD_URI" >"$TMP/io.log" 2>&1 &
  IO_PID=$!
  _pids+=("$IO_PID")
  S1=$MS_ADDR_s1
  holds_data () { [ "$(server_used "$S1")" -gt $((mib * MiB)) ]; }
  wait_until 30 "s1 to hold $mib MiB of the disk" holds_data
  echo "s1 holds $(server_used "$S1") bytes when told to drain"
  if [ "$how" = cli ]; then
    "$RAMPOOL" drain --deadline=120 "$S1" >"$TMP/drain.out" 2>&1 &
    DRAIN_PID=$!
    _pids+=("$DRAIN_PID")
  else
    kill -USR2 "$MS_PID_s1"
  fi
}

# s1 must stop by itself, drained (wait_drained), and the client must
# have heard of it.
s1_drained () {
  wait_drained s1
  grep -q "is draining" "$TMP/nbdkit.log" ||
    fail "the client did not log the DRAIN notice"
}

# The pool healthy on s3 and s4, the checker's PASS, nothing lost.
settled () {
  stats_are servers_up -eq 2 extents_degraded -eq 0 extents_lost -eq 0 \
    extents_unreachable -eq 0
}
io_passed () {
  wait_until 90 "recovery onto s3 and s4" settled
  touch "$TMP/stop"
  wait "$IO_PID" || { cat "$TMP/io.log"; fail "I/O saw errors or mismatches"; }
  cat "$TMP/io.log"
  grep -q "PASS" "$TMP/io.log" || fail "no PASS from the I/O checker"
  [ "$(stat_of migrated)" -gt 0 ] || fail "no copy counted as moved"
  [ "$(stat_of reclaim_given_up)" = 0 ] || fail "copies given up in a drain"
  # Quiet now: two copies of every mapped extent on s3 and s4, and
  # nothing else there (polled: the stats file is rewritten once a
  # heartbeat, so right after the I/O stops it may not count the last
  # extents the checker wrote).
  exact_copies () {
    want=$(( 2 * $(stat_of extents_mapped) * 1024 * 1024 ))
    have=$(( $(server_used "$(addr_of s3)") + $(server_used "$(addr_of s4)") ))
    [ "$have" = "$want" ]
  }
  poll_until 10 exact_copies ||
    fail "s3 and s4 hold $have bytes, 2 copies of the mapped extents are $want"
  stop_nbdkit
  for i in 3 4; do kill_memserver "s$i" TERM; done
}

# ---- A: rampool drain, then kill.
drain_s1 cli 16
s1_drained
rc=0
wait "$DRAIN_PID" || rc=$?
cat "$TMP/drain.out"
[ "$rc" = 0 ] || fail "rampool drain ended with status $rc"
grep -q "^$S1: draining: .* to move" "$TMP/drain.out" || fail "rampool drain: no start line"
grep -q "^$S1: drained: empty after" "$TMP/drain.out" || fail "rampool drain: no end line"
# A server that is gone: a clear error, status 1.
rc=0
"$RAMPOOL" drain "$S1" 2>"$TMP/drain.err" || rc=$?
[ "$rc" = 1 ] && grep -q "rampool drain: $S1: connect: Connection refused" "$TMP/drain.err" ||
  { cat "$TMP/drain.err"; fail "rampool drain of a stopped server: status $rc"; }
wait_until 30 "the client to see s1 gone" server_is s1 down
kill_memserver s2 KILL
io_passed
echo "A: s1 drained ($(stat_of migrated) copies moved), then s2 lost: no error"

# ---- B: kill during the drain (SIGUSR2), encrypted.
drain_s1 signal 24 encrypt=on recovery-rate=8M
wait_until 30 "the first copies to move off s1" stats_are migrated -gt 0
state=$("$RAMPOOL" status --raw "$S1" | awk '{ print $7 }')
[ "$state" = draining ] || fail "rampool status shows s1 '$state', not draining"
shows_draining () { grep -q "^server $S1 up epoch 0 draining$" "$STATS"; }
wait_until 5 "the stats file to show s1 draining" shows_draining
kill -0 "$MS_PID_s1" 2>/dev/null ||
  fail "s1 drained before s2 could be killed: lower recovery-rate"
echo "s2 killed after $(stat_of migrated) copies moved"
kill_memserver s2 KILL
s1_drained
io_passed
! grep -q "failed authentication" "$TMP/nbdkit.log" ||
  fail "a copy failed authentication"
[ "$(stat_of blocks_in_doubt)" = 0 ] || fail "blocks still in doubt"
echo "PASS: drain then kill, and kill during an encrypted drain: no error"
