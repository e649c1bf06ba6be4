#!/bin/bash
# Erasure coding (redundancy=ec:4+2; client/ecio.h) over 7 memservers,
# every byte checked against a shadow copy (test_parallel_io):
#
#  1. Parallel I/O of mixed sizes (1 byte to 1 MiB, unaligned, zeroes
#     and trims) while memservers are killed -9: one, then (once every
#     stripe is whole again on the 6 left, and the first is back empty)
#     two at once.  With two of six fragments gone every stripe still
#     decodes; when the two come back (empty: new incarnations) their
#     fragments are rebuilt.  No error, no mismatch.
#  2. The donors hold (K+M)/K = 1.5 times the data written, not 2x;
#     rampool status --json names the code and counts the stripes.
#  3. A third server lost while two are down: stripes that had a
#     fragment on each of the three read EIO, every other stripe reads
#     what was written.
#  4. encrypt=on with every fragment on one server tampered with: the
#     blocks still read right (decoded without it), its fragments are
#     marked stale and rebuilt, and later relied on.
#  5. Late binding (ec-read-extra=1): with one server stopped, reads
#     complete from the others without waiting for it.
#  6. Configuration errors name the key.
#  7. Three of seven servers stopped, then resumed: reads wait out the
#     outage and then read right (no EIO).
#  8. A pool of exactly K+M servers: a restarted server takes its own
#     fragments back.
#  9. A write refused during an outage (outage-wait-ms=0) costs no data.
source "${srcdir:-.}/functions.sh"
requires nbdkit

N=7
MS_SIZE=64M start_memservers s $N
ALL=$SERVERS
STATS=$TMP/stats
POOL=(size=96M extent-size=256K redundancy=ec:4+2 timeout-ms=1000
      heartbeat-ms=200 rejoin-grace-ms=300 outage-wait-ms=10000
      stats-file="$STATS")

whole () {
  stats_are extents_degraded -eq 0 extents_lost -eq 0 \
    extents_unreachable -eq 0 extents_mapped -gt 0
}

# 1. Two losses under checked I/O.
start_nbdkit "${POOL[@]}"
checked_io_start "$TMP/io.log"
wait_until 60 "I/O under way" stats_are extents_mapped -gt 100
kill_memserver s3 KILL
wait_until 30 "s3 seen down" server_is s3 down
wait_until 60 "full redundancy on 6 servers" whole
echo "1a: s3 killed: every stripe whole again on the 6 left" \
  "($(stat_of recovered) fragments rebuilt)"
MS_SIZE=64M restart_memserver s3
wait_until 30 "s3 back" server_is s3 up
kill_memserver s5 KILL
kill_memserver s6 KILL
wait_until 30 "s5 and s6 seen down" stats_are servers_up -eq 5
# Two of six fragments gone, K=4 left: reads decode, writes go on.
wait_until 30 "stripes degraded, none lost" \
  stats_are extents_lost -eq 0 extents_unreachable -eq 0
MS_SIZE=64M restart_memserver s5
MS_SIZE=64M restart_memserver s6
wait_until 60 "full redundancy after two losses" whole
checked_io_stop "$TMP/io.log"
echo "1: $(tail -n 1 "$TMP/io.log")"

# 2. Memory: 1.5x what is mapped (fragments of 64 KiB per 256 KiB extent).
# Polled: the stats file is rewritten every heartbeat, and the frees
# of the last rebuild may still be on their way.
holds_1_5x () {
  mapped=$(stat_of extents_mapped)
  used=$(pool_used)
  want=$(( mapped * 6 * 64 * 1024 ))
  [ "$used" -eq "$want" ]
}
poll_until 30 holds_1_5x ||
  fail "donors hold $used bytes for $mapped extents of 256 KiB; expected $want (1.5x)"
echo "2: $mapped extents mapped, donors hold $used bytes: 1.5x"
# rampool status shows stripes and the code.
"$RAMPOOL" status --json --pool-stats="$STATS" "$ALL" >"$TMP/json" ||
  { cat "$TMP/json"; fail "rampool status --json"; }
python3 - "$TMP/json" "$mapped" <<'PY' || fail "status --json: $(cat "$TMP/json")"
import json, sys
d = json.loads(open(sys.argv[1]).read())["disk"]
assert d["redundancy"] == "ec:4+2", d
assert d["mapped"] == d["healthy"] == int(sys.argv[2]), d
PY
stop_nbdkit

# 3. Three servers lost: some stripes cannot be decoded, the rest can.
rm -f "$STATS"
start_nbdkit "${POOL[@]}" outage-wait-ms=0
head -c $((96 * MiB)) /dev/urandom >"$TMP/data"
nbdcopy "$TMP/data" "$NBD_URI"
wait_until 30 "all 384 stripes whole" stats_are extents_healthy -eq 384
kill_memserver s1 KILL
kill_memserver s2 KILL
kill_memserver s4 KILL
wait_until 30 "three servers down" stats_are servers_up -eq 4
res=$("$TESTS_BIN/nbd_blocks" "$NBD_URI" $((256 * 1024)) "$TMP/data")
read -r _ ok _ eio _ mismatch _ error <<<"$res"
[ "$mismatch" = 0 ] && [ "$error" = 0 ] || fail "three servers lost: $res"
[ "$eio" -gt 0 ] || fail "no stripe lost with three of seven servers gone: $res"
[ "$ok" -gt 0 ] || fail "every stripe lost with three of seven servers gone: $res"
# Unreachable, not lost: the three may come back with their data.
wait_until 30 "the stripes out of reach counted" \
  stats_are extents_unreachable -eq "$eio" extents_lost -eq 0 \
  extents_degraded -eq "$ok"
echo "3: three servers lost: $ok extents read right, $eio read EIO, none wrong"
stop_nbdkit
for s in s1 s2 s4; do MS_SIZE=64M restart_memserver "$s"; done

# 4. encrypt=on, every fragment on one server tampered with
#    (procmem.py flips a byte in every page of its region), then two
#    servers killed one after the other.  Every block reads right
#    throughout: decoded without a bad fragment (found by leaving each
#    out in turn, then marked stale and rebuilt in place), and the
#    rebuild of the first killed server's fragments spreads only
#    verified data.  (A parity fragment no read or rebuild touches is
#    not checked: there is no scrub.)
use_procmem
rm -f "$STATS"
start_nbdkit "${POOL[@]}" encrypt=on size=8M
head -c $((8 * MiB)) /dev/urandom >"$TMP/data8"
nbdcopy "$TMP/data8" "$NBD_URI"
wait_until 30 "all healthy" stats_are extents_healthy -eq 32
$PM flipall "$MS_PID_s1" $REGION >/dev/null
read_all () {
  local res
  res=$("$TESTS_BIN/nbd_blocks" "$NBD_URI" 4096 "$TMP/data8")
  [ "$res" = "ok 2048 eio 0 mismatch 0 error 0" ] || fail "$1: $res"
}
read_all "encrypt=on, s1 tampered"
has "failed authentication; marked stale" "$TMP/nbdkit.log" ||
  fail "no fragment on s1 marked stale"
kill_memserver s2 KILL
wait_until 30 "s2 seen down" server_is s2 down
read_all "encrypt=on, s1 tampered, s2 killed"
wait_until 30 "every stripe whole again" \
  stats_are extents_healthy -eq 32 extents_degraded -eq 0
kill_memserver s3 KILL
wait_until 30 "s3 seen down" server_is s3 down
read_all "encrypt=on, s1 tampered, s2 and s3 killed"
echo "4: encrypt=on: a tampered server, then two killed: every block right"
stop_nbdkit
for s in s2 s3; do MS_SIZE=64M restart_memserver "$s"; done

# 5. Late binding: one of six servers stopped (SIGSTOP) while the
#    client still counts it up (timeout-ms=600000: nothing times out
#    during the test).  With ec-read-extra=1 every 4 KiB read asks five
#    fragments and decodes from the first four, so reading the whole
#    disk finishes without waiting for the stopped server: every block
#    right, the server never timed out, still counted up.  (With 60 s,
#    a loaded machine -- the sanitizer pass, or other tests beside it --
#    took longer than that to read the disk, twice: the first request
#    to s1 timed out although nothing had waited for it.)
rm -f "$STATS"
SIX=$(echo "$ALL" | cut -d, -f1-6)
SERVERS=$SIX start_nbdkit "${POOL[@]}" size=8M ec-read-extra=1 \
  timeout-ms=600000
nbdcopy "$TMP/data8" "$NBD_URI"
wait_until 30 "all healthy" stats_are extents_healthy -eq 32
from=$(($(wc -l <"$TMP/nbdkit.log") + 1))
kill_memserver s1 STOP
read_all "ec-read-extra=1, s1 stopped"
waited=$(tail -n +"$from" "$TMP/nbdkit.log" |
  grep -e "timed out" -e "$MS_ADDR_s1 down" -e "late-binding groups" || true)
[ -z "$waited" ] ||
  fail "a request timed out, or s1 was taken down: something waited for it: $waited"
kill_memserver s1 CONT
echo "5: late binding: the whole disk read right with one server stopped"
stop_nbdkit

# 7. An outage of three of seven servers (SIGSTOP, then SIGCONT after
#    they are seen down): stripes with fragments on three of them are
#    unreachable, not lost; reads of them wait (outage-wait-ms) and,
#    once the servers are back with the same incarnation, the whole
#    disk reads right with no EIO.
rm -f "$STATS"
start_nbdkit "${POOL[@]}" size=8M
nbdcopy "$TMP/data8" "$NBD_URI"
wait_until 30 "all healthy" stats_are extents_healthy -eq 32
for s in s1 s2 s4; do kill_memserver "$s" STOP; done
wait_until 30 "three servers seen down" stats_are servers_up -eq 4
wait_until 30 "stripes out of reach" stats_are extents_unreachable -gt 0
"$TESTS_BIN/nbd_blocks" "$NBD_URI" 4096 "$TMP/data8" >"$TMP/outage.res" &
reader=$!
_pids+=("$reader")
wait_until 30 "a read waiting out the outage" stats_are outage_waits -gt 0
for s in s1 s2 s4; do kill_memserver "$s" CONT; done
wait "$reader" || fail "nbd_blocks failed"
[ "$(cat "$TMP/outage.res")" = "ok 2048 eio 0 mismatch 0 error 0" ] ||
  fail "reads across the outage: $(cat "$TMP/outage.res")"
wait_until 30 "every stripe whole again" \
  stats_are servers_up -eq 7 extents_healthy -eq 32
echo "7: three of seven servers stopped: reads waited, then read right"
stop_nbdkit

# 8. Exactly K+M servers (ec:2+1 on s1-s3): one killed and restarted
#    empty (a new incarnation) must take its own fragments back, there
#    being no other server to rebuild them on; the disk reads right
#    from the rebuilt stripes with another server killed.
rm -f "$STATS"
SERVERS=$(echo "$ALL" | cut -d, -f1-3) start_nbdkit "${POOL[@]}" size=8M \
  redundancy=ec:2+1
nbdcopy "$TMP/data8" "$NBD_URI"
wait_until 30 "all healthy (ec:2+1)" stats_are extents_healthy -eq 32
kill_memserver s1 KILL
wait_until 30 "s1 seen down" server_is s1 down
MS_SIZE=64M restart_memserver s1
wait_until 60 "s1's fragments rebuilt on s1" \
  stats_are extents_healthy -eq 32 extents_degraded -eq 0
kill_memserver s2 KILL
wait_until 30 "s2 seen down" server_is s2 down
read_all "ec:2+1, s1 rebuilt, s2 killed"
echo "8: K+M servers: a restarted one takes its fragments back"
stop_nbdkit
MS_SIZE=64M restart_memserver s2

# 9. A write during an outage of more than M servers, with
#    outage-wait-ms=0: it fails at once (EIO), having sent nothing, and
#    must cost nothing: once the servers are back, every block reads
#    right (a write that reached no fragment changed none).
rm -f "$STATS"
SERVERS=$(echo "$ALL" | cut -d, -f1-6) start_nbdkit "${POOL[@]}" size=8M \
  outage-wait-ms=0 rejoin-grace-ms=60000
nbdcopy "$TMP/data8" "$NBD_URI"
wait_until 30 "all healthy (9)" stats_are extents_healthy -eq 32
for s in s1 s2 s3; do kill_memserver "$s" STOP; done
wait_until 30 "three of six seen down" stats_are servers_up -eq 3
rc=0
"$TESTS_BIN/nbd_blocks" "$NBD_URI" 4096 "$TMP/data8" write 0 1 || rc=$?
[ "$rc" = 3 ] || fail "a write with three of six servers stopped: exit $rc, not EIO"
for s in s1 s2 s3; do kill_memserver "$s" CONT; done
wait_until 30 "the six back" stats_are servers_up -eq 6 extents_healthy -eq 32
read_all "after a write that failed during an outage"
echo "9: a write refused during an outage cost no data"
stop_nbdkit

# 6. Errors name the key.
err () {
  rm -f "$TMP/err.log"
  if nbdkit -f -U "$TMP/e.sock" "$PLUGIN" "$@" >"$TMP/err.log" 2>&1; then
    fail "nbdkit started with $*"
  fi
}
err servers="$ALL" size=64M redundancy=ec:4+2 replicas=2
has "redundancy: ec:4+2 and replicas= exclude each other" "$TMP/err.log" ||
  { cat "$TMP/err.log"; fail "no error for redundancy with replicas"; }
err servers="$(echo "$ALL" | cut -d, -f1-5)" size=64M redundancy=ec:4+2
has "redundancy: ec:4+2 puts each stripe on 6 distinct servers, but servers= lists 5" \
  "$TMP/err.log" || { cat "$TMP/err.log"; fail "no error for too few servers"; }
err servers="$ALL" size=64M redundancy=ec:3+2
has "redundancy: 'ec:3+2': K must be 2, 4, 8 or 16" "$TMP/err.log" ||
  { cat "$TMP/err.log"; fail "no error for K=3"; }
err servers="$ALL" size=64M redundancy=ec:4+2 extent-size=128K
has "extent-size: with redundancy=ec:4+2 a fragment is extent-size/4" \
  "$TMP/err.log" || { cat "$TMP/err.log"; fail "no error for small extents"; }
err servers="$ALL" size=64M redundancy=ec:4+2 ec-read-extra=3
has "ec-read-extra: 3 is more than the 2 parity fragments of ec:4+2" \
  "$TMP/err.log" || { cat "$TMP/err.log"; fail "no error for ec-read-extra"; }
echo "6: configuration errors name the key"
echo PASS
