#!/bin/bash
# encrypt=on: a block whose ciphertext fails authentication is never
# returned, whatever the request looks like.  One copy (replicas=1),
# so there is nothing to fail over to: bytes of four blocks are flipped
# in the donor's memory (the first and the last block of an extent, two
# neighbours; the first, the last and a middle byte of a block), and
# every read of the disk is checked against the expected copy:
#  - block by block: exactly the four blocks fail with EIO, no block
#    reads back wrong;
#  - reads that include a bad block (a whole extent, a few bytes inside
#    it, across a block boundary, across an extent boundary) fail
#    whole: no partial data;
#  - reads of good blocks next to bad ones (unaligned too) are exact;
#  - a partial write into a bad block fails (its other bytes cannot be
#    read to merge), and leaves it failing rather than turning the
#    tampered bytes into data; a whole-block write replaces it and then
#    reads back exact;
#  - none of this waits out an outage (outage-wait-ms): the server is
#    up and answered, the data is bad, so the answer is EIO at once.
# test-encrypt.sh flips one bit and counts; this one checks what every
# request shape returns.
source "${srcdir:-.}/functions.sh"
requires nbdkit
use_procmem
B=4096

start_memserver m
STATS=$TMP/stats
start_nbdkit size=8M replicas=1 encrypt=on stats-file="$STATS"
head -c $((4 * MiB)) /dev/urandom >"$TMP/want"
truncate -s $((8 * MiB)) "$TMP/want"
"$TESTS_BIN/nbd_blocks" "$NBD_URI" $MiB "$TMP/want" write 0 4
# Extent 0's block 0 is the first non-zero page of the region.
base=$($PM save "$MS_PID_m" $REGION "$TMP/first")
for bb in 0:0 5:4095 6:2048 255:1000; do      # block:byte
  $PM flipat "$MS_PID_m" $((base + ${bb%:*} * B + ${bb#*:}))
done

scan () {             # EXPECTED_OK EXPECTED_EIO WHAT
  "$TESTS_BIN/nbd_blocks" "$NBD_URI" $B "$TMP/want" >"$TMP/blocks" 2>>"$TMP/blocks.log"
  echo "$3: $(cat "$TMP/blocks")"
  [ "$(cat "$TMP/blocks")" = "ok $1 eio $2 mismatch 0 error 0" ] ||
    fail "$3: expected ok $1 eio $2, got $(cat "$TMP/blocks")"
}
expect () {           # eio|ok OFFSET LENGTH WHAT [pwrite]
  local got
  got=$("$TESTS_BIN/nbd_blocks" "$NBD_URI" $B "$TMP/want" "${5:-pread}" "$2" "$3" 2>>"$TMP/blocks.log")
  [ "$got" = "$1" ] || fail "$4 ($2+$3): $got, expected $1"
}

scan $((2048 - 4)) 4 "after tampering"
expect eio 0 $MiB "extent 0 whole"
expect eio $((5 * B + 10)) 100 "100 bytes inside block 5"
expect eio $((B - 1)) 2 "across blocks 0 and 1"
expect eio $((4 * B + 4000)) 200 "across blocks 4 and 5"
expect eio $((MiB - 2 * B)) $((4 * B)) "across extents 0 and 1"
expect ok $((7 * B + 1)) $((B - 2)) "inside block 7, next to block 6"
expect ok $((B + 1)) $((4 * B - 1)) "blocks 1-4, between bad ones"
expect ok $MiB $((3 * MiB)) "extents 1-3"
# A partial write cannot complete a bad block...
expect eio $((6 * B + 100)) 50 "partial write into block 6" pwrite
expect eio $((6 * B)) $B "block 6 after the refused partial write"
# ...a whole-block write replaces it.
head -c $B /dev/urandom | dd of="$TMP/want" bs=$B seek=5 conv=notrunc status=none
expect ok $((5 * B)) $B "whole-block write over block 5" pwrite
expect ok $((5 * B)) $B "block 5 rewritten"
scan $((2048 - 3)) 3 "at the end"
grep -q "failed authentication" "$TMP/nbdkit.log" || fail "the bad blocks were not logged"
touch "$TMP/reads-done"
fresh () { [ "$STATS" -nt "$TMP/reads-done" ]; }
wait_until 10 "the stats file after the reads" fresh
[ "$(stat_of outage_waits)" = 0 ] ||
  fail "reads of bad blocks waited out an outage $(stat_of outage_waits) times: the server was up"
echo "PASS"
