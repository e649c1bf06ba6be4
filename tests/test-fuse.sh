#!/bin/bash
# The FUSE front end: rampool-fuse mounts the pool's disk as a file.
# fio with verify=crc32c from 4 jobs, byte-exact writes checked against
# an expected copy, hole punching that reads back as zeros and frees
# whole extents on the memservers, a refused truncate that changes
# nothing, a bad key refused with no mount left behind, and both ways
# of stopping it (SIGTERM, fusermount3 -u) leaving nothing on the
# memservers and no mount.
MOUNT_NS=own            # see functions.sh
source "${srcdir:-.}/functions.sh"
requires fio

for i in 1 2 3; do start_memserver "s$i"; done
fuse_setup

# A bad key: refused, named, nothing mounted.
if "$RAMPOOL_FUSE" "$MNT" servers="$SERVERS" size=64M replicas=9 >"$TMP/bad.log" 2>&1; then
  fail "rampool-fuse started with replicas=9"
fi
grep -q "replicas" "$TMP/bad.log" || { cat "$TMP/bad.log"; fail "the error does not name the key"; }
is_mounted && fail "a refused start left a mount"

EXPECT_SIZE=$((128 * MiB))
start_fuse size=128M replicas=2
DISK=$MNT/disk

# fio, 4 jobs in parallel on disjoint ranges, every block verified.
fio --name=verify --filename="$DISK" --ioengine=psync --direct=1 --numjobs=4 \
    --size=32M --offset_increment=32M --rw=randwrite --bsrange=4k-256k \
    --verify=crc32c --verify_fatal=1 --do_verify=1 --verify_state_save=0 \
    --output="$TMP/fio.log" >/dev/null || { cat "$TMP/fio.log"; fail "fio"; }
grep -q "err= 0" "$TMP/fio.log" || { cat "$TMP/fio.log"; fail "fio reported errors"; }

# Whole disk, then unaligned patches, against an expected copy.
head -c $((128 * MiB)) /dev/urandom >"$TMP/data"
dd if="$TMP/data" of="$DISK" bs=1M conv=notrunc oflag=direct status=none
cmp "$TMP/data" "$DISK" || fail "disk differs after the first write"
head -c 70000 /dev/urandom >"$TMP/patch"
for off in 1 4095 $((MiB - 3)) $((77 * MiB + 12345)); do
  dd if="$TMP/patch" of="$DISK" bs=70000 seek="$off" oflag=seek_bytes conv=notrunc status=none
  dd if="$TMP/patch" of="$TMP/data" bs=70000 seek="$off" oflag=seek_bytes conv=notrunc status=none
done
cmp "$TMP/data" "$DISK" || fail "disk differs after unaligned writes"

# Punch holes: 16 whole extents (freed on the memservers, 2 copies
# each) and an unaligned range (zeroed); both read back as zeros.
used_before=$(pool_used)
fallocate -p -o $((32 * MiB)) -l $((16 * MiB)) "$DISK"
dd if=/dev/zero of="$TMP/data" bs=1M seek=32 count=16 conv=notrunc status=none
fallocate -p -o 1000 -l 70000 "$DISK"
dd if=/dev/zero of="$TMP/data" bs=70000 seek=1000 oflag=seek_bytes count=1 conv=notrunc status=none
cmp "$TMP/data" "$DISK" || fail "punched ranges do not read as zeros"
used_after=$(pool_used)
echo "memservers: $used_before bytes before the punch, $used_after after"
[ $((used_before - used_after)) -eq $((32 * MiB)) ] ||
  fail "punching 16 MiB freed $((used_before - used_after)) bytes, expected $((32 * MiB))"
[ "$(du -k "$DISK" | cut -f1)" -eq $((112 * 1024)) ] || fail "du: $(du -k "$DISK")"

# The size is fixed: truncate is refused and changes nothing.
truncate -s 1M "$DISK" 2>/dev/null && fail "truncate succeeded"
(echo x >"$DISK") 2>/dev/null && fail "open with O_TRUNC succeeded"
cmp "$TMP/data" "$DISK" || fail "disk differs after a refused truncate"

# Stop with SIGTERM: unmounted, every extent freed on the memservers.
stop_fuse term
[ "$(pool_used)" = 0 ] || fail "memservers hold $(pool_used) bytes after SIGTERM"

# Again, stopped with fusermount3 -u; encrypt=on this time.
EXPECT_SIZE=$((16 * MiB))
start_fuse size=16M replicas=2 encrypt=on
head -c $((16 * MiB)) /dev/urandom >"$TMP/data2"
dd if="$TMP/data2" of="$MNT/disk" bs=1M conv=notrunc oflag=direct status=none
cmp "$TMP/data2" "$MNT/disk" || fail "encrypted disk differs"
stop_fuse unmount
[ "$(pool_used)" = 0 ] || fail "memservers hold $(pool_used) bytes after unmount"
echo "PASS"
