#!/bin/bash
# build-guest.sh — build the kernel + busybox initramfs for the rampool VM
# swap test (see test-swap.sh).
#
# Usage: tests/vm/build-guest.sh [PLUGIN_SO]
#
# Environment:
#   RP_VM_CACHE    cache / output dir (default: tests/vm/work)
#   RP_VM_PLUGIN   rampool nbdkit plugin .so (default:
#                  ../../nbdkit-plugin/.libs/nbdkit-rampool-plugin.so,
#                  relative to this script); the first argument overrides it
#   RP_VM_BACKEND  rampool (default): the plugin must exist;
#                  stock: the plugin is optional (the guest then uses nbdkit's
#                  nbd plugin against a host-side nbdkit memory server)
#   RP_VM_RAMPOOL  the rampool CLI, for rampool attach/detach in the guest
#                  (default: ../../client/rampool; left out if not built)
#   RP_VM_KVER     kernel ABI version to use (default: the one that Debian's
#                  linux-image-amd64 depends on)
#   RP_VM_INIT     script to pack as the guest's /init instead of
#                  guest-init.sh (opt-in, for experiments)
#   RP_VM_EXTRA_MODULES  space-separated kernel modules to add after the
#                  default ones (e.g. "virtio_blk"); loaded in that order
#
# Output (in the cache dir): vmlinuz, initrd.cpio.gz, guest.env (facts for
# test-swap.sh). Fails with a message naming the Debian package to install
# when a tool is missing.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
CACHE=${RP_VM_CACHE:-$HERE/work}
BACKEND=${RP_VM_BACKEND:-rampool}
PLUGIN=${1:-${RP_VM_PLUGIN:-$HERE/../../nbdkit-plugin/.libs/nbdkit-rampool-plugin.so}}
INIT=${RP_VM_INIT:-$HERE/guest-init.sh}
RAMPOOL_CLI=${RP_VM_RAMPOOL:-$TOP/client/rampool}
EXTRA_MODULES=${RP_VM_EXTRA_MODULES:-}

die() { echo "build-guest: ERROR: $*" >&2; exit 1; }
log() { echo "build-guest: $*" >&2; }

# ---------------------------------------------------------------- tools
need_cmd() { # need_cmd COMMAND DEBIAN-PACKAGE
    command -v "$1" >/dev/null 2>&1 ||
        die "'$1' not found; install the Debian package '$2' (apt-get install $2)"
}
need_file() { # need_file PATH DEBIAN-PACKAGE
    [ -e "$1" ] || die "'$1' not found; install the Debian package '$2' (apt-get install $2)"
}
need_cmd apt-get apt
need_cmd apt-cache apt
need_cmd dpkg-deb dpkg
need_cmd gcc gcc
need_cmd objcopy binutils
need_cmd ldd libc-bin
need_cmd gzip gzip
need_cmd nbdkit nbdkit
need_cmd nbd-client nbd-client
need_file /bin/busybox busybox-static
# the busybox in the initramfs must be the static one
if ldd /bin/busybox >/dev/null 2>&1; then
    die "/bin/busybox is dynamically linked; install the Debian package 'busybox-static'"
fi
NBDKIT=$(command -v nbdkit)
NBDCLIENT=$(command -v nbd-client)
NBDKIT_PLUGINDIR=$("$NBDKIT" --dump-config | sed -n 's/^plugindir=//p')
[ -n "$NBDKIT_PLUGINDIR" ] || die "cannot read plugindir from 'nbdkit --dump-config'"
NBD_PLUGIN=$NBDKIT_PLUGINDIR/nbdkit-nbd-plugin.so
need_file "$NBD_PLUGIN" nbdkit

case $BACKEND in
rampool)
    [ -f "$PLUGIN" ] || die "rampool plugin '$PLUGIN' not found; build it (cd $TOP && ./configure && make) or set RP_VM_BACKEND=stock"
    ;;
stock)
    [ -f "$PLUGIN" ] || { log "rampool plugin '$PLUGIN' not found; building a stock-only guest"; PLUGIN=; }
    ;;
*) die "RP_VM_BACKEND must be 'rampool' or 'stock' (got '$BACKEND')" ;;
esac

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

# ---------------------------------------------------------------- kernel
KVER=${RP_VM_KVER:-}
if [ -z "$KVER" ]; then
    KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null |
           sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)
    [ -n "$KPKG" ] || die "cannot find the kernel package that linux-image-amd64 depends on (run apt-get update?)"
    KVER=${KPKG#linux-image-}
else
    KPKG=linux-image-$KVER
fi
KDIR=$CACHE/kernel-$KVER
if [ ! -f "$KDIR/boot/vmlinuz-$KVER" ]; then
    DEB=$(ls "$CACHE"/"${KPKG}"_*_amd64.deb 2>/dev/null | head -n1 || true)
    if [ -z "$DEB" ]; then
        log "downloading $KPKG"
        # apt-get download writes into the current directory. The "_apt
        # sandbox" warning printed when running as root is harmless.
        (cd "$CACHE" && apt-get download "$KPKG") ||
            die "apt-get download $KPKG failed"
        DEB=$(ls "$CACHE"/"${KPKG}"_*_amd64.deb | head -n1)
    fi
    log "unpacking $DEB"
    rm -rf "$KDIR.tmp"
    mkdir -p "$KDIR.tmp"
    dpkg-deb -x "$DEB" "$KDIR.tmp"
    rm -rf "$KDIR"
    mv "$KDIR.tmp" "$KDIR"
fi
MODROOT=$KDIR/lib/modules/$KVER
[ -d "$MODROOT" ] || die "no modules in $MODROOT"
cp -f "$KDIR/boot/vmlinuz-$KVER" "$CACHE/vmlinuz"

# ---------------------------------------------------------------- hog
log "compiling hog (static)"
gcc -static -O2 -Wall -Wextra -o "$CACHE/hog" "$HERE/hog.c" ||
    die "static compile of hog.c failed; the Debian package 'libc6-dev' provides libc.a"

# ---------------------------------------------------------------- initramfs
ROOT=$CACHE/initramfs
rm -rf "$ROOT"
mkdir -p "$ROOT"/{bin,sbin,etc,proc,sys,dev,tmp,run,mnt,lib/modules,lib64} \
         "$ROOT"/usr/{bin,sbin} "$ROOT$NBDKIT_PLUGINDIR"

# busybox and its applets (symlinks, made here so /init needs no --install)
cp /bin/busybox "$ROOT/bin/busybox"
for app in $(/bin/busybox --list); do
    [ "$app" = busybox ] && continue
    ln -sf busybox "$ROOT/bin/$app"
done

# binaries: keep them on the host's path so default search paths match
copy_file() { # copy_file HOSTPATH -> same path inside the initramfs
    local src=$1 dst=$ROOT$1
    mkdir -p "$(dirname "$dst")"
    cp -L "$src" "$dst"
}
copy_file "$NBDKIT"
copy_file "$NBDCLIENT"
[ "$BACKEND" = stock ] && copy_file "$NBD_PLUGIN"
cp "$CACHE/hog" "$ROOT/bin/hog"
if [ -n "$PLUGIN" ]; then
    cp -L "$PLUGIN" "$ROOT$NBDKIT_PLUGINDIR/nbdkit-rampool-plugin.so"
fi
[ -x "$RAMPOOL_CLI" ] || RAMPOOL_CLI=
[ -n "$RAMPOOL_CLI" ] && cp -L "$RAMPOOL_CLI" "$ROOT/usr/bin/rampool"

# shared libraries: everything ldd lists, for every ELF we copied.
# Project libraries built by libtool live in .libs dirs that the plugin's
# RUNPATH may not name; let ldd see them.
LIBPATH=$(find "$TOP" -path "$TOP/tests/vm/work" -prune -o -type d -name .libs -print 2>/dev/null | tr '\n' ':')
declare -A SEEN=()
copy_libs_of() { # copy_libs_of ELF
    local out line lib path
    out=$(LD_LIBRARY_PATH=${LIBPATH%:} ldd "$1" 2>&1) || die "ldd $1 failed: $out"
    if grep -q 'not found' <<<"$out"; then
        die "ldd $1: missing libraries:"$'\n'"$(grep 'not found' <<<"$out")"
    fi
    while read -r line; do
        case $line in
        *"=> /"*) path=${line#*=> }; path=${path%% (*} ;;
        /*) path=${line%% (*} ;;
        *) continue ;;
        esac
        [ -n "${SEEN[$path]:-}" ] && continue
        SEEN[$path]=1
        copy_file "$path"
    done <<<"$out"
}
copy_libs_of "$NBDKIT"
copy_libs_of "$NBDCLIENT"
[ "$BACKEND" = stock ] && copy_libs_of "$NBD_PLUGIN"
[ -n "$PLUGIN" ] && copy_libs_of "$PLUGIN"
[ -n "$RAMPOOL_CLI" ] && copy_libs_of "$RAMPOOL_CLI"
# glibc dlopen()s libgcc_s.so.1 for pthread_cancel / unwinding; ldd
# does not list it.
LIBGCC=$(gcc -print-file-name=libgcc_s.so.1)
[ -f "$LIBGCC" ] || LIBGCC=/lib/x86_64-linux-gnu/libgcc_s.so.1
need_file "$LIBGCC" libgcc-s1
mkdir -p "$ROOT/lib/x86_64-linux-gnu"
cp -L "$LIBGCC" "$ROOT/lib/x86_64-linux-gnu/libgcc_s.so.1"

# kernel modules, in dependency order (from each module's .modinfo
# "depends=" field; the kernel package ships no modules.dep)
declare -A MODPATH=() MODDONE=()
while IFS= read -r -d '' f; do
    n=$(basename "$f"); n=${n%%.ko*}
    MODPATH[$n]=$f
    MODPATH[${n//-/_}]=$f
done < <(find "$MODROOT/kernel" -name '*.ko*' -print0)
MODORDER=()
mod_depends() { # prints the comma-separated depends of a module file
    local f=$1 tmp
    tmp=$(mktemp)
    case $f in
    *.ko.xz) xz -dc "$f" >"$tmp" || die "xz needed to unpack $f (Debian package 'xz-utils')" ;;
    *.ko.zst) zstd -dc "$f" >"$tmp" || die "zstd needed to unpack $f (Debian package 'zstd')" ;;
    *.ko.gz) gzip -dc "$f" >"$tmp" ;;
    *) cp "$f" "$tmp" ;;
    esac
    objcopy -O binary --only-section=.modinfo "$tmp" "$tmp.mi"
    tr '\0' '\n' <"$tmp.mi" | sed -n 's/^depends=//p' | head -n1
    rm -f "$tmp" "$tmp.mi"
}
add_module() { # add_module NAME: deps first, then itself
    local name=${1//-/_} f deps d
    [ -n "${MODDONE[$name]:-}" ] && return 0
    MODDONE[$name]=1
    f=${MODPATH[$name]:-}
    [ -n "$f" ] || die "kernel module '$name' not found under $MODROOT"
    deps=$(mod_depends "$f")
    for d in ${deps//,/ }; do add_module "$d"; done
    MODORDER+=("$name")
    case $f in
    *.ko.xz) xz -dc "$f" >"$ROOT/lib/modules/$name.ko" ;;
    *.ko.zst) zstd -dc "$f" >"$ROOT/lib/modules/$name.ko" ;;
    *.ko.gz) gzip -dc "$f" >"$ROOT/lib/modules/$name.ko" ;;
    *) cp "$f" "$ROOT/lib/modules/$name.ko" ;;
    esac
}
# virtio_pci before virtio_net: the driver binds when the PCI transport is up
for m in nbd virtio_pci virtio_net $EXTRA_MODULES; do add_module "$m"; done
printf '%s\n' "${MODORDER[@]}" >"$ROOT/etc/modules.order"
log "modules (load order): ${MODORDER[*]}"

# /init and a little /etc
[ -f "$INIT" ] || die "guest init script '$INIT' not found"
cp "$INIT" "$ROOT/init"
chmod 755 "$ROOT/init"
echo "127.0.0.1 localhost" >"$ROOT/etc/hosts"
echo "root:x:0:0:root:/:/bin/sh" >"$ROOT/etc/passwd"
echo "root:x:0:" >"$ROOT/etc/group"
: >"$ROOT/etc/fstab"

# cpio (busybox makes newc archives) + gzip
log "packing initramfs"
(cd "$ROOT" && find . | LC_ALL=C sort | /bin/busybox cpio -o -H newc 2>/dev/null) |
    gzip -6 >"$CACHE/initrd.cpio.gz.tmp"
mv "$CACHE/initrd.cpio.gz.tmp" "$CACHE/initrd.cpio.gz"

{
    echo "KVER=$KVER"
    echo "HAVE_RAMPOOL=$([ -n "$PLUGIN" ] && echo 1 || echo 0)"
    echo "HAVE_STOCK=$([ "$BACKEND" = stock ] && echo 1 || echo 0)"
    echo "HAVE_RAMPOOL_CLI=$([ -n "$RAMPOOL_CLI" ] && echo 1 || echo 0)"
    echo "PLUGIN=$PLUGIN"
} >"$CACHE/guest.env"
log "done: $CACHE/vmlinuz $CACHE/initrd.cpio.gz ($(du -h "$CACHE/initrd.cpio.gz" | cut -f1)), kernel $KVER, rampool plugin: ${PLUGIN:-none}"
