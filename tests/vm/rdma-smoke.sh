#!/bin/bash
# rdma-smoke.sh — runs INSIDE the RDMA guest (tests/vm/run-rdma.sh
# tests/vm/rdma-smoke.sh): the guest's plumbing for our binaries, checked
# with real rampool components before any RDMA test relies on it.  Every
# program the guest carries must start (no missing library); 3 memservers
# on the two veth addresses, over TCP, and when the memserver is built with
# RDMA also listening on RDMA (rdma res show cm_id must list them on rxe0
# and rxe1); nbdkit with the plugin and test_parallel_io --ops 2000 (every
# byte checked against a shadow copy, then a full re-read over a new
# connection), fio's nbd engine with verify=crc32c, and librampool driven
# directly by test_pool_io; every memserver must hold 0 bytes once nbdkit
# has exited.  An RDMA test has the same shape, with servers=rdma://...
source "${srcdir:-.}/functions.sh"
[ -n "${RPVM_ADDR1:-}" ] && [ -n "${RPVM_ADDR2:-}" ] ||
  fail "RPVM_ADDR1/2 not set: run this inside the guest, with tests/vm/run-rdma.sh"
# step TITLE: a header with the seconds since the script started
step () { echo "== [${SECONDS}s] $*"; }

step "every program starts"
# 127: the dynamic loader found a library missing
for cmd in "$MEMSERVER --version" "$RAMPOOL --version" "nbdkit $PLUGIN --dump-plugin" \
           "fio --version" "$TESTS_BIN/test_parallel_io --help" "$TESTS_BIN/nbd_blocks" \
           "$TESTS_BIN/test_pool_io" "rping -h" "ibv_devinfo" "ib_write_bw -h" "nbd-client -h"; do
  rc=0
  $cmd >"$TMP/start.log" 2>&1 || rc=$?
  if [ $rc = 127 ] || grep -q "error while loading shared libraries" "$TMP/start.log"; then
    cat "$TMP/start.log"; fail "'$cmd' cannot start"
  fi
done

# A memserver built with RDMA also listens on RDMA (fixed ports: its
# --port-file names the TCP port only); its listeners must be up on the
# rxe devices.  The I/O below is TCP until the client has rdma://.
rdma=0
grep -q librdmacm.so "$MEMSERVER" && rdma=1
step "memservers on $RPVM_ADDR1 and $RPVM_ADDR2 (TCP$([ $rdma = 1 ] && echo ", and RDMA"))"
ms_args () { [ $rdma = 1 ] && echo "--listen-rdma $1:$2"; true; }
MS_SIZE=128M MS_LISTEN=$RPVM_ADDR1:0 start_memserver s1 $(ms_args "$RPVM_ADDR1" 7071)
MS_SIZE=128M MS_LISTEN=$RPVM_ADDR1:0 start_memserver s2 $(ms_args "$RPVM_ADDR1" 7072)
MS_SIZE=128M MS_LISTEN=$RPVM_ADDR2:0 start_memserver s3 $(ms_args "$RPVM_ADDR2" 7073)
echo "servers=$SERVERS"
if [ $rdma = 1 ]; then
  rdma res show cm_id >"$TMP/cm_id"
  for l in "$RPVM_RDMA_DEV1 $RPVM_ADDR1:7071" "$RPVM_RDMA_DEV1 $RPVM_ADDR1:7072" \
           "$RPVM_RDMA_DEV2 $RPVM_ADDR2:7073"; do
    set -- $l
    grep -q "^link $1/1 .*state LISTEN .*comm memserver src-addr $2 " "$TMP/cm_id" ||
      { cat "$TMP/cm_id"; fail "no memserver RDMA listener on $1 at $2"; }
  done
  grep "state LISTEN" "$TMP/cm_id"
fi

step "test_parallel_io --ops 2000 through nbdkit + plugin, replicas=2"
nbdkit -U - "$PLUGIN" servers="$SERVERS" size=128M replicas=2 \
  --run "'$TESTS_BIN/test_parallel_io' --ops 2000 --reopen \"\$uri\"" \
  >>"$TMP/nbdkit.log" 2>&1 || { tail -n 20 "$TMP/nbdkit.log"; fail "parallel I/O"; }
tail -n 3 "$TMP/nbdkit.log"
tail -n 1 "$TMP/nbdkit.log" | grep -q PASS || fail "no PASS line from test_parallel_io"
used=$(pool_used)
[ "$used" -eq 0 ] || fail "$used bytes still allocated after nbdkit exit"

step "fio, nbd engine, verify=crc32c"
start_nbdkit size=64M replicas=2
fio --name=verify --ioengine=nbd --uri="$NBD_URI" --rw=randwrite --bsrange=4k-64k --iodepth=8 \
    --size=8M --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=1 \
    --verify_state_save=0 --output="$TMP/fio.log" >/dev/null ||
  { cat "$TMP/fio.log"; fail "fio"; }
grep -q "err= 0" "$TMP/fio.log" || { cat "$TMP/fio.log"; fail "fio reported errors"; }
grep -E "^ +(write|read):" "$TMP/fio.log"
stop_nbdkit
used=$(pool_used)
[ "$used" -eq 0 ] || fail "$used bytes still allocated after nbdkit exit (fio)"

step "test_pool_io --ops 500, replicas=2"
"$TESTS_BIN/test_pool_io" --ops 500 servers="$SERVERS" replicas=2 >"$TMP/pool.log" 2>&1 ||
  { cat "$TMP/pool.log"; fail "test_pool_io"; }
tail -n 2 "$TMP/pool.log"
step "done"
echo "PASS"
