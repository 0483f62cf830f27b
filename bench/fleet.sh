#!/usr/bin/env bash
# Fleet benchmark: three gslb instances on one three-member etcd, loopback only:
#   write-to-served-everywhere p50/p99 over 1,000 writes, PUT/s through etcd with 16
#   clients, start-to-serving with 100,000 NameServices from etcd and from the local
#   copy with etcd black-holed, DNS q/CPU-s with 100 writes/s vs none.
#
#   bench/fleet.sh               full run (~10 min, most of it registering 100,000 names)
#   QUICK=1 bench/fleet.sh       smoke run (~1-2 min): 100 writes, 5,000 names
#   GSLB_BIN=path, BENCH_WORK=dir as for bench/dns.sh (default /var/tmp/gslb-bench/fleet)
#   bench/fleet.sh --names 50000 ...  extra flags go to bench/lib/fleetbench.py (see --help)
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

WORK="${BENCH_WORK:-/var/tmp/gslb-bench/fleet}"
install_tools
if ! command -v etcd >/dev/null; then
    echo "bench: installing etcd-server from Debian" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >&2 \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >&2; }
    # Debian starts the packaged etcd on install; the benchmark starts its own members.
    systemctl stop etcd 2>/dev/null || true
fi
# A plain assignment, so that a failed build stops the script (set -e does not see
# a failure inside an array assignment's command substitution).
gslb=$(build_gslb)
[[ -x "$gslb" ]] || { echo "bench: no gslb binary at $gslb" >&2; exit 1; }
args=(--gslb "$gslb")
if [[ -n "${QUICK:-}" ]]; then
    args+=(--writes 100 --put-seconds 3 --names 5000 --put-deadline 120 --restarts 1
           --dns-seconds 3 --dns-rounds 1 --qps 5000)
fi
stop_recorded "$WORK"
rm -rf "$WORK"
mkdir -p "$WORK"
run_python "$WORK" "$BENCH_ROOT/bench/lib/fleetbench.py" --work "$WORK" "${args[@]}" "$@"
