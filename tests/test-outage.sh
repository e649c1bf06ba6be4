#!/bin/bash
# Every memserver stalls at once (SIGSTOP, far past timeout-ms, as an
# overloaded donor host would): requests whose every copy is on a
# stalled server wait for one to come back (outage-wait-ms) instead of
# failing with EIO, then finish with the right data after SIGCONT.
# Once for reads, once for writes, once for first writes (extents never
# written: with no server up to place them on, a first write waits out
# the outage too, where it used to fail at once with ENOSPC, "the pool is
# full or down"); then nothing is degraded, nothing lost.  (With the servers gone for good, test-lost.sh: EIO once
# outage-wait-ms has passed.)
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires nbdcopy libnbd-bin

for i in 1 2 3; do start_memserver "s$i"; done
STATS=$TMP/stats
start_nbdkit size=80M replicas=2 timeout-ms=1000 heartbeat-ms=200 \
  rejoin-grace-ms=600000 outage-wait-ms=120000 stats-file="$STATS"

head -c $((64 * MiB)) /dev/urandom >"$TMP/data"
nbdcopy "$TMP/data" "$NBD_URI"
truncate -s $((80 * MiB)) "$TMP/data"  # extents 64-79: never written

# Stall every server, run CMD in the background, wait (bounded) until
# the plugin counts a request waiting out the outage while CMD is still
# blocked, then resume the servers and return CMD's exit status.
during_stall () {
  local before pid waited=
  wait_for_file "$STATS" "stats file"
  before=$(stat_of outage_waits)
  for i in 1 2 3; do kill_memserver "s$i" STOP; done
  "$@" &
  pid=$!
  for _ in $(seq 600); do
    [ "$(stat_of outage_waits)" -gt "$before" ] 2>/dev/null && { waited=1; break; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null || { for i in 1 2 3; do kill_memserver "s$i" CONT; done
                                  fail "$1 finished while every server was stopped"; }
  [ -n "$waited" ] || fail "no request waited for the stopped servers (outage_waits $(stat_of outage_waits))"
  # the same stats file: unreachable for now, not lost
  stats_are extents_unreachable -gt 0 extents_lost -eq 0 ||
    { cat "$STATS"; fail "during the stall: extents_unreachable $(stat_of extents_unreachable), extents_lost $(stat_of extents_lost)"; }
  for i in 1 2 3; do kill_memserver "s$i" CONT; done
  wait "$pid"
}

# Reads.
during_stall "$TESTS_BIN/nbd_blocks" "$NBD_URI" $MiB "$TMP/data" >"$TMP/blocks" ||
  fail "nbd_blocks failed"
cat "$TMP/blocks"
read -r _ ok _ eio _ mismatch _ error <"$TMP/blocks"
[ "$ok" -eq 80 ] || fail "read through the stall: $(cat "$TMP/blocks")"

# write_through_stall FIRST COUNT WHAT: new data for blocks FIRST..
# FIRST+COUNT-1 written while every server is stopped; then the whole
# disk must read back as expected.
write_through_stall () {
  head -c $(($2 * MiB)) /dev/urandom >"$TMP/patch"
  dd if="$TMP/patch" of="$TMP/data" bs=1M seek="$1" conv=notrunc status=none
  during_stall "$TESTS_BIN/nbd_blocks" "$NBD_URI" $MiB "$TMP/data" write "$1" "$2" ||
    fail "$3 through the stall failed"
  nbdcopy "$NBD_URI" "$TMP/out"
  cmp "$TMP/data" "$TMP/out" || fail "data differs after $3 that waited out the stall"
}
# Writes: blocks 8-23 rewritten.
write_through_stall 8 16 "the write"
# First writes: blocks 64-71, never written before.
write_through_stall 64 8 "a first write"

grep -q "every copy is on a server that is down; requests wait" "$TMP/nbdkit.log" ||
  fail "the wait was not logged"
grep -q "no good replica left\|every replica is lost" "$TMP/nbdkit.log" &&
  fail "an extent was declared lost during a stall"
# Healthy again: all servers rejoined with their copies.
wait_until --polls 300 "health after the stall" \
  stats_are servers_up -eq 3 extents_degraded -eq 0
[ "$(stat_of extents_lost)" = 0 ] || fail "extents lost: $(stat_of extents_lost)"
echo "outage_waits $(stat_of outage_waits)"
echo "PASS"
