#!/bin/bash
# The memserver's bounds check on READ/WRITE/ZERO (offset + length
# within the extent, memserver/session.c), judged by the donor's memory:
# requests reaching past the end of one extent are refused with EINVAL
# and leave both that extent and the one placed right after it in the
# region byte-for-byte as they were (tests/bounds.py).  A check that
# was off by one, or missing, would write into another client's data
# or read it out.  test-malformed.sh checks the error codes only.
source "${srcdir:-.}/functions.sh"
requires python3

MS_SIZE=5M      # a size no other mapping of the process has (procmem.py)
start_memserver s1
python3 "${srcdir:-.}/bounds.py" "$MS_PORT_s1" "$MS_PID_s1" $((5 * 1024 * 1024)) ||
  fail "out-of-range requests were not refused cleanly"
kill -0 "$MS_PID_s1" || fail "the memserver died"
echo "PASS"
