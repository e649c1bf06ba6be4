#!/bin/bash
# Trim frees whole extents on the memservers (memory returns to the
# donors, checked through STAT), trimmed and zeroed ranges read back as
# zeros, data outside them is intact, and block status reports holes.
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires fio
requires nbdcopy libnbd-bin

for i in 1 2 3; do start_memserver "s$i"; done
start_nbdkit size=128M replicas=2

[ "$(pool_used)" -eq 0 ] || fail "pool not empty at start"
head -c $((64 * 1024 * 1024)) /dev/urandom >"$TMP/data"
nbdcopy "$TMP/data" "$NBD_URI"
used=$(pool_used)
[ "$used" -eq $((2 * 64 * 1024 * 1024)) ] || fail "expected 128 MiB used for 64 MiB x 2 replicas, got $used"

# Trim 16 MiB at 8 MiB (whole extents), with fio's nbd engine.
fio --name=trim --ioengine=nbd --uri="$NBD_URI" --rw=trim --bs=1M \
    --offset=8M --size=16M --output="$TMP/fio.log" >/dev/null || { cat "$TMP/fio.log"; fail "fio trim"; }
used=$(pool_used)
[ "$used" -eq $((2 * 48 * 1024 * 1024)) ] || fail "after trimming 16 MiB expected 96 MiB used, got $used"

# Expected content: the trimmed range reads as zeros (rampool frees it).
dd if=/dev/zero of="$TMP/data" bs=1M seek=8 count=16 conv=notrunc status=none
nbdcopy "$NBD_URI" "$TMP/out"
cmp -n $((64 * 1024 * 1024)) "$TMP/data" "$TMP/out" || fail "content after trim"

# Sparse copy-out: nbdcopy asks for block status; holes must be holes.
nbdcopy --allocated "$NBD_URI" "$TMP/sparse.img"
cmp "$TMP/out" "$TMP/sparse.img" || fail "sparse copy differs"

# Trimming everything returns every byte to the donors.
fio --name=trimall --ioengine=nbd --uri="$NBD_URI" --rw=trim --bs=4M \
    --size=128M --output="$TMP/fio.log" >/dev/null || fail "fio trim all"
[ "$(pool_used)" -eq 0 ] || fail "pool not empty after trimming the whole disk"
echo "PASS"
