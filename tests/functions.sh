# Shared by the shell tests: start and stop real memservers on
# loopback, find the built binaries, clean up on exit.
#
# Every process a test starts is recorded by PID and killed on exit;
# readiness is the memserver's --port-file (written once it listens),
# never a sleep.

set -euo pipefail

# `... | has PATTERN`: grep that reads all of its input.  `grep -q`
# exits at the first match, so under pipefail the writer's SIGPIPE
# would fail a pipeline whose pattern did match.
has () { grep "$@" >/dev/null; }

: "${abs_top_builddir:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
MEMSERVER=$abs_top_builddir/memserver/memserver
PLUGIN=$abs_top_builddir/nbdkit-plugin/.libs/nbdkit-rampool-plugin.so
RAMPOOL=$abs_top_builddir/client/rampool
# RP_FRONTEND=nbd: start_nbdkit starts rampool-nbd instead of nbdkit
# with the plugin (same keys, same socket, same log file): the nbd-*.sh
# tests run other tests' sequences through it.
RAMPOOL_NBD=$abs_top_builddir/client/rampool-nbd
: "${RP_FRONTEND:=nbdkit}"
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
      # What went wrong often scrolled out of the tail: the warnings
      # and errors first (a CI log is all there is of a failed run).
      if grep -qE '(warn|warning|error):' "$f"; then
        echo "---- $f (warnings and errors, the last 60)"
        grep -E '(warn|warning|error):' "$f" | grep -v ': debug: ' | tail -n 60
      fi
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
# MS_PORT_<NAME>, MS_HOST_<NAME>, MS_ADDR_<NAME> (HOST:PORT) and
# MS_PID_<NAME>, appends HOST:PORT to SERVERS.
SERVERS=
start_memserver () {
  _memserver_launch "$@"
  _memserver_ready "$1"
}

# start_memserver_metrics NAME [ARGS...]: start_memserver NAME with its
# Prometheus endpoint on a loopback port of its choosing, MS_MPORT_NAME.
start_memserver_metrics () {
  local name=$1; shift
  start_memserver "$name" --metrics-listen 127.0.0.1:0 \
    --metrics-port-file "$TMP/$name.mport" "$@"
  wait_for_file "$TMP/$name.mport" "metrics port of memserver $name"
  printf -v "MS_MPORT_$name" %s "$(cat "$TMP/$name.mport")"
}

# start_memservers PREFIX N [ARGS...]: start_memserver PREFIX1 ...
# PREFIXN, all launched at once, then each waited for: a pool of
# hundreds starts in seconds, not one readiness poll after another.
start_memservers () {
  local prefix=$1 n=$2 i; shift 2
  for i in $(seq "$n"); do _memserver_launch "$prefix$i" "$@"; done
  for i in $(seq "$n"); do _memserver_ready "$prefix$i"; done
}

_memserver_launch () {
  local name=$1; shift
  local listen=${MS_LISTEN:-127.0.0.1:0}
  rm -f "$TMP/$name.port"
  "$MEMSERVER" --listen "$listen" --size "${MS_SIZE:-256M}" \
    --no-mlock --port-file "$TMP/$name.port" "$@" >>"$TMP/$name.log" 2>&1 &
  local pid=$!
  _pids+=("$pid")
  printf -v "MS_PID_$name" %s "$pid"
  printf -v "MS_HOST_$name" %s "${listen%:*}"
}

_memserver_ready () {
  local name=$1 host_var=MS_HOST_$1
  wait_for_file "$TMP/$name.port" "memserver $name"
  printf -v "MS_PORT_$name" %s "$(cat "$TMP/$name.port")"
  local addr=${!host_var}:$(cat "$TMP/$name.port")
  printf -v "MS_ADDR_$name" %s "$addr"
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

# nbdkit's flags in the tests: -v, for the plugin's info lines (its
# "pool open", "server ... back" and others are nbdkit debug lines),
# without nbdkit's own line per request.
NBDKIT_VERBOSE=(-v -D nbdkit.backend.datapath=0)

# Start nbdkit with the plugin in the background on a Unix socket;
# sets NBD_SOCK, NBD_URI, NBDKIT_PID.  Waits for the socket.
start_nbdkit () {
  NBD_SOCK=$TMP/nbd.sock
  rm -f "$NBD_SOCK" "$TMP/nbdkit.pid"
  local opened
  opened=$(grep -c "rampool: info: pool open" "$TMP/nbdkit.log" 2>/dev/null || true)
  if [ "$RP_FRONTEND" = nbd ]; then
    "$RAMPOOL_NBD" -U "$NBD_SOCK" -P "$TMP/nbdkit.pid" \
      servers="$SERVERS" "$@" >>"$TMP/nbdkit.log" 2>&1 &
  else
    nbdkit -f -U "$NBD_SOCK" -P "$TMP/nbdkit.pid" "${NBDKIT_VERBOSE[@]}" \
      ${NBDKIT_FLAGS:-} "$PLUGIN" \
      servers="$SERVERS" "$@" >>"$TMP/nbdkit.log" 2>&1 &
  fi
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

# steady VAR COMMAND...: COMMAND prints the same in two looks 0.5 s
# apart (for wait_until: nothing passing by); then that is put in VAR.
steady () {
  local var=$1 a b; shift
  a=$("$@"); sleep 0.5; b=$("$@")
  [ "$a" = "$b" ] && printf -v "$var" %s "$b"
}

# checked_io_start LOG [ARG...]: checked parallel I/O (test_parallel_io,
# every byte against a shadow copy; ARGs are its own, e.g. --reopen) on
# $NBD_URI in the background, output to LOG, until checked_io_stop LOG;
# sets IO_PID.  checked_io_alive LOG fails if it has ended already.
checked_io_start () {
  local log=$1; shift
  rm -f "$TMP/stop"
  "$TESTS_BIN/test_parallel_io" --ops 2000000 --until-file "$TMP/stop" \
    "$@" "$NBD_URI" >"$log" 2>&1 &
  IO_PID=$!
  _pids+=("$IO_PID")
}
checked_io_alive () {
  kill -0 "$IO_PID" 2>/dev/null || { tail -n 30 "$1"; fail "the I/O checker ended early"; }
}
checked_io_stop () {
  touch "$TMP/stop"
  wait "$IO_PID" || { tail -n 20 "$1"; fail "I/O saw errors or mismatches ($1)"; }
  has PASS "$1" || fail "no PASS from the I/O checker ($1)"
}

MiB=$((1024 * 1024))

# The plugin's stats-file=: set STATS to its path (and pass
# stats-file="$STATS").  stat_of KEY: one value.
stat_of () { awk -v k="$1" '$1 == k { print $2 }' "$STATS" 2>/dev/null; }

# stats_are KEY OP N [KEY OP N]...: true when $STATS has every KEY with
# a value that compares to N as OP says (-eq -ne -gt -ge -lt -le, as in
# test(1)); false when a KEY is missing or there is no file yet.  One
# read of the file: the plugin replaces it whole, so the figures all
# come from the same moment.  E.g.
#   stats_are servers_up -eq 2 extents_healthy -eq 8 recovered -gt 0
stats_are () {
  [ $(( $# % 3 )) = 0 ] && [ $# -gt 0 ] || fail "stats_are: KEY OP N...: '$*'"
  local i
  for (( i = 2; i <= $#; i += 3 )); do
    case ${!i} in -eq|-ne|-gt|-ge|-lt|-le) ;; *) fail "stats_are: operator '${!i}'" ;; esac
  done
  awk -v want="$*" '
    { v[$1] = $2 }
    END {
      n = split(want, w, " ")
      for (i = 1; i < n; i += 3) {
        k = w[i]; op = w[i + 1]; x = w[i + 2] + 0
        if (!(k in v)) exit 1
        y = v[k] + 0
        if (op == "-eq" && !(y == x) || op == "-ne" && !(y != x) ||
            op == "-gt" && !(y > x) || op == "-ge" && !(y >= x) ||
            op == "-lt" && !(y < x) || op == "-le" && !(y <= x))
          exit 1
      }
    }' "$STATS" 2>/dev/null
}

# server_is WHO STATE [EPOCH]: $STATS has server WHO in STATE ("up",
# "down"...): its line is "server ADDR STATE ...", or with EPOCH exactly
# "server ADDR STATE epoch EPOCH" (nothing after it).  WHO: HOST:PORT
# as the client knows it, or the NAME of a memserver started by
# start_memserver (its MS_ADDR_NAME, or PX_ADDR_NAME when the client
# reaches it through faultproxy.sh).
server_is () {
  local addr=$1 px_var=PX_ADDR_$1 ms_var=MS_ADDR_$1
  case $addr in
    *:*) ;;
    *) addr=${!px_var:-${!ms_var}} ;;
  esac
  awk -v a="$addr" -v s="$2" -v e="${3:-}" '
    $1 == "server" && $2 == a && $3 == s &&
      (e == "" || NF == 5 && $4 == "epoch" && $5 == e) { found = 1 }
    END { exit !found }' "$STATS" 2>/dev/null
}

# poll_until [--polls] LIMIT COMMAND...: run COMMAND every 0.1 s until
# it succeeds (status 0), or give up (status 1): after LIMIT seconds, or
# with --polls after LIMIT pauses of 0.1 s (LIMIT + 1 tries: at least
# LIMIT / 10 seconds, longer when COMMAND is slow or the machine busy).
poll_until () {
  local polls=
  [ "$1" = --polls ] && { polls=1; shift; }
  local limit=$1; shift
  if [ -n "$polls" ]; then
    for _ in $(seq "$limit"); do "$@" && return 0; sleep 0.1; done
    "$@" && return 0
    return 1
  fi
  local end=$(( $(now_ms) + limit * 1000 ))
  until "$@"; do
    [ "$(now_ms)" -ge "$end" ] && return 1
    sleep 0.1
  done
}

# retry N COMMAND...: run COMMAND until it succeeds, at most N times,
# 0.3 s apart (the two-guest scripts, waiting for the other guest).
retry () {
  local n=$1 i; shift
  for i in $(seq "$n"); do "$@" && return 0; sleep 0.3; done
  return 1
}

# pair_servers (the two-guest scripts' compute side; the script
# defines step): SERVERS, the donor's memservers at TCP1 and TCP2 (what
# pool_used asks), and RSERVERS, the same at RDMA1 and RDMA2 over RDMA
# (what nbdkit uses); waits until each answers over RDMA.
pair_servers () {
  local a
  SERVERS=$RPVM_PEER:$TCP1,$RPVM_PEER:$TCP2
  RSERVERS=rdma://$RPVM_PEER:$RDMA1,rdma://$RPVM_PEER:$RDMA2
  step "the donor's memservers answer over RDMA"
  for a in ${RSERVERS//,/ }; do
    retry 100 sh -c "'$RAMPOOL' status --raw $a 2>/dev/null | grep -q ' up '" ||
      fail "memserver $a does not answer"
  done
}

# wait_until [--polls] LIMIT WHAT COMMAND...: poll_until, and when it
# gives up, show $STATS (if there is one) and fail.
wait_until () {
  local polls=()
  [ "$1" = --polls ] && { polls=(--polls); shift; }
  local limit=$1 what=$2; shift 2
  poll_until "${polls[@]+"${polls[@]}"}" "$limit" "$@" && return 0
  [ -f "${STATS:-}" ] && cat "$STATS"
  if [ ${#polls[@]} = 0 ]; then
    fail "timed out after ${limit}s waiting for $what"
  fi
  fail "timed out after $limit polls waiting for $what"
}

stop_nbdkit () {
  kill "$NBDKIT_PID" 2>/dev/null || true
  wait "$NBDKIT_PID" 2>/dev/null || true
}

# read_exact WHAT N: the whole disk, N blocks of 1 MiB, read against
# $TMP/data (nbd_blocks): every block must be right.
read_exact () {
  local res
  res=$("$TESTS_BIN/nbd_blocks" "$NBD_URI" $MiB "$TMP/data" 2>>"$TMP/blocks.log")
  echo "$1: $res"
  [ "$res" = "ok $2 eio 0 mismatch 0 error 0" ] || fail "$1: $res"
}

# wait_drained NAME: memserver NAME, told to drain, stops by itself:
# status 0, "drained: nothing left" in its log, no extent dropped.
wait_drained () {
  local pid_var=MS_PID_$1 rc=0
  local pid=${!pid_var}
  # Exited (a zombie until waited for: kill -0 would still succeed).
  _drained_gone () {
    local st
    st=$(ps -o stat= -p "$pid" 2>/dev/null || true)
    [ -z "$st" ] || [ "${st:0:1}" = Z ]
  }
  wait_until 120 "$1 to drain and stop" _drained_gone
  wait "$pid" || rc=$?
  [ "$rc" = 0 ] || fail "$1 ended its drain with status $rc"
  has "drained: nothing left; stopping" "$TMP/$1.log" ||
    fail "$1 stopped without saying it drained"
  ! has "dropped extent" "$TMP/$1.log" || fail "$1 dropped extents at its deadline"
}

# read_blocks BLOCK_SIZE FILE: read the whole disk (NBD_URI) block by
# block against FILE (nbd_blocks, with each EIO block named); sets
# BLOCKS to its counts, "ok N eio N mismatch N error N", and EIO_AT to
# the numbers of the blocks that failed with EIO, each followed by a
# space (e.g. "8 9 10 11 "; empty when none).
read_blocks () {
  NBD_BLOCKS_LIST_EIO=1 "$TESTS_BIN/nbd_blocks" "$NBD_URI" "$1" "$2" \
    >"$TMP/blocks" 2>"$TMP/blocks.err" || { cat "$TMP/blocks.err"; fail "nbd_blocks failed"; }
  cat "$TMP/blocks.err"
  BLOCKS=$(cat "$TMP/blocks")
  EIO_AT=$(awk -v bs="$1" '/EIO in the block at/ { printf "%d ", $NF / bs }' "$TMP/blocks.err")
}

# write_fails_eio WHAT BLOCK_SIZE FILE FIRST COUNT: nbd_blocks' write of
# blocks FIRST..FIRST+COUNT-1 of FILE must fail with EIO (exit 3).
write_fails_eio () {
  local what=$1 rc=0; shift
  "$TESTS_BIN/nbd_blocks" "$NBD_URI" "$1" "$2" write "$3" "$4" || rc=$?
  [ "$rc" = 3 ] || fail "$what did not fail with EIO (exit $rc)"
}

# Tests that look into a memserver's memory (tests/procmem.py):
# use_procmem makes their memservers 64 MiB (MS_SIZE), the size
# procmem.py finds the region by (REGION), and sets PM, the command:
# $PM peek "$MS_PID_name" ADDR LEN FILE...
use_procmem () {
  requires python3
  PM="python3 ${srcdir:-.}/procmem.py"
  MS_SIZE=64M
  REGION=$((64 * MiB))
}

# rampool-fuse (test-fuse.sh, test-zero-nohole.sh; run them with
# MOUNT_NS=own).  fuse_setup: the mount point $MNT and the clean-up.
# start_fuse KEY=VALUE...: start it on $MNT and wait until $MNT/disk
# has the size EXPECT_SIZE; sets FUSE_PID.  stop_fuse term|unmount:
# stop it with SIGTERM or fusermount3 -u; it must exit 0 and leave
# nothing mounted.
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
stop_fuse () {
  local how
  case $1 in
    term) kill "$FUSE_PID"; how=SIGTERM ;;
    unmount) fusermount3 -u "$MNT"; how="fusermount3 -u" ;;
    *) fail "stop_fuse term|unmount" ;;
  esac
  wait "$FUSE_PID" || fail "rampool-fuse exited with $? after $how"
  FUSE_PID=
  if is_mounted; then fail "still mounted after $how"; fi
}
