#!/bin/bash
# run-rdma-pair.sh — two RDMA guests that talk to each other: a "donor"
# (10.78.0.1) and a "compute" guest (10.78.0.2), each with its own rxe0 on
# a virtio-net NIC, the two NICs joined by a QEMU network backend on the
# host (no host interface, no root).  This is the shape of a compute node
# swapping to memservers on another node over RDMA, which one guest with
# a veth pair cannot show (both ends share one kernel there).  An
# experiment and a tool, not part of make check: it runs two guests at
# once, which is twice the load of run-rdma.sh.
#
# Usage: tests/vm/run-rdma-pair.sh [--net dgram|stream|tcp|udp] [--no-build]
#                                  SCRIPT [ARGS...]
#
# SCRIPT runs in both guests (run-rdma.sh, --netdev), with RPVM_ROLE=donor
# or compute, RPVM_ADDR1 its own address and RPVM_PEER the other's; the two
# halves synchronise over the network themselves (e.g. the compute side
# retries until the donor's servers answer, then tells the donor it is
# done).  The pair passes when both guests pass.
#   --net dgram   (default) unix datagram sockets, one per guest
#         stream  a unix stream socket (the donor's QEMU listens)
#         tcp     -netdev socket,listen= / connect= on 127.0.0.1
#         udp     -netdev socket,udp= on 127.0.0.1
#
# Environment: as run-rdma.sh; defaults here RP_VM_SMP [1] and
# RP_VM_MEM_MB [768] per guest (two guests share the host's 2 cores),
# RP_VM_SCRIPT_TIMEOUT [600] and RP_VM_TIMEOUT [720] (rdma-pair-swap.sh
# took 150-290 s of script time on a shared host);
# RP_VM_DONOR_MEM_MB and RP_VM_COMPUTE_MEM_MB [both RP_VM_MEM_MB] size
# one guest alone (e.g. a donor with room for larger memservers).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${RP_VM_CACHE:-$HERE/work}
export RP_VM_SMP=${RP_VM_SMP:-1} RP_VM_MEM_MB=${RP_VM_MEM_MB:-768}
export RP_VM_SCRIPT_TIMEOUT=${RP_VM_SCRIPT_TIMEOUT:-600} RP_VM_TIMEOUT=${RP_VM_TIMEOUT:-720}
DONOR_MEM_MB=${RP_VM_DONOR_MEM_MB:-$RP_VM_MEM_MB}
COMPUTE_MEM_MB=${RP_VM_COMPUTE_MEM_MB:-$RP_VM_MEM_MB}
NET=dgram
BUILD=1
while [ $# -gt 0 ]; do
    case $1 in
    --net) NET=$2; shift ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run-rdma-pair: unknown option '$1'" >&2; exit 1 ;;
    *) break ;;
    esac
    shift
done
[ $# -ge 1 ] || { echo "usage: run-rdma-pair.sh [--net dgram|stream|tcp|udp] [--no-build] SCRIPT [ARGS...]" >&2; exit 1; }

T_START=$(date +%s.%N)
log() { echo "run-rdma-pair[$(awk -v s="$T_START" -v n="$(date +%s.%N)" 'BEGIN { printf "%.1f", n - s }')s]: $*" >&2; }

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
if [ $BUILD = 1 ]; then
    RP_VM_GUEST=rdma RP_VM_CACHE=$CACHE "$HERE/build-guest.sh" || { log "FAIL: build-guest.sh failed"; exit 1; }
fi
D=$(mktemp -d "$CACHE/rdma-pair.XXXXXX")
PIDS=()
cleanup() {
    local p
    trap - EXIT INT TERM
    # run-rdma.sh stops its QEMU on TERM
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -f "$D"/*.sock
}
trap cleanup EXIT
trap 'exit 1' INT TERM

port=$((20000 + ($$ % 10000) * 2))
case $NET in
dgram)
    ND_DONOR="dgram,local.type=unix,local.path=$D/donor.sock,remote.type=unix,remote.path=$D/compute.sock"
    ND_COMPUTE="dgram,local.type=unix,local.path=$D/compute.sock,remote.type=unix,remote.path=$D/donor.sock" ;;
stream)
    ND_DONOR="stream,server=on,addr.type=unix,addr.path=$D/net.sock"
    ND_COMPUTE="stream,server=off,addr.type=unix,addr.path=$D/net.sock" ;;
tcp)
    ND_DONOR="socket,listen=127.0.0.1:$port"
    ND_COMPUTE="socket,connect=127.0.0.1:$port" ;;
udp)
    ND_DONOR="socket,udp=127.0.0.1:$((port + 1)),localaddr=127.0.0.1:$port"
    ND_COMPUTE="socket,udp=127.0.0.1:$port,localaddr=127.0.0.1:$((port + 1))" ;;
*) echo "run-rdma-pair: --net must be dgram, stream, tcp or udp" >&2; exit 1 ;;
esac

log "donor guest (10.78.0.1, $DONOR_MEM_MB MiB), --net $NET"
RP_VM_MEM_MB=$DONOR_MEM_MB "$HERE/run-rdma.sh" --no-build --name donor -e RPVM_ROLE=donor \
    --netdev "$ND_DONOR" --ip 10.78.0.1/24 --peer 10.78.0.2 --mac 52:54:00:4e:00:01 \
    "$@" >"$D/donor.out" 2>&1 &
PIDS+=($!)
# a listening QEMU must be up before the connecting one starts
case $NET in
stream|tcp)
    for i in $(seq 300); do
        if [ $NET = stream ]; then [ -S "$D/net.sock" ] && break
        else ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && break; fi
        kill -0 "${PIDS[0]}" 2>/dev/null || break
        sleep 0.1
    done ;;
esac
log "compute guest (10.78.0.2, $COMPUTE_MEM_MB MiB)"
RP_VM_MEM_MB=$COMPUTE_MEM_MB "$HERE/run-rdma.sh" --no-build --name compute -e RPVM_ROLE=compute \
    --netdev "$ND_COMPUTE" --ip 10.78.0.2/24 --peer 10.78.0.1 --mac 52:54:00:4e:00:02 \
    "$@" >"$D/compute.out" 2>&1 &
PIDS+=($!)
wait "${PIDS[0]}"; rc_donor=$?
wait "${PIDS[1]}"; rc_compute=$?
PIDS=()
for r in donor compute; do
    echo "---- $r"
    sed 's/^/'"$r"'| /' "$D/$r.out"
done
log "donor exit $rc_donor, compute exit $rc_compute"
if [ $rc_donor = 0 ] && [ $rc_compute = 0 ]; then
    rm -rf "$D"
    echo "RAMPOOL-VM-PAIR-RESULT: PASS"
    exit 0
fi
log "outputs kept in $D"
echo "RAMPOOL-VM-PAIR-RESULT: FAIL"
exit 1
