#!/bin/bash
# Failures in a row: s2 frozen for good (SIGSTOP: a partition, its
# copies re-created elsewhere once rejoin-grace-ms has passed), then s1
# stalls again and again past timeout-ms, in rounds 2 and 4 together
# with s3, so that for a while no server at all is up -- while 32
# random reads, writes, zeroes and trims are in flight (test_parallel_io:
# every byte checked against a shadow copy; its trims make later writes
# first writes, which must place new copies).  No request may fail, no
# byte differ, no extent be lost; afterwards the pool is healthy on s1
# and s3, and with s2 thawed, on all three.  Then a loss and a stall:
# s1 killed -9 and restarted empty, and s2 stalled at once while
# recovery runs; again no error, nothing lost, healthy on all three.
#
# Found: a first write while no server was up failed at once with
# ENOSPC ("no server could take it: the pool is full or down") where
# every other request waits the outage out (test-outage.sh).
source "${srcdir:-.}/functions.sh"
requires nbdkit

for i in 1 2 3; do start_memserver "s$i"; done
STATS=$TMP/stats
start_nbdkit size=128M replicas=2 timeout-ms=1000 heartbeat-ms=200 \
  rejoin-grace-ms=500 stats-file="$STATS"
checked_io_start "$TMP/io.log" --reopen
wait_until 20 "I/O to start (64 extents mapped)" stats_are extents_mapped -ge 64

kill_memserver s2 STOP
wait_until 10 "s2 seen down" server_is s2 down
for round in 1 2 3 4; do
  stalled=(s1)
  [ $((round % 2)) = 0 ] && stalled=(s1 s3)
  for s in "${stalled[@]}"; do kill_memserver "$s" STOP; done
  for s in "${stalled[@]}"; do wait_until 10 "$s seen down (round $round)" server_is "$s" down; done
  for s in "${stalled[@]}"; do kill_memserver "$s" CONT; done
  for s in "${stalled[@]}"; do wait_until 30 "$s up again (round $round)" server_is "$s" up; done
  checked_io_alive "$TMP/io.log"
  echo "round $round: ${stalled[*]} stalled and back;" \
    "$(grep -E '^(extents_degraded|extents_unreachable|extents_lost|outage_waits) ' "$STATS" | paste -sd' ')"
  stats_are extents_lost -eq 0 || fail "round $round: extents lost"
done
wait_until 60 "health on s1 and s3" \
  stats_are servers_up -eq 2 extents_degraded -eq 0 extents_lost -eq 0
checked_io_stop "$TMP/io.log"
tail -n 1 "$TMP/io.log"

kill_memserver s2 CONT
wait_until 30 "s2 up again" server_is s2 up
wait_until 60 "health on all three" \
  stats_are servers_up -eq 3 extents_degraded -eq 0 extents_lost -eq 0

# A loss, then a stall: s1 killed -9 and restarted empty (its copies
# gone), and at once s2 stalled past timeout-ms while recovery re-creates
# s1's copies: extents whose other copy is on s2 are out of reach until
# it resumes, and must wait for it, not be lost.  A new nbdkit: the
# checker starts from a disk of zeros.
stop_nbdkit
rm -f "$STATS"
start_nbdkit size=128M replicas=2 timeout-ms=1000 heartbeat-ms=200 \
  rejoin-grace-ms=500 stats-file="$STATS"
checked_io_start "$TMP/io2.log" --reopen
wait_until 20 "I/O to start again (64 extents mapped)" stats_are extents_mapped -ge 64
kill_memserver s1 KILL
kill_memserver s2 STOP
restart_memserver s1
wait_until 10 "s2 seen down" server_is s2 down
stats_are extents_lost -eq 0 || fail "extents lost with s1 killed and s2 stalled"
kill_memserver s2 CONT
wait_until 60 "health on all three after the kill and the stall" \
  stats_are servers_up -eq 3 extents_degraded -eq 0 extents_lost -eq 0
checked_io_stop "$TMP/io2.log"
tail -n 1 "$TMP/io2.log"
echo "PASS"
