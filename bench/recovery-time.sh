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
work=$(mktemp -d /tmp/rampool-recovery.XXXXXX)
pids=()
cleanup () {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

servers=
for i in 1 2 3; do
  "$top/memserver/memserver" --listen 127.0.0.1:0 --size $((gib * 1024 + 256))M \
    --no-mlock --quiet --port-file "$work/p$i" 2>>"$work/ms$i.log" &
  pids+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 200); do [ -s "$work/p$i" ] && break; sleep 0.05; done
  servers+="${servers:+,}127.0.0.1:$(cat "$work/p$i")"
done
nbdkit -f -U "$work/sock" -P "$work/pid" "$top/nbdkit-plugin/.libs/nbdkit-rampool-plugin.so" \
  servers="$servers" size=${gib}G replicas=2 heartbeat-ms=200 rejoin-grace-ms=0 \
  recovery-rate="${RATE:-64M}" \
  stats-file="$work/stats" 2>>"$work/nbdkit.log" &
pids+=($!)
for _ in $(seq 200); do [ -s "$work/pid" ] && break; sleep 0.05; done
"$top/client/rampool" verify --mib=$((gib * 1024)) "nbd+unix:///?socket=$work/sock" >/dev/null
mapped=$(awk '/^extents_mapped/ {print $2}' "$work/stats")
kill -9 "${pids[1]}"
wait "${pids[1]}" 2>/dev/null || true
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
