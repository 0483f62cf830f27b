#!/usr/bin/env bash
# Random-subdomain flood against gslb with rate limiting on (issue 11): the limiter
# holds, memory stays bounded, legitimate names keep their latency. Loopback only.
#
#   bench/flood.sh                    60 s flood, 20 s quiet baseline (~2.5 min)
#   QUICK=1 bench/flood.sh            smoke run: 10 s flood, 5 s quiet
#   GSLB_BIN=path bench/flood.sh      an existing gslb binary instead of cargo build --release
#   BENCH_WORK=dir                    work directory (default /var/tmp/gslb-bench/flood)
#   bench/flood.sh --legit-rate 5000  extra flags go to bench/lib/floodbench.py
#
# Prints a Markdown table; also in $BENCH_WORK/results.md (+ results.json, logs).
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

WORK="${BENCH_WORK:-/var/tmp/gslb-bench/flood}"
install_tools

gslb=$(build_gslb)
need_bin "$gslb"
args=(--gslb "$gslb")
if [[ -n "${QUICK:-}" ]]; then
    args+=(--flood-seconds 10 --quiet-seconds 5)
fi

stop_recorded "$WORK"
rm -rf "$WORK"
mkdir -p "$WORK"
run_python "$WORK" "$BENCH_ROOT/bench/lib/floodbench.py" --work "$WORK" "${args[@]}" "$@"
