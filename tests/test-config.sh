#!/bin/bash
# Bad configuration is refused at startup with an error that names the
# key and says why, for the plugin and for the memserver.
source "${srcdir:-.}/functions.sh"
requires nbdkit

start_memserver s1
start_memserver s2

# expect_plugin_error PATTERN KEY=VALUE...
expect_plugin_error () {
  local pattern=$1; shift
  # In the foreground: a bad config must make nbdkit exit non-zero by
  # itself; still running after 20 s (status 124) means it started.
  local rc=0
  rm -f "$TMP/cfg.sock"
  timeout 20 nbdkit -f -U "$TMP/cfg.sock" "$PLUGIN" "$@" >"$TMP/out.log" 2>&1 || rc=$?
  [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "nbdkit started (status $rc) with: $*"
  grep -q -- "$pattern" "$TMP/out.log" ||
    { cat "$TMP/out.log"; fail "expected '$pattern' for: $*"; }
}

expect_plugin_error "servers: required" size=1G
expect_plugin_error "size: required" servers="$SERVERS"
expect_plugin_error "replicas: 3 copies need at least 3 servers" servers="$SERVERS" size=1G replicas=3
expect_plugin_error "replicas: '0' is not a whole number from 1 to 4" servers="$SERVERS" size=1G replicas=0
expect_plugin_error "extent-size: '3M' is not a power of two" servers="$SERVERS" size=1G extent-size=3M
expect_plugin_error "extent-size: '4K' is not a power of two from 64K to 1G" servers="$SERVERS" size=1G extent-size=4K
expect_plugin_error "size: 'lots' is not a size" servers="$SERVERS" size=lots
expect_plugin_error "servers: 'nohost' is not HOST:PORT" servers=nohost size=1G
expect_plugin_error "servers: '127.0.0.1:99999' is not HOST:PORT" servers=127.0.0.1:99999 size=1G
expect_plugin_error "is listed twice" servers="${SERVERS%%,*},${SERVERS%%,*}" size=1G
expect_plugin_error "bogus: unknown key" servers="$SERVERS" size=1G bogus=1
expect_plugin_error "timeout-ms: '5' is not a whole number from 10" servers="$SERVERS" size=1G timeout-ms=5
expect_plugin_error "outage-wait-ms: '-1' is not a whole number from 0" servers="$SERVERS" size=1G outage-wait-ms=-1
expect_plugin_error "max-servers: '0' is not a whole number from 1 to 4096" servers="$SERVERS" size=1G max-servers=0
expect_plugin_error "max-servers: '4097' is not a whole number from 1 to 4096" servers="$SERVERS" size=1G max-servers=4097
expect_plugin_error "max-servers: servers= lists 2 servers, more than max-servers=1" servers="$SERVERS" size=1G replicas=1 max-servers=1
# servers-file=: the file and line named.
expect_plugin_error "servers-file: $TMP/none: No such file" servers-file="$TMP/none" size=1G
printf '%s\n' "${SERVERS%%,*}" "# a comment" "nohost" >"$TMP/list"
expect_plugin_error "servers-file: $TMP/list line 3: servers: 'nohost' is not HOST:PORT" servers-file="$TMP/list" size=1G
printf '%s %s\n' "${SERVERS%%,*}" "${SERVERS#*,}" >"$TMP/list"
expect_plugin_error "servers-file: $TMP/list line 1: one server per line" servers-file="$TMP/list" size=1G
printf '%s\n' "${SERVERS%%,*}" >"$TMP/list"
expect_plugin_error "replicas: 2 copies need at least 2 servers, but servers-file $TMP/list lists 1" servers-file="$TMP/list" size=1G
expect_plugin_error "give servers= or servers-file=, not both" servers-file="$TMP/list" servers="$SERVERS" size=1G
printf '%s\n' ${SERVERS//,/ } >"$TMP/list"
expect_plugin_error "max-servers: servers-file $TMP/list lists 2 servers, more than max-servers=1" servers-file="$TMP/list" size=1G replicas=1 max-servers=1
# Servers that do not answer: the error names each one.
expect_plugin_error "127.0.0.1:1: connect: Connection refused" servers="127.0.0.1:1,$SERVERS" size=1G replicas=3
expect_plugin_error "only 0 of 1 servers answered" servers=127.0.0.1:1 size=1G replicas=1

# memserver
expect_ms_error () {
  local pattern=$1; shift
  if timeout 10 "$MEMSERVER" "$@" >"$TMP/out.log" 2>&1; then
    fail "memserver ran with: $*"
  fi
  grep -q -- "$pattern" "$TMP/out.log" ||
    { cat "$TMP/out.log"; fail "expected '$pattern' for memserver $*"; }
}
expect_ms_error "\-\-listen: required" --size 1G
expect_ms_error "\-\-size: required" --listen 127.0.0.1:0
expect_ms_error "\-\-size: 'huge' is not a size" --listen 127.0.0.1:0 --size huge
expect_ms_error "\-\-lease-ms: 'x' is not a number" --listen 127.0.0.1:0 --size 1G --lease-ms x
expect_ms_error "listen: 'localhost' is not HOST:PORT" --listen localhost --size 1G --no-mlock
expect_ms_error "not a numeric IPv4 or IPv6" --listen example:1 --size 1G --no-mlock
printf 'listen = 127.0.0.1:0\nsize = 64M\nno-mlock\nfrobnicate = 3\n' >"$TMP/bad.conf"
expect_ms_error "bad.conf:4: frobnicate: unknown key" --config "$TMP/bad.conf"
printf 'listen = 127.0.0.1:0\nsize = sixty\n' >"$TMP/bad2.conf"
expect_ms_error "bad2.conf:2: size: 'sixty' is not a size" --config "$TMP/bad2.conf"
# A good config file works, and the command line overrides it.
printf '# donor\nlisten = 127.0.0.1:0\nsize = 64M\nno-mlock = true\n' >"$TMP/good.conf"
"$MEMSERVER" --config "$TMP/good.conf" --size 32M --port-file "$TMP/g.port" >"$TMP/g.log" 2>&1 &
_pids+=($!)
wait_for_file "$TMP/g.port" "memserver from config"
[ "$(server_used 127.0.0.1:$(cat "$TMP/g.port"))" = 0 ] || fail "config memserver not serving"
"$RAMPOOL" status --raw 127.0.0.1:$(cat "$TMP/g.port") | has " up 33554432 " ||
  fail "--size on the command line did not override the config file"
echo "PASS"
