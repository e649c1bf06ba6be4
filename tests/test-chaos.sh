#!/bin/bash
# Randomized failures (tests/test_chaos.c): 4 threads of mixed I/O on
# librampool, every byte checked against a shadow, while a seeded
# schedule kills and restarts, stops and resumes (one, or all at once),
# cuts off (past their lease), blackholes, resets and delays 5
# memservers reached through faultproxy.py, never destroying a copy
# while another is missing.
# No read may return a wrong byte, no I/O may fail, no extent may be
# lost; after every episode, once healthy again, and at the end,
# rp_pool_audit must find every copy the pool counts good on its
# server, identical and authentic, and at the end the servers must
# hold exactly those copies.  Once plain, once with encrypt=on, once
# erasure-coded (redundancy=ec:2+2, 4 fragments on the 5 servers) with
# encrypt=on, once plain with reads and writes sent asynchronously
# (--aio: rp_aio_submit, as rampool-nbd sends them).
#
# CHAOS_SECONDS: the schedule's length per run (default 30, at least
# one deck of 8 episodes; make it long by hand: CHAOS_SECONDS=600).
# CHAOS_SEED: replay a schedule (each run prints its seed first,
# "test_chaos: seed N"; the seed is used for both runs).
source "${srcdir:-.}/functions.sh"
requires python3

seconds=${CHAOS_SECONDS:-30}
run () {
  local name=$1; shift
  local seed_args=()
  [ -n "${CHAOS_SEED:-}" ] && seed_args=(--seed "$CHAOS_SEED")
  mkdir -p "$TMP/$name"
  echo "== $name: $*"
  # Its memservers and proxy are its children, stopped by it (and
  # killed by the kernel if it dies: PR_SET_PDEATHSIG).
  "$TESTS_BIN/test_chaos" --memserver "$MEMSERVER" \
    --proxy "${srcdir:-.}/faultproxy.py" --dir "$TMP/$name" \
    --seconds "$seconds" "${seed_args[@]+"${seed_args[@]}"}" "$@" \
    >"$TMP/$name.log" 2>&1 &
  local pid=$! rc=0
  _pids+=("$pid")
  wait "$pid" || rc=$?
  if [ "$rc" != 0 ]; then
    grep -v "rampool: debug" "$TMP/$name.log" | tail -n 150
    [ "$rc" -gt 128 ] && echo "test_chaos killed by signal $((rc - 128)) ($(kill -l $((rc - 128))))"
    fail "$name: exit $rc: $(grep '^test_chaos: seed' "$TMP/$name.log")"
  fi
  grep "\] episode " "$TMP/$name.log" | grep -v ": over" | sed "s/^/  /"
  grep "audit at the end\|the memservers hold\|episodes;\|copies recovered\|^test_chaos" "$TMP/$name.log"
}

# CHAOS_RUNS: which of the four (scripts/test's sanitizer pass leaves
# out "encrypted": the erasure-coded run is encrypted too).
runs=" ${CHAOS_RUNS:-plain encrypted erasure-coded async} "
[[ $runs = *" plain "* ]] && run plain
[[ $runs = *" encrypted "* ]] && run encrypted encrypt=on
[[ $runs = *" erasure-coded "* ]] && run erasure-coded redundancy=ec:2+2 encrypt=on
[[ $runs = *" async "* ]] && run async --aio
echo "PASS"
