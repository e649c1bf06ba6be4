#!/bin/bash
# Recovery: how long rampool takes to restore full redundancy after
# losing a memserver, on an idle disk and under foreground load, in one
# run.
#
#  1. Idle: a replicas=2 disk on 3 memservers, filled; one memserver is
#     killed with -9; time until the plugin's stats file shows every
#     extent with two good copies again.
#  2. Busy: the same on a fresh pool, with fio 4K random reads (QD16)
#     running: first RUNTIME seconds undisturbed, then a memserver is
#     killed and fio runs RUNTIME seconds more while recovery proceeds.
#     Prints the recovery time under load and the foreground IOPS during
#     it against the undisturbed IOPS.
#
#   [RATE=0] [RUNTIME=10] [PEER=on] bench/recovery-time.sh [SIZE_GIB]
#   (default 1 GiB)
#
# RATE sets the plugin's recovery-rate= (a ceiling; 0, the default: none,
# recovery yields to foreground I/O instead).  PEER sets peer-copy= (on,
# the default: each copy is written by a surviving memserver straight
# into the new one; off: this nbdkit reads and writes every copy).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
gib=${1:-1}
rate=${RATE:-0}
peer=${PEER:-on}
runtime=${RUNTIME:-10}
source "$top/bench/pool.sh"
pool_init rampool-recovery KILL

stat_of () { awk -v k="$1" '$1 == k { print $2 }' "$work/stats"; }
whole () {
  [ "$(stat_of servers_up)" = 2 ] && [ "$(stat_of extents_degraded)" = 0 ] &&
    [ "$(stat_of extents_healthy)" = "$mapped" ]
}
# start_pool: 3 fresh memservers and nbdkit, the disk filled.
start_pool () {
  pool_start_memservers 3 $((gib * 1024 + 256))M
  rm -f "$work/stats"
  pool_start_nbdkit size=${gib}G replicas=2 heartbeat-ms=200 rejoin-grace-ms=0 \
    recovery-rate="$rate" peer-copy="$peer" stats-file="$work/stats"
  "$top/client/rampool" verify --mib=$((gib * 1024)) "$uri" >/dev/null
  for _ in $(seq 100); do [ -s "$work/stats" ] && break; sleep 0.05; done
  mapped=$(stat_of extents_mapped)
}
# kill_and_time: kill -9 memserver 1; sets secs, the time to full
# redundancy.
kill_and_time () {
  kill -9 "${ms_pids[1]}"
  wait "${ms_pids[1]}" 2>/dev/null || true
  local t0 t1
  t0=$(date +%s.%N)
  for _ in $(seq 12000); do whole && break; sleep 0.05; done
  whole || pool_die "recovery did not finish in 10 minutes"
  t1=$(date +%s.%N)
  secs=$(python3 -c "print('%.2f' % ($t1 - $t0))")
}
fio_iops () {  # fio_iops SECONDS: 4K random reads, QD16
  fio --name=fg --ioengine=nbd --uri="$uri" --rw=randread --bs=4k \
      --iodepth=16 --size=${gib}g --time_based --runtime="$1" \
      --output-format=json --output="$work/fio.json" >/dev/null
  python3 -c '
import json, sys
print("%.0f" % json.load(open(sys.argv[1]))["jobs"][0]["read"]["iops"])' "$work/fio.json"
}

# ---- 1. idle
start_pool
kill_and_time
idle_secs=$secs
idle_rec=$(stat_of recovered)
pool_stop_nbdkit
pool_stop_memservers

# ---- 2. busy
start_pool
base=$(fio_iops "$runtime")
fio_iops "$runtime" >"$work/during" &
fio_pid=$!
kill_and_time
busy_secs=$secs
wait "$fio_pid"
during=$(cat "$work/during")
python3 - "$gib" "$rate" "$idle_rec" "$idle_secs" "$busy_secs" "$base" "$during" \
  "$runtime" "$peer" <<'PY'
import sys
gib, rate, n, idle, busy, base, during, runtime, peer = sys.argv[1:]
n, idle, busy = int(n), float(idle), float(busy)
print("recovery, %s GiB disk, replicas=2, 1 of 3 memservers killed, recovery-rate=%s,"
      " peer-copy=%s:" % (gib, rate, peer))
print("  idle disk: %d MiB re-replicated, full redundancy after %.1f s (%.0f MiB/s)"
      % (n, idle, n / idle))
print("  under 4K randread QD16: full redundancy after %.1f s (%.0f MiB/s);"
      " foreground %s IOPS over %s s with the recovery in it vs %s alone (%.2f)"
      % (busy, n / busy, during, runtime, base, float(during) / float(base)))
PY
