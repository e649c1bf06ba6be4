#!/bin/bash
# librampool driven directly by 4 threads (tests/test_pool_io.c): every
# byte checked against a shadow, with exact trim semantics, plain and
# encrypted, and with a memserver killed mid-run.  In the sanitizer
# build this is the engine's run under AddressSanitizer.  Then
# overlapping writes from 4 threads to the same 4 extents (one block
# on lanes, runs across an extent boundary on the shared connections,
# zeros), plain and encrypted, with reads of the blocks being written:
# the copies must come out identical (rp_pool_audit), every block read
# whole, and no read may fail over (encrypt=on: a read must not reach a
# copy before a write in flight does).
source "${srcdir:-.}/functions.sh"

for i in 1 2 3; do start_memserver "s$i"; done
"$TESTS_BIN/test_pool_io" --ops 3000 servers="$SERVERS" replicas=2 \
  >"$TMP/plain.log" 2>&1 || { cat "$TMP/plain.log"; fail "plain"; }
cat "$TMP/plain.log"
"$TESTS_BIN/test_pool_io" --ops 1500 servers="$SERVERS" replicas=2 encrypt=on \
  extent-size=64K >"$TMP/enc.log" 2>&1 || { cat "$TMP/enc.log"; fail "encrypted"; }
cat "$TMP/enc.log"
"$TESTS_BIN/test_pool_io" --overlap --ops 8000 servers="$SERVERS" replicas=3 \
  extent-size=64K >"$TMP/overlap.log" 2>&1 || { cat "$TMP/overlap.log"; fail "overlapping writes"; }
cat "$TMP/overlap.log"
"$TESTS_BIN/test_pool_io" --overlap --ops 3000 servers="$SERVERS" replicas=2 \
  extent-size=64K encrypt=on >"$TMP/overlap-enc.log" 2>&1 || { cat "$TMP/overlap-enc.log"; fail "overlapping writes, encrypted"; }
cat "$TMP/overlap-enc.log"
"$TESTS_BIN/test_pool_io" --ops 3000 --kill-pid "$MS_PID_s2" --kill-at 1000 \
  servers="$SERVERS" replicas=2 timeout-ms=1000 heartbeat-ms=200 \
  rejoin-grace-ms=300 >"$TMP/kill.log" 2>&1 || { cat "$TMP/kill.log"; fail "with a server killed"; }
cat "$TMP/kill.log"
echo "PASS"
