#!/bin/bash
# A read whose every try failed, while the first copy's server came
# back during the last try, is tried again on that copy: no EIO while a
# good copy exists.  (Found by test-chaos.sh: "reset m4" and "blackhole
# m2" at once failed a write with EIO; its read-modify-write read had
# tried m4 as m4's connections were reset, then m2, which timed out a
# second later, by when m4 was back.)
#
# 2 memservers behind faultproxy.py, replicas=2, 8 MiB of known data.
# The client opens 2 connections per server and no lanes (lanes=0:
# reads on the shared connections too); extent N travels on
# connection N mod 2, heartbeats on connection 0.  s2's connection 1
# is blackholed (odd extents' requests to s2 hang until timeout-ms, the
# heartbeats go on and the monitor keeps reconnecting promptly), and s1
# is slowed down (delay 800 ms, below timeout-ms).  A full read
# (nbdcopy, requests in parallel) is started; once a request is in
# flight on s1's connection 1, s1's connections are reset.  The odd
# extents' reads that were on s1 fail over to s2's connection 1 and
# hang there; s1 is back within a heartbeat; when s2's try times out,
# the copy on s1 is good again.  The read must succeed, byte for byte.
source "${srcdir:-.}/functions.sh"
source "${srcdir:-.}/faultproxy.sh"
requires nbdkit
requires nbdcopy libnbd-bin

for i in 1 2; do start_memserver "s$i"; done
start_proxy s1 s2
STATS=$TMP/stats
start_nbdkit size=8M replicas=2 timeout-ms=1000 heartbeat-ms=200 \
  rejoin-grace-ms=600000 stats-file="$STATS" connections=2 lanes=0

healthy () { stats_are servers_up -eq 2 extents_healthy -eq 8; }

head -c $((8 * MiB)) /dev/urandom >"$TMP/data"
nbdcopy "$TMP/data" "$NBD_URI"
two_conns_each () {
  [ "$(proxy_status s1 | awk '{ print $7 }')" = 2 ] &&
    [ "$(proxy_status s2 | awk '{ print $7 }')" = 2 ]
}
# A request in flight on s1's connection 1 (no heartbeats there).
in_flight_on_s1_conn1 () {
  local held
  held=$(proxy_status s1 | awk '{ print $9 }')
  [ "${held#*,}" != "$held" ] && [ "${held#*,}" -gt 0 ]
}

# Three times: the timing that matters (s1 back before s2's try times
# out) is the usual one, not a certain one (s1's reconnect can take a
# few heartbeats), so one round alone may miss the case.
for round in 1 2 3; do
  wait_until --polls 100 "8 healthy extents" healthy
  wait_until --polls 100 "2 connections to each server" two_conns_each
  proxy 's2#1' blackhole
  proxy s1 delay 800
  nbdcopy "$NBD_URI" "$TMP/out" 2>"$TMP/nbdcopy.err" &
  COPY_PID=$!
  _pids+=("$COPY_PID")
  wait_until --polls 100 "a read in flight on s1's connection 1" in_flight_on_s1_conn1
  proxy s1 reset
  rc=0
  wait "$COPY_PID" || rc=$?
  cat "$TMP/nbdcopy.err"
  proxy s2 pass
  [ "$rc" = 0 ] || {
    grep "rampool: \(warning\|error\)" "$TMP/nbdkit.log" | tail -n 20
    fail "round $round: the read failed (nbdcopy exit $rc) though a good copy was there again"
  }
  cmp "$TMP/data" "$TMP/out" || fail "round $round: the read returned wrong data"
  echo "round $round: read back whole"
done
echo "PASS"
