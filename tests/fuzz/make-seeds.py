#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets.

    tests/fuzz/make-seeds.py [OUTDIR]     (default: next to this script)

corpus/frames/: inputs for fuzz_frames.c -- a mode byte, then what the
client(s) send (see the top of fuzz_frames.c).  Valid exchanges
(HELLO, AUTH, ALLOC/WRITE/READ/ZERO/FREE, STAT, PING), the per-client
limits, fencing between connections of one client, and one seed per
way a frame can be malformed or out of order, so the fuzzer starts from
every branch of the session instead of finding the magic first.

corpus/config/: inputs for fuzz_config.c -- KEY=VALUE lines.

corpus/replies/: inputs for fuzz_replies.c -- what a server sends, each
frame after a byte naming the op the client had asked (LIST: its limit
in the high bits).

The frames target makes randomness zero (see fuzz_frames.c), so the
server nonce is 32 zero bytes and the first extent of a run has handle
0x1000001; the AUTH proofs below are computed for that nonce and the
target's key (bytes 0..31).  Deterministic: the same files every run.
"""
import hashlib
import hmac
import os
import struct
import sys

REQ = struct.Struct("<IHHQQQII")  # magic op flags id handle offset count length
REQ_MAGIC = 0x71505252
HELLO, ALLOC, FREE, READ, WRITE, STAT, PING, ZERO, AUTH, LIST, HOLD, DRAIN = range(1, 13)
KEY = bytes(range(32))
SERVER_NONCE = bytes(32)
K64 = 64 * 1024

MODE_KEY, MODE_TIGHT, MODE_MULTI, MODE_RDMA = 1, 2, 4, 8


def handle(n):
    """Handle of the n-th extent (1-based) allocated in a fresh run."""
    return (1 << 24) | n


def req(op, id=1, handle=0, offset=0, count=0, payload=b"", length=None,
        magic=REQ_MAGIC, flags=0):
    if length is None:
        length = len(payload)
    return REQ.pack(magic, op, flags, id, handle, offset, count, length) + payload


def hello(owner=b"O" * 16, nonce=b"N" * 32, fence=0, version=3, id=1):
    return req(HELLO, id=id, payload=struct.pack("<II16s32sQ", version, 0, owner,
                                                 nonce, fence))


def auth(owner=b"O" * 16, nonce=b"N" * 32, good=True, id=2, fence=0):
    msg = (b"rampool-v1 client\0" + nonce + SERVER_NONCE + owner +
           struct.pack("<Q", fence))
    proof = hmac.new(KEY, msg, hashlib.sha256).digest()
    if not good:
        proof = bytes(32 - 1) + b"\x01"
    return req(AUTH, id=id, payload=proof)


def data(n, seed):
    return bytes((seed + i * 7) & 0xff for i in range(n))


def multi(chunk, a, b, c, mode=0):
    """Three connections' streams, delivered `chunk` bytes per turn."""
    assert chunk % 8 == 0 and 8 <= chunk <= 256
    m = mode | MODE_MULTI | ((chunk // 8 - 1) << 3)
    return bytes([m]) + struct.pack("<HH", len(a), len(b)) + a + b + c


def frames():
    s = {}
    h1 = handle(1)
    s["hello"] = b"\0" + hello()
    s["hello-ping"] = b"\0" + hello() + req(PING, id=2)
    s["hello-stat"] = b"\0" + hello() + req(STAT, id=2)
    s["data-path"] = b"\0" + hello() + b"".join([
        req(ALLOC, id=2, offset=K64),
        req(WRITE, id=3, handle=h1, offset=512, payload=data(1024, 1)),
        req(READ, id=4, handle=h1, offset=0, count=2048),
        req(ZERO, id=5, handle=h1, offset=1024, count=256),
        req(READ, id=6, handle=h1, offset=1000, count=100),
        req(STAT, id=7),
        req(FREE, id=8, handle=h1),
        req(READ, id=9, handle=h1, count=16),      # ENOENT: freed
        req(STAT, id=10),
    ])
    s["two-extents"] = b"\0" + hello() + b"".join([
        req(ALLOC, id=2, offset=K64),
        req(ALLOC, id=3, offset=2 * 1024 * 1024),
        req(WRITE, id=4, handle=handle(2), offset=2 * 1024 * 1024 - 8,
            payload=data(8, 9)),
        req(FREE, id=5, handle=h1),
        req(ALLOC, id=6, offset=K64),               # reuses slot 1
        req(READ, id=7, handle=h1, count=K64),
        req(ALLOC, id=8, offset=8 * 1024 * 1024),   # ENOSPC: region full
    ])
    s["big-read"] = b"\0" + hello() + b"".join([
        req(ALLOC, id=2, offset=4 * 1024 * 1024),
        req(READ, id=3, handle=h1, count=4 * 1024 * 1024),
        req(READ, id=4, handle=h1, offset=4096, count=4 * 1024 * 1024 - 4096),
    ])
    # Large READ replies refer to the region until taken: a WRITE, ZERO
    # or FREE after them in one delivery must not change what they say.
    s["read-then-change"] = b"\0" + hello() + b"".join([
        req(ALLOC, id=2, offset=1024 * 1024),
        req(WRITE, id=3, handle=h1, payload=data(4096, 5)),
        req(READ, id=4, handle=h1, count=2 * K64),
        req(WRITE, id=5, handle=h1, payload=data(4096, 6)),
        req(READ, id=6, handle=h1, count=K64),
        req(ZERO, id=7, handle=h1, count=4096),
        req(READ, id=8, handle=h1, count=4 * K64),
        req(FREE, id=9, handle=h1),
        req(READ, id=10, handle=h1, count=K64),     # ENOENT: freed
    ])
    s["bounds"] = b"\0" + hello() + b"".join([
        req(ALLOC, id=2, offset=K64),
        req(WRITE, id=3, handle=h1, offset=K64 - 4, payload=data(8, 3)),  # EINVAL
        req(READ, id=4, handle=h1, offset=K64, count=1),                  # EINVAL
        req(ZERO, id=5, handle=h1 + (1 << 24), count=1),                  # ENOENT
        req(FREE, id=6, handle=handle(99)),                                # ENOENT
    ])
    # Malformed headers and frames out of order: each closes.
    s["bad-magic"] = b"\0" + hello() + req(PING, id=2, magic=0x71505253)
    s["bad-flags"] = b"\0" + hello() + req(PING, id=2, flags=1)
    s["bad-op"] = b"\0" + hello() + req(13, id=2)
    # Reclaim and drain: a sole copy, HOLD of it and of a stranger,
    # DRAIN (refused here: the fuzzer's core has no drain), bad shapes.
    s["hold-drain"] = b"\0" + hello() + b"".join([
        req(ALLOC, id=2, offset=K64, flags=1),
        req(HOLD, id=3, handle=h1),
        req(HOLD, id=4, handle=handle(9)),
        req(DRAIN, id=5, offset=1000),
        req(STAT, id=6),
    ])
    s["hold-shape"] = b"\0" + hello() + req(HOLD, id=2, handle=h1, offset=1)
    s["flag-not-alloc"] = b"\0" + hello() + req(PING, id=2, flags=1)
    s["list"] = b"\0" + hello() + b"".join([
        req(ALLOC, id=2, offset=K64),
        req(ALLOC, id=3, offset=K64),
        req(LIST, id=4, count=1),
        req(LIST, id=5, offset=1, count=8192),
        req(LIST, id=6, offset=1 << 40, count=8),
    ])
    s["list-shape"] = b"\0" + hello() + req(LIST, id=2, count=8193)
    # An RDMA session (mode bit 3): READ/WRITE frames close, LIST clamps.
    s["rdma-list"] = bytes([MODE_RDMA]) + hello() + b"".join([
        req(ALLOC, id=2, offset=K64),
        req(LIST, id=3, count=8192),
        req(ZERO, id=4, handle=h1, count=16),
    ])
    s["rdma-read"] = bytes([MODE_RDMA]) + hello() + b"".join([
        req(ALLOC, id=2, offset=K64),
        req(READ, id=3, handle=h1, count=16),
    ])
    s["bad-op-zero"] = b"\0" + req(0)
    s["before-hello"] = b"\0" + req(PING) + hello()
    s["second-hello"] = b"\0" + hello() + hello(id=2)
    s["hello-version"] = b"\0" + hello(version=2) + req(PING, id=2)
    s["hello-short"] = b"\0" + req(HELLO, payload=bytes(32))
    s["hello-args"] = b"\0" + req(HELLO, handle=1, payload=bytes(64))
    s["truncated"] = b"\0" + hello() + req(WRITE, id=2, handle=h1,
                                           length=4096)[:60]
    s["alloc-not-pow2"] = b"\0" + hello() + req(ALLOC, id=2, offset=3 * K64)
    s["alloc-too-small"] = b"\0" + hello() + req(ALLOC, id=2, offset=4096)
    s["read-count-0"] = b"\0" + hello() + req(READ, id=2, handle=h1)
    s["read-too-big"] = b"\0" + hello() + req(READ, id=2, handle=h1,
                                              count=4 * 1024 * 1024 + 1)
    s["write-no-handle"] = b"\0" + hello() + req(WRITE, id=2, payload=b"x")
    s["write-offset"] = b"\0" + hello() + req(WRITE, id=2, handle=h1,
                                              offset=1 << 30, payload=b"x")
    s["free-shape"] = b"\0" + hello() + req(FREE, id=2, handle=h1, offset=1)
    s["ping-args"] = b"\0" + hello() + req(PING, id=2, count=1)
    s["auth-no-key"] = b"\0" + hello() + auth()
    # With a cluster key.
    s["key-auth"] = bytes([MODE_KEY]) + hello() + auth() + b"".join([
        req(ALLOC, id=3, offset=K64),
        req(WRITE, id=4, handle=h1, payload=data(300, 5)),
        req(READ, id=5, handle=h1, count=300),
        req(STAT, id=6),
        req(FREE, id=7, handle=h1),
    ])
    s["key-bad-proof"] = bytes([MODE_KEY]) + hello() + auth(good=False) + \
        req(PING, id=3)
    s["key-before-auth"] = bytes([MODE_KEY]) + hello() + req(PING, id=2)
    s["key-second-auth"] = bytes([MODE_KEY]) + hello() + auth() + auth(id=3)
    s["key-auth-first"] = bytes([MODE_KEY]) + auth(id=1)
    # Per-client limits: max-client-size=1M.
    s["tight-quota"] = bytes([MODE_TIGHT]) + hello() + b"".join([
        req(ALLOC, id=2, offset=1024 * 1024),
        req(ALLOC, id=3, offset=K64),               # ENOSPC: quota
        req(FREE, id=4, handle=h1),
        req(ALLOC, id=5, offset=K64),
    ])
    # Several connections.
    x, y, z = b"X" * 16, b"Y" * 16, b"Z" * 16
    a = hello(owner=x, fence=1) + req(ALLOC, id=2, offset=K64) + \
        req(WRITE, id=3, handle=h1, payload=data(64, 7)) + req(PING, id=4) * 4
    b = hello(owner=x, fence=2) + req(READ, id=2, handle=h1, count=64) + \
        req(STAT, id=3)
    c = hello(owner=y) + req(STAT, id=2)
    s["multi-fence"] = multi(128, a, b, c)
    s["multi-fence-older"] = multi(128, hello(owner=x, fence=2) + req(PING, id=2),
                                   hello(owner=x, fence=1) + req(PING, id=2),
                                   b"")
    s["multi-owners-full"] = multi(104, hello(owner=x) + req(STAT, id=2),
                                   hello(owner=y) + req(STAT, id=2),
                                   hello(owner=z) + req(STAT, id=2))
    s["multi-same-owner"] = multi(64, hello(owner=x) + req(ALLOC, id=2, offset=K64),
                                  hello(owner=x) + req(STAT, id=2),
                                  hello(owner=y) + req(READ, id=2, handle=h1,
                                                       count=8))
    s["multi-tight-conns"] = multi(104, hello(owner=x) + req(PING, id=2),
                                   hello(owner=x) + req(PING, id=2), b"",
                                   mode=MODE_TIGHT)
    s["multi-key"] = multi(104, hello(owner=x) + auth(owner=x),
                           hello(owner=x, fence=1) + auth(owner=x) +
                           req(STAT, id=3),
                           hello(owner=y) + auth(owner=x), mode=MODE_KEY)
    s["multi-key-tight"] = multi(144, hello(owner=x) + auth(owner=x) +
                                 req(PING, id=3) * 6,  # still open below
                                 hello(owner=x) + auth(owner=x) +
                                 req(PING, id=3),     # refused after AUTH
                                 b"", mode=MODE_KEY | MODE_TIGHT)
    return s


def configs():
    return {
        "minimal": "servers=10.0.0.1:7070\nsize=64G\nreplicas=1\n",
        "typical": "servers=10.0.0.5:7070,10.0.0.6:7070,10.0.0.7:7070\n"
                   "size=32G\nreplicas=2\nextent-size=1M\n",
        "all-keys": "servers=127.0.0.1:1,[::1]:2,host.example:65535\n"
                    "size=1T\nreplicas=3\nextent-size=64K\n"
                    "placement-choices=3\nconnections=16\ninflight=1024\n"
                    "timeout-ms=600000\nheartbeat-ms=10\nrejoin-grace-ms=0\n"
                    "stats-file=/run/rampool.stats\nkey-file=/etc/rampool.key\n"
                    "encrypt=on\nmax-servers=4096\n",
        "encrypt-odd-size": "servers=a:1,b:2\nsize=4097\nencrypt=true\n",
        "too-many-extents": "servers=a:1\nsize=9223372036854775807\n"
                            "extent-size=64KiB\nreplicas=1\n",
        "bad-values": "servers=a:0\nservers=a\nservers=[::1]\nsize=0\n"
                      "size=1Q\nsize=99999999999T\nextent-size=3M\n"
                      "replicas=5\nconnections=abc\nencrypt=maybe\n"
                      "key-file=\nnope=1\n=\nno-equals-sign\n",
        "duplicates": "servers=a:1,a:1\nservers=b:2\nservers=b:2\nsize=1G\n",
        "replicas-vs-servers": "servers=a:1,b:2\nsize=1G\nreplicas=3\n",
        "many-servers": "servers=" + ",".join("h%d:%d" % (i, 1000 + i)
                                             for i in range(70)) + "\nsize=1G\n",
        "max-servers": "max-servers=64\nservers=" +
                       ",".join("h%d:%d" % (i, 1000 + i)
                                for i in range(65)) + "\nsize=1G\n"
                       "max-servers=0\nmax-servers=4097\n",
        "sizes": "size=1k\nsize=1KiB\nsize=1mB\nsize=16G\nsize=1t\n"
                 "size=18446744073709551615\nsize=16777216T\nservers=x:9\n",
    }


def reply(op, payload=b"", error=0, id=1, free=1 << 30, sel=None):
    s = op if sel is None else sel
    return bytes([s]) + struct.pack("<IIQQII", 0x72505252, error, id, free,
                                    len(payload), 0) + payload


def notice(kind, handles=(), deadline=10000, count=None, length=None):
    n = len(handles) if count is None else count
    ln = 8 * len(handles) if length is None else length
    return bytes([0]) + struct.pack("<IIQIIQ", 0x6e505252, kind, deadline, n,
                                    ln, 0) + b"".join(
                                        struct.pack("<Q", h) for h in handles)


def replies():
    hello_p = struct.pack("<II16sQQII", 3, 0, b"I" * 16, 1 << 30, 1 << 29,
                          4 << 20, 30000) + b"\0" * 8 + b"N" * 32 + \
        b"P" * 32 + struct.pack("<Q", 7)
    hello_p = hello_p[:120].ljust(120, b"\0")
    stat_p = struct.pack("<QQQIIIIQ16sQII", 1 << 30, 1 << 20, 1 << 19, 2, 1,
                         3, 1, 5000, b"I" * 16, 1 << 29, 2, 0)
    list_p = struct.pack("<QII", 2 ** 64 - 1, 3, 0) + b"".join(
        struct.pack("<Q", h) for h in (0x1000001, 0x1000002, 0x1000003))
    return {
        "hello": reply(1, hello_p),
        "stat": reply(6, stat_p),
        "auth": reply(9, struct.pack("<QQ", 42, 0)),
        "alloc-read": reply(2, struct.pack("<QII", 0x1000001, 7, 3)) +
                      reply(4, bytes(range(256)) * 4),
        "list": reply(10, list_p, sel=10 | (1 << 4)),
        "errors": reply(3, error=2) + reply(4, error=5) + reply(7),
        "reclaim": notice(1, (0x1000001, 0x1000002)) + reply(7),
        "drain": notice(2, deadline=600000) + reply(6, stat_p),
        "notice-bad": notice(1, (1,), count=2) + notice(3) +
                      notice(2, deadline=86400001),
    }


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else \
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    for sub, seeds in (("frames", frames()), ("config", configs()),
                       ("replies", replies())):
        d = os.path.join(out, sub)
        os.makedirs(d, exist_ok=True)
        for name, body in seeds.items():
            if isinstance(body, str):
                body = body.encode()
            with open(os.path.join(d, name), "wb") as f:
                f.write(body)
        print("%s: %d seeds" % (d, len(seeds)))


if __name__ == "__main__":
    main()
