#!/bin/bash
# encrypt=on never reuses a nonce, checked in the donor's memory.
# ChaCha20 XORs the plaintext with a key stream fixed by key and nonce:
# if a rewrite of a block took the nonce of the write before it (the
# per-block counter not bumped), the donor would see the same
# ciphertext for the same plaintext, and for two plaintexts P and Q
# ciphertexts whose XOR is P XOR Q, which gives one away from the
# other.  Reads would still verify, so no read-back test notices.
#  - the same 4 KiB written to one block three times: three different
#    ciphertexts on the donor;
#  - P then Q on one block: ciphertext XOR differs from P XOR Q;
#  - a partial write of unchanged bytes (read-modify-write of the
#    block): the block's ciphertext changes all the same;
#  - a 4-block write repeated: every block's ciphertext changes;
# and every read-back is exact.  The donor's memory is read through
# /proc/PID/mem (tests/procmem.py).
source "${srcdir:-.}/functions.sh"
requires nbdkit
use_procmem
B=4096

start_memserver m
start_nbdkit size=8M replicas=1 encrypt=on
head -c $((8 * B)) /dev/urandom >"$TMP/P"
head -c $((8 * B)) /dev/urandom >"$TMP/Q"
blocks () { "$TESTS_BIN/nbd_blocks" "$NBD_URI" $B "$@"; }
# ciphertext of block N of the disk: the extent is the only one, and
# block 0 is its first page (written first, before anything else).
peek () { $PM peek "$MS_PID_m" $((base + $1 * B)) $B "$2"; }
same () { cmp -s "$1" "$2"; }
readback () {        # FILE OFFSET LENGTH WHAT
  [ "$(blocks "$1" pread "$2" "$3")" = ok ] || fail "$4: read-back differs"
}

blocks "$TMP/P" write 0 1
base=$($PM save "$MS_PID_m" $REGION "$TMP/c1")
blocks "$TMP/P" write 0 1
peek 0 "$TMP/c2"
blocks "$TMP/P" write 0 1
peek 0 "$TMP/c3"
same "$TMP/c1" "$TMP/c2" && fail "the same plaintext rewritten gave the same ciphertext (nonce reused)"
same "$TMP/c2" "$TMP/c3" && fail "the third write of the same plaintext gave the second's ciphertext"
same "$TMP/c1" "$TMP/c3" && fail "the third write of the same plaintext gave the first's ciphertext"
readback "$TMP/P" 0 $B "P written three times"

# P then Q on block 0: C_P XOR C_Q must not be P XOR Q.
blocks "$TMP/Q" write 0 1
peek 0 "$TMP/cq"
readback "$TMP/Q" 0 $B "Q over P"
python3 - "$TMP/P" "$TMP/Q" "$TMP/c3" "$TMP/cq" <<'EOF' || fail "C(P) XOR C(Q) = P XOR Q: the key stream was reused"
import sys
p, q, cp, cq = (open(f, "rb").read()[:4096] for f in sys.argv[1:])
x = lambda a, b: bytes(i ^ j for i, j in zip(a, b))
same = sum(a == b for a, b in zip(x(cp, cq), x(p, q)))
print("ciphertext XOR agrees with plaintext XOR in %d of 4096 bytes" % same)
sys.exit(1 if same > 64 else 0)
EOF

# Read-modify-write: 200 bytes of block 1, unchanged, written again.
blocks "$TMP/P" write 1 1
peek 1 "$TMP/r1"
blocks "$TMP/P" pwrite $((B + 100)) 200 >"$TMP/res"
[ "$(cat "$TMP/res")" = ok ] || fail "partial write: $(cat "$TMP/res")"
peek 1 "$TMP/r2"
readback "$TMP/P" $B $B "block 1 after a partial rewrite"
same "$TMP/r1" "$TMP/r2" && fail "a partial rewrite re-encrypted block 1 with the same nonce"

# Blocks 2-5 in one write, twice.
blocks "$TMP/P" write 2 4
for n in 2 3 4 5; do peek $n "$TMP/m$n"; done
"$TESTS_BIN/nbd_blocks" "$NBD_URI" $((4 * B)) "$TMP/P" pwrite $((2 * B)) $((4 * B)) >"$TMP/res"
[ "$(cat "$TMP/res")" = ok ] || fail "4-block write: $(cat "$TMP/res")"
for n in 2 3 4 5; do
  peek $n "$TMP/n$n"
  same "$TMP/m$n" "$TMP/n$n" && fail "block $n: a repeated multi-block write reused the nonce"
done
readback "$TMP/P" $((2 * B)) $((4 * B)) "blocks 2-5"
echo "PASS"
