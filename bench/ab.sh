#!/usr/bin/env bash
# ab.sh - paired A/B of two rampool plugin settings (or builds) on one
# set of memservers.
#
# Two nbdkit instances, A and B, each with its own disk over the same 3
# memservers, both pre-written; then for each job, ROUNDS pairs of fio
# runs, A then B, B then A, alternating, so that a drift of the machine
# (other work, frequency) falls on both sides of a pair.  Printed: each
# side's median IOPS and the median of the pairs' B/A ratios, with every
# pair's ratio.  On a shared, noisy machine a ratio of medians of pairs
# is worth much more than one run of each.
#
#   A_ARGS / B_ARGS       plugin arguments of each side (e.g. lanes=0)
#   A_PLUGIN / B_PLUGIN   the plugin .so of each side (default: this
#                         tree's; give another build's to compare builds)
#   JOBS                  "RW:QD[:BS] ..." fio jobs, blocks of BS, 4k
#                         unless given (default
#                         "randread:1 randread:16 randwrite:1 randwrite:16")
#   ROUNDS                pairs per job (default 6)
#   RUNTIME               seconds per fio run (default 3)
#   REPLICAS              replicas= of both sides (default 1)
#   MEMSERVER             the memserver binary (default: this tree's)
#   NBDKIT_ARGS           nbdkit options of both sides (default --no-sr:
#                         simple replies, as in run-bench.sh)
#
# Example: A_ARGS=lanes=0 bench/ab.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(dirname "$here")
MEMSERVER=${MEMSERVER:-$top/memserver/memserver}
A_PLUGIN=${A_PLUGIN:-$top/nbdkit-plugin/.libs/nbdkit-rampool-plugin.so}
B_PLUGIN=${B_PLUGIN:-$A_PLUGIN}
A_ARGS=${A_ARGS:-}
B_ARGS=${B_ARGS:-}
JOBS=${JOBS:-randread:1 randread:16 randwrite:1 randwrite:16}
ROUNDS=${ROUNDS:-6}
RUNTIME=${RUNTIME:-3}
REPLICAS=${REPLICAS:-1}
NBDKIT_ARGS=${NBDKIT_ARGS---no-sr}

die() { echo "ab: $*" >&2; exit 1; }
for cmd in fio nbdkit nbdinfo python3; do
    command -v "$cmd" >/dev/null || die "$cmd not found"
done
[[ -x $MEMSERVER ]] || die "no memserver at $MEMSERVER (build first)"
for so in "$A_PLUGIN" "$B_PLUGIN"; do [[ -f $so ]] || die "no plugin at $so"; done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $RUNTIME =~ ^[1-9][0-9]*$ ]] || die "RUNTIME must be a positive integer"

work=$(mktemp -d "${TMPDIR:-/tmp}/rampool-ab.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# Poll COMMAND... every 0.1 s for up to 30 s.
ready() {
    local i
    for ((i = 0; i < 300; i++)); do "$@" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}
has_port() { grep -q '[0-9]' "$1"; }

servers=
for i in 1 2 3; do
    "$MEMSERVER" --listen 127.0.0.1:0 --size 4G --no-mlock \
        --port-file "$work/ms$i.port" >"$work/ms$i.log" 2>&1 &
    pids+=($!)
done
for i in 1 2 3; do
    ready has_port "$work/ms$i.port" || die "memserver $i did not start ($work/ms$i.log)"
    servers+=${servers:+,}127.0.0.1:$(grep -o '[0-9]*$' "$work/ms$i.port")
done
for side in a b; do
    if [[ $side == a ]]; then so=$A_PLUGIN args=$A_ARGS; else so=$B_PLUGIN args=$B_ARGS; fi
    # shellcheck disable=SC2086
    nbdkit -f --exit-with-parent $NBDKIT_ARGS -U "$work/$side.sock" "$so" servers="$servers" \
        size=1G replicas="$REPLICAS" $args >"$work/$side.log" 2>&1 &
    pids+=($!)
    ready nbdinfo --size "nbd+unix:///?socket=$work/$side.sock" >/dev/null ||
        die "nbdkit $side did not start ($work/$side.log)"
    fio --name=prefill --ioengine=nbd --uri="nbd+unix:///?socket=$work/$side.sock" \
        --rw=write --bs=1M --size=1G --iodepth=4 >/dev/null
done

# One fio run on SIDE of RW at QD in blocks of BS: IOPS (reads +
# writes), from the terse line.
run() {
    fio --name=ab --ioengine=nbd --uri="nbd+unix:///?socket=$work/$1.sock" \
        --rw="$2" --bs="$4" --size=1G --iodepth="$3" --time_based \
        --runtime="$RUNTIME" --output-format=terse --terse-version=3 |
        tail -n 1 | awk -F';' '{ print $8 + $49 }'
}

echo "A: ${A_ARGS:-(defaults)} $A_PLUGIN"
echo "B: ${B_ARGS:-(defaults)} $B_PLUGIN"
for job in $JOBS; do
    IFS=: read -r rw qd bs <<<"$job"
    bs=${bs:-4k}
    ra=() rb=()
    for ((k = 0; k < ROUNDS; k++)); do
        if ((k % 2)); then
            b=$(run b "$rw" "$qd" "$bs"); a=$(run a "$rw" "$qd" "$bs")
        else
            a=$(run a "$rw" "$qd" "$bs"); b=$(run b "$rw" "$qd" "$bs")
        fi
        ra+=("$a") rb+=("$b")
    done
    python3 - "$rw" "$qd" "$bs" "${ra[*]}" "${rb[*]}" <<'EOF'
import statistics, sys
rw, qd, bs = sys.argv[1], sys.argv[2], sys.argv[3]
a, b = sys.argv[4].split(), sys.argv[5].split()
a = [float(x) for x in a]
b = [float(x) for x in b]
r = [y / x for x, y in zip(a, b) if x > 0]
print("%-10s %-4s qd%-3s A %8.0f  B %8.0f IOPS (medians)  B/A %.3f  pairs: %s" % (
    rw, bs, qd, statistics.median(a), statistics.median(b),
    statistics.median(r) if r else float("nan"),
    " ".join("%.2f" % x for x in r)))
EOF
done
