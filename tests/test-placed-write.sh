#!/bin/bash
# WRITEs of 64 KiB or more are received straight into their extent
# (tests/placed_write.py): the payload in pieces that split blocks, then
# the extent freed, and the connection fenced, while the payload
# arrives.  No byte may land in memory that has left the extent, and a
# WRITE cut off leaves each 4 KiB block old or new, never torn.
source "${srcdir:-.}/functions.sh"
requires python3

MS_SIZE=16M
start_memserver_metrics plain
python3 "${srcdir:-.}/placed_write.py" "$MS_PORT_plain" "$MS_MPORT_plain" ||
  fail "placed writes"
grep -q "client reconnected (generation 2): closed 1 older connection" \
  "$TMP/plain.log" || fail "the fence of part 3 not logged"
echo "PASS"
