#!/bin/bash
# backup=PATH (Infiniswap's backup disk): every write also goes to a
# local file.  With both copies of many extents lost, every read still
# succeeds from the backup (where without it they fail with EIO, see
# test-lost.sh), the lost extents are re-replicated from the backup,
# and once the servers are back the pool is fully healthy with every
# byte correct.  Also with encrypt=on: the backup holds ciphertext.
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires nbdcopy libnbd-bin

for enc in off on; do
  SERVERS=
  for i in 1 2 3; do start_memserver "s$enc$i"; done
  rm -f "$TMP/stats"
  # A long grace: the killed servers' copies are kept while their
  # servers are away, so the backup serves the lost extents' reads
  # (not a copy rebuilt before the reads come).  Their restart ends it.
  # timeout-ms=5000: a killed server is seen at once (its connections
  # reset), and a request that times out on a loaded machine (the
  # sanitizer build) would be served from the backup, which the last
  # step empties (its reads then fail: 5 of 64 blocks in one CI run).
  start_nbdkit size=64M replicas=2 timeout-ms=5000 heartbeat-ms=200 \
    rejoin-grace-ms=600000 backup="$TMP/backup" encrypt=$enc stats-file="$TMP/stats"
  head -c $((64 * 1024 * 1024)) /dev/urandom >"$TMP/data"
  nbdcopy "$TMP/data" "$NBD_URI"
  if [ $enc = on ]; then
    # The backup file holds ciphertext only.
    if cmp -s -n 1048576 "$TMP/backup" "$TMP/data"; then fail "plaintext in the backup"; fi
  else
    cmp -s -n 1048576 "$TMP/backup" "$TMP/data" || fail "backup does not hold the data"
  fi
  kill_memserver "s${enc}1" KILL
  kill_memserver "s${enc}2" KILL

  "$TESTS_BIN/nbd_blocks" "$NBD_URI" $((1024 * 1024)) "$TMP/data" >"$TMP/blocks" 2>>"$TMP/blocks.log"
  echo "encrypt=$enc, 2 of 3 servers killed: $(cat "$TMP/blocks")"
  read -r _ ok _ eio _ mismatch _ error <"$TMP/blocks"
  [ "$ok" -eq 64 ] || fail "encrypt=$enc: only $ok of 64 MiB readable with backup="
  for _ in $(seq 50); do grep -q '^backup_reads [1-9]' "$TMP/stats" && break; sleep 0.1; done
  grep -q '^backup_reads [1-9]' "$TMP/stats" || fail "nothing was read from the backup"

  # Writes go on (to the backup and the surviving server).
  head -c $((4 * 1024 * 1024)) /dev/urandom >"$TMP/patch"
  dd if="$TMP/patch" of="$TMP/data" bs=1M seek=30 conv=notrunc status=none
  "$TESTS_BIN/nbd_blocks" "$NBD_URI" $((1024 * 1024)) "$TMP/data" write 30 4

  # The killed servers come back (new incarnations): recovery rebuilds
  # two good copies of everything, the lost ones from the backup.
  restart_memserver "s${enc}1"
  restart_memserver "s${enc}2"
  for _ in $(seq 300); do
    grep -q '^servers_up 3$' "$TMP/stats" 2>/dev/null &&
      grep -q '^extents_healthy 64$' "$TMP/stats" && break
    sleep 0.1
  done
  grep -q '^extents_healthy 64$' "$TMP/stats" || { cat "$TMP/stats"; fail "not healthy again"; }
  # Kill the one server that never died and empty the backup: every
  # read must now come from the rebuilt copies, and be right.
  kill_memserver "s${enc}3" KILL
  truncate -s 0 "$TMP/backup"
  "$TESTS_BIN/nbd_blocks" "$NBD_URI" $((1024 * 1024)) "$TMP/data" >"$TMP/blocks" 2>>"$TMP/blocks.log"
  echo "encrypt=$enc, rebuilt copies only: $(cat "$TMP/blocks")"
  read -r _ ok _ eio _ mismatch _ error <"$TMP/blocks"
  [ "$ok" -eq 64 ] || fail "encrypt=$enc: rebuilt copies wrong or missing"
  stop_nbdkit
done
echo "PASS"
