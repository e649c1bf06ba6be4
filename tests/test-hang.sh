#!/bin/bash
# A hung memserver (SIGSTOP): I/O goes on within the deadline; writes
# made while it hangs are not lost; after SIGCONT it rejoins with the
# same incarnation and is trusted only for what it did not miss: the
# replicas that missed writes are rewritten, the rest kept.  Proven by
# then killing the other server and reading everything from the one
# that hung: every byte must be the newest.
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires nbdcopy libnbd-bin

for i in 1 2; do start_memserver "s$i"; done
# A long grace: the hung server's replicas are kept, not re-created.
start_nbdkit size=64M replicas=2 timeout-ms=1000 heartbeat-ms=200 \
  rejoin-grace-ms=600000 stats-file="$TMP/stats"

head -c $((64 * 1024 * 1024)) /dev/urandom >"$TMP/data"
nbdcopy "$TMP/data" "$NBD_URI"

kill_memserver s2 STOP
start=$(date +%s)
head -c $((8 * 1024 * 1024)) /dev/urandom >"$TMP/patch"
dd if="$TMP/patch" of="$TMP/data" bs=1M seek=16 conv=notrunc status=none
"$TESTS_BIN/nbd_blocks" "$NBD_URI" $((1024 * 1024)) "$TMP/data" write 16 8
nbdcopy "$NBD_URI" "$TMP/out"
cmp -n $((64 * 1024 * 1024)) "$TMP/data" "$TMP/out" || fail "data differs while s2 hangs"
elapsed=$(( $(date +%s) - start ))
echo "rewrote and verified 64 MiB with s2 hung in ${elapsed}s"
grep -q "server 127.0.0.1:$MS_PORT_s2 down" "$TMP/nbdkit.log" || fail "hung server not detected"

kill_memserver s2 CONT
# Healthy again, in a stats file written after the repair (recovered
# > 0): a file written before the hang says healthy too.
for _ in $(seq 300); do
  grep -q '^servers_up 2$' "$TMP/stats" 2>/dev/null && grep -q '^extents_degraded 0$' "$TMP/stats" &&
    ! grep -q '^recovered 0$' "$TMP/stats" && break
  sleep 0.1
done
grep -q '^extents_degraded 0$' "$TMP/stats" || { cat "$TMP/stats"; fail "not healthy after SIGCONT"; }
grep -q "back after .* same incarnation" "$TMP/nbdkit.log" || fail "rejoin not logged"
recovered=$(awk '/^recovered/ {print $2}' "$TMP/stats")
# Only the extents written while s2 hung were re-copied; the other 56
# were trusted as they were.
# (Seen once in many runs under ASan: 9, one copy repeated; far from
# the 64 a rejoin that trusted nothing would copy.)
[ "$recovered" -ge 8 ] && [ "$recovered" -le 10 ] ||
  fail "recovered $recovered extents, expected the 8 written while s2 hung"

kill_memserver s1 KILL
nbdcopy "$NBD_URI" "$TMP/out2"
cmp -n $((64 * 1024 * 1024)) "$TMP/data" "$TMP/out2" || fail "s2 served stale data after rejoining"
echo "PASS"
