# mountns.sh: run this script in a mount namespace of its own.
# Sourced by functions.sh (for a test that sets MOUNT_NS=own) and by
# tests/vm/test-swap.sh; own_mount_ns "$@" is called first thing.
#
# Why: "ip netns exec" (test-partition.sh, the VM test) starts each
# program in a new mount namespace holding a copy of every mount that
# exists at that moment.  Where / is not a shared mount (containers:
# propagation private), an unmount elsewhere never reaches that copy,
# so it keeps a FUSE daemon or a loop device in use for as long as the
# program lives: test-fuse.sh waited on rampool-fuse after "fusermount3
# -u" for as long as test-partition.sh ran beside it (make -j2 check).
# In a namespace of its own, what a test mounts is seen by no other
# test (and is gone when the test is, however it ends), and the copies
# of FUSE and loop-backed mounts it got with the namespace are detached
# from it at once, so it holds nobody else's.  Where unshare is not
# allowed (not root: then there is no netns test to fear either) the
# script runs as it is.

# Re-execute "$0" "$@" under unshare -m (which execs: the PID stays,
# and is how the second run knows it is there), then detach others'
# mounts.
own_mount_ns () {
  if [ "${RP_MOUNT_NS:-}" != "$$" ]; then
    if unshare -m --propagation private true 2>/dev/null; then
      export RP_MOUNT_NS=$$
      exec unshare -m --propagation private -- "$BASH" "$0" "$@"
    fi
    echo "note: cannot unshare the mount namespace; running in the host's" >&2
    return 0
  fi
  own_mount_ns_detach
}

# Detach (lazily, in this namespace only) every FUSE or loop-backed
# mount but those holding a path this script uses: the current and the
# script's directory, the build tree, TMPDIR, and MOUNT_NS_KEEP (a
# space-separated list).
own_mount_ns_detach () {
  local mp fstype src p keep uses
  uses=("$PWD" "$(cd "$(dirname "$0")" && pwd)" "${TMPDIR:-/tmp}")
  [ -n "${abs_top_builddir:-}" ] && uses+=("$abs_top_builddir")
  # shellcheck disable=SC2206
  [ -n "${MOUNT_NS_KEEP:-}" ] && uses+=($MOUNT_NS_KEEP)
  # mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS... - FSTYPE SOURCE
  # SUPEROPTS.  Deepest first (tac); mount points with octal escapes.
  while read -r mp fstype src; do
    case "$fstype:$src" in fuse*:* | *:/dev/loop*) ;; *) continue ;; esac
    mp=$(printf '%b' "$mp")
    keep=
    for p in "${uses[@]}"; do
      case "$p/" in "${mp%/}/"*) keep=1 ;; esac
    done
    [ -n "$keep" ] || umount -l "$mp" 2>/dev/null || true
  done < <(tac /proc/self/mountinfo |
           awk '{ for (i = 7; $i != "-"; i++) ; print $5, $(i + 1), $(i + 2) }')
}
