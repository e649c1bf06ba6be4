#!/bin/bash
# Replication: write data, kill -9 one of 3 memservers, every byte
# still reads back correctly (reads fail over to the other replica).
# Then, with that server gone, more writes succeed (degraded) and
# recovery restores 2 good copies of every extent on the survivors.
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires nbdcopy libnbd-bin

MS_SIZE=512M
for i in 1 2 3; do start_memserver "s$i"; done
start_nbdkit size=256M replicas=2 timeout-ms=2000 heartbeat-ms=200 rejoin-grace-ms=500 \
  stats-file="$TMP/stats"

head -c $((200 * 1024 * 1024)) /dev/urandom >"$TMP/data"
nbdcopy "$TMP/data" "$NBD_URI"
nbdcopy "$NBD_URI" "$TMP/out1"
cmp -n $((200 * 1024 * 1024)) "$TMP/data" "$TMP/out1" || fail "read-back before the kill differs"

kill_memserver s2 KILL
nbdcopy "$NBD_URI" "$TMP/out2"
cmp -n $((200 * 1024 * 1024)) "$TMP/data" "$TMP/out2" || fail "read-back after kill -9 differs"
echo "read back 200 MiB correctly with one of 3 servers killed"

# Writes with a server down (degraded), then verify again.
head -c $((8 * 1024 * 1024)) /dev/urandom >"$TMP/patch"
dd if="$TMP/patch" of="$TMP/data" bs=1M seek=20 conv=notrunc status=none
nbdcopy "$TMP/data" "$NBD_URI"

# Recovery: wait (bounded) until every mapped extent is healthy again.
for _ in $(seq 300); do
  if [ -f "$TMP/stats" ] && grep -q '^extents_degraded 0$' "$TMP/stats" &&
     grep -q '^extents_lost 0$' "$TMP/stats" &&
     ! grep -q '^extents_mapped 0$' "$TMP/stats"; then
    break
  fi
  sleep 0.1
done
cat "$TMP/stats"
grep -q '^extents_degraded 0$' "$TMP/stats" || fail "extents still degraded"
healthy=$(awk '/^extents_healthy/ {print $2}' "$TMP/stats")
mapped=$(awk '/^extents_mapped/ {print $2}' "$TMP/stats")
[ "$healthy" = "$mapped" ] || fail "healthy $healthy != mapped $mapped"

# Now kill a second server: recovery made sure the last one holds a copy.
kill_memserver s1 KILL
nbdcopy "$NBD_URI" "$TMP/out3"
cmp -n $((200 * 1024 * 1024)) "$TMP/data" "$TMP/out3" || fail "read-back from the last server differs"
echo "PASS"
