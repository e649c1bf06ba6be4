#!/bin/bash
# A server that comes back while a write it failed is still in flight
# elsewhere must not count as holding that write.
#
# A write goes to X and Y.  X's connections are reset under it (X is
# taken down, and reconnects at once with the same session: its copies
# are kept); Y's part is still on its way.  Until the writer has its
# answers it cannot mark X's copy stale, so if X were counted up in
# between, its copy -- which missed the write -- would count good:
# recovery, here making a third copy on W, copies it from X (the first
# placed), then the write completes on Y and X is marked stale, but W
# keeps the old data, counted good.  Y and X gone, W serves the old
# data for a write the client acknowledged.  (Found in review; the
# client now counts X up only once the writes sent to it are settled.
# Before that, this test read W's block back old: "mismatch 1".)
#
# 3 memservers behind faultproxy, replicas=3, lanes=0 and connections=2
# (extent i's requests go on connection #(i % 2); the PINGs on #0),
# peer-copy=off (the relay copies from the first good copy), a long
# rejoin-grace-ms (X's copies are kept while it is away).  Every extent
# is written with only X up, so X holds each one's first copy; Y gets
# the second; W is down, so each extent lacks its third.  Then X is
# blackholed, and Y's connection #1 too, and block 0 of extent 1 is
# written: its parts wait in the proxy.  X is reset; once X is up, or
# says it waits for the write, W is let through: recovery copies
# extents 0 and 2 onto W, and extent 1 too if X counts up (from X: the
# fault).  Then Y passes, the write completes, and (with the fix)
# recovery copies extent 1 from Y, its read queued behind the write.
# The write must succeed, and once X and Y are cut, W alone must read
# back every byte with the new block.
source "${srcdir:-.}/functions.sh"
source "${srcdir:-.}/faultproxy.sh"
requires nbdkit
requires nbdcopy libnbd-bin

STATS=$TMP/stats
NEXT=3
BLOCK=$(( 1 * MiB / 4096 ))   # block 0 of extent 1
head -c $((NEXT * MiB)) /dev/urandom >"$TMP/data"
head -c $((NEXT * MiB)) /dev/urandom >"$TMP/new"
cp "$TMP/data" "$TMP/expect"
dd if="$TMP/new" of="$TMP/expect" bs=4096 skip=$BLOCK seek=$BLOCK count=1 \
  conv=notrunc status=none

# holds NAME: NAME's connection #1 holds a request the proxy has not
# passed on.
holds () {
  proxy_status "$1" | awk '{ split($9, h, ","); exit !(h[2] > 0) }'
}

for s in X Y W; do start_memserver $s; done
start_proxy X Y W
start_nbdkit size=${NEXT}M replicas=3 lanes=0 connections=2 peer-copy=off \
  timeout-ms=20000 heartbeat-ms=200 rejoin-grace-ms=600000 \
  stats-file="$STATS"
for s in Y W; do proxy $s cut >/dev/null; done
wait_until 30 "Y and W seen down" stats_are servers_up -eq 1
nbdcopy "$TMP/data" "$NBD_URI"           # first copies: all on X
proxy Y pass >/dev/null
y_has () { [ "$(server_used "$MS_ADDR_Y")" = $((NEXT * MiB)) ]; }
wait_until 30 "second copies on Y" y_has
wait_until 30 "Y counted" stats_are servers_up -eq 2 extents_degraded -eq $NEXT

for s in X Y; do
  n=$(proxy_status $s | awk '{ print $7 }')
  [ "$n" = 2 ] || fail "the client has $n connections to $s, expected 2"
done
proxy X blackhole >/dev/null
proxy "Y#1" blackhole >/dev/null
"$TESTS_BIN/nbd_blocks" "$NBD_URI" 4096 "$TMP/new" write $BLOCK 1 \
  >"$TMP/write.out" 2>&1 &
writer=$!
_pids+=("$writer")
wait_until 10 "the write held on the way to X" holds X
wait_until 10 "the write held on the way to Y" holds Y
from=$(( $(wc -l <"$TMP/nbdkit.log") + 1 ))
proxy X reset >/dev/null
x_back () {
  tail -n +"$from" "$TMP/nbdkit.log" |
    has -e "server $PX_ADDR_X up" -e "server $PX_ADDR_X: reconnected once"
}
wait_until 30 "X up, or waiting for the write" x_back
# Counted up (the fault): W gets all three extents from X, extent 1
# without the write.  Waiting: extents 0 and 2, from Y.
want=3
tail -n +"$from" "$TMP/nbdkit.log" | has "server $PX_ADDR_X: reconnected once" &&
  want=2
proxy W pass >/dev/null
w_has () { [ "$(server_used "$MS_ADDR_W")" -ge $((want * MiB)) ]; }
wait_until 30 "$want extents copied onto W" w_has
proxy Y pass >/dev/null
rc=0
wait "$writer" || rc=$?
[ "$rc" = 0 ] || { cat "$TMP/write.out"; fail "the write failed (exit $rc)"; }

wait_until 60 "three good copies of every extent on X, Y and W" \
  stats_are servers_up -eq 3 extents_healthy -eq $NEXT
for s in X Y; do proxy $s cut >/dev/null; done
wait_until 30 "X and Y seen down" stats_are servers_up -eq 1
res=$("$TESTS_BIN/nbd_blocks" "$NBD_URI" 4096 "$TMP/expect" 2>>"$TMP/blocks.log")
echo "from W alone: $res"
[ "$res" = "ok $(( NEXT * MiB / 4096 )) eio 0 mismatch 0 error 0" ] ||
  fail "W alone: $res (W's copy of extent 1 came from X without the write?)"
echo PASS
