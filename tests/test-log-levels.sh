#!/bin/bash
# Log lines say what they are: a healthy start and I/O through the
# plugin print no line with "error" (nbdkit has no info level; the
# plugin's info lines are nbdkit debug lines, shown with -v), -v shows
# them as "rampool: info:", and a real problem (a server that does not
# answer at start) is still a warning without -v.
source "${srcdir:-.}/functions.sh"
requires nbdkit

start_memserver s1
start_memserver s2
run_plugin () {   # LOG NBDKIT-FLAGS... -- KEYS...: nbdkit -U - --run verify
  local log=$1; shift
  local flags=()
  while [ "$1" != -- ]; do flags+=("$1"); shift; done
  shift
  nbdkit -f -U - "${flags[@]}" "$PLUGIN" "$@" \
    --run "'$RAMPOOL' verify --mib=2 \"\$uri\"" >"$log" 2>&1 ||
    { cat "$log"; fail "nbdkit ${flags[*]} $*"; }
  grep -q "verify: OK" "$log" || { cat "$log"; fail "no verify OK"; }
}

run_plugin "$TMP/quiet.log" -- servers="$SERVERS" size=8M replicas=2
if grep -i "error" "$TMP/quiet.log"; then fail "a healthy start printed 'error'"; fi
grep -q "rampool: info:" "$TMP/quiet.log" && fail "info lines without -v"

run_plugin "$TMP/verbose.log" "${NBDKIT_VERBOSE[@]}" -- servers="$SERVERS" \
  size=8M replicas=2
grep -q "debug: rampool: info: pool open: 2 of 2 servers up" "$TMP/verbose.log" ||
  fail "no 'rampool: info: pool open' debug line with -v"
if grep "error:.*rampool: info" "$TMP/verbose.log"; then
  fail "an info line printed as an error"
fi

# A server that does not answer: a warning, shown without -v.
dead=127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run_plugin "$TMP/warn.log" -- servers="$SERVERS,$dead" size=8M replicas=2
grep -q "rampool: warning: server $dead: " "$TMP/warn.log" ||
  { cat "$TMP/warn.log"; fail "no warning for the server that did not answer"; }
echo "PASS: no error on a healthy start; info with -v; warnings always"
