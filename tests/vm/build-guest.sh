#!/bin/bash
# build-guest.sh — build the kernel + busybox initramfs for the rampool VM
# guests: the swap-test guest (test-swap.sh, bench/vm-swap-bench.sh) and the
# RDMA guest (run-rdma.sh: soft-RoCE, rdma-core, our binaries and tests),
# which exists because the build machines' kernel has no RDMA at all.
#
# Usage: tests/vm/build-guest.sh [PLUGIN_SO]
#
# Environment:
#   RP_VM_GUEST    swap (default): the swap-test guest, rebuilt every time;
#                  rdma: the RDMA guest, in layers that are rebuilt only when
#                  their inputs change (see "RDMA guest" below)
#   RP_VM_CACHE    cache / output dir (default: tests/vm/work)
#   RP_VM_PLUGIN   rampool nbdkit plugin .so (default:
#                  ../../nbdkit-plugin/.libs/nbdkit-rampool-plugin.so,
#                  relative to this script); the first argument overrides it
#   RP_VM_BACKEND  rampool (default): the plugin must exist;
#                  stock: the plugin is optional (the guest then uses nbdkit's
#                  nbd plugin against a host-side nbdkit memory server)
#   RP_VM_RAMPOOL  the rampool CLI, for rampool attach/detach in the guest
#                  (default: ../../client/rampool; left out if not built)
#   RP_VM_RAMPOOL_NBD  rampool-nbd, the NBD server for guest-init.sh's
#                  rp_front=nbd (default: ../../client/rampool-nbd; left
#                  out if not built)
#   RP_VM_KVER     kernel ABI version to use (default: the one that Debian's
#                  linux-image-amd64 depends on)
#   RP_VM_INIT     script to pack as the guest's /init instead of
#                  guest-init.sh (opt-in, for experiments)
#   RP_VM_EXTRA_MODULES  space-separated kernel modules to add after the
#                  default ones (e.g. "virtio_blk"); loaded in that order
#
# Output of the swap guest (in the cache dir): vmlinuz, initrd.cpio.gz,
# guest.env (facts for test-swap.sh).
#
# RDMA guest (RP_VM_GUEST=rdma), output in CACHE/rdma/: vmlinuz, two
# initramfs layers that run-rdma.sh concatenates with a per-run payload
# layer (the kernel unpacks concatenated cpio archives in order), and
# guest.env. Each layer is rebuilt only when its manifest (every file's
# guest path, host path, size, mtime, mode) differs from the last build's.
#   base.cpio      busybox, bash, iproute2 (/usr/sbin/ip, /usr/sbin/rdma),
#                  rdma-core (libibverbs, librdmacm, the rxe provider and
#                  /etc/libibverbs.d/rxe.driver), rping and the ibv_* and
#                  perftest tools, nbdkit, nbd-client, fio, the libraries ldd
#                  lists plus libgcc_s.so.1, the kernel modules for soft-RoCE
#                  (veth, crc32_generic, rdma_rxe, rdma_ucm and what they
#                  depend on), virtio_blk and nbd, and rdma-init.sh as /init
#   project.cpio   our build under /rampool with the build tree's layout
#                  (so tests/functions.sh works with abs_top_builddir=
#                  /rampool): memserver/memserver, the plugin, client/rampool,
#                  client/rampool-nbd (if built), tests/test_parallel_io,
#                  tests/nbd_blocks, tests/test_pool_io, tests/functions.sh
#                  (and mountns.sh) and /bin/hog
#   RP_VM_BUILDDIR the build tree to take them from (default: this source
#                  tree); RP_VM_MEMSERVER, RP_VM_PLUGIN, RP_VM_RAMPOOL,
#                  RP_VM_RAMPOOL_NBD override single files
# The layers are not compressed: the kernel copies an uncompressed cpio much
# faster than it inflates one under TCG, and the guest has the RAM.
#
# Fails with a message naming the Debian package to install when a tool is
# missing.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
CACHE=${RP_VM_CACHE:-$HERE/work}
GUEST=${RP_VM_GUEST:-swap}
BACKEND=${RP_VM_BACKEND:-rampool}
BUILDDIR=${RP_VM_BUILDDIR:-$TOP}
PLUGIN=${1:-${RP_VM_PLUGIN:-$BUILDDIR/nbdkit-plugin/.libs/nbdkit-rampool-plugin.so}}
if [ "$GUEST" = rdma ]; then INIT=${RP_VM_INIT:-$HERE/rdma-init.sh}; else INIT=${RP_VM_INIT:-$HERE/guest-init.sh}; fi
RAMPOOL_CLI=${RP_VM_RAMPOOL:-$BUILDDIR/client/rampool}
RAMPOOL_NBD=${RP_VM_RAMPOOL_NBD:-$BUILDDIR/client/rampool-nbd}
MEMSERVER=${RP_VM_MEMSERVER:-$BUILDDIR/memserver/memserver}
EXTRA_MODULES=${RP_VM_EXTRA_MODULES:-}

die() { echo "build-guest: ERROR: $*" >&2; exit 1; }
log() { echo "build-guest: $*" >&2; }

case $GUEST in swap|rdma) ;; *) die "RP_VM_GUEST must be 'swap' or 'rdma' (got '$GUEST')" ;; esac

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
if [ "$GUEST" = swap ]; then
    need_file "$NBD_PLUGIN" nbdkit
else
    need_cmd bash bash
    need_cmd fio fio
    need_cmd rping rdmacm-utils
    need_cmd ibv_devinfo ibverbs-utils
    need_cmd ib_write_bw perftest
    need_file /usr/bin/rdma iproute2
    need_file /usr/bin/ip iproute2
    need_file /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so ibverbs-providers
    need_file /etc/libibverbs.d/rxe.driver ibverbs-providers
fi

case $BACKEND in
rampool)
    [ -f "$PLUGIN" ] || die "rampool plugin '$PLUGIN' not found; build it (cd $TOP && ./configure && make) or set RP_VM_BACKEND=stock"
    ;;
stock)
    [ "$GUEST" = swap ] || die "RP_VM_BACKEND=stock is for the swap guest only"
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
# ---------------------------------------------------------------- helpers
# Project libraries built by libtool live in .libs dirs that the plugin's
# RUNPATH may not name; let ldd see them.
LIBPATH=$(find "$TOP" "$BUILDDIR" -path "$TOP/tests/vm/work" -prune -o -type d -name .libs -print 2>/dev/null | sort -u | tr '\n' ':')
libs_of() { # libs_of ELF: print the paths of the shared libraries ldd lists
    local out line path
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
        echo "$path"
    done <<<"$out"
}
# glibc dlopen()s libgcc_s.so.1 for pthread_cancel / unwinding; ldd
# does not list it.
LIBGCC=$(gcc -print-file-name=libgcc_s.so.1)
[ -f "$LIBGCC" ] || LIBGCC=/lib/x86_64-linux-gnu/libgcc_s.so.1
need_file "$LIBGCC" libgcc-s1

# kernel modules, in dependency order (from each module's .modinfo
# "depends=" field; the kernel package ships no modules.dep)
declare -A MODPATH=() MODDONE=()
while IFS= read -r -d '' f; do
    n=${f##*/}; n=${n%%.ko*}
    MODPATH[$n]=$f
    MODPATH[${n//-/_}]=$f
done < <(find "$MODROOT/kernel" -name '*.ko*' -print0)
MODORDER=()
mod_unpack() { # mod_unpack MODULE-FILE OUT: the module as a plain .ko
    case $1 in
    *.ko.xz) xz -dc "$1" >"$2" || die "xz needed to unpack $1 (Debian package 'xz-utils')" ;;
    *.ko.zst) zstd -dc "$1" >"$2" || die "zstd needed to unpack $1 (Debian package 'zstd')" ;;
    *.ko.gz) gzip -dc "$1" >"$2" ;;
    *) cp "$1" "$2" ;;
    esac
}
mod_depends() { # prints the comma-separated depends of a module file
    local f=$1 tmp
    tmp=$(mktemp)
    mod_unpack "$f" "$tmp"
    objcopy -O binary --only-section=.modinfo "$tmp" "$tmp.mi"
    tr '\0' '\n' <"$tmp.mi" | sed -n 's/^depends=//p' | head -n1
    rm -f "$tmp" "$tmp.mi"
}
add_module() { # add_module NAME: appends its deps, then itself, to MODORDER
    local name=${1//-/_} f deps d
    [ -n "${MODDONE[$name]:-}" ] && return 0
    MODDONE[$name]=1
    f=${MODPATH[$name]:-}
    [ -n "$f" ] || die "kernel module '$name' not found under $MODROOT"
    deps=$(mod_depends "$f")
    for d in ${deps//,/ }; do add_module "$d"; done
    MODORDER+=("$name")
}

if [ "$GUEST" = swap ]; then
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
[ -x "$RAMPOOL_NBD" ] || RAMPOOL_NBD=
[ -n "$RAMPOOL_NBD" ] && cp -L "$RAMPOOL_NBD" "$ROOT/usr/bin/rampool-nbd"

# shared libraries: everything ldd lists, for every ELF we copied
declare -A SEEN=()
copy_libs_of() { # copy_libs_of ELF
    local libs path
    libs=$(libs_of "$1") || exit 1
    for path in $libs; do
        [ -n "${SEEN[$path]:-}" ] && continue
        SEEN[$path]=1
        copy_file "$path"
    done
}
copy_libs_of "$NBDKIT"
copy_libs_of "$NBDCLIENT"
[ "$BACKEND" = stock ] && copy_libs_of "$NBD_PLUGIN"
[ -n "$PLUGIN" ] && copy_libs_of "$PLUGIN"
[ -n "$RAMPOOL_CLI" ] && copy_libs_of "$RAMPOOL_CLI"
[ -n "$RAMPOOL_NBD" ] && copy_libs_of "$RAMPOOL_NBD"
mkdir -p "$ROOT/lib/x86_64-linux-gnu"
cp -L "$LIBGCC" "$ROOT/lib/x86_64-linux-gnu/libgcc_s.so.1"

# virtio_pci before virtio_net: the driver binds when the PCI transport is up
for m in nbd virtio_pci virtio_net $EXTRA_MODULES; do add_module "$m"; done
for m in "${MODORDER[@]}"; do mod_unpack "${MODPATH[$m]}" "$ROOT/lib/modules/$m.ko"; done
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
    echo "HAVE_RAMPOOL_NBD=$([ -n "$RAMPOOL_NBD" ] && echo 1 || echo 0)"
    echo "PLUGIN=$PLUGIN"
} >"$CACHE/guest.env"
log "done: $CACHE/vmlinuz $CACHE/initrd.cpio.gz ($(du -h "$CACHE/initrd.cpio.gz" | cut -f1)), kernel $KVER, rampool plugin: ${PLUGIN:-none}, rampool-nbd: ${RAMPOOL_NBD:-none}"
exit 0
fi

# ================================================================ RDMA guest
OUT=$CACHE/rdma
mkdir -p "$OUT/gen" "$OUT/mod"
[ -f "$INIT" ] || die "guest init script '$INIT' not found"

# A layer is a list of entries "f GUESTPATH HOSTPATH" (a file) or
# "l GUESTPATH TARGET" (a symlink); layer_pack writes it as OUT/NAME.cpio.
L_NAME=
L_ENTRIES=()
declare -A L_HAVE=() BASE_HAVE=()
layer_begin() { L_NAME=$1; L_ENTRIES=(); L_HAVE=(); }
layer_file() { # layer_file HOSTPATH [GUESTPATH]: a file (default: same path)
    local src=$1 dst=${2:-$1}
    [ -f "$src" ] || die "layer $L_NAME: '$src' is missing"
    [ -n "${L_HAVE[$dst]:-}${BASE_HAVE[$dst]:-}" ] && return 0
    L_HAVE[$dst]=1
    L_ENTRIES+=("f $dst $src")
}
layer_link() { # layer_link TARGET GUESTPATH
    [ -n "${L_HAVE[$2]:-}" ] && return 0
    L_HAVE[$2]=1
    L_ENTRIES+=("l $2 $1")
}
layer_elf() { # layer_elf HOSTPATH [GUESTPATH]: the file and the libraries ldd lists
    local libs p
    layer_file "$@"
    libs=$(libs_of "$1") || exit 1
    for p in $libs; do layer_file "$p"; done
}
gen_file() { # gen_file NAME <CONTENT: OUT/gen/NAME, rewritten only on change; prints its path
    local f=$OUT/gen/$1
    mkdir -p "$(dirname "$f")"
    cat >"$f.new"
    if cmp -s "$f.new" "$f"; then rm -f "$f.new"; else mv "$f.new" "$f"; fi
    echo "$f"
}
layer_pack() { # pack the current layer unless its manifest is unchanged
    local man=$OUT/$L_NAME.manifest stage=$OUT/$L_NAME.root e t dst src rest
    for e in "${L_ENTRIES[@]}"; do
        read -r t dst src <<<"$e"
        if [ "$t" = f ]; then echo "$e $(stat -L -c '%s %Y %a' "$src")"; else echo "$e"; fi
    done | LC_ALL=C sort >"$man.new"
    if [ -f "$OUT/$L_NAME.cpio" ] && cmp -s "$man.new" "$man"; then
        rm -f "$man.new"
        log "layer $L_NAME: unchanged"
        return 0
    fi
    rm -rf "$stage"
    mkdir -p "$stage"
    while read -r t dst src rest; do
        mkdir -p "$stage$(dirname "$dst")"
        case $t in
        f) cp -L "$src" "$stage$dst" ;;
        l) ln -sfn "$src" "$stage$dst" ;;
        esac
    done <"$man.new"
    (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | /bin/busybox cpio -o -H newc 2>/dev/null) \
        >"$OUT/$L_NAME.cpio.tmp" || die "packing layer $L_NAME failed"
    mv "$OUT/$L_NAME.cpio.tmp" "$OUT/$L_NAME.cpio"
    mv "$man.new" "$man"
    rm -rf "$stage"
    log "layer $L_NAME: packed, $(du -h "$OUT/$L_NAME.cpio" | cut -f1), ${#L_ENTRIES[@]} entries"
}

# ---------------------------------------------------------------- base layer
layer_begin base
layer_file /bin/busybox /bin/busybox
for app in $(/bin/busybox --list); do
    case $app in busybox|bash) continue ;; esac
    layer_link busybox "/bin/$app"
done
layer_link ../../bin/busybox /usr/bin/env
layer_elf "$(command -v bash)" /bin/bash
# iproute2 where the guest's scripts call it (busybox has its own ip)
layer_elf /usr/bin/ip /usr/sbin/ip
layer_elf /usr/bin/rdma /usr/sbin/rdma
layer_elf "$NBDKIT"
layer_elf "$NBDCLIENT"
for t in fio rping ibv_devinfo ibv_devices ibv_rc_pingpong ib_write_bw ib_read_bw ib_send_lat; do
    layer_elf "$(command -v $t)"
done
# the soft-RoCE verbs provider, dlopen()ed by libibverbs by this path
layer_elf /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so
layer_file /etc/libibverbs.d/rxe.driver
layer_file "$LIBGCC" /lib/x86_64-linux-gnu/libgcc_s.so.1
# veth + soft-RoCE (rdma_rxe needs the crc32 shash, which no module
# "depends=" names), rdma_ucm for librdmacm; virtio_blk for the results disk;
# virtio_net for a guest with a NIC; nbd for swap tests
for m in veth crc32_generic rdma_rxe rdma_ucm virtio_pci virtio_blk virtio_net nbd $EXTRA_MODULES; do
    add_module "$m"
done
for m in "${MODORDER[@]}"; do
    f=${MODPATH[$m]}
    case $f in
    *.ko) layer_file "$f" "/lib/modules/$m.ko" ;;
    *) [ "$OUT/mod/$m.ko" -nt "$f" ] || mod_unpack "$f" "$OUT/mod/$m.ko"
       layer_file "$OUT/mod/$m.ko" "/lib/modules/$m.ko" ;;
    esac
done
log "modules (load order): ${MODORDER[*]}"
layer_file "$(printf '%s\n' "${MODORDER[@]}" | gen_file etc/modules.order)" /etc/modules.order
layer_file "$(echo "127.0.0.1 localhost" | gen_file etc/hosts)" /etc/hosts
layer_file "$(echo "root:x:0:0:root:/root:/bin/sh" | gen_file etc/passwd)" /etc/passwd
layer_file "$(echo "root:x:0:" | gen_file etc/group)" /etc/group
layer_file "$(: | gen_file etc/fstab)" /etc/fstab
for d in proc sys dev tmp run mnt root; do
    layer_file "$(: | gen_file keep)" "/$d/.keep"
done
layer_file "$INIT" /init
layer_pack
for e in "${L_ENTRIES[@]}"; do read -r _ dst _ <<<"$e"; BASE_HAVE[$dst]=1; done

# ---------------------------------------------------------------- project layer
layer_begin project
real_prog() { # real_prog PATH: the ELF behind PATH (a libtool wrapper's .libs/ file)
    if [ "$(head -c4 "$1" | od -An -c | tr -d ' ')" != 177ELF ] &&
       [ -f "$(dirname "$1")/.libs/$(basename "$1")" ]; then
        echo "$(dirname "$1")/.libs/$(basename "$1")"
    else
        echo "$1"
    fi
}
need_built() { # need_built PATH HOW
    [ -f "$1" ] || die "'$1' is not built ($2)"
}
need_built "$MEMSERVER" "cd $BUILDDIR && make"
need_built "$PLUGIN" "cd $BUILDDIR && make"
need_built "$RAMPOOL_CLI" "cd $BUILDDIR && make"
for t in test_parallel_io nbd_blocks test_pool_io; do
    need_built "$BUILDDIR/tests/$t" "make -C $BUILDDIR/tests $t, or make check"
done
layer_elf "$(real_prog "$MEMSERVER")" /rampool/memserver/memserver
layer_elf "$PLUGIN" /rampool/nbdkit-plugin/.libs/nbdkit-rampool-plugin.so
layer_elf "$(real_prog "$RAMPOOL_CLI")" /rampool/client/rampool
# for functions.sh's RP_FRONTEND=nbd; a tree built before it existed has none
[ -f "$RAMPOOL_NBD" ] && layer_elf "$(real_prog "$RAMPOOL_NBD")" /rampool/client/rampool-nbd
for t in test_parallel_io nbd_blocks test_pool_io; do
    layer_elf "$(real_prog "$BUILDDIR/tests/$t")" "/rampool/tests/$t"
done
layer_file "$TOP/tests/functions.sh" /rampool/tests/functions.sh
# functions.sh sources it for a test that sets MOUNT_NS=own
[ -f "$TOP/tests/mountns.sh" ] && layer_file "$TOP/tests/mountns.sh" /rampool/tests/mountns.sh
if [ ! -f "$OUT/hog" ] || [ "$HERE/hog.c" -nt "$OUT/hog" ]; then
    log "compiling hog (static)"
    gcc -static -O2 -Wall -Wextra -o "$OUT/hog" "$HERE/hog.c" ||
        die "static compile of hog.c failed; the Debian package 'libc6-dev' provides libc.a"
fi
layer_file "$OUT/hog" /bin/hog
layer_pack

# ---------------------------------------------------------------- kernel, facts
cmp -s "$KDIR/boot/vmlinuz-$KVER" "$OUT/vmlinuz" || cp -f "$KDIR/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
printf 'KVER=%s\nLAYERS="base.cpio project.cpio"\nBUILDDIR=%s\n' "$KVER" "$BUILDDIR" |
    gen_file ../guest.env >/dev/null
log "done: $OUT/vmlinuz, base.cpio ($(du -h "$OUT/base.cpio" | cut -f1)) + project.cpio ($(du -h "$OUT/project.cpio" | cut -f1)), kernel $KVER"
