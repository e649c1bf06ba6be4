#!/bin/bash
# A stale copy is never read, not even when it is the only copy left.
#
# 2 memservers, replicas=2, 16 MiB of known data.  s1 is stopped
# (SIGSTOP) and part of the disk is rewritten: extents 4 and 5 whole,
# one 4 KiB block in extents 9 and 12.  Those writes reach s2 only, so
# s1's copies of extents 4, 5, 9 and 12 are stale.  Then s2 is killed
# (kill -9) BEFORE s1 resumes and recovery could repair anything; s1
# resumes with the same incarnation and session, so its other copies
# are good.  Reading the whole disk (1 MiB blocks): extents 4, 5, 9
# and 12 must fail with EIO (after waiting outage-wait-ms for s2, which
# may come back), never return the old data s1 still holds; every other
# extent must read back exactly.  A replica chooser that ignored the
# stale mark, or a rejoin that cleared it, would return the old data.
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires nbdcopy libnbd-bin

for i in 1 2; do start_memserver "s$i"; done
STATS=$TMP/stats
# rejoin-grace-ms long: s1's copies stay in the map, stale or not.
start_nbdkit size=16M replicas=2 timeout-ms=1000 heartbeat-ms=200 \
  rejoin-grace-ms=600000 outage-wait-ms=500 stats-file="$STATS"

head -c $((16 * MiB)) /dev/urandom >"$TMP/data"
nbdcopy "$TMP/data" "$NBD_URI"
cp "$TMP/data" "$TMP/new"
head -c $((2 * MiB)) /dev/urandom | dd of="$TMP/new" bs=1M seek=4 conv=notrunc status=none
b9=$(( (9 * MiB + 300 * 1024) / 4096 ))
b12=$(( (12 * MiB + 1020 * 1024) / 4096 ))
for b in $b9 $b12; do
  head -c 4096 /dev/urandom | dd of="$TMP/new" bs=4096 seek="$b" conv=notrunc status=none
done

kill_memserver s1 STOP
"$TESTS_BIN/nbd_blocks" "$NBD_URI" "$MiB" "$TMP/new" write 4 2
"$TESTS_BIN/nbd_blocks" "$NBD_URI" 4096 "$TMP/new" write "$b9" 1
"$TESTS_BIN/nbd_blocks" "$NBD_URI" 4096 "$TMP/new" write "$b12" 1
nbdcopy "$NBD_URI" "$TMP/out"
cmp "$TMP/new" "$TMP/out" || fail "data differs while s1 is stopped"
grep -q "server $MS_ADDR_s1 down" "$TMP/nbdkit.log" || fail "stopped s1 not seen down"

kill_memserver s2 KILL
kill_memserver s1 CONT
s1_back () { server_is s1 up 0 && server_is s2 down 0; }
wait_until --polls 100 "s1 up again (same incarnation), s2 down" s1_back
grep -q "server $MS_ADDR_s1 back after .* same incarnation" "$TMP/nbdkit.log" ||
  fail "s1's rejoin with the same incarnation not logged"

read_blocks "$MiB" "$TMP/new"
echo "read with s2 dead and s1 back: $BLOCKS"
[ "$BLOCKS" = "ok 12 eio 4 mismatch 0 error 0" ] && [ "$EIO_AT" = "4 5 9 12 " ] ||
  fail "expected EIO exactly for extents 4 5 9 12 and every other extent intact; got $BLOCKS, EIO at extents: $EIO_AT"
# The stats file agrees: those 4 extents have no good copy; s2 may come
# back with theirs, so they are unreachable rather than lost.
cat "$STATS"
grep -qx "extents_unreachable 4" "$STATS" || fail "expected 4 unreachable extents"
echo "PASS"
