#!/bin/bash
# Scattered recovery: COPY, one memserver writing a lost copy straight
# into another (docs/protocol.md, COPY).
#
# 1. The wire (tests/peer_copy.py): versions, exact bytes, refusals,
#    fencing, the deadline with a blackholed target and late bytes that
#    reach nothing, EBUSY, a source freed and a requester gone
#    mid-copy, what a COPY link may join and that notices skip it;
#    then with cluster keys (another key, no key: refused).
# 2. The client, plain and with encrypt=on: 5 keyed memservers, checked
#    I/O running, one kill -9: every lost copy is re-created by COPY
#    (peer_copies = recovered, no failure), the I/O never sees a wrong
#    byte, and then a second server is killed: what the COPYs wrote is
#    what is read.
# 3. COPYs cut off mid-way (the links into one server blackholed while
#    recovery runs), the links back, then another kill: no copy a
#    failed COPY may have touched is ever counted; checked I/O
#    throughout.
# 4. peer-copy=off, and memservers with --peer-copies 0: the same
#    recovery, relayed by the client (peer_copies 0).
source "${srcdir:-.}/functions.sh"
source "${srcdir:-.}/faultproxy.sh"
requires nbdkit
requires python3

MS_SIZE=512M
echo "== 1. the wire"
start_memserver a
start_memserver b
start_memserver c --peer-copies 1 --max-client-connections 2
start_memserver z --peer-copies 0
start_memserver d
start_proxy b
PYTHONPATH="${srcdir:-.}" python3 "${srcdir:-.}/peer_copy.py" plain \
  "$MS_PORT_a" "$MS_PORT_b" "$MS_PORT_c" "$MS_PORT_z" "$MS_PORT_d" \
  "$PROXY_CTL" "$PX_PORT_b" || fail "peer_copy.py plain"
"$RAMPOOL" keygen "$TMP/k1" >/dev/null
"$RAMPOOL" keygen "$TMP/k2" >/dev/null
start_memserver ka --key-file "$TMP/k1"
start_memserver kb --key-file "$TMP/k1"
start_memserver kx --key-file "$TMP/k2"
start_memserver ky
PYTHONPATH="${srcdir:-.}" python3 "${srcdir:-.}/peer_copy.py" keyed \
  "$TMP/k1" "$MS_PORT_ka" "$MS_PORT_kb" "$MS_PORT_kx" "$MS_PORT_ky" ||
  fail "peer_copy.py keyed"
grep -q "COPY to 127.0.0.1:1: connection refused" "$TMP/a.log" ||
  fail "no log line names a refused COPY's target and cause"
# Its failed COPYs came faster than the log limit lets through: the
# summary of what was held back says what it was (it once said
# "(null)").
kill_memserver a TERM
! grep "suppressed in .* ms ((null)\|other events)" "$TMP/a.log" ||
  fail "a summary of suppressed lines that names no kind"

STATS=$TMP/stats
# A pool of N keyed memservers p1..pN behind nothing, nbdkit over them.
pool () {
  local n=$1; shift
  rm -f "$STATS"
  SERVERS=
  for i in $(seq "$n"); do
    start_memserver "p$i" --key-file "$TMP/k1" "$@"
  done
}
# Every mapped extent healthy, in one snapshot of the stats file (the
# I/O goes on: a second read of it is another moment, where a write
# that timed out on a loaded machine may have left a copy to repair).
healthy () {
  wait_until 120 "back to 2 good copies" eval 'stats_are extents_mapped -gt 0 \
    extents_healthy -eq "$(stat_of extents_mapped)" extents_degraded -eq 0 \
    extents_lost -eq 0 extents_unreachable -eq 0'
}

# Until a COPY has failed: blackhole, in one step, every connection
# into p2 through the proxy but its oldest (the client's:
# connections=1, lanes=0).  COPY links come and go (a link idle for
# PEER_IDLE_MS closes, the next copy opens another), and one
# blackholed while idle may see no copy again before it closes; so
# each poll blackholes the links opened since.  A COPY on a
# blackholed link stops mid-way: its source gives up at the deadline
# and says bytes may have landed; the client must FREE that target.
cut_a_copy () {
  stats_are peer_copy_failures -gt 0 && return 0
  proxy_ctl "p2#1-" blackhole >/dev/null 2>&1 || true
  return 1
}

run_kills () {
  local name=$1; shift
  echo "== 2. $name: kill one of 5, then another"
  pool 5
  start_nbdkit size=192M replicas=2 key-file="$TMP/k1" timeout-ms=2000 \
    heartbeat-ms=200 rejoin-grace-ms=0 stats-file="$STATS" "$@"
  checked_io_start "$TMP/io-$name.log"
  wait_until 120 "data on every server" stats_are extents_mapped -ge 150
  kill_memserver p3 KILL
  wait_until 120 "p3 seen down" stats_are servers_up -eq 4
  healthy
  local rec pc pf
  rec=$(stat_of recovered) pc=$(stat_of peer_copies) pf=$(stat_of peer_copy_failures)
  echo "$name: recovered $rec, by COPY $pc, COPY failures $pf"
  [ "$rec" -gt 0 ] && [ "$pc" = "$rec" ] && [ "$pf" = 0 ] ||
    fail "$name: not every copy was made by COPY ($pc of $rec, $pf failed)"
  kill_memserver p1 KILL
  wait_until 120 "p1 seen down" stats_are servers_up -eq 3
  healthy
  checked_io_stop "$TMP/io-$name.log"
  stop_nbdkit
  for i in 2 4 5; do kill_memserver "p$i" TERM; done
}
run_kills plain
run_kills encrypted encrypt=on

echo "== 3. COPY links into a server cut off mid-copy, then another kill"
# p2 behind the proxy (so are the COPY links into it), the rest direct;
# one client connection per server and no lanes, so p2's first
# connection through the proxy is the client's and the later ones are
# links from the other memservers.  recovery-rate= stretches recovery
# over about 15 s (p4's ~120 copies of 1 MiB at 8 MiB/s), so that
# COPYs into p2 are still to come when the links into it are cut.
pool 4
start_proxy p2
SERVERS=$MS_ADDR_p1,$PX_ADDR_p2,$MS_ADDR_p3,$MS_ADDR_p4
start_nbdkit size=256M replicas=2 key-file="$TMP/k1" timeout-ms=2000 \
  heartbeat-ms=200 rejoin-grace-ms=0 connections=1 lanes=0 \
  recovery-rate=8M stats-file="$STATS"
checked_io_start "$TMP/io-cut.log"
wait_until 120 "data on every server" stats_are extents_mapped -ge 200
kill_memserver p4 KILL
wait_until 120 "p4 seen down" stats_are servers_up -eq 3
wait_until 120 "COPYs under way" stats_are peer_copies -ge 4
wait_until 120 "a COPY cut off" cut_a_copy
proxy p2 pass
healthy
echo "after the cut: recovered $(stat_of recovered), by COPY $(stat_of peer_copies), COPY failures $(stat_of peer_copy_failures)"
kill_memserver p1 KILL
wait_until 120 "p1 seen down" stats_are servers_up -eq 2
healthy
checked_io_stop "$TMP/io-cut.log"
stop_nbdkit
kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null || true
for i in 2 3; do kill_memserver "p$i" TERM; done

echo "== 4. relayed: peer-copy=off, and servers without COPY"
for variant in "client" "servers"; do
  if [ "$variant" = client ]; then
    pool 4; opt=peer-copy=off
  else
    pool 4 --peer-copies 0; opt=
  fi
  start_nbdkit size=96M replicas=2 key-file="$TMP/k1" timeout-ms=2000 \
    heartbeat-ms=200 rejoin-grace-ms=0 stats-file="$STATS" $opt
  checked_io_start "$TMP/io-relay.log"
  wait_until 120 "data on every server" stats_are extents_mapped -ge 70
  kill_memserver p2 KILL
  wait_until 120 "p2 seen down" stats_are servers_up -eq 3
  healthy
  [ "$(stat_of peer_copies)" = 0 ] && [ "$(stat_of recovered)" -gt 0 ] ||
    fail "$variant: peer_copies $(stat_of peer_copies), recovered $(stat_of recovered)"
  checked_io_stop "$TMP/io-relay.log"
  stop_nbdkit
  for i in 1 3 4; do kill_memserver "p$i" TERM; done
done
echo PASS
