#!/bin/sh
# /init of the rampool RDMA guest (busybox initramfs built by
# build-guest.sh with RP_VM_GUEST=rdma, booted by run-rdma.sh).  The build
# machines' kernel has no RDMA, so RDMA tests run here, on soft-RoCE
# (rdma_rxe): this script loads the modules, makes a veth pair with an rxe
# device on each end, checks that rping works between them (a self-test of
# the environment, so that a broken guest is not reported as a rampool
# bug), then runs the test script that run-rdma.sh packed as /payload and
# reports its verdict.
#
# Network (default, rpvm_net=veth): veth0 10.77.0.1/24 with rxe0, veth1
# 10.77.0.2/24 with rxe1, in the one network namespace.  A connection to an
# address runs over the rxe device that owns it (rxe loops the packets back
# inside the device), so both addresses work for client and server alike.
# rpvm_net=eth: no veth; eth0 (a virtio-net NIC QEMU gives the guest) gets
# rpvm_ip and rxe0; RPVM_ADDR1 is that address and RPVM_PEER is rpvm_peer
# (two guests on one QEMU network, see run-rdma.sh --net); no self-test
# unless rpvm_selftest=1 (rping to the guest's own address).
#
# Settings (kernel command line; unknown name=value words reach /init as
# environment variables): rpvm_net, rpvm_ip, rpvm_peer, rpvm_selftest
# (1/0, default 1 with veth), rpvm_timeout (seconds for the test script,
# default 240), rpvm_hung (hung_task_timeout_secs, default 120), rpvm_out
# (a tty for a clean copy of the script's output, e.g. ttyS1).
#
# The test script runs as root under /bin/bash with RLIMIT_MEMLOCK
# unlimited, cwd /tmp, and these variables (besides those of /payload/env):
#   RPVM_ADDR1 RPVM_ADDR2   the two addresses (RPVM_ADDR2 unset with eth)
#   RPVM_RDMA_DEV1 RPVM_RDMA_DEV2   rxe0, rxe1 (the devices behind them)
#   RPVM_PEER               the other guest's address (eth only)
#   RPVM_OUT                a directory whose files run-rdma.sh copies out
#   abs_top_builddir=/rampool srcdir=/rampool/tests  (tests/functions.sh)
# Output: "RAMPOOL-VM-RESULT: PASS" or "RAMPOOL-VM-RESULT: FAIL reason".
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /tmp /run
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run

say() { echo "rpvm-init[$(cut -d' ' -f1 /proc/uptime)]: $*"; }
finish() {
    sync
    echo "RAMPOOL-VM-RESULT: $*"
    poweroff -f
    sleep 5
    echo o >/proc/sysrq-trigger
}
fail() {
    say "failure: $*"
    echo "--- diagnostics ---"
    /usr/sbin/ip -br addr 2>&1
    /usr/sbin/rdma link show 2>&1
    grep -E 'MemTotal|MemFree|MemAvailable' /proc/meminfo
    dmesg | tail -n 30
    finish "FAIL $*"
}
# rdma_state DEV: the state of port 1 of rxe device DEV (ACTIVE when usable)
rdma_state() { /usr/sbin/rdma link show "$1/1" 2>/dev/null | sed -n 's/.* state \([A-Z_]*\).*/\1/p'; }

net=${rpvm_net:-veth}
timeout_s=${rpvm_timeout:-240}
say "booted; net=$net, test timeout ${timeout_s}s, $(grep -c ^processor /proc/cpuinfo) cpus, $(sed -n 's/MemTotal: *//p' /proc/meminfo)"

echo "${rpvm_hung:-120}" >/proc/sys/kernel/hung_task_timeout_secs
echo 1 >/proc/sys/kernel/hung_task_panic
echo 1 >/proc/sys/kernel/panic_on_oops

# ---- modules (order computed at build time)
while read -r m; do
    [ -n "$m" ] || continue
    case $m in
    nbd) insmod /lib/modules/nbd.ko nbds_max=4 || fail "insmod nbd" ;;
    *) insmod "/lib/modules/$m.ko" || fail "insmod $m" ;;
    esac
done </etc/modules.order

# registered (pinned) memory counts against RLIMIT_MEMLOCK
ulimit -l unlimited || fail "ulimit -l unlimited"
ulimit -n 65536 || say "warning: ulimit -n 65536 failed"

# ---- network and rxe devices
IP=/usr/sbin/ip
RDMA=/usr/sbin/rdma
$IP link set lo up
case $net in
veth)
    RPVM_ADDR1=10.77.0.1 RPVM_ADDR2=10.77.0.2
    RPVM_RDMA_DEV1=rxe0 RPVM_RDMA_DEV2=rxe1
    $IP link add veth0 type veth peer name veth1 || fail "ip link add veth"
    $IP addr add $RPVM_ADDR1/24 dev veth0 && $IP addr add $RPVM_ADDR2/24 dev veth1 ||
        fail "ip addr add"
    $IP link set veth0 up && $IP link set veth1 up || fail "ip link set up"
    $RDMA link add rxe0 type rxe netdev veth0 || fail "rdma link add rxe0"
    $RDMA link add rxe1 type rxe netdev veth1 || fail "rdma link add rxe1"
    devs="rxe0 rxe1"
    ;;
eth)
    [ -n "$rpvm_ip" ] || fail "rpvm_net=eth needs rpvm_ip=ADDR/PREFIX"
    i=0
    while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do i=$((i + 1)); usleep 100000; done
    [ -e /sys/class/net/eth0 ] || fail "no eth0"
    $IP addr add "$rpvm_ip" dev eth0 && $IP link set eth0 up || fail "eth0 setup"
    RPVM_ADDR1=${rpvm_ip%/*} RPVM_RDMA_DEV1=rxe0
    RPVM_PEER=${rpvm_peer:-}
    $RDMA link add rxe0 type rxe netdev eth0 || fail "rdma link add rxe0"
    devs=rxe0
    ;;
*) fail "unknown rpvm_net '$net'" ;;
esac
for d in $devs; do
    i=0
    while [ "$(rdma_state $d)" != ACTIVE ] && [ $i -lt 100 ]; do i=$((i + 1)); usleep 100000; done
    [ "$(rdma_state $d)" = ACTIVE ] || fail "$d not ACTIVE: $($RDMA link show $d/1 2>&1)"
done
say "rdma: $($RDMA link show | tr -s ' \n' ' ')"

# ---- self-test: rping client and server through each rxe device
# rping_check ADDR PORT: a server on ADDR, a client to it, 3 verified pings
rping_check() {
    rping -s -a "$1" -p "$2" -C 3 >/tmp/rping-s.out 2>&1 &
    spid=$!
    ok=0 j=0
    while [ $j -lt 30 ]; do
        # the server may not listen yet: the client is then rejected at once
        if timeout 20 rping -c -a "$1" -p "$2" -C 3 -V -v >/tmp/rping-c.out 2>&1 &&
           [ "$(grep -c 'ping data' /tmp/rping-c.out)" = 3 ]; then
            ok=1; break
        fi
        kill -0 $spid 2>/dev/null || break
        j=$((j + 1)); usleep 200000
    done
    i=0
    while kill -0 $spid 2>/dev/null && [ $i -lt 50 ]; do i=$((i + 1)); usleep 100000; done
    kill -9 $spid 2>/dev/null
    wait $spid 2>/dev/null
    [ $ok = 1 ] && return 0
    echo "--- rping server"; cat /tmp/rping-s.out
    echo "--- rping client"; cat /tmp/rping-c.out
    return 1
}
selftest=${rpvm_selftest:-}
[ -n "$selftest" ] || { [ "$net" = veth ] && selftest=1 || selftest=0; }
if [ "$selftest" = 1 ]; then
    rping_check "$RPVM_ADDR1" 7471 || fail "self-test: rping -V via $RPVM_ADDR1 ($RPVM_RDMA_DEV1)"
    if [ -n "${RPVM_ADDR2:-}" ]; then
        rping_check "$RPVM_ADDR2" 7472 || fail "self-test: rping -V via $RPVM_ADDR2 ($RPVM_RDMA_DEV2)"
    fi
    say "self-test: rping -V passed ($RPVM_ADDR1${RPVM_ADDR2:+ and $RPVM_ADDR2})"
fi

# ---- the test script
[ -f /payload/run ] || fail "no /payload/run (boot this guest with run-rdma.sh)"
RPVM_OUT=/tmp/out
mkdir -p $RPVM_OUT
export RPVM_ADDR1 RPVM_ADDR2 RPVM_RDMA_DEV1 RPVM_RDMA_DEV2 RPVM_PEER RPVM_OUT
export abs_top_builddir=/rampool srcdir=/rampool/tests TMPDIR=/tmp HOME=/root
cd /tmp
out=/dev/null
[ -n "$rpvm_out" ] && [ -c "/dev/$rpvm_out" ] && out=/dev/$rpvm_out
mkfifo /run/out.fifo
tee "$out" </run/out.fifo &
TEE_PID=$!
say "running the test script (timeout ${timeout_s}s)"
T0=$(cut -d' ' -f1 /proc/uptime)
# in a session of its own, so that on a timeout all it started can be killed
setsid /bin/bash /payload/run >/run/out.fifo 2>&1 </dev/null &
SPID=$!
start=$(cut -d. -f1 /proc/uptime)
timed_out=0
while kill -0 $SPID 2>/dev/null; do
    if [ $(( $(cut -d. -f1 /proc/uptime) - start )) -ge "$timeout_s" ]; then
        timed_out=1
        kill -9 -$SPID 2>/dev/null
        break
    fi
    usleep 200000
done
wait $SPID
rc=$?
T1=$(cut -d' ' -f1 /proc/uptime)
# leftovers of the script (its trap should have stopped them) hold the fifo
kill -9 -$SPID 2>/dev/null
i=0
while kill -0 $TEE_PID 2>/dev/null && [ $i -lt 50 ]; do i=$((i + 1)); usleep 100000; done
kill $TEE_PID 2>/dev/null
say "test script: exit $rc after $(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.1f", b - a }') s"

# ---- files for the host: a tar archive on the raw disk /dev/vda
if [ -b /dev/vda ] && [ -n "$(ls -A $RPVM_OUT)" ]; then
    tar -cf /dev/vda -C $RPVM_OUT . || say "warning: could not write $RPVM_OUT to /dev/vda"
fi

[ $timed_out = 1 ] && finish "FAIL test script timed out after ${timeout_s}s"
[ $rc = 0 ] || finish "FAIL test script exit status $rc"
finish PASS
