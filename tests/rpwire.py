"""The rampool wire protocol (include/rampool/protocol.h, versions 3 and 4) from
Python, for the tests and benches that talk to a memserver directly:
frames, the HELLO/AUTH handshake with or without a cluster key, calls
one at a time or pipelined, replies, and a few probes of a live
memserver process (/proc/PID/status, the kernel's socket queues).

Written from docs/protocol.md, not from the C code, so a test using it
checks the server against the document.

The protocol version sent in HELLO is RP_TEST_PROTOCOL (default 3, the
oldest this tree's memserver serves, so the tests of everything else
check that it still does), or a Conn's `version`; a test can be pointed
at an older memserver to show what it got wrong: RP_TEST_PROTOCOL=2
abs_top_builddir=OLD_TREE ... (version 2 has no session id and an
8-byte ALLOC reply).  Version 4 adds COPY (peer_copy.py).

Users: accept.py, fairness.py, log_flood.py, reply_budget.py, fence.py,
bounds.py, malformed.py, placed_write.py, read_direct.py,
bench/memserver-alloc.py.
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
ALLOC_REPLY = struct.Struct("<QII")                     # 16 bytes
STAT_REPLY = struct.Struct("<QQQIIIIQ16s")              # its first 64 bytes
REQ_MAGIC, REPLY_MAGIC = 0x71505252, 0x72505252
VERSION = int(os.environ.get("RP_TEST_PROTOCOL", "3"))
MAX_PAYLOAD = 4 << 20
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30

HELLO, ALLOC, FREE, READ, WRITE, STAT, PING, ZERO, AUTH, LIST = range(1, 11)
HOLD, DRAIN, COPY = 11, 12, 13
OK, EINVAL, ENOSPC, ENOENT, EPROTO, EIO, ENOMEM, EPERM, EVERSION, EBUSY = \
    range(10)
ERRNAMES = ["OK", "EINVAL", "ENOSPC", "ENOENT", "EPROTO", "EIO", "ENOMEM",
            "EPERM", "EVERSION", "EBUSY"]
HELLO_AUTH = 1
HELLO_COPY = 2                       # version 4: the server takes COPY
HELLO_PEER = 1                       # version 4, request: a COPY link
HELLO_QUIET = 2                      # version 4, request: a client's lane
COPY_REQ = struct.Struct("<QQQQ16sII128s")              # 184 bytes
COPY_REPLY = struct.Struct("<IIII")                     # 16 bytes
COPY_SENT = 1
(STAGE_DONE, STAGE_CONNECT, STAGE_HANDSHAKE, STAGE_WRITE, STAGE_SOURCE,
 STAGE_DEADLINE, STAGE_ABORTED) = range(7)

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


def req(op, id=1, handle=0, offset=0, count=0, length=0, magic=REQ_MAGIC,
        flags=0):
    """A request header, as given (a payload of `length` bytes is the
    caller's to append): frames to pipeline, or to get wrong on
    purpose."""
    return REQ.pack(magic, op, flags, id, handle, offset, count, length)


def hello_payload(owner, nonce, fence=0, version=None, flags=0):
    """HELLO's 64-byte request payload (flags: version 4's
    RP_HELLO_PEER)."""
    return HELLO_REQ.pack(VERSION if version is None else version, flags,
                          owner, nonce, fence)


class Closed(Exception):
    """The server closed the connection instead of answering."""


class Refused(Exception):
    """HELLO or AUTH answered with an error (the error code in .error)."""

    def __init__(self, what, error):
        super().__init__("%s refused: %s" % (what, errname(error)))
        self.error = error


class Conn:
    """One connection.  sock: take over a connected socket instead of
    connecting; rcvbuf: SO_RCVBUF, set before connecting (a small
    window, so the kernel holds little of what the test does not
    read)."""

    def __init__(self, port, host="127.0.0.1", timeout=10, rcvbuf=None,
                 sock=None, version=None):
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(timeout)
            sock.connect((host, port))
        else:
            sock.settimeout(timeout)
        self.sock = sock
        self.version = VERSION if version is None else version
        self.incarnation = None
        self.owner = os.urandom(16)
        self.next_id = 1
        self.session = None
        self.flags = None

    def close(self):
        self.sock.close()

    def local_port(self):
        return self.sock.getsockname()[1]

    def send_raw(self, data):
        """Send bytes as they are (frames made with req()).  A send on a
        connection the server has closed raises Closed."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise Closed(str(e))

    def send(self, op, handle=0, offset=0, count=0, payload=b"", id=None):
        """Send one request; returns its id (the next one, unless
        given)."""
        if id is None:
            id = self.next_id
            self.next_id += 1
        self.send_raw(req(op, id, handle, offset, count, len(payload)) +
                      payload)
        return id

    def _recv(self, n):
        buf = bytearray()
        try:
            while len(buf) < n:
                d = self.sock.recv(min(n - len(buf), 1 << 20))
                if not d:
                    raise Closed("EOF")
                buf += d
        except ConnectionResetError as e:
            raise Closed(str(e))
        return bytes(buf)

    def reply(self):
        """The next reply: (error, id, free_bytes, payload).  Raises
        Closed if the connection ends first, socket.timeout if nothing
        comes."""
        magic, error, rid, free, length, reserved = REPLY.unpack(
            self._recv(REPLY.size))
        assert magic == REPLY_MAGIC, "bad reply magic %#x" % magic
        assert reserved == 0, "reply reserved field %d" % reserved
        return error, rid, free, self._recv(length) if length else b""

    def reply_to(self, want_id):
        """The next reply, which must answer request want_id: (error,
        payload)."""
        error, rid, _free, data = self.reply()
        assert rid == want_id, "reply id %d, expected %d" % (rid, want_id)
        return error, data

    def call(self, op, handle=0, offset=0, count=0, payload=b""):
        """One request and its reply: (error, payload)."""
        rid = self.send(op, handle, offset, count, payload)
        error, got, _free, data = self.reply()
        assert got == rid, "reply id %d for request %d" % (got, rid)
        assert error == OK or data == b"", "an error reply with a payload"
        return error, data

    def hello(self, owner=None, fence=0, key=None, auth=True,
              auth_fence=None, flags=0):
        """HELLO, and AUTH with a key.  Sets and returns the owner
        session id; raises Refused on an error (EPERM, EVERSION...).
        owner: this connection's owner id (default: the random one drawn
        with the connection).  auth=False: HELLO only, even if the
        server wants AUTH (the session id is then 0; .flags is what the
        server said).  auth_fence: make the AUTH proof over another
        fence than the one HELLO sent (what a client gets if the fence
        was changed in flight)."""
        if owner is not None:
            self.owner = owner
        owner = self.owner
        cn = os.urandom(32)
        err, body = self.call(HELLO, payload=hello_payload(owner, cn, fence,
                                                           self.version,
                                                           flags))
        if err != OK:
            raise Refused("HELLO", err)
        assert len(body) == HELLO_REPLY.size, "HELLO reply of %d bytes" % len(body)
        (version, flags, inc, cap, free, max_payload, _lease, sn, sproof,
         session) = HELLO_REPLY.unpack(body)
        assert version == self.version, "server speaks version %d" % version
        assert free <= cap and max_payload == MAX_PAYLOAD
        assert self.version >= 4 or not flags & HELLO_COPY, \
            "COPY announced to a version-%d client" % self.version
        self.flags = flags
        self.incarnation = inc
        flags &= ~HELLO_COPY
        if self.version < 3:
            session = None          # version 2: a reserved field
        if not auth:
            assert flags in (0, HELLO_AUTH), "HELLO flags %d" % flags
            assert session is None or (session == 0) == (flags != 0), \
                "session id %d with flags %d" % (session, flags)
            self.session = session
            return session
        if key is None:
            assert flags == 0, "the server wants AUTH: the test has no key"
            assert session is None or session != 0, \
                "HELLO reply without a session id"
            self.session = session
            return session
        assert flags == HELLO_AUTH, "the server has no key (flags %d)" % flags
        assert session is None or session == 0, "a session id before AUTH"
        assert hmac.compare_digest(
            sproof, proof(key, SERVER_LABEL, cn, sn, owner, fence)), \
            "server proof does not verify over the fence we sent"
        f = fence if auth_fence is None else auth_fence
        err, body = self.call(AUTH, payload=proof(key, CLIENT_LABEL, cn, sn,
                                                  owner, f))
        if err != OK:
            raise Refused("AUTH", err)
        if self.version < 3:
            self.session = None
            return None
        session, reserved = AUTH_REPLY.unpack(body)
        assert session != 0 and reserved == 0, "AUTH reply %r" % (body,)
        self.session = session
        return session

    def alloc(self, size):
        """ALLOC of one extent: (error, handle).  The reply is 16 bytes
        (handle, rkey, offset_64k; 8, the handle, in version 2)."""
        err, body = self.call(ALLOC, offset=size)
        if err != OK:
            return err, 0
        want = ALLOC_REPLY.size if self.version >= 3 else 8
        assert len(body) == want, "ALLOC reply of %d bytes" % len(body)
        return OK, int.from_bytes(body[:8], "little")

    # For the tests about something else than the protocol: these
    # assert that the call succeeds.

    def write(self, handle, offset, data):
        error, _ = self.call(WRITE, handle=handle, offset=offset,
                             payload=data)
        assert error == OK, "WRITE failed: %s" % errname(error)

    def read(self, handle, offset, count):
        error, data = self.call(READ, handle=handle, offset=offset,
                                count=count)
        assert error == OK, "READ failed: %s" % errname(error)
        return data

    def stat(self):
        """The STAT reply as a dict (protocol.h struct rp_stat_reply; the
        fields of its first 64 bytes, which every version has)."""
        error, body = self.call(STAT)
        assert error == OK, "STAT failed: %s" % errname(error)
        assert len(body) >= STAT_REPLY.size, "STAT reply of %d bytes" % len(body)
        (cap, used, owner_bytes, ext, owner_ext, clients, owners, uptime,
         _inc) = STAT_REPLY.unpack_from(body)
        return {"capacity": cap, "used": used, "clients": clients,
                "extents": ext}

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


class Checks:
    """A test script's verdicts: fail(msg) ends it with "NAME: FAIL:
    msg"; ok(cond, msg) fails unless cond, and counts the check;
    done() prints the count."""

    def __init__(self, name):
        self.name = name
        self.count = 0

    def fail(self, msg):
        raise SystemExit("%s: FAIL: %s" % (self.name, msg))

    def ok(self, cond, msg):
        if not cond:
            self.fail(msg)
        self.count += 1

    def alloc(self, conn, size):
        """ALLOC on conn that must succeed: the handle."""
        err, h = conn.alloc(size)
        self.ok(err == OK, "ALLOC %d: %s" % (size, errname(err)))
        return h

    def done(self):
        print("%s: %d checks passed" % (self.name, self.count))


def frame(op, handle=0, offset=0, payload=b"", count=0, id=1):
    """One request frame and its payload, as bytes (for tests that send
    several in one go, or a frame in pieces)."""
    return req(op, id, handle, offset, count, len(payload)) + payload


def metric(metrics_port, name):
    """Counter `name` of a memserver's Prometheus endpoint
    (--metrics-listen 127.0.0.1:PORT): rampool_memserver_NAME_total."""
    import urllib.request
    url = "http://127.0.0.1:%d/metrics" % metrics_port
    with urllib.request.urlopen(url, timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("rampool_memserver_%s_total " % name):
                return int(line.split()[1])
    raise KeyError("no metric %s" % name)


def copy_payload(dst_handle, dst_offset, fence, session, incarnation,
                 addr, deadline_ms=5000, reserved=0):
    """COPY's 184-byte request payload (protocol.h struct rp_copy_req);
    addr: bytes or str, zero-padded to 128 (longer is the caller's
    mistake to make on purpose)."""
    if isinstance(addr, str):
        addr = addr.encode()
    return COPY_REQ.pack(dst_handle, dst_offset, fence, session,
                         incarnation, deadline_ms, reserved,
                         addr.ljust(128, b"\0")[:128])


def copy_reply(body):
    """COPY's reply payload: (error, stage, flags)."""
    assert len(body) == COPY_REPLY.size, "COPY reply of %d bytes" % len(body)
    error, stage, flags, reserved = COPY_REPLY.unpack(body)
    assert reserved == 0 and flags & ~COPY_SENT == 0
    assert (error == OK) == (stage == STAGE_DONE), \
        "COPY reply error %d with stage %d" % (error, stage)
    return error, stage, flags


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
