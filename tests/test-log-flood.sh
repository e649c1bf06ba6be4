#!/bin/bash
# Peer-triggered log lines are rate limited per kind for the whole
# memserver, not per connection: 2000 short connections that each
# break the protocol, send a wrong version or leave before AUTH write
# a few lines a second and one "similar messages suppressed" line per
# kind and second, counting the rest (they used to write 2000 lines).
# See tests/log_flood.py.
source "${srcdir:-.}/functions.sh"
requires python3

"$RAMPOOL" keygen "$TMP/key" >/dev/null
start_memserver s1 --key-file "$TMP/key"
python3 "${srcdir:-.}/log_flood.py" "$MS_PORT_s1" "$TMP/key" "$TMP/s1.log" 2000 ||
  fail "the log was flooded"
"$RAMPOOL" status --key-file="$TMP/key" "127.0.0.1:$MS_PORT_s1" >/dev/null ||
  fail "the memserver stopped serving"
echo "PASS"
