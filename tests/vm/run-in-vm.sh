#!/usr/bin/env bash
# Runs one command inside a throw-away VM with Debian's stock kernel (6.1:
# ipvlan, 802.1Q, dummy, ... that the host kernel may lack) and this host's
# root file system mounted read-only, so host binaries run unchanged: test
# binaries, wirehook, iproute2, nft, runc. /run, /tmp, /var/tmp and /root are
# fresh tmpfs, cgroup2 is on /sys/fs/cgroup, and there is no network device
# (traffic stays inside the VM).
#
#   sudo tests/vm/run-in-vm.sh [OPTIONS] [--] COMMAND [ARG...]
#
#     --timeout SECS   kill the VM after SECS, boot included (default 1200);
#                      exit status 124
#     --mem MIB        guest memory (default 2048)
#     --cpus N         guest vCPUs (default 2)
#     --cpu MODEL      qemu -cpu (default max)
#     --env K=V        set K=V for COMMAND (repeatable); WIREHOOK_*, RUST_*
#                      and CARGO_* variables are passed on by themselves
#     --console        print the VM's console (kernel log) at the end
#
# COMMAND runs as root in the VM, in the current directory (it must exist on
# the host's root file system, not under /tmp or /run), with stdin from
# /dev/null; its stdout and stderr are streamed here. The exit status is
# COMMAND's, 124 on timeout, 125 when the VM failed.
#
# Example: the bridge tests under the VM kernel
#   sudo tests/vm/run-in-vm.sh target/debug/deps/hook_bridge-HASH --test-threads=2
#
# Needs qemu-system-x86_64 (apt-get install qemu-system-x86) and the kernel
# package in the cache (sudo bash tests/vm/fetch-kernel.sh); see build.sh.
# Uses TCG (no KVM): the boot takes about 5 seconds, code runs ~5-10x slower.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
timeout=1200 mem=2048 cpus=2 cpu=max console=0
envs=()
while [ $# -gt 0 ]; do
    case $1 in
    --timeout) timeout=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --cpu) cpu=$2; shift 2 ;;
    --env) envs+=("$2"); shift 2 ;;
    --console) console=1; shift ;;
    --) shift; break ;;
    -*) echo "run-in-vm.sh: unknown option $1" >&2; exit 125 ;;
    *) break ;;
    esac
done
[ $# -gt 0 ] || { sed -n '2,27p' "$0" >&2; exit 125; }

command -v qemu-system-x86_64 >/dev/null || {
    echo "run-in-vm.sh: qemu-system-x86_64 missing: apt-get install qemu-system-x86" >&2
    exit 125
}
vars=$("$HERE/build.sh") || exit 125
eval "$vars"

share=$(mktemp -d /tmp/wirehook-vm.XXXXXX)
qpid=
cleanup() {
    [ -n "$qpid" ] && kill -9 "$qpid" 2>/dev/null && wait "$qpid" 2>/dev/null
    rm -rf "$share"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

job="$share/jobs/1"
mkdir -p "$job"
printf 'WHVM_KROOT=%q\nWHVM_LOAD=%q\n' "$KROOT" "$LOAD" >"$share/config"
# The workspace and the working directory again at their own paths: the VM
# puts tmpfs on /tmp, /run, /var/tmp and /root, which would hide them there.
ws=$(cd "$HERE/../.." && pwd)
work=(-virtfs "local,path=$ws,mount_tag=work0,security_model=none,readonly=on,multidevs=remap")
printf 'WHVM_WORK0=%q\n' "$ws" >>"$share/config"
case $PWD/ in
"$ws"/*) ;;
*)
    work+=(-virtfs "local,path=$PWD,mount_tag=work1,security_model=none,readonly=on,multidevs=remap")
    printf 'WHVM_WORK1=%q\n' "$PWD" >>"$share/config"
    ;;
esac
{
    while IFS= read -r -d '' kv; do
        case $kv in WIREHOOK_* | RUST_* | CARGO_*) printf 'export %q\n' "$kv" ;; esac
    done < <(env -0)
    echo "export WIREHOOK_TESTS_IN_VM=1"
    for kv in ${envs[@]+"${envs[@]}"}; do printf 'export %q\n' "$kv"; done
    printf 'cd %q || exit 125\nexec' "$PWD"
    printf ' %q' "$@"
    printf '\n'
} >"$job/cmd"
: >"$job/stdout"
: >"$job/stderr"
touch "$job/go" "$share/poweroff"

qemu-system-x86_64 -accel tcg,thread=multi -cpu "$cpu" -smp "$cpus" -m "$mem" \
    -nodefaults -no-reboot -display none -nic none \
    -serial "file:$share/console.log" \
    -kernel "$KERNEL" -initrd "$INITRD" -append "console=ttyS0 panic=-1 quiet mitigations=off" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -virtfs "local,path=$share,mount_tag=share,security_model=none,multidevs=remap" \
    "${work[@]}" \
    </dev/null >"$share/qemu.log" 2>&1 &
qpid=$!

tail -n +1 -F -s 0.2 --pid="$qpid" "$job/stdout" 2>/dev/null &
tail -n +1 -F -s 0.2 --pid="$qpid" "$job/stderr" >&2 2>/dev/null &
start=$SECONDS
status=
while kill -0 "$qpid" 2>/dev/null; do
    if [ $((SECONDS - start)) -ge "$timeout" ]; then
        echo "run-in-vm.sh: timed out after ${timeout}s, killing the VM" >&2
        kill -9 "$qpid"
        status=124
        break
    fi
    sleep 0.2
done
wait "$qpid" 2>/dev/null || true
qpid=
wait
if [ "$console" = 1 ] || { [ -z "$status" ] && [ ! -s "$job/rc" ]; }; then
    echo "--- VM console" >&2
    cat "$share/console.log" >&2 || true
    cat "$share/qemu.log" >&2 || true
fi
if [ -z "$status" ]; then
    if [ -s "$job/rc" ]; then
        status=$(cat "$job/rc")
    else
        echo "run-in-vm.sh: the VM stopped without running the command${share:+ ($(cat "$share/fatal" 2>/dev/null))}" >&2
        status=125
    fi
fi
exit "$status"
