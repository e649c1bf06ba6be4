# netns.sh — sourced by tests/vm/test-swap.sh and bench/vm-swap-bench.sh:
# the network namespace that holds the host side of the guest's network.
#
#   netns_up NAME   create namespace NAME with loopback up and a tap device
#                   rptap0 (10.0.2.2/24, up) for QEMU; sets NS and NSX (the
#                   command prefix that runs a program inside it).  Returns
#                   non-zero on failure (what was made is left for
#                   netns_down).
#   netns_down      delete the namespace, and the /run/netns mount that the
#                   first "ip netns add" makes, if it was not there before.

NS=
NSX=()
_NETNS_MNT_BEFORE=1
_NETNS_DIR_BEFORE=1

netns_up() {
    grep -q " /run/netns " /proc/self/mountinfo && _NETNS_MNT_BEFORE=1 || _NETNS_MNT_BEFORE=0
    [ -d /run/netns ] && _NETNS_DIR_BEFORE=1 || _NETNS_DIR_BEFORE=0
    ip netns add "$1" || return 1
    NS=$1
    NSX=(ip netns exec "$NS")
    ip -n "$NS" link set lo up &&
        ip -n "$NS" tuntap add dev rptap0 mode tap &&
        ip -n "$NS" addr add 10.0.2.2/24 dev rptap0 &&
        ip -n "$NS" link set rptap0 up
}

netns_down() {
    [ -n "$NS" ] || return 0
    ip netns del "$NS" 2>/dev/null
    if [ "$_NETNS_MNT_BEFORE" = 0 ] && [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
        umount /run/netns 2>/dev/null
        [ "$_NETNS_DIR_BEFORE" = 0 ] && rmdir /run/netns 2>/dev/null
    fi
    NS=
}
