#!/bin/bash
# rdma-pair-smoke.sh — runs INSIDE both guests of tests/vm/run-rdma-pair.sh
# (RPVM_ROLE=donor or compute): RDMA between two kernels, each with its own
# rxe device on a virtio-net NIC, and rampool from the compute guest to
# memservers in the donor guest over RDMA (rdma://).  The donor serves
# rping, ib_write_bw and two memservers on fixed ports (each on TCP, for
# rampool status, and with --listen-rdma on its rxe0 address), and waits
# for the compute guest's verdict; the compute guest checks rping -V,
# measures ib_write_bw, and runs nbdkit + plugin with test_parallel_io
# against the donor's memservers over RDMA, every byte checked, then
# checks (over TCP) that they hold 0 bytes after nbdkit's exit.
# Argument: test_parallel_io's --ops (default 1000; 0: RDMA checks only).
source "${srcdir:-.}/functions.sh"
[ -n "${RPVM_ROLE:-}" ] && [ -n "${RPVM_PEER:-}" ] ||
  fail "RPVM_ROLE/RPVM_PEER not set: run this with tests/vm/run-rdma-pair.sh"
step () { echo "== [${SECONDS}s] $RPVM_ROLE: $*"; }
VERDICT_PORT=7099
OPS=${1:-1000}
# TCP (status, the 0-bytes check) and RDMA (the data) ports of d1, d2
TCP1=7070 TCP2=7071 RDMA1=7170 RDMA2=7171

case $RPVM_ROLE in
donor)
  step "memservers (TCP $TCP1, $TCP2; RDMA $RDMA1, $RDMA2), rping and ib_write_bw servers on $RPVM_ADDR1"
  MS_SIZE=128M MS_LISTEN=$RPVM_ADDR1:$TCP1 start_memserver d1 --listen-rdma "$RPVM_ADDR1:$RDMA1"
  MS_SIZE=128M MS_LISTEN=$RPVM_ADDR1:$TCP2 start_memserver d2 --listen-rdma "$RPVM_ADDR1:$RDMA2"
  rping -s -a "$RPVM_ADDR1" -p 7480 -C 5 >"$TMP/rping.log" 2>&1 &
  _pids+=($!)
  ib_write_bw -R -d "$RPVM_RDMA_DEV1" -D 3 >"$TMP/bw.log" 2>&1 &
  _pids+=($!)
  step "waiting for the compute guest's verdict"
  verdict=$(timeout 200 nc -l -p $VERDICT_PORT) || true
  step "compute guest says: ${verdict:-nothing}"
  [ "$verdict" = PASS ] || fail "the compute guest failed"
  ;;
compute)
  VERDICT=FAIL
  on_exit 'echo "$VERDICT" | nc -w 5 "$RPVM_PEER" $VERDICT_PORT >/dev/null 2>&1'
  step "ping $RPVM_PEER"
  retry 100 ping -c 1 -W 1 "$RPVM_PEER" >/dev/null 2>&1 || fail "no ping reply from $RPVM_PEER"
  ping -c 3 "$RPVM_PEER" | tail -n 1
  step "rping -V to $RPVM_PEER"
  retry 100 timeout 30 rping -c -a "$RPVM_PEER" -p 7480 -C 5 -V -v >"$TMP/rping.log" 2>&1 ||
    { cat "$TMP/rping.log"; fail "rping -V to $RPVM_PEER"; }
  [ "$(grep -c 'ping data' "$TMP/rping.log")" = 5 ] || { cat "$TMP/rping.log"; fail "rping: not 5 pings"; }
  step "ib_write_bw -R to $RPVM_PEER"
  retry 100 timeout 60 ib_write_bw -R -d "$RPVM_RDMA_DEV1" -D 3 "$RPVM_PEER" >"$TMP/bw.log" 2>&1 ||
    { cat "$TMP/bw.log"; fail "ib_write_bw to $RPVM_PEER"; }
  grep -A1 'BW average' "$TMP/bw.log"
  if [ "$OPS" = 0 ]; then VERDICT=PASS; step "done"; echo "PASS"; exit 0; fi
  pair_servers
  step "test_parallel_io --ops $OPS through nbdkit + plugin, servers=$RSERVERS replicas=2"
  nbdkit -U - "$PLUGIN" servers="$RSERVERS" size=128M replicas=2 \
    --run "'$TESTS_BIN/test_parallel_io' --ops $OPS --reopen \"\$uri\"" \
    >>"$TMP/nbdkit.log" 2>&1 || { tail -n 20 "$TMP/nbdkit.log"; fail "parallel I/O"; }
  tail -n 1 "$TMP/nbdkit.log"
  tail -n 1 "$TMP/nbdkit.log" | grep -q PASS || fail "no PASS line from test_parallel_io"
  used=$(pool_used)
  [ "$used" -eq 0 ] || fail "$used bytes still allocated on the donor after nbdkit exit"
  VERDICT=PASS
  ;;
*) fail "RPVM_ROLE must be donor or compute" ;;
esac
step "done"
echo "PASS"
