#!/bin/bash
# A pool of hundreds of donors (the server table sized at open,
# max-servers=; client/engine.h): 200 memservers on loopback, 16 MiB
# each, a 512 MiB disk of 1 MiB extents, replicas=2, connections=1,
# lanes=0.
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
#  5. Connections on demand (spare-servers=): over the 200, idle
#     servers are disconnected and come back when copies need them;
#     three in use killed under checked I/O; the sockets and threads
#     follow the servers in use.
source "${srcdir:-.}/functions.sh"
requires nbdkit

# RP_MANY_SERVERS: fewer donors (scripts/test's sanitizer pass runs 100:
# the same code, half the processes to start under AddressSanitizer).
N=${RP_MANY_SERVERS:-200}
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
# spare-servers=4096: parts 1-4 keep every server connected (part 5 is
# connections on demand).  lanes=0: one socket per server, so that the
# counts below are the servers' (test-lanes.sh counts lanes).
POOL=(size=512M extent-size=1M replicas=2 connections=1 lanes=0
      timeout-ms=1000 heartbeat-ms=200 rejoin-grace-ms=500 stats-file="$STATS"
      spare-servers=4096)

# open_pool N: nbdkit over s1..sN, every server up; sets T (threads,
# the same in two looks 0.5 s apart: no reconnect thread passing by),
# S (sockets) and R (RSS, KiB).
open_pool () {
  rm -f "$STATS"
  SERVERS=$(first "$1") start_nbdkit "${POOL[@]}"
  wait_until 60 "$1 servers up" stats_are servers_up -eq "$1"
  wait_until 10 "a steady thread count" steady T threads
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
  timeout-ms=1000 heartbeat-ms=200 rejoin-grace-ms=500 stats-file="$STATS" \
  spare-servers=4096
checked_io_start "$TMP/io2.log"
wait_until 60 "I/O under way (servers-file)" stats_are extents_mapped -gt 16
for n in $((N / 4)) $((N / 2)) $((3 * N / 4)) $N; do
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
  replicas=2 connections=1 heartbeat-ms=200 stats-file="$STATS" \
  spare-servers=4096
set_list 15
refused () {
  grep -q "servers-file: 3 server(s) not added ($(addr s13) and more):.*max-servers=12" \
    "$TMP/nbdkit.log"
}
wait_until 30 "servers beyond max-servers refused" refused
wait_until 30 "12 servers up" stats_are servers -eq 12 servers_up -eq 12
stop_nbdkit
echo "4: max-servers=12: 2 of 5 added, 3 refused and logged"

# 5. Connections on demand (spare-servers=8, the default): over the
#    200, a 16 MiB disk (at most 32 copies, so at most 32 servers in
#    use).  Idle servers beyond the 8 spares are parked (disconnected);
#    under checked I/O, with 3 memservers in use killed -9 one after the
#    other, copies go to spares, parked servers come back as spares are
#    used up, and the pool gets back to 2 copies of everything with no
#    error.  Then nbdkit has a socket per connected server only, at most
#    32 + 8, and no more threads than part 1's 10-server pool but for
#    the TCP receive threads of the sockets it has.
rm -f "$STATS"
SERVERS=$ALL start_nbdkit size=16M extent-size=1M replicas=2 connections=1 \
  lanes=0 timeout-ms=1000 heartbeat-ms=200 rejoin-grace-ms=500 \
  stats-file="$STATS"
wait_until 60 "idle servers parked" stats_are servers_parked -ge $((N - 8))
echo "5: $(stat_of servers_parked) of $N parked before any write," \
  "$(stat_of servers_up) connected"
checked_io_start "$TMP/io5.log"
wait_until 60 "I/O under way (on demand)" stats_are extents_mapped -ge 8
for k in 1 2 3; do
  # A server that holds copies now: connected, and not a killed one.
  victim=
  for i in $(seq "$N"); do
    server_is "s$i" up && [ "$(server_used "$(addr "s$i")")" -gt 0 ] &&
      { victim=s$i; break; }
  done
  [ -n "$victim" ] || fail "no connected server holds copies"
  kill_memserver "$victim" KILL
  wait_until 30 "$victim seen down" server_is "$victim" down
  wait_until 60 "full redundancy after $victim (on demand)" \
    stats_are extents_degraded -eq 0 extents_lost -eq 0 \
    extents_unreachable -eq 0
  echo "  $victim killed; $(stat_of recovered) copies re-created," \
    "$(stat_of servers_up) connected, $(stat_of servers_parked) parked"
done
checked_io_stop "$TMP/io5.log"
tail -n 1 "$TMP/io5.log"
# nbdkit's own sockets (its listening one): part 1's count over 10
# servers, less one each.  A socket per server up, and at most one per
# server down (being reconnected: the killed ones, until parked).
own=$(( s10 - 10 ))
down5 () { grep -c "^server .* down epoch" "$STATS" || true; }
steady5 () {
  local a b up
  stats_are extents_degraded -eq 0 extents_lost -eq 0 || return 1
  a=$(sockets); sleep 0.5; b=$(sockets); up=$(stat_of servers_up)
  [ "$a" = "$b" ] && [ "$b" -ge $(( up + own )) ] &&
    [ "$b" -le $(( up + own + $(down5) )) ]
}
wait_until 30 "a socket per server up (or being reconnected)" steady5
S5=$(( $(sockets) - own )) T5=$(threads)
[ "$(stat_of servers_up)" -le 40 ] ||
  fail "on demand: $(stat_of servers_up) servers up, more than 32 in use + 8 spares"
[ "$S5" -le 43 ] || fail "on demand: $S5 server sockets, more than 40 + 3 killed"
# At most part 1's base and the receive threads S5 sockets can have
# (fewer when connections that kept a thread of their own were parked
# and the newer ones share the pollers).
want=$(( t10 - $(receivers 10) + $(receivers "$S5") ))
[ "$T5" -le "$want" ] ||
  fail "on demand: $T5 threads with $S5 sockets, more than $want (part 1's base + TCP receivers)"
echo "5: on demand over $N servers: $S5 connected, $(stat_of servers_parked)" \
  "parked, $T5 threads, RSS $(( $(rss_kib) / 1024 )) MiB; no error"
stop_nbdkit
echo "PASS ($(( ($(now_ms) - started) / 1000 )) s)"
