#!/bin/bash
# Real swap over rampool, in a QEMU guest with a Debian kernel (the
# build machines have no nbd driver): the guest runs nbdkit with the
# plugin, nbd-client, mkswap and swapon; the memservers run on the host,
# outside the guest, reached through a tap device in a network
# namespace of the test's own.  A hog in a memory cgroup touches 2.7x
# its limit and verifies every page (tests/vm/README.md).  Four runs:
# a memserver killed with -9 mid-run (replicas=2), served to the kernel
# by rampool-nbd instead of nbdkit; swapon --discard returning memory to
# the memservers, and --global: no cgroup, the whole 256 MiB guest
# overcommitted 1.5x, set up and torn down with rampool attach / detach;
# and the kill run again over erasure coding (redundancy=ec:4+2 on 7
# memservers).  The last three go through nbdkit and the plugin, so both
# front ends swap for real without a fifth guest boot.  (A plain run
# without the kill was dropped for CI time: the kill run is the same run
# with one more event.)
# In a mount namespace of its own (tests/mountns.sh): the servers and
# QEMU run under "ip netns exec", which copies the mounts around it.
MOUNT_NS=own
source "${srcdir:-.}/functions.sh"
for t in qemu-system-x86_64:qemu-system-x86 busybox:busybox-static \
         nbd-client:nbd-client dpkg-deb:dpkg; do
  requires "${t%%:*}" "${t##*:}"
done
[ -e /dev/net/tun ] || fail "/dev/net/tun missing: the VM test needs the tun driver"

export RP_VM_CACHE=$abs_top_builddir/tests/vm/work
export RP_VM_MEMSERVER=$MEMSERVER
export RP_VM_PLUGIN=$PLUGIN
export RP_VM_RAMPOOL=$RAMPOOL
export RP_VM_RAMPOOL_NBD=$RAMPOOL_NBD
# A guest run takes 90-220 s on an idle 2-core host; one took 410 s on a
# loaded one.  Four such runs stay inside run-limited.sh's 3000 s; the
# 900 s per run only stops a guest that hangs.
export RP_VM_TIMEOUT=${RP_VM_TIMEOUT:-900}
mkdir -p "$RP_VM_CACHE"
# One QEMU guest at a time: make -j2 check would otherwise boot this and
# test-vm-rdma.sh's guest together (and both build into the same cache).
requires flock util-linux
exec 9>"$RP_VM_CACHE/qemu.lock"
flock 9
vm=${srcdir:-.}/vm/test-swap.sh

bash "$vm" --kill --front=nbd || fail "swap through rampool-nbd in the guest with a memserver killed"
bash "$vm" --discard --no-build || fail "swap with discard in the guest"
bash "$vm" --global --no-build || fail "swap under whole-guest memory pressure (1.5x overcommit)"
RP_VM_REPLICAS=ec:4+2 RP_VM_NSERVERS=7 bash "$vm" --kill --no-build ||
  fail "swap over erasure coding (4+2 on 7 memservers) with a memserver killed"
echo "PASS"
