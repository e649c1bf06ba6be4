#!/bin/bash
# The config keys are written down once, in client/config.c's table;
# the help texts are made from it.  This test holds the man pages to
# that table, both ways:
#  - every key that `nbdkit rampool --help` lists has an entry (.TP then
#    .BI/.BR KEY=) in docs/nbdkit-rampool-plugin.1, and the man page has
#    no such entry for a key the help does not list;
#  - every key `rampool-fuse --help` lists is one of the plugin's, and
#    each plugin key missing from rampool-fuse --help is named in
#    docs/rampool-fuse.1 (which says the keys are the plugin's but for
#    those);
#  - `rampool attach --help` and `rampool-nbd -h` list exactly the
#    plugin's keys.
source "${srcdir:-.}/functions.sh"
requires nbdkit
DOCS=${srcdir:-.}/../docs
FUSE=$abs_top_builddir/client/rampool-fuse

# Keys of a help text: lines that start with KEY= (continuation lines
# are indented).
help_keys () { sed -n 's/^\([a-z][a-z-]*\)=.*/\1/p' | sort -u; }
# Keys with an entry in a man page: the line after .TP is .BI/.BR KEY=...
man_keys () {
  awk 'prev == ".TP" && /^\.B[IR]? [a-z\\-]*=/ { k = $2; sub(/=.*/, "", k);
       gsub(/\\-/, "-", k); print k } { prev = $0 }' "$1" | sort -u
}

plugin=$(nbdkit "$PLUGIN" --help | help_keys)
fuse=$("$FUSE" --help | help_keys)
attach=$("$RAMPOOL" attach --help 2>&1 | help_keys || true)
nbd=$("$RAMPOOL_NBD" -h | help_keys)
manp=$(man_keys "$DOCS/nbdkit-rampool-plugin.1")

[ "$(echo "$plugin" | wc -l)" -ge 15 ] || fail "nbdkit --help lists too few keys: $plugin"
missing=$(comm -23 <(echo "$plugin") <(echo "$manp"))
[ -z "$missing" ] || fail "keys not documented in nbdkit-rampool-plugin.1: $missing"
extra=$(comm -13 <(echo "$plugin") <(echo "$manp"))
[ -z "$extra" ] || fail "nbdkit-rampool-plugin.1 documents keys the plugin does not take: $extra"

notplugin=$(comm -13 <(echo "$plugin") <(echo "$fuse"))
[ -z "$notplugin" ] || fail "rampool-fuse takes keys the plugin does not: $notplugin"
for k in $(comm -23 <(echo "$plugin") <(echo "$fuse")); do
  grep -q "^\.BR\? $k= *" "$DOCS/rampool-fuse.1" ||
    fail "rampool-fuse.1 does not say that $k= is the plugin's only"
done
[ "$attach" = "$plugin" ] || fail "rampool attach --help lists other keys than the plugin: $attach"
[ "$nbd" = "$plugin" ] || fail "rampool-nbd -h lists other keys than the plugin: $nbd"
echo "PASS: $(echo "$plugin" | wc -l) keys, documented; fuse takes $(echo "$fuse" | wc -l)"
