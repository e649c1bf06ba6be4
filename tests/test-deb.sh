#!/bin/bash
# The Debian packages, end to end (scripts/test runs this after `make
# check`; it needs root and takes a few minutes):
#  1. dpkg-buildpackage -b -us -uc on a copy of the tracked source tree;
#  2. lintian on the result: no error;
#  3. the five packages installed (apt-get, so their dependencies are
#     checked);
#  4. a smoke test from installed files only: two memservers from
#     /usr/sbin/memserver, `nbdkit rampool ...` by name writing and
#     verifying 16 MiB with /usr/bin/rampool verify, `rampool status`
#     showing the copies, the memserver's /metrics, the installed
#     rampool.pc building examples/kvcache.c, and the units and the
#     default config where they belong;
#  5. purged: no file of theirs left, nothing of theirs running.
# Every process it starts is stopped by PID.
set -euo pipefail

# `... | has PATTERN`: grep that reads all of its input.  `grep -q`
# exits at the first match, so under pipefail the writer's SIGPIPE
# would fail a pipeline whose pattern did match.
has () { grep "$@" >/dev/null; }
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/rampool-deb.XXXXXX)
pids=()
packages=(memserver nbdkit-plugin-rampool rampool-tools librampool1
          librampool-dev)
cleanup () {
  local rc=$?
  for p in "${pids[@]+"${pids[@]}"}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]+"${pids[@]}"}"; do wait "$p" 2>/dev/null || true; done
  if [ $rc -ne 0 ]; then
    for f in "$work"/*.log; do
      [ -f "$f" ] && { echo "---- $f (last 30 lines)"; tail -n 30 "$f"; }
    done
    apt-get purge -y -qq "${packages[@]}" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT INT TERM
fail () { echo "FAIL: $*" >&2; exit 1; }
say () { echo "== $*"; }
[ "$(id -u)" = 0 ] || fail "needs root (it installs packages)"
for c in dpkg-buildpackage lintian; do
  command -v $c >/dev/null || fail "$c not found (scripts/setup-deps)"
done
for p in "${packages[@]}"; do
  ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | has "ok installed" ||
    fail "$p is installed already: this test would remove it"
done

version=$(sed -n '1s/.*(\(.*\)).*/\1/p' "$top/debian/changelog")
src=$work/rampool-$version
mkdir -p "$src"
(cd "$top" && git ls-files -z | tar --null -T - -cf -) | tar -x -C "$src"

say "1. dpkg-buildpackage -b -us -uc"
t0=$(date +%s)
(cd "$src" && dpkg-buildpackage -b -us -uc -j"$(nproc)") >"$work/build.log" 2>&1 ||
  fail "dpkg-buildpackage"
echo "built in $(( $(date +%s) - t0 )) s: $(cd "$work" && ls ./*.deb | tr '\n' ' ')"

say "2. lintian"
changes=$(ls "$work"/rampool_"$version"_*.changes)
lintian --tag-display-limit 0 "$changes" >"$work/lintian.log" 2>&1 || true
cat "$work/lintian.log"
! grep -q "^E: " "$work/lintian.log" || fail "lintian reports errors"

say "3. install"
debs=()
for p in "${packages[@]}"; do debs+=("$work/${p}_${version}_$(dpkg --print-architecture).deb"); done
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "${debs[@]}" >"$work/install.log" 2>&1 || fail "apt-get install"

say "4. smoke test from the installed files"
[ -x /usr/sbin/memserver ] && [ -x /usr/bin/rampool ] && [ -x /usr/bin/rampool-fuse ] ||
  fail "binaries not installed"
plugindir=$(nbdkit --dump-config | sed -n 's/^plugindir=//p')
[ -f "$plugindir/nbdkit-rampool-plugin.so" ] || fail "plugin not in $plugindir"
[ -f /lib/systemd/system/memserver.service ] &&
  [ -f /lib/systemd/system/rampool-swap@.service ] || fail "units"
grep -q "^listen = 127.0.0.1:7070" /etc/rampool/memserver.conf || fail "default config"
for i in 1 2; do
  /usr/sbin/memserver --listen 127.0.0.1:0 --size 128M --no-mlock \
    --port-file "$work/s$i.port" --metrics-listen 127.0.0.1:0 \
    --metrics-port-file "$work/s$i.mport" >"$work/s$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2; do
  for _ in $(seq 100); do [ -s "$work/s$i.mport" ] && [ -s "$work/s$i.port" ] && break; sleep 0.1; done
  [ -s "$work/s$i.port" ] || fail "memserver $i did not start"
done
servers=127.0.0.1:$(cat "$work/s1.port"),127.0.0.1:$(cat "$work/s2.port")
nbdkit -f -U - rampool servers="$servers" size=64M replicas=2 \
  --run "/usr/bin/rampool verify --mib=16 \"\$uri\" &&
         /usr/bin/rampool status --raw '$servers'" >"$work/nbdkit.log" 2>&1 ||
  fail "nbdkit rampool by name"
cat "$work/nbdkit.log"
grep -q "verify: OK: every byte of 16 MiB" "$work/nbdkit.log" || fail "verify"
[ "$(awk '$2 == "up" { n++; s += $4 } END { print n, s }' "$work/nbdkit.log")" = "2 33554432" ] ||
  fail "status did not show 16 MiB on each of 2 servers"
/usr/bin/rampool status "$servers" >"$work/status.log" || fail "status"
grep -q "^pool: 2 of 2 servers up, 0 B used" "$work/status.log" ||
  { cat "$work/status.log"; fail "the pool was not emptied when nbdkit stopped"; }
python3 -c 'import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1]).read().decode())' \
  "$(cat "$work/s1.mport")" | has "^rampool_memserver_write_bytes_total 16777216" ||
  fail "the installed memserver's metrics"
cc -o "$work/kvcache" "$top/examples/kvcache.c" $(pkg-config --cflags --libs rampool) ||
  fail "kvcache against the installed librampool-dev"
"$work/kvcache" --keys=2000 --value-size=512 --ops=5000 servers="$servers" \
  replicas=2 >"$work/kv.log" 2>&1 || fail "kvcache"
grep -q "2000 keys checked: OK" "$work/kv.log" || fail "kvcache's check"
for p in "${pids[@]}"; do kill "$p"; wait "$p" || true; done
pids=()

say "5. purge"
files=$(dpkg -L "${packages[@]}" | sort -u)
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${packages[@]}" \
  >"$work/purge.log" 2>&1 || fail "apt-get purge"
left=$(for f in $files; do [ -f "$f" ] && echo "$f"; done || true)
[ -z "$left" ] || fail "files left after purge: $left"
[ ! -e /etc/rampool/memserver.conf ] || fail "/etc/rampool/memserver.conf left"
! pgrep -x memserver -a | has "^[0-9]* /usr/sbin/memserver" ||
  fail "an installed memserver still runs"
! nbdkit rampool --version >/dev/null 2>&1 || fail "nbdkit still finds the plugin"
echo "PASS: packages built, lintian clean, installed, smoke-tested, purged"
