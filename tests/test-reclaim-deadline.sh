#!/bin/bash
# A donor's deadline passes while its client does not answer.
#
# s1 runs with --size auto in a memory cgroup of its own; s2 and s3 have
# fixed sizes; replicas=2, 192 MiB of known data.  nbdkit is stopped
# (SIGSTOP: an owner that does not answer) and a process in s1's cgroup
# takes memory: s1 asks for extents back, nobody moves them, and at the
# deadline s1 drops them, naming the owner.  Then nbdkit resumes: it
# must not count a dropped copy (every byte reads back, from the other
# copy), it must re-create the lost copies (healthy again), and then, as
# one more ordinary event, s2 is killed with -9: every byte must still
# read back.
#
# Then replicas=1: with every copy the client's only one (RP_FLAG_SOLE)
# and no --reclaim-sole, s4 under the same pressure with its client
# stopped past the deadline drops nothing.
source "${srcdir:-.}/functions.sh"
source "${srcdir:-.}/memcg.sh"
requires nbdkit
requires nbdcopy libnbd-bin
requires python3

STATS=$TMP/stats
memcg_pool 2000
start_nbdkit size=192M replicas=2 timeout-ms=2000 heartbeat-ms=200 \
  rejoin-grace-ms=500 stats-file="$STATS"
head -c $((192 * MiB)) /dev/urandom >"$TMP/data"
nbdcopy "$TMP/data" "$NBD_URI"
healthy () { stats_are extents_healthy -eq 192 extents_degraded -eq 0; }
wait_until 30 "192 healthy extents" healthy

kill -STOP "$NBDKIT_PID"
memcg_hog 224
dropped () { grep -q "dropped extent .* of session" "$TMP/s1.log"; }
wait_until 30 "s1 to drop what was not moved by its deadline" dropped
ndropped=$(grep -c "dropped extent" "$TMP/s1.log")
echo "s1 dropped $ndropped extents of the stopped client"
kill -CONT "$NBDKIT_PID"

nbdcopy "$NBD_URI" "$TMP/out1"
cmp "$TMP/data" "$TMP/out1" || fail "data differs right after the client resumed"
wait_until 60 "the dropped copies to be re-created" healthy
grep -q "no longer exists there\|asked for .* back" "$TMP/nbdkit.log" ||
  fail "the client did not notice what s1 dropped"
kill_memserver s2 KILL
nbdcopy "$NBD_URI" "$TMP/out2"
cmp "$TMP/data" "$TMP/out2" || fail "data differs after the drops and s2's loss"
echo "replicas=2: repaired after the drops; s2 lost after: every byte reads back"
memcg_next_part s1 s3

# ---- replicas=1: nothing dropped without --reclaim-sole.
MS_SIZE=auto memcg_memserver s4 --max-size 256M --headroom 64M \
  --reclaim-deadline-ms 2000
MS_SIZE=32M start_memserver s5
start_nbdkit size=192M replicas=1 timeout-ms=2000 heartbeat-ms=200 \
  rejoin-grace-ms=500 stats-file="$STATS"
nbdcopy "$TMP/data" "$NBD_URI"
wait_until 30 "192 healthy extents" healthy
kill -STOP "$NBDKIT_PID"
# s4 holds 160 MiB it may not give back: leave the cgroup just short of
# its head-room (more would OOM-kill the hog: with replicas=1 the host
# gets back only what the clients free).
memcg_hog 170
shrunk () { grep -q "reclaim: donating .* (.* used; the host has" "$TMP/s4.log" &&
  [ "$(grep -c "reclaim: donating" "$TMP/s4.log")" -ge 2 ]; }
wait_until 30 "s4 to lower its donation" shrunk
# Longer than the deadline: time passing is what is tested.
t0=$(now_ms)
past () { [ $(( $(now_ms) - t0 )) -ge 4000 ]; }
wait_until 10 "the deadline to pass" past
kill -CONT "$NBDKIT_PID"
! grep -q "dropped extent" "$TMP/s4.log" || fail "s4 dropped a client's only copy"
nbdcopy "$NBD_URI" "$TMP/out3"
cmp "$TMP/data" "$TMP/out3" || fail "replicas=1: data differs"
echo "PASS: drops at the deadline repaired (replicas=2); only copies never dropped (replicas=1)"
