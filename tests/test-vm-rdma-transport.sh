#!/bin/bash
# librampool's RDMA transport end to end, in the RDMA guest (Soft-RoCE:
# tests/vm/README.md): tests/vm/run-rdma.sh boots it with
# tests/vm/rdma-transport.sh, which runs test_rdma_conn (the transport
# below the engine) and then nbdkit + the plugin with servers=rdma://...
# under test_parallel_io, fio (verify=crc32c), test_pool_io and a
# memserver killed and restarted, every byte checked.  Only in a build
# with RDMA (configure --with-rdma).
source "${srcdir:-.}/functions.sh"
for t in qemu-system-x86_64:qemu-system-x86 busybox:busybox-static \
         dpkg-deb:dpkg rping:rdmacm-utils ibv_devinfo:ibverbs-utils \
         ib_write_bw:perftest fio:fio nbd-client:nbd-client flock:util-linux; do
  requires "${t%%:*}" "${t##*:}"
done
[ -x "$TESTS_BIN/test_rdma_conn" ] ||
  fail "$TESTS_BIN/test_rdma_conn is not built (make check builds it)"

export RP_VM_CACHE=$abs_top_builddir/tests/vm/work
# Soft-RoCE under TCG is slow, and slower still on a busy host: a
# 2000-op run took 40 s alone and 140 s beside other guests.
export RP_VM_TIMEOUT=${RP_VM_TIMEOUT:-900}
export RP_VM_SCRIPT_TIMEOUT=${RP_VM_SCRIPT_TIMEOUT:-840}
export RP_VM_BUILDDIR=$abs_top_builddir
mkdir -p "$RP_VM_CACHE"
# One QEMU guest at a time (see test-vm.sh).
exec 9>"$RP_VM_CACHE/qemu.lock"
flock 9

bash "${srcdir:-.}/vm/run-rdma.sh" --file "$TESTS_BIN/test_rdma_conn" \
  "${srcdir:-.}/vm/rdma-transport.sh" ||
  fail "the RDMA transport inside the RDMA guest"
echo "PASS"
