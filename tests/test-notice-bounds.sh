#!/bin/bash
# Notices a server (or anything on the path) should never send: each
# malformed one makes the client drop that connection with a reason in
# its log -- never a misread, a crash or a hang -- and the server comes
# back at the next reconnect; nothing is lost.  A well-formed RECLAIM
# naming handles the client does not hold changes nothing.
#
# 3 memservers behind faultproxy.py, replicas=2, 16 MiB of known data.
# The proxy injects each notice into s1's connections between two of
# s1's frames (faultproxy.py `inject`).
source "${srcdir:-.}/functions.sh"
source "${srcdir:-.}/faultproxy.sh"
requires nbdkit
requires nbdcopy libnbd-bin

for i in 1 2 3; do start_memserver "s$i"; done
start_proxy s1 s2 s3
S1_PX=127.0.0.1:$PX_PORT_s1
STATS=$TMP/stats
start_nbdkit size=32M replicas=2 timeout-ms=1000 heartbeat-ms=200 \
  rejoin-grace-ms=600000 stats-file="$STATS"
head -c $((16 * MiB)) /dev/urandom >"$TMP/data"
nbdcopy "$TMP/data" "$NBD_URI"
truncate -s $((32 * MiB)) "$TMP/data"   # the rest of the disk reads as zeros
all_up () { stats_are servers_up -eq 3; }
wait_until 30 "3 servers up" all_up

# bad WHY ARGS...: inject the notice; s1 must go down with WHY, and come
# back.
bad () {
  local why=$1; shift
  local before backs
  before=$(grep -c "server $S1_PX down: .*$why" "$TMP/nbdkit.log" || true)
  backs=$(grep -c "server $S1_PX back after" "$TMP/nbdkit.log" || true)
  proxy s1 inject "$(notice "$@")" | cut -c1-40
  refused () {
    [ "$(grep -c "server $S1_PX down: .*$why" "$TMP/nbdkit.log" || true)" -gt "$before" ]
  }
  wait_until 20 "the client to refuse a notice ($why)" refused
  # Reconnected since (its log line), not only "up" in a stats file that
  # may have been written before it went down.
  back () {
    [ "$(grep -c "server $S1_PX back after" "$TMP/nbdkit.log" || true)" -gt "$backs" ] &&
      server_is s1 up && all_up
  }
  wait_until 30 "s1 back after the refused notice" back
  echo "refused: $why"
}

R=1 D=2
bad "notice count does not match" $R 1000 501 4008 0
bad "notice count does not match" $R 1000 2 15 0 1 2
bad "notice count does not match" $D 1000 1 8 0 7
bad "unknown notice kind" 7 1000 0 0 0
bad "unknown notice kind, or reserved set" $R 1000 0 0 1
bad "notice deadline out of range" $D 86400001 0 0 0

# Well-formed, naming nothing we hold: logged, no harm.
proxy s1 inject "$(notice $R 5000 2 16 0 12345 67890)" | cut -c1-40
asked () { grep -q "server $S1_PX asked for 2 extent(s) back" "$TMP/nbdkit.log"; }
wait_until 10 "the RECLAIM to be read" asked
nbdcopy "$NBD_URI" "$TMP/out"
cmp "$TMP/data" "$TMP/out" || fail "data differs after the notices"
stats_are extents_lost -eq 0 migrated -eq 0 ||
  fail "extents lost, or copies moved for handles we do not hold"
echo "PASS: 6 malformed notices refused with their reason, s1 back each time, data intact"
