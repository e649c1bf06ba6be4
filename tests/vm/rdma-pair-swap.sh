#!/bin/bash
# rdma-pair-swap.sh — runs INSIDE both guests of tests/vm/run-rdma-pair.sh
# (RPVM_ROLE=donor or compute): swap over RDMA end to end.  The donor
# guest runs two memservers that listen on TCP and on RDMA (its rxe0);
# the compute guest runs nbdkit + plugin with servers=rdma://DONOR:PORT,...
# replicas=2, the stock kernel nbd client on it (one connection), mkswap,
# swapon, and the hog with a working set larger than the guest's
# available memory, so its pages must go out to the donor and come back:
# the hog checks every word of every page.  Asserted: the hog passes;
# swap was used (pswpin and pswpout grew by at least EXTRA_MB; the
# sampled peak of SwapTotal - SwapFree is shown); both of the donor's
# memservers held data while the hog ran, or right after it with swap
# still on (rampool status --raw to their TCP ports, from the compute
# guest); no kernel nbd timeout or error; and after swapoff,
# nbd-client -d and nbdkit's exit, both memservers hold 0 bytes.  The compute guest sends its
# verdict to the donor (port 7099), as rdma-pair-smoke.sh does.
#
#   tests/vm/run-rdma-pair.sh tests/vm/rdma-pair-swap.sh [ROOM_MB [EXTRA_MB [SWAP_MB]]]
#
# ROOM_MB (default 192): before the hog, the compute guest's MemAvailable
# is brought down to about this by a file in a ramfs (see below).
# EXTRA_MB (default 16): the hog takes MemAvailable plus this much; what
# it then has in swap at the peak is more (the kernel keeps its
# watermarks and reserves free: 117-165 MiB of a 215 MiB hog were seen),
# but never more than the hog, which must not exceed SWAP_MB (after the
# ramfs MemAvailable came out at 191-198 MiB: a 207-214 MiB hog).
# SWAP_MB (default 224): the swap device (the plugin's size=), and the
# --size of each donor memserver, which must hold a whole copy
# (replicas=2 on two servers).  Without discard every extent swap ever
# wrote stays on the donor until nbdkit exits (a run touches all of
# them), so the donor must have room for 2 x SWAP_MB: 224 is about the
# most a 768 MiB donor (506 MiB available) takes.
source "${srcdir:-.}/functions.sh"
[ -n "${RPVM_ROLE:-}" ] && [ -n "${RPVM_PEER:-}" ] ||
  fail "RPVM_ROLE/RPVM_PEER not set: run this with tests/vm/run-rdma-pair.sh"
step () { echo "== [${SECONDS}s] $RPVM_ROLE: $*"; }
meminfo_kb () { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }
# swap_in_use: SWAP_USED = SwapTotal - SwapFree in MiB, without a fork
swap_in_use () {
  local k v _ t=0 f=0
  while read -r k v _; do
    case $k in SwapTotal:) t=$v ;; SwapFree:) f=$v ;; esac
  done </proc/meminfo
  SWAP_USED=$(( (t - f) / 1024 ))
}
vmstat_of () { awk -v k="$1" '$1 == k { print $2 }' /proc/vmstat; }
VERDICT_PORT=7099
ROOM_MB=${1:-192}
EXTRA_MB=${2:-16}
SWAP_MB=${3:-224}
# TCP (status, and the 0-bytes check) and RDMA (the data) ports of d1, d2
TCP1=7070 TCP2=7071 RDMA1=7170 RDMA2=7171
# the guest's script timeout (rdma-init.sh's rpvm_timeout, in our
# environment as a kernel command-line word)
SCRIPT_TIMEOUT=${rpvm_timeout:-240}
# Jumbo frames on both ends, first thing (the donor before its
# memservers start, so every RDMA connection is made with them): rxe then
# sends 4096-byte RoCE packets instead of 1024-byte ones (operations.md
# 3.8, "MTU"); in these emulated guests that made ib_write_bw 3x faster
# (15 against 4.7 MB/s), and swap's traffic is what takes the time here.
MTU=9000
/usr/sbin/ip link set eth0 mtu $MTU || fail "ip link set eth0 mtu $MTU"
step "eth0 mtu $MTU, $RPVM_RDMA_DEV1 active_mtu $(ibv_devinfo -d "$RPVM_RDMA_DEV1" | awk '$1 == "active_mtu:" { print $2 }')"

case $RPVM_ROLE in
donor)
  avail=$(( $(meminfo_kb MemAvailable) / 1024 ))
  step "MemAvailable $avail MiB; two memservers of $SWAP_MB MiB on $RPVM_ADDR1 (TCP $TCP1, $TCP2; RDMA $RDMA1, $RDMA2)"
  # each memserver may come to hold a whole copy of the swap device
  [ "$avail" -gt $(( 2 * SWAP_MB + 32 )) ] ||
    fail "the donor has $avail MiB available, too little for 2 x $SWAP_MB MiB of memservers (RP_VM_DONOR_MEM_MB)"
  MS_SIZE=${SWAP_MB}M MS_LISTEN=$RPVM_ADDR1:$TCP1 start_memserver d1 --listen-rdma "$RPVM_ADDR1:$RDMA1"
  MS_SIZE=${SWAP_MB}M MS_LISTEN=$RPVM_ADDR1:$TCP2 start_memserver d2 --listen-rdma "$RPVM_ADDR1:$RDMA2"
  step "waiting for the compute guest's verdict (up to $((SCRIPT_TIMEOUT - 15)) s)"
  verdict=$(timeout $((SCRIPT_TIMEOUT - 15)) nc -l -p $VERDICT_PORT) || true
  step "compute guest says: ${verdict:-nothing}"
  "$RAMPOOL" status "$SERVERS" || true
  [ "$verdict" = PASS ] || fail "the compute guest failed"
  ;;
compute)
  VERDICT=FAIL
  SWAPPING=0
  on_exit 'echo "$VERDICT" | nc -w 5 "$RPVM_PEER" $VERDICT_PORT >/dev/null 2>&1'
  # on a failure with swap still on: take it down before nbdkit is
  # killed (bounded: with nbdkit stuck, swapoff could wait for ever)
  on_exit '[ "$SWAPPING" = 0 ] || { timeout 60 swapoff /dev/nbd0; nbd-client -d /dev/nbd0; } >/dev/null 2>&1'
  step "ping $RPVM_PEER"
  retry 100 ping -c 1 -W 1 "$RPVM_PEER" >/dev/null 2>&1 || fail "no ping reply from $RPVM_PEER"
  pair_servers
  "$RAMPOOL" status "$RSERVERS"
  used=$(pool_used)
  [ "$used" -eq 0 ] || fail "the donor's memservers hold $used bytes before we start"

  # The kernel's own reserve for the network path in reclaim (as
  # guest-init.sh); the default in a 768 MiB guest is about 4 MiB.
  echo 16384 >/proc/sys/vm/min_free_kbytes
  # nbdkit the way rampool attach runs it for swap (docs/operations.md,
  # section 8): mlock=on locks what it touches, realtime=10 lets its I/O
  # threads allocate below the min watermark, where the hog has to
  # reclaim.  Not nbdkit --swap: that pins its whole 192 MiB .bss.
  step "nbdkit + plugin, servers=$RSERVERS size=${SWAP_MB}M replicas=2 mlock=on realtime=10"
  SERVERS_TCP=$SERVERS
  SERVERS=$RSERVERS
  start_nbdkit size=${SWAP_MB}M replicas=2 mlock=on realtime=10
  SERVERS=$SERVERS_TCP
  grep -E 'VmLck|VmRSS' "/proc/$NBDKIT_PID/status" | tr -s ' \t\n' ' '; echo

  # One kernel NBD connection (-C 1): with several, the kernel's receive
  # workqueue can leave all but one unread and a request waits the whole
  # -t (docs/operations.md, 3.3).  -t 120 and -swap as rampool attach.
  step "nbd-client -unix $NBD_SOCK /dev/nbd0 -b 4096 -C 1 -t 120 -swap"
  nbd-client -unix "$NBD_SOCK" /dev/nbd0 -b 4096 -C 1 -t 120 -swap >"$TMP/nbd-client.log" 2>&1 ||
    { cat "$TMP/nbd-client.log"; fail "nbd-client"; }
  [ "$(cat /sys/block/nbd0/size)" = $(( SWAP_MB * 2048 )) ] ||
    fail "/dev/nbd0 has $(cat /sys/block/nbd0/size) sectors, not $(( SWAP_MB * 2048 ))"
  SWAPPING=1
  mkswap /dev/nbd0 >/dev/null || fail "mkswap /dev/nbd0"
  swapon /dev/nbd0 || fail "swapon /dev/nbd0"
  cat /proc/swaps
  grep -q '^/dev/nbd0 ' /proc/swaps || fail "/dev/nbd0 is not in /proc/swaps"

  # The hog's traffic to the donor is about twice its size whatever the
  # guest's RAM (it writes every page, then reads them back in order, so
  # the LRU sends nearly all of them out and in), and swap runs at a few
  # MB/s in these emulated guests: what the hog may keep resident is
  # brought down to about ROOM_MB by a file in a ramfs of our own (ramfs
  # pages cannot be reclaimed), as if the guest were that much smaller.
  avail=$(( $(meminfo_kb MemAvailable) / 1024 ))
  if [ "$avail" -gt "$ROOM_MB" ]; then
    mkdir -p /mnt/balloon
    mount -t ramfs ramfs /mnt/balloon || fail "mount ramfs /mnt/balloon"
    on_exit 'rm -f /mnt/balloon/fill; umount /mnt/balloon'
    dd if=/dev/zero of=/mnt/balloon/fill bs=1M count=$(( avail - ROOM_MB )) 2>/dev/null ||
      fail "filling /mnt/balloon"
  fi
  # More than the guest has: the hog's first pages must go out to the
  # donor while it writes the last ones, and come back when it verifies.
  avail=$(( $(meminfo_kb MemAvailable) / 1024 ))
  HOG_MB=$(( avail + EXTRA_MB ))
  # a full swap device would end the run in the OOM killer
  [ "$HOG_MB" -le "$SWAP_MB" ] ||
    fail "the hog ($HOG_MB MiB) could fill the $SWAP_MB MiB swap device: lower ROOM_MB or EXTRA_MB, or raise SWAP_MB"
  grep -E '^(MemTotal|MemFree|MemAvailable|Unevictable|Mlocked|AnonPages|Shmem):' /proc/meminfo | tr -s ' \n' ' '; echo
  in0=$(vmstat_of pswpin) out0=$(vmstat_of pswpout)
  step "hog $HOG_MB MiB (MemAvailable $avail MiB + $EXTRA_MB), swap ${SWAP_MB} MiB on the donor over RDMA"
  t0=$(awk '{ print $1 }' /proc/uptime)
  hog "$HOG_MB" >"$TMP/hog.log" 2>&1 &
  HOG_PID=$!
  _pids+=("$HOG_PID")
  # While it runs: the peak swap in use, and what each of the donor's
  # memservers holds (their own count, STAT over TCP), about every 2 s,
  # with a progress line every 10 s or so.  Swap in use is read with
  # bash builtins: under this pressure every fork can take seconds (the
  # progress line says how long the two rampool status took).
  swap_peak=0 d1_peak=0 d2_peak=0 next=0 samples=0
  while kill -0 "$HOG_PID" 2>/dev/null; do
    swap_in_use
    [ "$SWAP_USED" -gt "$swap_peak" ] && swap_peak=$SWAP_USED
    ts=$EPOCHREALTIME
    u1=$(server_used "$RPVM_PEER:$TCP1" 2>/dev/null) || u1=
    u2=$(server_used "$RPVM_PEER:$TCP2" 2>/dev/null) || u2=
    te=$EPOCHREALTIME
    samples=$((samples + 1))
    [ -n "$u1" ] && [ "$u1" -gt "$d1_peak" ] && d1_peak=$u1
    [ -n "$u2" ] && [ "$u2" -gt "$d2_peak" ] && d2_peak=$u2
    if [ "$SECONDS" -ge "$next" ]; then
      next=$((SECONDS + 10))
      swap_in_use
      echo "   [${SECONDS}s] swap used $SWAP_USED MiB, donor d1 $(( ${u1:-0} / MiB )) MiB d2 $(( ${u2:-0} / MiB )) MiB" \
        "(status $(( (${te/./} - ${ts/./}) / 1000 )) ms), pswpin +$(( $(vmstat_of pswpin) - in0 ))" \
        "pswpout +$(( $(vmstat_of pswpout) - out0 )); $(tail -n 1 "$TMP/hog.log")"
    fi
    sleep 2
  done
  hog_rc=0
  wait "$HOG_PID" || hog_rc=$?
  t1=$(awk '{ print $1 }' /proc/uptime)
  din=$(( $(vmstat_of pswpin) - in0 )) dout=$(( $(vmstat_of pswpout) - out0 ))
  # One more look at the donor: with swap still on and nbdkit running,
  # every extent the run wrote is still there (nothing is trimmed), so a
  # sampler that forks too slowly to look mid-run still sees the data.
  u1=$(server_used "$RPVM_PEER:$TCP1" 2>/dev/null) || u1=
  u2=$(server_used "$RPVM_PEER:$TCP2" 2>/dev/null) || u2=
  echo "donor: $samples samples while the hog ran; right after it d1 ${u1:-?} d2 ${u2:-?} bytes"
  [ -n "$u1" ] && [ "$u1" -gt "$d1_peak" ] && d1_peak=$u1
  [ -n "$u2" ] && [ "$u2" -gt "$d2_peak" ] && d2_peak=$u2
  # the balloon's memory back before swapoff has to make room for what
  # is still in swap
  rm -f /mnt/balloon/fill
  swap_in_use
  echo "swap: $SWAP_USED MiB in use after the hog"
  cat "$TMP/hog.log"
  hog_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  echo "hog: exit $hog_rc, ${hog_s} s for $HOG_MB MiB"
  echo "vmstat: pswpin +$din pswpout +$dout (pages)"
  echo "swap: peak $swap_peak MiB in use while the hog ran"
  # the kernel's view of the device: requests, their mean size and time
  awk '{ printf "nbd0: %d reads, %.0f KiB and %.0f ms each; %d writes, %.0f KiB and %.0f ms each\n",
         $1, $1 ? $3 / 2 / $1 : 0, $1 ? $4 / $1 : 0, $5, $5 ? $7 / 2 / $5 : 0, $5 ? $8 / $5 : 0 }' /sys/block/nbd0/stat
  echo "donor: peak bytes used d1 $d1_peak ($(( d1_peak / MiB )) MiB), d2 $d2_peak ($(( d2_peak / MiB )) MiB)"
  [ "$hog_rc" = 0 ] || fail "hog exit status $hog_rc (mismatches, or killed)"
  grep -q '^hog: RESULT .* mismatched_pages=0 mismatched_words=0 ' "$TMP/hog.log" ||
    fail "no clean hog RESULT line"
  # At least the hog's excess over MemAvailable went out and came back
  # (pswpin and pswpout count pages).  The sampled peak of swap in use is
  # only shown: the sampler may see little of the run (see above).
  [ "$din" -ge $(( EXTRA_MB * 256 )) ] || fail "pswpin +$din: not even EXTRA_MB ($EXTRA_MB MiB) swapped in"
  [ "$dout" -ge $(( EXTRA_MB * 256 )) ] || fail "pswpout +$dout: not even EXTRA_MB ($EXTRA_MB MiB) swapped out"
  [ "$d1_peak" -gt 0 ] && [ "$d2_peak" -gt 0 ] ||
    fail "a donor memserver held no data while the hog ran (d1 $d1_peak, d2 $d2_peak bytes)"
  # A kernel nbd request that timed out or failed is a stall or an I/O
  # error swap users would see, even if the hog got its data back.
  nbdmsg=$(dmesg | grep -E 'nbd0: (Connection timed out|Send data failed|Other side returned error|Receive control failed)|I/O error, dev nbd0' | head -n 5) || true
  [ -z "$nbdmsg" ] || { echo "$nbdmsg"; fail "the kernel nbd driver reported trouble"; }
  kill -0 "$NBDKIT_PID" 2>/dev/null || fail "nbdkit died"

  step "swapoff, nbd-client -d, stop nbdkit"
  swapoff /dev/nbd0 || fail "swapoff /dev/nbd0"
  nbd-client -d /dev/nbd0 >/dev/null 2>&1 || fail "nbd-client -d /dev/nbd0"
  SWAPPING=0
  # nbdkit frees the disk on every memserver before it exits
  kill "$NBDKIT_PID"
  nbdkit_rc=0
  wait "$NBDKIT_PID" || nbdkit_rc=$?
  [ "$nbdkit_rc" = 0 ] || { tail -n 20 "$TMP/nbdkit.log"; fail "nbdkit exit status $nbdkit_rc"; }
  u1=$(server_used "$RPVM_PEER:$TCP1") u2=$(server_used "$RPVM_PEER:$TCP2")
  echo "donor after nbdkit exit: d1 $u1 bytes, d2 $u2 bytes"
  [ "$u1" = 0 ] && [ "$u2" = 0 ] || fail "the donor's memservers still hold data after nbdkit exit"
  echo "RESULT: hog $HOG_MB MiB verified in ${hog_s} s, pswpin +$din pswpout +$dout," \
    "swap peak $swap_peak MiB, donor peak d1 $(( d1_peak / MiB )) MiB d2 $(( d2_peak / MiB )) MiB, 0 bytes after"
  VERDICT=PASS
  ;;
*) fail "RPVM_ROLE must be donor or compute" ;;
esac
step "done"
echo "PASS"
