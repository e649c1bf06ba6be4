#!/usr/bin/env bash
# run-bench.sh - measure rampool against its peers with fio's nbd engine.
#
# Targets (all on loopback; all started first, then measured in turn):
#   rampool-r1   nbdkit + rampool plugin, replicas=1, over N memservers
#   rampool-r2   the same with replicas=2
#   rampool-r3, rampool-ec42, rampool-ec82 (on request, BENCH_TARGETS):
#                replicas=3, redundancy=ec:4+2 and ec:8+2, over at least
#                K+M+1 memservers (a spare for rebuilds)
#   memory       nbdkit memory plugin (allocator=malloc): local-RAM ceiling
#   nbd-server   nbd-server exporting a file on a private tmpfs, over TCP
#   nbd-forward  nbdkit nbd plugin -> TCP -> nbdkit memory (stock two hops)
#   rampool-nbd-r1, rampool-nbd-r2 (on request, BENCH_TARGETS): rampool-nbd
#                (client/rampool-nbd.c: no nbdkit, no thread per request)
#                with replicas=1 and 2, over as many memservers as
#                rampool-r1 and -r2
#   probe        (on request) bench/frontend-probe over as many memservers
#                as rampool-r1: an NBD front end without a thread per
#                request, to measure what nbdkit's threads cost
#
# Workloads: 4 KiB randread/randwrite at iodepth 1 and 16, 1 MiB sequential
# read/write; each a fixed-runtime fio job on a disk pre-written first.
# First writes (firstwrite-1m): before that, each round, every target is
# started fresh, its whole disk written once with 1 MiB writes, and
# stopped again.
# See README.md for the knobs (environment variables) and the output.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(dirname "$here")

MEMSERVER=${MEMSERVER:-$top/memserver/memserver}
RAMPOOL_PLUGIN=${RAMPOOL_PLUGIN:-$top/nbdkit-plugin/.libs/nbdkit-rampool-plugin.so}
PROBE=${PROBE:-$here/frontend-probe}
RAMPOOL_NBD=${RAMPOOL_NBD:-$top/client/rampool-nbd}
BENCH_RUNTIME=${BENCH_RUNTIME:-10}
BENCH_ROUNDS=${BENCH_ROUNDS:-1}
BENCH_SIZE=${BENCH_SIZE:-1G}
BENCH_TARGETS=${BENCH_TARGETS:-}
BENCH_WORKLOADS=${BENCH_WORKLOADS:-randread-4k-qd1 randread-4k-qd16 seqread-1m randwrite-4k-qd1 randwrite-4k-qd16 seqwrite-1m firstwrite-1m}
BENCH_SEQ_IODEPTH=${BENCH_SEQ_IODEPTH:-4}
BENCH_MEMSERVERS=${BENCH_MEMSERVERS:-3}
BENCH_MEMSERVER_SIZE=${BENCH_MEMSERVER_SIZE:-2G}
BENCH_MEMSERVER_ARGS=${BENCH_MEMSERVER_ARGS:-}
BENCH_RAMPOOL_ARGS=${BENCH_RAMPOOL_ARGS:-}
# Options of every nbdkit started here (rampool's, memory's and both of
# the forwarder's).  --no-sr: simple replies, as nbd-server 3.24 gives
# and as the kernel's nbd driver (what swaps) asks for; set it empty to
# let libnbd negotiate structured replies (+1.6 system calls per 4 KiB
# read in fio and +1 in nbdkit).
BENCH_NBDKIT_ARGS=${BENCH_NBDKIT_ARGS---no-sr}
BENCH_OUT=${BENCH_OUT:-$PWD/bench-results}
BENCH_READY_TIMEOUT=${BENCH_READY_TIMEOUT:-30}
BENCH_COUNT_RUNTIME=${BENCH_COUNT_RUNTIME:-3}   # 0: no counting runs
# Seconds to wait after stopping a fresh target before the next one's
# first writes.  A virtual machine with free page reporting (virtio-
# balloon) hands memory the guest frees back to its host about 2 s
# later, after which the first touch of it faults in the host too;
# without the wait, one target could write into memory the one before
# it had just freed, before it went back, and another not.
BENCH_SETTLE=${BENCH_SETTLE:-3}

all_targets="rampool-r1 rampool-r2 memory nbd-server nbd-forward"
extra_targets="rampool-r3 rampool-ec42 rampool-ec82 rampool-nbd-r1 rampool-nbd-r2 probe"  # only when asked for
helper=$here/bench.py

die() { echo "run-bench: $*" >&2; exit 1; }
log() { echo "run-bench: $*"; }

# ------------------------------------------------------------ preflight ---

for cmd in fio nbdkit nbdinfo python3 numfmt; do
    command -v "$cmd" >/dev/null || die "$cmd not found"
done
[[ -f $helper ]] || die "missing $helper"
fio --enghelp=nbd >/dev/null 2>&1 || die "this fio has no nbd engine (Debian fio does)"
[[ $BENCH_RUNTIME =~ ^[0-9]+$ && $BENCH_RUNTIME -gt 0 ]] || die "BENCH_RUNTIME must be a positive integer (seconds)"
[[ $BENCH_ROUNDS =~ ^[0-9]+$ && $BENCH_ROUNDS -gt 0 ]] || die "BENCH_ROUNDS must be a positive integer"
[[ $BENCH_SETTLE =~ ^[0-9]+$ ]] || die "BENCH_SETTLE must be a whole number of seconds"
size_bytes=$(numfmt --from=iec "$BENCH_SIZE") || die "bad BENCH_SIZE=$BENCH_SIZE"

# Memservers get SIGTERM if this script dies without running its trap
# (nbdkit has --exit-with-parent for the same purpose).
pdeath=()
if setpriv --pdeathsig TERM true 2>/dev/null; then pdeath=(setpriv --pdeathsig TERM); fi

have_rampool() { [[ -x $MEMSERVER && -f $RAMPOOL_PLUGIN ]]; }

if [[ -z $BENCH_TARGETS ]]; then
    BENCH_TARGETS=$all_targets
    if ! have_rampool; then
        log "WARNING: rampool not built ($MEMSERVER, $RAMPOOL_PLUGIN): skipping rampool targets"
        BENCH_TARGETS="memory nbd-server nbd-forward"
    fi
fi
for t in $BENCH_TARGETS; do
    case " $all_targets $extra_targets " in *" $t "*) ;; *) die "unknown target '$t' (known: $all_targets $extra_targets)";; esac
    case $t in
        rampool-nbd-*) [[ -x $RAMPOOL_NBD && -x $MEMSERVER ]] || die "$t needs $RAMPOOL_NBD and $MEMSERVER (build first; set RAMPOOL_NBD / MEMSERVER)";;
        rampool-*) have_rampool || die "$t needs $MEMSERVER and $RAMPOOL_PLUGIN (set MEMSERVER / RAMPOOL_PLUGIN)";;
        nbd-server) command -v nbd-server >/dev/null || die "nbd-server not found (apt-get install nbd-server)";;
        probe) [[ -x $PROBE && -x $MEMSERVER ]] || die "probe needs $PROBE and $MEMSERVER (build first; set PROBE / MEMSERVER)";;
    esac
done

# ------------------------------------------------- processes and cleanup ---

work=$(mktemp -d /tmp/rampool-bench.XXXXXX)
logs=$work/logs
mkdir -p "$logs"
ALL_PIDS=()     # every server process started, until it is stopped
TPIDS=()        # the server processes of the target being measured
MOUNTED=""      # tmpfs mount point, if we mounted one
TMPFS_DIR=""
JOB_PID=""      # the fio job being run (bench.py runjob)
SHMDIR=""       # fallback directory under /dev/shm, if we made one

alive() { kill -0 "$1" 2>/dev/null; }

# Alive and not a zombie (a child that exited but is not reaped yet).
running() {
    local line
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
    line=${line##*) }
    [[ ${line:0:1} != Z ]]
}

# Direct children of a pid (nbd-server forks one per connection).
children_of() {
    local f line
    local -a fld
    for f in /proc/[0-9]*/stat; do
        { read -r line <"$f"; } 2>/dev/null || continue
        read -r -a fld <<<"${line##*) }"
        if [[ ${fld[1]} == "$1" ]]; then f=${f#/proc/}; echo "${f%/stat}"; fi
    done
}

stop_pids() {
    local pid p kids=() deadline
    for pid in "$@"; do
        alive "$pid" || continue
        for p in $(children_of "$pid"); do kids+=("$p"); done
        kill -TERM "$pid" 2>/dev/null || true
    done
    for p in "${kids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    deadline=$((SECONDS + 10))
    for pid in "$@" "${kids[@]}"; do
        while running "$pid" && ((SECONDS < deadline)); do
            sleep 0.05
        done
        if running "$pid"; then
            log "pid $pid did not exit on SIGTERM, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    local keep=() q
    for p in "${ALL_PIDS[@]}"; do
        for q in "$@"; do [[ $p == "$q" ]] && continue 2; done
        keep+=("$p")
    done
    ALL_PIDS=("${keep[@]}")
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $JOB_PID ]] && alive "$JOB_PID"; then
        kill -TERM "$JOB_PID" 2>/dev/null || true
        wait "$JOB_PID" 2>/dev/null || true
    fi
    stop_pids "${ALL_PIDS[@]}"
    if [[ -n $MOUNTED ]]; then
        umount "$MOUNTED" || log "WARNING: could not unmount $MOUNTED"
    fi
    if [[ -n $SHMDIR ]]; then rm -rf "$SHMDIR" || true; fi
    if ((rc != 0)) && [[ -d $logs ]]; then
        for f in "$logs"/*; do
            [[ -s $f ]] || continue
            echo "---- ${f##*/} (last lines)" >&2
            tail -n 15 "$f" >&2
        done
    fi
    rm -rf "$work" || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

track() { ALL_PIDS+=("$1"); TPIDS+=("$1"); }

# wait_until DESC CMD... : poll CMD (bounded), failing early if a server of
# the current target has died.
wait_until() {
    local desc=$1; shift
    local deadline=$((SECONDS + BENCH_READY_TIMEOUT)) pid
    until "$@" >/dev/null 2>&1; do
        for pid in "${TPIDS[@]}"; do
            alive "$pid" || die "server pid $pid exited while waiting for $desc"
        done
        ((SECONDS < deadline)) || die "timed out after ${BENCH_READY_TIMEOUT}s waiting for $desc"
        sleep 0.05
    done
}

nbd_ready() { nbdinfo --size "$1"; }
file_has_port() { [[ -s $1 ]] && [[ $(<"$1") =~ ([0-9]+)[[:space:]]*$ ]]; }
file_has_pid() { [[ -s $1 ]] && [[ $(<"$1") =~ ^[[:space:]]*[0-9]+ ]]; }
freeport() { python3 "$helper" freeport; }

# ------------------------------------------------------------- targets ---
# Each start_* sets URI and fills TPIDS with every server process involved.

start_memory() {
    local sock=$work/memory.sock
    # shellcheck disable=SC2086
    nbdkit -f --exit-with-parent $BENCH_NBDKIT_ARGS -U "$sock" memory "$size_bytes" allocator=malloc \
        >"$logs/memory.log" 2>&1 &
    track $!
    URI="nbd+unix:///?socket=$sock"
    wait_until "nbdkit memory" nbd_ready "$URI"
}

start_nbd_forward() {
    local sock=$work/forward.sock port attempt
    for attempt in 1 2 3; do
        port=$(freeport)
        # shellcheck disable=SC2086
        nbdkit -f --exit-with-parent $BENCH_NBDKIT_ARGS -i 127.0.0.1 -p "$port" memory "$size_bytes" allocator=malloc \
            >"$logs/forward-backend.log" 2>&1 &
        local pid=$!
        local deadline=$((SECONDS + BENCH_READY_TIMEOUT))
        until nbd_ready "nbd://127.0.0.1:$port" >/dev/null 2>&1; do
            alive "$pid" || break
            ((SECONDS < deadline)) || { kill "$pid"; die "timed out waiting for the nbd-forward backend"; }
            sleep 0.05
        done
        if alive "$pid"; then track "$pid"; break; fi
        wait "$pid" 2>/dev/null || true
        ((attempt < 3)) || die "nbd-forward backend failed to start"
        log "backend could not use port $port, retrying"
    done
    # shellcheck disable=SC2086
    nbdkit -f --exit-with-parent $BENCH_NBDKIT_ARGS -U "$sock" nbd hostname=127.0.0.1 port="$port" \
        >"$logs/forward-frontend.log" 2>&1 &
    track $!
    URI="nbd+unix:///?socket=$sock"
    wait_until "nbdkit nbd (forwarder)" nbd_ready "$URI"
}

start_nbd_server() {
    local img port cfg pidf
    tmpfs_dir   # sets TMPFS_DIR; not in $(...), which would lose MOUNTED
    img=$TMPFS_DIR/nbd-server.img
    truncate -s "$size_bytes" "$img"
    port=$(freeport)
    cfg=$work/nbd-server.conf
    pidf=$work/nbd-server.pid
    cat >"$cfg" <<EOF
[generic]
    listenaddr = 127.0.0.1
    port = $port
    allowlist = false
[bench]
    exportname = $img
EOF
    # nbd-server always daemonizes (-d would also make it exit after the
    # first client), so its pid comes from the pid file.
    nbd-server -C "$cfg" -p "$pidf" >"$logs/nbd-server.log" 2>&1 \
        || die "nbd-server failed to start"
    wait_until "nbd-server pid file" file_has_pid "$pidf"
    local pid
    pid=$(<"$pidf"); pid=${pid//[^0-9]/}
    ALL_PIDS+=("$pid"); TPIDS+=("$pid")
    URI="nbd://127.0.0.1:$port/bench"
    wait_until "nbd-server" nbd_ready "$URI"
}

tmpfs_dir() {
    if [[ -z $MOUNTED && -z $SHMDIR ]]; then
        mkdir -p "$work/tmpfs"
        if mount -t tmpfs -o "size=$((size_bytes + 64 * 1048576)),mode=0700" \
                rampool-bench "$work/tmpfs" 2>/dev/null; then
            MOUNTED=$work/tmpfs
        else
            SHMDIR=$(mktemp -d /dev/shm/rampool-bench.XXXXXX)
            log "could not mount a tmpfs (not root?); using $SHMDIR"
        fi
    fi
    TMPFS_DIR=${MOUNTED:-$SHMDIR}
}

# start_memservers NAME NSERVERS: memservers (at least BENCH_MEMSERVERS);
# sets SERVERS to their addresses, comma-separated.
start_memservers() {
    local name=$1 nms=$2 i pid pidf portf port
    local -a ms_pids=()
    SERVERS=""
    ((nms >= BENCH_MEMSERVERS)) || nms=$BENCH_MEMSERVERS
    for ((i = 1; i <= nms; i++)); do
        portf=$work/ms-r$name-$i.port
        pidf=$work/ms-r$name-$i.pid
        rm -f "$portf" "$pidf"
        # shellcheck disable=SC2086
        "${pdeath[@]}" "$MEMSERVER" --listen 127.0.0.1:0 --size "$BENCH_MEMSERVER_SIZE" --no-mlock \
            --port-file "$portf" --pidfile "$pidf" $BENCH_MEMSERVER_ARGS \
            >"$logs/memserver$i-r$name.log" 2>&1 &
        track $!
        ms_pids+=($!)
    done
    for ((i = 1; i <= nms; i++)); do
        portf=$work/ms-r$name-$i.port
        pidf=$work/ms-r$name-$i.pid
        wait_until "memserver $i port file" file_has_port "$portf"
        [[ $(<"$portf") =~ ([0-9]+)[[:space:]]*$ ]]
        port=${BASH_REMATCH[1]}
        SERVERS+=${SERVERS:+,}127.0.0.1:$port
        # If the memserver daemonized, the pid file names the real process.
        if file_has_pid "$pidf"; then
            pid=$(<"$pidf"); pid=${pid//[^0-9]/}
            if [[ $pid != "${ms_pids[i - 1]}" ]] && alive "$pid"; then
                ALL_PIDS+=("$pid"); TPIDS+=("$pid")
            fi
        fi
    done
}

# start_rampool NAME KEY=VALUE NSERVERS: memservers and nbdkit with the
# plugin and the redundancy key.
start_rampool() {
    local name=$1 key=$2
    start_memservers "$name" "$3"
    local sock=$work/rampool-r$name.sock
    # shellcheck disable=SC2086
    nbdkit -f --exit-with-parent $BENCH_NBDKIT_ARGS -U "$sock" "$RAMPOOL_PLUGIN" \
        servers="$SERVERS" size="$size_bytes" "$key" $BENCH_RAMPOOL_ARGS \
        >"$logs/nbdkit-rampool-r$name.log" 2>&1 &
    track $!
    URI="nbd+unix:///?socket=$sock"
    wait_until "nbdkit rampool ($key)" nbd_ready "$URI"
}

# start_rampool_nbd NAME KEY=VALUE NSERVERS: memservers and rampool-nbd
# (no nbdkit) with the redundancy key.
start_rampool_nbd() {
    local name=$1 key=$2
    start_memservers "nbd$name" "$3"
    local sock=$work/rampool-nbd-r$name.sock
    # shellcheck disable=SC2086
    "${pdeath[@]}" "$RAMPOOL_NBD" -U "$sock" \
        servers="$SERVERS" size="$size_bytes" "$key" $BENCH_RAMPOOL_ARGS \
        >"$logs/rampool-nbd-r$name.log" 2>&1 &
    track $!
    URI="nbd+unix:///?socket=$sock"
    wait_until "rampool-nbd ($key)" nbd_ready "$URI"
}

# The front-end probe (bench/frontend-probe.c) over as many memservers
# as rampool-r1: what the same memservers give without nbdkit's thread
# per request.
start_probe() {
    start_memservers probe 1
    local sock=$work/probe.sock
    "${pdeath[@]}" "$PROBE" --servers "$SERVERS" --size "$size_bytes" --unix "$sock" \
        >"$logs/probe.log" 2>&1 &
    track $!
    URI="nbd+unix:///?socket=$sock"
    wait_until "frontend-probe" nbd_ready "$URI"
}

start_target() {
    TPIDS=()
    URI=""
    case $1 in
        rampool-r1) start_rampool 1 replicas=1 1 ;;
        rampool-r2) start_rampool 2 replicas=2 2 ;;
        rampool-r3) start_rampool 3 replicas=3 4 ;;
        rampool-ec42) start_rampool ec42 redundancy=ec:4+2 7 ;;
        rampool-ec82) start_rampool ec82 redundancy=ec:8+2 11 ;;
        memory) start_memory ;;
        nbd-server) start_nbd_server ;;
        nbd-forward) start_nbd_forward ;;
        rampool-nbd-r1) start_rampool_nbd 1 replicas=1 1 ;;
        rampool-nbd-r2) start_rampool_nbd 2 replicas=2 2 ;;
        probe) start_probe ;;
    esac
    local got
    got=$(nbdinfo --size "$URI")
    ((got >= size_bytes)) || die "$1 exports $got bytes, need $size_bytes"
}

# ----------------------------------------------------------- workloads ---

workload_args() {
    case $1 in
        randread-4k-qd1)   echo "--rw=randread --bs=4k --iodepth=1" ;;
        randread-4k-qd16)  echo "--rw=randread --bs=4k --iodepth=16" ;;
        randwrite-4k-qd1)  echo "--rw=randwrite --bs=4k --iodepth=1" ;;
        randwrite-4k-qd16) echo "--rw=randwrite --bs=4k --iodepth=16" ;;
        seqread-1m)        echo "--rw=read --bs=1M --iodepth=$BENCH_SEQ_IODEPTH" ;;
        seqwrite-1m)       echo "--rw=write --bs=1M --iodepth=$BENCH_SEQ_IODEPTH" ;;
        firstwrite-1m)     echo "--rw=write --bs=1M --iodepth=8" ;;
        *) return 1 ;;
    esac
}
for w in $BENCH_WORKLOADS; do
    workload_args "$w" >/dev/null || die "unknown workload '$w'"
done

run_job() {  # run_job TARGET WORKLOAD ROUND FIO-ARGS...
    local target=$1 workload=$2 round=$3; shift 3
    local pids
    pids=$(IFS=,; echo "${TPIDS[*]}")
    # In the background, so a signal runs the trap at once; the helper
    # stops fio when it gets SIGTERM.
    python3 "$helper" runjob "$outdir" "$target" "$workload" "$round" "$pids" -- \
        --name="$workload" --ioengine=nbd --uri="$URI" --size="$size_bytes" \
        --lat_percentiles=1 "$@" &
    JOB_PID=$!
    wait "$JOB_PID" || die "$target $workload failed"
    JOB_PID=""
}

# ----------------------------------------------------------------- run ---

stamp=$(date -u +%Y%m%dT%H%M%SZ)
outdir=$BENCH_OUT/$stamp
mkdir -p "$outdir"

ntargets=$(wc -w <<<"$BENCH_TARGETS")
nwork=$(wc -w <<<"$BENCH_WORKLOADS")
log "targets: $BENCH_TARGETS"
log "workloads: $BENCH_WORKLOADS (${BENCH_RUNTIME}s each, $BENCH_ROUNDS round(s), disk $BENCH_SIZE)"
first=0
case " $BENCH_WORKLOADS " in *" firstwrite-1m "*) first=1; nwork=$((nwork - 1));; esac
log "expect about $(( (ntargets * (BENCH_ROUNDS * nwork * (BENCH_RUNTIME + 1) + 8 + first * BENCH_ROUNDS * (BENCH_SETTLE + 5)) + 59) / 60 )) min; results in $outdir"

python3 - "$outdir/meta.json" <<EOF
import json, os, platform, subprocess, sys
def out(*c):
    try:
        r = subprocess.run(c, capture_output=True, text=True)
        return (r.stdout.strip() or r.stderr.strip()) if r.returncode == 0 else None
    except OSError:
        return None
json.dump({
    "date_utc": "$stamp", "host": platform.node(), "kernel": platform.release(),
    "cpus": os.cpu_count(), "fio": out("fio", "--version"),
    "nbdkit": out("nbdkit", "--version"),
    "nbd_server": (out("nbd-server", "-V") or "").splitlines()[0:1],
    "rampool_commit": out("git", "-C", "$top", "rev-parse", "--short", "HEAD"),
    "rampool_binaries": {p: {"mtime_utc": __import__("time").strftime(
                                 "%Y-%m-%dT%H:%M:%SZ", __import__("time").gmtime(os.path.getmtime(p))),
                             "sha256": __import__("hashlib").sha256(open(p, "rb").read()).hexdigest()[:16]}
                         for p in ("$MEMSERVER", "$RAMPOOL_PLUGIN") if os.path.isfile(p)},
    "runtime_s": $BENCH_RUNTIME, "rounds": $BENCH_ROUNDS, "size_bytes": $size_bytes,
    "nbdkit_args": "$BENCH_NBDKIT_ARGS",
    "seq_iodepth": $BENCH_SEQ_IODEPTH, "memservers": $BENCH_MEMSERVERS,
    "memserver_size": "$BENCH_MEMSERVER_SIZE", "targets": "$BENCH_TARGETS".split(),
    "workloads": "$BENCH_WORKLOADS".split(), "script": "$0",
    "env": {k: v for k, v in os.environ.items() if k.startswith("BENCH_") or k in ("MEMSERVER", "RAMPOOL_PLUGIN")},
}, open(sys.argv[1], "w"), indent=2)
EOF

read -r -a targets <<<"$BENCH_TARGETS"
n=${#targets[@]}

# First writes: every round, each target in turn (order rotated per
# round) started fresh, its whole disk written once, then stopped, with
# BENCH_SETTLE seconds after each stop.  A target's files are reused by
# the next fresh start of it, and by the long-lived one started below.
if ((first)); then
    for ((round = 1; round <= BENCH_ROUNDS; round++)); do
        for ((i = 0; i < n; i++)); do
            target=${targets[(i + round - 1) % n]}
            log "== $target: first writes, round $round of $BENCH_ROUNDS"
            start_target "$target"
            # shellcheck disable=SC2046
            run_job "$target" firstwrite-1m "$round" $(workload_args firstwrite-1m)
            stop_pids "${TPIDS[@]}"
            TPIDS=()
            rm -f "$work"/*.sock "$work"/*.pid "$work"/*.port
            [[ -z $TMPFS_DIR ]] || rm -f "$TMPFS_DIR/nbd-server.img"
            sleep "$BENCH_SETTLE"
        done
    done
fi

# All targets are started (and pre-written) first, then the jobs run
# workload by workload, cycling through the targets, so that background
# load that comes and goes hits every target alike; each round rotates the
# target order.
declare -A T_URI T_PIDS
for target in "${targets[@]}"; do
    log "== $target: starting"
    start_target "$target"
    T_URI[$target]=$URI
    T_PIDS[$target]="${TPIDS[*]}"
    log "== $target: servers ${TPIDS[*]}, uri $URI; pre-writing $BENCH_SIZE"
    run_job "$target" prefill 0 --rw=write --bs=1M --iodepth=8
done
for ((round = 1; round <= BENCH_ROUNDS; round++)); do
    ((BENCH_ROUNDS == 1)) || log "== round $round of $BENCH_ROUNDS"
    for w in $BENCH_WORKLOADS; do
        [[ $w != firstwrite-1m ]] || continue
        for ((i = 0; i < n; i++)); do
            target=${targets[(i + round - 1) % n]}
            read -r -a TPIDS <<<"${T_PIDS[$target]}"
            URI=${T_URI[$target]}
            # shellcheck disable=SC2046
            run_job "$target" "$w" "$round" $(workload_args "$w") \
                --time_based --runtime="$BENCH_RUNTIME" --norandommap --randrepeat=0
        done
    done
done
# System calls and context switches per op: one short extra run per
# target and workload under perf stat (which slows the processes it
# counts, hence not during the timed runs).
if ((BENCH_COUNT_RUNTIME > 0)); then
    if perf stat -e raw_syscalls:sys_enter true >/dev/null 2>&1; then
        log "== counting system calls and context switches (${BENCH_COUNT_RUNTIME}s runs)"
        for w in $BENCH_WORKLOADS; do
            [[ $w != firstwrite-1m ]] || continue  # needs fresh targets
            for target in "${targets[@]}"; do
                pids=$(tr ' ' , <<<"${T_PIDS[$target]}")
                # shellcheck disable=SC2046
                python3 "$helper" countjob "$outdir" "$target" "$w" "$pids" -- \
                    --name="$w" --ioengine=nbd --uri="${T_URI[$target]}" \
                    --size="$size_bytes" $(workload_args "$w") --time_based \
                    --runtime="$BENCH_COUNT_RUNTIME" --norandommap --randrepeat=0 ||
                    die "$target $w: counting run failed"
            done
        done
    else
        log "WARNING: perf stat cannot count system calls here (linux-perf, root): no counts"
    fi
fi
stop_pids "${ALL_PIDS[@]}"
TPIDS=()

python3 "$helper" report "$outdir"
