#!/bin/bash
# run-rdma.sh — run a test script inside a QEMU guest that has soft-RoCE
# (rdma_rxe), because the build machines' kernel has no RDMA.  The guest
# (build-guest.sh with RP_VM_GUEST=rdma, /init = rdma-init.sh) makes a veth
# pair with an rxe device on each end, checks rping -V through both, then
# runs SCRIPT under bash with the variables that rdma-init.sh's header lists
# (RPVM_ADDR1=10.77.0.1, RPVM_ADDR2=10.77.0.2, abs_top_builddir=/rampool,
# ...), so that SCRIPT can source tests/functions.sh like a host test.
#
# Usage: tests/vm/run-rdma.sh [OPTIONS] SCRIPT [ARGS...]
#   --no-build      use the guest already in the cache (no layer check)
#   -e NAME=VALUE   export NAME to SCRIPT in the guest (repeatable)
#   --file PATH     also pack PATH into the guest as /payload/BASENAME
#                   (repeatable; SCRIPT runs in /tmp, finds it in /payload)
#   --keep          keep the run directory on PASS too
#   --netdev SPEC   instead of the veth pair: a virtio-net NIC on the QEMU
#                   netdev SPEC (without id=), e.g.
#                   dgram,local.type=unix,local.path=A,remote.type=unix,remote.path=B
#                   with rxe0 on it (rdma-init.sh's rpvm_net=eth): two
#                   guests on one such network talk RDMA (run-rdma-pair.sh)
#   --ip ADDR/PREFIX  the guest's address on that NIC (needed with --netdev)
#   --peer ADDR     the other guest's address (RPVM_PEER in SCRIPT)
#   --mac MAC       the NIC's MAC address (two guests need two)
#   --name NAME     a label for the log lines (default: rdma)
#
# Environment (defaults in brackets): RP_VM_CACHE [tests/vm/work],
# RP_VM_BUILDDIR (the build tree, see build-guest.sh), RP_VM_TIMEOUT [300]
# (seconds for the whole guest run, host side), RP_VM_SCRIPT_TIMEOUT [240]
# (seconds for SCRIPT, guest side), RP_VM_MEM_MB [1024], RP_VM_SMP [2],
# RP_VM_APPEND (extra kernel command-line words, e.g. rpvm_selftest=0),
# RP_VM_KEEP=1 (as --keep).
#
# Output: SCRIPT's output (stdout and stderr, as it ran), then the
# verdict line "RAMPOOL-VM-RESULT: PASS|FAIL ..." and the times.  Files
# SCRIPT leaves in $RPVM_OUT come back in RUN/out/.  The run directory
# (tests/vm/work/rdma-run.*: serial.log = the guest console, test.log =
# SCRIPT's output, out/) is kept on failure.  Exit status 0 on PASS.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${RP_VM_CACHE:-$HERE/work}
TIMEOUT=${RP_VM_TIMEOUT:-300}
SCRIPT_TIMEOUT=${RP_VM_SCRIPT_TIMEOUT:-240}
MEM_MB=${RP_VM_MEM_MB:-1024}
SMP=${RP_VM_SMP:-2}
KEEP=${RP_VM_KEEP:-0}
BUILD=1
ENVS=()
FILES=()
NETDEV=
GUEST_IP=
PEER=
MAC=
NAME=rdma

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case $1 in
    --no-build) BUILD=0 ;;
    -e) ENVS+=("$2"); shift ;;
    --file) FILES+=("$2"); shift ;;
    --keep) KEEP=1 ;;
    --netdev) NETDEV=$2; shift ;;
    --ip) GUEST_IP=$2; shift ;;
    --peer) PEER=$2; shift ;;
    --mac) MAC=$2; shift ;;
    --name) NAME=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) echo "run-rdma: unknown option '$1'" >&2; exit 1 ;;
    *) break ;;
    esac
    shift
done
[ $# -ge 1 ] || { usage >&2; exit 1; }
SCRIPT=$1; shift
[ -f "$SCRIPT" ] || { echo "run-rdma: no script '$SCRIPT'" >&2; exit 1; }
[ -z "$NETDEV" ] || [ -n "$GUEST_IP" ] || { echo "run-rdma: --netdev needs --ip ADDR/PREFIX" >&2; exit 1; }
for e in "${ENVS[@]}"; do
    [[ $e =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || { echo "run-rdma: -e wants NAME=VALUE, got '$e'" >&2; exit 1; }
done
for f in "${FILES[@]}"; do
    [ -f "$f" ] || { echo "run-rdma: no file '$f'" >&2; exit 1; }
done
for c in qemu-system-x86_64:qemu-system-x86 timeout:coreutils tar:tar; do
    command -v "${c%%:*}" >/dev/null ||
        { echo "run-rdma: '${c%%:*}' missing; install the Debian package '${c#*:}'" >&2; exit 1; }
done
[ -x /bin/busybox ] || { echo "run-rdma: /bin/busybox missing; install the Debian package 'busybox-static'" >&2; exit 1; }

T_START=$(date +%s.%N)
since() { awk -v s="$1" -v n="$(date +%s.%N)" 'BEGIN { printf "%.1f", n - s }'; }
log() { echo "run-rdma($NAME)[$(since "$T_START")s]: $*" >&2; }

RUN=
QPID=
RESULT="FAIL harness error"
cleanup() {
    local i
    trap - EXIT INT TERM
    if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
        kill "$QPID" 2>/dev/null
        for i in $(seq 50); do kill -0 "$QPID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$QPID" 2>/dev/null
    fi
    wait 2>/dev/null
    if [ -n "$RUN" ]; then
        rm -f "$RUN/initrd" "$RUN/out.img"
        if [ "$KEEP" != 1 ] && [ "$RESULT" = PASS ]; then
            rm -rf "$RUN"
        else
            log "run directory kept: $RUN"
        fi
    fi
}
trap cleanup EXIT
trap 'RESULT="FAIL interrupted"; exit 1' INT TERM

# ---------------------------------------------------------------- guest
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
OUT=$CACHE/rdma
if [ $BUILD = 1 ]; then
    RP_VM_GUEST=rdma RP_VM_CACHE=$CACHE "$HERE/build-guest.sh" ||
        { log "FAIL: build-guest.sh failed"; exit 1; }
    log "guest ready"
fi
[ -f "$OUT/vmlinuz" ] && [ -f "$OUT/base.cpio" ] && [ -f "$OUT/project.cpio" ] ||
    { log "FAIL: no RDMA guest in $OUT (run without --no-build)"; exit 1; }

RUN=$(mktemp -d "$CACHE/rdma-run.XXXXXX")
# the payload: SCRIPT, extra files, the variables, and a launcher
P=$RUN/payload-root/payload
mkdir -p "$P"
cp "$SCRIPT" "$P/test.sh"
for f in "${FILES[@]}"; do cp "$f" "$P/"; done
{
    for e in "${ENVS[@]}"; do printf 'export %s=%q\n' "${e%%=*}" "${e#*=}"; done
} >"$P/env"
{
    echo "# made by run-rdma.sh"
    echo ". /payload/env"
    printf 'exec /bin/bash /payload/test.sh'
    for a in "$@"; do printf ' %q' "$a"; done
    echo
} >"$P/run"
(cd "$RUN/payload-root" && find . -mindepth 1 | LC_ALL=C sort | /bin/busybox cpio -o -H newc 2>/dev/null) \
    >"$RUN/payload.cpio" || { log "FAIL: packing the payload"; exit 1; }
# the kernel unpacks concatenated cpio archives in order
cat "$OUT/base.cpio" "$OUT/project.cpio" "$RUN/payload.cpio" >"$RUN/initrd"
truncate -s 64M "$RUN/out.img"

# ---------------------------------------------------------------- boot
APPEND="console=ttyS0 panic=-1 zswap.enabled=0 rootfstype=ramfs hung_task_panic=1 loglevel=5"
APPEND+=" rpvm_timeout=$SCRIPT_TIMEOUT rpvm_out=ttyS1"
NIC=(-nic none)
if [ -n "$NETDEV" ]; then
    APPEND+=" rpvm_net=eth rpvm_ip=$GUEST_IP${PEER:+ rpvm_peer=$PEER}"
    NIC=(-netdev "$NETDEV,id=n0" -device "virtio-net-pci,netdev=n0${MAC:+,mac=$MAC}")
fi
[ -n "${RP_VM_APPEND:-}" ] && APPEND+=" $RP_VM_APPEND"
log "booting the guest ($MEM_MB MiB, $SMP vCPUs, timeout ${TIMEOUT}s): $(basename "$SCRIPT") $*"
T_BOOT=$(date +%s.%N)
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 \
    -accel tcg,thread=multi -m "$MEM_MB" -smp "$SMP" \
    -kernel "$OUT/vmlinuz" -initrd "$RUN/initrd" -append "$APPEND" \
    -display none -monitor none -no-reboot "${NIC[@]}" \
    -serial "file:$RUN/serial.log" -serial "file:$RUN/test.log" \
    -drive "file=$RUN/out.img,format=raw,if=virtio" \
    </dev/null >"$RUN/qemu.out" 2>&1 &
QPID=$!
wait $QPID
QRC=$?
QPID=
T_END=$(date +%s.%N)

# ---------------------------------------------------------------- verdict
tr -d '\r' <"$RUN/test.log"
line=$(grep -a 'RAMPOOL-VM-RESULT:' "$RUN/serial.log" | tail -n1 | tr -d '\r')
if [ -n "$line" ]; then
    RESULT=${line#*RAMPOOL-VM-RESULT: }
elif [ $QRC = 124 ]; then
    RESULT="FAIL timeout after ${TIMEOUT}s (host side)"
else
    RESULT="FAIL no result line (qemu exit $QRC)"
fi
if [ "$RESULT" != PASS ] && [ -z "$line" ]; then
    panic=$(grep -a -m1 -E "Kernel panic|blocked for more than|BUG:" "$RUN/serial.log" | tr -d '\r')
    [ -n "$panic" ] && RESULT="$RESULT; guest: $panic"
fi
if [ "$(head -c 512 "$RUN/out.img" | tr -d '\0' | wc -c)" -gt 0 ]; then
    mkdir -p "$RUN/out"
    tar -xf "$RUN/out.img" -C "$RUN/out" 2>/dev/null || log "warning: could not read the files from the guest"
    log "files from the guest: $RUN/out"
    KEEP=1
fi
if [ "$RESULT" != PASS ]; then
    echo "--- guest console (last 40 lines)"
    tail -n 40 "$RUN/serial.log" | tr -d '\r' | sed 's/^/  serial| /'
fi
boot=$(sed -n 's/^rpvm-init\[\([0-9.]*\)\]: running the test script.*/\1/p' "$RUN/serial.log" | tr -d '\r' | head -n1)
log "guest run $(awk -v a="$T_BOOT" -v b="$T_END" 'BEGIN { printf "%.1f", b - a }') s (to the test script: ${boot:-?} s guest time), total $(since "$T_START") s"
echo "RAMPOOL-VM-RESULT: $RESULT"
[ "$RESULT" = PASS ]
