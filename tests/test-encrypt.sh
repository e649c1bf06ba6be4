#!/bin/bash
# encrypt=on, checked from the donor's side:
#  - confidentiality: a recognizable pattern written through nbdkit is
#    nowhere in the memserver's memory (read through /proc/PID/mem);
#    with encrypt=off the same check finds it, so the check can fail;
#  - integrity: a bit flipped in the donor's copy reads as EIO with
#    replicas=1, and fails over to the good copy with replicas=2;
#  - replay: an old ciphertext put back by the donor reads as EIO.
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires nbdcopy libnbd-bin
use_procmem

# 1 MiB of a recognizable pattern; the needle is one line of it.
printf 'RAMPOOL-SECRET-%s-' "$(seq -s- 1 20)" >"$TMP/needle"
python3 -c "
import sys; n=open(sys.argv[1],'rb').read(); open(sys.argv[2],'wb').write((n*(1048576//len(n)+1))[:1048576])
" "$TMP/needle" "$TMP/pattern"

for enc in off on; do
  SERVERS=
  start_memserver "m$enc"
  pid_var=MS_PID_m$enc
  start_nbdkit size=8M replicas=1 encrypt=$enc
  nbdcopy "$TMP/pattern" "$NBD_URI"
  nbdcopy "$NBD_URI" "$TMP/back"
  cmp -n 1048576 "$TMP/pattern" "$TMP/back" || fail "encrypt=$enc: read-back differs"
  found=$($PM count "${!pid_var}" $REGION "$TMP/needle")
  echo "encrypt=$enc: pattern found $found times in the donor's memory"
  if [ $enc = off ]; then
    [ "$found" -gt 1000 ] || fail "the check cannot see plaintext (found $found)"
  else
    [ "$found" -eq 0 ] || fail "plaintext found in the donor's memory with encrypt=on"
  fi
  [ $enc = on ] && break
  stop_nbdkit
  kill_memserver "m$enc" TERM
done

# Integrity: flip one bit in the donor's ciphertext (replicas=1): EIO.
$PM flip "$MS_PID_mon" $REGION >/dev/null
"$TESTS_BIN/nbd_blocks" "$NBD_URI" 4096 "$TMP/pattern" >"$TMP/blocks" 2>>"$TMP/blocks.log"
cat "$TMP/blocks"
read -r _ ok _ eio _ mismatch _ error <"$TMP/blocks"
[ "$mismatch" -eq 0 ] && [ "$error" -eq 0 ] || fail "tampered data read back as data"
[ "$eio" -eq 1 ] || fail "expected exactly the tampered block to fail, got $eio"
grep -q "failed authentication" "$TMP/nbdkit.log" || fail "tampering not logged"
stop_nbdkit

# Replay: save block 0's ciphertext, rewrite block 0, put the old back.
start_nbdkit size=8M replicas=1 encrypt=on
head -c 4096 /dev/urandom >"$TMP/a"
head -c 4096 /dev/urandom >"$TMP/b"
"$TESTS_BIN/nbd_blocks" "$NBD_URI" 4096 "$TMP/a" write 0 1
addr=$($PM save "$MS_PID_mon" $REGION "$TMP/old")
"$TESTS_BIN/nbd_blocks" "$NBD_URI" 4096 "$TMP/b" write 0 1
$PM poke "$MS_PID_mon" "$addr" "$TMP/old"
"$TESTS_BIN/nbd_blocks" "$NBD_URI" 4096 "$TMP/b" >"$TMP/blocks" 2>>"$TMP/blocks.log"
cat "$TMP/blocks"
read -r _ ok _ eio _ mismatch _ error <"$TMP/blocks"
[ "$mismatch" -eq 0 ] || fail "a replayed block read back as data"
[ "$eio" -eq 1 ] || fail "the replayed block did not fail (eio=$eio)"
stop_nbdkit

# With a second copy, tampering with one is survived: the read fails
# over to the good replica.
SERVERS=
start_memserver r1
start_memserver r2
start_nbdkit size=8M replicas=2 encrypt=on
nbdcopy "$TMP/pattern" "$NBD_URI"
$PM flip "$MS_PID_r1" $REGION >/dev/null
"$TESTS_BIN/nbd_blocks" "$NBD_URI" 4096 "$TMP/pattern" >"$TMP/blocks" 2>>"$TMP/blocks.log"
cat "$TMP/blocks"
read -r _ ok _ eio _ mismatch _ error <"$TMP/blocks"
[ "$ok" -eq 2048 ] || fail "replicas=2: tampering with one copy was not survived"
echo "PASS"
