#!/bin/bash
# rdma-guest.sh — TCP against RDMA to the same memservers, in ONE run of
# the RDMA guest (tests/vm/run-rdma.sh: QEMU TCG, Soft-RoCE).  The guest
# runs bench/vm/rdma-bench-guest.sh: two memservers listening on TCP and
# RDMA at the guest's two rxe addresses; for replicas=1 and 2 and each
# transport, nbdkit + plugin, the disk prefilled, then fio (ioengine=nbd)
# 4 KiB randread QD1, randread QD16, randwrite QD16, with the CPU time of
# the memservers and of nbdkit per operation.  This script prints the
# table and the RDMA/TCP ratios.
#
#   bench/rdma-guest.sh [--no-build]
#
# Environment (defaults in brackets): BENCH_RUNTIME [5] seconds per job,
# BENCH_SIZE [64M], BENCH_REPLICAS ["1 2"], BENCH_IDLE [5] (seconds of
# idle sampling per pool), BENCH_TRANSPORTS ["tcp rdma"] (run order),
# BENCH_OUT [./bench-results] (results go to $BENCH_OUT/rdma-<UTC time>/),
# BENCH_VM_CACHE [bench/vm/work] (the guest build), BENCH_VM_LOCK
# [$BENCH_VM_CACHE/qemu.lock] (held while the guest runs: one QEMU guest
# at a time), RP_VM_MEM_MB [1536], RP_VM_TIMEOUT, RP_VM_SCRIPT_TIMEOUT
# (derived from the job count), RP_VM_BUILDDIR [this tree].
#
# Needs what tests/vm/run-rdma.sh needs (tests/vm/README.md), and the
# build: ./configure --with-rdma=yes && make &&
# make -C tests test_parallel_io nbd_blocks test_pool_io.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=1
case "${1:-}" in
  --no-build) build=0 ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "rdma-guest: unknown argument '$1'" >&2; exit 1 ;;
esac

runtime=${BENCH_RUNTIME:-5}
size=${BENCH_SIZE:-64M}
replicas=${BENCH_REPLICAS:-1 2}
idle=${BENCH_IDLE:-5}
transports=${BENCH_TRANSPORTS:-tcp rdma}
cache=${BENCH_VM_CACHE:-$top/bench/vm/work}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
lock=${BENCH_VM_LOCK:-$cache/qemu.lock}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
outdir=${BENCH_OUT:-./bench-results}/rdma-$stamp
mkdir -p "$outdir"

# Per pool: prefill (slow under TCG) + idle + 3 jobs; twice that as margin.
n=0
for _ in $replicas; do for _ in $transports; do n=$((n + 1)); done; done
script_timeout=${RP_VM_SCRIPT_TIMEOUT:-$((120 + n * 2 * (60 + idle + 3 * (runtime + 5))))}
export RP_VM_SCRIPT_TIMEOUT=$script_timeout
export RP_VM_TIMEOUT=${RP_VM_TIMEOUT:-$((script_timeout + 120))}
export RP_VM_MEM_MB=${RP_VM_MEM_MB:-1536}
export RP_VM_CACHE=$cache
export RP_VM_BUILDDIR=${RP_VM_BUILDDIR:-$top}

job=
cleanup () {
  local rc=$?
  trap - EXIT INT TERM
  # run-rdma.sh stops its QEMU on TERM (its own trap).
  if [ -n "$job" ] && kill -0 "$job" 2>/dev/null; then
    kill -TERM "$job" 2>/dev/null || true
    wait "$job" 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Reuse the kernel package tests/vm already downloaded, if any.
for deb in "$top"/tests/vm/work/linux-image-*_amd64.deb; do
  [ -f "$deb" ] && [ ! -e "$cache/${deb##*/}" ] &&
    { ln "$deb" "$cache/" 2>/dev/null || cp "$deb" "$cache/"; }
done

args=()
[ $build = 1 ] || args+=(--no-build)
for e in BENCH_RUNTIME="$runtime" BENCH_SIZE="$size" BENCH_REPLICAS="$replicas" \
         BENCH_IDLE="$idle" BENCH_TRANSPORTS="$transports"; do
  args+=(-e "$e")
done

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "host: $(uname -srm), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "commit: $(git -C "$top" describe --always --dirty 2>/dev/null || echo unknown)"
  echo "qemu: $(qemu-system-x86_64 --version | head -n1)"
  echo "settings: runtime=${runtime}s size=$size replicas=\"$replicas\" idle=${idle}s" \
       "transports=\"$transports\" guest ${RP_VM_MEM_MB} MiB"
} | tee "$outdir/info.txt"

# Jobs in the background, so a signal runs the trap at once.
echo "rdma-guest: waiting for $lock, then booting the guest" >&2
exec 9>"$lock"
flock 9 &
job=$!
wait "$job"
bash "$top/tests/vm/run-rdma.sh" "${args[@]}" \
  "$top/bench/vm/rdma-bench-guest.sh" >"$outdir/guest.log" 2>&1 &
job=$!
rc=0
wait "$job" || rc=$?
job=
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$outdir/info.txt"
if [ $rc -ne 0 ]; then
  tail -n 40 "$outdir/guest.log" >&2
  echo "rdma-guest: the guest run failed (log: $outdir/guest.log)" >&2
  exit 1
fi
grep '^ROW ' "$outdir/guest.log" | sed 's/^ROW //' >"$outdir/rows.txt"

# The table, then per replicas and workload the RDMA/TCP ratios.
awk '
  NR == 1 { next }
  {
    k = $2 " " $3
    if (!(k in seen)) { seen[k] = 1; keys[++nk] = k }
    for (i = 4; i <= 13; i++) v[$1, k, i] = $i
    have[$1, k] = 1
    rows[++nr] = $0
  }
  function ratio(a, b) { return (b > 0) ? sprintf("%.2f", a / b) : "-" }
  END {
    printf "%-5s %-2s %-18s %6s %6s %8s %8s %9s %9s %9s %9s %10s %9s\n",
      "tr", "r", "workload", "IOPS", "ops", "p50 us", "p99 us",
      "ms us/op", "ms net", "nbd us/op", "sirq us/op", "all us/op", "ms idle"
    for (i = 1; i <= nr; i++) {
      split(rows[i], f, " ")
      printf "%-5s %-2s %-18s %6s %6s %8s %8s %9s %9s %9s %9s %10s %9s\n",
        f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[13], f[9], f[10], f[11], f[12] " us/s"
    }
    print ""
    print "RDMA/TCP (IOPS: above 1 = RDMA faster; latency and CPU: below 1 = RDMA lower)"
    printf "%-2s %-18s %6s %6s %6s %9s %9s %6s %9s %9s %9s %9s %6s\n",
      "r", "workload", "IOPS", "p50", "p99", "ms tcp", "ms rdma", "ms",
      "net tcp", "net rdma", "nbd tcp", "nbd rdma", "nbd"
    for (j = 1; j <= nk; j++) {
      k = keys[j]
      if (!have["tcp", k] || !have["rdma", k]) continue
      printf "%-2s %-18s %6s %6s %6s %9s %9s %6s %9s %9s %9s %9s %6s\n",
        substr(k, 1, index(k, " ") - 1), substr(k, index(k, " ") + 1),
        ratio(v["rdma", k, 4], v["tcp", k, 4]),
        ratio(v["rdma", k, 6], v["tcp", k, 6]),
        ratio(v["rdma", k, 7], v["tcp", k, 7]),
        v["tcp", k, 8], v["rdma", k, 8], ratio(v["rdma", k, 8], v["tcp", k, 8]),
        v["tcp", k, 13], v["rdma", k, 13],
        v["tcp", k, 9], v["rdma", k, 9], ratio(v["rdma", k, 9], v["tcp", k, 9])
    }
  }' "$outdir/rows.txt" | tee "$outdir/table.txt"
cat <<'EOF'

Absolute figures mean nothing here: the guest is emulated (QEMU TCG) and
its RDMA is Soft-RoCE, done in software by the guest kernel; the TCP path
runs over the guest's loopback.  Only the ratios and the CPU per
operation say anything.  ms = memserver process CPU (utime+stime, all
memservers), nbd = nbdkit's, sirq = the guest's softirq time, all = the
guest's busy time (everything, fio included), each per operation; "ms
idle" = the memservers' CPU with the pool open and no I/O (heartbeats),
"ms net" = ms less that idle rate over the job's time (CPU is counted
in 10 ms ticks: a few ticks per job are noise at these operation counts).
Over Soft-RoCE the RDMA work (the responder writing and reading the
memserver's registered memory) runs in the guest kernel's rxe tasklets
(softirq), charged to no memserver: memserver CPU near 0 shows that
the memserver does no user-space work per page, not that the work is free.
EOF
echo "results: $outdir"
