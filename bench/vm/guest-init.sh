#!/bin/sh
# /init of the guest used by bench/vm-swap-bench.sh (busybox initramfs built
# by tests/vm/build-guest.sh with RP_VM_INIT pointing here and
# RP_VM_EXTRA_MODULES="virtio_blk").  Derived from tests/vm/guest-init.sh:
# the same cgroup-confined hog, but the swap device can be one of
#
#   rp_backend=rampool  nbdkit rampool (servers=$rp_servers) on a Unix
#                       socket in the guest, kernel nbd client on it
#   rp_backend=virtio   /dev/vda, a virtio-blk disk given to QEMU by the host
#   rp_backend=nbd      the kernel nbd client straight to nbd-server on the
#                       host over TCP (rp_nbd=HOST:PORT, rp_nbd_name=EXPORT)
#
# Other settings (kernel command-line words): rp_size [1G], rp_replicas [1],
# rp_extra (plugin words joined by '+'), rp_ip [10.0.2.15/24], rp_conns [2]
# (nbd-client -C), rp_threads [4] (nbdkit -t), rp_nbd_timeout [60],
# rp_limit_mb [96] (memory.max of the hog's cgroup), rp_hog_mb [256].
#
# Output: "RPBENCH-STATS: backend=... pswpin=N pswpout=N hog_s=S ..." and
# "RPBENCH-RESULT: PASS" or "RPBENCH-RESULT: FAIL reason"; then poweroff.
PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /tmp /sys/fs/cgroup
mount -t tmpfs -o size=16m tmpfs /tmp

say() { echo "rpbench-init[$(cut -d' ' -f1 /proc/uptime)]: $*"; }
finish() {
    sync
    echo "RPBENCH-RESULT: $*"
    poweroff -f
    sleep 5
    echo o >/proc/sysrq-trigger
}
fail() {
    say "failure: $*"
    cat /proc/swaps 2>/dev/null
    grep -E 'MemTotal|MemFree|MemAvailable|SwapTotal|SwapFree' /proc/meminfo
    dmesg | tail -n 30
    finish "FAIL $*"
}

backend=${rp_backend:-rampool}
size=${rp_size:-1G}
replicas=${rp_replicas:-1}
ipaddr=${rp_ip:-10.0.2.15/24}
conns=${rp_conns:-2}
threads=${rp_threads:-4}
nbd_timeout=${rp_nbd_timeout:-60}
limit_mb=${rp_limit_mb:-96}
hog_mb=${rp_hog_mb:-256}

say "booted; backend=$backend limit=${limit_mb}M hog=${hog_mb}M conns=$conns"
echo 120 >/proc/sys/kernel/hung_task_timeout_secs
echo 1 >/proc/sys/kernel/hung_task_panic
echo 1 >/proc/sys/kernel/panic_on_oops
# same reserve as the test, for every backend (the nbd ones need it)
echo 16384 >/proc/sys/vm/min_free_kbytes

while read -r m; do
    [ -n "$m" ] || continue
    if [ "$m" = nbd ]; then
        insmod /lib/modules/nbd.ko nbds_max=2 || fail "insmod nbd"
    else
        insmod /lib/modules/$m.ko || fail "insmod $m"
    fi
done </etc/modules.order

ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do i=$((i + 1)); usleep 100000; done
[ -e /sys/class/net/eth0 ] || fail "no eth0"
ip addr add "$ipaddr" dev eth0 || fail "ip addr"
ip link set eth0 up || fail "ip link up"

mount -t cgroup2 none /sys/fs/cgroup || fail "mount cgroup2"
echo +memory >/sys/fs/cgroup/cgroup.subtree_control || fail "enable memory controller"

nbd_connect() { # nbd_connect ARGS...: kernel nbd client, -C $conns, else 1
    if [ "$conns" -gt 1 ]; then
        nbd-client "$@" -C "$conns" && return 0
        say "nbd-client -C $conns failed; retrying with one connection"
        conns=1
    fi
    nbd-client "$@"
}

NBDKIT_PID=
case $backend in
rampool)
    [ -n "$rp_servers" ] || fail "rp_servers not set"
    plugin_args="rampool servers=$rp_servers size=$size replicas=$replicas"
    [ -n "$rp_extra" ] && plugin_args="$plugin_args $(echo "$rp_extra" | tr '+' ' ')"
    say "starting: nbdkit --swap -f -U /tmp/nbd.sock -t $threads $plugin_args"
    (ulimit -s 2048; exec nbdkit --swap -f -U /tmp/nbd.sock -P /tmp/nbdkit.pid \
        -t "$threads" $plugin_args) &
    NBDKIT_PID=$!
    i=0
    while [ $i -lt 600 ]; do
        [ -S /tmp/nbd.sock ] && [ -s /tmp/nbdkit.pid ] && break
        kill -0 $NBDKIT_PID 2>/dev/null || fail "nbdkit exited during startup"
        i=$((i + 1)); usleep 100000
    done
    [ -S /tmp/nbd.sock ] || fail "nbdkit socket did not appear in 60 s"
    echo -1000 >/proc/$NBDKIT_PID/oom_score_adj
    nbd_connect -unix /tmp/nbd.sock /dev/nbd0 -b 4096 -swap -t "$nbd_timeout" || fail "nbd-client"
    DEV=/dev/nbd0
    ;;
nbd)
    [ -n "$rp_nbd" ] || fail "rp_nbd not set"
    nbd_connect "${rp_nbd%:*}" "${rp_nbd##*:}" /dev/nbd0 -N "${rp_nbd_name:-bench}" \
        -b 4096 -swap -t "$nbd_timeout" || fail "nbd-client"
    DEV=/dev/nbd0
    ;;
virtio)
    i=0
    while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do i=$((i + 1)); usleep 100000; done
    [ -b /dev/vda ] || fail "no /dev/vda"
    DEV=/dev/vda
    conns=-
    ;;
*) fail "unknown rp_backend '$backend'" ;;
esac
say "swap device $DEV: $(cat /sys/class/block/${DEV#/dev/}/size) sectors, connections $conns"
mkswap $DEV >/dev/null || fail "mkswap"
swapon $DEV || fail "swapon"
cat /proc/swaps

# protect /init from reclaim, as in the test
SYS=/sys/fs/cgroup/sys
mkdir $SYS && echo $((32 * 1024 * 1024)) >$SYS/memory.min && echo $$ >$SYS/cgroup.procs ||
    say "warning: could not protect init with memory.min"

CG=/sys/fs/cgroup/hog
mkdir $CG || fail "mkdir cgroup"
echo $((limit_mb * 1024 * 1024)) >$CG/memory.max || fail "memory.max"
echo max >$CG/memory.swap.max 2>/dev/null

vm() { sed -n "s/^$1 //p" /proc/vmstat; }
in0=$(vm pswpin); out0=$(vm pswpout)
THOG=$(cut -d' ' -f1 /proc/uptime)
say "hog: ${hog_mb} MiB, limit ${limit_mb} MiB"
# the hog prints "hog: write-done" between its phases; note the time there
sh -c "echo \$\$ >$CG/cgroup.procs && exec hog $hog_mb 0x5eed0001 1" |
    while IFS= read -r l; do
        echo "$l"
        case $l in
        "hog: write-done"*) cut -d' ' -f1 /proc/uptime >/tmp/twrite ;;
        "hog: RESULT "*) echo "$l" >/tmp/hogresult ;;
        esac
    done
# exit status of the hog through the pipe: busybox sh has no PIPESTATUS,
# so judge by its RESULT line instead (below)
TEND=$(cut -d' ' -f1 /proc/uptime)
in1=$(vm pswpin); out1=$(vm pswpout)
din=$((in1 - in0)); dout=$((out1 - out0))
TW=$(cat /tmp/twrite 2>/dev/null || echo "$TEND")
hog_s=$(awk -v a="$THOG" -v b="$TEND" 'BEGIN { printf "%.2f", b - a }')
write_s=$(awk -v a="$THOG" -v b="$TW" 'BEGIN { printf "%.2f", b - a }')
verify_s=$(awk -v a="$TW" -v b="$TEND" 'BEGIN { printf "%.2f", b - a }')
say "memory.events: $(tr '\n' ' ' <$CG/memory.events)"
echo "RPBENCH-STATS: backend=$backend pswpin=$din pswpout=$dout hog_s=$hog_s write_s=$write_s verify_s=$verify_s conns=$conns"
[ -z "$NBDKIT_PID" ] || kill -0 $NBDKIT_PID 2>/dev/null || fail "nbdkit died"
[ -s /tmp/hogresult ] || fail "hog printed no RESULT line"
grep -q ' mismatched_pages=0 ' /tmp/hogresult || fail "hog mismatches: $(cat /tmp/hogresult)"
[ "$din" -gt 0 ] || fail "no swap-in (pswpin delta 0)"
[ "$dout" -gt 0 ] || fail "no swap-out (pswpout delta 0)"
swapoff $DEV || fail "swapoff"
[ "$DEV" = /dev/nbd0 ] && nbd-client -d /dev/nbd0 >/dev/null 2>&1
finish PASS
