#!/bin/bash
# encrypt=on: a write whose requests timed out on every copy was not
# necessarily lost: the donors may still execute it.  Here both
# memservers are stopped (SIGSTOP, as an overloaded donor host): the
# write's requests wait in their sockets, the client gives up on them
# (timeout-ms), and when the memservers resume they execute them.  The
# client must still read those blocks afterwards, as the old or the new
# data, never EIO.  With outage-wait-ms=0 a 4 KiB write (one whole
# block) fails with EIO while both are stopped (expected); after
# SIGCONT every block must read back, block 896 as the old or the new
# data.
#
# KNOWN TO FAIL (tests/Makefile.am XFAIL_TESTS): when a write reaches
# no copy the client rolls its tag table back (crypt_undo), assuming
# the copies still hold the old ciphertext; the donors then execute the
# write, so every copy holds ciphertext whose tag the client no longer
# has: block 896 fails authentication on both copies, EIO for good, and
# recovery cannot repair it.  With outage-wait-ms > 0 the same happens
# to a write that waits and is retried, when the retry has to read the
# block first (a partial-block write): its read-modify-write read fails
# authentication on every copy, and the write fails with EIO.  (Found
# by test-chaos.sh, encrypted run.)
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires nbdcopy libnbd-bin

MiB=$((1024 * 1024))
for i in 1 2; do start_memserver "s$i"; done
STATS=$TMP/stats
stat_of () { awk -v k="$1" '$1 == k { print $2 }' "$STATS" 2>/dev/null; }
wait_until () {          # TENTHS WHAT COMMAND...
  local n=$1 what=$2; shift 2
  for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
  [ -f "$STATS" ] && cat "$STATS"
  fail "timed out waiting for $what"
}
both_up () { [ "$(stat_of servers_up)" = 2 ]; }
problems=

head -c $((8 * MiB)) /dev/urandom >"$TMP/data"
head -c $((8 * MiB)) /dev/urandom >"$TMP/new"

# expect_blocks ROUND FILE...: the disk, 4 KiB at a time, must match
# one of the FILEs (the old data, or with the failed write's block new).
expect_blocks () {
  local round=$1 f res all=; shift
  for f in "$@"; do
    res=$(NBD_BLOCKS_LIST_EIO=1 "$TESTS_BIN/nbd_blocks" "$NBD_URI" 4096 "$f" 2>>"$TMP/blocks.err")
    [ "$res" = "ok 2048 eio 0 mismatch 0 error 0" ] && return 0
    all+="${all:+; }$res"
  done
  problems+="round $round: 4 KiB blocks: $all ($(grep -o 'EIO in the block at [0-9]*' "$TMP/blocks.err" | sort -u | tr '\n' ' ')); "
}

start_nbdkit size=8M replicas=2 timeout-ms=1000 heartbeat-ms=200 \
  rejoin-grace-ms=600000 outage-wait-ms=0 encrypt=on stats-file="$STATS"
nbdcopy "$TMP/data" "$NBD_URI"
wait_until 100 "both servers up" both_up
kill_memserver s1 STOP
kill_memserver s2 STOP
rc=0
"$TESTS_BIN/nbd_blocks" "$NBD_URI" 4096 "$TMP/new" write 896 1 || rc=$?
[ "$rc" = 3 ] || fail "the write with both servers stopped did not fail with EIO (exit $rc)"
kill_memserver s1 CONT
kill_memserver s2 CONT
wait_until 100 "both servers up again" both_up
cp "$TMP/data" "$TMP/alt"
dd if="$TMP/new" of="$TMP/alt" bs=4096 skip=896 seek=896 count=1 conv=notrunc status=none
expect_blocks after "$TMP/data" "$TMP/alt"
grep "failed authentication\|cannot be repaired" "$TMP/nbdkit.log" | sort | uniq -c | head -5 || true
[ -z "$problems" ] || fail "$problems"
echo "PASS"
