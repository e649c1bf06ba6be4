#!/bin/bash
# Cost of encrypt=on: the same rampool pool (3 memservers on loopback,
# replicas=2) with encrypt=off and encrypt=on, fio's nbd engine, in one
# run; prints each workload's IOPS and MiB/s and the ratio on/off.
#
#   [RUNTIME=10] bench/encrypt-cost.sh
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
runtime=${RUNTIME:-10}
source "$top/bench/pool.sh"
pool_init rampool-enc
pool_start_memservers 3 2G

workloads=("randread 4k 16" "randwrite 4k 16" "randread 4k 1" "read 1m 4" "write 1m 4")
declare -A result
for enc in off on; do
  pool_start_nbdkit size=1G replicas=2 encrypt=$enc
  # Reads must hit written data.
  fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs=1m --size=1g \
      --iodepth=8 --output=/dev/null
  for w in "${workloads[@]}"; do
    set -- $w
    fio --name=b --ioengine=nbd --uri="$uri" --rw="$1" --bs="$2" --iodepth="$3" \
        --size=1g --time_based --runtime="$runtime" --output-format=json \
        --output="$work/out.json" >/dev/null
    result["$enc $w"]=$(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
d = j["read"] if j["read"]["io_bytes"] else j["write"]
print("%.0f %.1f" % (d["iops"], d["bw"] / 1024))' "$work/out.json")
  done
  pool_stop_nbdkit
done
printf '%-20s %12s %12s %12s %12s %8s\n' workload "off IOPS" "off MiB/s" "on IOPS" "on MiB/s" "on/off"
for w in "${workloads[@]}"; do
  read -r io0 bw0 <<<"${result["off $w"]}"
  read -r io1 bw1 <<<"${result["on $w"]}"
  set -- $w
  printf '%-20s %12s %12s %12s %12s %8s\n' "$1 $2 qd$3" "$io0" "$bw0" "$io1" "$bw1" \
    "$(python3 -c "print('%.2f' % ($io1 / $io0))")"
done
