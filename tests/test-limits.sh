#!/bin/bash
# Per-client limits on a memserver: one client cannot hold more than
# --max-client-size (its writes beyond fail with a clear error while
# another client still gets memory), nor open more than
# --max-client-connections connections (a lane beyond it is left out,
# the client goes on without it).
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires nbdcopy libnbd-bin

MS_SIZE=64M
start_memserver s1 --max-client-size 8M --max-client-connections 2

# Its 2 connections are the limit exactly: no lanes.
start_nbdkit size=32M replicas=1 connections=2 lanes=0
head -c $((9 * 1024 * 1024)) /dev/urandom >"$TMP/data9"
head -c $((8 * 1024 * 1024)) "$TMP/data9" >"$TMP/data"
nbdcopy "$TMP/data" "$NBD_URI"
[ "$(pool_used)" -eq $((8 * 1024 * 1024)) ] || fail "expected 8 MiB held"
# One more extent is over the quota: the write fails, nothing is lost.
if "$TESTS_BIN/nbd_blocks" "$NBD_URI" $((1024 * 1024)) "$TMP/data9" write 8 1 2>"$TMP/over.log"; then
  fail "a write beyond max-client-size succeeded"
fi
grep -q "max-client-size" "$TMP/s1.log" || fail "no log line for the quota"
grep -q "no server could take it" "$TMP/nbdkit.log" || fail "no client-side error for the quota"
nbdcopy "$NBD_URI" "$TMP/out"
cmp -n $((8 * 1024 * 1024)) "$TMP/data" "$TMP/out" || fail "data lost at the quota"

# Another client is not starved by the first.
rm -f "$TMP/nbd2.sock"
nbdkit -U - "$PLUGIN" servers="$SERVERS" size=8M replicas=1 \
  --run "nbdcopy '$TMP/data' \"\$uri\"" >"$TMP/second.log" 2>&1 ||
  { cat "$TMP/second.log"; fail "a second client could not write its 8 MiB"; }

# Too many connections for one client: refused with a reason.
rc=0
timeout 20 nbdkit -f -U "$TMP/c.sock" "$PLUGIN" servers="$SERVERS" size=8M \
  replicas=1 connections=3 >"$TMP/conns.log" 2>&1 || rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "a client with 3 connections was let in"
grep -q "max-client-connections=2" "$TMP/s1.log" || fail "no log line for the connection limit"

# Lanes beyond the limit: refused, and the client says so and goes on
# without them (its data intact).
head -c $((4 * 1024 * 1024)) /dev/urandom >"$TMP/data4"
nbdkit -U - "$PLUGIN" servers="$SERVERS" size=4M replicas=1 connections=2 \
  lanes=4 --run "nbdcopy '$TMP/data4' \"\$uri\" && nbdcopy \"\$uri\" '$TMP/out4'" \
  >"$TMP/lanes.log" 2>&1 ||
  { cat "$TMP/lanes.log"; fail "a client whose lanes were refused could not write and read"; }
cmp "$TMP/data4" "$TMP/out4" || fail "data differs with the lanes refused"
grep -q "4 of 4 lanes not opened" "$TMP/lanes.log" ||
  { cat "$TMP/lanes.log"; fail "no client log line for the lanes refused"; }
echo "PASS"
