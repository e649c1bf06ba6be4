#!/bin/bash
# READ replies of 64 KiB or more are written from the region itself
# (tests/read_direct.py): each must still carry what the extent held
# when the READ ran, whether a WRITE, ZERO or FREE follows it on the
# same connection in the same send, or another connection changes and
# frees the extent while the reply waits for a client that does not
# read.
source "${srcdir:-.}/functions.sh"
requires python3

MS_SIZE=16M
start_memserver_metrics ms
python3 "${srcdir:-.}/read_direct.py" "$MS_PORT_ms" "$MS_MPORT_ms" ||
  fail "READ replies from the region"
echo "PASS"
