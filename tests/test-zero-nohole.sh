#!/bin/bash
# Zeroing that must keep the range allocated does.  An NBD client that
# sends WRITE_ZEROES with NO_HOLE (the plugin then gets no
# NBDKIT_FLAG_MAY_TRIM), and fallocate(FALLOC_FL_ZERO_RANGE) on
# rampool-fuse's disk, ask for zeros that stay allocated: later writes
# there must not fail for want of room.  So:
#  - whole extents zeroed with NO_HOLE keep their memory on the
#    memservers (used bytes as STAT reports them do not drop), block
#    status still says data, and they read as zeros;
#  - the same without NO_HOLE frees them (used bytes drop by exactly
#    their copies), block status says hole;
#  - unmapped extents zeroed with NO_HOLE get mapped (used bytes grow);
#  - an unaligned NO_HOLE zero changes no allocation;
# with encrypt=off and =on (where zeros are encrypted data), and every
# byte of the disk checked against an expected copy.  The same through
# rampool-fuse: fallocate --zero-range keeps (and maps), --punch-hole
# frees.  The NBD client is libnbd (tests/nbd_zero.c).
MOUNT_NS=own            # rampool-fuse mounts: see functions.sh
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires nbdcopy libnbd-bin
requires fallocate util-linux
NBD_ZERO=$TESTS_BIN/nbd_zero

for i in 1 2 3; do start_memserver "s$i"; done

# The expected disk: 8 MiB of data, then zeros.
head -c $((8 * MiB)) /dev/urandom >"$TMP/data"
truncate -s $((32 * MiB)) "$TMP/data"
cp "$TMP/data" "$TMP/want"
zero_want () {        # OFFSET LENGTH: the expected copy reads zeros there
  head -c "$2" /dev/zero | dd of="$TMP/want" bs=64K seek="$1" oflag=seek_bytes \
    conv=notrunc status=none iflag=fullblock
}
expect_used () {      # BYTES WHAT
  local used
  used=$(pool_used)
  [ "$used" = "$1" ] || fail "$2: the memservers hold $used bytes, expected $1"
}
expect_status () {    # OFFSET LENGTH data|hole,zero WHAT
  "$NBD_ZERO" "$NBD_URI" status "$1" "$2" >"$TMP/status" ||
    fail "$4: block status failed"
  awk -v s="$1" -v e="$(( $1 + $2 ))" -v want="$3" '
    $1 < e && $1 + $2 > s && $3 != want { bad = 1 }
    { if ($1 <= s && $1 + $2 > s) cov = 1 }
    END { exit !(cov && !bad) }' "$TMP/status" ||
    { cat "$TMP/status"; fail "$4: block status of $1+$2 is not all '$3'"; }
}
check_disk () {       # WHAT
  nbdcopy "$NBD_URI" "$TMP/out"
  cmp "$TMP/want" "$TMP/out" || fail "$1: the disk differs from the expected copy"
}

for enc in off on; do
  cp "$TMP/data" "$TMP/want"
  start_nbdkit size=32M replicas=2 encrypt=$enc
  "$TESTS_BIN/nbd_blocks" "$NBD_URI" $MiB "$TMP/data" write 0 8
  used0=$(pool_used)
  [ "$used0" = $((16 * MiB)) ] || fail "encrypt=$enc: 8 extents x 2 copies hold $used0 bytes"
  expect_status 0 $((8 * MiB)) data "encrypt=$enc: written"
  expect_status $((8 * MiB)) $((24 * MiB)) hole,zero "encrypt=$enc: never written"

  # NO_HOLE on whole extents 2 and 3: zeros, still allocated.
  "$NBD_ZERO" "$NBD_URI" zero-nohole $((2 * MiB)) $((2 * MiB))
  zero_want $((2 * MiB)) $((2 * MiB))
  expect_used "$used0" "encrypt=$enc: NO_HOLE zero of 2 whole extents"
  expect_status $((2 * MiB)) $((2 * MiB)) data "encrypt=$enc: NO_HOLE zero"
  check_disk "encrypt=$enc: after a NO_HOLE zero"

  # Unaligned, across extents 6 and 7, NO_HOLE: nothing freed either.
  "$NBD_ZERO" "$NBD_URI" zero-nohole $((6 * MiB + 1000)) $((MiB + MiB / 2))
  zero_want $((6 * MiB + 1000)) $((MiB + MiB / 2))
  expect_used "$used0" "encrypt=$enc: unaligned NO_HOLE zero"

  # Unmapped extents 10 and 11, NO_HOLE: mapped now, reading zeros.
  "$NBD_ZERO" "$NBD_URI" zero-nohole $((10 * MiB)) $((2 * MiB))
  expect_used $((used0 + 4 * MiB)) "encrypt=$enc: NO_HOLE zero of 2 unmapped extents"
  expect_status $((10 * MiB)) $((2 * MiB)) data "encrypt=$enc: NO_HOLE zero of unmapped extents"

  # Without NO_HOLE (MAY_TRIM): extents 4 and 5 are freed.
  used1=$(pool_used)
  "$NBD_ZERO" "$NBD_URI" zero $((4 * MiB)) $((2 * MiB))
  zero_want $((4 * MiB)) $((2 * MiB))
  expect_used $((used1 - 4 * MiB)) "encrypt=$enc: zero of 2 whole extents with MAY_TRIM"
  expect_status $((4 * MiB)) $((2 * MiB)) hole,zero "encrypt=$enc: zero with MAY_TRIM"
  check_disk "encrypt=$enc: at the end"
  # The mapped extents still take writes.
  "$TESTS_BIN/nbd_blocks" "$NBD_URI" $MiB "$TMP/data" write 2 2
  dd if="$TMP/data" of="$TMP/want" bs=1M skip=2 seek=2 count=2 conv=notrunc status=none
  check_disk "encrypt=$enc: extents 2 and 3 rewritten"
  echo "encrypt=$enc: NO_HOLE kept $((used0 / MiB)) MiB on the memservers;" \
    "without it 2 extents were freed"
  stop_nbdkit
  expect_used 0 "encrypt=$enc: after nbdkit stopped"
done

# rampool-fuse: fallocate --zero-range keeps, --punch-hole frees.
fuse_setup
EXPECT_SIZE=$((32 * MiB))
start_fuse size=32M replicas=2
DISK=$MNT/disk
cp "$TMP/data" "$TMP/want"
dd if="$TMP/data" of="$DISK" bs=1M count=8 conv=notrunc oflag=direct status=none
used0=$(pool_used)
[ "$used0" = $((16 * MiB)) ] || fail "fuse: 8 extents x 2 copies hold $used0 bytes"
fallocate --zero-range -o $((2 * MiB)) -l $((2 * MiB)) "$DISK"
zero_want $((2 * MiB)) $((2 * MiB))
expect_used "$used0" "fuse: fallocate --zero-range of 2 whole extents"
fallocate --zero-range -o $((6 * MiB + 1000)) -l $((MiB + MiB / 2)) "$DISK"
zero_want $((6 * MiB + 1000)) $((MiB + MiB / 2))
expect_used "$used0" "fuse: unaligned fallocate --zero-range"
fallocate --zero-range -o $((10 * MiB)) -l $((2 * MiB)) "$DISK"
expect_used $((used0 + 4 * MiB)) "fuse: fallocate --zero-range of 2 unmapped extents"
[ "$(du -k "$DISK" | cut -f1)" -eq $((10 * 1024)) ] || fail "fuse: du after --zero-range: $(du -k "$DISK")"
used1=$(pool_used)
fallocate --punch-hole -o $((4 * MiB)) -l $((2 * MiB)) "$DISK"
zero_want $((4 * MiB)) $((2 * MiB))
expect_used $((used1 - 4 * MiB)) "fuse: fallocate --punch-hole of 2 whole extents"
[ "$(du -k "$DISK" | cut -f1)" -eq $((8 * 1024)) ] || fail "fuse: du after --punch-hole: $(du -k "$DISK")"
cmp "$TMP/want" "$DISK" || fail "fuse: the disk differs from the expected copy"
stop_fuse unmount
expect_used 0 "fuse: after unmount"
echo "PASS"
