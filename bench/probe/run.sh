#!/usr/bin/env bash
# Prober scale benchmark: 30,000 distinct loopback endpoints at a 5 s period.
# Usage: bench/probe/run.sh [probe-bench options], e.g. --endpoints 30000 --measure 60
#        bench/probe/run.sh --kinds tcp,http,https [options]   one run per probe kind,
#        then a table of probes per second and prober CPU per probe side by side.
# Options: --kind tcp|http|https (default tcp), --endpoints, --addresses,
# --listening-ports, --blackhole-ports, --period, --timeout, --warmup, --measure,
# --shared-names, --base-port.
# Prints lateness (p50/p99), probes per second, prober CPU (and per probe) and RSS;
# docs/performance.md records results.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release --example probe-bench
# Probing needs one descriptor per probe in flight: use the hard limit.
ulimit -n "$(ulimit -Hn)"
bin="$CARGO_TARGET_DIR/release/examples/probe-bench"
if [ "${1:-}" != "--kinds" ]; then
  exec "$bin" "$@"
fi
kinds=$2
shift 2
summaries=()
for kind in ${kinds//,/ }; do
  # tee to a file, not to /dev/stderr: with stderr redirected to a file, opening
  # /dev/stderr truncates it and each kind's output would erase the previous one.
  tmp=$(mktemp)
  "$bin" --kind "$kind" "$@" | tee "$tmp" >&2
  out=$(cat "$tmp")
  rm -f "$tmp"
  summaries+=("$(grep -E '^  summary' <<<"$out" | sed 's/^  summary *//')")
done
printf '\n%-6s %10s %14s %18s %10s\n' kind endpoints probes/s "CPU µs/probe" "CPU %"
for line in "${summaries[@]}"; do
  declare -A f=()
  for kv in $line; do f[${kv%%=*}]=${kv#*=}; done
  printf '%-6s %10s %14s %18s %10s\n' "${f[kind]}" "${f[endpoints]}" "${f[probes_per_s]}" \
    "${f[cpu_us_per_probe]}" "${f[cpu_percent]}"
done
