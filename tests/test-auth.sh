#!/bin/bash
# Authentication: with a cluster key on the memservers, only clients
# holding the same key get in (mutual challenge-response); a missing
# or wrong key is refused with a clear log line on both sides; an
# unauthenticated server is refused by a client that has a key;
# nothing but AUTH is served before authentication; the key never
# appears in a log or on a command line.
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires python3

"$RAMPOOL" keygen "$TMP/k1" >/dev/null
"$RAMPOOL" keygen "$TMP/k2" >/dev/null
[ "$(stat -c %a "$TMP/k1")" = 600 ] || fail "keygen did not make a 0600 file"
if "$RAMPOOL" keygen "$TMP/k1" 2>"$TMP/kg.log"; then fail "keygen overwrote a key"; fi
grep -q "File exists" "$TMP/kg.log" || fail "keygen: no clear error for an existing file"

for i in 1 2 3; do start_memserver "s$i" --key-file "$TMP/k1"; done

# The right key: real I/O, checked.
nbdkit -U - "$PLUGIN" servers="$SERVERS" size=64M key-file="$TMP/k1" \
  --run "'$TESTS_BIN/test_parallel_io' --ops 2000 \"\$uri\"" >>"$TMP/ok.log" 2>&1 ||
  { cat "$TMP/ok.log"; fail "I/O with the right key"; }
grep -q PASS "$TMP/ok.log" || fail "no PASS with the right key"
"$RAMPOOL" status --key-file="$TMP/k1" "$SERVERS" >/dev/null || fail "status with the key"

# expect_refused LOG PATTERN ARGS...: nbdkit must exit non-zero by itself.
expect_refused () {
  local log=$1 pattern=$2; shift 2
  local rc=0
  rm -f "$TMP/a.sock"
  timeout 20 nbdkit -f -U "$TMP/a.sock" "$PLUGIN" servers="$SERVERS" size=64M "$@" \
    >"$TMP/$log" 2>&1 || rc=$?
  [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "nbdkit started (status $rc) with $*"
  grep -q "$pattern" "$TMP/$log" || { cat "$TMP/$log"; fail "expected '$pattern'"; }
}
expect_refused nokey.log "requires the cluster key: set key-file="
expect_refused wrongkey.log "does not hold our cluster key" key-file="$TMP/k2"
grep -q "client left before authenticating" "$TMP/s1.log" ||
  fail "memserver did not log the refused client"
# status without the key: DOWN with the reason.
"$RAMPOOL" status "$SERVERS" >"$TMP/st.log" 2>&1 && fail "status without key succeeded"
grep -q "requires the cluster key" "$TMP/st.log" || fail "status: unclear error"

# A forged client proof is refused by the server (and logged).
python3 "${srcdir:-.}/malformed.py" "$MS_PORT_s1" 5 --keyed >"$TMP/keyed.log" 2>&1 ||
  { cat "$TMP/keyed.log"; fail "keyed server served an unauthenticated peer"; }
grep -q "authentication failed" "$TMP/s1.log" || fail "no log line for a forged proof"

# A client with a key refuses a server without one.
start_memserver open
SERVERS=127.0.0.1:$MS_PORT_open
expect_refused open.log "the server has no cluster key" replicas=1 key-file="$TMP/k1"

# The key is in no log and on no command line.
key1=$(cat "$TMP/k1")
key2=$(cat "$TMP/k2")
if grep -r -q -e "$key1" -e "$key2" "$TMP"/*.log; then fail "a key appears in a log"; fi
for p in "${_pids[@]}"; do
  if tr '\0' ' ' </proc/$p/cmdline 2>/dev/null | has -e "$key1" -e "$key2"; then
    fail "a key appears on a command line"
  fi
done
echo "PASS"
