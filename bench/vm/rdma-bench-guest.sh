#!/bin/bash
# rdma-bench-guest.sh — runs INSIDE the RDMA guest (bench/rdma-guest.sh
# boots it through tests/vm/run-rdma.sh): TCP against RDMA to the same
# memservers, on the same Soft-RoCE addresses, in one run.
#
# Two memservers, each listening on TCP and on RDMA at one of the guest's
# addresses ($RPVM_ADDR1, $RPVM_ADDR2).  For each replicas setting and each
# transport: nbdkit + plugin on a Unix socket, the disk prefilled with
# 1 MiB writes (reads hit real data), a few idle seconds (background CPU:
# heartbeats), then fio (ioengine=nbd, time_based) 4 KiB randread QD1,
# randread QD16, randwrite QD16.  Around every job: utime+stime of each
# memserver and of nbdkit (/proc/PID/stat) and the guest's /proc/stat
# (softirq, all busy time), divided by the operations fio completed.
#
# Settings (environment, from run-rdma.sh -e): BENCH_RUNTIME [5] seconds
# per job, BENCH_SIZE [64M] disk, BENCH_REPLICAS ["1 2"], BENCH_IDLE [5]
# seconds of idle sampling, BENCH_TRANSPORTS ["tcp rdma"] in run order.
# Output: one "ROW ..." line per job on stdout and in $RPVM_OUT/rows.txt.
source "${srcdir:-.}/functions.sh"
[ -n "${RPVM_ADDR1:-}" ] && [ -n "${RPVM_ADDR2:-}" ] ||
  fail "RPVM_ADDR1/2 not set: run this inside the guest"
runtime=${BENCH_RUNTIME:-5}
size=${BENCH_SIZE:-64M}
replicas_list=${BENCH_REPLICAS:-1 2}
idle=${BENCH_IDLE:-5}
transports=${BENCH_TRANSPORTS:-tcp rdma}
out=${RPVM_OUT:-$TMP}
rows=$out/rows.txt
: >"$rows"
step () { echo "== [${SECONDS}s] $*"; }
RPORT=7471

# USER_HZ: /proc tick counts are in 1/100 s on Linux (no getconf here).
HZ=100

# CPU ticks (utime + stime) of process PID.
proc_ticks () {
  # The command name (field 2) may hold spaces: cut after its ')'.
  local s
  s=$(cat "/proc/$1/stat") || { echo 0; return; }
  s=${s##*\) }
  # Now field 1 is the state (field 3 of the full line): utime is 12.
  echo "$s" | awk '{ print $12 + $13 }'
}

# "SOFTIRQ BUSY": ticks of the whole guest (/proc/stat's cpu line).
guest_ticks () {
  awk '$1 == "cpu" { print $8, $2 + $3 + $4 + $7 + $8 }' /proc/stat
}

# Sum of proc_ticks over the memservers (start_memserver sets MS_PID_*).
# shellcheck disable=SC2154
ms_ticks () {
  echo $(( $(proc_ticks "$MS_PID_s1") + $(proc_ticks "$MS_PID_s2") ))
}

# per_op TICKS: microseconds of CPU per operation ($ops of the job).
per_op () {
  awk -v d="$1" -v n="$ops" -v hz=$HZ 'BEGIN { printf "%.1f", d * 1e6 / hz / n }'
}

# ms_net: the memservers' CPU per operation less their idle rate
# (heartbeats, measured before the jobs) over the job's wall time.
ms_net () {
  awk -v d=$((m1 - m0)) -v i="$idle_ticks" -v s="$idle" -v w0="$w0" \
      -v w1="$w1" -v n="$ops" -v hz=$HZ \
    'BEGIN { x = (d - i / s * (w1 - w0)) * 1e6 / hz / n; printf "%.1f", x }'
}

# Field from fio's JSON (pretty-printed, one key per line): the data
# direction that did the I/O; prints "IOPS OPS P50_US P99_US" (fio's
# lat, submission to completion, as bench/README.md explains).
fio_summary () {
  awk '
    /^      "read" : \{/ { dir = "read" }
    /^      "write" : \{/ { dir = "write" }
    /^      "trim" : \{/ { dir = "" }
    /"lat_ns" : \{/ { inlat = 1 }
    inlat && /^          \}/ { inlat = 0 }
    dir != "" && /"total_ios" :/ { gsub(/[ ,]/, "", $3); ios[dir] = $3 }
    dir != "" && /"iops" :/ { gsub(/[ ,]/, "", $3); iops[dir] = $3 }
    dir != "" && inlat && /"50.000000" :/ { gsub(/[ ,]/, "", $3); p50[dir] = $3 }
    dir != "" && inlat && /"99.000000" :/ { gsub(/[ ,]/, "", $3); p99[dir] = $3 }
    END {
      d = (ios["write"] > ios["read"]) ? "write" : "read"
      printf "%.0f %d %.1f %.1f\n", iops[d], ios[d], p50[d] / 1000, p99[d] / 1000
    }' "$1"
}

step "memservers: TCP and RDMA on $RPVM_ADDR1 and $RPVM_ADDR2"
MS_SIZE=192M MS_LISTEN=$RPVM_ADDR1:0 start_memserver s1 --listen-rdma "$RPVM_ADDR1:$RPORT"
MS_SIZE=192M MS_LISTEN=$RPVM_ADDR2:0 start_memserver s2 --listen-rdma "$RPVM_ADDR2:$RPORT"
TSERVERS=$SERVERS
RSERVERS=rdma://$RPVM_ADDR1:$RPORT,rdma://$RPVM_ADDR2:$RPORT
echo "tcp:  $TSERVERS"
echo "rdma: $RSERVERS"
uname -r
echo "ROW transport replicas workload iops ops p50_us p99_us ms_us_op nbdkit_us_op softirq_us_op guest_us_op ms_idle_us_s ms_net_us_op" |
  tee -a "$rows"

workloads=("randread-4k-qd1 randread 1" "randread-4k-qd16 randread 16" "randwrite-4k-qd16 randwrite 16")
for r in $replicas_list; do
  for t in $transports; do
    if [ "$t" = rdma ]; then SERVERS=$RSERVERS; else SERVERS=$TSERVERS; fi
    step "$t replicas=$r: nbdkit, prefill $size"
    start_nbdkit size="$size" replicas="$r"
    fio --name=fill --ioengine=nbd --uri="$NBD_URI" --rw=write --bs=1m \
        --iodepth=4 --size="$size" --output="$TMP/fill.log" >/dev/null ||
      { cat "$TMP/fill.log"; fail "prefill over $t"; }
    grep -E "^ +write:" "$TMP/fill.log"
    # Idle: what the memservers burn with nothing to do (heartbeats).
    m0=$(ms_ticks)
    sleep "$idle"
    m1=$(ms_ticks)
    idle_ticks=$((m1 - m0))
    ms_idle=$(awk -v d=$idle_ticks -v s="$idle" -v hz=$HZ 'BEGIN { printf "%.0f", d * 1e6 / hz / s }')
    for w in "${workloads[@]}"; do
      read -r name rw qd <<<"$w"
      m0=$(ms_ticks); n0=$(proc_ticks "$NBDKIT_PID"); read -r s0 g0 <<<"$(guest_ticks)"
      w0=$EPOCHREALTIME
      fio --name="$name" --ioengine=nbd --uri="$NBD_URI" --rw="$rw" --bs=4k \
          --iodepth="$qd" --size="$size" --time_based --runtime="$runtime" \
          --lat_percentiles=1 --percentile_list=50:99 --output-format=json \
          --output="$TMP/$t-$r-$name.json" >/dev/null ||
        { cat "$TMP/$t-$r-$name.json"; fail "fio $name over $t"; }
      w1=$EPOCHREALTIME
      m1=$(ms_ticks); n1=$(proc_ticks "$NBDKIT_PID"); read -r s1 g1 <<<"$(guest_ticks)"
      cp "$TMP/$t-$r-$name.json" "$out/" 2>/dev/null || true
      read -r iops ops p50 p99 <<<"$(fio_summary "$TMP/$t-$r-$name.json")"
      [ "$ops" -gt 0 ] || fail "fio $name over $t: no operations"
      echo "ROW $t $r $name $iops $ops $p50 $p99 $(per_op $((m1 - m0))) $(per_op $((n1 - n0))) $(per_op $((s1 - s0))) $(per_op $((g1 - g0))) $ms_idle $(ms_net)" |
        tee -a "$rows"
    done
    stop_nbdkit
    SERVERS=$TSERVERS
    used=$(pool_used)
    [ "$used" -eq 0 ] || fail "$used bytes still allocated after nbdkit exit ($t)"
  done
done
SERVERS=$TSERVERS
step "done"
echo "PASS"
