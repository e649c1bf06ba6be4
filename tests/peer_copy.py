#!/usr/bin/env python3
"""COPY (protocol version 4, docs/protocol.md 5: COPY) on the wire.

One memserver writes a range of one of its extents into another's, for
the owner that holds both.  Checked here against live memservers, every
result against the bytes the target really holds:

  versions   a version-3 HELLO gets a version-3 reply without
             RP_HELLO_COPY, and COPY on that connection closes it; a
             version-4 one is told COPY is there, unless the server has
             --peer-copies 0 (then COPY is answered EPERM).
  copy       8 MiB (eight WRITEs, four in flight) and an odd range at
             odd offsets land exactly; the bytes around them do not
             change.
  refusals   a missing or too-short source (ENOENT, EINVAL), and every
             malformed field of the payload (EINVAL, the connection
             stays); a malformed header closes.
  target     the wrong session or incarnation, an older generation, a
             port nobody listens on: refused before any WRITE (no
             RP_COPY_SENT), the target extent unchanged; a target
             handle that does not exist: RP_COPY_SENT with ENOENT.
  fencing    a link made at generation N is closed by the owner's join
             at N+1 there; a COPY naming N is then refused.
  deadline   a target that stops taking bytes after the handshake
             (faultproxy blackhole): the COPY ends at its deadline with
             RP_COPY_SENT; once the client FREEs that extent, what was
             held in the network reaches nothing (a new extent keeps
             its bytes).
  busy       --peer-copies 1: a second COPY while one waits is EBUSY.
  links      a connection that says RP_HELLO_PEER (a COPY link) joins
             only an owner connected there, at exactly its generation
             (never fencing it), does not count against
             --max-client-connections, and gets no notice: a DRAIN
             notice goes to the owner's own connection.  Nor does a
             quiet one (RP_HELLO_QUIET, a client's lane): an owner that
             joins a draining server on one first hears DRAIN on its
             next ordinary connection.
  gone       a source FREEd during its COPY ends it (SOURCE, SENT) or
             it finished first; a requester that hangs up mid-copy
             leaves a server that serves the next COPY.

Usage: peer_copy.py plain A B C Z D PROXY_CTL B_PROXY_PORT
       peer_copy.py keyed KEY A B X Y
  plain: A and B are ordinary memservers, C has --peer-copies 1 and
         --max-client-connections 2, Z has --peer-copies 0, D is drained
         at the end (it exits); B is also reachable through a faultproxy
         (control socket PROXY_CTL, B's port there B_PROXY_PORT).
  keyed: A and B hold the cluster key KEY, X holds another, Y none.
Exits non-zero on the first thing a server gets wrong.
"""
import os
import sys
import time

import faultproxy

from rpwire import (Conn, Closed, Refused, ALLOC, COPY, DRAIN, FREE, HELLO,
                    PING, READ, OK, EINVAL, ENOENT, EPERM, EBUSY, COPY_SENT,
                    HELLO_PEER, HELLO_QUIET, REPLY, REPLY_MAGIC,
                    STAGE_DONE, STAGE_CONNECT, STAGE_HANDSHAKE, STAGE_WRITE,
                    STAGE_SOURCE, STAGE_DEADLINE, MIB, copy_payload,
                    copy_reply, errname, hello_payload, load_key, req)

checks = 0


def fail(msg):
    raise SystemExit("peer_copy.py: FAIL: %s" % msg)


def ok(cond, msg):
    global checks
    if not cond:
        fail(msg)
    checks += 1


def addr(port):
    return "127.0.0.1:%d" % port


class Side:
    """One owner's version-4 connection to one memserver."""

    def __init__(self, port, owner, key=None, fence=1):
        self.port = port
        self.c = Conn(port, version=4, timeout=20)
        self.c.hello(owner, fence, key)
        self.fence = fence

    def alloc(self, size):
        err, h = self.c.alloc(size)
        ok(err == OK, "ALLOC of %d on port %d: %s" % (size, self.port,
                                                      errname(err)))
        return h


def copy_call(src, handle, offset, count, dst, dst_handle, dst_offset=0,
              fence=None, session=None, incarnation=None, to=None,
              deadline_ms=5000):
    """COPY on src's connection; (frame error, (error, stage, flags))."""
    payload = copy_payload(
        dst_handle, dst_offset, dst.fence if fence is None else fence,
        dst.c.session if session is None else session,
        dst.c.incarnation if incarnation is None else incarnation,
        addr(dst.port) if to is None else to, deadline_ms)
    err, body = src.c.call(COPY, handle=handle, offset=offset, count=count,
                           payload=payload)
    if err != OK:
        ok(body == b"", "a refused COPY with a payload")
        return err, None
    return OK, copy_reply(body)


def expect_copy(res, error, stage, sent, what):
    err, r = res
    ok(err == OK, "%s: COPY answered %s, not a copy reply" % (what,
                                                             errname(err)))
    ok(r[0] == error and r[1] == stage,
       "%s: COPY ended %s at stage %d, not %s at %d" %
       (what, errname(r[0]), r[1], errname(error), stage))
    if sent is not None:
        ok(bool(r[2] & COPY_SENT) == sent,
           "%s: RP_COPY_SENT %s" % (what, "set" if r[2] else "not set"))


def read_all(side, h, size):
    out = bytearray()
    for off in range(0, size, 4 * MIB):
        out += side.c.read(h, off, min(4 * MIB, size - off))
    return bytes(out)


def write_all(side, h, data):
    for off in range(0, len(data), 4 * MIB):
        side.c.write(h, off, data[off:off + 4 * MIB])


class Proxy:
    def __init__(self, path):
        self.path = path

    def __call__(self, *words):
        line = faultproxy.command(self.path, words)
        if not line.startswith("ok"):
            fail("faultproxy %r: %s" % (words, line))
        return line


def peer_join(port, owner, fence):
    """A connection that says it is a COPY link; raises Refused."""
    c = Conn(port, version=4)
    c.hello(owner, fence, flags=HELLO_PEER)
    return c


def refused_join(what, port, owner, fence, peer):
    try:
        if peer:
            peer_join(port, owner, fence)
        else:
            Side(port, owner, fence=fence)
    except Refused as e:
        ok(e.error == EPERM, "%s refused with %s" % (what, errname(e.error)))
        return
    fail("%s was not refused" % what)


def next_frame(c):
    """The next frame on c: ("notice", kind) or ("reply", error, id)."""
    hdr = c._recv(REPLY.size)
    magic, a, b, _, length, _ = REPLY.unpack(hdr)
    if magic == 0x6e505252:          # protocol.h RP_NOTICE_MAGIC
        kind, count = a, int.from_bytes(hdr[16:20], "little")
        if count:
            c._recv(8 * count)
        return ("notice", kind)
    ok(magic == REPLY_MAGIC, "a frame with magic %#x" % magic)
    if length:
        c._recv(length)
    return ("reply", a, b)


def links(c_port, d_port):
    owner = os.urandom(16)
    refused_join("a COPY link for an owner not connected", c_port, owner, 1,
                 True)
    own1 = Side(c_port, owner, fence=3)
    refused_join("a COPY link at a lower generation", c_port, owner, 2, True)
    refused_join("a COPY link at a higher generation", c_port, owner, 4, True)
    ok(not own1.c.is_closed(), "a refused COPY link fenced the owner")
    p1, p2 = peer_join(c_port, owner, 3), peer_join(c_port, owner, 3)
    own2 = Side(c_port, owner, fence=3)
    refused_join("a third connection of the owner (limit 2)", c_port, owner,
                 3, False)
    ok(not p1.is_closed() and not p2.is_closed(), "a COPY link was closed")
    ok(not own2.c.is_closed(), "the owner's second connection was closed")
    # DRAIN: the owner hears it on its own connection, the link not at
    # all (a notice would come before the link's PING reply).
    owner = os.urandom(16)
    own = Side(d_port, owner)
    link = peer_join(d_port, owner, 1)   # the newest session of the owner
    other = Side(d_port, os.urandom(16))
    rid = other.c.send(DRAIN, offset=60000)
    while True:
        f = next_frame(other.c)
        if f[0] == "reply":
            ok(f[1] == OK and f[2] == rid, "DRAIN answered %r" % (f,))
            break
    f = next_frame(own.c)
    ok(f == ("notice", 2), "the owner's own connection got %r, not DRAIN" %
       (f,))
    rid = link.send(PING)
    f = next_frame(link)
    ok(f[0] == "reply" and f[2] == rid,
       "the COPY link got %r before its PING reply" % (f,))
    owner = os.urandom(16)
    quiet = Conn(d_port, version=4, timeout=20)
    quiet.hello(owner, 1, flags=HELLO_QUIET)
    rid = quiet.send(PING)
    f = next_frame(quiet)
    ok(f[0] == "reply" and f[2] == rid,
       "a quiet connection got %r before its PING reply" % (f,))
    # An ordinary join to a draining server hears DRAIN at once (before
    # its HELLO reply).
    own = Conn(d_port, version=4, timeout=20)
    rid = own.send(HELLO, payload=hello_payload(owner, os.urandom(32), 1, 4))
    f = next_frame(own)
    ok(f == ("notice", 2), "the owner's ordinary connection after a quiet"
       " one got %r, not DRAIN" % (f,))
    f = next_frame(own)
    ok(f == ("reply", OK, rid), "its HELLO answered %r" % (f,))
    rid = quiet.send(PING)
    f = next_frame(quiet)
    ok(f[0] == "reply" and f[2] == rid,
       "a quiet connection got %r before its second PING reply" % (f,))


def plain(a_port, b_port, c_port, z_port, d_port, ctl, b_proxy_port):
    proxy = Proxy(ctl)
    owner = os.urandom(16)

    # versions
    v3 = Conn(a_port, version=3)
    v3.hello(owner=os.urandom(16))
    ok(not v3.flags & 2, "COPY announced to a version-3 client")
    v3.send(COPY, handle=1, count=4096, payload=bytes(184))
    ok(v3.is_closed(), "COPY on a version-3 connection did not close it")
    a = Side(a_port, owner)
    ok(a.c.flags & 2, "a version-4 HELLO was not told of COPY")
    z = Side(z_port, owner)
    ok(not z.c.flags & 2, "--peer-copies 0 announced COPY")
    b = Side(b_port, owner)
    hz = z.alloc(64 * 1024)
    hb0 = b.alloc(64 * 1024)
    ok(copy_call(z, hz, 0, 4096, b, hb0)[0] == EPERM,
       "--peer-copies 0 did not refuse COPY with EPERM")

    # copy: 8 MiB whole, then an odd range at odd offsets
    size = 8 * MIB
    data = os.urandom(size)
    ha, hb = a.alloc(size), b.alloc(size)
    write_all(a, ha, data)
    expect_copy(copy_call(a, ha, 0, size, b, hb), OK, STAGE_DONE, True,
                "8 MiB copy")
    ok(read_all(b, hb, size) == data, "the 8 MiB copy differs")
    marker = os.urandom(size)
    write_all(b, hb, marker)
    off, n, doff = MIB + 4097, 1500001, 12345
    expect_copy(copy_call(a, ha, off, n, b, hb, doff), OK, STAGE_DONE, True,
                "odd range")
    want = marker[:doff] + data[off:off + n] + marker[doff + n:]
    ok(read_all(b, hb, size) == want,
       "an odd-range copy wrote the wrong bytes or outside its range")

    # refusals before anything starts
    ok(copy_call(a, ha ^ (1 << 40), 0, 4096, b, hb)[0] == ENOENT,
       "a COPY of a handle we do not hold was not ENOENT")
    ok(copy_call(a, ha, size - 4096, 8192, b, hb)[0] == EINVAL,
       "a COPY past the end of its source was not EINVAL")
    inc, sess = b.c.incarnation, b.c.session
    bad = {
        "address not terminated": copy_payload(hb, 0, 1, sess, inc,
                                               "1" * 128),
        "address with a space": copy_payload(hb, 0, 1, sess, inc,
                                             "127.0.0.1: 80"),
        "address with a control byte": copy_payload(hb, 0, 1, sess, inc,
                                                    "127.0.0.1:\n80"),
        "bytes after the address's NUL": copy_payload(
            hb, 0, 1, sess, inc, addr(b_port).encode() + b"\0junk"),
        "empty address": copy_payload(hb, 0, 1, sess, inc, ""),
        "deadline 0": copy_payload(hb, 0, 1, sess, inc, addr(b_port), 0),
        "deadline over 600 s": copy_payload(hb, 0, 1, sess, inc,
                                            addr(b_port), 600001),
        "reserved set": copy_payload(hb, 0, 1, sess, inc, addr(b_port),
                                     1000, reserved=1),
        "target handle 0": copy_payload(0, 0, 1, sess, inc, addr(b_port)),
        "session 0": copy_payload(hb, 0, 1, 0, inc, addr(b_port)),
        "target offset 1 GiB": copy_payload(hb, 1 << 30, 1, sess, inc,
                                            addr(b_port)),
        "port not a number": copy_payload(hb, 0, 1, sess, inc,
                                          "127.0.0.1:http"),
        "no port": copy_payload(hb, 0, 1, sess, inc, "127.0.0.1"),
    }
    for what, payload in bad.items():
        err, body = a.c.call(COPY, handle=ha, count=4096, payload=payload)
        ok(err == EINVAL and body == b"",
           "COPY with %s answered %s" % (what, errname(err)))
    ok(not a.c.is_closed(), "a refused COPY closed the connection")
    ok(read_all(b, hb, size) == want, "a refused COPY changed the target")
    for what, frame in {
            "count 0": req(COPY, 99, ha, 0, 0, 184) + bytes(184),
            "a short payload": req(COPY, 99, ha, 0, 4096, 100) + bytes(100),
            "no handle": req(COPY, 99, 0, 0, 4096, 184) + bytes(184)}.items():
        c = Side(a_port, owner)
        c.c.send_raw(frame)
        ok(c.c.is_closed(), "a COPY header with %s did not close" % what)

    # the target: refused before any WRITE, nothing changes there
    for what, kw, stage in (
            ("another session", {"session": sess + 1000}, STAGE_HANDSHAKE),
            ("another incarnation", {"incarnation": bytes(16)},
             STAGE_HANDSHAKE),
            ("nobody listening", {"to": "127.0.0.1:1"}, STAGE_CONNECT)):
        err, r = copy_call(a, ha, 0, size, b, hb, **kw)
        ok(err == OK and r[0] != OK and r[1] == stage and not r[2] & COPY_SENT,
           "COPY to %s: %r" % (what, (err, r)))
    ok(read_all(b, hb, size) == want, "a refused target changed")
    expect_copy(copy_call(a, ha, 0, 4096, b, hb ^ (1 << 40)), ENOENT,
                STAGE_WRITE, True, "a target handle that does not exist")

    # fencing: b at generation 5 (a new owner: its own generations)
    owner2 = os.urandom(16)
    a2, b2 = Side(a_port, owner2), Side(b_port, owner2, fence=5)
    h2a, h2b = a2.alloc(MIB), b2.alloc(MIB)
    d2 = os.urandom(MIB)
    a2.c.write(h2a, 0, d2)
    err, r = copy_call(a2, h2a, 0, MIB, b2, h2b, fence=4)
    ok(err == OK and r[1] == STAGE_HANDSHAKE and r[0] == EPERM and
       not r[2] & COPY_SENT, "a COPY at an older generation: %r" % ((err, r),))
    expect_copy(copy_call(a2, h2a, 0, MIB, b2, h2b), OK, STAGE_DONE, True,
                "generation 5")
    ok(b2.c.read(h2b, 0, MIB) == d2, "the generation-5 copy differs")
    b2n = Side(b_port, owner2, fence=6)   # closes a2's link (and b2)
    ok(b2.c.is_closed(), "the generation-6 join did not fence generation 5")
    err, r = copy_call(a2, h2a, 0, MIB, b2, h2b, fence=5)
    ok(err == OK and r[1] == STAGE_HANDSHAKE and not r[2] & COPY_SENT,
       "a COPY at the fenced generation 5: %r" % ((err, r),))
    a2.c.write(h2a, 0, d2[::-1])
    expect_copy(copy_call(a2, h2a, 0, MIB, b2n, h2b), OK, STAGE_DONE, True,
                "generation 6")
    ok(b2n.c.read(h2b, 0, MIB) == d2[::-1], "the generation-6 copy differs")

    # deadline: b through the proxy; a link made, then blackholed
    bp = Side(b_port, owner)
    bp.port = b_proxy_port    # a reaches b through the proxy
    hbp = b.alloc(size)
    bp.c.session, bp.c.incarnation = b.c.session, b.c.incarnation
    expect_copy(copy_call(a, ha, 0, MIB, bp, hbp), OK, STAGE_DONE, True,
                "through the proxy")
    proxy("b#0", "blackhole")
    t0 = time.monotonic()
    res = copy_call(a, ha, 0, size, bp, hbp, deadline_ms=500)
    took = time.monotonic() - t0
    err, r = res
    ok(err == OK and r[0] != OK and r[1] in (STAGE_DEADLINE, STAGE_WRITE) and
       r[2] & COPY_SENT, "a COPY into a blackhole: %r" % (res,))
    ok(took < 10, "a 500 ms COPY deadline answered after %.1f s" % took)
    ok(b.c.call(FREE, handle=hbp)[0] == OK, "FREE of the spoiled target")
    hnew = b.alloc(size)
    fresh = os.urandom(size)
    write_all(b, hnew, fresh)
    proxy("b", "pass")
    # Whatever the proxy held goes on now, if its connection still
    # exists; wait until it holds nothing for b.
    for _ in range(300):
        st = proxy("b", "status")
        if "held" not in st or all(h in ("", "0") for h in
                                   st.split("held", 1)[1].strip().split(",")):
            break
        time.sleep(0.05)
    err, _ = b.c.call(READ, handle=hbp, offset=0, count=4096)
    ok(err == ENOENT, "the FREEd target still answers READ (%s)" % errname(err))
    ok(read_all(b, hnew, size) == fresh,
       "late WRITEs of a failed COPY changed another extent")
    ok(not a.c.is_closed(), "the source stopped serving after a failed COPY")

    # busy: c takes one COPY at a time; a blackholed b keeps one waiting
    cc = Side(c_port, owner)
    hc = cc.alloc(MIB)
    proxy("b", "blackhole")
    first = cc.c.send(COPY, handle=hc, count=MIB, payload=copy_payload(
        hb, 0, 1, b.c.session, b.c.incarnation, addr(b_proxy_port), 1500))
    err, body = cc.c.call(COPY, handle=hc, count=MIB, payload=copy_payload(
        hb, 0, 1, b.c.session, b.c.incarnation, addr(b_port), 1500))
    ok(err == EBUSY and body == b"",
       "a second COPY over --peer-copies 1 answered %s" % errname(err))
    err, rid, _free, body = cc.c.reply()
    ok(rid == first and err == OK, "the waiting COPY's reply")
    e, stage, flags = copy_reply(body)
    ok(stage == STAGE_HANDSHAKE and not flags & COPY_SENT,
       "a COPY stuck in the handshake ended %s at %d, flags %d" %
       (errname(e), stage, flags))
    proxy("b", "pass")
    expect_copy(copy_call(cc, hc, 0, MIB, b, hb), OK, STAGE_DONE, True,
                "after EBUSY")

    # gone: the source FREEd during its COPY (another connection)
    big = 64 * MIB
    hs, ht = a.alloc(big), b.alloc(big)
    a_again = Side(a_port, owner)
    rid = a.c.send(COPY, handle=hs, count=big, payload=copy_payload(
        ht, 0, 1, b.c.session, b.c.incarnation, addr(b_port)))
    ok(a_again.c.call(FREE, handle=hs)[0] == OK, "FREE of a copying source")
    err, got, _free, body = a.c.reply()
    # The two connections are not ordered: the FREE may even run first
    # (ENOENT at once); else the copy finished first, or it ended at
    # the source, SENT or not (the FREE may come before the link is
    # ready).
    ok(got == rid and err in (OK, ENOENT),
       "the COPY whose source went away: %s" % errname(err))
    if err == OK:
        e, stage, flags = copy_reply(body)
        ok(e == OK or (stage == STAGE_SOURCE and e == ENOENT),
           "a COPY whose source went away ended %s at stage %d" %
           (errname(e), stage))
    # the requester hangs up mid-copy
    hs = a.alloc(big)
    a.c.send(COPY, handle=hs, count=big, payload=copy_payload(
        ht, 0, 1, b.c.session, b.c.incarnation, addr(b_port)))
    a.c.close()
    a3 = Side(a_port, owner, fence=2)
    expect_copy(copy_call(a3, hs, 0, MIB, b, ht), OK, STAGE_DONE, True,
                "after a requester left mid-copy")
    ok(read_all(b, ht, MIB) == read_all(a3, hs, MIB),
       "the copy after a requester left differs")


def keyed(key, a_port, b_port, x_port, y_port):
    owner = os.urandom(16)
    a = Side(a_port, owner, key)
    b = Side(b_port, owner, key)
    ok(a.c.flags & 2, "a keyed server did not announce COPY")
    ha, hb = a.alloc(4 * MIB), b.alloc(4 * MIB)
    data = os.urandom(4 * MIB)
    a.c.write(ha, 0, data)
    expect_copy(copy_call(a, ha, 0, 4 * MIB, b, hb), OK, STAGE_DONE, True,
                "authenticated copy")
    ok(b.c.read(hb, 0, 4 * MIB) == data, "the authenticated copy differs")
    y = Side(y_port, owner)           # no key there
    hy = y.alloc(MIB)
    # x holds another key: its proof fails before any session check.
    xs = Side(b_port, owner, key)
    xs.port = x_port
    err, r = copy_call(a, ha, 0, MIB, xs, hb)
    ok(err == OK and r[1] == STAGE_HANDSHAKE and r[0] == EPERM and
       not r[2] & COPY_SENT, "COPY to a server with another key: %r" %
       ((err, r),))
    err, r = copy_call(a, ha, 0, MIB, y, hy)
    ok(err == OK and r[1] == STAGE_HANDSHAKE and r[0] == EPERM and
       not r[2] & COPY_SENT, "COPY to a server without a key: %r" %
       ((err, r),))
    y.c.write(hy, 0, data[:MIB])
    err, r = copy_call(y, hy, 0, MIB, b, hb)
    ok(err == OK and r[1] == STAGE_HANDSHAKE and r[0] == EPERM and
       not r[2] & COPY_SENT, "COPY from a server without a key: %r" %
       ((err, r),))
    ok(b.c.read(hb, 0, 4 * MIB) == data, "a refused COPY changed the target")


if __name__ == "__main__":
    if sys.argv[1] == "plain":
        plain(*[int(v) for v in sys.argv[2:7]], sys.argv[7], int(sys.argv[8]))
        links(int(sys.argv[4]), int(sys.argv[6]))
    else:
        keyed(load_key(sys.argv[2]), *[int(v) for v in sys.argv[3:7]])
    print("peer_copy.py %s: PASS (%d checks)" % (sys.argv[1], checks))
