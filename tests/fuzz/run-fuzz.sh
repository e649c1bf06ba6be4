#!/bin/sh
# Run one libFuzzer target for a bounded time on a copy of its seed
# corpus, so the committed seeds stay as they are.  Exits non-zero on
# any crash, leak, timeout or out-of-memory; libFuzzer then leaves the
# input as ./TARGET-crash-* (or -leak-, -timeout-, -oom-) to rerun with
#   ./TARGET ./TARGET-crash-...
#
# usage: run-fuzz.sh TARGET CORPUS-DIR SECONDS [LIBFUZZER-OPTION...]
set -eu
target=$1 corpus=$2 seconds=$3
shift 3
name=$(basename "$target")
log=$name.log
work=$(mktemp -d "${TMPDIR:-/tmp}/$name.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
cp "$corpus"/* "$work"/
seeds=$(find "$work" -type f | wc -l)
echo "$name: ${seconds}s from $seeds seeds (log: $log)"
status=0
# -timeout: one input taking 10 s is a hang, not a slow input (the
# slowest seed takes milliseconds).
"$target" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
  -artifact_prefix="./$name-" "$@" "$work" >"$log" 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
  tail -n 40 "$log"
  echo "$name: FAILED (exit $status); input: $(ls -t ./"$name"-* 2>/dev/null | head -n 1)"
  exit 1
fi
sed -n 's/^#\([0-9]*\)[[:space:]]*DONE[[:space:]]*\(.*\)$/\2 (\1 runs)/p' "$log" | tail -n 1 |
  sed "s/^/$name: /"
echo "$name: no crash; corpus grew from $seeds to $(find "$work" -type f | wc -l) inputs"
