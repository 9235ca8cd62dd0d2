#!/usr/bin/env bash
# Downloads (never installs) Debian's newest linux-image-6.1.0-N-amd64 package
# into the VM cache (default /var/cache/wirehook-vm, or $WIREHOOK_VM_CACHE),
# for tests/vm/build.sh. Needs root and Debian's apt; runs `apt-get update`
# unless --no-update is given. Prints the path of the .deb. Older packages in
# the cache are removed once a newer one is there. When apt cannot be reached
# but a package is cached already, that one is kept and used (with a warning).
set -euo pipefail

CACHE=${WIREHOOK_VM_CACHE:-/var/cache/wirehook-vm}
update=1
[ "${1:-}" = --no-update ] && update=0

cached() { ls "$CACHE"/linux-image-6.1.0-*-amd64_*_amd64.deb 2>/dev/null | sort -V | tail -1 || true; }
die() {
    local have
    have=$(cached)
    if [ -n "$have" ]; then
        echo "fetch-kernel.sh: warning: $* — using the cached $have" >&2
        echo "$have"
        exit 0
    fi
    echo "fetch-kernel.sh: $*" >&2
    exit 1
}

command -v apt-get >/dev/null || die "apt-get not found: this needs a Debian machine"
mkdir -p "$CACHE"
if [ "$update" = 1 ]; then
    apt-get update -q >/dev/null || die "apt-get update failed"
fi

# The newest 6.1 stock kernel: what the linux-image-amd64 metapackage points
# at, else the highest version among the package names apt knows.
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-6\.1\.0-[0-9]*-amd64\)$/\1/p' | head -1)
if [ -z "$pkg" ]; then
    pkg=$(apt-cache pkgnames linux-image-6.1.0- 2>/dev/null |
        grep -E '^linux-image-6\.1\.0-[0-9]+-amd64$' | sort -V | tail -1 || true)
fi
[ -n "$pkg" ] || die "apt knows no linux-image-6.1.0-*-amd64 package (run apt-get update; is bookworm in the sources?)"
ver=$(apt-cache policy "$pkg" | sed -n 's/^ *Candidate: //p')
{ [ -n "$ver" ] && [ "$ver" != "(none)" ]; } || die "$pkg has no candidate version"

deb="$CACHE/${pkg}_${ver//:/%3a}_amd64.deb"
if [ -s "$deb" ]; then
    echo "have $deb" >&2
else
    tmp=$(mktemp -d "$CACHE/.download.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    # As root: apt's _apt user may not write into the cache.
    (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >&2) ||
        die "apt-get download $pkg=$ver failed"
    got=$(ls "$tmp"/*.deb 2>/dev/null | head -1)
    [ -n "$got" ] || die "apt-get download $pkg=$ver left no .deb"
    mv "$got" "$CACHE/"
    deb="$CACHE/$(basename "$got")"
    echo "downloaded $deb" >&2
fi
for old in "$CACHE"/linux-image-*.deb; do
    [ "$old" = "$deb" ] || rm -f "$old"
done
echo "$deb"
