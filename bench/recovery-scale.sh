#!/bin/bash
# Recovery time against pool size: for each pool size N, the time
# rampool takes to restore full redundancy after losing one memserver,
# with the same amount of data on every donor.
#
# For each N: N memservers on loopback; nbdkit with the plugin over all
# of them (replicas=2, connections=1, heartbeat-ms=200,
# rejoin-grace-ms=0) on a disk of N*PER_DONOR_MIB/2 MiB, so each donor
# holds about PER_DONOR_MIB MiB of copies; the disk filled with
# `rampool verify`; one memserver killed with -9; the time until the
# plugin's stats file shows every extent with two good copies again on
# the N-1 left.  Prints N, MiB re-replicated (stats `recovered`, 1 MiB
# extents), seconds from the kill (failure detection included: the
# heartbeat is 200 ms, and the stats file is rewritten after each
# monitor pass, so figures under a second are good to about 0.2 s), and
# MiB/s.
#
#   [PER_DONOR_MIB=32] [MODES="relay copy"] bench/recovery-scale.sh [N...]
#   (default N: 10 50 200)
#
# Each N runs once per mode: `relay` (peer-copy=off: this nbdkit reads
# every lost copy from a survivor and writes it to the new server) and
# `copy` (peer-copy=on, the default: the survivor writes it straight
# into the new server, COPY), on a fresh pool each.  See bench/README.md,
# "Recovery time against pool size, measured".
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
per=${PER_DONOR_MIB:-32}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10 50 200)
for n in "${sizes[@]}"; do
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 3 ] || { echo "$0: N must be 3 or more: '$n'" >&2; exit 2; }
done
[[ $per =~ ^[0-9]+$ ]] && [ "$per" -ge 2 ] || { echo "$0: PER_DONOR_MIB: '$per'" >&2; exit 2; }
read -r -a modes <<<"${MODES:-relay copy}"
for m in "${modes[@]}"; do
  case $m in relay|copy) ;; *) echo "$0: MODES: '$m' is not relay or copy" >&2; exit 2 ;; esac
done
source "$top/bench/pool.sh"
pool_init rampool-recovery-scale KILL

# snap: read the stats file once (it is replaced whole, by rename), so
# that the figures tested together come from the same write.
snap () { stats=$(cat "$work/stats" 2>/dev/null || true); }
stat_of () { awk -v k="$1" '$1 == k { print $2 }' <<<"$stats"; }
whole () {
  [ "$(stat_of servers_up)" = $((n - 1)) ] && [ "$(stat_of extents_degraded)" = 0 ] &&
    [ "$(stat_of extents_healthy)" = "$mapped" ]
}
now () { date +%s.%N; }
# forget PID: it has been waited for; never signal it again at exit.
forget () {
  local p keep=()
  for p in "${pool_pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pool_pids=("${keep[@]}")
}

echo "load before: $(uptime)"
rows=()
for n in "${sizes[@]}"; do
 for mode in "${modes[@]}"; do
  peer=on
  [ "$mode" = copy ] || peer=off
  disk=$((n * per / 2))
  # Fresh port files: a stale one from the last N would be read as ready.
  rm -f "$work"/p[0-9]*
  t0=$(now)
  pool_start_memservers "$n" $((per * 3))M
  t1=$(now)
  rm -f "$work/stats"
  maxs=()
  [ "$n" -le 256 ] || maxs=(max-servers="$n")
  pool_start_nbdkit size=${disk}M extent-size=1M replicas=2 connections=1 \
    heartbeat-ms=200 rejoin-grace-ms=0 stats-file="$work/stats" \
    spare-servers=4096 peer-copy=$peer "${maxs[@]}"
  "$top/client/rampool" verify --mib="$disk" "$uri" >/dev/null
  # Every 1 MiB extent written: wait for a stats file that says so.
  mapped=$disk
  for _ in $(seq 200); do
    snap
    [ "$(stat_of extents_mapped)" = "$mapped" ] && [ "$(stat_of extents_healthy)" = "$mapped" ] &&
      [ "$(stat_of servers_up)" = "$n" ] && break
    sleep 0.05
  done
  [ "$(stat_of extents_healthy)" = "$mapped" ] ||
    pool_die "N=$n: the stats file does not show $mapped healthy extents after the fill"
  t2=$(now)

  victim=${ms_pids[1]}
  kill -9 "$victim"
  wait "$victim" 2>/dev/null || true
  forget "$victim"
  t_kill=$(now)
  for _ in $(seq 6000); do
    snap
    whole && break
    sleep 0.05
  done
  snap
  whole || pool_die "N=$n: recovery did not finish in 5 minutes"
  t_end=$(now)
  rec=$(stat_of recovered)
  pc=$(stat_of peer_copies)
  rows+=("$n $mode $rec $pc $t_kill $t_end")
  printf 'N=%d %s: memservers up in %.1f s, %d MiB disk filled in %.1f s, recovered %s MiB (%s by COPY)\n' \
    "$n" "$mode" "$(awk "BEGIN{print $t1 - $t0}")" "$disk" "$(awk "BEGIN{print $t2 - $t1}")" "$rec" "$pc" >&2

  pool_stop_nbdkit
  for p in "${ms_pids[@]}"; do [ "$p" = "$victim" ] || kill "$p" 2>/dev/null || true; done
  for p in "${ms_pids[@]}"; do
    [ "$p" = "$victim" ] && continue
    wait "$p" 2>/dev/null || true
    forget "$p"
  done
 done
done
echo "load after: $(uptime)"

python3 - "$per" "${rows[@]}" <<'PY'
import sys
per = sys.argv[1]
print("recovery of one lost memserver, replicas=2, connections=1, heartbeat-ms=200,"
      " ~%s MiB of copies per donor:" % per)
print("| N | mode | MiB re-replicated | by COPY | seconds | MiB/s |")
print("|---|---|---|---|---|---|")
secs_of = {}
for row in sys.argv[2:]:
    n, mode, rec, pc, t_kill, t_end = row.split()
    secs = float(t_end) - float(t_kill)
    secs_of[(n, mode)] = secs
    print("| %s | %s | %s | %s | %.2f | %.0f |" % (n, mode, rec, pc, secs,
                                                  int(rec) / secs))
for n in dict.fromkeys(r.split()[0] for r in sys.argv[2:]):
    if (n, "relay") in secs_of and (n, "copy") in secs_of:
        print("N=%s: copy takes %.2fx the relay's time" %
              (n, secs_of[(n, "copy")] / secs_of[(n, "relay")]))
PY
