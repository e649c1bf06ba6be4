#!/usr/bin/env python3
"""The memserver's fence (docs/protocol.md 4.4), driven on the wire.

One owner id, connections of increasing generation:
  A (fence 1) allocates an extent and writes X;
  B (fence 2, same owner) joins: the server closes A at once, so a
    WRITE of Y sent on A afterwards gets no reply and does not land
    (B reads X); B is in the same owner session as A;
  C (fence 1 again) is refused with EPERM and then closed, and B is
    not disturbed;
  D (fence 2, equal) joins beside B without closing it;
  E (fence 3) closes both B and D; what they send no longer lands.
With --key-file KEY the same runs through AUTH (the session id comes in
the AUTH reply), plus: an AUTH proof made over another fence than the
HELLO carried (a fence raised in flight) is refused and fences nobody:
E keeps working and a new fence-3 connection still joins.  Another
owner is never affected by this owner's generation.

Usage: fence.py PORT [--key-file KEY].  Exits non-zero on the first
thing the server gets wrong.
"""
import os
import sys

from rpwire import (Conn, Closed, Refused, READ, WRITE, FREE, PING,
                    OK, EPERM, errname)

port = int(sys.argv[1])
key = None
if len(sys.argv) > 3 and sys.argv[2] == "--key-file":
    from rpwire import load_key
    key = load_key(sys.argv[3])
EXT = 64 * 1024
checks = 0


def fail(msg):
    raise SystemExit("fence.py: FAIL: %s" % msg)


def ok(cond, msg):
    global checks
    if not cond:
        fail(msg)
    checks += 1


def join(owner, fence, **kw):
    c = Conn(port)
    try:
        c.hello(owner, fence, key, **kw)
    except Refused as e:
        fail("generation %d of a fresh-enough owner refused: %s" % (fence, e))
    return c


def refused(owner, fence, **kw):
    """A connection that must be refused (EPERM), then closed."""
    c = Conn(port)
    try:
        c.hello(owner, fence, key, **kw)
    except Refused as e:
        ok(e.error == EPERM, "refusal with %s, not EPERM" % errname(e.error))
        ok(c.is_closed(), "a refused connection (fence %d) still answers" % fence)
        c.close()
        return
    fail("a connection with fence %d was let in (older generation, or a"
         " proof over another fence)" % fence)


def read(c, handle):
    err, data = c.call(READ, handle=handle, count=4096)
    ok(err == OK, "READ: %s" % errname(err))
    return data


def write_unanswered(c, handle, data, who):
    """A WRITE on a fenced-off connection: no reply, the connection
    ends."""
    try:
        c.send(WRITE, handle=handle, payload=data)
        error, _, _, _ = c.reply()
    except Closed:
        ok(True, "")
        return
    fail("a WRITE on %s (fenced off) was answered (%s)" % (who, errname(error)))


owner = os.urandom(16)
X, Y, Z = (os.urandom(4096) for _ in range(3))

a = join(owner, 1)
err, handle = a.alloc(EXT)
ok(err == OK, "ALLOC: %s" % errname(err))
ok(a.call(WRITE, handle=handle, payload=X)[0] == OK, "WRITE X on A")
ok(read(a, handle) == X, "A does not read back X")

b = join(owner, 2)
ok(b.session == a.session, "B joined session %d, A was in %d (same owner)"
   % (b.session, a.session))
write_unanswered(a, handle, Y, "A")
ok(read(b, handle) == X, "a WRITE sent on A after B joined landed")

refused(owner, 1)
ok(not b.is_closed(), "a refused older connection closed B")
ok(read(b, handle) == X, "B's extent changed")

d = join(owner, 2)
ok(not b.is_closed(), "an equal generation closed B")
ok(read(d, handle) == X, "D does not see the owner's extent")

e = join(owner, 3)
write_unanswered(b, handle, Y, "B")
write_unanswered(d, handle, Y, "D")
ok(read(e, handle) == X, "a WRITE sent on B or D after E joined landed")
ok(e.call(WRITE, handle=handle, payload=Z)[0] == OK, "WRITE Z on E")
ok(read(e, handle) == Z, "E does not read back Z")
refused(owner, 2)

if key is not None:
    # The fence is bound into the proofs: a HELLO whose fence was raised
    # to 4 in flight, answered with the proof for 3, is refused, and
    # does not fence the owner.
    refused(owner, 4, auth_fence=3)
    ok(not e.is_closed(), "a refused AUTH for fence 4 closed E")
    g = join(owner, 3)
    ok(read(g, handle) == Z, "G (fence 3) does not see the extent")
    g.close()

# Another owner starts at its own generation: fence 1 joins.
other = join(os.urandom(16), 1)
ok(other.call(PING)[0] == OK, "another owner's PING")
other.close()

ok(e.call(FREE, handle=handle)[0] == OK, "FREE")
e.close()
for c in (a, b, d):
    c.close()
print("fence.py: PASS: %d checks on port %d (%s)"
      % (checks, port, "with a cluster key" if key else "no key"))
