#!/usr/bin/env python3
"""Clients that pipeline READs and never read the replies, against a
live memserver with the default --max-reply-buffer (64 MiB).  Used by
test-reply-budget.sh.  Usage: reply_budget.py PORT PID

1. 40 such connections, 8 READs of 4 MiB each: 1.3 GiB of replies
   asked for.  Once the server has read every request (the kernel shows
   nothing left in their receive queues), a well-behaved client on its
   own connection gets its PING, a 64 KiB READ (checked byte for byte)
   and a WRITE answered.  The server's peak resident memory (VmHWM)
   above what it had before the attack must stay within
       budget + connections x (small room + receive buffer) + slack
   (memserver(8), --max-reply-buffer).  Before the bound existed, each
   connection held up to 16 MiB: 40 of them about 650 MiB.

2. Those gone, 6 more that fill the whole budget and stop reading; the
   well-behaved client then asks for a 4 MiB READ, which needs the
   budget.  It must be answered with the right bytes: the server closes
   connections that have taken none of their replies for 10 s while
   others wait (the test waits for it, up to 120 s: a correctness check,
   not a timing one).
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rpwire as m  # noqa: E402

port, pid = int(sys.argv[1]), int(sys.argv[2])
MIB = m.MIB
BUDGET = 64 * MIB                 # --max-reply-buffer default
SMALL_ROOM = 64 * 1024 + 4096     # server.c CONN_SMALL_ROOM
RBUF_BASE = 64 * 1024             # server.c CONN_RBUF_BASE
CONN_STATE = 2048                 # struct conn and what malloc adds
SLACK = 16 * MIB                  # allocator fragmentation, libuv, stack
if os.environ.get("RP_SANITIZERS") == "yes":
    # AddressSanitizer: shadow memory, an eighth of what is touched, and
    # freed reply buffers held a while in its quarantine (test-reply-
    # budget.sh makes that 16 MiB) before they can be used again.
    SLACK += BUDGET // 8 + 16 * MIB


def fail(msg):
    raise SystemExit("FAIL: " + msg)


def wait_until(cond, what, limit_s=30):
    """Poll a readiness condition (bounded)."""
    deadline = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > deadline:
            fail("timed out waiting until " + what)
        time.sleep(0.01)


def attack(n, reads, handle_owner):
    """n connections of one owner, each sending `reads` 4 MiB READs and
    then reading nothing.  Returns them once the server has read every
    request."""
    owner, handle = handle_owner
    conns = []
    for _ in range(n):
        c = m.Conn(port, timeout=60, rcvbuf=4096)
        try:
            c.hello(owner=owner)
        except m.Refused:
            fail("attacker HELLO refused")
        c.send_raw(b"".join(m.req(m.READ, id=i + 100, handle=handle,
                                  count=4 * MIB) for i in range(reads)))
        conns.append(c)
    ports = [c.local_port() for c in conns]
    wait_until(lambda: all(m.server_rx_queues(port).get(p, -1) == 0
                           for p in ports),
               "the server read every attacker's requests")
    return conns


good = m.Conn(port, timeout=120)
try:
    good.hello()
except m.Refused:
    fail("HELLO refused")
pattern = os.urandom(4 * MIB)
err, h = good.alloc(4 * MIB)
if err != m.OK:
    fail("ALLOC: %s" % m.errname(err))
good.write(h, 0, pattern)
if good.read(h, 0, 65536) != pattern[:65536]:
    fail("read back before the attack differs")

# The attackers' extent: one owner, one 4 MiB extent, read by all.
owner = os.urandom(16)
first = m.Conn(port, timeout=60)
first.hello(owner=owner)
err, handle = first.alloc(4 * MIB)
if err != m.OK:
    fail("the attackers' ALLOC: %s" % m.errname(err))
base = m.proc_status(pid, "VmRSS")

# --- 1: many connections that do not read ---
n = 40
attackers = attack(n, 8, (owner, handle))
if good.call(m.PING)[0] != m.OK:
    fail("PING not answered")
if good.read(h, 4096, 65536) != pattern[4096:4096 + 65536]:
    fail("64 KiB READ during the attack returned other bytes")
good.write(h, 8192, b"x" * 4096)
pattern = pattern[:8192] + b"x" * 4096 + pattern[8192 + 4096:]
if good.read(h, 8192, 4096) != b"x" * 4096:
    fail("WRITE during the attack did not land")
peak = m.proc_status(pid, "VmHWM") - base
bound = BUDGET + (n + 3) * (SMALL_ROOM + RBUF_BASE + CONN_STATE) + SLACK
print("reply_budget: %d connections not reading: peak +%d MiB resident,"
      " bound %d MiB" % (n, peak >> 20, bound >> 20))
if peak > bound:
    fail("replies not bounded: +%d MiB resident, bound %d MiB"
         % (peak >> 20, bound >> 20))
for c in attackers:
    c.close()
first.close()
wait_until(lambda: good.stat()["clients"] == 1, "the attackers are gone")

# --- 2: the budget full, a big READ must still be served ---
first = m.Conn(port, timeout=60)
first.hello(owner=owner)
attackers = attack(6, 5, (owner, handle))
start = time.monotonic()
if good.read(h, 0, 4 * MIB) != pattern:
    fail("4 MiB READ with the budget full returned other bytes")
print("reply_budget: a 4 MiB READ with the budget held by 6 connections"
      " that do not read: answered after %.1f s" % (time.monotonic() - start))
for c in attackers:
    c.close()
print("reply_budget: PASS")
