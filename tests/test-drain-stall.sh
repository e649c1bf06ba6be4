#!/bin/bash
# A drain, then a stall: s1 is told to drain (SIGUSR2) and, once the
# first copies have moved off it, s2 -- a target of those moves and the
# holder of other copies -- stalls past timeout-ms.  The drain must go
# on onto s3 and s4 without it (a copy leaves s1 only once its
# replacement is filled) until s1 stops by itself drained (status 0,
# nothing dropped), every byte must read back during the stall, and
# once s2 is back the pool must be healthy on s2, s3 and s4 -- and still
# read back exact with s3 killed -9.  (The drain's end is what is waited
# for, not a count of moves after the stall was seen: on a slow machine
# the drain can end while the client is still timing s2 out.)
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires nbdcopy libnbd-bin

STATS=$TMP/stats
NEXT=48                    # extents of 1 MiB
head -c $((NEXT * MiB)) /dev/urandom >"$TMP/data"

for s in s1 s2 s3 s4; do start_memserver $s; done
# recovery-rate=1M: the drain takes seconds, so the stall falls inside.
start_nbdkit size=${NEXT}M replicas=2 timeout-ms=1000 heartbeat-ms=1000 \
  rejoin-grace-ms=500 recovery-rate=1M stats-file="$STATS"
nbdcopy "$TMP/data" "$NBD_URI"
wait_until 30 "two copies of every extent" \
  stats_are extents_healthy -eq $NEXT servers_up -eq 4

kill -USR2 "$MS_PID_s1"
wait_until 30 "the first copies to move off s1" stats_are migrated -gt 0
kill_memserver s2 STOP
wait_until 10 "s2 seen down" server_is s2 down
m0=$(stat_of migrated)
wait_drained s1
read_exact "s1 drained, s2 stalled" $NEXT
server_is s2 down || fail "s2 came back while stalled"
kill_memserver s2 CONT

wait_until 60 "every extent with two copies on s2, s3 and s4" \
  stats_are servers_up -eq 3 extents_healthy -eq $NEXT extents_degraded -eq 0
read_exact "after the drain" $NEXT
kill_memserver s3 KILL
wait_until 10 "s3 seen down" server_is s3 down
read_exact "without s3" $NEXT
echo "PASS: $(stat_of migrated) copies moved off s1 ($m0 of them before s2 was seen down)"
