#!/bin/bash
# rampool-nbd holds the memserver requests of one burst of NBD requests
# and sends them together, one sendmsg per connection
# (rp_aio_batch_begin).  A held request is not in flight, so the reader
# must send what it holds before it waits for anything; each sequence
# below makes it wait at one such point, every byte checked against a
# shadow copy (test_parallel_io):
#  1. inflight=1 connections=1, 64 requests in flight: the single slot
#     of a connection is taken by a held request, so the next submit to
#     it must send before it waits for the slot (else no reply ever
#     frees it and every wait ends in timeout-ms);
#  2. 200 requests in flight, more than rampool-nbd's 128 slots per NBD
#     client: the reader waits for a slot of its own, after sending;
#     bursts of more than 32 frames send as the batch fills;
#  3. the load of 2 while s3 is stopped past timeout-ms and comes back
#     with the same session (recovery repairs the copies that missed a
#     write while held writes are on their way: it must wait until they
#     are sent, or it overtakes them and counts a copy without them);
#     then while s2 is killed -9 (the held frames of its dead
#     connections are dropped and their requests settled) and s3 is
#     stopped: no error, no mismatch, no extent lost.
# In 1 and 2 nothing may time out: every server stays up throughout and
# the log has no timeout.
source "${srcdir:-.}/functions.sh"
requires python3
RP_FRONTEND=nbd
STATS=$TMP/stats

no_timeouts () {
  if tail -n "+$((LOG0 + 1))" "$TMP/nbdkit.log" | grep -E "timed out|down:"; then
    fail "$1: a request waited for its timeout (a held request was never sent)"
  fi
  [ "$(stat_of servers_up)" = 3 ] || { cat "$STATS"; fail "$1: a server went down"; }
}

checked_io () {  # checked_io NAME INFLIGHT OPS
  "$TESTS_BIN/test_parallel_io" --seed "$RANDOM" --inflight "$2" --ops "$3" \
    "$NBD_URI" >"$TMP/io-$1.log" 2>&1 ||
    { cat "$TMP/io-$1.log"; fail "$1: I/O errors or mismatches"; }
  grep -q PASS "$TMP/io-$1.log" || { cat "$TMP/io-$1.log"; fail "$1: no PASS"; }
}

for s in s1 s2 s3; do start_memserver $s; done

# fresh_disk KEY=VALUE...: rampool-nbd on a new disk (all zeros, as
# test_parallel_io expects), its stats file written.
fresh_disk () {
  [ -n "${NBDKIT_PID:-}" ] && stop_nbdkit
  rm -f "$STATS"
  LOG0=0
  [ -f "$TMP/nbdkit.log" ] && LOG0=$(wc -l <"$TMP/nbdkit.log")
  start_nbdkit size=64M replicas=2 timeout-ms=2000 heartbeat-ms=200 \
    rejoin-grace-ms=500 stats-file="$STATS" "$@"
  wait_for_file "$STATS" "the stats file"
}

# 1. One slot per connection.
fresh_disk inflight=1 connections=1
a0=$(stat_of async_requests)
checked_io one-slot 64 20000
a1=$(stat_of async_requests)
[ "$a1" -gt "$a0" ] || fail "1: no request took the asynchronous path"
no_timeouts 1

# 2. More requests than rampool-nbd's slots.
fresh_disk
checked_io many 200 40000
no_timeouts 2

# 3. The same load on a fresh disk while s3 stalls past timeout-ms and
#    comes back with the same session (its copies that missed a write
#    are repaired from the others while held writes are on their way:
#    recovery must not overtake one), then again while s2 is killed -9
#    and s3 stalls.
stall_sequence () {  # stall_sequence NAME KILL_S2(yes|no)
  local up
  fresh_disk
  rm -f "$TMP/stop"
  "$TESTS_BIN/test_parallel_io" --inflight 200 --ops 4000000 \
    --until-file "$TMP/stop" "$NBD_URI" >"$TMP/io-$1.log" 2>&1 &
  io=$!
  _pids+=("$io")
  wait_until 20 "I/O under way ($1)" stats_are writes -gt 2000
  up=2
  if [ "$2" = yes ]; then
    kill_memserver s2 KILL
    wait_until 30 "s2 seen down ($1)" stats_are servers_up -eq 2
    up=1
  fi
  kill -STOP "$MS_PID_s3"
  wait_until 30 "s3 seen down ($1)" stats_are servers_up -eq "$up"
  kill -CONT "$MS_PID_s3"
  if [ "$2" = yes ]; then restart_memserver s2; fi
  wait_until 60 "back to 3 servers, nothing degraded ($1)" \
    stats_are servers_up -eq 3 extents_degraded -eq 0
  touch "$TMP/stop"
  wait "$io" || { cat "$TMP/io-$1.log"; fail "$1: I/O errors or mismatches"; }
  grep -q PASS "$TMP/io-$1.log" || { cat "$TMP/io-$1.log"; fail "$1: no PASS"; }
  [ "$(stat_of extents_lost)" = 0 ] || fail "$1: extents lost"
  echo "$1: $(tail -n 1 "$TMP/io-$1.log")"
}
stall_sequence stall no
stall_sequence kill-stall yes
echo PASS
