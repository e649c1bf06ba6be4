#!/bin/bash
# Lanes (lanes=, client/donor.h): direct connections for reads and
# small writes, each received by the one thread whose request it
# carries (conn.c, pump).
#
#  1. Sockets: over 3 memservers with the defaults (connections=2,
#     lanes=8) nbdkit holds exactly 3 x 8 sockets more than with
#     lanes=0; lanes=32 over 10 memservers gets 256 / 10 = 25 lanes
#     each (the pool-wide budget, RP_LANES_TOTAL), 250 sockets more.
#  2. Data: 32 MiB of random data written, then read back whole by
#     parallel reads (nbdcopy): the same bytes, and the reads went on
#     lanes (lane_reads).
#  3. A sequence, the data checked after each step: s1 is stopped
#     (SIGSTOP) under a whole read, whose reads on its lanes time out
#     and fail over (read_failovers); s1 resumes and rejoins, its lanes
#     reconnected at the new generation; once full redundancy is back,
#     s2 is killed -9 and its copies re-created on s1 and s3; then s3
#     is stopped, so that every read is s1's: on its new lanes
#     (lane_reads grows), the data exact.
#  4. Writes on lanes, a sequence on 3 fresh memservers, the data
#     checked after each step: 4 KiB writes one at a time go on lanes
#     (lane_writes); t1 is stopped under them, so it goes down (a write
#     on one of its lanes or the heartbeat times out) and the writes
#     complete on the other copies, t1's marked stale; t1 resumes and
#     its stale copies are repaired; then t2 is killed -9 and
#     re-replicated, and t3 stopped: every read is t1's, and shows
#     every write.
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires nbdcopy libnbd-bin

STATS=$TMP/stats
sockets () { find "/proc/$NBDKIT_PID/fd" -lname 'socket:*' | wc -l; }

# count_sockets UP ARGS...: nbdkit over $SERVERS with ARGS, once UP
# servers are up: its sockets in SOCK (the same in two looks 0.5 s
# apart); then stopped.  spare-servers=64: no idle server is parked
# (disconnected) meanwhile.
count_sockets () {
  local up=$1; shift
  rm -f "$STATS"
  start_nbdkit size=64M replicas=2 heartbeat-ms=200 spare-servers=64 \
    stats-file="$STATS" "$@"
  wait_until 30 "$up servers up" stats_are servers_up -eq "$up"
  wait_until 10 "a steady socket count" steady SOCK sockets
  stop_nbdkit
}

# count_sockets_after UP ARGS...: as count_sockets, but first the
# servers-file $LIST (given in ARGS) is rewritten to name all of
# $S10 once 3 servers are up.
count_sockets_after () {
  local up=$1; shift
  rm -f "$STATS"
  start_nbdkit size=64M replicas=2 heartbeat-ms=200 spare-servers=64 \
    stats-file="$STATS" "$@"
  wait_until 30 "3 servers up" stats_are servers_up -eq 3
  printf '%s\n' ${S10//,/ } >"$LIST.new"
  mv "$LIST.new" "$LIST"
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
# The cap holds as servers join: a servers-file of the first 3 (32
# lanes each), then of all 10 (a share of 25 each, and what is left of
# 256 for the last): 256 lanes in all.
LIST=$TMP/servers
printf '%s\n' ${S3//,/ } >"$LIST"
SERVERS= count_sockets_after 10 servers-file="$LIST" lanes=32 connections=1
[ $((SOCK - base10)) -eq 256 ] ||
  fail "servers-file from 3 to 10 servers, lanes=32: $SOCK sockets, $base10 with lanes=0: expected 256 more"
echo "1: lanes=8 over 3 servers: 24 sockets more; lanes=32 over 10: 25 each;" \
  "joining from a servers-file: 256 in all"

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

# 3. A sequence on a fresh disk of known data.
stop_nbdkit
rm -f "$STATS"
start_nbdkit size=64M replicas=2 timeout-ms=1000 heartbeat-ms=200 \
  rejoin-grace-ms=500 stats-file="$STATS"
wait_until 30 "3 servers up" stats_are servers_up -eq 3
nbdcopy "$TMP/data" "$NBD_URI"
healthy () {
  stats_are extents_degraded -eq 0 extents_lost -eq 0 extents_unreachable -eq 0
}
# a. s1 stopped: a whole read at once, some of it on s1's lanes, which
#    time out; those reads fail over.
kill_memserver s1 STOP
nbdcopy "$NBD_URI" "$TMP/out" || fail "reading with s1 stopped failed"
cmp "$TMP/data" <(head -c $((32 * MiB)) "$TMP/out") ||
  fail "data read with s1 stopped differs"
wait_until 30 "reads failed over from s1" stats_are read_failovers -gt 0
# b. s1 resumes and rejoins (lanes reconnected at the new generation);
#    its copies that missed nothing are kept, the rest repaired.
kill_memserver s1 CONT
wait_until 60 "s1 back" server_is s1 up
grep -q "server $MS_ADDR_s1 back after" "$TMP/nbdkit.log" ||
  fail "s1's rejoin not logged"
wait_until 120 "full redundancy after s1's rejoin" healthy
# c. s2 killed: its copies re-created, so every extent has its two
#    copies on s1 and s3.
kill_memserver s2 KILL
wait_until 60 "s2 seen down" server_is s2 down
wait_until 120 "full redundancy on s1 and s3" healthy
# d. s3 stopped: every read is s1's, on its new lanes (or failing over
#    from s3 to s1).
kill_memserver s3 STOP
before=$(stat_of lane_reads)
nbdcopy "$NBD_URI" "$TMP/out" || fail "reading from s1 alone failed"
kill_memserver s3 CONT
cmp "$TMP/data" <(head -c $((32 * MiB)) "$TMP/out") ||
  fail "data read from s1 alone differs"
wait_until 30 "reads on lanes after s1's rejoin" \
  stats_are lane_reads -gt "$before"
echo "3: read_failovers $(stat_of read_failovers), recovered" \
  "$(stat_of recovered), lane_reads $(stat_of lane_reads): data exact"

# 4. Writes on lanes.
stop_nbdkit
start_memservers t 3
SERVERS=$MS_ADDR_t1,$MS_ADDR_t2,$MS_ADDR_t3
rm -f "$STATS"
start_nbdkit size=16M replicas=2 timeout-ms=1000 heartbeat-ms=200 \
  rejoin-grace-ms=500 stats-file="$STATS"
wait_until 30 "3 servers up" stats_are servers_up -eq 3
head -c $((16 * MiB)) /dev/urandom >"$TMP/disk"
nbdcopy "$TMP/disk" "$NBD_URI"
# small_writes FILE: FILE over the disk, 4 KiB at a time, one write in
# flight; the expected disk updated to match.
small_writes () {
  nbdcopy --connections=1 --request-size=4096 --requests=1 "$1" "$NBD_URI" ||
    fail "small writes failed"
  cp "$1" "$TMP/disk"
}
check_disk () {
  nbdcopy "$NBD_URI" "$TMP/out" || fail "reading back ($1) failed"
  cmp "$TMP/disk" "$TMP/out" || fail "the disk differs $1"
}
# a. Writes one at a time: on lanes.
head -c $((16 * MiB)) /dev/urandom >"$TMP/w1"
small_writes "$TMP/w1"
wait_until 30 "writes counted on lanes" stats_are lane_writes -gt 2048
check_disk "after writes on lanes"
# b. t1 stopped under them: down on a timeout, its copies left stale.
kill_memserver t1 STOP
head -c $((16 * MiB)) /dev/urandom >"$TMP/w2"
small_writes "$TMP/w2"
wait_until 30 "t1 seen down" server_is t1 down
grep -q "server $MS_ADDR_t1 down: .*timed out" "$TMP/nbdkit.log" ||
  { grep "down:" "$TMP/nbdkit.log"; fail "t1 did not go down on a timeout"; }
check_disk "with t1 stopped"
# c. t1 back: what it missed is repaired.
kill_memserver t1 CONT
wait_until 60 "t1 back" server_is t1 up
wait_until 120 "full redundancy after t1's return" healthy
# d. t2 killed, its copies re-created; t3 stopped: every read is t1's.
kill_memserver t2 KILL
wait_until 60 "t2 seen down" server_is t2 down
wait_until 120 "full redundancy on t1 and t3" healthy
kill_memserver t3 STOP
nbdcopy "$NBD_URI" "$TMP/out" || fail "reading from t1 alone failed"
kill_memserver t3 CONT
cmp "$TMP/disk" "$TMP/out" || fail "the disk read from t1 alone differs"
echo "4: lane_writes $(stat_of lane_writes) of $(stat_of writes) writes," \
  "recovered $(stat_of recovered): data exact"
echo "PASS"
