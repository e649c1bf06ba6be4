#!/bin/bash
# A real Prometheus server scrapes a memserver: contrib/prometheus.yml's
# job, pointed at a memserver on loopback, with a 1 s interval.  After
# 3 MiB are written to the memserver (rampool verify through the
# plugin, replicas=1), Prometheus' HTTP API must answer the query
# rampool_memserver_used_bytes with exactly what STAT says, and
# sum(rampool_memserver_requests_total{op="write"}) with the WRITEs
# the memserver's own /metrics counts; every query of the Grafana
# dashboard (contrib/) must run on it.  Everything on 127.0.0.1.
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires prometheus
requires promtool prometheus
requires curl

start_memserver s1 --metrics-listen 127.0.0.1:0 \
  --metrics-port-file "$TMP/s1.mport"
MPORT=$(cat "$TMP/s1.mport")

# The shipped scrape config, with its targets and interval replaced.
CONTRIB=${srcdir:-.}/../contrib
sed -e "s/scrape_interval: .*/scrape_interval: 1s/" \
    -e "s/^\(\s*\)- targets: .*/\1- targets: ['127.0.0.1:$MPORT']/" \
    -e "/job_name: rampool-clients/,\$d" \
    "$CONTRIB/prometheus.yml" >"$TMP/prometheus.yml"
promtool check config "$TMP/prometheus.yml" >/dev/null ||
  fail "the scrape config does not check: $(promtool check config "$TMP/prometheus.yml" 2>&1)"

# A free port for Prometheus' own listener.
PPORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
prometheus --config.file="$TMP/prometheus.yml" \
  --storage.tsdb.path="$TMP/tsdb" \
  --web.listen-address="127.0.0.1:$PPORT" >"$TMP/prometheus.log" 2>&1 &
_pids+=($!)
API=http://127.0.0.1:$PPORT
ready () { curl -sf "$API/-/ready" >/dev/null; }
wait_until 60 "Prometheus to be ready" ready

SERVERS=$MS_ADDR_s1
start_nbdkit size=16M replicas=1
"$RAMPOOL" verify --mib=3 "$NBD_URI" >"$TMP/verify.out" ||
  fail "verify: $(cat "$TMP/verify.out")"
used=$(server_used "$MS_ADDR_s1")
[ "$used" = $((3 * MiB)) ] || fail "s1 holds $used bytes"
writes=$(curl -sf "http://127.0.0.1:$MPORT/metrics" |
  awk '$1 == "rampool_memserver_requests_total{op=\"write\"}" { print $2 }')

# query EXPR: the value of the first series of an instant query.
query () {
  curl -sf -G "$API/api/v1/query" --data-urlencode "query=$1" |
    python3 -c 'import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(r[0]["value"][1] if r else "")'
}
scraped () {
  [ "$(query 'rampool_memserver_used_bytes{job="rampool-memservers"}')" = "$used" ] &&
    [ "$(query 'sum(rampool_memserver_requests_total{op="write"})')" = "$writes" ]
}
wait_until 30 "Prometheus to have scraped $used bytes used" scraped
up=$(query "up{instance=\"127.0.0.1:$MPORT\"}")
[ "$up" = 1 ] || fail "up is '$up'"
# Every query of the Grafana dashboard parses and runs on this server.
python3 - "$CONTRIB/grafana-rampool.json" "$API" <<'PY' ||
import json, sys, urllib.parse, urllib.request
dash = json.load(open(sys.argv[1]))
n = 0
for p in dash["panels"]:
    for t in p.get("targets", []):
        q = (t["expr"].replace("$__rate_interval", "1m")
             .replace("$memserver_job", "rampool-memservers"))
        url = sys.argv[2] + "/api/v1/query?" + urllib.parse.urlencode({"query": q})
        try:
            r = json.load(urllib.request.urlopen(url))
        except Exception as e:
            sys.exit("dashboard panel %r: %s: %s" % (p["title"], q, e))
        if r.get("status") != "success":
            sys.exit("dashboard panel %r: %s: %s" % (p["title"], q, r))
        n += 1
print("%d dashboard queries run" % n)
PY
  fail "a dashboard query does not run"
echo "PASS: Prometheus scraped rampool_memserver_used_bytes $used and $writes writes"
