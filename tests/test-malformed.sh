#!/bin/bash
# A live memserver under a storm of malformed and hostile frames
# (tests/malformed.py: bad magic, unknown ops, oversized lengths,
# out-of-range offsets, requests before HELLO, truncated frames,
# garbage, forged handles) keeps serving a well-behaved client: nbdkit
# keeps reading and writing through it and every byte stays intact.
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires nbdcopy libnbd-bin
requires python3

for i in 1 2 3; do start_memserver "s$i"; done
start_nbdkit size=64M replicas=2

head -c $((48 * 1024 * 1024)) /dev/urandom >"$TMP/data"
nbdcopy "$TMP/data" "$NBD_URI"

storm=()
for i in 1 2 3; do
  port_var=MS_PORT_s$i
  python3 "${srcdir:-.}/malformed.py" "${!port_var}" 12 >"$TMP/storm$i.log" 2>&1 &
  storm+=($!)
done
# Foreground I/O while the storm runs: rewrite and re-verify.
for round in 1 2 3; do
  head -c $((48 * 1024 * 1024)) /dev/urandom >"$TMP/data"
  nbdcopy "$TMP/data" "$NBD_URI"
  nbdcopy "$NBD_URI" "$TMP/out"
  cmp -n $((48 * 1024 * 1024)) "$TMP/data" "$TMP/out" || fail "data differs during the storm (round $round)"
done
for i in 1 2 3; do
  wait "${storm[$((i - 1))]}" || { cat "$TMP/storm$i.log"; fail "memserver s$i mishandled a hostile frame"; }
  cat "$TMP/storm$i.log"
done
nbdcopy "$NBD_URI" "$TMP/out"
cmp -n $((48 * 1024 * 1024)) "$TMP/data" "$TMP/out" || fail "data differs after the storm"
"$RAMPOOL" status "$SERVERS" || fail "a memserver stopped serving"
grep -q "closing connection" "$TMP/s1.log" || fail "no log line for closed connections"
echo "PASS"
