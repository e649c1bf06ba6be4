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
start_memserver ms --metrics-listen 127.0.0.1:0 \
  --metrics-port-file "$TMP/ms.mport"
wait_for_file "$TMP/ms.mport" "metrics port of ms"
python3 "${srcdir:-.}/read_direct.py" "$MS_PORT_ms" "$(cat "$TMP/ms.mport")" ||
  fail "READ replies from the region"
echo "PASS"
