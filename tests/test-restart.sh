#!/bin/bash
# nbdkit restarts with live memservers (documented behaviour): a new
# nbdkit is a new session, so its disk starts empty (reads as zeros,
# never another session's data).  A cleanly stopped nbdkit frees its
# extents at once; one killed with -9 has them freed when its lease on
# each memserver expires.
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires nbdcopy libnbd-bin

for i in 1 2 3; do start_memserver "s$i" --lease-ms 4000; done

start_nbdkit size=64M replicas=2
head -c $((32 * 1024 * 1024)) /dev/urandom >"$TMP/data"
nbdcopy "$TMP/data" "$NBD_URI"
[ "$(pool_used)" -eq $((64 * 1024 * 1024)) ] || fail "expected 64 MiB used"

# kill -9: nothing is freed until the lease expires.
kill -9 "$NBDKIT_PID"; wait "$NBDKIT_PID" 2>/dev/null || true
[ "$(pool_used)" -eq $((64 * 1024 * 1024)) ] || fail "extents vanished before the lease expired"
for _ in $(seq 100); do [ "$(pool_used)" -eq 0 ] && break; sleep 0.1; done
[ "$(pool_used)" -eq 0 ] || fail "extents of a killed nbdkit not freed after the lease"
grep -q "freed the extents of 1 client" "$TMP/s1.log" || fail "no lease expiry log line"

# A new nbdkit: an empty disk.
start_nbdkit size=64M replicas=2
nbdcopy "$NBD_URI" "$TMP/out"
cmp -n $((64 * 1024 * 1024)) "$TMP/out" /dev/zero || fail "a new session does not start empty"
nbdcopy "$TMP/data" "$NBD_URI"
stop_nbdkit
[ "$(pool_used)" -eq 0 ] || fail "clean nbdkit stop did not free its extents"
echo "PASS"
