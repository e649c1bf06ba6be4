#!/bin/bash
# A donor asks for extents back while its client is away: the client
# must hear of it when it reconnects, before the deadline.
#
# Before the fix the RECLAIM went only to the connections that existed
# when the donor asked; with none (a network blip, a client restarting
# its connections) nobody heard it, and the donor dropped the extents
# at the deadline -- the client's only good copy of them, had it lost
# another donor meanwhile.  Now a donor tells each new generation of an
# owner's connections what it has asked back and not yet got.
#
# s1 (behind faultproxy, --size auto in a memory cgroup of its own,
# --reclaim-deadline-ms 15000), s2 and s3 (fixed sizes), replicas=2,
# rejoin-grace-ms long (s1's copies are kept while it is away), 192 MiB
# of known data.  s1's link is cut; a process in s1's cgroup takes 224
# MiB; s1 lowers its donation and asks for extents back, with no
# connection to tell.  The link comes back: the client reconnects with
# the same session and must be told, move those extents to s2 and s3
# before the deadline, and s1 must drop nothing.  Every byte reads back,
# and again after s2 is killed with -9.
source "${srcdir:-.}/functions.sh"
source "${srcdir:-.}/faultproxy.sh"
requires nbdkit
requires nbdcopy libnbd-bin
requires python3
source "${srcdir:-.}/memcg.sh"

memcg_pool 15000
start_proxy s1 s2 s3
memcg_disk timeout-ms=2000 rejoin-grace-ms=600000
echo "s1 holds $(( $(server_used "$MS_ADDR_s1") / MiB )) MiB"

proxy s1 cut >/dev/null
wait_until 30 "s1 seen down" server_is s1 down
memcg_hog 224
# Not the donation line: s1 logs one at its start too, and a client
# that reconnected before s1 asked would be asked, not told again.
asked () { grep -q "reclaim: session .* has no connection: [0-9]* extent(s) asked back" "$TMP/s1.log"; }
wait_until 30 "s1 to lower its donation and ask, with no connection to tell" asked
t0=$(now_ms)
! grep -q "reclaim: asked session" "$TMP/s1.log" ||
  fail "s1 reached the client while its link was cut"
proxy s1 pass >/dev/null
told () { grep -q "reclaim: told session .* again of [0-9]* extent" "$TMP/s1.log"; }
wait_until 30 "s1 to tell the reconnected client what it asked back" told
n=$(grep -o "again of [0-9]* extent" "$TMP/s1.log" | head -n1 | awk '{ print $3 }')
echo "s1 told the client of $n extent(s) as it reconnected"
wait_until 10 "the client to log the notice" has "asked for $n extent(s) back" "$TMP/nbdkit.log"
wait_until 60 "the extents moved off s1" stats_are migrated -ge "$n"
# Past the deadline: time passing is what is tested.
past () { [ $(( $(now_ms) - t0 )) -ge 17000 ]; }
wait_until 30 "s1's deadline to pass" past
! grep -q "dropped extent" "$TMP/s1.log" ||
  fail "s1 dropped extents at its deadline: $(grep -c "dropped extent" "$TMP/s1.log")"
nbdcopy "$NBD_URI" "$TMP/out1"
cmp "$TMP/data" "$TMP/out1" || fail "data differs after the moves"
wait_until 60 "every extent healthy" healthy extents_degraded -eq 0
kill_memserver s2 KILL
wait_until 10 "s2 seen down" server_is s2 down
nbdcopy "$NBD_URI" "$TMP/out2"
cmp "$TMP/data" "$TMP/out2" || fail "data differs after s2 was killed"
stop_nbdkit
echo "PASS: s1 asked for $n extent(s) back while the client was away; all moved"
