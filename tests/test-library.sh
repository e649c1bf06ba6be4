#!/bin/bash
# librampool as an installed library: `make install` of the library
# and its headers into a staging directory, then examples/kvcache.c
# built with nothing but `pkg-config --cflags --libs rampool` from
# there, run against two memservers (replicas=2): every value of the
# key-value store must read back as written (its self-check), the hot
# set must have served some gets and the pool the others, and the pool
# must be empty on the memservers after it closed.  Also: the soname is
# librampool.so.1 and only the public API (rp_config_*, rp_pool_*,
# rp_server_query, rp_server_drain, rp_set_log) is exported.
source "${srcdir:-.}/functions.sh"
requires pkg-config
requires readelf binutils

DEST=$TMP/stage
make -s -C "$abs_top_builddir/include" install DESTDIR="$DEST" >/dev/null
make -s -C "$abs_top_builddir/lib" install DESTDIR="$DEST" >/dev/null 2>&1 ||
  fail "make install of lib/"
pc=$(find "$DEST" -name rampool.pc)
[ -n "$pc" ] || fail "rampool.pc not installed"
export PKG_CONFIG_SYSROOT_DIR=$DEST PKG_CONFIG_PATH=${pc%/*}
flags=$(pkg-config --cflags --libs rampool) || fail "pkg-config rampool"
libdir=${pc%/pkgconfig/rampool.pc}
lib=$libdir/librampool.so.1
[ -f "$lib" ] || fail "no $lib"
readelf -d "$lib" | has "SONAME.*\[librampool\.so\.1\]" ||
  fail "soname: $(readelf -d "$lib" | grep SONAME)"
extra=$(nm -D --defined-only "$lib" | awk '$2 == "T" { print $3 }' |
  grep -Ev '^rp_(config_|pool_|aio_|server_(query|drain)$|set_log$)' || true)
[ -z "$extra" ] || fail "symbols exported beyond the API: $extra"

# A library built with the sanitizers needs their runtime first.
san=
ldd "$lib" | has libasan && san="-fsanitize=address,undefined"
${CC:-cc} $san -Wall -Werror -o "$TMP/kvcache" \
  "${srcdir:-.}/../examples/kvcache.c" $flags ||
  fail "kvcache does not build against the installed library"

start_memserver s1
start_memserver s2
LD_LIBRARY_PATH=$libdir "$TMP/kvcache" --keys=4000 --value-size=1024 \
  --hot=128 --ops=40000 servers="$SERVERS" replicas=2 >"$TMP/kv.out" ||
  { cat "$TMP/kv.out"; fail "kvcache"; }
cat "$TMP/kv.out"
grep -q "4000 keys checked: OK$" "$TMP/kv.out" || fail "kvcache's check"
hits=$(sed -n 's/.* \([0-9]*\) hits, \([0-9]*\) misses.*/\1 \2/p' "$TMP/kv.out")
set -- $hits
[ "$1" -gt 0 ] && [ "$2" -gt 0 ] || fail "hits $1, misses $2"
[ "$(pool_used)" = 0 ] || fail "the pool left $(pool_used) bytes on the servers"
echo "PASS: kvcache built from the installed library; every value checked"
