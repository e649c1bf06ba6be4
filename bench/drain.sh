#!/bin/bash
# Donors leaving: what a drain and a shrink cost.
#
#  1. Drain: a 1 GiB disk, replicas=2, on 4 memservers; 4K random reads
#     and writes (fio, nbd engine, iodepth 16) run for RUNTIME seconds
#     alone, then again while memserver 1 is drained with `rampool
#     drain`.  Prints how long the drain took, how much it moved, and
#     the foreground IOPS during it against the baseline.
#  2. Shrink (root, a memory cgroup): memserver 1 runs with --size auto
#     in a cgroup of its own; a process in that cgroup takes memory, and
#     the time from then until the client has moved every extent asked
#     back is printed (the reaction of the whole loop: sampling,
#     RECLAIM, moving at recovery-rate, FREE).
#
#   [RUNTIME=20] [RATE=64M] bench/drain.sh
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
runtime=${RUNTIME:-20}
rate=${RATE:-64M}
source "$top/bench/pool.sh"
pool_init rampool-drain KILL
rampool=$top/client/rampool

fio_iops () {  # fio_iops SECONDS OUTPUT: 4K random mixed I/O
  fio --name=fg --ioengine=nbd --uri="$uri" --rw=randrw --bs=4k --iodepth=16 \
      --size=1g --time_based --runtime="$1" --output-format=json \
      --output="$2" >/dev/null
  python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
print("%.0f" % (j["read"]["iops"] + j["write"]["iops"]))' "$2"
}
stat_of () { awk -v k="$1" '$1 == k { print $2 }' "$work/stats"; }

# ---- 1. drain
pool_start_memservers 4 1G
pool_start_nbdkit size=1G replicas=2 heartbeat-ms=200 recovery-rate="$rate" \
  stats-file="$work/stats"
fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs=1m --size=1g \
    --iodepth=8 --output=/dev/null
base=$(fio_iops "$runtime" "$work/base.json")
s1=${servers%%,*}
held=$("$rampool" status --raw "$s1" | awk '{ print $4 }')
fio_iops "$runtime" "$work/during.json" >"$work/during" &
fio_pid=$!
t0=$(date +%s.%N)
"$rampool" drain "$s1" >"$work/drain.out"
t1=$(date +%s.%N)
wait "$fio_pid"
during=$(cat "$work/during")
python3 - "$t0" "$t1" "$held" "$base" "$during" "$runtime" "$rate" <<'PY'
import sys
t0, t1, held, base, during, runtime, rate = sys.argv[1:]
s = float(t1) - float(t0)
print("drain: %d MiB moved off 1 of 4 memservers in %.1f s (%.0f MiB/s; recovery-rate=%s)"
      % (int(held) >> 20, s, (int(held) >> 20) / s, rate))
print("foreground 4K randrw qd16: %s IOPS alone, %s IOPS over %s s with the drain"
      " in it (ratio %.2f)" % (base, during, runtime, float(during) / float(base)))
PY
pool_stop_nbdkit

# ---- 2. shrink reaction
if [ ! -w /sys/fs/cgroup/memory ]; then
  echo "shrink: skipped (needs root and a cgroup v1 memory controller)"
  exit 0
fi
cg=/sys/fs/cgroup/memory/rampool-bench-$$
mkdir "$cg"
cg_gone () {
  local p
  for p in $(cat "$cg/cgroup.procs" 2>/dev/null); do
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  for _ in $(seq 50); do [ -z "$(cat "$cg/cgroup.procs" 2>/dev/null)" ] && break; sleep 0.1; done
  rmdir "$cg" 2>/dev/null || true
  pool_cleanup
}
trap cg_gone EXIT
trap 'exit 1' INT TERM HUP PIPE
echo $((768 << 20)) >"$cg/memory.limit_in_bytes"
sh -c "echo \$\$ >$cg/cgroup.procs && exec $top/memserver/memserver --listen 127.0.0.1:0 \
  --size auto --max-size 512M --headroom 128M --no-mlock --port-file $work/pa" \
  2>"$work/msa.log" &
pool_pids+=($!)
for _ in $(seq 200); do [ -s "$work/pa" ] && break; sleep 0.05; done
a=127.0.0.1:$(cat "$work/pa")
servers="$a,$(echo "$servers" | cut -d, -f2-)"
pool_start_nbdkit size=1G replicas=2 heartbeat-ms=200 recovery-rate="$rate" \
  stats-file="$work/stats"
fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs=1m --size=1g \
    --iodepth=8 --output=/dev/null
before=$("$rampool" status --raw "$a" | awk '{ print $4 }')
m0=$(stat_of migrated)
# Leave the cgroup 64 MiB short of the head-room (the memserver's own
# overhead aside).
hog_mib=$(( 768 - (before >> 20) - 128 + 64 - 16 ))
python3 -c '
import sys, time
b = bytearray(b"\x01") * (int(sys.argv[1]) << 20)
open(sys.argv[2], "w").write("x")
time.sleep(3600)' "$hog_mib" "$work/hog" &
hog=$!
pool_pids+=($hog)
echo "$hog" >"$cg/cgroup.procs"
t0=$(date +%s.%N)
asked () {
  sed -n 's/.*asked session [0-9]* for \([0-9]*\) extent.*/\1/p' "$work/msa.log" |
    awk '{ n += $1 } END { print n + 0 }'
}
for _ in $(seq 1200); do
  n=$(asked)
  [ "$n" -gt 0 ] && [ $(( $(stat_of migrated) - m0 )) -ge "$n" ] && break
  sleep 0.05
done
t1=$(date +%s.%N)
after=$("$rampool" status --raw "$a" | awk '{ print $4 }')
python3 - "$t0" "$t1" "$(asked)" "$before" "$after" "$hog_mib" <<'PY'
import sys
t0, t1, n, before, after, hog = sys.argv[1:]
print("shrink: a %s MiB process started in the donor's 768 MiB cgroup (head-room 128 MiB):"
      " %s extents asked back and moved %.1f s later; the donor went from %d to %d MiB"
      % (hog, n, float(t1) - float(t0), int(before) >> 20, int(after) >> 20))
PY
