#!/usr/bin/env python3
"""Accepting under memory pressure, and what an unauthenticated
connection costs a live memserver.  Used by test-accept.sh.

  accept.py wedge PORT PID
      Limit the memserver's address space (RLIMIT_AS, set on the running
      process) to what it maps now, so any allocation that needs new
      memory fails, and open connections that send nothing until one
      of them is refused.  Then lift the limit and check that every
      connection was either accepted (it is open, and HELLO works on
      it) or refused (closed by the server), and that new connections
      are still served: the listener did not stop after a failed
      allocation.

  accept.py cost PORT PID KEYFILE N
      On a server with a cluster key: N connections that only say
      HELLO (they never authenticate) and N that say nothing.  Their
      cost in address space (VmSize) and resident memory (VmRSS) must
      be small: they get a 512-byte receive buffer, not one for a
      4 MiB frame.

Readiness is never a sleep: the server accepts connections in the
order they arrive, so once a connection opened after the others has
been served, the others have been accepted or refused.
"""
import os
import resource
import select
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rpwire as m  # noqa: E402

mode, port, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def fail(msg):
    raise SystemExit("FAIL: " + msg)


def served(timeout=10):
    """A new connection: HELLO and PING answered."""
    c = m.Conn(port, timeout=timeout)
    try:
        try:
            c.hello()
        except m.Refused as e:
            fail("HELLO refused with error %d" % e.error)
        if c.call(m.PING)[0] != m.OK:
            fail("PING failed")
    except socket.timeout:
        fail("a new connection got no answer within %d s: the server no"
             " longer accepts" % timeout)
    except (m.Closed, ConnectionResetError):
        fail("a new connection was closed by the server")
    return c


def is_closed_by_server(s):
    """Non-blocking: the server closed s (EOF or reset is waiting)."""
    r, _, _ = select.select([s], [], [], 0)
    if not r:
        return False
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except ConnectionResetError:
        return True


def wedge():
    control = served()
    # Connections held open first: they grow libuv's per-fd table past
    # what this test opens under the limit (libuv aborts if it cannot
    # grow that table, which is not what this test is about), and they
    # take up the heap's spare room, so a few more connections make an
    # allocation fail.
    warm = [socket.create_connection(("127.0.0.1", port)) for _ in range(250)]
    while control.stat()["clients"] != 251:
        pass
    vm = m.proc_status(pid, "VmSize")
    soft, hard = resource.prlimit(pid, resource.RLIMIT_AS)
    resource.prlimit(pid, resource.RLIMIT_AS, (vm, hard))
    socks = []
    try:
        for i in range(240):
            try:
                socks.append(socket.create_connection(("127.0.0.1", port),
                                                      timeout=5))
            except socket.timeout:
                fail("connect timed out: the listen backlog is full, the"
                     " server no longer accepts")
            if i % 8 == 7 and any(is_closed_by_server(s) for s in socks):
                break
    finally:
        resource.prlimit(pid, resource.RLIMIT_AS, (soft, hard))
    # Accepted in order: once this one is served, every earlier one has
    # been accepted or refused.
    check = served()
    clients = control.stat()["clients"]
    refused = [s for s in socks if is_closed_by_server(s)]
    accepted = [s for s in socks if s not in refused]
    print("accept: under RLIMIT_AS=%d: %d connections accepted, %d refused"
          % (vm, len(accepted), len(refused)))
    if not refused:
        fail("no connection was refused: the limit did not make an"
             " allocation fail, so nothing was tested")
    if clients != len(warm) + len(accepted) + 2:
        fail("the server counts %d connections, %d are open"
             % (clients, len(warm) + len(accepted) + 2))
    for s in warm + accepted:
        c = m.Conn(port, timeout=10, sock=s)
        try:
            c.hello()
        except m.Refused:
            fail("an accepted connection was not served")
        if c.call(m.PING)[0] != m.OK:
            fail("an accepted connection was not served")
        s.close()
    check.close()
    for _ in range(20):
        served().close()
    print("accept: PASS: the listener kept accepting after %d refusals"
          % len(refused))


def cost(keyfile, n):
    control = m.Conn(port, timeout=60)
    try:
        control.hello(key=m.load_key(keyfile))
    except m.Refused:
        fail("control connection refused")
    base = control.stat()["clients"]
    vm0, rss0 = m.proc_status(pid, "VmSize"), m.proc_status(pid, "VmRSS")
    conns = []
    for _ in range(n):
        c = m.Conn(port, timeout=60)
        try:
            c.hello(auth=False)
        except m.Refused as e:
            fail("HELLO to a keyed server: error %d" % e.error)
        if not c.flags & m.HELLO_AUTH:
            fail("HELLO to a keyed server: no AUTH asked")
        conns.append(c)
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    clients = control.stat()["clients"]
    if clients != base + 2 * n:
        fail("the server counts %d connections, expected %d"
             % (clients, base + 2 * n))
    dvm = m.proc_status(pid, "VmSize") - vm0
    drss = m.proc_status(pid, "VmRSS") - rss0
    # struct conn with its 512-byte buffer is about 1.3 KiB; 4 KiB a
    # connection leaves room for the allocator and libuv's fd table.
    bound = 2 * n * 4096
    print("accept: %d unauthenticated connections: +%d KiB address space,"
          " +%d KiB resident (bound %d KiB)"
          % (2 * n, dvm >> 10, drss >> 10, bound >> 10))
    if dvm > bound or drss > bound:
        fail("unauthenticated connections cost more than 4 KiB each")
    for s in silent:
        s.close()
    for c in conns:
        c.close()
    print("accept: PASS")


if mode == "wedge":
    wedge()
elif mode == "cost":
    cost(sys.argv[4], int(sys.argv[5]))
else:
    raise SystemExit(__doc__)
