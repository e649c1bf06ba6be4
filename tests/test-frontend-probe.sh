#!/bin/bash
# bench/frontend-probe (the NBD front end without a thread per request
# that run-bench.sh measures as the target "probe") serves the bytes it
# was given: fio verify=crc32c through it, over two memservers, with
# random 4 KiB writes at QD16 and sequential 1 MiB writes; a request
# across an extent boundary is refused and the connection goes on.
# Its figures are only worth reading if this holds.
source "${srcdir:-.}/functions.sh"
requires fio
PROBE=$abs_top_builddir/bench/frontend-probe
[ -x "$PROBE" ] || fail "no $PROBE: build the tree first (scripts/build)"

start_memserver s1
start_memserver s2
"$PROBE" --servers "$SERVERS" --size $((192 << 20)) --unix "$TMP/probe.sock" \
  >"$TMP/probe.log" 2>&1 &
_pids+=("$!")
uri="nbd+unix:///?socket=$TMP/probe.sock"
wait_until 30 "the probe listening" nbdinfo --size "$uri"
[ "$(nbdinfo --size "$uri")" = $((192 << 20)) ] || fail "probe: wrong size"

for job in "--rw=randwrite --bs=4k --iodepth=16 --size=192M --number_ios=20000" \
           "--rw=write --bs=1M --iodepth=4 --size=192M"; do
  echo "== fio $job"
  fio --name=verify --ioengine=nbd --uri="$uri" $job \
      --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=1 \
      --verify_state_save=0 --output="$TMP/fio.log" >/dev/null ||
    { cat "$TMP/fio.log"; fail "fio $job"; }
  grep -q "err= 0" "$TMP/fio.log" || { cat "$TMP/fio.log"; fail "fio reported errors"; }
done

# 8 KiB at 64 MiB - 4 KiB spans extents 0 and 1: refused (EINVAL); the
# data on both sides is what the 1 MiB job wrote, read back again.
fio --name=cross --ioengine=nbd --uri="$uri" --rw=write --bs=8k \
    --offset=$(((64 << 20) - 4096)) --size=8k --output="$TMP/cross.log" \
    >/dev/null 2>&1 && fail "a write across an extent boundary succeeded"
grep -q "Invalid argument" "$TMP/cross.log" ||
  { cat "$TMP/cross.log"; fail "the cross-extent write did not fail with EINVAL"; }
fio --name=verify --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=4 \
    --size=192M --verify=crc32c --verify_fatal=1 --randrepeat=1 \
    --verify_state_save=0 --verify_only=1 --output="$TMP/fio.log" >/dev/null ||
  { cat "$TMP/fio.log"; fail "data changed after the refused write"; }
echo "PASS"
