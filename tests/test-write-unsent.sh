#!/bin/bash
# A write whose only good copy's server goes down between the check
# that it is up and the send waits for it to come back, like any other
# outage (outage-wait-ms), instead of failing with EIO.  (Found by
# nbd-stall-sequence.sh in CI: after one server was stalled and another
# timed out, a 1 MiB write got EIO although its copies' servers were
# back 70 ms later, and the client logged nothing about it.)
#
# 2 memservers, replicas=2, s2 behind faultproxy.py; the client opens 2
# connections per server and no lanes (extent N travels on connection
# N mod 2, heartbeats on connection 0).  s1 is killed -9 first: every
# extent's one good copy is on s2.  The client runs with
# tests/slow_shutdown.c preloaded, so a dying connection's reader
# stays for a while between marking it dead and taking its server
# down.  Three rounds: s2's connection 1 is reset while it is idle;
# once the reader is in that window (the shim's mark), 64 KiB of
# extent 1 (connection 1) are written.  The write must succeed once s2
# is back, and read back byte for byte; at the end the whole disk is
# read against its expected copy.
source "${srcdir:-.}/functions.sh"
source "${srcdir:-.}/faultproxy.sh"
requires nbdkit
requires nbdcopy libnbd-bin
SHIM=$abs_top_builddir/tests/.libs/slow_shutdown.so
[ -f "$SHIM" ] || fail "slow_shutdown.so not built"
# rampool-nbd is built with ASan in the sanitizer pass: the shim comes
# first in its library list there.
[ "${RP_SANITIZERS:-no}" = yes ] &&
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"

for i in 1 2; do start_memserver "s$i"; done
start_proxy s2
SERVERS=$MS_ADDR_s1,$PX_ADDR_s2
STATS=$TMP/stats
MARK=$TMP/shutdown.mark
LD_PRELOAD=$SHIM RP_SHUTDOWN_DELAY_MS=400 RP_SHUTDOWN_MARK=$MARK \
  start_nbdkit size=8M replicas=2 timeout-ms=2000 heartbeat-ms=100 \
  rejoin-grace-ms=600000 connections=2 lanes=0 stats-file="$STATS"

head -c $((8 * MiB)) /dev/urandom >"$TMP/data"
nbdcopy "$TMP/data" "$NBD_URI"
kill_memserver s1 KILL
wait_until 60 "s1 seen down" stats_are servers_up -eq 1
two_conns () { [ "$(proxy_status s2 | awk '{ print $7 }')" = 2 ]; }

for round in 1 2 3; do
  wait_until --polls 100 "2 connections to s2" two_conns
  wait_until 60 "s2 up" server_is s2 up
  rm -f "$MARK"
  proxy 's2#1' reset >/dev/null
  wait_for_file "$MARK" "the reader of s2's connection 1 in shutdown" 400
  # 64 KiB of new data at 1 MiB + 4 KiB * round (extent 1).
  off=$((MiB + 4096 * round)) len=$((64 * 1024))
  head -c $len /dev/urandom >"$TMP/new"
  dd if="$TMP/new" of="$TMP/data" bs=4096 seek=$((off / 4096)) conv=notrunc \
    status=none
  res=$("$TESTS_BIN/nbd_blocks" "$NBD_URI" 4096 "$TMP/data" pwrite $off $len)
  [ "$res" = ok ] || {
    grep "rampool: \(warning\|error\)" "$TMP/nbdkit.log" | tail -n 20
    fail "round $round: the write gave '$res' while s2 was coming back"
  }
  res=$("$TESTS_BIN/nbd_blocks" "$NBD_URI" 4096 "$TMP/data" pread $off $len)
  [ "$res" = ok ] || fail "round $round: read back '$res'"
  echo "round $round: written while s2's connection was dying, read back whole"
done
read_exact "the whole disk" 8
# Each round's write found s2 up and its connection dead, and waited
# (not sent on the reconnected connection by luck of timing).
wait_until 30 "an outage wait for each round" stats_are outage_waits -ge 3
echo "outage waits: $(stat_of outage_waits)"
echo PASS
