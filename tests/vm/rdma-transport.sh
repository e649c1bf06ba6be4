#!/bin/bash
# rdma-transport.sh — runs INSIDE the RDMA guest (tests/vm/run-rdma.sh,
# on the vm-rdma branch): librampool's RDMA transport against memservers
# with --listen-rdma on the guest's two Soft-RoCE addresses.
#
#   tests/vm/run-rdma.sh --file tests/test_rdma_conn tests/vm/rdma-transport.sh
#
# Steps: test_rdma_conn (the transport below the engine: ordering,
# credits, the bounce pool, ENOENT after FREE, a kill with calls in
# flight, and fencing: also with the client kept from learning of it,
# so that only the memserver stops the write; packed with --file until
# build-guest.sh packs it); rampool
# status over RDMA, and a clear error for a port nobody listens on;
# test_parallel_io through nbdkit (1000 ops, every byte checked); fio
# with verify=crc32c; test_pool_io (4 threads); kill -9 of a memserver
# under fio (replicas=2), then the memserver back as a new incarnation
# and recovery; every memserver holds 0 bytes after each nbdkit.  With
# a cluster key on two more memservers: a wrong key is refused at the
# handshake (logged on both sides, nothing allocated), and the right
# key with encrypt=on carries checked I/O.  With
# --file PATH/memserver of a memserver that grants no RDMA READ (the bug
# of a3cb6b5), also checks that the plugin refuses it at connect with a
# clear error instead of hanging on the first READ.
source "${srcdir:-.}/functions.sh"
[ -n "${RPVM_ADDR1:-}" ] && [ -n "${RPVM_ADDR2:-}" ] ||
  fail "RPVM_ADDR1/2 not set: run this inside the guest"
step () { echo "== [${SECONDS}s] $*"; }
RPORT=7471

if [ -x /payload/memserver ]; then
  step "a memserver that grants no RDMA READ (the accept's responder resources 0)"
  MEMSERVER_FIXED=$MEMSERVER
  MEMSERVER=/payload/memserver
  MS_SIZE=64M MS_LISTEN=$RPVM_ADDR1:0 start_memserver b1 --listen-rdma $RPVM_ADDR1:7499
  "$RAMPOOL" status "rdma://$RPVM_ADDR1:7499" || fail "status (no READ needed) failed"
  # Foreground: nbdkit exits when the pool does not open (--run races it).
  timeout 120 nbdkit -f -U "$TMP/b1.sock" "$PLUGIN" servers="rdma://$RPVM_ADDR1:7499" \
    size=64M replicas=1 >"$TMP/b1-nbdkit.log" 2>&1 &&
    fail "the pool opened on a server that takes no READ"
  cat "$TMP/b1-nbdkit.log"
  grep -q "takes no RDMA READ" "$TMP/b1-nbdkit.log" || fail "no clear error for a server that takes no READ"
  kill_memserver b1 TERM
  SERVERS=
  MEMSERVER=$MEMSERVER_FIXED
fi

step "memservers: TCP port 0 and RDMA $RPORT"
MS_SIZE=128M MS_LISTEN=$RPVM_ADDR1:0 start_memserver s1 --listen-rdma $RPVM_ADDR1:$RPORT
MS_SIZE=128M MS_LISTEN=$RPVM_ADDR2:0 start_memserver s2 --listen-rdma $RPVM_ADDR2:$RPORT
MS_SIZE=128M MS_LISTEN=$RPVM_ADDR1:0 start_memserver s3 --listen-rdma $RPVM_ADDR1:$((RPORT + 1))
RSERVERS=rdma://$RPVM_ADDR1:$RPORT,rdma://$RPVM_ADDR2:$RPORT,rdma://$RPVM_ADDR1:$((RPORT + 1))
echo "tcp: $SERVERS"
echo "rdma: $RSERVERS"

if [ -x /payload/test_rdma_conn ]; then
  step "test_rdma_conn: the transport below the engine"
  /payload/test_rdma_conn "rdma://$RPVM_ADDR2:$RPORT" "$MS_PID_s2" || { tail -n 20 "$TMP/s2.log"; fail "test_rdma_conn"; }
  tail -n 5 "$TMP/s2.log"
fi

step "rampool status over RDMA"
"$RAMPOOL" status "$RSERVERS" || { cat "$TMP"/s*.log; fail "status over RDMA"; }
"$RAMPOOL" status "rdma://$RPVM_ADDR1:7999" && fail "status to a port with no listener succeeded"

step "test_parallel_io --ops 1000 through nbdkit + plugin over RDMA, replicas=2"
nbdkit -U - "$PLUGIN" servers="$RSERVERS" size=128M replicas=2 \
  --run "'$TESTS_BIN/test_parallel_io' --ops 1000 --reopen \"\$uri\"" \
  >>"$TMP/nbdkit.log" 2>&1 || { tail -n 30 "$TMP/nbdkit.log"; tail -n 20 "$TMP"/s*.log; fail "parallel I/O"; }
tail -n 3 "$TMP/nbdkit.log"
tail -n 1 "$TMP/nbdkit.log" | grep -q PASS || fail "no PASS line from test_parallel_io"
used=$(pool_used)
[ "$used" -eq 0 ] || fail "$used bytes still allocated after nbdkit exit"

step "fio, nbd engine, verify=crc32c, over RDMA"
SERVERS_TCP=$SERVERS
SERVERS=$RSERVERS
start_nbdkit size=64M replicas=2
fio --name=verify --ioengine=nbd --uri="$NBD_URI" --rw=randwrite --bsrange=4k-1M --iodepth=16 \
    --size=32M --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=1 \
    --verify_state_save=0 --output="$TMP/fio.log" >/dev/null ||
  { cat "$TMP/fio.log"; tail -n 30 "$TMP/nbdkit.log"; fail "fio"; }
grep -q "err= 0" "$TMP/fio.log" || { cat "$TMP/fio.log"; fail "fio reported errors"; }
grep -E "^ +(write|read):" "$TMP/fio.log"
fio --name=rr --ioengine=nbd --uri="$NBD_URI" --rw=randread --bs=4k --iodepth=16 \
    --size=32M --runtime=5 --time_based --output="$TMP/fio-rr.log" >/dev/null ||
  { cat "$TMP/fio-rr.log"; fail "fio randread"; }
grep -E "^ +read:" "$TMP/fio-rr.log"
stop_nbdkit
SERVERS=$SERVERS_TCP
used=$(pool_used)
[ "$used" -eq 0 ] || fail "$used bytes still allocated after nbdkit exit (fio)"

step "test_pool_io --ops 500, replicas=2, over RDMA"
"$TESTS_BIN/test_pool_io" --ops 500 servers="$RSERVERS" replicas=2 >"$TMP/pool.log" 2>&1 ||
  { cat "$TMP/pool.log"; fail "test_pool_io"; }
tail -n 2 "$TMP/pool.log"

step "cluster key and encrypt=on over RDMA: the right key works, a wrong one is refused before any extent exists"
SERVERS_BEFORE=$SERVERS
"$RAMPOOL" keygen "$TMP/k1" >/dev/null
"$RAMPOOL" keygen "$TMP/k2" >/dev/null
MS_SIZE=64M MS_LISTEN=$RPVM_ADDR1:0 start_memserver k1 --key-file "$TMP/k1" \
  --listen-rdma $RPVM_ADDR1:$((RPORT + 2))
MS_SIZE=64M MS_LISTEN=$RPVM_ADDR2:0 start_memserver k2 --key-file "$TMP/k1" \
  --listen-rdma $RPVM_ADDR2:$((RPORT + 2))
KSERVERS=rdma://$RPVM_ADDR1:$((RPORT + 2)),rdma://$RPVM_ADDR2:$((RPORT + 2))
rc=0
timeout 120 nbdkit -f -U "$TMP/k.sock" "$PLUGIN" servers="$KSERVERS" size=32M \
  replicas=2 key-file="$TMP/k2" >"$TMP/wrongkey.log" 2>&1 || rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "nbdkit started (status $rc) with the wrong key over RDMA"
grep -q "does not hold our cluster key" "$TMP/wrongkey.log" ||
  { cat "$TMP/wrongkey.log"; fail "no clear error for the wrong key over RDMA"; }
# The memserver sees the disconnect when its event loop gets to it.
wait_until 20 "memserver k1 logs the refused client" \
  grep -q "client left before authenticating" "$TMP/k1.log"
"$RAMPOOL" status --raw --key-file="$TMP/k1" "$KSERVERS" >"$TMP/kst.log" 2>&1 ||
  { cat "$TMP/kst.log"; fail "status with the key over RDMA"; }
cat "$TMP/kst.log"
# Both up, and the refused client got nothing: 0 bytes used on each.
[ "$(awk '$2 == "up" && $4 == 0' "$TMP/kst.log" | wc -l)" = 2 ] ||
  fail "after the wrong key: not both keyed servers up with 0 bytes used"
nbdkit -U - "$PLUGIN" servers="$KSERVERS" size=32M replicas=2 key-file="$TMP/k1" \
  encrypt=on --run "'$TESTS_BIN/test_parallel_io' --ops 500 \"\$uri\"" \
  >"$TMP/enc.log" 2>&1 || { tail -n 30 "$TMP/enc.log"; fail "encrypt=on I/O over RDMA"; }
tail -n 1 "$TMP/enc.log" | grep -q PASS || { tail -n 5 "$TMP/enc.log"; fail "no PASS from encrypt=on I/O"; }
tail -n 1 "$TMP/enc.log"
kill_memserver k1 TERM
kill_memserver k2 TERM
SERVERS=$SERVERS_BEFORE   # k1 and k2 take part in no later step

step "kill -9 one memserver under I/O (replicas=2)"
SERVERS=$RSERVERS
start_nbdkit size=64M replicas=2 timeout-ms=2000
fio --name=w --ioengine=nbd --uri="$NBD_URI" --rw=randwrite --bs=64k --iodepth=8 \
    --size=32M --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=1 \
    --verify_state_save=0 --output="$TMP/fio-kill.log" >/dev/null &
fpid=$!
# Kill once fio's writes are landing on s2 (its extents are allocated as
# they are first written), while fio still runs.
s2_has_data () { [ "$(server_used "$MS_ADDR_s2")" -ge $((4 << 20)) ]; }
wait_until 120 "fio's first writes on memserver s2" s2_has_data
kill -0 $fpid 2>/dev/null || fail "fio finished before memserver s2 could be killed mid-run"
kill_memserver s2
wait $fpid || { cat "$TMP/fio-kill.log"; tail -n 30 "$TMP/nbdkit.log"; fail "fio with a memserver killed"; }
grep -q "err= 0" "$TMP/fio-kill.log" || { cat "$TMP/fio-kill.log"; fail "fio errors with a memserver killed"; }
grep "rampool" "$TMP/nbdkit.log" | tail -n 8

step "the memserver back (a new incarnation): recovery over RDMA, then verify"
SERVERS=$SERVERS_TCP
restart_memserver s2 --listen-rdma $RPVM_ADDR2:$RPORT
SERVERS=$RSERVERS
for _ in $(seq 60); do
  grep -q "server rdma://$RPVM_ADDR2:$RPORT restarted" "$TMP/nbdkit.log" && break
  sleep 1
done
grep -q "server rdma://$RPVM_ADDR2:$RPORT restarted" "$TMP/nbdkit.log" || { tail -n 20 "$TMP/nbdkit.log"; fail "restart not seen"; }
fio --name=w --ioengine=nbd --uri="$NBD_URI" --rw=randwrite --bs=64k --iodepth=8 \
    --size=32M --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=1 \
    --verify_state_save=0 --output="$TMP/fio-back.log" >/dev/null ||
  { cat "$TMP/fio-back.log"; tail -n 30 "$TMP/nbdkit.log"; fail "fio after the restart"; }
grep -q "err= 0" "$TMP/fio-back.log" || { cat "$TMP/fio-back.log"; fail "fio errors after the restart"; }
grep "rampool" "$TMP/nbdkit.log" | tail -n 6
stop_nbdkit
SERVERS=$SERVERS_TCP
used=$(pool_used)
[ "$used" -eq 0 ] || fail "$used bytes still allocated after nbdkit exit (restart)"
step "done"
echo "PASS"
