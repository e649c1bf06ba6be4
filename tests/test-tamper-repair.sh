#!/bin/bash
# encrypt=on: a copy that fails authentication is not just read around
# but repaired, and recovery never spreads a copy it has not verified.
# One donor turns bad: a byte of every page of its region is flipped
# (tests/procmem.py flipall), so every block it holds fails its tag.
#
# 1. replicas=2 (s1 bad, s2 good).  Reading the whole disk fails over
#    to s2 and returns exact data; the copies on s1 that failed are
#    marked stale and recovery rewrites them from s2, verified.  Then
#    s2 is killed -9 and the whole disk must still read back exact,
#    from s1 alone.  (If the bad copies were only read around, every
#    extent would now be EIO.)
# 2. replicas=3 (A bad, B and C good, D spare), and no read at all
#    this time: C is killed -9, so recovery must make a third copy of
#    every extent on D.  Relayed (peer-copy=off), its first choice of
#    source is A's copy: that fails verification, so the copy comes
#    from B, and A's copy, found bad meanwhile, is repaired too.  By
#    COPY (peer-copy=on), the copies a memserver wrote from A into D
#    fail the client's read-back, and are rewritten from B the same
#    way.  Then B and A are killed -9 in turn, and the disk must read
#    back exact from A and D, then from D alone.  (Counting A's blocks
#    on D unverified would have put the tampered data there: EIO
#    everywhere once B is gone.)
#
# Reads go to the copy with the fewest requests outstanding, the first
# placed on ties; so that the single reader of part 1 (and recovery in
# part 2) meets the bad copy first, every extent is written while the
# other servers are down and gets its first copy on the bad donor.  A
# copy that no read or recovery touches is not checked (there is no
# scrub): that is not what this test is about.
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires nbdcopy libnbd-bin
use_procmem
NEXT=16                 # extents (of 1 MiB) on the disk
# timeout-ms: every server here is killed, never hung, so no wait comes
# to it; high enough that no recovery read times out on a loaded
# machine (under the sanitizers, say), which would take its source
# down instead of finding its copy bad, and change the counts below.
POOL_OPTS="size=16M encrypt=on timeout-ms=5000 heartbeat-ms=200 rejoin-grace-ms=500"

all_healthy () {        # [KEY OP N...]: every extent with all its copies
  stats_are extents_mapped -eq $NEXT extents_healthy -eq $NEXT \
    extents_degraded -eq 0 extents_lost -eq 0 "$@"
}
flip_all () {           # NAME: tamper with every page of its region
  local pid_var=MS_PID_$1 n
  n=$($PM flipall "${!pid_var}" $REGION)
  echo "flipped a byte in each of $n pages of $1's region"
  [ "$n" = $(( NEXT * MiB / 4096 )) ] || fail "$1 holds $n pages, expected $(( NEXT * MiB / 4096 ))"
}
stale_lines () {        # PATTERN: nbdkit.log lines from line LOG_FROM on
  tail -n +"$LOG_FROM" "$TMP/nbdkit.log" | grep -c "$1" || true
}
LOG_FROM=1

head -c $((NEXT * MiB)) /dev/urandom >"$TMP/data"

########################################################################
echo "== part 1: replicas=2, s1 bad"
for s in s1 s2; do start_memserver $s; done
STATS=$TMP/stats1
start_nbdkit $POOL_OPTS replicas=2 stats-file="$STATS"
kill_memserver s2 TERM
wait_until 10 "s2 to be seen down" server_is s2 down
nbdcopy "$TMP/data" "$NBD_URI"            # first copies: all on s1
restart_memserver s2
wait_until 30 "second copies on s2" all_healthy
rec0=$(stat_of recovered)
flip_all s1
read_exact "read with s1 bad" $NEXT
# Bounded, and not fatal yet: what the disk reads like without the
# repair says more than a timeout.
poll_until --polls 300 all_healthy recovered -ge $(( rec0 + NEXT )) || true
echo "recovered since the tampering: $(( $(stat_of recovered) - rec0 ))"
kill_memserver s2 KILL
wait_until 10 "s2 to be seen down" server_is s2 down
read_exact "read from s1 alone after s2 was killed" $NEXT
[ $(( $(stat_of recovered) - rec0 )) = $NEXT ] ||
  fail "recovered $(( $(stat_of recovered) - rec0 )) copies, expected the $NEXT bad ones"
n=$(stale_lines "failed authentication; marked stale")
[ "$n" = $NEXT ] || fail "$n copies marked stale for failing authentication, expected $NEXT"
stop_nbdkit
kill_memserver s1 TERM

########################################################################
# part 2, with MODE: relay (peer-copy=off: recovery reads A's copy
# first, finds it bad, copies B's and repairs A's) or copy (peer-copy=on:
# a memserver writes each new copy into D itself; the client reads D's
# copy back and authenticates it, so one COPY'd from A is caught there,
# rewritten through the client from B, and A's repaired the same way).
part2 () {
  local mode=$1 peer=off
  [ "$mode" = copy ] && peer=on
  echo "== part 2 ($mode): replicas=3, A bad; C killed, recovery fills D"
  [ -f "$TMP/nbdkit.log" ] && LOG_FROM=$(( $(wc -l <"$TMP/nbdkit.log") + 1 ))
  SERVERS=
  for s in A B C D; do start_memserver $s; done
  STATS=$TMP/stats2-$mode
  start_nbdkit $POOL_OPTS replicas=3 peer-copy=$peer stats-file="$STATS"
  for s in B C D; do kill_memserver $s TERM; done
  wait_until 10 "B, C and D to be seen down" stats_are servers_up -eq 1
  nbdcopy "$TMP/data" "$NBD_URI"            # first copies: all on A
  restart_memserver B
  restart_memserver C
  wait_until 30 "copies on B and C" all_healthy servers_up -eq 3
  restart_memserver D
  wait_until 10 "D to be seen up" server_is D up
  rec0=$(stat_of recovered) pf0=$(stat_of peer_copy_failures)
  LOG_FROM=$(( $(wc -l <"$TMP/nbdkit.log") + 1 ))  # counted from here
  flip_all A
  kill_memserver C KILL
  # Done when D holds a copy of every extent and nothing is degraded (a
  # copy marked bad counts as degraded until it is rewritten).
  wait_until 60 "a third copy of every extent" \
    eval 'server_is C down && all_healthy recovered -ge $(( rec0 + NEXT ))'
  kill_memserver B KILL
  wait_until 10 "B to be seen down" server_is B down
  read_exact "read from A and D after B was killed" $NEXT
  kill_memserver A KILL
  wait_until 10 "A to be seen down" server_is A down
  read_exact "read from D alone after A was killed" $NEXT
  n=$(( $(stat_of recovered) - rec0 ))
  if [ "$mode" = relay ]; then
    # The relay reads A's copy first: every one is found bad and
    # rewritten, and no read afterwards meets a bad block.
    bad=$NEXT
    [ $n = $(( NEXT + bad )) ] ||
      fail "recovered $n copies, expected $NEXT on D and $bad of A's rewritten"
    n=$(stale_lines "failed authentication; marked stale, repaired next")
    [ "$n" = "$bad" ] || fail "recovery found $n of A's copies bad, expected $bad"
    [ "$(stale_lines "failed authentication; trying another copy")" = 0 ] ||
      fail "part 2 read a bad block: the reads were to come from verified copies only"
  else
    # By COPY, A's copy is read only when a COPY from A into D fails
    # the client's read-back (at least the first: A, placed first, is
    # the first choice while no COPY runs); those are rewritten from
    # B, and each such COPY is a failure, not a copy.  A's other bad
    # copies are found by the reads after B's death, which fail over
    # (exact, above).
    bad=$(stale_lines "fails authentication; rewritten through this client")
    [ "$bad" -ge 1 ] || fail "no COPY from A was caught by the read-back"
    # Every COPY that failed says so in the log, each way it can fail:
    # caught by the read-back, or (a COPY still running when B or A is
    # killed, or a link into D that could not join) unanswered, refused
    # or failed at some stage (connecting and joining at info level).
    other=$(( $(stale_lines "could not be read back") +
              $(stale_lines ": the COPY from .* got no answer") +
              $(stale_lines " refused the COPY to ") +
              $(stale_lines ": the COPY from .* failed (") ))
    [ $(( $(stat_of peer_copy_failures) - pf0 )) = $(( bad + other )) ] ||
      fail "$(( $(stat_of peer_copy_failures) - pf0 )) COPYs failed, the log says $bad from A were caught and $other others failed"
    [ "$n" -ge $(( NEXT + bad )) ] ||
      fail "recovered $n copies, expected at least $NEXT on D and $bad of A's rewritten"
    n=$(stale_lines "failed authentication; marked stale, repaired next")
    [ "$n" -ge "$bad" ] || fail "recovery found $n of A's copies bad, expected $bad or more"
  fi
  echo "part 2 ($mode): $bad of A's copies found bad and rewritten"
  stop_nbdkit
  kill_memserver D TERM
}
part2 relay
part2 copy
echo "PASS"
