#!/usr/bin/env python3
"""READ/WRITE/ZERO past an extent's end, checked by what ends up in the
donor's memory.

A fresh memserver places two 64 KiB extents E1 and E2 of one owner side
by side in its region (checked through /proc/PID/mem: E2 starts where
E1 ends), so a bounds check that let one byte through would spill into
E2.  Both are filled with known data; then requests that reach past
E1's end (and past E2's, into free region memory) must each be
answered EINVAL, a READ with no data.  Requests ending exactly at the
end are served.  Afterwards E1 and E2 must hold exactly the expected
bytes, read both through the protocol and from the region itself, the
free memory after E2 must still be zeros, and the server must still
answer.

Usage: bounds.py PORT PID REGION_SIZE.  Every case is run; all that went
wrong is listed before the exit status 1.
"""
import os
import sys

import procmem
from rpwire import (Conn, Closed, READ, WRITE, ZERO, PING, OK, EINVAL,
                    errname)

port, pid, region_size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
EXT = 64 * 1024
GB = 1 << 30
problems = []

c = Conn(port)
c.hello(os.urandom(16), 1)
handles = []
for _ in range(2):
    err, handle = c.alloc(EXT)
    if err != OK:
        raise SystemExit("bounds.py: ALLOC: %s" % errname(err))
    handles.append(handle)
h1, h2 = handles
want1, want2 = bytearray(os.urandom(EXT)), os.urandom(EXT)
for h, data in ((h1, want1), (h2, want2)):
    for off in range(0, EXT, 16384):
        assert c.call(WRITE, handle=h, offset=off, payload=bytes(data[off:off + 16384]))[0] == OK

# Where the two extents are in the donor's memory.
a1 = procmem.find(pid, region_size, bytes(want1))
a2 = procmem.find(pid, region_size, want2)
lo, hi = procmem.region(pid, region_size)
if a1 is None or a2 is None:
    raise SystemExit("bounds.py: the extents' data is not in the region")
if a2 != a1 + EXT or a2 + 2 * EXT > hi:
    raise SystemExit("bounds.py: E2 is not right after E1 with free memory after"
                     " it (E1 at +%d, E2 at +%d): the test needs a fresh"
                     " server" % (a1 - lo, a2 - lo))

# Out of range: each must be EINVAL, and change nothing.
near = [
    ("WRITE last byte + 1", WRITE, h1, EXT - 1, 0, b"ab"),
    ("WRITE 8 KiB over the end", WRITE, h1, EXT - 4096, 0, os.urandom(8192)),
    ("WRITE at the end", WRITE, h1, EXT, 0, b"x"),
    ("WRITE a whole extent past the end", WRITE, h1, EXT, 0, os.urandom(EXT)),
    ("WRITE 1 MiB from the middle", WRITE, h1, EXT // 2, 0, os.urandom(1 << 20)),
    ("WRITE past E2 into free memory", WRITE, h2, EXT - 2, 0, b"spill"),
    ("ZERO last 8 bytes + 8", ZERO, h1, EXT - 8, 16, b""),
    ("ZERO half over the end", ZERO, h1, EXT // 2, EXT, b""),
    ("ZERO past E2 into free memory", ZERO, h2, EXT - 1, 4096, b""),
    ("READ 4 bytes over the end", READ, h1, EXT - 4, 8, b""),
    ("READ at the end", READ, h1, EXT, 1, b""),
    ("READ 4 MiB", READ, h1, 0, 4 << 20, b""),
]
# Far beyond the region: a missing check would fault there, so these
# come after the data has been checked.
far = [
    ("WRITE near the largest offset", WRITE, h1, GB - 4096, 0, os.urandom(4096)),
    ("ZERO near the largest offset", ZERO, h1, GB - 1, 1, b""),
    ("READ near the largest offset", READ, h1, GB - 8, 8, b""),
]


def refuse_all(cases):
    """Send each case; False once the server has closed the connection."""
    for name, op, h, off, count, payload in cases:
        try:
            err, data = c.call(op, handle=h, offset=off, count=count, payload=payload)
        except Closed:
            problems.append("%s: the server closed the connection" % name)
            return False
        if err != EINVAL:
            problems.append("%s: answered %s, expected EINVAL" % (name, errname(err)))
        if data:
            problems.append("%s: %d bytes of data came back" % (name, len(data)))
    return True


alive = refuse_all(near)
if alive:
    # Exactly up to the end is fine.
    tail = os.urandom(4)
    for name, op, h, off, count, payload in [
            ("WRITE the last 4 bytes", WRITE, h1, EXT - 4, 0, tail),
            ("ZERO 4 bytes before them", ZERO, h1, EXT - 8, 4, b""),
            ("WRITE E2's last byte", WRITE, h2, EXT - 1, 0, want2[-1:])]:
        err, _ = c.call(op, handle=h, offset=off, count=count, payload=payload)
        if err != OK:
            problems.append("%s: answered %s, expected OK" % (name, errname(err)))
    want1[EXT - 4:] = tail
    want1[EXT - 8:EXT - 4] = bytes(4)
    err, data = c.call(READ, handle=h1, offset=EXT - 8, count=8)
    if err != OK or data != bytes(want1[EXT - 8:]):
        problems.append("READ of the last 8 bytes: %s %r" % (errname(err), data))
    for name, h, want in (("E1", h1, bytes(want1)), ("E2", h2, want2)):
        err, data = c.call(READ, handle=h, count=EXT)
        if err != OK or data != want:
            bad = [i for i in range(EXT) if i >= len(data) or data[i] != want[i]]
            problems.append("%s read through the protocol differs in %d bytes"
                            " (first at +%s)" % (name, len(bad), bad[:1]))

# The donor's memory: E1, E2, then the free memory after them.
mem = procmem.read_at(pid, a1, 3 * EXT)
for name, got, want in (("E1", mem[:EXT], bytes(want1)),
                        ("E2", mem[EXT:2 * EXT], want2),
                        ("free memory after E2", mem[2 * EXT:], bytes(EXT))):
    if got != want:
        bad = [i for i in range(EXT) if got[i] != want[i]]
        problems.append("%s in the region differs in %d bytes, first at +%d"
                        % (name, len(bad), bad[0]))

if alive and refuse_all(far):
    try:
        if c.call(PING)[0] != OK:
            problems.append("PING after the cases")
    except Closed:
        problems.append("the server closed the connection after the cases")

if problems:
    for p in problems:
        print("bounds.py: FAIL: %s" % p)
    sys.exit(1)
print("bounds.py: PASS: %d out-of-range requests refused, E1, E2 and the"
      " memory after them intact" % (len(near) + len(far)))
