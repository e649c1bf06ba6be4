#!/bin/bash
# One client's pipelined requests do not hold the memserver's event
# loop: another connection's PING runs before the last of 1000 ALLOCs
# sent ahead of it (it used to run after all of them; with a large,
# full donation 12000 ALLOCs delayed it past the client's 5 s timeout).
# Checked by order of execution, not by time: see tests/fairness.py.
source "${srcdir:-.}/functions.sh"
requires python3

MS_SIZE=128M
start_memserver s1
python3 "${srcdir:-.}/fairness.py" "$MS_PORT_s1" "$MS_PID_s1" ||
  fail "a PING waited for every pipelined ALLOC of another connection"
echo "PASS"
