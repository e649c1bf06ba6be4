#!/bin/sh
# /init of the rampool VM swap-test guest (busybox initramfs, built by
# build-guest.sh, booted by test-swap.sh).
#
# Settings come from the kernel command line: unknown "name=value"
# parameters reach /init as environment variables.
#   rp_backend   rampool: nbdkit with the rampool plugin on a Unix socket,
#                         the kernel nbd client on it (rp_front)
#                stock:   the same with nbdkit's nbd plugin forwarding to
#                         an NBD server on the host (harness self-test)
#                nbd:     the kernel nbd client straight to an NBD server on
#                         the host over TCP (bench/vm-swap-bench.sh)
#                virtio:  /dev/vda, a disk QEMU gives the guest (bench)
#   rp_front     rampool: the NBD server on that socket, nbdkit (default)
#                or nbd: rampool-nbd with the same keys plus mlock=on
#                (which stands in for nbdkit's --swap, so rp_nbdkit_swap
#                does nothing; rp_nbdkit_rt, rp_glibc_tunables apply to it);
#                with rp_attach=1, rampool attach --front=nbd starts it
#   rp_servers   rampool: HOST:PORT,HOST:PORT,...
#   rp_nbd       stock, nbd: HOST:PORT of the host's NBD server
#   rp_nbd_name  nbd: its export name, default bench
#   rp_size      virtual disk size (rampool), default 1G
#   rp_replicas  default 2; or ec:K+M (redundancy=ec:K+M instead)
#   rp_extra     extra plugin (or rampool-nbd) key=value words, separated
#                by '+'
#   rp_ip        guest address/prefix on eth0, default 10.0.2.15/24
#   rp_conns     nbd-client -C value, default 1 (more can stall the first
#                request for the whole -t: docs/operations.md, 3.3)
#   rp_threads   nbdkit (or rampool-nbd) -t value, default 4
#   rp_nbd_timeout  nbd-client -t value, default 60
#   rp_limit_mb  cgroup memory.max in MiB, default 96 (0: no limit, global
#                memory pressure on the whole guest)
#   rp_hog_mb    MiB the hog touches, default 256
#   rp_hog_runs  how many hog runs (different seeds), default 1
#   rp_passes    verification passes per hog run, default 1
#   rp_discard   1: swapon -d (discard freed swap)
#   rp_hung      hung_task_timeout_secs, default 120
#   rp_hog_corrupt  1: the hog flips one bit (the run must then FAIL)
#   rp_attach    1 (rampool): the operator path instead of the steps below:
#                "rampool attach" starts nbdkit (daemonized, plugin keys
#                mlock=on realtime=10 added by attach), nbd-client, mkswap,
#                swapon; "rampool detach" undoes it at the end, and nbdkit
#                must be gone after it.  nbdkit logs go through syslogd to
#                the console.
# Opt-in tuning knobs (for experiments; unset = the defaults above):
#   rp_min_free_kb  vm.min_free_kbytes, default 16384
#   rp_sysctl    extra sysctls, '+'-separated NAME:VALUE words (dots in NAME
#                are path separators, commas in VALUE become spaces), e.g.
#                vm.watermark_scale_factor:500+net.ipv4.tcp_wmem:4096,65536,1048576
#   rp_nbdkit_swap  0: start nbdkit without --swap (use rp_extra=mlock=on)
#   rp_prewarm   MiB: before mkswap, write then read that much of /dev/nbd0
#                with O_DIRECT in max-size requests from 8 parallel dd, so
#                that nbdkit's per-thread buffers and stacks are touched
#                (and, if locked, stay resident) before swap needs them
#   rp_glibc_tunables  GLIBC_TUNABLES for nbdkit, ',' for ':' (e.g.
#                glibc.malloc.mmap_threshold=33554432,glibc.malloc.trim_threshold=1073741824
#                keeps freed request buffers in the heap instead of
#                returning them to the kernel)
#   rp_nostats   1: no plugin stats-file= (its writes to tmpfs allocate
#                memory in nbdkit every heartbeat; the extents_lost check
#                is then skipped)
#   rp_nbdkit_rt PRIO: run nbdkit SCHED_FIFO at PRIO (chrt -f; needs chrt
#                in the initramfs). Real-time tasks may allocate below the
#                min watermark (6.1: ALLOC_HARDER, 6.3+: ALLOC_MIN_RESERVE) and
#                are not starved by the hog (tried for --global: the hog then
#                gets past the point where nbdkit otherwise stalls)
#   rp_diag      1: print each nbdkit thread's PF_ flags after swapon
#                (PR_SET_IO_FLUSHER = PF_MEMALLOC_NOIO|PF_LOCAL_THROTTLE)
# Output: one line "RAMPOOL-VM-RESULT: PASS" or "RAMPOOL-VM-RESULT: FAIL ..."
PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /tmp /sys/fs/cgroup
mount -t tmpfs -o size=16m tmpfs /tmp

T0=$(cut -d' ' -f1 /proc/uptime)
say() { echo "rp-init[$(cut -d' ' -f1 /proc/uptime)]: $*"; }

finish() {
    sync
    echo "RAMPOOL-VM-RESULT: $*"
    # give the serial console a moment to drain, then stop the VM
    poweroff -f
    sleep 5
    echo o >/proc/sysrq-trigger
}
fail() {
    say "failure: $*"
    echo "--- diagnostics ---"
    cat /proc/swaps 2>/dev/null
    grep -E 'MemTotal|MemFree|MemAvailable|SwapTotal|SwapFree' /proc/meminfo
    dmesg | tail -n 30
    finish "FAIL $*"
}

backend=${rp_backend:-rampool}
front=${rp_front:-nbdkit}
size=${rp_size:-1G}
replicas=${rp_replicas:-2}
ipaddr=${rp_ip:-10.0.2.15/24}
conns=${rp_conns:-1}
threads=${rp_threads:-4}
nbd_timeout=${rp_nbd_timeout:-60}
limit_mb=${rp_limit_mb:-96}
hog_mb=${rp_hog_mb:-256}
hog_runs=${rp_hog_runs:-1}
passes=${rp_passes:-1}
discard=${rp_discard:-0}
hung=${rp_hung:-120}
# harness self-test: the hog flips one bit, so the run must FAIL
[ "${rp_hog_corrupt:-0}" = 1 ] && export HOG_CORRUPT=1

say "booted; backend=$backend front=$front limit=${limit_mb}M hog=${hog_mb}M runs=$hog_runs discard=$discard conns=$conns"

echo "$hung" >/proc/sys/kernel/hung_task_timeout_secs
echo 1 >/proc/sys/kernel/hung_task_panic
echo 1 >/proc/sys/kernel/panic_on_oops
# keep the kernel's own nbd socket traffic supplied in reclaim
echo "${rp_min_free_kb:-16384}" >/proc/sys/vm/min_free_kbytes
if [ -n "$rp_sysctl" ]; then
    for kv in $(echo "$rp_sysctl" | tr '+' ' '); do
        k=${kv%%:*}; v=$(echo "${kv#*:}" | tr ',' ' ')
        echo "$v" >/proc/sys/$(echo "$k" | tr '.' '/') || say "warning: sysctl $k=$v failed"
        say "sysctl $k = $(cat /proc/sys/$(echo "$k" | tr '.' '/'))"
    done
fi

# ---- modules (order computed at build time)
while read -r m; do
    [ -n "$m" ] || continue
    if [ "$m" = nbd ]; then
        insmod /lib/modules/nbd.ko nbds_max=2 || fail "insmod nbd"
    else
        insmod /lib/modules/$m.ko || fail "insmod $m"
    fi
done </etc/modules.order

# ---- network
ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do
    i=$((i + 1)); usleep 100000
done
[ -e /sys/class/net/eth0 ] || fail "no eth0"
ip addr add "$ipaddr" dev eth0 || fail "ip addr"
ip link set eth0 up || fail "ip link up"

# ---- cgroup2
mount -t cgroup2 none /sys/fs/cgroup || fail "mount cgroup2"
echo +memory >/sys/fs/cgroup/cgroup.subtree_control || fail "enable memory controller"

# ---- nbdkit in the foreground (-f keeps the --swap mlockall), or
# rampool-nbd, backgrounded by the shell; smaller thread stacks keep the
# locked footprint small.
case $front in
nbdkit) server=nbdkit ;;
nbd)
    [ "$backend" = rampool ] || fail "rp_front=nbd needs rp_backend=rampool"
    server=rampool-nbd
    ;;
*) fail "unknown rp_front '$front'" ;;
esac
case $backend in
rampool)
    [ -n "$rp_servers" ] || fail "rp_servers not set"
    case $replicas in
    ec:*) redundancy="redundancy=$replicas" ;;
    *) redundancy="replicas=$replicas" ;;
    esac
    plugin_args="rampool servers=$rp_servers size=$size $redundancy stats-file=/tmp/rampool.stats"
    [ "${rp_nostats:-0}" = 1 ] && plugin_args="rampool servers=$rp_servers size=$size $redundancy"
    # rampool-nbd takes the keys without the plugin's name; mlock=on goes
    # before rp_extra so that an rp_extra word can still override it
    [ "$front" = nbd ] && plugin_args="${plugin_args#rampool } mlock=on"
    ;;
stock)
    [ -n "$rp_nbd" ] || fail "rp_nbd not set"
    plugin_args="nbd hostname=${rp_nbd%:*} port=${rp_nbd##*:}"
    ;;
nbd|virtio) plugin_args= ;;   # no nbdkit in the guest
*) fail "unknown rp_backend '$backend'" ;;
esac
[ -n "$rp_extra" ] && plugin_args="$plugin_args $(echo "$rp_extra" | tr '+' ' ')"
DEV=/dev/nbd0
# the pid of the guest's NBD server ($server), when there is one
NBDKIT_PID=

# nbd_connect ARGS...: the kernel nbd client with -C $conns, else one
nbd_connect() {
    if [ "$conns" -gt 1 ]; then
        nbd-client "$@" -C "$conns" && return 0
        say "nbd-client -C $conns failed; retrying with one connection"
        conns=1
    fi
    nbd-client "$@"
}

attach=${rp_attach:-0}
if [ "$attach" = 1 ]; then
    [ "$backend" = rampool ] || fail "rp_attach=1 needs rp_backend=rampool"
    # nbdkit in the background logs to syslog: show it on the console
    # (rampool-nbd logs to /run/rampool/nbd0/rampool-nbd.log, shown at
    # the end)
    syslogd -O /dev/console
    aflags="--device=/dev/nbd0 --connections=$conns --timeout=$nbd_timeout --plugin=rampool --front=$front"
    [ "$discard" = 1 ] && aflags="$aflags --discard"
    say "starting: rampool attach $aflags ${plugin_args#rampool }"
    rampool attach $aflags ${plugin_args#rampool } || fail "rampool attach"
    NBDKIT_PID=$(cat /run/rampool/nbd0/nbdkit.pid 2>/dev/null)
    kill -0 "$NBDKIT_PID" 2>/dev/null || fail "no $server after rampool attach"
    say "attached: $server pid $NBDKIT_PID: $(grep -E 'VmLck|VmRSS' /proc/$NBDKIT_PID/status | tr -s ' \t\n' ' ')"
    grep -q '^/dev/nbd0 ' /proc/swaps || fail "rampool attach: /dev/nbd0 is not in /proc/swaps"
elif [ "$backend" = nbd ]; then
    [ -n "$rp_nbd" ] || fail "rp_nbd not set"
    nbd_connect "${rp_nbd%:*}" "${rp_nbd##*:}" /dev/nbd0 -N "${rp_nbd_name:-bench}" \
        -b 4096 -swap -t "$nbd_timeout" || fail "nbd-client"
    say "nbd0: $(cat /sys/block/nbd0/size) sectors, $conns connection(s) to $rp_nbd"
elif [ "$backend" = virtio ]; then
    DEV=/dev/vda
    i=0
    while [ ! -b $DEV ] && [ $i -lt 100 ]; do i=$((i + 1)); usleep 100000; done
    [ -b $DEV ] || fail "no $DEV"
    say "$DEV: $(cat /sys/class/block/vda/size) sectors"
else
    if [ "$front" = nbd ]; then
        # its log lines ("rampool: warning: ...") go to stderr, the
        # console, as nbdkit's do with -f
        cmd="rampool-nbd -U /tmp/nbd.sock -P /tmp/nbdkit.pid -t $threads"
    else
        swapflag=--swap
        [ "${rp_nbdkit_swap:-1}" = 0 ] && swapflag=
        cmd="nbdkit $swapflag -f -U /tmp/nbd.sock -P /tmp/nbdkit.pid -t $threads"
    fi
    say "starting: $cmd $plugin_args"
    (ulimit -s 2048
     [ -n "$rp_glibc_tunables" ] && export GLIBC_TUNABLES=$(echo "$rp_glibc_tunables" | tr ',' ':')
     rt=
     if [ -n "$rp_nbdkit_rt" ]; then
         if command -v chrt >/dev/null; then rt="chrt -f $rp_nbdkit_rt"; else say "warning: rp_nbdkit_rt: no chrt in the initramfs"; fi
     fi
     exec $rt $cmd $plugin_args) &
    NBDKIT_PID=$!
    i=0
    while [ $i -lt 600 ]; do
        [ -S /tmp/nbd.sock ] && [ -s /tmp/nbdkit.pid ] && break
        kill -0 $NBDKIT_PID 2>/dev/null || fail "$server exited during startup"
        i=$((i + 1)); usleep 100000
    done
    [ -S /tmp/nbd.sock ] || fail "$server socket did not appear in 60 s"
    say "$server ready (pid $NBDKIT_PID): $(grep -E 'VmLck|VmRSS' /proc/$NBDKIT_PID/status | tr -s ' \t\n' ' ')"
    echo -1000 >/proc/$NBDKIT_PID/oom_score_adj
    # biggest locked mappings (what --swap or mlock=on pins)
    awk '/^[0-9a-f]+-[0-9a-f]+ / { m = $6 ? $6 : "[anon]" } /^Locked:/ { if ($2 > 1024) print "  locked " $2 " kB " m }' /proc/$NBDKIT_PID/smaps | sort -k2 -n -r | head -n 8

    nbd_connect -unix /tmp/nbd.sock /dev/nbd0 -b 4096 -swap -t "$nbd_timeout" || fail "nbd-client"
    say "nbd0: $(cat /sys/block/nbd0/size) sectors, $conns connection(s)"
    if [ "${rp_prewarm:-0}" -gt 0 ]; then
        bkb=$(cat /sys/block/nbd0/queue/max_sectors_kb)
        per=$(( rp_prewarm * 1024 / bkb / 8 + 1 ))
        say "prewarm: 8 x $per x ${bkb} KiB O_DIRECT writes, then reads; $server $(grep VmRSS /proc/$NBDKIT_PID/status | tr -s ' \t' ' ')"
        for dir in of if; do
            j=0; pids=
            while [ $j -lt 8 ]; do
                if [ $dir = of ]; then
                    dd if=/dev/zero of=/dev/nbd0 bs=${bkb}k count=$per seek=$((j * per)) oflag=direct conv=notrunc 2>/dev/null &
                else
                    dd if=/dev/nbd0 of=/dev/null bs=${bkb}k count=$per skip=$((j * per)) iflag=direct 2>/dev/null &
                fi
                pids="$pids $!"; j=$((j + 1))
            done
            for p in $pids; do wait $p || say "prewarm: dd $dir failed"; done
        done
        say "prewarm done: $server $(grep VmRSS /proc/$NBDKIT_PID/status | tr -s ' \t' ' ')"
    fi
fi
# rampool attach made the swap itself
if [ "$attach" = 0 ]; then
    mkswap $DEV >/dev/null || fail "mkswap"
    if [ "$discard" = 1 ]; then
        swapon -d $DEV || fail "swapon -d"
    else
        swapon $DEV || fail "swapon"
    fi
fi
cat /proc/swaps
if [ "${rp_diag:-0}" = 1 ]; then
    # PF_MEMALLOC_NOIO 0x80000, PF_LOCAL_THROTTLE 0x100000 (PR_SET_IO_FLUSHER)
    for t in /proc/$NBDKIT_PID/task/*; do
        fl=$(sed 's/.*) //' $t/stat | cut -d' ' -f7)
        say "diag: $server tid ${t##*/} $(cat $t/comm) flags $(printf 0x%x "$fl") io_flusher=$(( (fl & 0x180000) == 0x180000 ))"
    done
    say "diag: $(grep -E 'VmLck|VmRSS' /proc/$NBDKIT_PID/status | tr -s ' \t\n' ' ') $(grep -E 'MemFree|MemAvailable' /proc/meminfo | tr -s ' \n' ' ')"
    say "diag: watermarks $(awk '/^Node .* zone/ {z=$4} /^ +(min|low|high) / && z!="" {printf "%s.%s=%s ", z, $1, $2}' /proc/zoneinfo)"
fi

# ---- protect /init (and the watcher it starts) from reclaim: if their pages
# went to swap and the swap device stalled, PID 1 would die of SIGBUS.
# $server stays in the root cgroup (it locks its own memory).
SYS=/sys/fs/cgroup/sys
mkdir $SYS && echo $((32 * 1024 * 1024)) >$SYS/memory.min && echo $$ >$SYS/cgroup.procs ||
    say "warning: could not protect init with memory.min"

# ---- the hog, confined by a memory cgroup
CG=/sys/fs/cgroup/hog
mkdir $CG || fail "mkdir cgroup"
if [ "$limit_mb" -gt 0 ]; then
    echo $((limit_mb * 1024 * 1024)) >$CG/memory.max || fail "memory.max"
else
    say "rp_limit_mb=0: no memory.max, the whole guest is under pressure"
fi
echo max >$CG/memory.swap.max 2>/dev/null

vm() { sed -n "s/^$1 //p" /proc/vmstat; }
mapped_extents() { [ -f /tmp/rampool.stats ] && grep "^extents_mapped " /tmp/rampool.stats; }
# Diagnostics only: when paging makes no progress for 20 s, or the kernel
# nbd driver reports timeouts or errors, print where
# the NBD server's threads are (state, wchan, kernel stack of D-state threads).
dump_nbdkit() {
    [ -n "$NBDKIT_PID" ] || { echo "rp-watch: $1"; return; }
    echo "rp-watch: $1; $server threads:"
    for t in /proc/$NBDKIT_PID/task/*; do
        st=$(sed 's/.*) //' $t/stat | cut -d' ' -f1)
        echo "rp-watch:   tid ${t##*/} $(cat $t/comm) state $st wchan $(cat $t/wchan)"
        [ "$st" = D ] && sed 's/^/rp-watch:     /' $t/stack
    done
    grep -E 'MemFree|MemAvailable|SwapFree|Dirty|Writeback:' /proc/meminfo | tr -s ' ' | sed 's/^/rp-watch:   /'
}
stall_watch() {
    last=; same=0; nbd_seen=0
    while :; do
        sleep 5
        cur="$(vm pswpin) $(vm pswpout)"
        if [ "$cur" = "$last" ]; then same=$((same + 5)); else same=0; fi
        last=$cur
        if [ $same -eq 20 ] || [ $same -eq 80 ]; then
            dump_nbdkit "no swap-in/out for $same s"
        fi
        if [ $nbd_seen = 0 ] && dmesg | grep -q -E 'nbd0: (Connection timed out|Send data failed|Other side returned error|Receive control failed)'; then
            nbd_seen=1
            dump_nbdkit "kernel nbd reported trouble"
        fi
    done
}
stall_watch &
WATCH_PID=$!

in0=$(vm pswpin); out0=$(vm pswpout)
THOG=$(cut -d' ' -f1 /proc/uptime)
run=1
hog_rc=0
while [ $run -le "$hog_runs" ]; do
    seed=$((0x5eed0000 + run))
    say "hog run $run: ${hog_mb} MiB, seed $seed, limit ${limit_mb} MiB"
    sh -c "echo \$\$ >$CG/cgroup.procs && exec hog $hog_mb $seed $passes"
    rc=$?
    say "hog run $run exit status $rc"
    [ $rc -ne 0 ] && hog_rc=$rc
    if [ "$discard" = 1 ]; then
        say "after run $run: $(grep -E 'SwapFree' /proc/meminfo | tr -s ' ') $(mapped_extents)"
    fi
    run=$((run + 1))
done
kill $WATCH_PID 2>/dev/null
in1=$(vm pswpin); out1=$(vm pswpout)
TEND=$(cut -d' ' -f1 /proc/uptime)
din=$((in1 - in0)); dout=$((out1 - out0))
say "vmstat: pswpin +$din pswpout +$dout"
say "memory.events: $(tr '\n' ' ' <$CG/memory.events)"
if [ -f /tmp/rampool.stats ]; then echo "--- rampool stats-file ---"; cat /tmp/rampool.stats; echo "---"; fi
say "times (guest clock): boot->hog ${THOG}s (init start ${T0}s), hog ${THOG}s->${TEND}s"
echo "RAMPOOL-VM-STATS: pswpin=$din pswpout=$dout hog_start=$THOG hog_end=$TEND"

[ -z "$NBDKIT_PID" ] || kill -0 $NBDKIT_PID 2>/dev/null || fail "$server died"
[ $hog_rc -eq 0 ] || fail "hog reported mismatches or errors (exit $hog_rc)"
[ "$din" -gt 0 ] || fail "no swap-in (pswpin delta 0)"
[ "$dout" -gt 0 ] || fail "no swap-out (pswpout delta 0)"
if [ "$attach" = 0 ] || [ "$discard" = 1 ]; then
    swapoff $DEV || fail "swapoff"
fi
if [ "$discard" = 1 ] && [ -f /tmp/rampool.stats ]; then
    # a whole-device discard must return every extent to the memservers
    say "before blkdiscard: $(mapped_extents)"
    blkdiscard /dev/nbd0 || fail "blkdiscard /dev/nbd0"
    i=0
    while [ $i -lt 100 ]; do
        [ "$(mapped_extents)" = "extents_mapped 0" ] && break
        i=$((i + 1)); usleep 100000
    done
    say "after blkdiscard: $(mapped_extents)"
    [ "$(mapped_extents)" = "extents_mapped 0" ] || fail "extents still mapped 10 s after blkdiscard: $(mapped_extents)"
fi
if [ "$attach" = 1 ]; then
    [ -f /run/rampool/nbd0/rampool-nbd.log ] &&
        sed 's/^/rampool-nbd.log: /' /run/rampool/nbd0/rampool-nbd.log
    rampool detach --device=/dev/nbd0 || fail "rampool detach"
    grep -q '^/dev/nbd0 ' /proc/swaps && fail "/dev/nbd0 still swap after rampool detach"
    kill -0 "$NBDKIT_PID" 2>/dev/null && fail "$server (pid $NBDKIT_PID) still running after rampool detach"
    [ -e /run/rampool/nbd0 ] && fail "rampool detach left /run/rampool/nbd0"
    say "detached: swap off, nbd0 disconnected, $server gone"
elif [ $DEV = /dev/nbd0 ]; then
    nbd-client -d /dev/nbd0 >/dev/null 2>&1
fi
finish PASS
