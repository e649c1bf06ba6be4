#!/bin/bash
# Swap safety: the plugin's I/O path allocates no memory once the pool
# is open (an allocation under memory pressure is where a swap server
# can deadlock).  nbdkit runs with tests/malloc_count.so preloaded,
# which logs every allocation called from the plugin; two rounds of
# verified I/O must add no line.  With encrypt=on, each nbdkit worker
# thread allocates one bounce buffer on its first encrypted I/O (freed
# when the thread ends): no other allocation, at most one per thread.
# With redundancy=ec (and encrypt=on), the same for the coding scratch
# (client/ecio.c): one buffer of one size per thread, nothing else.
# The metrics file (metrics-file=) is written by the monitor thread
# meanwhile, without an allocation either.
source "${srcdir:-.}/functions.sh"
requires nbdkit
SHIM=$abs_top_builddir/tests/.libs/malloc_count.so
[ -f "$SHIM" ] || fail "malloc_count.so not built"

for i in 1 2 3; do start_memserver "s$i"; done
lines () { wc -l <"$TMP/malloc.log"; }

for enc in off on ec; do
  : >"$TMP/malloc.log"
  rm -f "$TMP/m.prom"
  redundancy=(replicas=2 encrypt=$enc)
  [ $enc = ec ] && redundancy=(redundancy=ec:2+1 encrypt=on)
  LD_PRELOAD=$SHIM RP_MALLOC_LOG=$TMP/malloc.log start_nbdkit size=128M \
    "${redundancy[@]}" metrics-file="$TMP/m.prom" heartbeat-ms=100
  start=$(lines)
  # Round 1: random I/O of every kind, checked against a shadow.
  "$TESTS_BIN/test_parallel_io" --ops 3000 "$NBD_URI" >"$TMP/io.log" 2>&1 ||
    { cat "$TMP/io.log"; fail "I/O round 1"; }
  r1=$(lines)
  # Round 2: 64 MiB written and verified on a new connection.
  "$RAMPOOL" verify --mib=64 "$NBD_URI" >"$TMP/verify.log" 2>&1 ||
    { cat "$TMP/verify.log"; fail "I/O round 2"; }
  r2=$(lines)
  echo "encrypt=$enc: $start allocations at start-up; +$((r1 - start)) in round 1, +$((r2 - r1)) in round 2"
  new=$(tail -n +$((start + 1)) "$TMP/malloc.log")
  if [ $enc = off ]; then
    [ "$r2" -eq "$start" ] || { echo "$new"; fail "the I/O path allocated"; }
  elif [ $enc = ec ]; then
    # One kind of line: "malloc SIZE from ...", SIZE the same in all.
    kinds=$(echo "$new" | awk 'NF { print $1, $2 }' | sort -u)
    [ -z "$new" ] || { [ "$(echo "$kinds" | wc -l)" = 1 ] &&
                       [ "${kinds%% *}" = malloc ]; } ||
      { echo "$new"; fail "ec: allocations other than one scratch buffer per thread"; }
    [ $((r1 - start)) -le 16 ] && [ $((r2 - r1)) -le 16 ] ||
      { echo "$new"; fail "ec: more than one scratch buffer per worker thread"; }
  else
    # The bounce buffer: RP_MAX_PAYLOAD (4 MiB) and the undo state of
    # its 1024 blocks (24 bytes each, io.c), from a static function.
    if echo "$new" | has -v "^malloc $((4194304 + 1024 * 24)) "; then
      echo "$new"; fail "an allocation other than the per-thread bounce buffer"
    fi
    [ $((r1 - start)) -le 16 ] && [ $((r2 - r1)) -le 16 ] ||
      { echo "$new"; fail "more than one bounce buffer per worker thread"; }
  fi
  grep -q '^rampool_client_requests_total{disk="m",op="read"} [1-9]' "$TMP/m.prom" ||
    fail "no metrics file written during the I/O"
  stop_nbdkit
done
echo "PASS"
