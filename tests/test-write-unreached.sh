#!/bin/bash
# A write that reached no copy took nothing away from the copies: once
# the servers are back (the same processes, never restarted), the
# extent must read back exactly as before, and nothing is lost.
#
# 2 memservers behind faultproxy.py, replicas=2, outage-wait-ms=0 (a
# request whose every copy is out of reach fails at once with EIO,
# which is expected here).  8 MiB of known data, then twice:
#  1. both links cut, and the client has seen both servers down; a
#     4 KiB write into extent 1 fails with EIO (it was sent nowhere);
#  2. both links blackholed, the client has not noticed yet; a 4 KiB
#     write into extent 3 is sent to both, times out, fails with EIO.
#     The proxy holds the request and delivers it when the links come
#     back, as a healed network would: its 4 KiB may read as the old or
#     the new data afterwards (operations.md 5.6), all of it one or
#     the other.
# After each, the links are restored and the whole disk is read: every
# byte outside the failed write's 4 KiB must be the old data, and the
# stats file must say extents_lost 0.
#
# Before the fix, the failed write marked every copy stale: the whole
# extent read as EIO from then on and the stats said extents_lost 1.
source "${srcdir:-.}/functions.sh"
source "${srcdir:-.}/faultproxy.sh"
requires nbdkit
requires nbdcopy libnbd-bin

for i in 1 2; do start_memserver "s$i"; done
start_proxy s1 s2
STATS=$TMP/stats
start_nbdkit size=8M replicas=2 timeout-ms=1000 heartbeat-ms=200 \
  rejoin-grace-ms=600000 outage-wait-ms=0 stats-file="$STATS"

healthy () { stats_are servers_up -eq 2 extents_mapped -eq 8 extents_healthy -eq 8; }

head -c $((8 * MiB)) /dev/urandom >"$TMP/data"
head -c $((8 * MiB)) /dev/urandom >"$TMP/new"
nbdcopy "$TMP/data" "$NBD_URI"
wait_until --polls 100 "8 healthy extents" healthy

problems=
# failed_write ROUND BLOCK: write 4 KiB block BLOCK of $TMP/new; it
# must fail with EIO.
failed_write () {
  write_fails_eio "round $1: the write with every copy out of reach" 4096 "$TMP/new" "$2" 1
}
# check ROUND BLOCK: the whole disk, 4 KiB at a time (nbd_blocks: an
# EIO is counted, it does not end the read); 4 KiB block BLOCK may be
# the old or the new data, every other block must be the old data.
check () {
  local round=$1 blk=$2 res alt
  cp "$TMP/data" "$TMP/alt"
  dd if="$TMP/new" of="$TMP/alt" bs=4096 skip="$blk" seek="$blk" count=1 \
    conv=notrunc status=none
  res=$("$TESTS_BIN/nbd_blocks" "$NBD_URI" 4096 "$TMP/data")
  if [ "$res" != "ok 2048 eio 0 mismatch 0 error 0" ]; then
    alt=$("$TESTS_BIN/nbd_blocks" "$NBD_URI" 4096 "$TMP/alt")
    if [ "$alt" = "ok 2048 eio 0 mismatch 0 error 0" ]; then
      echo "round $round: the failed write's 4 KiB reads as the new data (delivered late)"
    else
      problems+="round $round: 4 KiB blocks against the old data: $res; with the failed write's block new: $alt; "
    fi
  fi
  [ "$(stat_of extents_lost)" = 0 ] ||
    problems+="round $round: extents_lost $(stat_of extents_lost); "
  echo "round $round: read back; extents_lost $(stat_of extents_lost)," \
    "degraded $(stat_of extents_degraded), healthy $(stat_of extents_healthy)"
}

# 1. Cut, seen down: the write goes nowhere.
proxy '*' cut
wait_until --polls 100 "both servers to be seen down" stats_are servers_up -eq 0
failed_write 1 $(( (1 * MiB + 64 * 1024) / 4096 ))
proxy '*' pass
wait_until --polls 100 "both servers up again" stats_are servers_up -eq 2
check 1 $(( (1 * MiB + 64 * 1024) / 4096 ))
# Only the data read back proves the copies whole; healthy they must
# be too, after a write that reached none of them.
healthy_again () {
  poll_until --polls 100 healthy ||
    problems+="round $1: not healthy again: $(tr '\n' ' ' <"$STATS"); "
}
healthy_again 1

# 2. Blackholed, not noticed: the write is sent to both and times out.
proxy '*' blackhole
failed_write 2 $(( (3 * MiB + 512 * 1024) / 4096 ))
wait_until --polls 100 "both servers to be seen down" stats_are servers_up -eq 0
proxy '*' pass
wait_until --polls 100 "both servers up again" stats_are servers_up -eq 2
check 2 $(( (3 * MiB + 512 * 1024) / 4096 ))
healthy_again 2
[ -z "$problems" ] || fail "$problems"
echo "PASS"
