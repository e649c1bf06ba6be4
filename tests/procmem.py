#!/usr/bin/env python3
"""Look into (and tamper with) a live memserver's donated region through
/proc/PID/mem, as a malicious donor could.  The region is the one
anonymous read-write mapping whose length is the server's --size.

  procmem.py count PID SIZE NEEDLE_FILE   how often NEEDLE occurs
  procmem.py save PID SIZE OUT            first non-zero 4 KiB page:
                                          prints its address, saves it
  procmem.py poke PID ADDR IN             write IN's bytes at ADDR
  procmem.py flip PID SIZE                flip one bit of the first
                                          non-zero byte
"""
import sys

PAGE = 4096


def region(pid, size):
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if hi - lo == size and parts[1].startswith("rw") and len(parts) < 6:
                return lo, hi
    raise SystemExit("procmem: no %d-byte anonymous mapping in pid %d" % (size, pid))


def pages(pid, size):
    lo, hi = region(pid, size)
    with open("/proc/%d/mem" % pid, "rb", buffering=0) as m:
        chunk = 1 << 20
        for a in range(lo, hi, chunk):
            m.seek(a)
            yield a, m.read(chunk)


def main():
    cmd, pid = sys.argv[1], int(sys.argv[2])
    if cmd == "count":
        size, needle = int(sys.argv[3]), open(sys.argv[4], "rb").read()
        n, tail = 0, b""
        for _, data in pages(pid, size):
            buf = tail + data
            n += buf.count(needle)
            tail = buf[-(len(needle) - 1):]
        print(n)
    elif cmd in ("save", "flip"):
        size = int(sys.argv[3])
        for a, data in pages(pid, size):
            stripped = data.lstrip(b"\0")
            if not stripped:
                continue
            off = len(data) - len(stripped)
            if cmd == "flip":
                with open("/proc/%d/mem" % pid, "r+b", buffering=0) as m:
                    m.seek(a + off)
                    m.write(bytes([data[off] ^ 0x01]))
                print(hex(a + off))
            else:
                page = off - off % PAGE
                open(sys.argv[4], "wb").write(data[page:page + PAGE])
                print(a + page)
            return
        raise SystemExit("procmem: region is all zeros")
    elif cmd == "poke":
        addr, data = int(sys.argv[3]), open(sys.argv[4], "rb").read()
        with open("/proc/%d/mem" % pid, "r+b", buffering=0) as m:
            m.seek(addr)
            m.write(data)
    else:
        raise SystemExit(__doc__)


main()
