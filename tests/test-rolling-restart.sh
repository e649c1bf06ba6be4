#!/bin/bash
# Rolling restart of every memserver, one at a time, under continuous
# verified I/O: each restart is a new incarnation (its replicas are
# gone), recovery restores 2 copies before the next server goes, and at
# the end every byte is intact.
source "${srcdir:-.}/functions.sh"
requires nbdkit

for i in 1 2 3; do start_memserver "s$i"; done
start_nbdkit size=96M replicas=2 timeout-ms=1000 heartbeat-ms=200 \
  rejoin-grace-ms=300 stats-file="$TMP/stats"

"$TESTS_BIN/test_parallel_io" --ops 2000000 --until-file "$TMP/stop" --reopen "$NBD_URI" \
  >"$TMP/io.log" 2>&1 &
io=$!
_pids+=("$io")
for _ in $(seq 200); do [ "$(pool_used)" -gt $((32 * 1024 * 1024)) ] && break; sleep 0.05; done

# wait_healthy NAME EPOCH: the stats file shows the restarted server up
# in its new epoch (so it was written after the restart was seen) and
# every extent healthy.
wait_healthy () {
  local port_var=MS_PORT_$1
  for _ in $(seq 600); do
    if grep -q "^server 127.0.0.1:${!port_var} up epoch $2\$" "$TMP/stats" 2>/dev/null &&
       grep -q '^servers_up 3$' "$TMP/stats" &&
       grep -q '^extents_degraded 0$' "$TMP/stats" &&
       grep -q '^extents_lost 0$' "$TMP/stats"; then
      return 0
    fi
    sleep 0.1
  done
  cat "$TMP/stats"
  fail "pool not healthy after restarting $1"
}

for i in 1 2 3; do
  kill_memserver "s$i" TERM
  restart_memserver "s$i"
  for _ in $(seq 100); do
    [ "$(grep -c "restarted (new incarnation)" "$TMP/nbdkit.log")" -ge "$i" ] && break
    sleep 0.1
  done
  [ "$(grep -c "restarted (new incarnation)" "$TMP/nbdkit.log")" -ge "$i" ] ||
    fail "restart of s$i not detected"
  wait_healthy "s$i" 1
  echo "s$i restarted; pool healthy again"
done
touch "$TMP/stop"
wait "$io" || { cat "$TMP/io.log"; fail "I/O saw errors or mismatches"; }
cat "$TMP/io.log"
echo "PASS"
