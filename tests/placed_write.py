#!/usr/bin/env python3
"""WRITEs received straight into the region (docs/protocol.md section 5,
WRITE), driven on the wire.  A WRITE of 64 KiB or more is "placed": the
memserver reads its payload into the extent as it arrives.  Each part
below first waits until the server says (metric writes_placed) that it
is placing the WRITE, then goes on:

  1. pieces: the payload comes in odd-sized pieces that split 4 KiB
     blocks, and the last piece carries a small WRITE and a READ after
     it; every reply comes in order and every byte reads back;
  2. freed meanwhile: another connection of the owner FREEs the extent
     and allocates the server's whole memory again; the rest of the
     payload then arrives.  The WRITE must be answered ENOENT and every
     new extent must still read zeros: no byte may land in memory that
     has left the extent (another owner's, in general);
  3. fenced meanwhile: a connection of a newer generation joins, which
     closes the placing one.  Every 4 KiB block of the range must read
     either its old or its new bytes, never a mix, and nothing sent
     after the fence may land;
  4. a WRITE past its extent's end is not placed: answered EINVAL once
     its payload is in, the connection still usable;
  5. the last bytes wake the server: while a large payload comes, the
     server asks the kernel to wake it only once 256 KiB of it is there
     (SO_RCVLOWAT); once it has read all but 5000 bytes, those 5000 and
     a READ behind them must still be answered.

Usage: placed_write.py PORT METRICS_PORT.  Exits
non-zero on the first thing the server gets wrong.
"""
import fcntl
import os
import sys
import termios
import time

from rpwire import (Checks, Conn, Closed, frame, metric, server_rx_queues,
                    WRITE, READ, FREE, OK, ENOENT, EINVAL, ENOSPC, errname,
                    MIB, KIB)

port = int(sys.argv[1])
mport = int(sys.argv[2])
BLOCK = 4096
chk = Checks("placed_write.py")
fail, ok = chk.fail, chk.ok


def wait_metric(name, want, what):
    """Wait until counter `name` reaches want (the server got as far as
    `what`); fail after 20 s."""
    deadline = time.monotonic() + 20
    while metric(mport, name) < want:
        if time.monotonic() > deadline:
            fail("timed out waiting for %s (%s = %d, want %d)"
                 % (what, name, metric(mport, name), want))
        time.sleep(0.02)


# --- 1. pieces --------------------------------------------------------

a = Conn(port)
a.hello()
x = chk.alloc(a, MIB)
data = os.urandom(MIB)
small = os.urandom(BLOCK)
placed = metric(mport, "writes_placed")
f = frame(WRITE, x, 0, data, id=100)
cuts = [40 + 1000, 3001, 70000, 5, 4096, 200000, 1]   # header + payload
pieces, pos = [], 0
for n in cuts:
    pieces.append(f[pos:pos + n])
    pos += n
pieces.append(f[pos:] + frame(WRITE, x, 2 * BLOCK, small, id=101) +
              frame(READ, x, BLOCK, count=4 * BLOCK, id=102))
a.send_raw(pieces[0])
wait_metric("writes_placed", placed + 1, "the 1 MiB WRITE placed")
for p in pieces[1:]:
    a.send_raw(p)
err, _ = a.reply_to(100)
ok(err == OK, "placed WRITE: %s" % errname(err))
err, _ = a.reply_to(101)
ok(err == OK, "WRITE after the placed one: %s" % errname(err))
err, got = a.reply_to(102)
want = data[BLOCK:2 * BLOCK] + small + data[3 * BLOCK:5 * BLOCK]
ok(err == OK and got == want,
   "READ after the two WRITEs on one connection: %s, %s"
   % (errname(err), "data right" if got == want else "data wrong"))
expect = bytearray(data)
expect[2 * BLOCK:3 * BLOCK] = small
ok(a.read(x, 0, MIB) == bytes(expect), "the placed WRITE read back wrong")

# --- 2. the extent freed while its payload arrives ---------------------

b = Conn(port)
b.hello(a.owner)            # the same owner, beside a
y = chk.alloc(a, MIB)
p = os.urandom(MIB)
f = frame(WRITE, y, 0, p, id=200)
cut = 40 + 200 * KIB + 1000
placed = metric(mport, "writes_placed")
lost = metric(mport, "writes_placed_lost")
a.send_raw(f[:cut])
wait_metric("writes_placed", placed + 1, "the WRITE to the freed extent placed")
ok(b.call(FREE, handle=y)[0] == OK, "FREE of the extent being written")
# Take every byte the server has: whichever extent now lies where y
# lay must not receive the rest of y's WRITE.
fresh = []
while True:
    err, h = b.alloc(MIB)
    if err == ENOSPC:
        break
    ok(err == OK, "ALLOC after the FREE: %s" % errname(err))
    fresh.append(h)
ok(len(fresh) >= 1, "no memory to allocate after the FREE")
zeros = bytes(MIB)
for h in fresh:
    ok(b.read(h, 0, MIB) == zeros, "a fresh extent does not read zeros")
a.send_raw(f[cut:])
err, _ = a.reply_to(200)
ok(err == ENOENT, "WRITE whose extent was freed meanwhile: %s, not ENOENT"
   % errname(err))
ok(metric(mport, "writes_placed_lost") == lost + 1, "writes_placed_lost not counted")
for i, h in enumerate(fresh):
    got = b.read(h, 0, MIB)
    if got != zeros:
        off = next(k for k in range(MIB) if got[k] != 0)
        fail("the rest of a WRITE to a freed extent landed in extent %d"
             " allocated after it (first byte at %d)" % (i, off))
    chk.count += 1
ok(not a.is_closed(), "the connection of the ENOENT WRITE was closed")
for h in fresh:
    ok(b.call(FREE, handle=h)[0] == OK, "FREE")
a.close()
b.close()

# --- 3. fenced while its payload arrives -------------------------------

owner = os.urandom(16)
a = Conn(port)
a.hello(owner, fence=1)
z = chk.alloc(a, MIB)
old = os.urandom(MIB)
a.write(z, 0, old)
new = os.urandom(MIB)
f = frame(WRITE, z, 0, new, id=300)
cut = 40 + 300 * KIB + 2049          # ends inside a block
placed = metric(mport, "writes_placed")
a.send_raw(f[:cut])
wait_metric("writes_placed", placed + 1, "the WRITE to be fenced placed")
c = Conn(port)
c.hello(owner, fence=2)             # closes a
try:
    a.send_raw(f[cut:])
except Closed:
    pass
got = c.read(z, 0, MIB)
sent = cut - 40
for k in range(0, MIB, BLOCK):
    blk = got[k:k + BLOCK]
    if blk == old[k:k + BLOCK]:
        continue
    ok(blk == new[k:k + BLOCK],
       "block at %d is torn: neither its old nor its new bytes" % k)
    ok(k + BLOCK <= sent, "block at %d, sent after the fence, landed" % k)
a.close()

# --- 4. a WRITE past its extent's end is not placed --------------------

w = chk.alloc(c, MIB)
placed = metric(mport, "writes_placed")
f = frame(WRITE, w, MIB - BLOCK, os.urandom(64 * KIB), id=400)
c.send_raw(f[:40 + 1000])
c.send_raw(f[40 + 1000:])
err, _ = c.reply_to(400)
ok(err == EINVAL, "WRITE past the extent's end: %s, not EINVAL" % errname(err))
ok(metric(mport, "writes_placed") == placed, "a WRITE past its extent was placed")
ok(c.read(w, 0, MIB) == zeros, "a refused WRITE changed its extent")

# --- 5. the last bytes of a placed payload wake the server -------------

data = os.urandom(MIB)
f = frame(WRITE, w, 0, data, id=500) + frame(READ, w, MIB - BLOCK,
                                               count=BLOCK, id=501)
tail = 5000 + 40                      # the payload's last bytes + READ
placed = metric(mport, "writes_placed")
c.send_raw(f[:40 + 1000])
wait_metric("writes_placed", placed + 1, "the WRITE with a late tail placed")
c.send_raw(f[40 + 1000:-tail])
# The server has read all it was sent (none left in this socket's send
# queue, none in the server's receive queue): only the tail is owed.
deadline = time.monotonic() + 20
while (fcntl.ioctl(c.sock, termios.TIOCOUTQ, b"\0" * 4) != b"\0" * 4 or
       server_rx_queues(port).get(c.local_port()) != 0):
    if time.monotonic() > deadline:
        fail("the server did not read the first %d bytes of a placed WRITE"
             % (MIB - 5000))
    time.sleep(0.02)
c.send_raw(f[-tail:])
try:
    err, _ = c.reply_to(500)
except (Closed, TimeoutError) as e:
    fail("no reply once the last 5000 bytes of a placed WRITE came"
         " (the server still waits for more than it is owed?): %s" % e)
ok(err == OK, "placed WRITE with a late tail: %s" % errname(err))
err, got = c.reply_to(501)
ok(err == OK and got == data[-BLOCK:],
   "READ behind a placed WRITE with a late tail: %s" % errname(err))
ok(c.read(w, 0, MIB) == data, "a placed WRITE with a late tail read back wrong")
c.close()

chk.done()
