#!/usr/bin/env bash
# Build everything in release mode and run the side-by-side benchmark.
# Arguments go to wirehook-bench (see --help). Needs root.
#
#   tests/bench/run.sh                          # full run, markdown to stdout
#   tests/bench/run.sh -n 100 --json bench.json # also keep every sample
#   tests/bench/run.sh --only cni,netavark --scale 0   # the peers alone
#   tests/bench/run.sh --modes macvlan --scale 0       # one mode (ipvlan: see README, VM)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" -ne 0 ]; then
    echo "run.sh: wirehook-bench needs root (network namespaces, mounts)" >&2
    exit 1
fi
cargo build --release --workspace >&2
target="${CARGO_TARGET_DIR:-target}/release"
exec "$target/wirehook-bench" --wirehook "$target/wirehook" "$@"
