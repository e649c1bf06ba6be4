#!/usr/bin/env python3
"""Look into (and tamper with) a live memserver's donated region through
/proc/PID/mem, as a malicious donor could.  The region is the one
anonymous read-write mapping whose length is the server's --size.

  procmem.py count PID SIZE NEEDLE_FILE   how often NEEDLE occurs
  procmem.py find PID SIZE NEEDLE_FILE    address of its first
                                          occurrence (exit 1: none)
  procmem.py save PID SIZE OUT            first non-zero 4 KiB page:
                                          prints its address, saves it
  procmem.py peek PID ADDR LEN OUT        save LEN bytes at ADDR
  procmem.py poke PID ADDR IN             write IN's bytes at ADDR
  procmem.py flipat PID ADDR              flip every bit of the byte at
                                          ADDR
  procmem.py flip PID SIZE                flip one bit of the first
                                          non-zero byte
  procmem.py flipall PID SIZE             flip one byte (all its bits)
                                          in every non-zero 4 KiB page,
                                          at a different place in each;
                                          prints how many pages

Also imported by the protocol tests (bounds.py) for region() and
read_at().
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
            yield a, m.read(min(chunk, hi - a))


def read_at(pid, addr, length):
    with open("/proc/%d/mem" % pid, "rb", buffering=0) as m:
        m.seek(addr)
        return m.read(length)


def find(pid, size, needle):
    """Address of needle's first occurrence in the region, or None."""
    tail = b""
    for a, data in pages(pid, size):
        buf = tail + data
        i = buf.find(needle)
        if i >= 0:
            return (a - len(tail)) + i
        tail = buf[-(len(needle) - 1):] if len(needle) > 1 else b""
    return None


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
    elif cmd == "find":
        size, needle = int(sys.argv[3]), open(sys.argv[4], "rb").read()
        a = find(pid, size, needle)
        if a is None:
            raise SystemExit("procmem: not found")
        print(a)
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
    elif cmd == "flipall":
        size, n = int(sys.argv[3]), 0
        with open("/proc/%d/mem" % pid, "r+b", buffering=0) as m:
            for a, data in pages(pid, size):
                for p in range(0, len(data), PAGE):
                    if data[p:p + PAGE].count(0) == PAGE:
                        continue
                    # A different byte of each page: first, last, and
                    # everything between.
                    at = (n * 977) % PAGE
                    m.seek(a + p + at)
                    m.write(bytes([data[p + at] ^ 0xff]))
                    n += 1
        print(n)
    elif cmd == "peek":
        addr, length = int(sys.argv[3]), int(sys.argv[4])
        open(sys.argv[5], "wb").write(read_at(pid, addr, length))
    elif cmd == "flipat":
        addr = int(sys.argv[3])
        with open("/proc/%d/mem" % pid, "r+b", buffering=0) as m:
            m.seek(addr)
            b = m.read(1)
            m.seek(addr)
            m.write(bytes([b[0] ^ 0xff]))
    elif cmd == "poke":
        addr, data = int(sys.argv[3]), open(sys.argv[4], "rb").read()
        with open("/proc/%d/mem" % pid, "r+b", buffering=0) as m:
            m.seek(addr)
            m.write(data)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
