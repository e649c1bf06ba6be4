#!/bin/bash
# The memserver's fence, on the wire (tests/fence.py): once a client's
# connection of a newer generation has joined its owner, nothing sent
# on an older connection lands (it is closed unread), an older
# generation is refused, an equal one joins, and another owner is not
# affected.  This is what keeps a WRITE that a client gave up on from
# landing after recovery rewrote that copy (docs/protocol.md 4.4); the
# client tests only reach it through timing (test-partition.sh).  Run
# against a memserver without a key and one with --key-file, where the
# fence is also bound into the AUTH proofs.
source "${srcdir:-.}/functions.sh"
requires python3

MS_SIZE=16M
start_memserver plain
python3 "${srcdir:-.}/fence.py" "$MS_PORT_plain" || fail "fence, no key"

"$RAMPOOL" keygen "$TMP/key" >/dev/null
start_memserver keyed --key-file "$TMP/key"
python3 "${srcdir:-.}/fence.py" "$MS_PORT_keyed" --key-file "$TMP/key" ||
  fail "fence, with a cluster key"

# The server said why, each time.
for s in plain keyed; do
  grep -q "client reconnected (generation 2): closed 1 older connection" "$TMP/$s.log" ||
    fail "$s: fencing A off not logged"
  grep -q "client reconnected (generation 3): closed 2 older connection" "$TMP/$s.log" ||
    fail "$s: fencing B and D off not logged"
  grep -q "connection generation 1 is older than this client's 2" "$TMP/$s.log" ||
    fail "$s: refusing generation 1 not logged"
done
grep -q "authentication failed" "$TMP/keyed.log" ||
  fail "keyed: the proof over another fence was not refused as an authentication failure"
echo "PASS"
