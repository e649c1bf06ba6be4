#!/bin/bash
# Prometheus metrics, both sides, each exposition checked by Prometheus'
# own `promtool check metrics` and its figures against what is known:
#  - memservers with --metrics-listen: /metrics after 4 MiB written
#    through the plugin (replicas=2 on 3 servers) says the bytes used
#    that STAT says, the WRITE requests and bytes the server took, the
#    extents; an AUTH refused (a wrong key) is counted on a server with
#    a key; a drain shows state draining or drained;
#  - the plugin's metrics-file=: exactly the requests and bytes rampool
#    verify made (4 writes and 4 reads of 1 MiB), a histogram whose
#    count is those requests, 4 healthy extents, servers up and down as
#    they are (one killed: down 1, then its copies re-created).
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires promtool prometheus
requires curl

PROM=$TMP/disk0.prom
STATS=$TMP/stats
for i in 1 2 3; do
  start_memserver "s$i" --metrics-listen 127.0.0.1:0 \
    --metrics-port-file "$TMP/s$i.mport"
done
murl () { echo "http://127.0.0.1:$(cat "$TMP/$1.mport")/metrics"; }
# metric FILE NAME{LABELS}: the value of that one series.
metric () { awk -v k="$2" '$1 == k { print $2 }' "$1" 2>/dev/null; }

# An idle server's exposition is valid and says nothing is used.
curl -sf "$(murl s1)" >"$TMP/s1.idle"
promtool check metrics <"$TMP/s1.idle" || fail "s1 idle: promtool"
[ "$(metric "$TMP/s1.idle" rampool_memserver_used_bytes)" = 0 ] ||
  fail "idle s1 uses bytes"
[ "$(metric "$TMP/s1.idle" 'rampool_memserver_state{state="serving"}')" = 1 ] ||
  fail "idle s1 not serving"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$(murl s1)/../other")" = 404 ] ||
  fail "a path other than /metrics was not 404"

start_nbdkit size=64M replicas=2 heartbeat-ms=200 rejoin-grace-ms=300 \
  metrics-file="$PROM" stats-file="$STATS"
"$RAMPOOL" verify --mib=4 "$NBD_URI" >"$TMP/verify.out" ||
  fail "verify: $(cat "$TMP/verify.out")"
# The plugin's file is rewritten every heartbeat: wait for one written
# after the I/O.
prom_has () {
  [ "$(metric "$PROM" "rampool_client_requests_total{disk=\"disk0\",op=\"read\"}")" = 4 ]
}
wait_until 10 "the metrics file to count the reads" prom_has
cp "$PROM" "$TMP/client.txt"
promtool check metrics <"$TMP/client.txt" || fail "client metrics: promtool"
c () { metric "$TMP/client.txt" "$1"; }
for op in read write; do
  [ "$(c "rampool_client_requests_total{disk=\"disk0\",op=\"$op\"}")" = 4 ] ||
    fail "$op requests: $(c "rampool_client_requests_total{disk=\"disk0\",op=\"$op\"}")"
  [ "$(c "rampool_client_request_bytes_total{disk=\"disk0\",op=\"$op\"}")" = $((4 * MiB)) ] ||
    fail "$op bytes"
  [ "$(c "rampool_client_request_duration_seconds_count{disk=\"disk0\",op=\"$op\"}")" = 4 ] ||
    fail "$op histogram count"
  [ "$(c "rampool_client_request_duration_seconds_bucket{disk=\"disk0\",op=\"$op\",le=\"+Inf\"}")" = 4 ] ||
    fail "$op +Inf bucket"
  [ "$(c "rampool_client_request_errors_total{disk=\"disk0\",op=\"$op\"}")" = 0 ] ||
    fail "$op errors"
done
[ "$(c 'rampool_client_extents{disk="disk0",state="healthy"}')" = 4 ] ||
  fail "healthy extents"
[ "$(c 'rampool_client_extents{disk="disk0",state="unmapped"}')" = 60 ] ||
  fail "unmapped extents"
[ "$(c 'rampool_client_servers{disk="disk0",state="up"}')" = 3 ] ||
  fail "servers up"
[ "$(c "rampool_client_server_up{disk=\"disk0\",server=\"$MS_ADDR_s2\"}")" = 1 ] ||
  fail "s2 not up"
[ "$(c 'rampool_client_writes_total{disk="disk0"}')" = 4 ] ||
  fail "extent-part writes"

# Each server's exposition against its STAT; together they hold the
# 8 copies of 1 MiB and took 8 MiB of WRITE payload.
total_used=0 total_written=0 total_writes=0
for i in 1 2 3; do
  a=MS_ADDR_s$i
  curl -sf "$(murl "s$i")" >"$TMP/s$i.txt"
  promtool check metrics <"$TMP/s$i.txt" || fail "s$i: promtool"
  used=$(metric "$TMP/s$i.txt" rampool_memserver_used_bytes)
  [ "$used" = "$(server_used "${!a}")" ] ||
    fail "s$i: used_bytes $used, STAT says $(server_used "${!a}")"
  [ "$(metric "$TMP/s$i.txt" rampool_memserver_extents)" = $((used / MiB)) ] ||
    fail "s$i: extents"
  total_used=$((total_used + used))
  total_written=$((total_written + $(metric "$TMP/s$i.txt" rampool_memserver_write_bytes_total)))
  total_writes=$((total_writes + $(metric "$TMP/s$i.txt" 'rampool_memserver_requests_total{op="write"}')))
done
[ "$total_used" = $((8 * MiB)) ] || fail "used on the servers: $total_used"
[ "$total_written" = $((8 * MiB)) ] || fail "written to the servers: $total_written"
[ "$total_writes" -ge 8 ] || fail "WRITE requests on the servers: $total_writes"

# A server killed: the client's file says so, then recovery re-creates
# its copies on the other two.
kill_memserver s3
down_seen () {
  grep -q "^rampool_client_server_up{disk=\"disk0\",server=\"$MS_ADDR_s3\"} 0" "$PROM" &&
    grep -q '^rampool_client_servers{disk="disk0",state="down"} 1' "$PROM"
}
wait_until 10 "the metrics file to show s3 down" down_seen
healed () {
  grep -q '^rampool_client_extents{disk="disk0",state="healthy"} 4' "$PROM" &&
    [ "$(metric "$PROM" 'rampool_client_recovered_total{disk="disk0"}')" -ge 1 ]
}
wait_until 20 "the copies on s3 to be re-created" healed
promtool check metrics <"$PROM" || fail "client metrics after the kill: promtool"

# A refused AUTH is counted.
"$RAMPOOL" keygen "$TMP/key" >/dev/null
start_memserver k --key-file "$TMP/key" --metrics-listen 127.0.0.1:0 \
  --metrics-port-file "$TMP/k.mport"
# A proof made over another fence than HELLO sent: refused.
PYTHONPATH=${srcdir:-.} python3 - "$MS_PORT_k" "$TMP/key" <<'PY' ||
import sys, rpwire
c = rpwire.Conn(int(sys.argv[1]))
try:
    c.hello(key=rpwire.load_key(sys.argv[2]), fence=1, auth_fence=2)
    sys.exit("a forged AUTH was accepted")
except (rpwire.Refused, rpwire.Closed):
    pass
PY
  fail "forged AUTH"
curl -sf "$(murl k)" >"$TMP/k.txt"
promtool check metrics <"$TMP/k.txt" || fail "k: promtool"
[ "$(metric "$TMP/k.txt" rampool_memserver_auth_refused_total)" = 1 ] ||
  fail "auth refusals: $(metric "$TMP/k.txt" rampool_memserver_auth_refused_total)"

# A drain: the state and what was used when it began.
used2=$(server_used "$MS_ADDR_s2")
"$RAMPOOL" drain --no-wait --deadline=60 "$MS_ADDR_s2" >/dev/null
curl -sf "$(murl s2)" >"$TMP/s2.drain" || fail "no metrics from s2 while it drains"
promtool check metrics <"$TMP/s2.drain" || fail "s2 draining: promtool"
d=$(metric "$TMP/s2.drain" 'rampool_memserver_state{state="draining"}')
dd=$(metric "$TMP/s2.drain" 'rampool_memserver_state{state="drained"}')
[ "$d" = 1 ] || [ "$dd" = 1 ] || fail "s2 neither draining nor drained"
[ "$(metric "$TMP/s2.drain" rampool_memserver_drain_start_bytes)" = "$used2" ] ||
  fail "drain start bytes"
echo "PASS: memserver and client metrics valid and exact"
