#!/usr/bin/env python3
"""One connection pipelines many ALLOCs, another sends one PING: the
PING must not wait for all of them.  Used by test-fairness.sh.
Usage: fairness.py PORT PID

Ordering, not timing: every reply carries the server's free bytes at
the moment the request ran, so the PING's reply says how many ALLOCs
had run before it.  To give both connections the same start, the
memserver is stopped (SIGSTOP) while A's 1000 ALLOCs and then B's PING
are sent, and continued once the kernel shows both in the server's
receive queues.  A server that runs a whole read's worth of frames
without yielding (it used to) runs all 1000 ALLOCs before it looks at
B; one that bounds each connection's work per loop turn runs the PING
after one turn of A.
"""
import os
import signal
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rpwire as m  # noqa: E402

port, pid = int(sys.argv[1]), int(sys.argv[2])
N, SIZE = 1000, 64 * 1024


def fail(msg):
    raise SystemExit("FAIL: " + msg)


a, b = m.Conn(port, timeout=60), m.Conn(port, timeout=60)
try:
    a.hello()
    b.hello()
except m.Refused:
    fail("HELLO refused")
a.send(m.PING)
_, _, free0, _ = a.reply()
frames = b"".join(m.req(m.ALLOC, id=1000 + i, offset=SIZE) for i in range(N))

os.kill(pid, signal.SIGSTOP)
try:
    a.send_raw(frames)
    b.send(m.PING, id=7)
    want = {a.local_port(): len(frames), b.local_port(): m.REQ.size}
    deadline = time.monotonic() + 30
    while any(m.server_rx_queues(port).get(p) != n for p, n in want.items()):
        if time.monotonic() > deadline:
            fail("the requests did not reach the server's receive queues")
        time.sleep(0.01)
finally:
    os.kill(pid, signal.SIGCONT)

error, id, free_ping, _ = b.reply()
if error != m.OK or id != 7:
    fail("PING: error %d, id %d" % (error, id))
handles, last_free = [], free0
for i in range(N):
    error, id, free, body = a.reply()
    if error != m.OK or id != 1000 + i:
        fail("ALLOC %d: error %d, id %d" % (i, error, id))
    if free != last_free - SIZE:
        fail("ALLOC %d: free bytes %d, expected %d" % (i, free, last_free - SIZE))
    last_free = free
    handles.append(struct.unpack_from("<Q", body)[0])
before = (free0 - free_ping) // SIZE
print("fairness: the PING ran after %d of %d pipelined ALLOCs" % (before, N))
if free_ping <= last_free:
    fail("the PING waited for all %d ALLOCs of another connection" % N)
for h in handles:
    if a.call(m.FREE, handle=h)[0] != m.OK:
        fail("FREE failed")
print("fairness: PASS")
