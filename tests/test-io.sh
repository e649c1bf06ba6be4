#!/bin/bash
# Parallel random I/O through nbdkit + the plugin on 3 real memservers:
# 32 requests in flight, 1 B - 1 MiB, unaligned, crossing extents,
# trims and zeroes, every byte checked against a shadow copy, then the
# whole disk re-read over a new connection (--reopen).  Runs with
# replicas=2 and replicas=1, and with a small extent size so requests
# cross many extents.
source "${srcdir:-.}/functions.sh"
requires nbdkit

for i in 1 2 3; do start_memserver "s$i"; done

for args in "replicas=2" "replicas=1" "replicas=3 extent-size=64K connections=1 inflight=4"; do
  echo "== $args"
  nbdkit -U - "$PLUGIN" servers="$SERVERS" size=128M $args \
    --run "'$TESTS_BIN/test_parallel_io' --ops 4000 --reopen \"\$uri\"" \
    >>"$TMP/nbdkit.log" 2>&1 || { tail -5 "$TMP/nbdkit.log"; fail "parallel I/O with $args"; }
  tail -1 "$TMP/nbdkit.log" | has "PASS" || fail "no PASS line with $args"
  # nbdkit exited cleanly: it freed its extents on every server.
  used=$(pool_used)
  [ "$used" -eq 0 ] || fail "$used bytes still allocated after nbdkit exit ($args)"
done
echo "PASS"
