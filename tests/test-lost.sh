#!/bin/bash
# Both replicas of an extent lost: reads of it fail with EIO (never
# zeros, never other data), every other extent reads back correctly,
# and the plugin logs which extents were lost.
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires nbdcopy libnbd-bin

for i in 1 2 3; do start_memserver "s$i"; done
start_nbdkit size=64M replicas=2 timeout-ms=1000 heartbeat-ms=200 outage-wait-ms=300

head -c $((64 * 1024 * 1024)) /dev/urandom >"$TMP/data"
nbdcopy "$TMP/data" "$NBD_URI"
kill_memserver s1 KILL
kill_memserver s2 KILL

"$TESTS_BIN/nbd_blocks" "$NBD_URI" $((1024 * 1024)) "$TMP/data" >"$TMP/blocks" 2>>"$TMP/blocks.log"
cat "$TMP/blocks"
read -r _ ok _ eio _ mismatch _ error <"$TMP/blocks"
[ "$mismatch" -eq 0 ] || fail "$mismatch blocks read back wrong data"
[ "$error" -eq 0 ] || fail "$error blocks failed with an error other than EIO"
[ "$eio" -gt 0 ] || fail "no extent lost both copies (placement should put about 1/3 on s1+s2)"
[ "$ok" -gt 0 ] || fail "no extent survived on s3"
[ $((ok + eio)) -eq 64 ] || fail "ok + eio != 64"
grep -q "every replica is lost\|no good replica left" "$TMP/nbdkit.log" || fail "lost extents not logged"
lines=$(grep -c "no good replica left; reads of it fail with EIO" "$TMP/nbdkit.log" || true)
[ "$lines" -le "$eio" ] || fail "lost extents logged more than once each ($lines lines for $eio extents)"
echo "PASS"
