#!/usr/bin/env bash
# DNS benchmark: gslb vs knotd and gdnsd on identical data, loopback only.
#
#   bench/dns.sh                 full run (~12 min): 3 rounds x 10 s per server
#   QUICK=1 bench/dns.sh         smoke run (~2-3 min): 1 round x 3 s, 20,000-name big set
#   PEERS_ONLY=1 bench/dns.sh    knotd and gdnsd only (no gslb build)
#   GSLB_BIN=path bench/dns.sh   use an existing gslb binary instead of cargo build --release
#   GSLB_NOCOUNT_BIN=path        the same for the build without answer counting (workload
#                                `count`); NO_COUNT_BUILD=1 skips that build and workload
#   BENCH_WORK=dir               work directory (default /var/tmp/gslb-bench/dns)
#   bench/dns.sh --rounds 5 ...  extra flags go to bench/lib/dnsbench.py (see --help)
#
# Prints a Markdown table; also in $BENCH_WORK/results.md (+ results.json, logs).
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

WORK="${BENCH_WORK:-/var/tmp/gslb-bench/dns}"
install_tools

args=()
if [[ -n "${QUICK:-}" ]]; then
    args+=(--rounds 1 --seconds 3 --lat-seconds 2 --idle-seconds 2 --big-names 20000 --put-deadline 60)
fi
if [[ -n "${PEERS_ONLY:-}" ]]; then
    args+=(--peers-only)
else
    gslb=$(build_gslb)
    need_bin "$gslb"
    args+=(--gslb "$gslb")
    if [[ -z "${NO_COUNT_BUILD:-}" ]]; then
        nocount=$(build_gslb_nocount)
        need_bin "$nocount"
        args+=(--gslb-nocount "$nocount")
    fi
fi

stop_recorded "$WORK"
rm -rf "$WORK"
mkdir -p "$WORK"
run_python "$WORK" "$BENCH_ROOT/bench/lib/dnsbench.py" --work "$WORK" "${args[@]}" "$@"
