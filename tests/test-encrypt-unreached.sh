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
# The client keeps the failed write's tag as a write in doubt (crypt.h)
# and accepts either version; recovery then settles it against the
# copies (here both executed the write, so the new data wins), after
# which blocks_in_doubt is 0, every copy verifies with one version, and
# killing either server leaves a copy that reads the settled data.
# (Found by test-chaos.sh, encrypted run: before the fix every copy
# failed authentication, EIO for good.)
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires nbdcopy libnbd-bin

for i in 1 2; do start_memserver "s$i"; done
STATS=$TMP/stats
both_up () { stats_are servers_up -eq 2; }
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
wait_until --polls 100 "both servers up" both_up
kill_memserver s1 STOP
kill_memserver s2 STOP
write_fails_eio "the write with both servers stopped" 4096 "$TMP/new" 896 1
kill_memserver s1 CONT
kill_memserver s2 CONT
wait_until --polls 100 "both servers up again" both_up
cp "$TMP/data" "$TMP/alt"
dd if="$TMP/new" of="$TMP/alt" bs=4096 skip=896 seek=896 count=1 conv=notrunc status=none
expect_blocks after "$TMP/data" "$TMP/alt"
[ -z "$problems" ] || fail "$problems"
# Settled: no block in doubt, every extent healthy again.
wait_until --polls 200 "the write in doubt to be settled" \
  stats_are blocks_in_doubt -eq 0 extents_degraded -eq 0
# The two memservers executed the write after their SIGCONT: the new
# data is what both hold now, and what each alone must serve.
for s in s1 s2; do
  other=$([ $s = s1 ] && echo s2 || echo s1)
  kill_memserver "$other" STOP
  res=$("$TESTS_BIN/nbd_blocks" "$NBD_URI" 4096 "$TMP/alt" 2>>"$TMP/blocks.err")
  # Seen down (its PING times out) before it resumes: otherwise the
  # stats file, a heartbeat behind, can still say both are up while
  # the client reconnects it, and the next round would stop the other
  # server with this one not back yet.
  wait_until --polls 100 "$other to be seen down" server_is "$other" down
  kill_memserver "$other" CONT
  [ "$res" = "ok 2048 eio 0 mismatch 0 error 0" ] ||
    fail "with only $s serving: $res (block 896 must be the new data)"
  wait_until --polls 100 "both servers up again" both_up
done
grep -q "cannot be repaired" "$TMP/nbdkit.log" && fail "recovery gave up on a block"
echo "PASS"
