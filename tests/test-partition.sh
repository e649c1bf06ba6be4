#!/bin/bash
# A network partition between nbdkit and one memserver, in network
# namespaces of the test's own: the client (nbdkit) in one, each of 3
# memservers in another, joined by one veth pair per server.  Cutting a
# link (`ip link set down` on the client's end) is a partition: the
# memserver keeps running and keeps what it holds, nothing is reset,
# packets are simply not delivered.  Everything runs in namespaces the
# test created (no routes, no default route), so no packet can leave
# them; they are deleted on exit.
#
# 1. Long partition under load (replicas=2, rejoin-grace-ms=500): 32
#    random reads and writes in flight, every byte checked; s2's link
#    is cut; recovery re-creates its copies on s1 and s3; the link comes
#    back and s2 is seen up with the same incarnation (a blip).  The
#    checker must end with zero errors and zero mismatches, and a
#    final full read (also with s1 cut off) must match.
# 2. Short partition (replicas=3, rejoin-grace-ms=60000): s2's link is
#    cut while a write is in flight to it, the same extents are written
#    again, the link comes back.  s2 rejoins with the same incarnation
#    and only the 8 extents written meanwhile are re-copied.  Then the
#    two OTHER links are cut, so every read is served by s2: every byte
#    must be the newest (s2 holds no stale data, including none
#    delivered late by the network once the link was back).
#
# Needs root (network namespaces).  Runs in a mount namespace of its
# own (MOUNT_NS=own, tests/mountns.sh): each "ip netns exec" copies the
# mounts of the namespace it runs in, and must not copy (and keep in
# use) other tests' FUSE or loop mounts.
MOUNT_NS=own
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires nbdcopy libnbd-bin
requires ip iproute2
requires ss iproute2

NS_C=rp-part-$$-c                       # the client (nbdkit)
NS_S=(unused rp-part-$$-1 rp-part-$$-2 rp-part-$$-3)
ADDR=(unused 10.251.1.2:7070 10.251.2.2:7070 10.251.3.2:7070)
MS_PID=(unused "" "" "")
T0=$(date +%s%3N)

say () { printf '[%6.1fs] %s\n' "$(( $(now_ms) - T0 ))e-3" "$*"; }

# Kill what this file started (by PID), then delete the namespaces;
# the veths go with them.  Runs before functions.sh's own cleanup.
_ns_made=()
partition_cleanup () {
  local p
  for p in "${NBDKIT_PID:-}" "${IO_PID:-}" "${MS_PID[1]}" "${MS_PID[2]}" "${MS_PID[3]}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  for p in "${NBDKIT_PID:-}" "${IO_PID:-}" "${MS_PID[1]}" "${MS_PID[2]}" "${MS_PID[3]}"; do
    [ -n "$p" ] && wait "$p" 2>/dev/null || true
  done
  for p in "${_ns_made[@]+"${_ns_made[@]}"}"; do
    ip netns del "$p" 2>/dev/null || true
  done
  # "ip netns add" bind-mounts /run/netns on itself the first time:
  # undo that too if it was ours and nobody else's namespace is left.
  if [ "$NETNS_MNT_BEFORE" = 0 ] && [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
    umount /run/netns 2>/dev/null || true
    [ "$NETNS_DIR_BEFORE" = 0 ] && rmdir /run/netns 2>/dev/null || true
  fi
}
grep -q " /run/netns " /proc/self/mountinfo && NETNS_MNT_BEFORE=1 || NETNS_MNT_BEFORE=0
[ -d /run/netns ] && NETNS_DIR_BEFORE=1 || NETNS_DIR_BEFORE=0
on_exit partition_cleanup

make_ns () {
  local err
  err=$(ip netns add "$1" 2>&1) ||
    fail "cannot create network namespace $1 (ip netns add needs root or CAP_SYS_ADMIN): $err"
  _ns_made+=("$1")
  ip -n "$1" link set lo up
}

make_ns "$NS_C"
for n in 1 2 3; do
  make_ns "${NS_S[n]}"
  ip link add "rpc$n" netns "$NS_C" type veth peer name "rps$n" netns "${NS_S[n]}"
  ip -n "$NS_C" addr add "10.251.$n.1/30" dev "rpc$n"
  ip -n "${NS_S[n]}" addr add "10.251.$n.2/30" dev "rps$n"
  ip -n "$NS_C" link set "rpc$n" up
  ip -n "${NS_S[n]}" link set "rps$n" up
done

for n in 1 2 3; do
  ip netns exec "${NS_S[n]}" "$MEMSERVER" --listen "${ADDR[n]}" --size 256M \
    --no-mlock --port-file "$TMP/s$n.port" >>"$TMP/s$n.log" 2>&1 &
  MS_PID[n]=$!           # ip netns exec execs: this is the memserver
  _pids+=("${MS_PID[n]}")
  printf -v "MS_ADDR_s$n" %s "${ADDR[n]}"       # for server_is sN
done
for n in 1 2 3; do wait_for_file "$TMP/s$n.port" "memserver s$n"; done

link () { ip -n "$NS_C" link set "rpc$1" "$2"; say "link to s$1 $2"; }

# nbdkit in the client namespace; its Unix socket is a path, reachable
# from the root namespace.  Sets NBD_SOCK, NBD_URI, NBDKIT_PID.
start_nbdkit_ns () {
  NBD_SOCK=$TMP/nbd.sock
  rm -f "$NBD_SOCK" "$TMP/nbdkit.pid"
  ip netns exec "$NS_C" nbdkit -f -U "$NBD_SOCK" -P "$TMP/nbdkit.pid" \
    "${NBDKIT_VERBOSE[@]}" "$PLUGIN" servers="$SERVERS" "$@" \
    >>"$TMP/nbdkit.log" 2>&1 &
  NBDKIT_PID=$!
  _pids+=("$NBDKIT_PID")
  wait_for_file "$TMP/nbdkit.pid" "nbdkit" 400
  NBD_URI="nbd+unix:///?socket=$NBD_SOCK"
}

healthy_with () {    # N [KEY OP N...]: N servers up, no extent degraded or lost
  stats_are servers_up -eq "$1" extents_degraded -eq 0 extents_lost -eq 0 "${@:2}"
}
io_alive () {
  kill -0 "$IO_PID" 2>/dev/null ||
    { cat "$TMP/io.log"; fail "the I/O checker ended early"; }
}

SERVERS=${ADDR[1]},${ADDR[2]},${ADDR[3]}

########################################################################
say "scenario 1: s2 cut off under load, its copies re-created, then back"
STATS=$TMP/stats1
start_nbdkit_ns size=128M replicas=2 timeout-ms=1000 heartbeat-ms=200 \
  rejoin-grace-ms=500 stats-file="$STATS"

"$TESTS_BIN/test_parallel_io" --ops 2000000 --reopen --until-file "$TMP/stop1" \
  "$NBD_URI" >"$TMP/io.log" 2>&1 &
IO_PID=$!
_pids+=("$IO_PID")
wait_until 20 "I/O to start (64 extents mapped)" stats_are extents_mapped -ge 64
io_alive

link 2 down
t=$(now_ms)
wait_until 10 "s2 to be seen down" server_is s2 down 0
say "s2 seen down after $(( $(now_ms) - t )) ms"
wait_until 30 "recovery on s1 and s3 (extents_degraded 0, 2 servers up)" healthy_with 2
say "recovered on s1 and s3 after $(( $(now_ms) - t )) ms: $(stat_of recovered) copies"
[ "$(stat_of recovered)" -gt 0 ] || fail "nothing was recovered"
# The memservers cannot reach each other here (no route between their
# namespaces): a COPY's link fails at once, which is answered as a COPY
# that stopped connecting, and the client relays to that server for a
# while, saying so once, instead of asking (and warning) per extent.
grep -q "could not connect to server .* for a COPY" "$TMP/nbdkit.log" ||
  fail "no COPY failed at connecting, or the client did not say so"
! grep -q "refused the COPY" "$TMP/nbdkit.log" ||
  fail "a COPY whose link failed at once was refused: $(grep -c "refused the COPY" "$TMP/nbdkit.log") times"
io_alive

link 2 up
t=$(now_ms)
wait_until 10 "s2 to be seen up again" server_is s2 up 0
say "s2 up again (same incarnation, epoch 0) after $(( $(now_ms) - t )) ms"
grep -q "server ${ADDR[2]} back after .* same incarnation" "$TMP/nbdkit.log" ||
  fail "rejoin with the same incarnation not logged"
# Some more I/O with all three up: new copies are placed on s2 again.
sleep 1
io_alive
touch "$TMP/stop1"
wait "$IO_PID" || { cat "$TMP/io.log"; fail "I/O saw errors or mismatches"; }
IO_PID=
tail -n 1 "$TMP/io.log"
grep -q "PASS: .* 0 mismatches, 0 errors" "$TMP/io.log" ||
  { cat "$TMP/io.log"; fail "no clean PASS from the I/O checker"; }
wait_until 10 "3 servers up, nothing degraded" healthy_with 3
cat "$STATS"

# The whole disk once more, first with every link up, then with s1 cut
# off (reads fail over; recovery copies s1's extents meanwhile).
nbdcopy "$NBD_URI" "$TMP/full1"
link 1 down
nbdcopy "$NBD_URI" "$TMP/full2"
cmp "$TMP/full1" "$TMP/full2" || fail "the disk reads differently with s1 cut off"
say "whole disk read back identical with s1 cut off"
link 1 up
wait_until 10 "s1 to be seen up again" server_is s1 up 0
stats_are extents_lost -eq 0 || fail "extents lost"
stop_nbdkit
NBDKIT_PID=
rm -f "$TMP/full1" "$TMP/full2"

########################################################################
say "scenario 2: short partition of s2 during writes, s2 then serves alone"
STATS=$TMP/stats2
start_nbdkit_ns size=64M replicas=3 timeout-ms=1000 heartbeat-ms=200 \
  rejoin-grace-ms=60000 stats-file="$STATS"
head -c $((64 * MiB)) /dev/urandom >"$TMP/data"
cp "$TMP/data" "$TMP/v1"
head -c $((8 * MiB)) /dev/urandom | dd of="$TMP/v1" bs=1M seek=17 conv=notrunc status=none
cp "$TMP/data" "$TMP/v2"
head -c $((8 * MiB)) /dev/urandom | dd of="$TMP/v2" bs=1M seek=17 conv=notrunc status=none
nbdcopy "$TMP/data" "$NBD_URI"
wait_until 10 "64 extents with 3 copies" healthy_with 3 extents_mapped -eq 64

link 2 down
t=$(now_ms)
# Right after the cut, before s2 is found down: the first write goes
# to s2 too and waits there until timeout-ms; the rest miss s2.  Then
# the same 8 extents are written again: the newest data is v2.
"$TESTS_BIN/nbd_blocks" "$NBD_URI" $MiB "$TMP/v1" write 17 8
"$TESTS_BIN/nbd_blocks" "$NBD_URI" $MiB "$TMP/v2" write 17 8
say "wrote extents 17-24 twice in $(( $(now_ms) - t )) ms"
wait_until 10 "s2 to be seen down" server_is s2 down 0
nbdcopy "$NBD_URI" "$TMP/out"
cmp "$TMP/v2" "$TMP/out" || fail "data differs while s2 is cut off"
[ "$(stat_of recovered)" = 0 ] || fail "copies re-created within rejoin-grace-ms"
# The first write above went to s2 on a connection the client then
# closed: the client's kernel still holds it (FIN-WAIT-1, unsent) and
# retries on a backing-off timer, so it reaches s2 once the link is
# back, at a time that depends on that timer.  Bring the link back
# just after such a retry, so the next one (the delivery) comes after
# s2 has rejoined.  Extent 17 goes on s2's second connection, which
# carries no heartbeats: nothing from s2 resets it first.
pending_retry () {    # prints "RETRIES MS_TO_NEXT" of that connection
  ip netns exec "$NS_C" ss -Htno state fin-wait-1 dst "${ADDR[2]%:*}" |
    awk '$2 > 1 && match($0, /timer:\([a-z]+,[^,]*,[0-9]+\)/) {
      split(substr($0, RSTART + 7, RLENGTH - 8), f, ",")
      t = f[2]
      if (t ~ /sec$/) { sub(/sec$/, "", t); ms = t * 1000 }
      else { sub(/ms$/, "", t); ms = (t ~ /\./) ? t * 1000 : t + 0 }
      print f[3], int(ms); exit }'
}
prev=
for _ in $(seq 200); do
  read -r n ms < <(pending_retry) || n=
  [ -n "$n" ] || { say "no request for s2 left in the client's kernel"; break; }
  if [ -n "$prev" ] && [ "$n" -gt "$prev" ] && [ "$ms" -ge 600 ]; then
    say "the client's kernel retried the request for s2 (retry $n); next in $ms ms"
    break
  fi
  prev=$n
  sleep 0.05
done
ss_s2 () { ip netns exec "$NS_C" ss -Htno dst "${ADDR[2]%:*}"; }
{ echo "client sockets to s2 when the link came back:"; ss_s2; } >"$TMP/ss-s2.log"
link 2 up
say "s2 was cut off for $(( $(now_ms) - t )) ms"
t=$(now_ms)
wait_until 10 "s2 to be seen up again" server_is s2 up 0
wait_until 10 "3 servers up, nothing degraded" healthy_with 3
say "s2 back (same incarnation) and rewritten after $(( $(now_ms) - t )) ms"
grep -q "server ${ADDR[2]} back after .* same incarnation" "$TMP/nbdkit.log" ||
  fail "rejoin with the same incarnation not logged"
recovered=$(stat_of recovered)
[ "$recovered" -eq 8 ] ||
  fail "recovered $recovered copies, expected the 8 written while s2 was cut off"

# What the client's kernel still held for s2 from before the cut (the
# closed connections' unsent requests) is retransmitted once the link
# is back.  Wait until none is left, so that the check below sees its
# effect, whatever it is.
old_data_to_s2 () { ss_s2 | awk '$1 != "ESTAB" && $3 > 0' | has .; }
wait_until 40 "the old connections to s2 to drain" eval '! old_data_to_s2'
say "old connections to s2 drained after $(( $(now_ms) - t )) ms"
sleep 0.3

# Only s2 left: every read must come from it.
link 1 down
link 3 down
only_s2 () { stats_are servers_up -eq 1 && server_is s2 up 0; }
wait_until 10 "s1 and s3 to be seen down" only_s2
res=$("$TESTS_BIN/nbd_blocks" "$NBD_URI" $MiB "$TMP/v2")
say "read from s2 alone: $res"
if [ "$res" != "ok 64 eio 0 mismatch 0 error 0" ]; then
  # Say which data s2 served in each wrong block.
  nbdcopy "$NBD_URI" "$TMP/out" || true
  for b in $(seq 0 63); do
    got=$(dd if="$TMP/out" bs=1M skip="$b" count=1 status=none | md5sum)
    [ "$got" = "$(dd if="$TMP/v2" bs=1M skip="$b" count=1 status=none | md5sum)" ] && continue
    what="unknown data"
    [ "$got" = "$(dd if="$TMP/v1" bs=1M skip="$b" count=1 status=none | md5sum)" ] &&
      what="the OLDER write (v1), overwritten before s2 rejoined"
    [ "$got" = "$(dd if="$TMP/data" bs=1M skip="$b" count=1 status=none | md5sum)" ] &&
      what="the data from before the partition"
    echo "extent $b: s2 returned $what"
  done
  fail "s2 served stale data after rejoining: $res"
fi
link 1 up
link 3 up
wait_until 10 "3 servers up, nothing degraded" healthy_with 3
stop_nbdkit
NBDKIT_PID=

say "PASS"
