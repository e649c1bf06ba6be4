#!/bin/bash
# rampool status --watch as a person sees it: in an 80x24 tmux pane,
# read with capture-pane, while a disk (3 memservers, replicas=2,
# metrics-file=) takes random I/O:
#  - the table shows every server up, the disk's IOPS above 0 and its
#    extents healthy, and no line is wider than 80 columns;
#  - s3 killed: it shows DOWN, the disk sees it down, and recovery
#    shows extents to repair and then "nothing to repair";
# and --json gives the same figures to a script: the servers, the
# disk's extents (healthy == mapped once repaired) and a recovery left
# of 0; rampool verify draws a progress bar on a terminal only.
source "${srcdir:-.}/functions.sh"
requires nbdkit
requires tmux

PROM=$TMP/disk.prom
STATS=$TMP/stats
for i in 1 2 3; do start_memserver "s$i"; done
start_nbdkit size=64M replicas=2 heartbeat-ms=200 rejoin-grace-ms=500 \
  metrics-file="$PROM" stats-file="$STATS"
"$TESTS_BIN/test_parallel_io" --ops 2000000 --until-file "$TMP/stop" \
  "$NBD_URI" >"$TMP/io.log" 2>&1 &
IO_PID=$!
_pids+=("$IO_PID")

TMUX_SOCK=$TMP/tmux.sock
tmux -S "$TMUX_SOCK" -f /dev/null new-session -d -x 80 -y 24 \
  "'$RAMPOOL' status --watch --metrics-file='$PROM' '$SERVERS'; sleep 600"
_pids+=("$(tmux -S "$TMUX_SOCK" display-message -p '#{pid}')")
on_exit "tmux -S '$TMUX_SOCK' kill-server 2>/dev/null"
screen () { tmux -S "$TMUX_SOCK" capture-pane -p -J >"$TMP/screen"; }
row () { awk -v a="$1" '$1 == a' "$TMP/screen"; }

busy_and_healthy () {
  screen
  [ "$(grep -c '^127\.0\.0\.1:[0-9]* *up ' "$TMP/screen")" = 3 ] &&
    grep -q "^pool: 3 of 3 servers up" "$TMP/screen" &&
    grep -Eq "^  I/O +read +[0-9]+ IOPS .* write +[1-9][0-9]* IOPS" "$TMP/screen" &&
    grep -Eq "^  extents +healthy [1-9][0-9]* +degraded 0 +unreachable 0 +lost 0" "$TMP/screen" &&
    grep -q "^  recovery  nothing to repair" "$TMP/screen"
}
wait_until 20 "the live view to show 3 servers up and I/O" busy_and_healthy
cat "$TMP/screen"
awk 'length > 80 { print "too wide: " $0; bad = 1 } END { exit bad }' "$TMP/screen" ||
  fail "a line of the live view is wider than 80 columns"
[ "$(row "$MS_ADDR_s1" | awk '{ print $NF }')" = up ] ||
  fail "the disk's view of s1 is not shown as up"

kill_memserver s3
s3_down () {
  screen
  row "$MS_ADDR_s3" | has "DOWN .* down$"
}
wait_until 20 "the live view to show s3 DOWN, and down for the disk" s3_down
cat "$TMP/screen"
# Recovery: extents to repair (seen at least once, unless it was over
# between two refreshes), then nothing.
saw_repair=no
repaired () {
  screen
  grep -q "^  recovery  [1-9][0-9]* extent(s) to repair" "$TMP/screen" && saw_repair=yes
  grep -q "^pool: 2 of 3 servers up" "$TMP/screen" &&
    grep -q "^  recovery  nothing to repair" "$TMP/screen" &&
    grep -Eq "^  extents +healthy [1-9][0-9]* +degraded 0 +unreachable 0 +lost 0" "$TMP/screen"
}
wait_until 60 "the live view to show the copies on s3 repaired" repaired
cat "$TMP/screen"
echo "recovery shown in progress: $saw_repair"
touch "$TMP/stop"
wait "$IO_PID" || { cat "$TMP/io.log"; fail "the I/O checker failed"; }
touch "$TMP/io-ended"

# --json, for scripts.  Both files rewritten since the I/O ended first
# (a pass from before it may still be in them: CI saw --json and the
# stats file disagree by the extents trimmed last).
fresh () { [ "$STATS" -nt "$TMP/io-ended" ] && [ "$PROM" -nt "$TMP/io-ended" ]; }
wait_until 10 "the stats and metrics files to be rewritten since the I/O ended" fresh
wait_until 10 "the disk to be healthy on 2 servers" \
  stats_are servers_up -eq 2 extents_degraded -eq 0 extents_lost -eq 0
# The metrics file is written after the stats file in each pass: wait
# until it too counts every mapped extent healthy (a trim at the end of
# the I/O may be in the stats file and not yet in the metrics file).
prom_healthy () {
  grep -q "^rampool_client_extents{disk=\"[^\"]*\",state=\"healthy\"} $(stat_of extents_mapped)\$" "$PROM"
}
wait_until 10 "the metrics file to count every mapped extent healthy" prom_healthy
"$RAMPOOL" status --json --metrics-file="$PROM" "$SERVERS" >"$TMP/json" &&
  fail "status --json: status 0 with s3 down"
python3 - "$TMP/json" "$MS_ADDR_s3" "$(stat_of extents_mapped)" <<'PY' ||
import json, sys
j = json.loads(open(sys.argv[1]).read())
s = {x["addr"]: x for x in j["servers"]}
assert len(s) == 3, s
assert not s[sys.argv[2]]["up"] and s[sys.argv[2]]["disk_state"] == "down", s
up = [x for x in s.values() if x["up"]]
assert len(up) == 2 and all(x["disk_state"] == "up" for x in up), up
d = j["disk"]
mapped = int(sys.argv[3])
assert d["mapped"] == mapped and d["healthy"] == mapped, d
assert d["degraded"] == d["lost"] == d["unreachable"] == 0, d
assert d["recovery"]["extents_left"] == 0, d
print("json: %d mapped extents, all healthy" % mapped)
PY
  fail "status --json: $(cat "$TMP/json")"
# rampool verify on a terminal (script(1) gives it one): a progress bar
# per pass, each ending at 100 %, then the plain lines; through a pipe
# only the plain lines.
requires script bsdutils
script -qec "'$RAMPOOL' verify --mib=8 '$NBD_URI'" /dev/null >"$TMP/verify.tty"
for what in write read; do
  grep -aq "$(printf '\r')$what *\[####################\] 100% 8 of 8 MiB" "$TMP/verify.tty" ||
    { cat -v "$TMP/verify.tty"; fail "no $what progress bar on a terminal"; }
done
grep -aq "verify: OK" "$TMP/verify.tty" || fail "verify on a terminal"
"$RAMPOOL" verify --mib=8 "$NBD_URI" >"$TMP/verify.pipe"
[ "$(wc -l <"$TMP/verify.pipe")" = 3 ] && ! grep -q '\[#' "$TMP/verify.pipe" ||
  { cat -v "$TMP/verify.pipe"; fail "verify through a pipe: not 3 plain lines"; }
echo "PASS: the live view and --json show the pool as it is; verify's bar"
