#!/usr/bin/env python3
"""How long one ALLOC takes on a nearly full memserver, and how long
one client's pipelined ALLOCs delay another client's PING.

  bench/memserver-alloc.py [--memserver PATH] [--protocol N] [--rounds R]

Starts its own memserver on 127.0.0.1 (port 0): --size 64G --no-mlock
(the region is MAP_NORESERVE and never written, so the donation costs
nothing), and fills 63 GiB of it with 1 GiB extents: the state in which
the old first-fit scan took 0.61 ms per ALLOC.  Then:

  alloc   the median round trip of 400 sequential 64 KiB ALLOCs, less
          the median round trip of 400 PINGs: what the server spends in
          one ALLOC (each is freed again before the next).
  delay   connection A sends N 64 KiB ALLOCs in one go (N = 4000, 12000);
          connection B sends a PING as soon as A's requests are out, and
          the time until B's reply is its delay.  Median of R rounds (3);
          A's extents are freed between rounds.

--memserver runs another build (e.g. an older tree's memserver/memserver;
give --protocol 2 for one that speaks protocol version 2).  Numbers are
wall-clock on a shared machine: compare runs made one after the other.
"""
import argparse
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

ap = argparse.ArgumentParser()
ap.add_argument("--memserver",
                default=os.path.join(HERE, "..", "memserver", "memserver"))
ap.add_argument("--protocol", type=int, default=3)
ap.add_argument("--rounds", type=int, default=3)
args = ap.parse_args()
os.environ["RP_TEST_PROTOCOL"] = str(args.protocol)
import rpwire as m  # noqa: E402  (reads RP_TEST_PROTOCOL)

KIB64 = 64 * 1024


def start():
    tmp = tempfile.mkdtemp(prefix="ms-alloc-bench.")
    portfile = os.path.join(tmp, "port")
    log = open(os.path.join(tmp, "memserver.log"), "w")
    p = subprocess.Popen([args.memserver, "--listen", "127.0.0.1:0",
                          "--size", "64G", "--no-mlock", "--port-file",
                          portfile, "--max-connections", "16"],
                         stdout=log, stderr=log)
    for _ in range(400):
        if os.path.exists(portfile) and open(portfile).read().strip():
            return p, int(open(portfile).read())
        if p.poll() is not None:
            raise SystemExit("memserver exited: see " + log.name)
        time.sleep(0.05)
    raise SystemExit("memserver did not start")


def median_rtt(c, frame_fn, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        c.send_raw(frame_fn())
        reply = c.reply()
        times.append(time.perf_counter() - t)
        yield reply
    median_rtt.result = statistics.median(times)


def main():
    proc, port = start()
    try:
        a, b = m.Conn(port, timeout=120), m.Conn(port, timeout=120)
        for c in (a, b):
            try:
                c.hello()
            except m.Refused:
                raise SystemExit("HELLO refused (wrong --protocol?)")
        big = []
        for _ in range(63):
            error, h = a.alloc(m.GIB)
            assert error == m.OK, "ALLOC of 1 GiB: %s" % m.errname(error)
            big.append(h)

        # alloc: sequential round trips, ALLOC less PING.
        for _ in median_rtt(b, lambda: m.req(m.PING), 400):
            pass
        ping_rtt = median_rtt.result
        handles = []
        for error, _, _, body in median_rtt(
                a, lambda: m.req(m.ALLOC, offset=KIB64), 400):
            assert error == m.OK
            handles.append(struct.unpack_from("<Q", body)[0])
            # freed before the next, so every ALLOC sees the same state
            assert a.call(m.FREE, handle=handles.pop())[0] == m.OK
        alloc_rtt = median_rtt.result
        print("alloc: 63 GiB of 64 GiB in use: ALLOC %.1f us (round trip"
              " %.1f us, PING %.1f us)" % ((alloc_rtt - ping_rtt) * 1e6,
                                           alloc_rtt * 1e6, ping_rtt * 1e6))

        for n in (4000, 12000):
            delays = []
            for _ in range(args.rounds):
                frames = b"".join(m.req(m.ALLOC, id=i + 1, offset=KIB64)
                                  for i in range(n))
                # A's requests go out from another thread (the kernel
                # takes 480 KB only as the server reads); B's PING once
                # they are all out.
                sent = threading.Event()

                def send_a():
                    a.send_raw(frames)
                    sent.set()
                threading.Thread(target=send_a).start()
                sent.wait()
                t = time.perf_counter()
                b.send(m.PING, id=7)
                b.reply()
                delays.append(time.perf_counter() - t)
                hs = []
                for _ in range(n):
                    error, _, _, body = a.reply()
                    assert error == m.OK, "ALLOC failed: %d" % error
                    hs.append(struct.unpack_from("<Q", body)[0])
                a.send_raw(b"".join(m.req(m.FREE, handle=h) for h in hs))
                for _ in hs:
                    assert a.reply()[0] == m.OK
            print("delay: %5d pipelined ALLOCs on another connection: PING"
                  " answered after %.1f ms (median of %d; max %.1f ms)"
                  % (n, statistics.median(delays) * 1e3, len(delays),
                     max(delays) * 1e3))
        for h in big:
            a.call(m.FREE, handle=h)
    finally:
        proc.terminate()
        proc.wait()


main()
