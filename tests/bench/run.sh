#!/usr/bin/env bash
# Build everything in release mode and run the side-by-side benchmark.
# Arguments go to wirehook-bench (see --help). Needs root.
#
#   tests/bench/run.sh                          # full run, markdown to stdout
#   tests/bench/run.sh --floor                  # also the machine's floor, and wirehook against it
#   tests/bench/run.sh -n 100 --json bench.json # also keep every sample
#   tests/bench/run.sh --only cni,netavark --scale 0   # the peers alone
#   tests/bench/run.sh --modes macvlan --scale 0       # one mode (ipvlan: see README, VM)
#
# The wirehook measured is the installed build (README "Install"): static,
# non-PIE, built with an explicit --target so that the flags reach only
# wirehook's own code (proc-macros and build scripts stay dynamic) and
# target/release is left as it is. WIREHOOK_BENCH_DYNAMIC=1 measures the
# plain target/release/wirehook instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" -ne 0 ]; then
    echo "run.sh: wirehook-bench needs root (network namespaces, mounts)" >&2
    exit 1
fi
cargo build --release --workspace >&2
out="${CARGO_TARGET_DIR:-target}"
wirehook="$out/release/wirehook"
if [ "${WIREHOOK_BENCH_DYNAMIC:-0}" != 1 ]; then
    triple="$(rustc -vV | sed -n 's/^host: //p')"
    RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
        cargo build --release --target "$triple" -p wirehook >&2
    wirehook="$out/$triple/release/wirehook"
fi
exec "$out/release/wirehook-bench" --wirehook "$wirehook" "$@"
