#!/bin/bash
# vm-swap-bench.sh — a benchmark, not a test: the same memory-bound workload
# in a QEMU guest with its swap on different backends, and the completion
# time of each relative to a local virtio-blk disk.
#
# Usage: bench/vm-swap-bench.sh [--no-build]      (as root; see bench/README.md)
#
# The guest is tests/vm's (Debian kernel, busybox initramfs and its /init,
# tests/vm/guest-init.sh, built by tests/vm/build-guest.sh with the
# virtio_blk module added). Workload: the hog of tests/vm/hog.c in a memory
# cgroup (memory.max BENCH_VM_LIMIT_MB, default 96 MiB) writing and then
# verifying BENCH_VM_HOG_MB (default 256) MiB; any mismatch fails the run.
# Backends (BENCH_VM_BACKENDS, run in that order, every round rotated):
#   virtio      -drive file=IMG,if=virtio,format=raw,cache=$BENCH_VM_VIRTIO_CACHE
#               IMG is a sparse raw file on a tmpfs mounted by this script
#   nbd-server  nbd-server on the host (in this script's network namespace)
#               exporting a sparse file on that tmpfs; the guest kernel's nbd
#               client connects over the tap device (TCP, -C BENCH_VM_CONNS)
#   rampool-r1  3 memservers on the host, nbdkit rampool replicas=1 in the
#               guest (as in tests/vm/test-swap.sh), kernel nbd client on it
#   rampool-r2  the same with replicas=2
#   rampool-host-rN  3 memservers and nbdkit rampool replicas=N, all on
#               the host; the guest kernel's nbd client connects to nbdkit
#               over the tap device, as to nbd-server: the shape of
#               nbd-server's run with one hop more, every server process
#               native (in rampool-rN, nbdkit runs in the guest, under
#               TCG emulation)
#   rampool-nbd-rN, rampool-nbd-host-rN  the same two with rampool-nbd
#               (client/rampool-nbd.c) in place of nbdkit
#
# Environment (defaults in brackets): BENCH_VM_BACKENDS [virtio nbd-server
# rampool-r1 rampool-r2], BENCH_VM_ROUNDS [1], BENCH_VM_HOG_MB [256],
# BENCH_VM_LIMIT_MB [96], BENCH_VM_MEM [512] (guest MiB), BENCH_VM_SMP [2],
# BENCH_VM_SIZE [1G] (swap device size, every backend), BENCH_VM_CONNS [1],
# BENCH_VM_THREADS [4] (nbdkit -t), BENCH_VM_SERVER_SIZE [512M]
# (each memserver), BENCH_VM_VIRTIO_CACHE [none], BENCH_VM_TIMEOUT [1200]
# (seconds per guest run), BENCH_VM_CACHE [bench/vm/work] (guest build and
# run logs), MEMSERVER [memserver/memserver], RAMPOOL_PLUGIN
# [nbdkit-plugin/.libs/nbdkit-rampool-plugin.so], RAMPOOL_NBD
# [client/rampool-nbd], BENCH_VM_KEEP=1 keeps the
# run directory.
#
# Output: a table (backend, hog seconds = write + verify, pswpin, pswpout,
# ratio of hog seconds to virtio's) and results.csv in the run directory.
# Exit status 0 when every run passed.
set -uo pipefail

# `... | has PATTERN`: grep that reads all of its input.  `grep -q`
# exits at the first match, so under pipefail the writer's SIGPIPE
# would fail a pipeline whose pattern did match.
has () { grep "$@" >/dev/null; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/.." && pwd)
BACKENDS=${BENCH_VM_BACKENDS:-virtio nbd-server rampool-r1 rampool-r2}
ROUNDS=${BENCH_VM_ROUNDS:-1}
HOG_MB=${BENCH_VM_HOG_MB:-256}
LIMIT_MB=${BENCH_VM_LIMIT_MB:-96}
MEM=${BENCH_VM_MEM:-512}
SMP=${BENCH_VM_SMP:-2}
SIZE=${BENCH_VM_SIZE:-1G}
CONNS=${BENCH_VM_CONNS:-1}
THREADS=${BENCH_VM_THREADS:-4}
SERVER_SIZE=${BENCH_VM_SERVER_SIZE:-512M}
VIRTIO_CACHE=${BENCH_VM_VIRTIO_CACHE:-none}
TIMEOUT=${BENCH_VM_TIMEOUT:-1200}
CACHE=${BENCH_VM_CACHE:-$HERE/vm/work}
MEMSERVER=${MEMSERVER:-$TOP/memserver/memserver}
PLUGIN=${RAMPOOL_PLUGIN:-$TOP/nbdkit-plugin/.libs/nbdkit-rampool-plugin.so}
RAMPOOL_NBD=${RAMPOOL_NBD:-$TOP/client/rampool-nbd}
NSERVERS=3
BUILD=1

case ${1:-} in
--no-build) BUILD=0 ;;
-h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
"") ;;
*) echo "vm-swap-bench: unknown argument '$1'" >&2; exit 1 ;;
esac

T_START=$(date +%s.%N)
log() { echo "vm-swap-bench[$(awk -v s="$T_START" -v n="$(date +%s.%N)" 'BEGIN{printf "%6.1f", n-s}')s]: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (network namespace, tap device, tmpfs)"
[ -c /dev/net/tun ] || die "/dev/net/tun missing"
for c in qemu-system-x86_64:qemu-system-x86 timeout:coreutils ip:iproute2 ss:iproute2 nbd-server:nbd-server; do
    command -v "${c%%:*}" >/dev/null || die "'${c%%:*}' missing; install the Debian package '${c#*:}'"
done
for b in $BACKENDS; do
    case $b in
    virtio|nbd-server) ;;
    rampool-r[1-9]|rampool-host-r[1-9])
        [ -x "$MEMSERVER" ] || die "memserver '$MEMSERVER' not built (./configure && make)"
        [ -f "$PLUGIN" ] || die "plugin '$PLUGIN' not built (./configure && make)" ;;
    rampool-nbd-r[1-9]|rampool-nbd-host-r[1-9])
        [ -x "$MEMSERVER" ] || die "memserver '$MEMSERVER' not built (./configure && make)"
        [ -x "$RAMPOOL_NBD" ] || die "rampool-nbd '$RAMPOOL_NBD' not built (./configure && make)" ;;
    *) die "unknown backend '$b' (virtio nbd-server rampool-rN rampool-host-rN rampool-nbd-rN rampool-nbd-host-rN)" ;;
    esac
done

# ---------------------------------------------------------------- cleanup
PIDS=() PIDFILES=() MNT= RUN= OK=0
source "$TOP/tests/vm/netns.sh"
stop_servers() { # kill what start_* started for one run (by pid), bounded
    local p f i alive
    for f in "${PIDFILES[@]}"; do [ -s "$f" ] && p=$(tr -dc 0-9 <"$f") && [ -n "$p" ] && kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for i in $(seq 50); do
        alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        for f in "${PIDFILES[@]}"; do [ -s "$f" ] && p=$(tr -dc 0-9 <"$f") && [ -n "$p" ] && kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    for f in "${PIDFILES[@]}"; do [ -s "$f" ] && p=$(tr -dc 0-9 <"$f") && [ -n "$p" ] && kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    PIDS=() PIDFILES=()
}
cleanup() {
    trap - EXIT INT TERM
    stop_servers
    [ -n "$MNT" ] && { umount "$MNT" 2>/dev/null || log "WARNING: could not unmount $MNT"; rmdir "$MNT" 2>/dev/null; }
    netns_down
    if [ -n "$RUN" ]; then
        if [ $OK = 1 ] && [ "${BENCH_VM_KEEP:-0}" != 1 ]; then
            log "results in $RUN"
        else
            log "logs kept in $RUN"
        fi
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---------------------------------------------------------------- guest
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
if [ $BUILD = 1 ]; then
    # reuse the kernel package tests/vm already downloaded, if any
    for deb in "$TOP"/tests/vm/work/linux-image-*_amd64.deb; do
        [ -f "$deb" ] && [ ! -e "$CACHE/${deb##*/}" ] && { ln "$deb" "$CACHE/" 2>/dev/null || cp "$deb" "$CACHE/"; }
    done
    RP_VM_CACHE=$CACHE RP_VM_BACKEND=rampool RP_VM_PLUGIN=$PLUGIN \
        RP_VM_RAMPOOL_NBD=$RAMPOOL_NBD RP_VM_EXTRA_MODULES=virtio_blk \
        "$TOP/tests/vm/build-guest.sh" || die "build-guest.sh failed"
fi
[ -f "$CACHE/vmlinuz" ] && [ -f "$CACHE/initrd.cpio.gz" ] || die "no guest in $CACHE (run without --no-build)"
KVER=$(sed -n 's/^KVER=//p' "$CACHE/guest.env")
RUN=$(mktemp -d "$CACHE/run.$(date -u +%Y%m%dT%H%M%SZ).XXXX")
mkdir -p "$RUN/logs"

# ---------------------------------------------------------------- network, tmpfs
netns_up rpbench-$$ || die "network namespace rpbench-$$ with tap device rptap0: setup failed"
size_bytes=$(numfmt --from=iec "$SIZE") || die "bad BENCH_VM_SIZE '$SIZE'"
MNT=$RUN/tmpfs
mkdir -p "$MNT"
mount -t tmpfs -o "size=$((size_bytes + 64 * 1048576)),mode=0700" rpbench "$MNT" || { MNT=; die "mount tmpfs failed"; }

wait_for() { # wait_for WHAT PID CMD...: poll CMD (60 s) while PID lives
    local what=$1 pid=$2 i; shift 2
    for i in $(seq 600); do
        "$@" && return 0
        [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && { log "$what exited during startup"; return 1; }
        sleep 0.1
    done
    log "$what not ready after 60 s"; return 1
}
listening() { "${NSX[@]}" ss -Htln "sport = :$1" | has .; }

# ---------------------------------------------------------------- one run
# run_one BACKEND ROUND: sets R_* (result) and appends to results.csv
run_one() {
    local b=$1 round=$2 d=$RUN/logs/$1.$2 i p append qemu_extra=() eps=()
    mkdir -p "$d"
    append="console=ttyS0 panic=-1 zswap.enabled=0 rootfstype=ramfs hung_task_panic=1 loglevel=5"
    append+=" rp_ip=10.0.2.15/24 rp_conns=$CONNS rp_threads=$THREADS rp_limit_mb=$LIMIT_MB rp_hog_mb=$HOG_MB rp_size=$SIZE"
    case $b in
    virtio)
        truncate -s "$size_bytes" "$MNT/virtio.img" || return 1
        append+=" rp_backend=virtio"
        qemu_extra=(-drive "file=$MNT/virtio.img,if=virtio,format=raw,cache=$VIRTIO_CACHE")
        ;;
    nbd-server)
        truncate -s "$size_bytes" "$MNT/nbd.img" || return 1
        cat >"$d/nbd-server.conf" <<CONF
[generic]
    listenaddr = 10.0.2.2
    port = 10809
    allowlist = false
[bench]
    exportname = $MNT/nbd.img
CONF
        # nbd-server daemonizes; its pid comes from the pid file
        "${NSX[@]}" nbd-server -C "$d/nbd-server.conf" -p "$d/nbd-server.pid" \
            >"$d/nbd-server.log" 2>&1 || { log "nbd-server failed to start"; return 1; }
        PIDFILES+=("$d/nbd-server.pid")
        wait_for "nbd-server" "" listening 10809 || return 1
        append+=" rp_backend=nbd rp_nbd=10.0.2.2:10809 rp_nbd_name=bench"
        ;;
    rampool-*)
        for i in $(seq 0 $((NSERVERS - 1))); do
            "${NSX[@]}" "$MEMSERVER" --listen 10.0.2.2:0 --size "$SERVER_SIZE" --no-mlock \
                --port-file "$d/ms$i.port" --pidfile "$d/ms$i.pid" \
                >"$d/ms$i.out" 2>"$d/ms$i.err" &
            PIDS+=($!); PIDFILES+=("$d/ms$i.pid")
        done
        for i in $(seq 0 $((NSERVERS - 1))); do
            wait_for "memserver $i" "${PIDS[$i]}" test -s "$d/ms$i.port" || return 1
            eps+=("10.0.2.2:$(tr -dc 0-9 <"$d/ms$i.port")")
        done
        if [[ $b == rampool-nbd-host-r* ]]; then
            "${NSX[@]}" "$RAMPOOL_NBD" -b 10.0.2.2 -p 10809 -t "$THREADS" \
                servers="$(IFS=,; echo "${eps[*]}")" size="$SIZE" \
                replicas="${b#rampool-nbd-host-r}" >"$d/rampool-nbd.log" 2>&1 &
            PIDS+=($!)
            wait_for "rampool-nbd" "$!" listening 10809 || return 1
            append+=" rp_backend=nbd rp_nbd=10.0.2.2:10809 rp_nbd_name=bench"
        elif [[ $b == rampool-nbd-r* ]]; then
            append+=" rp_backend=rampool rp_front=nbd rp_nostats=1 rp_replicas=${b#rampool-nbd-r} rp_servers=$(IFS=,; echo "${eps[*]}")"
        elif [[ $b == rampool-host-r* ]]; then
            "${NSX[@]}" nbdkit -f -i 10.0.2.2 -p 10809 -t "$THREADS" "$PLUGIN" \
                servers="$(IFS=,; echo "${eps[*]}")" size="$SIZE" \
                replicas="${b#rampool-host-r}" >"$d/nbdkit.log" 2>&1 &
            PIDS+=($!)
            wait_for "nbdkit" "$!" listening 10809 || return 1
            append+=" rp_backend=nbd rp_nbd=10.0.2.2:10809 rp_nbd_name=bench"
        else
            append+=" rp_backend=rampool rp_nostats=1 rp_replicas=${b#rampool-r} rp_servers=$(IFS=,; echo "${eps[*]}")"
        fi
        ;;
    esac
    log "round $round: $b: booting guest"
    local t0 t1 qrc
    t0=$(date +%s.%N)
    "${NSX[@]}" timeout -k 10 "$TIMEOUT" qemu-system-x86_64 \
        -accel tcg,thread=multi -m "$MEM" -smp "$SMP" \
        -kernel "$CACHE/vmlinuz" -initrd "$CACHE/initrd.cpio.gz" -append "$append" \
        -nographic -no-reboot \
        -netdev tap,id=n0,ifname=rptap0,script=no,downscript=no -device virtio-net-pci,netdev=n0 \
        "${qemu_extra[@]}" </dev/null >"$d/serial.log" 2>"$d/qemu.err" &
    PIDS+=($!)
    wait $!
    qrc=$?
    t1=$(date +%s.%N)
    stop_servers
    rm -f "$MNT/virtio.img" "$MNT/nbd.img"
    local res stats hogres
    res=$(tr -d '\r' <"$d/serial.log" | sed -n 's/^RAMPOOL-VM-RESULT: //p' | tail -n1)
    stats=$(tr -d '\r' <"$d/serial.log" | sed -n 's/^RAMPOOL-VM-STATS: //p' | tail -n1)
    hogres=$(tr -d '\r' <"$d/serial.log" | grep -a '^hog: RESULT' | tail -n1)
    [ -n "$res" ] || res="FAIL no result line (qemu exit $qrc)"
    kv() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
    R_HOG=$(awk -v a="$(kv hog_start "$stats")" -v b="$(kv hog_end "$stats")" \
        'BEGIN { if (a != "" && b != "") printf "%.2f", b - a }')
    R_W=$(kv write_s "$hogres"); R_V=$(kv verify_s "$hogres")
    R_IN=$(kv pswpin "$stats"); R_OUT=$(kv pswpout "$stats")
    R_MIS=$(kv mismatched_pages "$hogres")
    R_RES=$res
    R_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
    log "round $round: $b: $res; hog ${R_HOG:-?} s (write ${R_W:-?} + verify ${R_V:-?}), pswpin ${R_IN:-?} pswpout ${R_OUT:-?}, mismatched pages ${R_MIS:-?}; guest run ${R_WALL} s"
    if [ "$res" != PASS ]; then
        tail -n 25 "$d/serial.log" | tr -d '\r' | sed 's/^/  serial| /' >&2
        BENCH_VM_KEEP=1
    fi
    echo "$round,$b,$res,${R_HOG},${R_W},${R_V},${R_IN},${R_OUT},${R_MIS},${R_WALL}" >>"$RUN/results.csv"
}

# ---------------------------------------------------------------- runs
echo "round,backend,result,hog_s,write_s,verify_s,pswpin,pswpout,mismatched_pages,guest_run_s" >"$RUN/results.csv"
{
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ) host_kernel=$(uname -r) cpus=$(nproc) guest_kernel=$KVER"
    echo "qemu=$(qemu-system-x86_64 --version | head -n1) accel=tcg mem=${MEM}M smp=$SMP"
    echo "hog=${HOG_MB}M limit=${LIMIT_MB}M size=$SIZE conns=$CONNS threads=$THREADS virtio_cache=$VIRTIO_CACHE (raw file on tmpfs)"
    echo "loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RUN/info.txt"
log "backends: $BACKENDS; rounds $ROUNDS; hog $HOG_MB MiB in memory.max $LIMIT_MB MiB; guest ${MEM} MiB, $SMP vCPU (TCG); run dir $RUN"
ALLPASS=1
order=($BACKENDS)
for round in $(seq 1 "$ROUNDS"); do
    for b in "${order[@]}"; do
        run_one "$b" "$round" || { log "round $round: $b: setup failed"; stop_servers
            echo "$round,$b,FAIL setup,,,,,,," >>"$RUN/results.csv"; }
        grep -q "^$round,$b,PASS," "$RUN/results.csv" || ALLPASS=0
    done
    order=("${order[@]:1}" "${order[0]}")   # rotate for the next round
done
echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RUN/info.txt"

# ---------------------------------------------------------------- report
awk -F, -v backends="$BACKENDS" '
    function median(b, k,   n, i, j, t, v) {
        n = cnt[b, k]; if (n == 0) return ""
        for (i = 1; i <= n; i++) v[i] = val[b, k, i]
        for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j-1] > v[j]; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
        return n % 2 ? v[(n+1)/2] : (v[n/2] + v[n/2+1]) / 2
    }
    NR > 1 {
        runs[$2]++
        if ($3 != "PASS") { fails[$2]++; next }
        split("hog_s write_s verify_s pswpin pswpout", names, " ")
        for (k = 1; k <= 5; k++) { c = ++cnt[$2, names[k]]; val[$2, names[k], c] = $(k + 3) }
    }
    END {
        nb = split(backends, bl, " ")
        base = median("virtio", "hog_s")
        printf "\n%-12s %9s %9s %9s %9s %9s %10s %s\n", "backend", "hog (s)", "write", "verify", "pswpin", "pswpout", "vs virtio", "runs"
        for (i = 1; i <= nb; i++) {
            b = bl[i]; h = median(b, "hog_s")
            r = (h != "" && base != "" && base > 0) ? sprintf("%.2fx", h / base) : "-"
            printf "%-12s %9s %9s %9s %9s %9s %10s %d/%d pass\n", b, h == "" ? "-" : sprintf("%.1f", h),
                median(b, "write_s") == "" ? "-" : sprintf("%.1f", median(b, "write_s")),
                median(b, "verify_s") == "" ? "-" : sprintf("%.1f", median(b, "verify_s")),
                median(b, "pswpin") == "" ? "-" : median(b, "pswpin"),
                median(b, "pswpout") == "" ? "-" : median(b, "pswpout"),
                r, runs[b] - fails[b], runs[b]
        }
        print "(medians over passing rounds; ratio = hog time / virtio hog time, above 1 = slower than virtio)"
    }' "$RUN/results.csv" | tee "$RUN/table.txt"
cat "$RUN/info.txt"
[ $ALLPASS = 1 ] && OK=1
[ $ALLPASS = 1 ] && exit 0
exit 1
