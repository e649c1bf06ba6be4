# Shared by the shell tests: start and stop real memservers on
# loopback, find the built binaries, clean up on exit.
#
# Every process a test starts is recorded by PID and killed on exit;
# readiness is the memserver's --port-file (written once it listens),
# never a sleep.

set -euo pipefail

: "${abs_top_builddir:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
MEMSERVER=$abs_top_builddir/memserver/memserver
PLUGIN=$abs_top_builddir/nbdkit-plugin/.libs/nbdkit-rampool-plugin.so
RAMPOOL=$abs_top_builddir/client/rampool
# The test programs (nbd_blocks...); may be taken from another build
# than the one under test (to run a new test against an older tree).
: "${TESTS_BIN:=$abs_top_builddir/tests}"

# A test that mounts file systems (FUSE, loop devices) or makes network
# namespaces sets MOUNT_NS=own before sourcing this file: it then runs
# in a mount namespace of its own (mountns.sh says why).
if [ "${MOUNT_NS:-}" = own ]; then
  source "$(dirname "${BASH_SOURCE[0]}")/mountns.sh"
  own_mount_ns "$@"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rampool-test.XXXXXX")
_pids=()
_cleanups=()

cleanup () {
  local rc=$?
  for c in "${_cleanups[@]+"${_cleanups[@]}"}"; do eval "$c" || true; done
  for p in "${_pids[@]+"${_pids[@]}"}"; do
    kill -CONT "$p" 2>/dev/null || true
    kill "$p" 2>/dev/null || true
  done
  for p in "${_pids[@]+"${_pids[@]}"}"; do wait "$p" 2>/dev/null || true; done
  if [ $rc -ne 0 ]; then
    for f in "$TMP"/*.log; do
      [ -f "$f" ] || continue
      echo "---- $f (last 30 lines)"; tail -n 30 "$f"
    done
  fi
  [ -n "${KEEP_TMP:-}" ] && echo "kept $TMP" || rm -rf "$TMP"
  exit $rc
}
trap cleanup EXIT INT TERM

on_exit () { _cleanups+=("$1"); }

fail () { echo "FAIL: $*" >&2; exit 1; }

requires () {
  command -v "$1" >/dev/null 2>&1 ||
    fail "$1 not found: install the Debian package ${2:-$1} (scripts/setup-deps)"
}

# Wait (bounded) until a file exists and is non-empty.
wait_for_file () {
  local f=$1 what=$2 tries=${3:-200}
  for _ in $(seq "$tries"); do
    [ -s "$f" ] && return 0
    sleep 0.05
  done
  fail "$what did not become ready ($f)"
}

# start_memserver NAME [ARGS...]: start a memserver on MS_LISTEN
# (HOST:PORT, default 127.0.0.1:0: loopback, a free port); sets
# MS_PORT_<NAME>, MS_HOST_<NAME> and MS_PID_<NAME>, appends HOST:PORT to
# SERVERS.
SERVERS=
start_memserver () {
  local name=$1; shift
  local listen=${MS_LISTEN:-127.0.0.1:0}
  rm -f "$TMP/$name.port"
  "$MEMSERVER" --listen "$listen" --size "${MS_SIZE:-256M}" \
    --no-mlock --port-file "$TMP/$name.port" "$@" >>"$TMP/$name.log" 2>&1 &
  local pid=$!
  _pids+=("$pid")
  wait_for_file "$TMP/$name.port" "memserver $name"
  printf -v "MS_PID_$name" %s "$pid"
  printf -v "MS_PORT_$name" %s "$(cat "$TMP/$name.port")"
  printf -v "MS_HOST_$name" %s "${listen%:*}"
  local addr=${listen%:*}:$(cat "$TMP/$name.port")
  case ",$SERVERS," in *",$addr,"*) ;; *) SERVERS+="${SERVERS:+,}$addr" ;; esac
}

# Restart memserver NAME on the same address and port (a new incarnation).
restart_memserver () {
  local name=$1; shift
  local port_var=MS_PORT_$name host_var=MS_HOST_$name
  MS_LISTEN=${!host_var}:${!port_var} start_memserver "$name" "$@"
}

kill_memserver () {
  local name=$1 sig=${2:-KILL}
  local pid_var=MS_PID_$name
  kill "-$sig" "${!pid_var}"
  if [ "$sig" = KILL ] || [ "$sig" = TERM ]; then
    wait "${!pid_var}" 2>/dev/null || true
  fi
}

# Bytes used on memserver at ADDR (as STAT reports).
server_used () {
  "$RAMPOOL" status --raw "$1" | awk '$2 == "up" { print $4 }'
}

pool_used () {
  local total=0 a
  for a in ${SERVERS//,/ }; do total=$(( total + $(server_used "$a") )); done
  echo $total
}

# Start nbdkit with the plugin in the background on a Unix socket;
# sets NBD_SOCK, NBD_URI, NBDKIT_PID.  Waits for the socket.
start_nbdkit () {
  NBD_SOCK=$TMP/nbd.sock
  rm -f "$NBD_SOCK" "$TMP/nbdkit.pid"
  local opened
  opened=$(grep -c "rampool: info: pool open" "$TMP/nbdkit.log" 2>/dev/null || true)
  nbdkit -f -U "$NBD_SOCK" -P "$TMP/nbdkit.pid" ${NBDKIT_FLAGS:-} "$PLUGIN" \
    servers="$SERVERS" "$@" >>"$TMP/nbdkit.log" 2>&1 &
  NBDKIT_PID=$!
  _pids+=("$NBDKIT_PID")
  wait_for_file "$TMP/nbdkit.pid" "nbdkit" 400
  # nbdkit writes its pid file before the plugin opens the pool; ready
  # is the plugin's "pool open" line.
  for _ in $(seq 400); do
    [ "$(grep -c "rampool: info: pool open" "$TMP/nbdkit.log" 2>/dev/null || true)" -gt "${opened:-0}" ] && break
    kill -0 "$NBDKIT_PID" 2>/dev/null || fail "nbdkit exited at start-up"
    sleep 0.05
  done
  NBD_URI="nbd+unix:///?socket=$NBD_SOCK"
}

now_ms () { date +%s%3N; }

# The plugin's stats-file=: set STATS to its path.  stat_of KEY: one
# value.  server_state NAME: "up" or "down" as the plugin sees
# memserver NAME (start_memserver's).
stat_of () { awk -v k="$1" '$1 == k { print $2 }' "$STATS" 2>/dev/null; }
server_state () {
  local port_var=MS_PORT_$1
  awk -v a="127.0.0.1:${!port_var}" '$1 == "server" && $2 == a { print $3 }' \
    "$STATS" 2>/dev/null
}

# wait_until SECONDS WHAT COMMAND...: poll every 0.1 s until COMMAND
# succeeds; after SECONDS, show $STATS and fail.
wait_until () {
  local secs=$1 what=$2; shift 2
  local end=$(( $(now_ms) + secs * 1000 ))
  until "$@"; do
    if [ "$(now_ms)" -ge "$end" ]; then
      [ -f "${STATS:-}" ] && cat "$STATS"
      fail "timed out after ${secs}s waiting for $what"
    fi
    sleep 0.1
  done
}

stop_nbdkit () {
  kill "$NBDKIT_PID" 2>/dev/null || true
  wait "$NBDKIT_PID" 2>/dev/null || true
}

# rampool-fuse (test-fuse.sh, test-zero-nohole.sh; run them with
# MOUNT_NS=own).  fuse_setup: the mount point $MNT and the clean-up.
# start_fuse KEY=VALUE...: start it on $MNT and wait until $MNT/disk
# has the size EXPECT_SIZE; sets FUSE_PID.  Stop it with SIGTERM or
# fusermount3 -u, wait "$FUSE_PID", then set FUSE_PID= again.
RAMPOOL_FUSE=$abs_top_builddir/client/rampool-fuse
FUSE_PID=
is_mounted () { grep -q " $MNT fuse" /proc/mounts; }
fuse_setup () {
  requires fusermount3 fuse3
  [ -c /dev/fuse ] || fail "/dev/fuse missing: the FUSE test needs the fuse driver"
  MNT=$TMP/mnt
  mkdir -p "$MNT"
  # stop it first (it unmounts itself), then make sure nothing is left
  on_exit '[ -n "$FUSE_PID" ] && kill "$FUSE_PID" 2>/dev/null; wait "$FUSE_PID" 2>/dev/null; is_mounted && fusermount3 -u -z "$MNT"'
}
start_fuse () {
  "$RAMPOOL_FUSE" "$MNT" servers="$SERVERS" "$@" >>"$TMP/fuse.log" 2>&1 &
  FUSE_PID=$!
  _pids+=("$FUSE_PID")
  # ready: the disk file is there with its size
  for _ in $(seq 200); do
    [ "$(stat -c %s "$MNT/disk" 2>/dev/null)" = "$EXPECT_SIZE" ] && return 0
    kill -0 "$FUSE_PID" 2>/dev/null || fail "rampool-fuse exited at start-up"
    sleep 0.05
  done
  fail "rampool-fuse: $MNT/disk did not appear"
}
