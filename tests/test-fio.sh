#!/bin/bash
# fio's nbd engine with verify=crc32c: random 4 KiB writes and
# sequential 1 MiB writes, each block checksummed and verified on read.
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires fio

for i in 1 2 3; do start_memserver "s$i"; done
start_nbdkit size=256M replicas=2

for job in "--rw=randwrite --bs=4k --iodepth=16 --size=64M" \
           "--rw=write --bs=1M --iodepth=4 --size=256M" \
           "--rw=randwrite --bsrange=512-128k --iodepth=8 --size=128M --offset=64M"; do
  echo "== fio $job"
  fio --name=verify --ioengine=nbd --uri="$NBD_URI" $job \
      --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=1 --verify_state_save=0 \
      --output="$TMP/fio.log" >/dev/null ||
    { cat "$TMP/fio.log"; fail "fio $job"; }
  grep -q "err= 0" "$TMP/fio.log" || { cat "$TMP/fio.log"; fail "fio reported errors"; }
done
echo "PASS"
