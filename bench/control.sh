#!/usr/bin/env bash
# Control-plane benchmark for gslb, loopback only:
#   durable PUT throughput (16 clients), start-to-serving with 100,000 NameServices,
#   DNS p99 idle vs under 1,000 writes/s.
#
#   bench/control.sh             full run (~8 min, most of it registering 100,000 names)
#   QUICK=1 bench/control.sh     smoke run (~1-2 min): 20,000 names, shorter phases
#   GSLB_BIN=path, BENCH_WORK=dir as for bench/dns.sh (default /var/tmp/gslb-bench/control)
#   bench/control.sh --qps 30000 ...  extra flags go to bench/lib/controlbench.py (see --help)
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

WORK="${BENCH_WORK:-/var/tmp/gslb-bench/control}"
install_tools
gslb=$(build_gslb)
need_bin "$gslb"
args=(--gslb "$gslb")
if [[ -n "${QUICK:-}" ]]; then
    args+=(--names 20000 --put-seconds 5 --put-deadline 90 --restarts 1 --lat-seconds 5 --lat-rounds 1)
fi
stop_recorded "$WORK"
rm -rf "$WORK"
mkdir -p "$WORK"
run_python "$WORK" "$BENCH_ROOT/bench/lib/controlbench.py" --work "$WORK" "${args[@]}" "$@"
