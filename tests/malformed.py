#!/usr/bin/env python3
"""Send malformed and hostile frames to a live memserver.

With --keyed (a server started with --key-file): check that nothing
but AUTH is served after HELLO and that a forged proof is refused.

Each case runs on its own connection and states what the server must
do: close the connection (malformed header, request before HELLO,
second HELLO, truncated frame) or answer with a given error (bad handle,
out-of-range offset inside a well-formed request).  Exits non-zero on
the first case the server gets wrong.  Usage: malformed.py PORT [ROUNDS [--keyed]]
"""
import os
import random
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rpwire import (REPLY, REPLY_MAGIC, REQ, HELLO_REQ, MAX_PAYLOAD,  # noqa: E402
                    HELLO, ALLOC, FREE, READ, WRITE, STAT, PING, ZERO, AUTH,
                    EINVAL, ENOENT, EPERM, hello_payload, req)

port = int(sys.argv[1])
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
rng = random.Random(int.from_bytes(os.urandom(8), "little"))


def conn():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


HELLO_LEN = HELLO_REQ.size


def hello(s):
    s.sendall(req(HELLO, length=HELLO_LEN) +
              hello_payload(os.urandom(16), os.urandom(32)))
    r = read_reply(s)
    assert r[1] == 0, "HELLO refused: %r" % (r,)
    body = s.recv(r[4], socket.MSG_WAITALL)
    return struct.unpack_from("<I", body, 4)[0]  # flags


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


if len(sys.argv) > 3 and sys.argv[3] == "--keyed":
    # A server with a cluster key: nothing but AUTH after HELLO, and a
    # wrong proof is refused.
    cases = 0
    for _ in range(rounds):
        for op, extra in [(PING, b""), (STAT, b""), (ALLOC, b""), (READ, b"")]:
            s = conn()
            assert hello(s) & 1, "keyed server did not ask for AUTH"
            frame = req(op, offset=(1 << 20) if op == ALLOC else 0,
                        handle=1 if op == READ else 0, count=8 if op == READ else 0)
            s.sendall(frame)
            d = s.recv(65536)
            if d:
                raise SystemExit("FAIL: keyed server answered %d before AUTH" % op)
            s.close()
            cases += 1
        s = conn()
        hello(s)
        s.sendall(req(AUTH, length=32) + os.urandom(32))
        r = read_reply(s)
        if r is None or r[1] != EPERM:
            raise SystemExit("FAIL: forged AUTH proof not refused with EPERM: %r" % (r,))
        s.sendall(req(PING))
        if s.recv(65536):
            raise SystemExit("FAIL: connection served after a refused AUTH")
        s.close()
        cases += 1
    print("malformed: PASS: %d unauthenticated cases on port %d" % (cases, port))
    sys.exit(0)


cases = 0
for _ in range(rounds):
    # Header-level violations: the connection is closed.
    expect_close("bad magic", req(PING, magic=0xdeadbeef)); cases += 1
    expect_close("reserved flags", req(PING, flags=1)); cases += 1
    expect_close("unknown op", req(rng.choice([0, 9, 11, 100, 0xffff]))); cases += 1
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
    expect_close("second hello", req(HELLO, length=HELLO_LEN) + b"\0" * HELLO_LEN); cases += 1
    expect_close("truncated header", req(PING)[:rng.randrange(1, REQ.size)]); cases += 1
    expect_close("truncated payload", req(WRITE, handle=1, length=4096) + b"x" * rng.randrange(0, 4096)); cases += 1
    expect_close("random garbage", os.urandom(rng.randrange(40, 400)), after_hello=rng.random() < 0.5); cases += 1
    # Well-formed frames with bad arguments: an error reply, and the
    # connection keeps working.
    expect_error("unknown handle", req(READ, handle=rng.getrandbits(64) | 1, count=8), ENOENT); cases += 1
    expect_error("free unknown handle", req(FREE, handle=rng.getrandbits(64) | 1), ENOENT); cases += 1
    s = conn(); hello(s)
    s.sendall(req(ALLOC, offset=1 << 20))
    r = read_reply(s); assert r and r[1] == 0 and r[4] == 16, "ALLOC failed: %r" % (r,)
    handle = struct.unpack("<QII", s.recv(16, socket.MSG_WAITALL))[0]
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
    # Isolation: another client (another owner id) cannot touch this
    # extent, whatever it asks.
    other = conn(); hello(other)
    for name, frame in [
        ("read another client's extent", req(READ, handle=handle, count=8)),
        ("write another client's extent", req(WRITE, handle=handle, length=4) + b"evil"),
        ("zero another client's extent", req(ZERO, handle=handle, count=8)),
        ("free another client's extent", req(FREE, handle=handle)),
    ]:
        other.sendall(frame)
        r = read_reply(other)
        if r is None or r[1] != ENOENT:
            raise SystemExit("FAIL: %s: expected ENOENT, got %r" % (name, r))
        cases += 1
    other.close()
    # The connection still serves, and a fresh extent reads as zeros.
    s.sendall(req(READ, handle=handle, count=4096))
    r = read_reply(s); assert r and r[1] == 0
    assert s.recv(4096, socket.MSG_WAITALL) == b"\0" * 4096, "new extent not zeroed"
    s.sendall(req(FREE, handle=handle))
    r = read_reply(s); assert r and r[1] == 0
    s.close()

print("malformed: PASS: %d hostile cases on port %d" % (cases, port))
