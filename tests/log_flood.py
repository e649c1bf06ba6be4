#!/usr/bin/env python3
"""Many short connections that each make a memserver (with a cluster
key) log one line, and what reaches its log.  Used by
test-log-flood.sh.  Usage: log_flood.py PORT KEYFILE LOG N

Each connection does one of: a frame with a bad magic, a HELLO with
protocol version 99, a PING before HELLO (those two are protocol
violations), or a right HELLO and then leaving without AUTH.  Every one
of the N is logged or counted: the lines of those three kinds plus the
counts in the "N similar messages suppressed" lines must add up to N
exactly (waited for: the last summary comes with the server's next
once-a-second sweep).  And the log may hold at most
    4 kinds x (5 lines + 1 summary) per second of the flood, +2 seconds
lines from it (log.h: LOG_BURST, LOG_WINDOW_MS; one kind of slack for
anything else a connection may cause).  With a limit per connection
instead, N connections wrote N lines.
"""
import math
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rpwire as m  # noqa: E402

port, keyfile, logfile, n = (int(sys.argv[1]), sys.argv[2], sys.argv[3],
                             int(sys.argv[4]))
BURST, WINDOW_S, KINDS = 5, 1.0, 4
PATTERNS = {
    "protocol violations": re.compile(r"bad request magic|request before HELLO"),
    "unsupported protocol versions": re.compile(r"protocol version 99 not"),
    "authentication failures": re.compile(r"client left before authenticating"),
}
SUMMARY = re.compile(r"log: (\d+) similar messages suppressed in \d+ ms \((.*)\)")


def fail(msg):
    raise SystemExit("FAIL: " + msg)


def wait_closed(c):
    """Until the server closes c (it just broke the protocol)."""
    try:
        while c.sock.recv(4096):
            pass
    except ConnectionResetError:
        pass


def one(i):
    c = m.Conn(port, timeout=30)
    kind = i % 4
    if kind == 0:
        c.send_raw(m.req(m.PING, magic=0xdeadbeef))
        wait_closed(c)
    elif kind == 1:
        c.send(m.HELLO, payload=m.hello_payload(c.owner, os.urandom(32),
                                                version=99))
        error, _, _, _ = c.reply()
        if error != m.EVERSION:
            fail("HELLO version 99 answered %d" % error)
    elif kind == 2:
        c.send(m.PING)
        wait_closed(c)
    else:
        try:
            c.hello(auth=False)
        except m.Refused as e:
            fail("HELLO refused: %d" % e.error)
    c.close()


def tally():
    """(lines from the flood, logged + suppressed per kind)."""
    lines, counts = 0, dict.fromkeys(PATTERNS, 0)
    with open(logfile) as f:
        for line in f:
            if " main: " in line or "no --key-file" in line:
                continue  # start-up and shutdown
            lines += 1
            s = SUMMARY.search(line)
            if s and s.group(2) in counts:
                counts[s.group(2)] += int(s.group(1))
                continue
            for k, p in PATTERNS.items():
                if p.search(line):
                    counts[k] += 1
    return lines, counts


start = time.monotonic()
for i in range(n):
    one(i)
elapsed = time.monotonic() - start
# Every event reaches the log, as a line or in a count, once the last
# window has been summarized.
deadline = time.monotonic() + 30
while True:
    lines, counts = tally()
    if sum(counts.values()) >= n:
        break
    if time.monotonic() > deadline:
        fail("only %d of %d events logged or counted: %r"
             % (sum(counts.values()), n, counts))
    time.sleep(0.05)
bound = KINDS * (BURST + 1) * (math.ceil(elapsed / WINDOW_S) + 2)
print("log_flood: %d connections in %.1f s: %d log lines (bound %d), %r"
      % (n, elapsed, lines, bound, counts))
if sum(counts.values()) != n:
    fail("%d events logged or counted, %d happened" % (sum(counts.values()), n))
if lines > bound:
    fail("%d log lines from %d connections, at most %d allowed"
         % (lines, n, bound))
if not any(SUMMARY.search(line) for line in open(logfile)):
    fail("no 'similar messages suppressed' line")
print("log_flood: PASS")
