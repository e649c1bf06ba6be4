# Sourced by tests that put a memserver under memory pressure: a memory
# cgroup of the test's own (v1, or v2 where the memory controller is
# there), removed at exit.  After functions.sh.
#
# memcg_create LIMIT_BYTES: make it (sets CG), or skip the test (77)
# when this kernel lets us make none.  memcg_memserver NAME ARGS...:
# start_memserver inside it.  memcg_add PID: move a process into it.

memcg_create () {
  # ASan's shadow memory and its quarantine of freed blocks (256 MiB)
  # make the memserver's footprint unlike a real build's, so the
  # cgroup's budget would OOM-kill the test's hog; the first pass of
  # scripts/test runs these tests on the real build.
  if [ "${RP_SANITIZERS:-no}" = yes ]; then
    echo "SKIP: memory-cgroup budgets do not hold under AddressSanitizer"
    exit 77
  fi
  if [ -d /sys/fs/cgroup/memory ] && [ -w /sys/fs/cgroup/memory ]; then
    CG=/sys/fs/cgroup/memory/rampool-test-$$
    mkdir "$CG"
    echo "$1" >"$CG/memory.limit_in_bytes"
  elif grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    CG=/sys/fs/cgroup/rampool-test-$$
    mkdir "$CG"
    echo "$1" >"$CG/memory.max"
  else
    echo "SKIP: no memory cgroup to create (v1 or v2)"
    exit 77
  fi
  on_exit memcg_remove
}

# Runs before the PID cleanup: a cgroup can only go once it is empty.
memcg_remove () {
  local p
  for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  for _ in $(seq 50); do
    [ -z "$(cat "$CG/cgroup.procs" 2>/dev/null)" ] && break
    sleep 0.1
  done
  rmdir "$CG"
}

memcg_memserver () {
  local real=$MEMSERVER
  cat >"$TMP/in-cgroup" <<EOS
#!/bin/sh
echo \$\$ >"$CG/cgroup.procs" && exec "$real" "\$@"
EOS
  chmod +x "$TMP/in-cgroup"
  MEMSERVER=$TMP/in-cgroup
  start_memserver "$@"
  MEMSERVER=$real
  local pid_var=MS_PID_$1
  grep -qx "${!pid_var}" "$CG/cgroup.procs" || fail "memserver $1 is not in the cgroup"
}

# memcg_hog MIB: a process in the cgroup that takes MIB MiB (touched)
# and keeps it until killed; sets HOG_PID once it holds it all.
memcg_hog () {
  rm -f "$TMP/hog.ready"
  python3 -c '
import sys, time
b = bytearray(b"\x01") * (int(sys.argv[1]) << 20)
open(sys.argv[2], "w").write("x")
while True:
    time.sleep(60)
' "$1" "$TMP/hog.ready" &
  HOG_PID=$!
  _pids+=("$HOG_PID")
  echo "$HOG_PID" >"$CG/cgroup.procs"
  wait_for_file "$TMP/hog.ready" "the memory hog"
}

# memcg_pool DEADLINE_MS: the donor pool of the reclaim tests: s1 with
# --size auto (at most 256 MiB, head-room 64 MiB, that deadline) in a
# memory cgroup of 384 MiB, s2 and s3 with fixed sizes.
memcg_pool () {
  memcg_create $((384 * MiB))
  MS_SIZE=auto memcg_memserver s1 --max-size 256M --headroom 64M \
    --reclaim-deadline-ms "$1"
  start_memserver s2
  start_memserver s3
}

# memcg_disk KEY=VALUE...: nbdkit on the pool ($SERVERS): a 192 MiB
# disk, replicas=2, heartbeat-ms=200, stats-file=$STATS and the KEYs;
# 192 MiB of random data written through it (kept in $TMP/data); every
# extent healthy.  healthy [KEY OP N...]: 192 extents, all healthy (and
# those).
healthy () { stats_are extents_mapped -eq 192 extents_healthy -eq 192 "$@"; }
memcg_disk () {
  STATS=$TMP/stats
  start_nbdkit size=192M replicas=2 heartbeat-ms=200 stats-file="$STATS" "$@"
  head -c $((192 * MiB)) /dev/urandom >"$TMP/data"
  nbdcopy "$TMP/data" "$NBD_URI"
  wait_until 30 "192 healthy extents" healthy
}

# memcg_next_part NAME...: end one part of a test for the next: stop
# nbdkit, the hog and memservers NAME..., and start a new servers= list
# and stats file.
memcg_next_part () {
  local name
  stop_nbdkit
  kill -9 "$HOG_PID"; wait "$HOG_PID" 2>/dev/null || true
  for name in "$@"; do kill_memserver "$name" KILL; done
  SERVERS=
  rm -f "$STATS"
}
