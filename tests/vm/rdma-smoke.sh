#!/bin/bash
# rdma-smoke.sh — runs INSIDE the RDMA guest (tests/vm/run-rdma.sh
# tests/vm/rdma-smoke.sh): the guest's plumbing for our binaries, checked
# with real rampool components before any RDMA test relies on it.  Every
# program the guest carries must start (no missing library); 3 memservers
# on the two veth addresses (TCP for now), nbdkit with the plugin and
# test_parallel_io --ops 2000 (every byte checked against a shadow copy,
# then a full re-read over a new connection), fio's nbd engine with
# verify=crc32c, and librampool driven directly by test_pool_io; every
# memserver must hold 0 bytes once nbdkit has exited.  An RDMA test has the
# same shape, with the memservers and servers= on RDMA instead.
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

step "memservers on $RPVM_ADDR1 and $RPVM_ADDR2"
MS_SIZE=128M MS_LISTEN=$RPVM_ADDR1:0 start_memserver s1
MS_SIZE=128M MS_LISTEN=$RPVM_ADDR1:0 start_memserver s2
MS_SIZE=128M MS_LISTEN=$RPVM_ADDR2:0 start_memserver s3
echo "servers=$SERVERS"

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
