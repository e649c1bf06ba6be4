#!/usr/bin/env python3
# faultproxy: a loopback TCP proxy that puts ordinary network faults
# between the rampool client and its memservers, on command.
#
# One process fronts several upstreams.  For each NAME=PORT it listens
# on 127.0.0.1 (an ephemeral port) and forwards every connection to
# 127.0.0.1:PORT.  When every listener is up it writes "NAME PORT" lines
# to --ports-file (renamed into place: a test waits for the file).
#
# It is steered through a Unix control socket (--control PATH), one
# line per command, answered with one line once the command has taken
# effect ("ok ..." or "error: ..."):
#
#   NAME pass        forward (the default)
#   NAME cut         reset every current connection on both sides (the
#                    memserver sees its connections close: its lease
#                    clock starts) and reset every new one at once
#   NAME blackhole   forward nothing, hold connections open: bytes
#                    already read wait in the proxy, the rest in the
#                    kernels' buffers; new connections are accepted but
#                    not connected upstream.  Like a partition, what was
#                    held is delivered if the link comes back (`pass`)
#                    and its connection still exists then.
#   NAME delay MS    forward every chunk MS ms after it was read; a
#                    later `pass` sends what is still held at once
#   NAME reset       reset every current connection on both sides once,
#                    then forward
#   NAME status      "ok NAME MODE delay MS conns N held H,H,...": H is
#                    for each connection, oldest first, the chunks read
#                    and not yet sent on (a readiness check: a request
#                    is in flight on that connection)
#   NAME inject HEX  send the bytes HEX to the client on every current
#                    connection, between two of the server's frames
#                    (the proxy follows the frames it passes on: reply
#                    and notice headers, protocol.h); answered once
#                    sent.  For frames a real server would not send.
#   ping             "ok"
# NAME may be "*": every upstream (answered once all took effect), or
# NAME#I: only the I-th of that upstream's current connections, oldest
# first (blackhole, pass and reset only; a client that opens its
# connections in a fixed order can so be hit on one of them), or
# NAME#I-: the I-th and every later one, in one step (answered with how
# many; an error if there is none), for connections that come and go.
#
# `faultproxy.py ctl SOCKET WORDS...` sends one command and prints the
# answer (exit 1 on "error").  The proxy ends on SIGTERM or SIGINT,
# closing every socket; it starts no other process.
#
# Threads and blocking sockets: each connection has a reader and a
# sender thread per direction (a queue between them is what lets
# `delay` delay rather than throttle).  Resets are SO_LINGER 0 closes,
# made by the last thread of a connection to exit; a command that
# resets connections waits for that before it answers.
import itertools
import os
import re
import queue
import signal
import socket
import struct
import sys
import threading
import time

CHUNK = 256 * 1024
POLL = 0.2            # how often blocked threads look at `closed`
EOF = object()
RESET = object()
NOTICE_MAGIC = 0x6e505252   # protocol.h RP_NOTICE_MAGIC


def log(msg):
    sys.stderr.write("faultproxy: %s\n" % msg)
    sys.stderr.flush()


def set_rst(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
    except OSError:
        pass


def rst_close(sock):
    set_rst(sock)
    try:
        sock.close()
    except OSError:
        pass


class Conn:
    """One client connection and its upstream connection."""
    numbers = itertools.count(1)  # next() is atomic under the GIL

    def __init__(self, up, client):
        self.seq = next(Conn.numbers)   # accept order
        self.override = None      # "blackhole": this connection only
        self.up = up
        self.client = client
        self.server = None
        self.closed = False       # aborting: every thread exits
        self.threads = 0          # live threads; the last one closes
        self.held = 0             # chunks read, not yet sent on (up.cond)
        self.flushed_at = 0.0
        self.done = False         # sockets closed
        # Server-to-client framing, for `inject`: the header bytes of
        # the frame under way, and its payload bytes still to come.
        self.frame_hdr = b""
        self.frame_left = 0
        self.injects = []         # byte strings to send at a boundary
        self.injected = 0         # how many were sent (up.cond)
        self.to_client = False    # the server-to-client sender runs

    # Called with up.cond held.
    def abort(self):
        if self.closed:
            return
        self.closed = True
        for s in (self.client, self.server):
            if s is None:
                continue
            set_rst(s)
            try:
                s.shutdown(socket.SHUT_RD)   # wakes a blocked recv
            except OSError:
                pass
        self.up.cond.notify_all()

    def start_thread(self, fn, *args):
        # up.cond held
        self.threads += 1
        t = threading.Thread(target=self._run, args=(fn,) + args,
                             daemon=True)
        t.start()

    def _run(self, fn, *args):
        try:
            fn(*args)
        except Exception as e:        # a proxy bug must not hang a test
            log("%s: thread error: %r" % (self.up.name, e))
            with self.up.cond:
                self.abort()
        finally:
            with self.up.cond:
                self.threads -= 1
                if self.threads == 0:
                    self._close()

    def _close(self):
        # up.cond held; the last thread of the connection
        for s in (self.client, self.server):
            if s is None:
                continue
            if self.closed:
                set_rst(s)
            try:
                s.close()
            except OSError:
                pass
        self.done = True
        self.up.conns.discard(self)
        self.up.cond.notify_all()

    # The first thread: wait while the link is blackholed, connect
    # upstream, then start the pumps.
    def setup(self):
        up = self.up
        with up.cond:
            while up.mode == "blackhole" and not self.closed:
                up.cond.wait(POLL)
            if self.closed:
                return
        try:
            server = socket.create_connection(("127.0.0.1", up.port),
                                              timeout=2)
        except OSError as e:
            log("%s: connection %d: upstream connect: %s; reset"
                % (up.name, self.seq, e))
            with up.cond:
                self.abort()          # the client sees a reset
            return
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with up.cond:
            self.server = server
            if self.closed:           # cut while connecting
                set_rst(server)
                return
            for s in (self.client, self.server):
                s.settimeout(POLL)
            for src, dst in ((self.client, self.server),
                             (self.server, self.client)):
                q = queue.Queue(maxsize=64)
                self.start_thread(self.reader, src, q)
                self.start_thread(self.sender, dst, q)

    def reader(self, src, q):
        up = self.up
        while True:
            try:
                data = src.recv(CHUNK)
            except socket.timeout:
                if self.closed:
                    return
                continue
            except OSError:
                data = RESET
            if self.closed:
                return
            if data == b"":
                data = EOF
            now = time.monotonic()
            due = now + up.delay_ms / 1000.0
            with up.cond:
                self.held += 1
            while True:
                try:
                    q.put((now, due, data), timeout=POLL)
                    break
                except queue.Full:
                    if self.closed:
                        return
            if data is EOF or data is RESET:
                return

    # Follow the server's frames through data (server to client only).
    def follow_frames(self, data):
        view = memoryview(data)
        while view:
            if self.frame_left:
                n = min(self.frame_left, len(view))
                self.frame_left -= n
                view = view[n:]
                continue
            n = min(32 - len(self.frame_hdr), len(view))
            self.frame_hdr += bytes(view[:n])
            view = view[n:]
            if len(self.frame_hdr) == 32:
                magic = struct.unpack_from("<I", self.frame_hdr, 0)[0]
                off = 20 if magic == NOTICE_MAGIC else 24
                self.frame_left = struct.unpack_from("<I", self.frame_hdr,
                                                     off)[0]
                self.frame_hdr = b""

    # At a frame boundary: send what `inject` queued for this connection.
    def send_injects(self, dst):
        with self.up.cond:
            if (not self.injects or self.frame_left or self.frame_hdr or
                    dst is not self.client):
                return
            todo, self.injects = self.injects, []
        for data in todo:
            try:
                dst.sendall(data)
            except OSError:
                pass
        with self.up.cond:
            self.injected += len(todo)
            self.up.cond.notify_all()

    def sender(self, dst, q):
        if dst is not self.client:
            return self.pump(dst, q)
        with self.up.cond:
            self.to_client = True
        try:
            self.pump(dst, q)
        finally:
            with self.up.cond:
                self.to_client = False
                self.injects = []     # nobody will send them now
                self.up.cond.notify_all()

    def pump(self, dst, q):
        up = self.up
        while True:
            try:
                read_at, due, data = q.get(timeout=POLL)
            except queue.Empty:
                if self.closed:
                    return
                self.send_injects(dst)
                continue
            with up.cond:
                while not self.closed:
                    if "blackhole" in (up.mode, self.override):
                        up.cond.wait(POLL)
                        continue
                    wait = due - time.monotonic()
                    if wait <= 0 or read_at <= max(up.flushed_at,
                                                   self.flushed_at):
                        break
                    up.cond.wait(min(wait, POLL))
                if self.closed:
                    return
                self.held -= 1
            if data is RESET:
                log("%s: connection %d: reset by the %s; passed on"
                    % (up.name, self.seq,
                       "client" if dst is self.server else "server"))
                with up.cond:
                    self.abort()
                return
            if data is EOF:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            if dst is self.client:
                self.follow_frames(data)
            view = memoryview(data)
            while view:
                try:
                    n = dst.send(view)
                except socket.timeout:
                    if self.closed:
                        return
                    continue
                except OSError:
                    with up.cond:
                        self.abort()
                    return
                view = view[n:]
            self.send_injects(dst)


class Upstream:
    def __init__(self, name, port):
        self.name = name
        self.port = port
        self.mode = "pass"
        self.delay_ms = 0
        self.flushed_at = 0.0     # chunks read before this go at once
        self.cond = threading.Condition()
        self.conns = set()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.listen_port = self.lsock.getsockname()[1]

    def accept_loop(self):
        while True:
            try:
                client, _ = self.lsock.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.cond:
                if self.mode == "cut":
                    rst_close(client)
                    continue
                c = Conn(self, client)
                self.conns.add(c)
                c.start_thread(c.setup)

    # Reset every current connection and wait until each is closed;
    # then == "pass": forward from now on (new connections are not
    # reset, nor delayed).
    def reset_all(self, then=None):
        with self.cond:
            conns = list(self.conns)
            if then == "pass":
                self.mode = "pass"
                self.delay_ms = 0
                self.flushed_at = time.monotonic()
            for c in conns:
                c.abort()
            deadline = time.monotonic() + 10
            while any(not c.done for c in conns):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, POLL))
        return True

    def command(self, words):
        cmd = words[0] if words else ""
        if cmd == "pass":
            with self.cond:
                self.mode = "pass"
                self.delay_ms = 0
                self.flushed_at = time.monotonic()
                for c in self.conns:
                    c.override = None
                self.cond.notify_all()
        elif cmd == "delay" and len(words) == 2 and words[1].isdigit():
            with self.cond:
                self.mode = "pass"
                self.delay_ms = int(words[1])
                self.cond.notify_all()
        elif cmd == "blackhole":
            with self.cond:
                self.mode = "blackhole"
                self.cond.notify_all()
        elif cmd == "cut":
            with self.cond:
                self.mode = "cut"
            if not self.reset_all():
                return "error: %s: connections did not close" % self.name
        elif cmd == "reset":
            if not self.reset_all(then="pass"):
                return "error: %s: connections did not close" % self.name
        elif cmd == "inject" and len(words) == 2:
            try:
                data = bytes.fromhex(words[1])
            except ValueError:
                return "error: inject: not hex"
            with self.cond:
                conns = [c for c in self.conns
                         if not c.closed and c.to_client]
                if not conns:
                    return "error: %s has no connection" % self.name
                for c in conns:
                    c.injects.append(data)
                deadline = time.monotonic() + 10
                while any(c.injects and not c.closed and c.to_client
                          for c in conns):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return "error: %s: no frame boundary in 10 s" % (
                            self.name)
                    self.cond.wait(min(left, POLL))
        elif cmd == "status":
            with self.cond:
                conns = sorted(self.conns, key=lambda c: c.seq)
                return "ok %s %s delay %d conns %d held %s" % (
                    self.name, self.mode, self.delay_ms, len(conns),
                    ",".join(str(c.held) for c in conns) or "-")
        else:
            return "error: unknown command %r" % " ".join(words)
        return "ok %s %s" % (self.name, " ".join(words))

    # A command for the i-th current connection only, or (to_end) for
    # the i-th and every later one, all under one hold of the lock.
    def conn_command(self, i, words, to_end=False):
        if words not in (["blackhole"], ["pass"], ["reset"]):
            return "error: %s#%d: only blackhole, pass, reset" % (
                self.name, i)
        with self.cond:
            conns = sorted(self.conns, key=lambda c: c.seq)
            if i >= len(conns):
                return "error: %s has %d connection(s)" % (self.name,
                                                           len(conns))
            hit = conns[i:] if to_end else [conns[i]]
            for c in hit:
                if words == ["blackhole"]:
                    c.override = "blackhole"
                elif words == ["pass"]:
                    c.override = None
                    c.flushed_at = time.monotonic()
                else:
                    c.abort()
            if words == ["reset"]:
                for c in hit:
                    while not c.done:
                        self.cond.wait(POLL)
            self.cond.notify_all()
        if to_end:
            return "ok %s#%d- %s %d" % (self.name, i, " ".join(words),
                                        len(hit))
        return "ok %s#%d %s" % (self.name, i, " ".join(words))


def conn_target(word, ups):
    """NAME#I or NAME#I- of a known upstream: (NAME, I, to_end), else
    None."""
    m = re.fullmatch(r"(.+)#([0-9]+)(-?)", word)
    if not m or m.group(1) not in ups:
        return None
    return m.group(1), int(m.group(2)), m.group(3) == "-"


def serve_control(path, ups):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    ls.listen(16)

    def handle(cs):
        with cs, cs.makefile("rw") as f:
            for line in f:
                words = line.split()
                if not words:
                    continue
                if words == ["ping"]:
                    reply = "ok"
                elif words[0] == "*":
                    replies = [u.command(words[1:]) for u in ups.values()]
                    bad = [r for r in replies if not r.startswith("ok")]
                    reply = bad[0] if bad else "ok * " + " ".join(words[1:])
                elif words[0] in ups:
                    reply = ups[words[0]].command(words[1:])
                elif (target := conn_target(words[0], ups)):
                    name, i, to_end = target
                    reply = ups[name].conn_command(i, words[1:], to_end)
                else:
                    reply = "error: no upstream %r" % words[0]
                f.write(reply + "\n")
                f.flush()

    while True:
        cs, _ = ls.accept()
        threading.Thread(target=handle, args=(cs,), daemon=True).start()


def command(path, words):
    """One command to the proxy at control socket path; its answer
    ("ok ..." or "error: ...").  Also for tests that import this."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(path)
    s.sendall((" ".join(words) + "\n").encode())
    reply = b""
    while not reply.endswith(b"\n"):
        got = s.recv(4096)
        if not got:
            break
        reply += got
    s.close()
    return reply.decode().strip()


def ctl(path, words):
    text = command(path, words)
    print(text)
    return 0 if text.startswith("ok") else 1


def usage():
    sys.stderr.write(
        "usage: faultproxy.py --ports-file F --control SOCK NAME=PORT...\n"
        "       faultproxy.py ctl SOCK NAME pass|cut|blackhole|reset|"
        "status|delay MS\n")
    return 2


def main(argv):
    if len(argv) >= 3 and argv[0] == "ctl":
        return ctl(argv[1], argv[2:])
    ports_file = control = None
    ups = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--ports-file", "--control") and i + 1 < len(argv):
            if a == "--ports-file":
                ports_file = argv[i + 1]
            else:
                control = argv[i + 1]
            i += 2
            continue
        name, eq, port = a.partition("=")
        if not eq or not port.isdigit() or name in ("", "*"):
            return usage()
        ups[name] = Upstream(name, int(port))
        i += 1
    if not ports_file or not control or not ups:
        return usage()

    # SIGTERM and SIGINT are blocked in every thread (threads inherit
    # the mask) and taken by the main thread with sigwait: a Python
    # handler would run only if the kernel picked the main thread.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)

    for u in ups.values():
        threading.Thread(target=u.accept_loop, daemon=True).start()
    threading.Thread(target=serve_control, args=(control, ups),
                     daemon=True).start()
    # Ready once the control socket answers: then publish the ports.
    for _ in range(200):
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(control)
            s.close()
            break
        except OSError:
            time.sleep(0.01)
    tmp = ports_file + ".tmp"
    with open(tmp, "w") as f:
        for u in ups.values():
            f.write("%s %d\n" % (u.name, u.listen_port))
    os.rename(tmp, ports_file)
    signal.sigwait(stop_signals)
    try:
        os.unlink(control)
    except OSError:
        pass
    os._exit(0)         # the kernel closes every socket


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
