#!/bin/bash
# servers-file=: donors added and removed while the pool runs, under
# 32 random requests in flight (test_parallel_io, every byte checked
# against its shadow copy), replicas=2.
#
#  1. The file lists s1, s2, s3.  s4 is added (a new file renamed over
#     the old one): the client connects it and places copies there.
#  2. s1 is removed: the client moves every copy off it (copy before
#     release), then disconnects it ("retired"); s1 itself must report
#     that it holds nothing of this client.
#  3. A file that does not parse, and one that would leave fewer
#     servers than replicas, change nothing and say why.
#  4. Sequence: right after the removal, s2 is killed with -9.  Had the
#     removal released a copy before its replacement was filled, or had
#     the client still counted copies on s1, extents would be lost now.
# At the end the checker reads the whole disk back against its shadow.
source "${srcdir:-.}/functions.sh"
requires nbdkit

for i in 1 2 3 4; do start_memserver "s$i"; done
addr () { local v=MS_ADDR_$1; echo "${!v}"; }
LIST=$TMP/servers
# set_list NAME...: write the file as an operator should: whole, then
# renamed into place.
set_list () {
  local n
  : >"$LIST.new"
  for n in "$@"; do addr "$n" >>"$LIST.new"; done
  mv "$LIST.new" "$LIST"
}
set_list s1 s2 s3
SERVERS=
STATS=$TMP/stats
start_nbdkit servers-file="$LIST" size=128M replicas=2 timeout-ms=1000 \
  heartbeat-ms=200 rejoin-grace-ms=500 stats-file="$STATS"

"$TESTS_BIN/test_parallel_io" --ops 2000000 --until-file "$TMP/stop" \
  "$NBD_URI" >"$TMP/io.log" 2>&1 &
io=$!
_pids+=("$io")
busy () { [ "$(server_used "$(addr s1)")" -gt $((16 * 1024 * 1024)) ]; }
wait_until 30 "I/O to reach s1" busy

# 1. Add s4.
set_list s1 s2 s3 s4
s4_used () { server_is s4 up && [ "$(server_used "$(addr s4)")" -gt 0 ]; }
wait_until 30 "s4 to join and take copies" s4_used
grep -q "servers-file: server $(addr s4) added" "$TMP/nbdkit.log" ||
  fail "no log line for the added server"
echo "1: s4 added, holds $(server_used "$(addr s4)") bytes"

# 3. Bad files change nothing (checked before the removal, while all
#    four are members).
printf '%s\nnot-an-address\n' "$(addr s1)" >"$LIST.new"; mv "$LIST.new" "$LIST"
bad_logged () { grep -q "servers-file: $LIST line 2: servers: 'not-an-address'" "$TMP/nbdkit.log"; }
wait_until 10 "the bad file to be refused" bad_logged
set_list s1
few_logged () { grep -q "would leave 1 servers, replicas=2 needs 2" "$TMP/nbdkit.log"; }
wait_until 10 "the too-short list to be refused" few_logged
! grep -q "removed" "$STATS" || fail "a refused file removed a server"
[ "$(stat_of servers)" = 4 ] || fail "servers: $(stat_of servers), not 4"
echo "3: a bad file and a too-short one were refused"

# 2. Remove s1.
set_list s2 s3 s4
wait_until 60 "s1 to be emptied and retired" server_is s1 retired
left=$("$RAMPOOL" status --raw "$(addr s1)" | awk '{ print $4 }')
[ "$left" = 0 ] || fail "s1 still holds $left bytes after it was retired"
echo "2: s1 removed and retired after $(stat_of migrated) copies moved"

# 4. Then a second event: s2 dies.
kill_memserver s2 KILL
wait_until 60 "recovery onto s3 and s4" \
  stats_are servers_up -eq 2 extents_degraded -eq 0 extents_lost -eq 0 \
  extents_unreachable -eq 0
touch "$TMP/stop"
wait "$io" || { cat "$TMP/io.log"; fail "I/O saw errors or mismatches"; }
cat "$TMP/io.log"
grep -q "PASS" "$TMP/io.log" || fail "no PASS from the I/O checker"
cat "$STATS"
[ "$(stat_of servers)" = 3 ] || fail "servers: $(stat_of servers), not 3"
echo "PASS: servers added and removed live, then s2 lost: no error"
