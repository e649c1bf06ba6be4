# pool.sh — sourced by bench/encrypt-cost.sh and bench/recovery-time.sh
# (which set $top first): a work directory, memservers on loopback and
# nbdkit with the rampool plugin, every process stopped by PID and the
# directory removed on exit.
#
#   pool_init NAME [SIGNAL]      $work = a new /tmp/NAME.XXXXXX; at exit
#                                each process started here gets SIGNAL
#                                (default TERM)
#   pool_start_memservers N SIZE N memservers of --size SIZE, each ready
#                                (its port file written); sets $servers
#                                (HOST:PORT,...) and ms_pids
#   pool_start_nbdkit KEY=VALUE...  nbdkit -f with the plugin on
#                                $work/sock, ready (socket and pid file);
#                                sets nbdkit_pid and $uri
#   pool_stop_nbdkit             SIGTERM, and wait for it to exit
#   pool_stop_memservers         the same for the memservers

pool_pids=()
pool_signal=TERM

pool_cleanup () {
  for p in "${pool_pids[@]}"; do kill "-$pool_signal" "$p" 2>/dev/null || true; done
  for p in "${pool_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}

pool_init () {
  work=$(mktemp -d "/tmp/$1.XXXXXX")
  pool_signal=${2:-TERM}
  trap pool_cleanup EXIT
  # A signal (^C, or SIGPIPE from `| head`) must still run the clean-up.
  trap 'exit 1' INT TERM HUP PIPE
}

pool_die () { echo "$0: $*" >&2; exit 1; }

pool_start_memservers () {
  local n=$1 size=$2 i
  servers= ms_pids=()
  # A second pool in one run must not read the first one's ports.
  for i in $(seq "$n"); do rm -f "$work/p$i"; done
  for i in $(seq "$n"); do
    "$top/memserver/memserver" --listen 127.0.0.1:0 --size "$size" --no-mlock --quiet \
      --port-file "$work/p$i" 2>>"$work/ms$i.log" &
    ms_pids+=($!)
    pool_pids+=($!)
  done
  for i in $(seq "$n"); do
    for _ in $(seq 200); do [ -s "$work/p$i" ] && break; sleep 0.05; done
    [ -s "$work/p$i" ] || pool_die "memserver $i did not start (see $work/ms$i.log)"
    servers+="${servers:+,}127.0.0.1:$(cat "$work/p$i")"
  done
}

pool_start_nbdkit () {
  rm -f "$work/sock" "$work/pid"
  nbdkit -f -U "$work/sock" -P "$work/pid" "$top/nbdkit-plugin/.libs/nbdkit-rampool-plugin.so" \
    servers="$servers" "$@" 2>>"$work/nbdkit.log" &
  nbdkit_pid=$!
  pool_pids+=($!)
  for _ in $(seq 200); do [ -S "$work/sock" ] && [ -s "$work/pid" ] && break; sleep 0.05; done
  [ -S "$work/sock" ] || pool_die "nbdkit did not start (see $work/nbdkit.log)"
  uri="nbd+unix:///?socket=$work/sock"
}

# pool_stop_memservers: SIGTERM every memserver of the last
# pool_start_memservers, wait for them, and forget their PIDs.
pool_stop_memservers () {
  local p q keep=()
  for p in "${ms_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${ms_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for p in "${pool_pids[@]}"; do
    for q in "${ms_pids[@]}"; do [ "$p" = "$q" ] && continue 2; done
    keep+=("$p")
  done
  pool_pids=("${keep[@]}")
}

pool_stop_nbdkit () {
  local p keep=()
  kill "$nbdkit_pid"
  wait "$nbdkit_pid" 2>/dev/null || true
  # gone: never signal that PID again at exit (it may be reused)
  for p in "${pool_pids[@]}"; do [ "$p" = "$nbdkit_pid" ] || keep+=("$p"); done
  pool_pids=("${keep[@]}")
}
