#!/bin/bash
# Recovery time: how long rampool takes to restore full redundancy
# after losing a memserver.  Fills a replicas=2 disk on 3 memservers,
# kill -9s one, and times until the plugin's stats file shows every
# extent healthy again (two good copies on the two survivors).
#
#   [RATE=64M] bench/recovery-time.sh [SIZE_GIB]      (default 1 GiB)
#
# The copy rate is bounded by design (the plugin's recovery-rate=,
# default 64 MiB/s) so that foreground I/O keeps most of the bandwidth;
# this measures what that bound gives end to end.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
gib=${1:-1}
source "$top/bench/pool.sh"
pool_init rampool-recovery KILL
pool_start_memservers 3 $((gib * 1024 + 256))M
pool_start_nbdkit size=${gib}G replicas=2 heartbeat-ms=200 rejoin-grace-ms=0 \
  recovery-rate="${RATE:-64M}" stats-file="$work/stats"
"$top/client/rampool" verify --mib=$((gib * 1024)) "$uri" >/dev/null
mapped=$(awk '/^extents_mapped/ {print $2}' "$work/stats")
kill -9 "${ms_pids[1]}"
wait "${ms_pids[1]}" 2>/dev/null || true
t0=$(date +%s.%N)
for _ in $(seq 6000); do
  if grep -q '^servers_up 2$' "$work/stats" && grep -q '^extents_degraded 0$' "$work/stats" &&
     grep -q "^extents_healthy $mapped\$" "$work/stats"; then break; fi
  sleep 0.05
done
t1=$(date +%s.%N)
recovered=$(awk '/^recovered/ {print $2}' "$work/stats")
python3 - "$t0" "$t1" "$recovered" "$gib" <<'PY'
import sys
t0, t1, n, gib = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = t1 - t0
print("recovery: %d GiB disk, replicas=2, 1 of 3 memservers killed: %d MiB re-replicated,"
      " full redundancy after %.1f s (%.0f MiB/s; %.1f s per GiB of disk)"
      % (gib, n, s, n / s, s / gib))
PY
