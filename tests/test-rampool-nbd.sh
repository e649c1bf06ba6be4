#!/bin/bash
# rampool-nbd, the NBD front end without a thread per request:
#  1. the handshake as libnbd sees it (size, multi-conn, trim, zero);
#  2. 64 MiB in and out exact, over 4 connections at once;
#  3. fio's 4 KiB random writes and reads verified (crc32c), taken by
#     the asynchronous path (async_requests grows);
#  4. checked parallel I/O (every byte against a shadow copy) while s2
#     is stalled past timeout-ms, and then while s3 is killed -9: no
#     error, no mismatch, healthy again after;
#  5. a peer that breaks the protocol: a request past the end is
#     answered EINVAL and the connection goes on; a WRITE larger than
#     32 MiB or a bad magic ends only that connection; an option too
#     large is refused and the handshake goes on;
#  6. SIGTERM: exit status 0, the memservers' memory given back;
#  7. reads with s1 stalled and no heartbeat for 120 s: only
#     rampool-nbd's tick (rp_pool_aio_expire) can time out the reads in
#     flight on s1, and they fail over;
#  8. a client that asks for 16 MiB of reads and reads none of the
#     replies holds up no other client: with one connection per
#     memserver, another client reads the whole disk exact meanwhile
#     (the thread that receives a memserver's replies never waits for
#     an NBD client to read, nbd_reply), and then the first one gets
#     every reply, exact.
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires nbdcopy libnbd-bin
requires nbdinfo libnbd-bin
requires fio
requires python3
RP_FRONTEND=nbd
STATS=$TMP/stats

for s in s1 s2 s3; do start_memserver $s; done
start_nbdkit size=64M replicas=2 timeout-ms=1000 heartbeat-ms=200 \
  rejoin-grace-ms=500 stats-file="$STATS"

# 1. The handshake.
nbdinfo "$NBD_URI" >"$TMP/info" || fail "nbdinfo failed"
for want in "export-size: 67108864" "can_multi_conn: true" "can_trim: true" \
            "can_zero: true" "can_flush: true" "can_fua: true"; do
  grep -q "$want" "$TMP/info" || { cat "$TMP/info"; fail "nbdinfo: no '$want'"; }
done

# 2. In and out, four connections.
head -c $((64 * MiB)) /dev/urandom >"$TMP/data"
nbdcopy --connections=4 "$TMP/data" "$NBD_URI"
nbdcopy --connections=4 "$NBD_URI" "$TMP/out"
cmp "$TMP/data" "$TMP/out" || fail "64 MiB read back differs"
read_exact "after nbdcopy" 64

# 3. Small random I/O: the asynchronous path.
a0=$(stat_of async_requests)
fio --name=verify --ioengine=nbd --uri="$NBD_URI" --rw=randwrite --bs=4k \
    --iodepth=32 --size=32M --verify=crc32c --verify_fatal=1 --do_verify=1 \
    --randrepeat=1 --verify_state_save=0 --output="$TMP/fio.log" >/dev/null ||
  { cat "$TMP/fio.log"; fail "fio verify"; }
grep -q "err= 0" "$TMP/fio.log" || { cat "$TMP/fio.log"; fail "fio reported errors"; }
wait_until 10 "the asynchronous path counted" stats_are async_requests -gt $((a0 + 8000))
echo "3: fio verified; async_requests $(stat_of async_requests)"

# 4. A stall, then a kill, under checked I/O (which starts from a disk
# of zeros: a new one).
stop_nbdkit
start_nbdkit size=64M replicas=2 timeout-ms=1000 heartbeat-ms=200 \
  rejoin-grace-ms=500 stats-file="$STATS"
checked_io_start "$TMP/io1.log"
wait_until 20 "I/O to start" stats_are extents_mapped -ge 32
kill_memserver s2 STOP
wait_until 10 "s2 seen down" server_is s2 down
checked_io_alive "$TMP/io1.log"
sleep_io () { local n; n=$(stat_of writes); wait_until 20 "more I/O ($1)" stats_are writes -gt $((n + 200)); }
sleep_io "s2 stalled"
kill_memserver s2 CONT
wait_until 30 "s2 up again" server_is s2 up
# Copies s2 missed while stalled are stale until repaired: kill s3
# before that and the extents written meanwhile have no good copy left
# to serve (they wait for s3, correctly, and the I/O stops).
all_healthy () { [ "$(stat_of extents_healthy)" = "$(stat_of extents_mapped)" ]; }
wait_until 30 "s2's stale copies repaired" all_healthy
checked_io_alive "$TMP/io1.log"
kill_memserver s3 KILL
wait_until 10 "s3 seen down" server_is s3 down
sleep_io "s3 killed"
checked_io_stop "$TMP/io1.log"
tail -n 1 "$TMP/io1.log"
wait_until 60 "health on s1 and s2" \
  stats_are servers_up -eq 2 extents_degraded -eq 0 extents_lost -eq 0


# 5. A peer that breaks the protocol (the disk as it was before, to
# compare after).
nbdcopy "$NBD_URI" "$TMP/before"
PYTHONPATH="${srcdir:-.}" python3 - "$NBD_SOCK" $((64 * MiB)) <<'EOF' ||
import sys
from nbdwire import conn, handshake, recvn, reply, request

size = int(sys.argv[2])
s = conn(sys.argv[1])
handshake(s, too_big=True)
request(s, 0, 1, size - 4096, 8192)          # READ past the end
assert reply(s) == (22, 1)
request(s, 1, 2, size, 512, b"x" * 512)      # WRITE past the end
assert reply(s) == (28, 2)
request(s, 9, 3, 0, 0)                       # unknown command
assert reply(s) == (22, 3)
request(s, 0, 4, 0, 4096)                    # still serving
err, cookie = reply(s)
assert (err, cookie) == (0, 4) and len(recvn(s, 4096)) == 4096
request(s, 1, 5, 0, 64 << 20)                # WRITE of 64 MiB (> 32)
assert s.recv(1) == b"", "the connection should have ended"
s = conn(sys.argv[1])
handshake(s)
s.sendall(b"\xde\xad\xbe\xef" + b"\0" * 24)  # bad magic
assert s.recv(1) == b"", "the connection should have ended"
print("5: protocol checks passed")
EOF
  fail "protocol checks failed"
kill -0 "$NBDKIT_PID" || fail "rampool-nbd died on bad input"
nbdcopy "$NBD_URI" "$TMP/out"
cmp "$TMP/before" "$TMP/out" || fail "not serving the same bytes after bad peers"

# 6. SIGTERM.
kill -TERM "$NBDKIT_PID"
rc=0; wait "$NBDKIT_PID" || rc=$?
[ "$rc" = 0 ] || fail "rampool-nbd exited with $rc on SIGTERM"
used=$(( $(server_used "$MS_ADDR_s1") + $(server_used "$MS_ADDR_s2") ))
[ "$used" = 0 ] || fail "$used bytes still used on s1 and s2 after SIGTERM"
echo "6: SIGTERM: status 0, nothing left on the memservers"

# 7. Nothing but rampool-nbd's tick times out a read on a stalled
# server here: the heartbeat (whose PING would find s1 hung too) comes
# every 120 s.  Without the tick the reads on s1 would hang that long.
stop_nbdkit
start_nbdkit size=16M replicas=2 timeout-ms=1000 heartbeat-ms=120000 \
  stats-file="$STATS"
head -c $((16 * MiB)) /dev/urandom >"$TMP/data"
nbdcopy "$TMP/data" "$NBD_URI"
kill_memserver s1 STOP
res=$(timeout 60 "$TESTS_BIN/nbd_blocks" "$NBD_URI" $MiB "$TMP/data") ||
  fail "reads with s1 stalled did not end in 60 s (no tick?)"
[ "$res" = "ok 16 eio 0 mismatch 0 error 0" ] || fail "reads with s1 stalled: $res"
grep -q "server $MS_ADDR_s1 down: request timed out" "$TMP/nbdkit.log" ||
  fail "s1 was not timed out"
kill_memserver s1 CONT
echo "7: 16 MiB read exact with s1 stalled and no heartbeat"

# 8. A client that does not read its replies.
stop_nbdkit
start_nbdkit size=16M replicas=1 connections=1
head -c $((16 * MiB)) /dev/urandom >"$TMP/data"
nbdcopy "$TMP/data" "$NBD_URI"
PYTHONPATH="${srcdir:-.}" python3 - "$NBD_SOCK" "$TMP/data" "$NBD_URI" \
  "$TMP/out8" <<'EOF' ||
import select, subprocess, sys
from nbdwire import conn, handshake, recvn, reply, request

sock, data_path, uri, out = sys.argv[1:]
data = open(data_path, "rb").read()
s = conn(sock)
handshake(s)
MIB = 1 << 20
for i in range(16):
    request(s, 0, i, i * MIB, MIB)
# The first reply has begun: rampool-nbd holds the rest for this client.
select.select([s], [], [], 30)
r = subprocess.run(["timeout", "60", "nbdcopy", uri, out])
assert r.returncode == 0, "another client's reads did not end in 60 s" \
    " while one client read none of its replies (status %d)" % r.returncode
assert open(out, "rb").read() == data, "the other client read wrong bytes"
for _ in range(16):
    err, cookie = reply(s)
    assert err == 0, err
    assert recvn(s, MIB) == data[cookie * MIB:(cookie + 1) * MIB], \
        "reply %d of the slow client is wrong" % cookie
s.close()
print("8: a client that read none of its replies held up no other")
EOF
  fail "a client that does not read held up another"
echo PASS
