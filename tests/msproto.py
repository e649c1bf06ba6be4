"""The memserver's wire protocol for tests and benches, in Python.

Only what the resource tests need: frames, HELLO (and AUTH with a
cluster key), pipelined requests, replies, and a few probes of a live
memserver process (/proc/PID/status, the kernel's socket queues).

The protocol version sent in HELLO is RP_TEST_PROTOCOL (default 3,
this tree's), so a test can be pointed at an older memserver to show
what it got wrong: RP_TEST_PROTOCOL=2 abs_top_builddir=OLD_TREE ...
"""
import hashlib
import hmac
import os
import socket
import struct

REQ = struct.Struct("<IHHQQQII")     # magic op flags id handle offset count length
REPLY = struct.Struct("<IIQQII")     # magic error id free length reserved
REQ_MAGIC, REPLY_MAGIC = 0x71505252, 0x72505252
HELLO, ALLOC, FREE, READ, WRITE, STAT, PING, ZERO, AUTH, LIST = range(1, 11)
OK, EINVAL, ENOSPC, ENOENT, EPROTO, EIO, ENOMEM, EPERM, EVERSION = range(9)
VERSION = int(os.environ.get("RP_TEST_PROTOCOL", "3"))
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


def req(op, id=1, handle=0, offset=0, count=0, length=0, magic=REQ_MAGIC):
    return REQ.pack(magic, op, 0, id, handle, offset, count, length)


def hello_frame(owner, nonce, fence=0, version=None, id=1):
    return req(HELLO, id=id, length=64) + struct.pack(
        "<II16s32sQ", VERSION if version is None else version, 0, owner,
        nonce, fence)


def load_key(path):
    return bytes.fromhex(open(path).read().strip())


def auth_proof(key, role, client_nonce, server_nonce, owner, fence):
    """common/auth.c: HMAC-SHA-256 over the label (with its NUL), both
    nonces, the owner id and the fence."""
    label = b"rampool-v1 client\0" if role == "client" else b"rampool-v1 server\0"
    return hmac.new(key, label + client_nonce + server_nonce + owner +
                    struct.pack("<Q", fence), hashlib.sha256).digest()


class Closed(Exception):
    """The server closed the connection."""


class Conn:
    def __init__(self, port, timeout=60, rcvbuf=None):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # Before connect, so the window is small from the start: the
            # kernel then holds little of what we do not read.
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(timeout)
        self.s.connect(("127.0.0.1", port))
        self.owner = os.urandom(16)
        self.next_id = 1

    def local_port(self):
        return self.s.getsockname()[1]

    def send(self, data):
        self.s.sendall(data)

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            d = self.s.recv(min(n - len(buf), 1 << 20))
            if not d:
                raise Closed()
            buf += d
        return bytes(buf)

    def reply(self):
        """(error, id, free_bytes, payload) of the next reply."""
        magic, error, id, free, length, reserved = REPLY.unpack(
            self.recv_exact(REPLY.size))
        assert magic == REPLY_MAGIC and reserved == 0, "bad reply header"
        return error, id, free, self.recv_exact(length) if length else b""

    def call(self, op, payload=b"", **kw):
        self.send(req(op, id=self.next_id, length=len(payload), **kw) +
                  payload)
        self.next_id += 1
        return self.reply()

    def hello(self, key=None, fence=0, owner=None, auth=True):
        """HELLO, and AUTH when the server asks for it (unless auth is
        False); returns (error, HELLO reply payload), the error being
        AUTH's when AUTH was sent."""
        if owner is not None:
            self.owner = owner
        nonce = os.urandom(32)
        self.send(hello_frame(self.owner, nonce, fence, id=self.next_id))
        self.next_id += 1
        error, _, _, body = self.reply()
        if error != OK:
            return error, body
        flags = struct.unpack_from("<I", body, 4)[0]
        if flags & 1 and auth:
            assert key is not None, "server wants AUTH, test has no key"
            server_nonce = body[48:80]
            proof = auth_proof(key, "client", nonce, server_nonce, self.owner,
                               fence)
            self.send(req(AUTH, id=self.next_id, length=32) + proof)
            self.next_id += 1
            error, _, _, _ = self.reply()
        return error, body

    def alloc(self, size):
        error, _, free, body = self.call(ALLOC, offset=size)
        assert error == OK, "ALLOC of %d failed: error %d" % (size, error)
        return struct.unpack_from("<Q", body)[0]

    def write(self, handle, offset, data):
        error, _, _, _ = self.call(WRITE, data, handle=handle, offset=offset)
        assert error == OK, "WRITE failed: error %d" % error

    def read(self, handle, offset, count):
        error, _, _, body = self.call(READ, handle=handle, offset=offset,
                                      count=count)
        assert error == OK, "READ failed: error %d" % error
        return body

    def stat(self):
        """STAT reply as a dict (protocol.h struct rp_stat_reply)."""
        error, _, _, body = self.call(STAT)
        assert error == OK, "STAT failed: error %d" % error
        cap, used, owner_bytes, ext, owner_ext, clients, owners, up = \
            struct.unpack_from("<QQQIIIIQ", body)
        return {"capacity": cap, "used": used, "clients": clients,
                "extents": ext}

    def close(self):
        self.s.close()


def proc_status(pid, field):
    """A /proc/PID/status field in bytes (VmRSS, VmHWM, VmSize...)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def server_rx_queues(server_port):
    """{peer port: bytes the server has received and not yet read} for
    every connection to server_port on 127.0.0.1, from /proc/net/tcp:
    how a test knows the server has read what it was sent."""
    out = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            lport = int(parts[1].split(":")[1], 16)
            rport = int(parts[2].split(":")[1], 16)
            state = parts[3]
            if lport == server_port and state == "01":  # ESTABLISHED
                out[rport] = int(parts[4].split(":")[1], 16)
    return out
