#!/usr/bin/env bash
# Prober scale benchmark: 30,000 distinct loopback endpoints at a 5 s period.
# Usage: bench/probe/run.sh [probe-bench options], e.g. --endpoints 30000 --measure 60
# Prints lateness (p50/p99), prober CPU and RSS; docs/performance.md records results.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release --example probe-bench
# Probing needs one descriptor per probe in flight: use the hard limit.
ulimit -n "$(ulimit -Hn)"
exec "$CARGO_TARGET_DIR/release/examples/probe-bench" "$@"
