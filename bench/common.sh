# Shared by bench/dns.sh and bench/control.sh: tools, build, cleanup.
# shellcheck shell=bash

BENCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Debian packages only: dnsperf (load generator), knot (knotd), gdnsd; knot-dnsutils for kdig.
install_tools() {
    local missing=()
    command -v dnsperf >/dev/null || missing+=(dnsperf)
    command -v knotd >/dev/null || missing+=(knot)
    command -v gdnsd >/dev/null || missing+=(gdnsd)
    command -v taskset >/dev/null || missing+=(util-linux)
    command -v curl >/dev/null || missing+=(curl)
    if ((${#missing[@]})); then
        echo "bench: installing ${missing[*]} from Debian" >&2
        if ! apt-cache show "${missing[0]}" >/dev/null 2>&1; then
            apt-get update -qq
        fi
        # Debian would start knot/gdnsd as services on port 53; we start our own instances.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    fi
}

build_gslb() {
    if [[ -n "${GSLB_BIN:-}" ]]; then
        echo "$GSLB_BIN"
        return
    fi
    (cd "$BENCH_ROOT" && cargo build --release --quiet >&2)
    echo "${CARGO_TARGET_DIR:-$BENCH_ROOT/target}/release/gslb"
}

# Every process the Python side starts is appended to $WORK/pids; stop them by PID.
stop_recorded() {
    local pidfile="$1/pids" pid
    [[ -f "$pidfile" ]] || return 0
    while read -r pid; do
        [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true
    done <"$pidfile"
    sleep 1
    while read -r pid; do
        [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null || true
    done <"$pidfile"
    rm -f "$pidfile"
}
