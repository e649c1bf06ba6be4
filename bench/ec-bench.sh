#!/bin/bash
# Erasure coding against replication, in one run (loopback, fio's nbd
# engine):
#
#  1. Memory: the bytes the donors hold per GiB written (rampool verify
#     writes the whole 1 GiB disk), for replicas=2, replicas=3,
#     redundancy=ec:4+2 and ec:8+2 (10 memservers each).
#  2. Speed: bench/run-bench.sh with the targets rampool-r2 and
#     rampool-ec42 (4K random read and write at QD1 and QD16, 1M
#     sequential read and write): IOPS, p50/p99 and CPU per op side by
#     side.  BENCH_RUNTIME (default 8 here) and BENCH_ROUNDS pass through.
#  3. A slow donor: ec:4+2 on 6 memservers, 4K random reads at QD1 and
#     QD16 with ec-read-extra=0 and =1, first undisturbed, then with one
#     memserver stopped for 50 ms of every 100 ms (SIGSTOP/SIGCONT: a
#     donor that stalls, as one starved of CPU does): IOPS, p50, p99 and
#     p99.9 of each.
#  4. Rebuild: a 1 GiB disk on 7 memservers, one killed -9, time until
#     every stripe (or extent) is whole again: ec:4+2 against replicas=2.
#
#   bench/ec-bench.sh [PART...]     (parts 1 2 3 4; default all)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
source "$top/bench/pool.sh"
pool_init rampool-ec-bench KILL
parts=${*:-1 2 3 4}
RAMPOOL=$top/client/rampool
for c in fio nbdkit python3; do
  command -v "$c" >/dev/null || pool_die "$c not found"
done

stat_of () { awk -v k="$1" '$1 == k { print $2 }' "$work/stats" 2>/dev/null; }
used_sum () {
  local a total=0
  for a in ${servers//,/ }; do
    total=$(( total + $("$RAMPOOL" status --raw "$a" | awk '$2 == "up" { print $4 }') ))
  done
  echo "$total"
}
# fio_lat ARGS...: one fio job on $uri; prints "IOPS P50 P99 P99.9" (us).
fio_lat () {
  fio --name=j --ioengine=nbd --uri="$uri" --output-format=json \
    --output="$work/fio.json" --lat_percentiles=1 --time_based \
    --norandommap --randrepeat=0 "$@" >"$work/fio.err" 2>&1 ||
    { cat "$work/fio.err"; pool_die "fio failed"; }
  python3 - "$work/fio.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
d = j["read"] if j["read"]["io_bytes"] else j["write"]
p = d["lat_ns"]["percentile"]
print("%.0f %.0f %.0f %.0f" % (d["iops"], p["50.000000"] / 1000,
                              p["99.000000"] / 1000, p["99.900000"] / 1000))
EOF
}
wait_whole () {
  for _ in $(seq 12000); do
    [ "$(stat_of extents_degraded)" = 0 ] && [ "$(stat_of extents_unreachable)" = 0 ] &&
      [ -n "$(stat_of extents_mapped)" ] &&
      [ "$(stat_of extents_healthy)" = "$(stat_of extents_mapped)" ] && return 0
    sleep 0.05
  done
  pool_die "not whole after 10 minutes"
}

for part in $parts; do
case $part in
1)
  echo "== 1. donor memory per GiB written (10 memservers, 1 GiB disk)"
  printf '%-20s %14s %8s\n' redundancy "bytes held" "per GiB"
  for key in replicas=2 replicas=3 redundancy=ec:4+2 redundancy=ec:8+2; do
    pool_start_memservers 10 1G
    pool_start_nbdkit size=1G "$key"
    "$RAMPOOL" verify --mib=1024 "$uri" >/dev/null
    held=$(used_sum)
    printf '%-20s %14s %7.2fx\n' "$key" "$held" \
      "$(echo "$held / 1073741824" | bc -l)"
    pool_stop_nbdkit
    pool_stop_memservers
  done
  ;;
2)
  echo "== 2. speed: ec:4+2 against replicas=2 (bench/run-bench.sh)"
  BENCH_RUNTIME=${BENCH_RUNTIME:-8} BENCH_SIZE=${BENCH_SIZE:-1G} \
    BENCH_TARGETS="rampool-r2 rampool-ec42" BENCH_OUT="$work/bench" \
    "$top/bench/run-bench.sh" | sed -n '/^run-bench: == report/,$p;/^[A-Za-z|]/p' |
    grep -v "^run-bench: ==.*starting\|pre-writing"
  ;;
3)
  echo "== 3. 4K random reads with one of 6 donors stalling (ec:4+2; the donor"
  echo "   stopped for 50 ms of every 100 ms, SIGSTOP/SIGCONT)"
  printf '%-6s %-5s %-9s %8s %8s %8s %9s\n' extra depth donor IOPS "p50 us" \
    "p99 us" "p99.9 us"
  for extra in 0 1; do
    pool_start_memservers 6 512M
    pool_start_nbdkit size=256M redundancy=ec:4+2 ec-read-extra=$extra \
      timeout-ms=60000
    fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs=1M \
      --iodepth=4 --size=256M >/dev/null
    victim=${ms_pids[2]}
    for qd in 1 16; do
      read -r iops p50 p99 p999 < <(fio_lat --rw=randread --bs=4k \
        --iodepth=$qd --runtime=8)
      printf '%-6s %-5s %-9s %8s %8s %8s %9s\n' "$extra" "$qd" steady \
        "$iops" "$p50" "$p99" "$p999"
      ( while kill -0 "$victim" 2>/dev/null; do
          kill -STOP "$victim"; sleep 0.05; kill -CONT "$victim"; sleep 0.05
        done ) &
      staller=$!
      read -r iops p50 p99 p999 < <(fio_lat --rw=randread --bs=4k \
        --iodepth=$qd --runtime=8)
      kill "$staller"; wait "$staller" 2>/dev/null || true
      kill -CONT "$victim" 2>/dev/null || true
      printf '%-6s %-5s %-9s %8s %8s %8s %9s\n' "$extra" "$qd" stalling \
        "$iops" "$p50" "$p99" "$p999"
    done
    pool_stop_nbdkit
    pool_stop_memservers
  done
  ;;
4)
  echo "== 4. rebuild after one of 7 memservers is killed (1 GiB written)"
  printf '%-20s %10s %12s\n' redundancy seconds "MiB/s (disk)"
  for key in replicas=2 redundancy=ec:4+2; do
    pool_start_memservers 7 1G
    rm -f "$work/stats"
    pool_start_nbdkit size=1G "$key" heartbeat-ms=200 rejoin-grace-ms=0 \
      stats-file="$work/stats"
    "$RAMPOOL" verify --mib=1024 "$uri" >/dev/null
    wait_whole
    kill -9 "${ms_pids[1]}"
    t0=$(date +%s.%N)
    for _ in $(seq 200); do [ "$(stat_of servers_up)" = 6 ] && break; sleep 0.05; done
    wait_whole
    t1=$(date +%s.%N)
    secs=$(echo "$t1 - $t0" | bc -l)
    printf '%-20s %10.2f %12.0f\n' "$key" "$secs" "$(echo "1024 / $secs" | bc -l)"
    pool_stop_nbdkit
    pool_stop_memservers
  done
  ;;
*) pool_die "no part $part (1-4)" ;;
esac
done
