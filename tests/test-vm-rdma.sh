#!/bin/bash
# The RDMA guest: a QEMU guest with soft-RoCE (rdma_rxe on a veth pair),
# because the build machines' kernel has no RDMA (tests/vm/README.md).
# tests/vm/run-rdma.sh boots it with a test script as its payload; the
# guest checks rping -V through both rxe devices first, then runs the
# script.  Here the script is tests/vm/rdma-smoke.sh: every program the
# guest carries starts, and memservers on the veth addresses serve
# nbdkit + the plugin under test_parallel_io, fio (verify=crc32c) and
# test_pool_io with every byte checked.
source "${srcdir:-.}/functions.sh"
for t in qemu-system-x86_64:qemu-system-x86 busybox:busybox-static \
         dpkg-deb:dpkg rping:rdmacm-utils ibv_devinfo:ibverbs-utils \
         ib_write_bw:perftest fio:fio nbd-client:nbd-client flock:util-linux; do
  requires "${t%%:*}" "${t##*:}"
done

export RP_VM_CACHE=$abs_top_builddir/tests/vm/work
export RP_VM_BUILDDIR=$abs_top_builddir
mkdir -p "$RP_VM_CACHE"
# One QEMU guest at a time (see test-vm.sh).
exec 9>"$RP_VM_CACHE/qemu.lock"
flock 9

bash "${srcdir:-.}/vm/run-rdma.sh" "${srcdir:-.}/vm/rdma-smoke.sh" ||
  fail "rampool over TCP inside the RDMA guest"
echo "PASS"
