#!/bin/bash
# The TCP receive side on shared poller threads (client/transport_tcp.c):
# 10 memservers, connections=2, replicas=2 (20 connections).  nbdkit's
# thread count with every connection on a thread of its own, with 4 of
# them (and 16 on the 2 pollers), and with none (all 20 on the pollers):
# the difference must be exactly the threads saved.  With 4 and with
# none, checked parallel I/O (every byte against a shadow copy) with a
# memserver killed -9 in the middle: zero errors, zero mismatches, full
# redundancy again, and nothing left on the memservers at the end.
source "${srcdir:-.}/functions.sh"
requires nbdkit

for i in $(seq 10); do MS_SIZE=48M start_memserver "s$i"; done

threads () { awk '$1 == "Threads:" { print $2 }' "/proc/$NBDKIT_PID/status"; }

# open_pool READERS: nbdkit with RAMPOOL_TCP_READERS=READERS; sets T,
# its thread count once the pool is open and every server up
# (spare-servers=4096: every server stays connected).
open_pool () {
  RAMPOOL_TCP_READERS=$1 start_nbdkit size=96M replicas=2 connections=2 \
    timeout-ms=1000 heartbeat-ms=200 rejoin-grace-ms=500 \
    stats-file="$TMP/stats.$1" spare-servers=4096
  STATS=$TMP/stats.$1
  all_up () { has "^servers_up 10$" "$STATS" 2>/dev/null; }
  wait_until 30 "every server up (readers $1)" all_up
  T=$(threads)
}

open_pool 1000
t_all=$T
stop_nbdkit
echo "nbdkit threads, every connection with its own reader: $t_all"

# checked_io READERS: open_pool, I/O with a memserver killed in it
checked_io () {
  local t victim=$2
  open_pool "$1"
  t=$T
  echo "nbdkit threads with RAMPOOL_TCP_READERS=$1: $t"
  [ "$t" -eq $(( t_all - $3 )) ] ||
    fail "RAMPOOL_TCP_READERS=$1: $t threads, expected $t_all - $3"
  rm -f "$TMP/stop"
  "$TESTS_BIN/test_parallel_io" --ops 2000000 --until-file "$TMP/stop" \
    "$NBD_URI" >"$TMP/io.$1.log" 2>&1 &
  local io=$!
  _pids+=("$io")
  # Readiness: I/O is under way once the pool holds data.
  io_started () { [ "$(pool_used)" -gt $((32 << 20)) ]; }
  wait_until 60 "I/O under way (readers $1)" io_started
  kill_memserver "$victim" KILL
  SERVERS=$(echo "$SERVERS" | tr , '\n' | grep -v "^$(eval echo "\$MS_ADDR_$victim")\$" | paste -sd,)
  wait_until 60 "full redundancy on 9 servers (readers $1)" sh -c \
    "grep -q '^extents_degraded 0\$' '$STATS' && grep -q '^servers_up 9\$' '$STATS'"
  touch "$TMP/stop"
  wait "$io" || { cat "$TMP/io.$1.log"; fail "I/O saw errors or mismatches (readers $1)"; }
  tail -n 1 "$TMP/io.$1.log"
  has PASS "$TMP/io.$1.log" || fail "no PASS from the I/O checker (readers $1)"
  has '^extents_lost 0$' "$STATS" || fail "extents lost (readers $1)"
  stop_nbdkit
  [ "$(pool_used)" = 0 ] || fail "readers $1: $(pool_used) bytes left on the memservers"
}

# 4 readers + 2 pollers for 20 connections: 14 fewer threads.
checked_io 4 s3 14
# The killed memserver back (a new incarnation) for the next round.
MS_SIZE=48M restart_memserver s3
# No readers, 2 pollers: 18 fewer.
checked_io 0 s7 18
echo "PASS"
