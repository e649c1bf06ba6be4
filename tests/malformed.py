#!/usr/bin/env python3
"""Send malformed and hostile frames to a live memserver.

Each case runs on its own connection and states what the server must
do: close the connection (malformed header, request before HELLO,
second HELLO, truncated frame) or answer with a given error (bad handle,
out-of-range offset inside a well-formed request).  Exits non-zero on
the first case the server gets wrong.  Usage: malformed.py PORT [ROUNDS]
"""
import os
import random
import socket
import struct
import sys

REQ = struct.Struct("<IHHQQQII")     # magic op flags id handle offset count length
REPLY = struct.Struct("<IIQQII")     # magic error id free length reserved
REQ_MAGIC, REPLY_MAGIC = 0x71505252, 0x72505252
HELLO, ALLOC, FREE, READ, WRITE, STAT, PING, ZERO = range(1, 9)
EINVAL, ENOSPC, ENOENT = 1, 2, 3
MAX_PAYLOAD = 4 << 20

port = int(sys.argv[1])
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
rng = random.Random(int.from_bytes(os.urandom(8), "little"))


def conn():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


def req(op, id=1, handle=0, offset=0, count=0, length=0, magic=REQ_MAGIC, flags=0):
    return REQ.pack(magic, op, flags, id, handle, offset, count, length)


def hello(s):
    s.sendall(req(HELLO, length=32) + struct.pack("<II16sQ", 1, 0, os.urandom(16), 0))
    r = read_reply(s)
    assert r[1] == 0, "HELLO refused: %r" % (r,)
    s.recv(r[4], socket.MSG_WAITALL)


def read_reply(s):
    data = s.recv(REPLY.size, socket.MSG_WAITALL)
    if len(data) < REPLY.size:
        return None
    r = REPLY.unpack(data)
    assert r[0] == REPLY_MAGIC, "bad reply magic"
    return r


def expect_close(name, payload, after_hello=True):
    s = conn()
    if after_hello:
        hello(s)
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR) if name.startswith("truncated") else None
        while True:
            d = s.recv(65536)
            if not d:
                return
            # A reply to a frame before the bad one is fine; the bad one
            # must end the connection.
    except (ConnectionResetError, BrokenPipeError):
        return
    except socket.timeout:
        raise SystemExit("FAIL: %s: connection not closed" % name)
    finally:
        s.close()


def expect_error(name, frame, error):
    s = conn()
    hello(s)
    s.sendall(frame)
    r = read_reply(s)
    s.close()
    if r is None or r[1] != error:
        raise SystemExit("FAIL: %s: expected error %d, got %r" % (name, error, r))


cases = 0
for _ in range(rounds):
    # Header-level violations: the connection is closed.
    expect_close("bad magic", req(PING, magic=0xdeadbeef)); cases += 1
    expect_close("reserved flags", req(PING, flags=1)); cases += 1
    expect_close("unknown op", req(rng.choice([0, 9, 100, 0xffff]))); cases += 1
    expect_close("oversized write", req(WRITE, handle=1, length=MAX_PAYLOAD + 1)); cases += 1
    expect_close("huge write length", req(WRITE, handle=1, length=0xffffffff)); cases += 1
    expect_close("oversized read", req(READ, handle=1, count=MAX_PAYLOAD + 1)); cases += 1
    expect_close("zero-length read", req(READ, handle=1, count=0)); cases += 1
    expect_close("read offset out of range", req(READ, handle=1, offset=1 << 40, count=8)); cases += 1
    expect_close("alloc not power of two", req(ALLOC, offset=3 << 20)); cases += 1
    expect_close("alloc too big", req(ALLOC, offset=1 << 31)); cases += 1
    expect_close("stat with payload", req(STAT, length=8) + b"x" * 8); cases += 1
    expect_close("hello wrong length", req(HELLO, length=8) + b"x" * 8, after_hello=False); cases += 1
    expect_close("request before hello", req(PING), after_hello=False); cases += 1
    expect_close("read before hello", req(READ, handle=1, count=8), after_hello=False); cases += 1
    expect_close("second hello", req(HELLO, length=32) + b"\0" * 32); cases += 1
    expect_close("truncated header", req(PING)[:rng.randrange(1, REQ.size)]); cases += 1
    expect_close("truncated payload", req(WRITE, handle=1, length=4096) + b"x" * rng.randrange(0, 4096)); cases += 1
    expect_close("random garbage", os.urandom(rng.randrange(40, 400)), after_hello=rng.random() < 0.5); cases += 1
    # Well-formed frames with bad arguments: an error reply, and the
    # connection keeps working.
    expect_error("unknown handle", req(READ, handle=rng.getrandbits(64) | 1, count=8), ENOENT); cases += 1
    expect_error("free unknown handle", req(FREE, handle=rng.getrandbits(64) | 1), ENOENT); cases += 1
    s = conn(); hello(s)
    s.sendall(req(ALLOC, offset=1 << 20))
    r = read_reply(s); assert r and r[1] == 0 and r[4] == 8, "ALLOC failed: %r" % (r,)
    handle = struct.unpack("<Q", s.recv(8, socket.MSG_WAITALL))[0]
    for name, frame in [
        ("read past extent end", req(READ, handle=handle, offset=(1 << 20) - 4, count=8)),
        ("write past extent end", req(WRITE, handle=handle, offset=(1 << 20) - 1, length=2) + b"ab"),
        ("zero past extent end", req(ZERO, handle=handle, offset=1 << 19, count=1 << 20)),
        ("forged handle", req(READ, handle=handle ^ (1 << 40), count=8)),
    ]:
        s.sendall(frame)
        r = read_reply(s)
        want = ENOENT if name == "forged handle" else EINVAL
        if r is None or r[1] != want:
            raise SystemExit("FAIL: %s: expected %d, got %r" % (name, want, r))
        cases += 1
    # The connection still serves, and a fresh extent reads as zeros.
    s.sendall(req(READ, handle=handle, count=4096))
    r = read_reply(s); assert r and r[1] == 0
    assert s.recv(4096, socket.MSG_WAITALL) == b"\0" * 4096, "new extent not zeroed"
    s.sendall(req(FREE, handle=handle))
    r = read_reply(s); assert r and r[1] == 0
    s.close()

print("malformed: PASS: %d hostile cases on port %d" % (cases, port))
