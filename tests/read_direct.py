#!/usr/bin/env python3
"""READ replies sent from the region itself (docs/protocol.md section 5,
READ), driven on the wire.  A READ of 64 KiB or more is answered with
the region's bytes handed to the kernel as they are, not copied first;
what the kernel does not take at once is copied before anything else
runs.  Every READ must still answer with what the extent held when it
ran:

  1. pipelined on one connection, in one send: READ 1 MiB, WRITE 4 KiB
     over its start, READ again, ZERO, READ, FREE, READ: each READ sees
     exactly the requests before it (the first one the old data, not
     the WRITE's), the last one ENOENT;
  2. more large READs in one send than are sent from the region at
     once (the rest are copied): every one right;
  3. a client that does not read its replies: its 4 MiB READ has run
     (metric read_bytes) but is still queued; another connection of the
     owner then writes over the extent and FREEs it.  The queued reply
     must carry the old bytes, not the new ones nor zeros.

Usage: read_direct.py PORT METRICS_PORT.  Exits non-zero on the first
thing the server gets wrong.
"""
import os
import sys
import time

from rpwire import (Checks, Conn, frame, metric, WRITE, READ, ZERO, FREE, OK,
                    ENOENT, errname, MIB, KIB)

port = int(sys.argv[1])
mport = int(sys.argv[2])
BLOCK = 4096
chk = Checks("read_direct.py")
fail, ok = chk.fail, chk.ok


# --- 1. one connection, one send ---------------------------------------

a = Conn(port)
a.hello()
x = chk.alloc(a, MIB)
old = os.urandom(MIB)
a.write(x, 0, old)
small = os.urandom(BLOCK)
a.send_raw(frame(READ, x, 0, count=MIB, id=10) +
           frame(WRITE, x, 0, small, id=11) +
           frame(READ, x, 0, count=MIB, id=12) +
           frame(ZERO, x, 64 * KIB, count=64 * KIB, id=13) +
           frame(READ, x, 0, count=MIB, id=14) +
           frame(FREE, x, 0, id=15) +
           frame(READ, x, 0, count=MIB, id=16))
err, got = a.reply_to(10)
ok(err == OK and got == old, "a READ answered with what a WRITE sent"
   " after it changed (%s)" % errname(err))
ok(a.reply_to(11)[0] == OK, "WRITE")
want = bytearray(old)
want[:BLOCK] = small
err, got = a.reply_to(12)
ok(err == OK and got == bytes(want), "READ after the WRITE")
ok(a.reply_to(13)[0] == OK, "ZERO")
want[64 * KIB:128 * KIB] = bytes(64 * KIB)
err, got = a.reply_to(14)
ok(err == OK and got == bytes(want), "READ after the ZERO")
ok(a.reply_to(15)[0] == OK, "FREE")
ok(a.reply_to(16)[0] == ENOENT, "READ after the FREE is not ENOENT")

# --- 2. more large READs than go from the region at once ---------------

y = chk.alloc(a, MIB)
data = os.urandom(MIB)
a.write(y, 0, data)
n = 16
a.send_raw(b"".join(frame(READ, y, i * 64 * KIB, count=64 * KIB, id=100 + i)
                    for i in range(n)))
for i in range(n):
    err, got = a.reply_to(100 + i)
    ok(err == OK and got == data[i * 64 * KIB:(i + 1) * 64 * KIB],
       "READ %d of %d pipelined 64 KiB READs" % (i, n))

# --- 3. a reply still queued when the extent changes --------------------

size = 4 * MIB
z = chk.alloc(a, size)
before = os.urandom(size)
for off in range(0, size, MIB):
    a.write(z, off, before[off:off + MIB])
slow = Conn(port, rcvbuf=4096)
slow.hello(a.owner)                 # the same owner, beside a
read_bytes = metric(mport, "read_bytes")
slow.send_raw(frame(READ, z, 0, count=size, id=300))
deadline = time.monotonic() + 20
while metric(mport, "read_bytes") < read_bytes + size:
    if time.monotonic() > deadline:
        fail("the slow connection's READ did not run")
    time.sleep(0.02)
after = os.urandom(MIB)
a.write(z, 0, after)
a.write(z, 3 * MIB, after)
ok(a.read(z, 0, MIB) == after, "the WRITE over the queued READ's range")
ok(a.call(FREE, handle=z)[0] == OK, "FREE of the queued READ's extent")
err, got = slow.reply_to(300)
ok(err == OK, "the queued READ: %s" % errname(err))
if got != before:
    off = next(k for k in range(size) if got[k] != before[k])
    what = ("the later WRITE's bytes"
            if got[off:off + 16] == after[off % MIB:off % MIB + 16]
            else "zeros" if got[off:off + 16] == bytes(16) else "other bytes")
    fail("a queued READ reply changed after it ran: from byte %d it carries"
         " %s" % (off, what))
chk.count += 1
slow.close()
a.close()

chk.done()
