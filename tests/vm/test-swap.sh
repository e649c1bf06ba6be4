#!/bin/bash
# test-swap.sh — swap over rampool inside a QEMU guest, with the memory
# servers on the host (outside the guest).
#
# Usage: tests/vm/test-swap.sh [--kill] [--discard] [--global] [--backend rampool|stock]
#                              [--front nbdkit|nbd] [--net tap|user] [--no-build]
#
#   --kill      kill -9 one memserver while the guest hog is writing
#               (replicas=2 must still give zero mismatches); rampool only
#   --discard   swapon -d in the guest and run the hog twice; blkdiscard
#               must then leave every memserver at 0 bytes (STAT)
#   --global    no memory cgroup: the whole guest overcommitted 1.5x (a
#               256 MiB guest, a 384 MiB hog), with what makes that
#               survivable: plugin keys mlock=on realtime=10 and nbdkit
#               without --swap (docs/operations.md, section 8), set up the
#               operator's way: implies --attach
#   --attach    rampool attach / rampool detach in the guest instead of
#               nbdkit + nbd-client + mkswap + swapon step by step; after
#               the run every memserver must hold 0 bytes (detach stopped
#               nbdkit, which freed the disk on the donors)
#   --backend   rampool (default): 3 memservers (RP_VM_NSERVERS) + the
#               rampool plugin;
#               stock: one host-side "nbdkit memory" server, reached by
#               nbdkit's nbd plugin in the guest (harness self-test)
#   --front     the NBD server in the guest, for --backend rampool:
#               nbdkit (default) with the plugin, or nbd: rampool-nbd with
#               the same keys and mlock=on (guest-init.sh's rp_front); with
#               --attach (which --global implies), rampool attach
#               --front=nbd starts it
#   --net       tap (default): a network namespace made by this script, with
#               a tap device for QEMU and the servers listening in it;
#               user: QEMU user networking (restrict=on) with guestfwd to
#               socat to servers on 127.0.0.1 (slower)
#   --no-build  reuse the kernel/initramfs already in the cache dir
#
# Environment (defaults in brackets): RP_VM_BACKEND [rampool], RP_VM_FRONT
# [nbdkit], RP_VM_NET [tap], RP_VM_CACHE [tests/vm/work], RP_VM_TIMEOUT
# [540] (seconds for the whole guest run), RP_VM_HOG_MB [256],
# RP_VM_LIMIT_MB [96], RP_VM_CONNS [1], RP_VM_THREADS [4], RP_VM_REPLICAS
# [2; or ec:K+M for erasure coding], RP_VM_NSERVERS [3] (memservers),
# RP_VM_SIZE [1G], RP_VM_SERVER_SIZE [512M], RP_VM_EXTRA (extra plugin or
# rampool-nbd key=value words, space separated), RP_VM_MEMSERVER
# [memserver/memserver], RP_VM_PLUGIN and RP_VM_RAMPOOL_NBD (see
# build-guest.sh), RP_VM_KILL_AT [160] (MiB written by the hog before
# --kill fires), RP_VM_MEM_MB [512] (guest RAM).
# RP_VM_APPEND (extra guest kernel command-line words, e.g. the opt-in
# rp_min_free_kb=, rp_sysctl=, rp_nbdkit_swap=0, rp_diag=1, rp_nbd_timeout=
# of guest-init.sh). RP_VM_MONITOR=1 gives QEMU a monitor socket, RUN/mon.sock
# (e.g. "sendkey alt-sysrq-w" with rp_sysctl=kernel.sysrq:1 to dump blocked
# tasks). RP_VM_HOG_CORRUPT=1 makes the guest hog flip one bit (harness self-test:
# the run must end in FAIL). RP_VM_KEEP=1 keeps the run dir (logs) on PASS.
#
# Exit status: 0 on "RAMPOOL-VM-RESULT: PASS", 1 otherwise.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
CACHE=${RP_VM_CACHE:-$HERE/work}
# In a mount namespace of its own (../mountns.sh says why): the servers
# and QEMU run under "ip netns exec", which copies the mounts around it.
MOUNT_NS_KEEP="$TOP $CACHE"
source "$HERE/../mountns.sh"
own_mount_ns "$@"
BACKEND=${RP_VM_BACKEND:-rampool}
FRONT=${RP_VM_FRONT:-nbdkit}
NET=${RP_VM_NET:-tap}
TIMEOUT=${RP_VM_TIMEOUT:-540}
HOG_MB=${RP_VM_HOG_MB:-256}
LIMIT_MB=${RP_VM_LIMIT_MB:-96}
CONNS=${RP_VM_CONNS:-1}
THREADS=${RP_VM_THREADS:-4}
REPLICAS=${RP_VM_REPLICAS:-2}
SIZE=${RP_VM_SIZE:-1G}
SERVER_SIZE=${RP_VM_SERVER_SIZE:-512M}
EXTRA=${RP_VM_EXTRA:-}
MEMSERVER=${RP_VM_MEMSERVER:-$TOP/memserver/memserver}
KILL_AT=${RP_VM_KILL_AT:-160}
MEM_MB=${RP_VM_MEM_MB:-512}
NSERVERS=${RP_VM_NSERVERS:-3}
DO_KILL=0
DISCARD=0
GLOBAL=0
ATTACH=${RP_VM_ATTACH:-}
BUILD=1

while [ $# -gt 0 ]; do
    case $1 in
    --kill) DO_KILL=1 ;;
    --discard) DISCARD=1 ;;
    --global) GLOBAL=1 ;;
    --attach) ATTACH=1 ;;
    --backend) BACKEND=$2; shift ;;
    --backend=*) BACKEND=${1#*=} ;;
    --front) FRONT=$2; shift ;;
    --front=*) FRONT=${1#*=} ;;
    --net) NET=$2; shift ;;
    --net=*) NET=${1#*=} ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "test-swap: unknown argument '$1'" >&2; exit 1 ;;
    esac
    shift
done

T_START=$(date +%s.%N)
log() { echo "test-swap[$(awk -v s="$T_START" -v n="$(date +%s.%N)" 'BEGIN{printf "%6.1f", n-s}')s]: $*" >&2; }
die() { log "FAIL: $*"; RESULT="FAIL $*"; exit 1; }

case $BACKEND in rampool|stock) ;; *) echo "test-swap: --backend must be rampool or stock" >&2; exit 1 ;; esac
case $NET in tap|user) ;; *) echo "test-swap: --net must be tap or user" >&2; exit 1 ;; esac
case $FRONT in nbdkit|nbd) ;; *) echo "test-swap: --front must be nbdkit or nbd" >&2; exit 1 ;; esac
NBDKIT_SWAP=1
if [ $GLOBAL = 1 ]; then
    # nbdkit 1.32's --swap (mlockall without MCL_ONFAULT) faults in and
    # pins its 192 MiB .bss: that alone fills a 256 MiB guest.  mlock=on
    # locks pages as they are touched.
    LIMIT_MB=0 MEM_MB=${RP_VM_MEM_MB:-256} HOG_MB=${RP_VM_HOG_MB:-384}
    NBDKIT_SWAP=0 ATTACH=${ATTACH:-1}
    # rampool attach adds those keys itself
    [ "$ATTACH" = 1 ] || EXTRA=${RP_VM_EXTRA-mlock=on realtime=10}
fi
ATTACH=${ATTACH:-0}
[ $ATTACH = 1 ] && [ $BACKEND != rampool ] && { echo "test-swap: --attach needs --backend rampool" >&2; exit 1; }
[ $FRONT = nbd ] && [ $BACKEND != rampool ] && { echo "test-swap: --front nbd needs --backend rampool" >&2; exit 1; }
RAMPOOL_CLI=${RP_VM_RAMPOOL:-$TOP/client/rampool}
{ [ $ATTACH = 1 ] || [ $DISCARD = 1 ]; } && [ $BACKEND = rampool ] && [ ! -x "$RAMPOOL_CLI" ] &&
    { echo "test-swap: --attach and --discard need the rampool CLI, '$RAMPOOL_CLI' is not built" >&2; exit 1; }
[ $DO_KILL = 1 ] && [ $BACKEND != rampool ] && { echo "test-swap: --kill needs --backend rampool" >&2; exit 1; }

for c in qemu-system-x86_64:qemu-system-x86 timeout:coreutils ip:iproute2; do
    command -v "${c%%:*}" >/dev/null || { echo "test-swap: '${c%%:*}' missing; install the Debian package '${c#*:}'" >&2; exit 1; }
done
if [ $NET = tap ]; then
    [ "$(id -u)" = 0 ] || { echo "test-swap: --net tap needs root (network namespace + tap); use --net user otherwise" >&2; exit 1; }
    [ -c /dev/net/tun ] || { echo "test-swap: /dev/net/tun missing; use --net user" >&2; exit 1; }
fi
[ $NET = user ] && ! command -v socat >/dev/null &&
    { echo "test-swap: 'socat' missing; install the Debian package 'socat'" >&2; exit 1; }
[ $BACKEND = stock ] && ! command -v nbdkit >/dev/null &&
    { echo "test-swap: 'nbdkit' missing; install the Debian package 'nbdkit'" >&2; exit 1; }
if [ $BACKEND = rampool ] && [ ! -x "$MEMSERVER" ]; then
    echo "test-swap: memserver '$MEMSERVER' not built (cd $TOP && ./configure && make)" >&2
    exit 1
fi

# ---------------------------------------------------------------- cleanup
PIDS=()          # processes started here (killed by PID)
PIDFILES=()      # pid files of servers (the real daemon PID)
source "$HERE/netns.sh"
RUN=
RESULT="FAIL harness error"
cleanup() {
    local p f i
    trap - EXIT INT TERM
    for f in "${PIDFILES[@]}"; do
        [ -s "$f" ] && p=$(cat "$f") && kill "$p" 2>/dev/null
    done
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    # bounded wait for them to go, then SIGKILL what is left
    for i in $(seq 50); do
        local alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    for f in "${PIDFILES[@]}"; do
        [ -s "$f" ] && p=$(cat "$f") && kill -9 "$p" 2>/dev/null
    done
    wait 2>/dev/null
    netns_down
    if [ -n "$RUN" ] && [ "${RP_VM_KEEP:-0}" != 1 ] && [[ $RESULT == PASS ]]; then
        rm -rf "$RUN"
    elif [ -n "$RUN" ]; then
        log "logs kept in $RUN"
    fi
}
trap cleanup EXIT
trap 'RESULT="FAIL interrupted"; exit 1' INT TERM

# ---------------------------------------------------------------- guest
if [ $BUILD = 1 ]; then
    T0=$(date +%s)
    RP_VM_BACKEND=$BACKEND RP_VM_CACHE=$CACHE "$HERE/build-guest.sh" || die "build-guest.sh failed"
    log "guest built in $(( $(date +%s) - T0 )) s"
fi
[ -f "$CACHE/vmlinuz" ] && [ -f "$CACHE/initrd.cpio.gz" ] || die "no guest in $CACHE (run build-guest.sh)"
if [ $BACKEND = rampool ] && ! grep -q '^HAVE_RAMPOOL=1' "$CACHE/guest.env" 2>/dev/null; then
    die "the initramfs in $CACHE has no rampool plugin (rebuild without --no-build)"
fi
if [ $ATTACH = 1 ] && ! grep -q '^HAVE_RAMPOOL_CLI=1' "$CACHE/guest.env" 2>/dev/null; then
    die "the initramfs in $CACHE has no rampool CLI for --attach (rebuild without --no-build)"
fi
if [ $FRONT = nbd ] && ! grep -q '^HAVE_RAMPOOL_NBD=1' "$CACHE/guest.env" 2>/dev/null; then
    die "the initramfs in $CACHE has no rampool-nbd for --front nbd (build client/rampool-nbd, then rebuild without --no-build)"
fi
if [ $BACKEND = stock ] && ! grep -q "^HAVE_STOCK=1" "$CACHE/guest.env" 2>/dev/null; then
    die "the initramfs in $CACHE was built without the stock nbd plugin (rebuild without --no-build)"
fi
mkdir -p "$CACHE"
RUN=$(mktemp -d "$CACHE/run.XXXXXX")
SERIAL=$RUN/serial.log

# ---------------------------------------------------------------- network
if [ $NET = tap ]; then
    netns_up rpvm-$$ || die "network namespace rpvm-$$ with tap device rptap0: setup failed"
    SRV_ADDR=10.0.2.2
else
    SRV_ADDR=127.0.0.1
fi

# wait_file FILE PID WHAT: bounded poll for a non-empty FILE while PID lives
wait_file() {
    local i
    for i in $(seq 600); do
        [ -s "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || { log "$3 exited during startup:"; tail -n 20 "$RUN"/*.err >&2; return 1; }
        sleep 0.1
    done
    log "$3 not ready after 60 s"
    return 1
}

# ---------------------------------------------------------------- servers
GUEST_EPS=()     # HOST:PORT as seen from the guest
HOST_PORTS=()
if [ $BACKEND = rampool ]; then
    for i in $(seq 0 $((NSERVERS - 1))); do
        "${NSX[@]}" "$MEMSERVER" --listen "$SRV_ADDR:0" --size "$SERVER_SIZE" --no-mlock \
            --port-file "$RUN/ms$i.port" --pidfile "$RUN/ms$i.pid" \
            >"$RUN/ms$i.out" 2>"$RUN/ms$i.err" &
        PIDS+=($!)
        PIDFILES+=("$RUN/ms$i.pid")
    done
    for i in $(seq 0 $((NSERVERS - 1))); do
        wait_file "$RUN/ms$i.port" "${PIDS[$i]}" "memserver $i" || die "memserver $i did not start"
        HOST_PORTS+=($(tr -dc '0-9' <"$RUN/ms$i.port"))
    done
    log "memservers on $SRV_ADDR ports ${HOST_PORTS[*]}"
else
    # one host-side nbdkit memory server; in a fresh namespace any port is
    # free, on the host's loopback try a few
    for port in 10809 $(seq $((20000 + $$ % 20000)) $((20000 + $$ % 20000 + 20))); do
        rm -f "$RUN/nbdkit.pid"
        "${NSX[@]}" nbdkit -f -P "$RUN/nbdkit.pid" -i "$SRV_ADDR" -p "$port" \
            memory size="$SIZE" >"$RUN/nbdkit.out" 2>"$RUN/nbdkit.err" &
        p=$!
        if wait_file "$RUN/nbdkit.pid" "$p" "host nbdkit"; then
            PIDS+=($p); PIDFILES+=("$RUN/nbdkit.pid"); HOST_PORTS+=($port); break
        fi
        kill "$p" 2>/dev/null; wait "$p" 2>/dev/null
    done
    [ ${#HOST_PORTS[@]} = 1 ] || die "host nbdkit memory server did not start"
    log "host nbdkit memory on $SRV_ADDR:${HOST_PORTS[0]}"
fi

NETDEV=()
if [ $NET = tap ]; then
    for p in "${HOST_PORTS[@]}"; do GUEST_EPS+=("10.0.2.2:$p"); done
    NETDEV=(-netdev tap,id=n0,ifname=rptap0,script=no,downscript=no)
else
    nd="user,id=n0,restrict=on,net=10.0.2.0/24"
    i=0
    for p in "${HOST_PORTS[@]}"; do
        ga=10.0.2.$((100 + i))
        GUEST_EPS+=("$ga:$p")
        nd+=",guestfwd=tcp:$ga:$p-cmd:socat - TCP:127.0.0.1:$p"
        i=$((i + 1))
    done
    NETDEV=(-netdev "$nd")
fi

# ---------------------------------------------------------------- boot
APPEND="console=ttyS0 panic=-1 zswap.enabled=0 rootfstype=ramfs hung_task_panic=1 loglevel=5"
APPEND+=" rp_backend=$BACKEND rp_front=$FRONT rp_ip=10.0.2.15/24 rp_conns=$CONNS rp_threads=$THREADS"
APPEND+=" rp_limit_mb=$LIMIT_MB rp_hog_mb=$HOG_MB rp_size=$SIZE rp_replicas=$REPLICAS"
if [ $BACKEND = rampool ]; then
    APPEND+=" rp_servers=$(IFS=,; echo "${GUEST_EPS[*]}")"
else
    APPEND+=" rp_nbd=${GUEST_EPS[0]}"
fi
[ -n "$EXTRA" ] && APPEND+=" rp_extra=${EXTRA// /+}"
[ $NBDKIT_SWAP = 0 ] && APPEND+=" rp_nbdkit_swap=0"
[ $ATTACH = 1 ] && APPEND+=" rp_attach=1"
[ $DISCARD = 1 ] && APPEND+=" rp_discard=1 rp_hog_runs=2"
[ "${RP_VM_HOG_CORRUPT:-0}" = 1 ] && APPEND+=" rp_hog_corrupt=1"
[ -n "${RP_VM_APPEND:-}" ] && APPEND+=" $RP_VM_APPEND"

log "booting guest (backend=$BACKEND front=$FRONT net=$NET kill=$DO_KILL discard=$DISCARD global=$GLOBAL, timeout ${TIMEOUT}s); serial log: $SERIAL"
T_BOOT=$(date +%s.%N)
"${NSX[@]}" timeout -k 10 "$TIMEOUT" qemu-system-x86_64 \
    -accel tcg,thread=multi -m "$MEM_MB" -smp 2 \
    -kernel "$CACHE/vmlinuz" -initrd "$CACHE/initrd.cpio.gz" -append "$APPEND" \
    -nographic -no-reboot -pidfile "$RUN/qemu.pid" \
    "${NETDEV[@]}" -device virtio-net-pci,netdev=n0 \
    ${RP_VM_MONITOR:+-monitor unix:$RUN/mon.sock,server=on,wait=off} \
    </dev/null >"$SERIAL" 2>"$RUN/qemu.err" &
QPID=$!
PIDS+=($QPID)
PIDFILES+=("$RUN/qemu.pid")

KILLED=
if [ $DO_KILL = 1 ]; then
    # watch the serial log for the hog's progress, then kill -9 memserver 1
    while kill -0 $QPID 2>/dev/null; do
        if grep -aq "hog: wrote $KILL_AT MiB" "$SERIAL"; then
            victim=$(cat "$RUN/ms1.pid")
            kill -9 "$victim" && KILLED=$victim
            { wait "$victim"; } 2>/dev/null
            log "killed memserver 1 (pid $victim, port ${HOST_PORTS[1]}) with SIGKILL after the hog wrote $KILL_AT MiB"
            break
        fi
        sleep 0.2
    done
fi
wait $QPID
QRC=$?
T_END=$(date +%s.%N)
[ $QRC = 124 ] && log "qemu hit the ${TIMEOUT}s timeout"
[ $DO_KILL = 1 ] && [ -z "$KILLED" ] && log "note: --kill requested but the hog never reached $KILL_AT MiB"

# ---------------------------------------------------------------- verdict
line=$(grep -a 'RAMPOOL-VM-RESULT:' "$SERIAL" | tail -n1 | tr -d '\r')
stats=$(grep -a 'RAMPOOL-VM-STATS:' "$SERIAL" | tail -n1 | tr -d '\r')
tr -d '\r' <"$SERIAL" | awk '/^--- rampool stats-file/ { s = 1 } s || /^(hog: (RESULT|MISMATCH)|rp-init|rp-watch|  locked )/ { print } /^---$/ { s = 0 }' | sed 's/^/  guest| /' >&2
if [ -n "$stats" ]; then log "${stats#*RAMPOOL-VM-STATS: }"; fi
# kernel nbd trouble (timeouts, errors) is worth a look even on PASS;
# so are nbdkit's errors and warnings, and rampool-nbd's ("rampool: ...")
nbdmsg=$(tr -d '\r' <"$SERIAL" | grep -a -E 'block nbd0: |nbdkit: .*(error|warning)|rampool: (error|warning)' | grep -av -E 'info:|shutting down sockets' | head -n 20)
if [ -n "$nbdmsg" ]; then
    log "WARNING: kernel nbd / the NBD server reported trouble (logs kept):"
    sed 's/^/  serial| /' <<<"$nbdmsg" >&2
    RP_VM_KEEP=1
fi
# A kernel nbd request timeout is a stall of the whole -t (60 s) that swap
# users would see: a failure even if the run recovered from it.
nbdtimeout=$(grep -a -m1 'block nbd0: Connection timed out' <<<"$nbdmsg")
log "guest run took $(awk -v a="$T_BOOT" -v b="$T_END" 'BEGIN{printf "%.1f", b-a}') s (qemu exit $QRC), total $(awk -v a="$T_START" -v b="$T_END" 'BEGIN{printf "%.1f", b-a}') s"
if [ -z "$line" ]; then
    if [ $QRC = 124 ]; then RESULT="FAIL timeout after ${TIMEOUT}s"; else RESULT="FAIL no result line (qemu exit $QRC)"; fi
    panic=$(grep -a -m1 -E "Kernel panic|blocked for more than" "$SERIAL" | tr -d "\r")
    [ -n "$panic" ] && RESULT="$RESULT; guest: $panic"
else
    RESULT=${line#*RAMPOOL-VM-RESULT: }
fi
if [ "$RESULT" = PASS ] && [ -n "$nbdtimeout" ]; then
    RESULT="FAIL a kernel nbd request waited the whole nbd-client -t: $nbdtimeout"
fi
if [ $DO_KILL = 1 ] && [ -z "$KILLED" ] && [ "$RESULT" = PASS ]; then
    RESULT="FAIL --kill did not fire"
fi
# with replicas >= 2 one dead memserver must not lose an extent
lost=$(tr -d '\r' <"$SERIAL" | sed -n 's/^extents_lost //p' | tail -n1)
if [ "$RESULT" = PASS ] && [ -n "$lost" ] && [ "$lost" != 0 ]; then
    RESULT="FAIL plugin stats: extents_lost $lost"
fi
# The donors' own view (STAT), after the guest is gone: rampool detach
# stopped nbdkit, which frees the disk on every donor at exit; with
# --discard, blkdiscard of the whole device freed every extent.  Either
# way nothing may be left (a lease expiry would take 30 s and more).
if [ "$RESULT" = PASS ] && { [ $ATTACH = 1 ] || [ $DISCARD = 1 ]; } && [ $BACKEND = rampool ]; then
    why=$([ $ATTACH = 1 ] && echo "rampool detach" || echo "blkdiscard")
    for i in "${!HOST_PORTS[@]}"; do
        [ -n "$KILLED" ] && [ "$i" = 1 ] && continue
        st=$("${NSX[@]}" "$RAMPOOL_CLI" status --raw "$SRV_ADDR:${HOST_PORTS[$i]}" 2>&1)
        used=$(awk '$2 == "up" { print $4 }' <<<"$st")
        log "after $why: memserver $i: ${used:-?} bytes used"
        [ "$used" = 0 ] || { RESULT="FAIL after $why, memserver $i holds ${used:-?} bytes: $st"; break; }
    done
fi
if [ "$RESULT" != PASS ]; then
    tail -n 40 "$SERIAL" | tr -d '\r' | sed 's/^/  serial| /' >&2
fi
echo "RAMPOOL-VM-RESULT: $RESULT"
[ "$RESULT" = PASS ] && exit 0
exit 1
