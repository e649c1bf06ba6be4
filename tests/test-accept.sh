#!/bin/bash
# A memserver that cannot allocate for a new connection refuses it and
# keeps accepting (it used to stop polling its listener for good after
# one failed allocation), and a connection that has not authenticated
# costs about a kilobyte (it used to get a 4.3 MiB receive buffer
# before it sent a byte).  See tests/accept.py.
source "${srcdir:-.}/functions.sh"
requires python3
requires prlimit util-linux

start_memserver a
# AddressSanitizer reserves terabytes of address space for its shadow
# and has its own allocator: an address-space limit makes nothing fail,
# and redzones make every allocation bigger.  Nothing to measure there.
vmsize_kib=$(awk '/^VmSize:/ { print $2 }' "/proc/$MS_PID_a/status")
if [ "$vmsize_kib" -gt $((1 << 30)) ]; then
  echo "SKIP: the memserver maps ${vmsize_kib} KiB: a sanitizer build"
  exit 77
fi
python3 "${srcdir:-.}/accept.py" wedge "$MS_PORT_a" "$MS_PID_a" ||
  fail "the listener stopped accepting after an allocation failure"
grep -q "refused: out of memory for a new connection\|out-of-memory events" \
  "$TMP/a.log" || fail "no log line for the refused connections"
kill -0 "$MS_PID_a" || fail "the memserver died"

"$RAMPOOL" keygen "$TMP/key" >/dev/null
start_memserver b --key-file "$TMP/key"
python3 "${srcdir:-.}/accept.py" cost "$MS_PORT_b" "$MS_PID_b" "$TMP/key" 300 ||
  fail "unauthenticated connections cost too much"
echo "PASS"
