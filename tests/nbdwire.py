"""The NBD wire, client side, for tests that must send what libnbd
would not (or not read what it would): connect to a Unix socket, the
fixed newstyle handshake (NBD_OPT_GO), requests and simple replies."""
import socket
import struct

IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x3e889045565a9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698


def conn(path):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    return s


def recvn(s, n):
    b = bytearray()
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("closed after %d of %d bytes" % (len(b), n))
        b += c
    return bytes(b)


def opt(s, o, data):
    s.sendall(struct.pack(">QII", IHAVEOPT, o, len(data)) + data)


def opt_reply(s):
    magic, o, t, n = struct.unpack(">QIII", recvn(s, 20))
    assert magic == OPT_REPLY_MAGIC, hex(magic)
    return o, t, recvn(s, n)


def handshake(s, too_big=False):
    """Fixed newstyle, no zeroes, then GO of the default export.  With
    too_big, first an INFO option far too large, which must be refused
    with ERR_TOO_BIG while the handshake goes on."""
    g = recvn(s, 18)
    assert g[:16] == b"NBDMAGICIHAVEOPT", g
    s.sendall(struct.pack(">I", 3))
    if too_big:
        opt(s, 6, b"\0" * 100000)
        o, t, _ = opt_reply(s)
        assert t == 0x80000009, hex(t)
    opt(s, 7, struct.pack(">IH", 0, 0))
    while True:
        o, t, d = opt_reply(s)
        if t == 1:
            return
        assert t == 3, hex(t)


def request(s, typ, cookie, off, length, payload=b""):
    s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, typ, cookie, off,
                          length) + payload)


def reply(s):
    """(error, cookie) of the next simple reply; its data, if any, is
    the caller's to read."""
    magic, err, cookie = struct.unpack(">IIQ", recvn(s, 16))
    assert magic == SIMPLE_REPLY_MAGIC, hex(magic)
    return err, cookie
