#!/usr/bin/env bash
# Prepares what the wirehook test VM boots: Debian's stock kernel (unpacked
# from the linux-image-6.1.0-N-amd64 .deb that tests/vm/fetch-kernel.sh put in
# the cache, never installed) and a busybox initramfs with tests/vm/init and
# the virtio/9p modules. Everything is cached in the cache directory
# ($WIREHOOK_VM_CACHE, default /var/cache/wirehook-vm):
#
#   CACHE/<deb name>/              the unpacked package (+ depmod's files)
#   CACHE/<deb name>/initramfs-<hash>.cpio.gz
#
# The hash covers the init script, this script, busybox and the module list,
# so a change to any of them makes a new initramfs; an unchanged one is
# reused. Safe to run concurrently (flock on CACHE/.lock).
#
# Prints shell assignments on stdout: KERNEL, INITRD, KROOT (the unpacked
# package: KROOT/lib/modules/KVER), KVER, LOAD (modules to load at boot);
# with --raw, unquoted KEY=VALUE lines (for tests/src/vm.rs).
# Exits 1 with a message that says what is missing and how to get it.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${WIREHOOK_VM_CACHE:-/var/cache/wirehook-vm}

# Modules the initramfs loads to reach the host's root (with dependencies).
BOOT_MODULES="virtio_pci 9pnet_virtio 9p"
# Modules stage 2 loads up front (the rest are loaded on demand by the
# kernel through the host's modprobe): the link kinds wirehook uses and the
# nftables pieces of its firewall (inet table, nat chains, masquerade, dnat
# maps, fib, ct) and conntrack's netlink.
LOAD_MODULES="ipvlan 8021q macvlan veth bridge vxlan dummy nf_tables nft_chain_nat nft_nat nft_masq nft_ct nft_fib_inet nft_reject_inet nf_conntrack_netlink"

die() {
    echo "tests/vm/build.sh: $*" >&2
    exit 1
}

[ -x /bin/busybox ] || die "/bin/busybox missing: apt-get install busybox-static"
if ldd /bin/busybox >/dev/null 2>&1; then
    die "/bin/busybox is dynamically linked: apt-get install busybox-static"
fi
command -v depmod >/dev/null || die "depmod missing: apt-get install kmod"
command -v dpkg-deb >/dev/null || die "dpkg-deb missing (this needs Debian)"

mkdir -p "$CACHE" 2>/dev/null || die "cannot create $CACHE (run as root or set WIREHOOK_VM_CACHE)"
exec 9>"$CACHE/.lock"
flock 9

deb=$(ls "$CACHE"/linux-image-6.1.0-*-amd64_*_amd64.deb 2>/dev/null | sort -V | tail -1 || true)
env=
[ "$CACHE" = /var/cache/wirehook-vm ] || env="WIREHOOK_VM_CACHE=$CACHE "
[ -n "$deb" ] || die "no Debian kernel package in $CACHE: download it (no install) with
    sudo ${env}bash $HERE/fetch-kernel.sh
(that is: apt-get update; cd $CACHE && apt-get download linux-image-6.1.0-N-amd64, N the newest)"

name=$(basename "$deb" .deb)
tree="$CACHE/$name"
if [ ! -e "$tree/.unpacked" ]; then
    echo "unpacking $deb" >&2
    rm -rf "$tree" "$tree.tmp"
    mkdir -p "$tree.tmp"
    dpkg-deb -x "$deb" "$tree.tmp" || die "dpkg-deb -x $deb failed (corrupt download? delete it and fetch again)"
    kv=$(ls "$tree.tmp/lib/modules" | head -1)
    [ -n "$kv" ] || die "$deb has no lib/modules"
    depmod -b "$tree.tmp" "$kv" || die "depmod -b $tree.tmp $kv failed"
    touch "$tree.tmp/.unpacked"
    mv "$tree.tmp" "$tree"
fi
# Trees of older kernel packages are stale now.
for old in "$CACHE"/linux-image-*/; do
    old=${old%/}
    [ "$old" = "$tree" ] || [ ! -e "$old/.unpacked" ] || rm -rf "$old"
done
kver=$(ls "$tree/lib/modules" | head -1)
kernel=$(ls "$tree/boot/vmlinuz-"* | head -1)
moddir="$tree/lib/modules/$kver"

# Every module in $1 (names) with its dependencies, dependencies first, as
# paths relative to $moddir, each once.
closure() {
    local seen=" " out=() m line path
    for m in "$@"; do
        line=$(modprobe -d "$tree" -S "$kver" --show-depends "$m" 2>/dev/null) ||
            die "module $m not found in $kver"
        while read -r kind path _; do
            [ "$kind" = insmod ] || continue
            path=${path#"$moddir"/}
            case $seen in *" $path "*) continue ;; esac
            seen="$seen$path "
            out+=("$path")
        done <<<"$line"
    done
    printf '%s\n' "${out[@]}"
}
# shellcheck disable=SC2086 # lists of names
boot_list=$(closure $BOOT_MODULES)
# Check the up-front list exists now rather than in the VM.
# shellcheck disable=SC2086
closure $LOAD_MODULES >/dev/null

hash=$(
    {
        cat "$HERE/init" "$0"
        sha256sum /bin/busybox
        echo "$name $boot_list"
    } | sha256sum | cut -c1-16
)
initrd="$tree/initramfs-$hash.cpio.gz"
if [ ! -s "$initrd" ]; then
    echo "building $initrd" >&2
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/bin" "$work/lib/modules/$kver"
    cp /bin/busybox "$work/bin/busybox"
    cp "$HERE/init" "$work/init"
    chmod 755 "$work/init" "$work/bin/busybox"
    while read -r p; do
        mkdir -p "$work/lib/modules/$kver/$(dirname "$p")"
        cp "$moddir/$p" "$work/lib/modules/$kver/$p"
    done <<<"$boot_list"
    echo "$boot_list" >"$work/modules.list"
    (cd "$work" && find . -mindepth 1 | busybox cpio -o -H newc 2>/dev/null) | gzip -1 >"$initrd.tmp"
    mv "$initrd.tmp" "$initrd"
    # Older initramfs images of this kernel are stale now.
    find "$tree" -maxdepth 1 -name 'initramfs-*.cpio.gz' ! -name "$(basename "$initrd")" -delete
fi

fmt='KERNEL=%q\nINITRD=%q\nKROOT=%q\nKVER=%q\nLOAD=%q\n'
[ "${1:-}" = --raw ] && fmt=${fmt//%q/%s}
# shellcheck disable=SC2059
printf "$fmt" \
    "$kernel" "$initrd" "$tree" "$kver" "$LOAD_MODULES"
