#!/bin/bash
# A memserver that comes back after its lease for this client expired
# holds none of the client's copies any more, though it has the same
# incarnation: the client must count none of them good.
#
# 3 memservers with --lease-ms 3000 behind faultproxy.py, replicas=2,
# 48 MiB of known data.  s1 is cut off at the proxy (its connections
# reset both ways, new ones refused) until s1 itself reports that it
# freed this client's extents (lease + sweep), then the link is
# restored.  rejoin-grace-ms is longer than the cut, so the client
# kept s1's copies in its map while s1 was away, as it does for any
# blip; when s1 answers again with the same incarnation, only the
# session id in its HELLO tells that those copies are gone.
#
# Then: the pool must be healthy again through recovery (copies
# re-created, `recovered` > 0), s1's own STAT must show it holds this
# client's extents again (what is counted good exists), and after
# kill -9 of s2 (a DIFFERENT server) every byte must read back.
#
# Before the session check, the client counted 48/48 extents healthy
# while s1 held nothing, recovered none, and killing s2 made about a
# third of the extents (those on s1 and s2) unreadable.
source "${srcdir:-.}/functions.sh"
source "${srcdir:-.}/faultproxy.sh"
requires nbdkit
requires nbdcopy libnbd-bin

for i in 1 2 3; do start_memserver "s$i" --lease-ms 3000; done
start_proxy s1 s2 s3
S1=$MS_ADDR_s1                        # s1 itself, not through the proxy
S1_PX=$PX_ADDR_s1                     # s1 as the client knows it
STATS=$TMP/stats
start_nbdkit size=64M replicas=2 timeout-ms=1000 heartbeat-ms=200 \
  rejoin-grace-ms=600000 outage-wait-ms=2000 stats-file="$STATS"

head -c $((48 * MiB)) /dev/urandom >"$TMP/data"
nbdcopy "$TMP/data" "$NBD_URI"
# all_healthy [KEY OP N...]: 3 servers up, 48 extents, all healthy (and
# the stats_are conditions given, in the same version of the file).
all_healthy () {
  stats_are servers_up -eq 3 extents_mapped -eq 48 extents_healthy -eq 48 "$@"
}
wait_until --polls 100 "48 healthy extents" all_healthy
used_before=$(server_used "$S1")
[ "$used_before" -gt 0 ] || fail "s1 holds none of the data to begin with"
echo "s1 holds $used_before bytes of this client's extents"

proxy s1 cut
s1_freed () { [ "$(server_used "$S1")" = 0 ]; }
wait_until --polls 150 "s1 to free this client's extents (lease-ms 3000)" s1_freed
grep -q "lease: freed the extents of 1 client" "$TMP/s1.log" ||
  fail "s1 freed the extents, but not through the lease"
server_is s1 down 0 && stats_are recovered -eq 0 ||
  { cat "$STATS"; fail "s1 not seen down, or its copies not kept, during the cut"; }
proxy s1 pass

# s1 up again, nothing degraded, in a stats file written after recovery
# ran (recovered > 0); a file saying healthy with nothing recovered is
# the bug itself, so the wait does not end on it but times out.
repaired () {
  server_is s1 up && all_healthy extents_degraded -eq 0 recovered -gt 0
}
problems=
poll_until --polls 200 repaired ||
  problems+="s1 back but nothing recovered ($(tr '\n' ' ' <"$STATS")); "
echo "recovered $(stat_of recovered) copies after s1 came back"
used_after=$(server_used "$S1")
echo "s1 holds $used_after bytes after rejoining"
[ "$used_after" -gt 0 ] ||
  problems+="the client counts copies on s1 good, but s1 holds none of its extents; "

kill_memserver s2 KILL
read_blocks "$MiB" "$TMP/data"
echo "read back with s2 killed: $BLOCKS"
[ "$BLOCKS" = "ok 64 eio 0 mismatch 0 error 0" ] ||
  problems+="data lost once s2 was killed: $BLOCKS; "
[ -z "$problems" ] || fail "$problems"
grep -q "server $S1_PX back after .* expired this client's session" "$TMP/nbdkit.log" ||
  fail "the expired session was not logged"
echo "PASS"
