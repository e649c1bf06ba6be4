#!/bin/bash
# Lanes (lanes=, client/donor.h): direct connections for reads, each
# received by the one thread whose read it carries (conn.c, pump).
#
#  1. Sockets: over 3 memservers with the defaults (connections=2,
#     lanes=8) nbdkit holds exactly 3 x 8 sockets more than with
#     lanes=0; lanes=32 over 10 memservers gets 256 / 10 = 25 lanes
#     each (the pool-wide budget, RP_LANES_TOTAL), 250 sockets more.
#  2. Data: 32 MiB of random data written, then read back whole by
#     parallel reads (nbdcopy): the same bytes, and the reads went on
#     lanes (lane_reads).
#  3. A sequence, under checked parallel I/O (every byte against a
#     shadow copy): s1 is stopped (SIGSTOP), so reads in flight on its
#     lanes time out and fail over (read_failovers); s1 resumes and
#     rejoins, its lanes reconnected at the new generation, and reads
#     go on them again; once its stale copies are repaired, s2 is
#     killed -9.  No error, no mismatch,
#     and full redundancy again on s1 and s3.
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires nbdcopy libnbd-bin

STATS=$TMP/stats
sockets () { find "/proc/$NBDKIT_PID/fd" -lname 'socket:*' | wc -l; }

# count_sockets UP ARGS...: nbdkit over $SERVERS with ARGS, once UP
# servers are up: its sockets in SOCK (the same in two looks 0.5 s
# apart); then stopped.
count_sockets () {
  local up=$1; shift
  rm -f "$STATS"
  start_nbdkit size=64M replicas=2 heartbeat-ms=200 stats-file="$STATS" "$@"
  wait_until 30 "$up servers up" stats_are servers_up -eq "$up"
  wait_until 10 "a steady socket count" steady SOCK sockets
  stop_nbdkit
}

# 1. Sockets.
start_memservers s 3
S3=$SERVERS
SERVERS=$S3 count_sockets 3 lanes=0
base=$SOCK
SERVERS=$S3 count_sockets 3
[ $((SOCK - base)) -eq 24 ] ||
  fail "3 servers, lanes=8: $SOCK sockets, $base with lanes=0: expected 24 more"
start_memservers b 7
S10=$SERVERS
SERVERS=$S10 count_sockets 10 lanes=0 connections=1
base10=$SOCK
SERVERS=$S10 count_sockets 10 lanes=32 connections=1
[ $((SOCK - base10)) -eq 250 ] ||
  fail "10 servers, lanes=32: $SOCK sockets, $base10 with lanes=0: expected 250 more (25 each)"
echo "1: lanes=8 over 3 servers: 24 sockets more; lanes=32 over 10: 25 each"

# 2. Data, read on lanes.
rm -f "$STATS"
SERVERS=$S3
start_nbdkit size=64M replicas=2 timeout-ms=1000 heartbeat-ms=200 \
  rejoin-grace-ms=500 stats-file="$STATS"
wait_until 30 "3 servers up" stats_are servers_up -eq 3
head -c $((32 * MiB)) /dev/urandom >"$TMP/data"
nbdcopy "$TMP/data" "$NBD_URI"
nbdcopy "$NBD_URI" "$TMP/out"
cmp "$TMP/data" <(head -c $((32 * MiB)) "$TMP/out") ||
  fail "the data read back on lanes differs"
wait_until 30 "reads counted on lanes" stats_are lane_reads -gt 0
echo "2: 32 MiB read back exactly; reads $(stat_of reads), on lanes $(stat_of lane_reads)"

# 3. Stop s1 under I/O, let it rejoin, then kill s2.  A fresh disk:
# the I/O checker starts from zeros.
stop_nbdkit
rm -f "$STATS"
start_nbdkit size=64M replicas=2 timeout-ms=1000 heartbeat-ms=200 \
  rejoin-grace-ms=500 stats-file="$STATS"
wait_until 30 "3 servers up" stats_are servers_up -eq 3
checked_io_start "$TMP/io.log"
wait_until 60 "I/O under way" stats_are extents_mapped -gt 40
kill_memserver s1 STOP
wait_until 60 "s1 seen down" server_is s1 down
wait_until 60 "reads failed over from s1" stats_are read_failovers -gt 0
kill_memserver s1 CONT
wait_until 60 "s1 back" server_is s1 up
before=$(stat_of lane_reads)
wait_until 60 "reads on lanes after s1's rejoin" stats_are lane_reads -gt "$before"
# s1's copies that missed writes while it was stopped are repaired
# before the next failure (else s2 held their only good copy).
wait_until 120 "full redundancy after s1's rejoin" \
  stats_are extents_degraded -eq 0 extents_lost -eq 0 extents_unreachable -eq 0
kill_memserver s2 KILL
wait_until 60 "s2 seen down" server_is s2 down
wait_until 120 "full redundancy on s1 and s3" \
  stats_are extents_degraded -eq 0 extents_lost -eq 0 extents_unreachable -eq 0
checked_io_stop "$TMP/io.log"
grep -q "server $MS_ADDR_s1 back after" "$TMP/nbdkit.log" ||
  fail "s1's rejoin not logged"
echo "3: $(tail -n 1 "$TMP/io.log")"
echo "3: read_failovers $(stat_of read_failovers), recovered $(stat_of recovered), lane_reads $(stat_of lane_reads)"
echo "PASS"
