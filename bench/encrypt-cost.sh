#!/bin/bash
# Cost of encrypt=on: the same rampool pool (3 memservers on loopback,
# replicas=2) with encrypt=off and encrypt=on, fio's nbd engine, in one
# run; prints each workload's IOPS and MiB/s and the ratio on/off.
#
#   [RUNTIME=10] bench/encrypt-cost.sh
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
runtime=${RUNTIME:-10}
work=$(mktemp -d /tmp/rampool-enc.XXXXXX)
pids=()
cleanup () {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

servers=
for i in 1 2 3; do
  "$top/memserver/memserver" --listen 127.0.0.1:0 --size 2G --no-mlock --quiet \
    --port-file "$work/p$i" 2>>"$work/ms$i.log" &
  pids+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 200); do [ -s "$work/p$i" ] && break; sleep 0.05; done
  servers+="${servers:+,}127.0.0.1:$(cat "$work/p$i")"
done

workloads=("randread 4k 16" "randwrite 4k 16" "randread 4k 1" "read 1m 4" "write 1m 4")
declare -A result
for enc in off on; do
  rm -f "$work/sock" "$work/pid"
  nbdkit -f -U "$work/sock" -P "$work/pid" "$top/nbdkit-plugin/.libs/nbdkit-rampool-plugin.so" \
    servers="$servers" size=1G replicas=2 encrypt=$enc 2>>"$work/nbdkit.log" &
  nbdkit_pid=$!
  for _ in $(seq 200); do [ -S "$work/sock" ] && [ -s "$work/pid" ] && break; sleep 0.05; done
  uri="nbd+unix:///?socket=$work/sock"
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
  kill "$nbdkit_pid"; wait "$nbdkit_pid" 2>/dev/null || true
done
printf '%-20s %12s %12s %12s %12s %8s\n' workload "off IOPS" "off MiB/s" "on IOPS" "on MiB/s" "on/off"
for w in "${workloads[@]}"; do
  read -r io0 bw0 <<<"${result["off $w"]}"
  read -r io1 bw1 <<<"${result["on $w"]}"
  set -- $w
  printf '%-20s %12s %12s %12s %12s %8s\n' "$1 $2 qd$3" "$io0" "$bw0" "$io1" "$bw1" \
    "$(python3 -c "print('%.2f' % ($io1 / $io0))")"
done
