#!/bin/bash
# A pool of hundreds of donors (the server table sized at open,
# max-servers=; client/engine.h): 200 memservers on loopback, 16 MiB
# each, a 512 MiB disk of 1 MiB extents, replicas=2, connections=1.
#
#  1. The same pool over 10 of the memservers, then over all 200:
#     nbdkit's threads differ by exactly the TCP receive threads the
#     190 more connections add up to their bound (transport_tcp.c: 16
#     with a reader of their own, then 2 pollers for all the rest);
#     its sockets and memory are reported.
#  2. Over the 200, checked parallel I/O (test_parallel_io: every byte
#     against a shadow copy) while 10 memservers are killed -9, one
#     after another, each once the pool has recovered from the one
#     before: no error, no mismatch, and full redundancy again on the
#     190 left.
#  3. servers-file= growing from 10 servers to 200 while checked I/O
#     runs: every server joins, and new copies reach the ones added.
#  4. max-servers=12 and the file growing from 10 to 15: 2 join, the 3
#     others are refused, with a log line that names max-servers.
source "${srcdir:-.}/functions.sh"
requires nbdkit

N=200
KILLED=10
started=$(now_ms)
MS_SIZE=16M start_memservers s $N
echo "$N memservers listening after $(( $(now_ms) - started )) ms"
ALL=$SERVERS
addr () { local v=MS_ADDR_$1; echo "${!v}"; }
# The addresses of s1 .. sN, comma-separated.
first () { local i; for i in $(seq "$1"); do addr "s$i"; done | paste -sd,; }

threads () { awk '$1 == "Threads:" { print $2 }' "/proc/$NBDKIT_PID/status"; }
rss_kib () { awk '$1 == "VmRSS:" { print $2 }' "/proc/$NBDKIT_PID/status"; }
sockets () { find "/proc/$NBDKIT_PID/fd" -lname 'socket:*' | wc -l; }
STATS=$TMP/stats
POOL=(size=512M extent-size=1M replicas=2 connections=1 timeout-ms=1000
      heartbeat-ms=200 rejoin-grace-ms=500 stats-file="$STATS")

# open_pool N: nbdkit over s1..sN, every server up; sets T (threads,
# the same in two looks 0.5 s apart: no reconnect thread passing by),
# S (sockets) and R (RSS, KiB).
open_pool () {
  rm -f "$STATS"
  SERVERS=$(first "$1") start_nbdkit "${POOL[@]}"
  wait_until 60 "$1 servers up" stats_are servers_up -eq "$1"
  steady () {
    local a b
    a=$(threads); sleep 0.5; b=$(threads)
    [ "$a" = "$b" ] && T=$b
  }
  wait_until 10 "a steady thread count" steady
  S=$(sockets)
  R=$(rss_kib)
  echo "nbdkit over $1 servers: $T threads, $S sockets, RSS $((R / 1024)) MiB"
}

# 1. Threads, sockets, memory: 10 servers, then 200.
open_pool 10
t10=$T s10=$S r10=$R
stop_nbdkit
opened=$(now_ms)
open_pool $N
echo "  (opened in $(( $(now_ms) - opened )) ms)"
# TCP receive threads for C connections: a reader each for the first
# RAMPOOL_TCP_READERS (16), 2 pollers for all the others.
receivers () {
  local c=$1 r=${RAMPOOL_TCP_READERS:-16}
  echo $(( (c < r ? c : r) + (c > r ? 2 : 0) ))
}
want=$(( $(receivers $N) - $(receivers 10) ))
[ $((T - t10)) -eq "$want" ] ||
  fail "$N servers: $T threads, $t10 with 10: expected $want more (TCP receive threads only)"
[ $((S - s10)) -eq $((N - 10)) ] ||
  fail "$N servers: $S sockets, $s10 with 10: expected one per server more"
echo "1: $((T - t10)) more threads for $((N - 10)) more servers;" \
  "RSS +$(( (R - r10) / (N - 10) )) KiB per server"

# 2. Checked I/O while 10 memservers die, one after another.
checked_io_start "$TMP/io.log"
wait_until 60 "I/O under way" stats_are extents_mapped -gt 100
for k in $(seq "$KILLED"); do
  victim=s$(( k * N / KILLED - 7 ))
  kill_memserver "$victim" KILL
  wait_until 30 "$victim seen down" server_is "$victim" down
  wait_until 60 "full redundancy after $victim" \
    stats_are servers_up -eq $((N - k)) extents_degraded -eq 0 \
    extents_lost -eq 0 extents_unreachable -eq 0
  echo "  $victim killed; $(stat_of recovered) copies re-created so far"
done
mapped=$(stat_of extents_mapped)
checked_io_stop "$TMP/io.log"
tail -n 1 "$TMP/io.log"
wait_until 30 "full redundancy on $((N - KILLED)) servers" \
  stats_are servers_up -eq $((N - KILLED)) extents_degraded -eq 0 \
  extents_lost -eq 0 extents_unreachable -eq 0
echo "2: $KILLED of $N killed under I/O: no error; $mapped extents mapped," \
  "$(stat_of recovered) copies re-created; now $(threads) threads," \
  "$(sockets) sockets, RSS $(( $(rss_kib) / 1024 )) MiB"
stop_nbdkit
for k in $(seq "$KILLED"); do
  MS_SIZE=16M restart_memserver "s$(( k * N / KILLED - 7 ))"
done

# 3. servers-file= from 10 to 200 under checked I/O.  A 64 MiB disk:
#    its copies fit on the first 10 servers before any joins.
LIST=$TMP/servers
set_list () { first "$1" | tr , '\n' >"$LIST.new"; mv "$LIST.new" "$LIST"; }
set_list 10
rm -f "$STATS"
SERVERS= start_nbdkit servers-file="$LIST" size=64M replicas=2 connections=1 \
  timeout-ms=1000 heartbeat-ms=200 rejoin-grace-ms=500 stats-file="$STATS"
checked_io_start "$TMP/io2.log"
wait_until 60 "I/O under way (servers-file)" stats_are extents_mapped -gt 16
for n in 50 100 150 $N; do
  set_list "$n"
  wait_until 60 "$n servers up (servers-file)" \
    stats_are servers -eq "$n" servers_up -eq "$n"
done
grep -q "servers-file: server $(addr s$N) added" "$TMP/nbdkit.log" ||
  fail "no log line for the last server added"
added_used () {
  local i total=0
  for i in $(seq 11 10 $N); do
    total=$(( total + $(server_used "$(addr s$i)") ))
  done
  [ "$total" -gt 0 ]
}
wait_until 60 "copies on the servers added" added_used
checked_io_stop "$TMP/io2.log"
tail -n 1 "$TMP/io2.log"
stats_are extents_lost -eq 0 || fail "extents lost (servers-file)"
echo "3: servers-file grew from 10 to $N servers under I/O: no error;" \
  "$(threads) threads, $(sockets) sockets"
stop_nbdkit

# 4. A table of 12: the file grows to 15, 3 are refused.
set_list 10
rm -f "$STATS"
SERVERS= start_nbdkit servers-file="$LIST" max-servers=12 size=64M \
  replicas=2 connections=1 heartbeat-ms=200 stats-file="$STATS"
set_list 15
refused () {
  grep -q "servers-file: 3 server(s) not added ($(addr s13) and more):.*max-servers=12" \
    "$TMP/nbdkit.log"
}
wait_until 30 "servers beyond max-servers refused" refused
wait_until 30 "12 servers up" stats_are servers -eq 12 servers_up -eq 12
stop_nbdkit
echo "4: max-servers=12: 2 of 5 added, 3 refused and logged"
echo "PASS ($(( ($(now_ms) - started) / 1000 )) s)"
