# Sourced after functions.sh by the tests that put faultproxy.py
# between the client and the memservers.
#
# start_proxy NAME...: one proxy process fronting memservers NAME...
# (started before with start_memserver); sets PX_PORT_<NAME> (the
# proxy's port for it), PX_ADDR_<NAME> (127.0.0.1:that port: memserver
# NAME as the client knows it, in the stats file and the log),
# PROXY_PID, and PROXY_SERVERS and SERVERS (the servers= list through
# the proxy, in the order given).  Ready when its ports file exists
# (written once the listeners and the control socket are up).
requires python3

FAULTPROXY=${srcdir:-.}/faultproxy.py
PROXY_CTL=$TMP/proxy.ctl

start_proxy () {
  local args=() name port_var
  for name in "$@"; do
    port_var=MS_PORT_$name
    args+=("$name=${!port_var}")
  done
  rm -f "$TMP/proxy.ports"
  python3 "$FAULTPROXY" --ports-file "$TMP/proxy.ports" --control "$PROXY_CTL" \
    "${args[@]}" >>"$TMP/proxy.log" 2>&1 &
  PROXY_PID=$!
  _pids+=("$PROXY_PID")
  wait_for_file "$TMP/proxy.ports" "faultproxy" 400
  PROXY_SERVERS=
  for name in "$@"; do
    port=$(awk -v n="$name" '$1 == n { print $2 }' "$TMP/proxy.ports")
    [ -n "$port" ] || fail "faultproxy: no port for $name"
    printf -v "PX_PORT_$name" %s "$port"
    printf -v "PX_ADDR_$name" %s "127.0.0.1:$port"
    PROXY_SERVERS+="${PROXY_SERVERS:+,}127.0.0.1:$port"
  done
  SERVERS=$PROXY_SERVERS
}

# proxy NAME COMMAND...: steer the link to NAME ("*": every link);
# returns once the proxy says the command took effect.
proxy () {
  local reply
  reply=$(proxy_ctl "$@") || fail "faultproxy: '$*': $reply"
  echo "proxy: $reply"
}

# proxy_ctl NAME COMMAND...: the same, printing the proxy's answer and
# returning non-zero on "error" instead of failing the test.
proxy_ctl () { python3 "$FAULTPROXY" ctl "$PROXY_CTL" "$@"; }

# proxy_status NAME: the proxy's status line for the link to NAME,
# "ok NAME MODE delay MS conns N held H,H,..." (faultproxy.py).
proxy_status () { proxy_ctl "$1" status; }

# notice KIND DEADLINE_MS COUNT LENGTH RESERVED [HANDLE...]: a notice
# frame in hex (protocol.h rp_notice_hdr, then le64 handles), for
# `proxy NAME inject`.
notice () {
  python3 - "$@" <<'PY'
import struct, sys
kind, deadline, count, length, reserved = (int(a) for a in sys.argv[1:6])
handles = [int(h) for h in sys.argv[6:]]
frame = struct.pack("<IIQIIQ", 0x6e505252, kind, deadline, count, length,
                    reserved) + b"".join(struct.pack("<Q", h) for h in handles)
print(frame.hex())
PY
}
