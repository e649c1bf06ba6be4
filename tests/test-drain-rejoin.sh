#!/bin/bash
# A drain survives the client reconnecting in the middle of it.
#
# The client forgets a drain with the connections that told it (a
# server's drain may end, and a new incarnation knows nothing of it),
# so the memserver must tell it again when its connections come back
# with the same session.  Before that was so, the DRAIN went once per
# owner: a client reconnected during the drain (a reset link, a lost
# PING) stopped moving copies off the server, which then dropped them
# at its deadline.
#
# 3 memservers behind faultproxy, replicas=2, recovery-rate=1M with
# heartbeat-ms=1000 (a budget of one extent a heartbeat) so that moving
# s1's copies takes over ten seconds.  s1 is told to drain
# (SIGUSR2); once the first copies have moved, the proxy resets every
# connection to s1: the client reconnects to the same session.  It must
# be told of the drain again, move the rest, and s1 must stop by itself
# drained (nothing dropped).  Then the disk reads back exact, and again
# with s2 killed -9 (every extent must have its second copy on s3).
source "${srcdir:-.}/functions.sh"
source "${srcdir:-.}/faultproxy.sh"
requires nbdkit
requires nbdcopy libnbd-bin

STATS=$TMP/stats
NEXT=24                    # extents of 1 MiB
head -c $((NEXT * MiB)) /dev/urandom >"$TMP/data"
told () { grep -c "server $PX_ADDR_s1 is draining" "$TMP/nbdkit.log" || true; }

for s in s1 s2 s3; do start_memserver $s; done
start_proxy s1 s2 s3
start_nbdkit size=${NEXT}M replicas=2 timeout-ms=1000 heartbeat-ms=1000 \
  rejoin-grace-ms=5000 recovery-rate=1M stats-file="$STATS"
nbdcopy "$TMP/data" "$NBD_URI"
wait_until 30 "two copies of every extent" \
  stats_are extents_healthy -eq $NEXT servers_up -eq 3
held=$(server_used "$MS_ADDR_s1")
echo "s1 holds $held bytes when told to drain"
[ "$held" -ge $((4 * MiB)) ] || fail "s1 holds $held bytes: too little to drain slowly"

kill -USR2 "$MS_PID_s1"
wait_until 30 "the first copies to move off s1" stats_are migrated -gt 0
[ "$(told)" = 1 ] || fail "the client logged the DRAIN $(told) times, expected once"
left=$(server_used "$MS_ADDR_s1")
echo "s1 holds $left bytes when its connections are reset"
[ "$left" -ge $((2 * MiB)) ] || fail "s1 holds $left bytes: the drain was over before the reset"
proxy s1 reset
wait_until 30 "s1 back with the same session" \
  has "server $PX_ADDR_s1 back after .* same incarnation and session" "$TMP/nbdkit.log"
# Told again on the new connections: without that the client would
# count s1 an ordinary server again and leave the rest on it.
wait_until 10 "the DRAIN told again" eval '[ "$(told)" -ge 2 ]'

wait_drained s1
wait_until 30 "every extent with two copies on s2 and s3" \
  stats_are servers_up -eq 2 extents_healthy -eq $NEXT extents_degraded -eq 0
read_exact "after the drain" $NEXT
kill_memserver s2 KILL
wait_until 10 "s2 seen down" server_is s2 down
read_exact "from s3 alone" $NEXT
echo "PASS: moved $(stat_of migrated) copies off s1 across a reconnect"
