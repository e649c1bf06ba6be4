"""The rampool wire protocol (include/rampool/protocol.h, version 3) from
Python, for the protocol-level tests (fence.py, bounds.py): frames, the
HELLO/AUTH handshake with or without a cluster key, one call at a time.

Written from docs/protocol.md, not from the C code, so a test using it
checks the server against the document.
"""
import hashlib
import hmac
import os
import socket
import struct

REQ = struct.Struct("<IHHQQQII")     # magic op flags id handle offset count length
REPLY = struct.Struct("<IIQQII")     # magic error id free_bytes length reserved
HELLO_REQ = struct.Struct("<II16s32sQ")                 # 64 bytes
HELLO_REPLY = struct.Struct("<II16sQQII32s32sQ")        # 120 bytes
AUTH_REPLY = struct.Struct("<QQ")                       # 16 bytes
REQ_MAGIC, REPLY_MAGIC = 0x71505252, 0x72505252
VERSION = 3

HELLO, ALLOC, FREE, READ, WRITE, STAT, PING, ZERO, AUTH, LIST = range(1, 11)
OK, EINVAL, ENOSPC, ENOENT, EPROTO, EIO, ENOMEM, EPERM, EVERSION = range(9)
ERRNAMES = ["OK", "EINVAL", "ENOSPC", "ENOENT", "EPROTO", "EIO", "ENOMEM",
            "EPERM", "EVERSION"]
HELLO_AUTH = 1

SERVER_LABEL = b"rampool-v1 server\0"
CLIENT_LABEL = b"rampool-v1 client\0"


def errname(e):
    return ERRNAMES[e] if 0 <= e < len(ERRNAMES) else str(e)


def load_key(path):
    """A key file: 64 hex digits (rampool keygen)."""
    return bytes.fromhex(open(path).read().strip())


def proof(key, label, client_nonce, server_nonce, owner, fence):
    """HMAC-SHA-256 over label (with its NUL), both nonces, the owner
    and the fence (docs/protocol.md 4.2)."""
    msg = label + client_nonce + server_nonce + owner + struct.pack("<Q", fence)
    return hmac.new(key, msg, hashlib.sha256).digest()


class Closed(Exception):
    """The server closed the connection instead of answering."""


class Refused(Exception):
    """HELLO or AUTH answered with an error (the error code in .error)."""

    def __init__(self, what, error):
        super().__init__("%s refused: %s" % (what, errname(error)))
        self.error = error


class Conn:
    def __init__(self, port, host="127.0.0.1", timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.next_id = 1
        self.session = None

    def close(self):
        self.sock.close()

    def send(self, op, handle=0, offset=0, count=0, payload=b""):
        """Send one request; returns its id.  A send on a connection the
        server has closed raises Closed."""
        rid = self.next_id
        self.next_id += 1
        try:
            self.sock.sendall(REQ.pack(REQ_MAGIC, op, 0, rid, handle, offset,
                                       count, len(payload)) + payload)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise Closed(str(e))
        return rid

    def _recv(self, n):
        buf = b""
        try:
            while len(buf) < n:
                d = self.sock.recv(n - len(buf))
                if not d:
                    raise Closed("EOF")
                buf += d
        except ConnectionResetError as e:
            raise Closed(str(e))
        return buf

    def reply(self):
        """The next reply: (error, id, payload).  Raises Closed if the
        connection ends first, socket.timeout if nothing comes."""
        magic, error, rid, _free, length, reserved = REPLY.unpack(self._recv(REPLY.size))
        assert magic == REPLY_MAGIC, "bad reply magic %#x" % magic
        assert reserved == 0, "reply reserved field %d" % reserved
        return error, rid, self._recv(length) if length else b""

    def call(self, op, handle=0, offset=0, count=0, payload=b""):
        rid = self.send(op, handle, offset, count, payload)
        error, got, data = self.reply()
        assert got == rid, "reply id %d for request %d" % (got, rid)
        assert error == OK or data == b"", "an error reply with a payload"
        return error, data

    def alloc(self, size):
        """ALLOC of one extent: (error, handle).  The reply starts with
        the handle (u64); it is 8 bytes, or 16 where the server adds
        rkey and offset_64k for one-sided transports."""
        err, body = self.call(ALLOC, offset=size)
        if err != OK:
            return err, 0
        assert len(body) in (8, 16), "ALLOC reply of %d bytes" % len(body)
        return OK, int.from_bytes(body[:8], "little")

    def hello(self, owner, fence, key=None, auth_fence=None):
        """HELLO (and AUTH with a key).  Sets and returns the owner
        session id; raises Refused on EPERM/EVERSION.  auth_fence: make
        the AUTH proof over another fence than the one HELLO sent (what
        a client gets if the fence was changed in flight)."""
        cn = os.urandom(32)
        err, body = self.call(HELLO, payload=HELLO_REQ.pack(VERSION, 0, owner, cn, fence))
        if err != OK:
            raise Refused("HELLO", err)
        assert len(body) == HELLO_REPLY.size, "HELLO reply of %d bytes" % len(body)
        (version, flags, _inc, cap, free, max_payload, _lease, sn, sproof,
         session) = HELLO_REPLY.unpack(body)
        assert version == VERSION, "server speaks version %d" % version
        assert free <= cap and max_payload == 4 << 20
        if key is None:
            assert flags == 0, "the server wants AUTH: give fence.py the key"
            assert session != 0, "HELLO reply without a session id"
            self.session = session
            return session
        assert flags == HELLO_AUTH, "the server has no key (flags %d)" % flags
        assert session == 0, "a session id before AUTH"
        assert hmac.compare_digest(
            sproof, proof(key, SERVER_LABEL, cn, sn, owner, fence)), \
            "server proof does not verify over the fence we sent"
        f = fence if auth_fence is None else auth_fence
        err, body = self.call(AUTH, payload=proof(key, CLIENT_LABEL, cn, sn, owner, f))
        if err != OK:
            raise Refused("AUTH", err)
        session, reserved = AUTH_REPLY.unpack(body)
        assert session != 0 and reserved == 0, "AUTH reply %r" % (body,)
        self.session = session
        return session

    def is_closed(self):
        """Does the server close this connection (now or on its next
        request)?  Sends a PING: True if the connection ends instead of
        answering it, False if it is answered."""
        try:
            self.send(PING)
            self.reply()
            return False
        except Closed:
            return True
