#!/usr/bin/env bash
# wirehook demo: real runc containers wired by the wirehook hook.
#
#   sudo bash tests/demo.sh
#
# Everything happens inside two network namespaces made for the demo, so the
# machine's own network is never touched:
#
#   wirehook-demo      plays the container host: runc and wirehook run here,
#                      bridges, veths and the nftables table live here
#   wirehook-demo-lan  plays another machine on the host's LAN
#
#        [wirehook-demo-lan]  eth0 198.51.100.2/24
#                 |  veth
#        [wirehook-demo]      uplink0 198.51.100.1/24 (default route via .2)
#          |-- wh-demo  10.77.0.0/24: web (httpd, 8080->80), client, sidecar (web's netns)
#          |-- wh-other 10.78.0.0/24: other
#          `-- quiet: own namespace, loopback only
#
# wirehook keeps its configuration and state under $DEMO_ROOT (--root), runc
# its state there too; the script removes all of it on exit, error or Ctrl-C.
# Exit status: 0 when every check passed.

set -Eeuo pipefail

# --- settings ---------------------------------------------------------------

HOST_NS=wirehook-demo                 # the demo "host"
LAN_NS=wirehook-demo-lan              # another machine on its LAN
DEMO_ROOT=/run/wirehook-demo          # everything the demo writes
WH_ROOT=$DEMO_ROOT/wirehook           # wirehook --root
RUNC_ROOT=$DEMO_ROOT/runc             # runc --root
ROOTFS=$DEMO_ROOT/rootfs              # busybox root file system, shared read-only
BUNDLES=$DEMO_ROOT/bundles            # one OCI bundle per container
ID_PREFIX=whdemo-                     # runc container ids: whdemo-web, ...
CONTAINERS=(web client other sidecar quiet)   # in start order

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WIREHOOK=$REPO/target/release/wirehook

PASSED=0
FAILED=0

# --- output -----------------------------------------------------------------

if [[ -t 1 ]]; then
    C_OK=$'\e[32m' C_BAD=$'\e[31m' C_HEAD=$'\e[1;36m' C_DIM=$'\e[2m' C_OFF=$'\e[0m'
else
    C_OK='' C_BAD='' C_HEAD='' C_DIM='' C_OFF=''
fi

heading() { printf '\n%s== %s%s\n' "$C_HEAD" "$*" "$C_OFF"; }
info()    { printf '%s%s%s\n' "$C_DIM" "$*" "$C_OFF"; }
pass()    { PASSED=$((PASSED + 1)); printf '  %s✔%s %s\n' "$C_OK" "$C_OFF" "$*"; }
fail()    { FAILED=$((FAILED + 1)); printf '  %s✘%s %s\n' "$C_BAD" "$C_OFF" "$*"; }
die()     { printf '%sdemo.sh: %s%s\n' "$C_BAD" "$*" "$C_OFF" >&2; exit 1; }
indent()  { sed 's/^/    /'; }

# check DESCRIPTION CMD...: ✔ when CMD succeeds, else ✘ with its output.
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then
        pass "$what"
    else
        fail "$what"
        [[ -z $out ]] || indent <<<"$out"
    fi
}

# check_fails DESCRIPTION CMD...: ✔ when CMD fails (something must be refused).
check_fails() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then
        fail "$what"
        [[ -z $out ]] || indent <<<"$out"
    else
        pass "$what"
    fi
}

# --- running things inside the demo namespaces ------------------------------

in_host() { nsenter --net="/run/netns/$HOST_NS" -- "$@"; }
in_lan()  { nsenter --net="/run/netns/$LAN_NS" -- "$@"; }
wh()      { in_host "$WIREHOOK" --root "$WH_ROOT" "$@"; }
# runc must be entered with nsenter: `ip netns exec` remounts /sys and hides
# the cgroup mounts runc needs.
rc()      { in_host runc --root "$RUNC_ROOT" "$@"; }
cexec()   { local name=$1; shift; rc exec "$ID_PREFIX$name" "$@"; }

# The host pid of a container's init, from `runc state`.
cpid() {
    rc state "$ID_PREFIX$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])'
}

# The container's IPv4 address on IFACE (default eth0), as seen inside it.
cip() {
    cexec "$1" ip -4 -o addr show dev "${2:-eth0}" | awk '{ split($4, a, "/"); print a[1]; exit }'
}

# --- setup ------------------------------------------------------------------

require_root() {
    [[ $EUID -eq 0 ]] || die "must run as root: sudo bash tests/demo.sh"
}

# Install Debian packages only for tools that are missing.
install_tools() {
    local -A pkg_of=(
        [runc]=runc [busybox]=busybox-static [nft]=nftables
        [ip]=iproute2 [ping]=iputils-ping [nsenter]=util-linux [python3]=python3
    )
    local tool missing=()
    for tool in "${!pkg_of[@]}"; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg_of[$tool]}")
    done
    # Debian's busybox package is dynamic; the rootfs needs the static one.
    if command -v busybox >/dev/null 2>&1 && ! file_is_static "$(command -v busybox)"; then
        missing+=(busybox-static)
    fi
    if ((${#missing[@]})); then
        heading "Installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# True when the binary at $1 is statically linked (ldd refuses it).
file_is_static() {
    ! ldd "$1" >/dev/null 2>&1
}

# cargo build --release -p wirehook, from the repository root. Under sudo, in
# a checkout the invoking user owns, build as that user (their toolchain, and
# no root-owned files in their target/).
build() {
    heading "Building wirehook (cargo build --release -p wirehook)"
    local -a as_user=()
    local home=$HOME cargo="" c
    if [[ -n ${SUDO_USER:-} && $SUDO_USER != root && $(stat -c %U "$REPO") == "$SUDO_USER" ]]; then
        home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
        as_user=(runuser -u "$SUDO_USER" -- env HOME="$home" PATH="$home/.cargo/bin:$PATH")
    fi
    for c in "$home/.cargo/bin/cargo" "$(command -v cargo || true)"; do
        if [[ -n $c && -x $c ]]; then cargo=$c; break; fi
    done
    [[ -n $cargo ]] || die "cargo not found: install the Rust toolchain (https://rustup.rs)"
    (cd "$REPO" && "${as_user[@]}" "$cargo" build --release -p wirehook --quiet) \
        || die "cargo build --release -p wirehook failed (see above)"
    [[ -x $WIREHOOK ]] || die "$WIREHOOK missing after the build"
}

# The demo host and the LAN machine, joined by a veth.
make_namespaces() {
    ip netns add "$HOST_NS"
    ip netns add "$LAN_NS"
    ip -n "$HOST_NS" link set lo up
    ip -n "$LAN_NS" link set lo up
    ip -n "$HOST_NS" link add uplink0 type veth peer name eth0 netns "$LAN_NS"
    ip -n "$HOST_NS" addr add 198.51.100.1/24 dev uplink0
    ip -n "$LAN_NS" addr add 198.51.100.2/24 dev eth0
    ip -n "$HOST_NS" link set uplink0 up
    ip -n "$LAN_NS" link set eth0 up
    ip -n "$HOST_NS" route add default via 198.51.100.2
}

# A busybox root file system, shared read-only by every container.
make_rootfs() {
    local applet
    mkdir -p "$ROOTFS"/{bin,etc,proc,sys,dev,tmp,root,www}
    cp "$(command -v busybox)" "$ROOTFS/bin/busybox"
    for applet in $("$ROOTFS/bin/busybox" --list); do
        [[ $applet == busybox ]] || ln -sf busybox "$ROOTFS/bin/$applet"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' >"$ROOTFS/etc/passwd"
    echo 'root:x:0:' >"$ROOTFS/etc/group"
    echo 'hello from web' >"$ROOTFS/www/index.html"
}

# make_bundle NAME KEY=VALUE... -- ARGS...
# A bundle from `runc spec`, patched: ARGS, no terminal, the shared rootfs,
# annotations io.wirehook.KEY=VALUE (+ io.wirehook.name=NAME), CAP_NET_RAW
# (busybox ping only uses raw sockets).
make_bundle() {
    local name=$1 dir=$BUNDLES/$1
    shift
    mkdir -p "$dir"
    runc spec --bundle "$dir"
    python3 - "$dir/config.json" "$ROOTFS" "$name" "$@" <<'PY'
import json, sys
path, rootfs, name, rest = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
sep = rest.index("--")
pairs, args = rest[:sep], rest[sep + 1:]
with open(path) as f:
    cfg = json.load(f)
cfg["process"]["terminal"] = False
cfg["process"]["args"] = args
cfg["root"] = {"path": rootfs, "readonly": True}
cfg["hostname"] = name
ann = {"io.wirehook.name": name}
for p in pairs:
    k, v = p.split("=", 1)
    ann["io.wirehook." + k] = v
cfg["annotations"] = ann
for caps in cfg["process"]["capabilities"].values():
    if "CAP_NET_RAW" not in caps:
        caps.append("CAP_NET_RAW")
with open(path, "w") as f:
    json.dump(cfg, f, indent=2)
PY
}

# wirehook prepare + runc run -d. The container's stdout/stderr go to a file
# (with terminal false it inherits runc's: a pipe would never reach EOF).
start() {
    local name=$1 out
    if ! out=$(wh prepare "$BUNDLES/$name" 2>&1); then
        fail "wirehook prepare $name"
        indent <<<"$out"
        return 1
    fi
    if rc run -d --bundle "$BUNDLES/$name" "$ID_PREFIX$name" \
        >"$BUNDLES/$name.log" 2>&1 </dev/null; then
        # prepare's summary ends with what it did to the namespace entry.
        pass "started $name ${C_DIM}(prepare: ${out##*; })${C_OFF}"
    else
        fail "runc run $name"
        indent <"$BUNDLES/$name.log"
        return 1
    fi
}

# Retry CMD for about 3 s (a server that was just started, a first ARP
# exchange); the last try shows its output.
eventually() {
    local end=$((SECONDS + 3))
    while ((SECONDS < end)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    "$@"
}

# Pids of the processes living in the demo host's network namespace:
# containers, and wirehook's teardown finishers (poststop answers runc at
# once and leaves the slow tail -- closing published ports, flushing
# conntrack, deleting the veth, unmounting the namespace handle, releasing
# the lease -- to a detached child).
host_ns_pids() {
    local ns pid
    ns=$(stat -L -c %i "/run/netns/$HOST_NS") || return 1
    for pid in /proc/[0-9]*; do
        [[ $(stat -L -c %i "$pid/ns/net" 2>/dev/null) == "$ns" ]] && echo "${pid#/proc/}"
    done
    return 0
}

# Wait up to 5 s until no process is left in the demo host's namespace.
host_ns_idle() {
    local i pids
    for i in $(seq 50); do
        pids=$(host_ns_pids) || return 1
        [[ -z $pids ]] && return 0
        sleep 0.1
    done
    echo "still running:"
    local p
    for p in $pids; do
        printf '%s %s\n' "$p" "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"
    done
    return 1
}

# --- checks (each returns 0 when it holds) ----------------------------------

# page_at URL WGET...: WGET -q -O - URL prints the demo page. (busybox 1.35's
# static wget crashes with -T, so the callers bound it with timeout.)
page_at() {
    local url=$1 out
    shift
    out=$("$@" -q -O - "$url" 2>&1) || { echo "$out"; return 1; }
    [[ $out == "hello from web" ]] || { echo "unexpected page: $out"; return 1; }
}

# Does NAME resolve to ADDR inside container C (busybox nslookup)?
resolves_to() {
    cexec "$1" timeout 5 nslookup "$2" 2>/dev/null | grep -qw "$3"
}

sidecar_has_ip() {
    cexec sidecar ip -4 -o addr show dev eth0 | grep -qw "$1"
}

# The container's links, by name, are just "lo".
quiet_has_only_lo() {
    local links
    links=$(cexec quiet ip -o link | awk -F': ' '{ print $2 }' | tr '\n' ' ') || return 1
    echo "links: $links"
    [[ $links == "lo " ]]
}

no_records() {
    local ids
    ids=$(wh ps --json | python3 -c 'import json, sys; print(*[r["id"] for r in json.load(sys.stdin)])') \
        || return 1
    echo "records: $ids"
    [[ -z $ids ]]
}

# No link in the demo host whose name matches the regex $1.
no_links() {
    local links
    links=$(in_host ip -o link | awk -F': ' -v re="$1" '$2 ~ re { print $2 }') || return 1
    echo "links: $links"
    [[ -z $links ]]
}

# Nothing mounted below wirehook's root (its namespace handles).
no_mounts() {
    local mounts
    mounts=$(findmnt -rn -o TARGET | grep -F "$WH_ROOT") || true
    echo "mounts: $mounts"
    [[ -z $mounts ]]
}

# `wirehook gc --dry-run` finds nothing to remove.
gc_idle() {
    local out
    out=$(wh gc --dry-run 2>&1) || { echo "$out"; return 1; }
    echo "$out"
    [[ -z $out ]]
}

no_published_ports() {
    local map
    map=$(in_host nft list map inet wirehook pub4_any 2>&1) || { echo "$map"; return 1; }
    echo "$map"
    ! grep -q elements <<<"$map"
}

# --- cleanup ----------------------------------------------------------------

# Remove everything the demo made. Safe to run at any point, and twice; runs
# in a subshell so its relaxed settings do not leak into the demo.
cleanup() (
    set +e
    trap - ERR
    local id m
    if [[ -e /run/netns/$HOST_NS && -d $RUNC_ROOT ]]; then
        for id in $(rc list -q 2>/dev/null); do
            rc delete -f "$id" >/dev/null 2>&1
        done
        host_ns_idle >/dev/null   # let wirehook's teardown finishers end
        [[ -x $WIREHOOK ]] && wh gc >/dev/null 2>&1
    fi
    ip netns del "$HOST_NS" 2>/dev/null
    ip netns del "$LAN_NS" 2>/dev/null
    # Namespace handles and other mounts wirehook left below the demo root.
    if [[ -d $DEMO_ROOT ]]; then
        while read -r m; do
            umount -l "$m" 2>/dev/null
        done < <(findmnt -rn -o TARGET | grep -F "$DEMO_ROOT" | sort -r)
        rm -rf "$DEMO_ROOT"
    fi
)

on_exit() {
    local status=$?
    trap '' INT TERM   # finish cleaning up even on a second Ctrl-C
    cleanup
    exit "$status"
}

# --- the demo ---------------------------------------------------------------

main() {
    require_root
    install_tools
    build

    trap on_exit EXIT
    trap 'exit 130' INT TERM
    trap 'printf "%sdemo.sh: line %s: %s failed%s\n" "$C_BAD" "$LINENO" "$BASH_COMMAND" "$C_OFF" >&2' ERR
    cleanup   # leftovers of an interrupted earlier run
    local t0=$SECONDS

    heading "Demo host and LAN machine (network namespaces $HOST_NS, $LAN_NS)"
    make_namespaces
    mkdir -p "$WH_ROOT" "$RUNC_ROOT" "$BUNDLES"
    make_rootfs
    info "wirehook --root $WH_ROOT; runc --root $RUNC_ROOT"

    heading "Networks (wirehook network create --subnet ...)"
    wh network create --subnet 10.77.0.0/24 demo | indent
    wh network create --subnet 10.78.0.0/24 other | indent

    heading "Containers"
    make_bundle web network=demo ports=8080:80 -- httpd -f -p 80 -h /www
    make_bundle client network=demo -- sleep 3600
    make_bundle other network=other -- sleep 3600
    make_bundle sidecar network=container:web -- sleep 3600
    make_bundle quiet network=none -- sleep 3600
    local name
    for name in "${CONTAINERS[@]}"; do
        start "$name" || true   # a failed start is counted; go on with the rest
    done

    heading "wirehook network ls"
    wh network ls | indent

    heading "wirehook ps"
    wh ps | indent

    heading "Addresses (ip -br addr in each container's namespace)"
    for name in "${CONTAINERS[@]}"; do
        printf '  %s%s%s\n' "$C_HEAD" "$name" "$C_OFF"
        in_host nsenter --net="/proc/$(cpid "$name")/ns/net" ip -br addr | indent || true
    done

    heading "Traffic"
    local web_ip
    web_ip=$(cip web || true)
    info "web is $web_ip"
    check "client pings web ($web_ip)" eventually cexec client ping -c 1 -W 2 "$web_ip"
    check "client fetches http://$web_ip/" \
        eventually page_at "http://$web_ip/" cexec client timeout 5 wget
    check_fails "other (network other) cannot ping web: isolated" \
        cexec other ping -c 1 -W 1 "$web_ip"
    check "LAN machine fetches http://198.51.100.1:8080/ (published port)" \
        eventually page_at http://198.51.100.1:8080/ in_lan timeout 5 busybox wget
    check "demo host fetches http://127.0.0.1:8080/" \
        eventually page_at http://127.0.0.1:8080/ in_host timeout 5 busybox wget
    check "client reaches the LAN machine 198.51.100.2 (masquerade)" \
        eventually cexec client ping -c 1 -W 2 198.51.100.2
    check "sidecar sees web's address $web_ip" sidecar_has_ip "$web_ip"
    check "sidecar reaches web's httpd on its own localhost" \
        page_at http://127.0.0.1:80/ cexec sidecar timeout 5 wget
    check "quiet has only lo" quiet_has_only_lo

    heading "Names (the resolver at 127.0.0.11 in each container's own namespace)"
    info "client's /etc/resolv.conf, mounted by wirehook prepare:"
    cexec client cat /etc/resolv.conf | indent || true
    check "client fetches http://web/ by name" \
        eventually page_at http://web/ cexec client timeout 5 wget
    check "client resolves web.demo (NAME.NETWORK) to $web_ip" \
        eventually resolves_to client web.demo "$web_ip"
    check_fails "other (network other) cannot resolve web: names stay on their network" \
        resolves_to other web "$web_ip"

    heading "Published ports (nft list map inet wirehook pub4_any)"
    in_host nft list map inet wirehook pub4_any | indent

    heading "wirehook check"
    local out
    if out=$(wh check 2>&1); then
        indent <<<"$out"
        pass "wirehook check: records match the kernel"
    else
        indent <<<"$out"
        fail "wirehook check: records match the kernel"
    fi

    heading "Stopping every container (runc delete -f)"
    local i
    for ((i = ${#CONTAINERS[@]} - 1; i >= 0; i--)); do
        name=${CONTAINERS[i]}
        check "deleted $name" rc delete -f "$ID_PREFIX$name"
    done

    heading "Nothing left"
    check "teardown finished: no process left in the demo host namespace" host_ns_idle
    check "wirehook ps is empty" no_records
    check "no whv* links in the demo host" no_links '^whv'
    check "nft map inet wirehook pub4_any is empty" no_published_ports
    check "runc lists no container" test -z "$(rc list -q)"
    check "no namespace handle mounted under $WH_ROOT" no_mounts
    check "wirehook gc --dry-run finds nothing to remove" gc_idle
    info "wirehook network rm demo other"
    wh network rm demo other | indent
    check "no wh-* bridges after network rm" no_links '^wh-'

    heading "Summary"
    info "demo ran in $((SECONDS - t0)) s (after the build)"
    local c_failed=$C_OK
    ((FAILED == 0)) || c_failed=$C_BAD
    printf '%s%d passed%s, %s%d failed%s\n' "$C_OK" "$PASSED" "$C_OFF" \
        "$c_failed" "$FAILED" "$C_OFF"
    ((FAILED == 0)) || exit 1
}

main "$@"
