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
    command -v wrk >/dev/null || missing+=(wrk)
    if ((${#missing[@]})); then
        echo "bench: installing ${missing[*]} from Debian" >&2
        if ! apt-cache show "${missing[0]}" >/dev/null 2>&1; then
            apt-get update -qq
        fi
        # Debian would start knot/gdnsd as services on port 53; we start our own instances.
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2; then
            apt-get update -qq   # a stale package list: refresh once and retry
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
        fi
    fi
}

# A built binary or a stop: `x=$(build_gslb)` as a plain assignment lets set -e see
# a failed build (inside an array assignment it would not), and the check below
# catches a binary that is missing.
need_bin() {
    [[ -x "$1" ]] || { echo "bench: no gslb binary at '$1' (did the build fail?)" >&2; exit 1; }
}

build_gslb() {
    if [[ -n "${GSLB_BIN:-}" ]]; then
        echo "$GSLB_BIN"
        return
    fi
    (cd "$BENCH_ROOT" && cargo build --release --bin gslb --quiet >&2) || return 1
    echo "${CARGO_TARGET_DIR:-$BENCH_ROOT/target}/release/gslb"
}

# gslb without per-target answer counting (for the `count` workload of dns.sh), in
# its own target directory so the main release build is not rebuilt each time.
build_gslb_nocount() {
    if [[ -n "${GSLB_NOCOUNT_BIN:-}" ]]; then
        echo "$GSLB_NOCOUNT_BIN"
        return
    fi
    local dir="${CARGO_TARGET_DIR:-$BENCH_ROOT/target}-nocount"
    (cd "$BENCH_ROOT" && cargo build --release --bin gslb --features bench-no-answer-counts \
        --target-dir "$dir" --quiet >&2) || return 1
    echo "$dir/release/gslb"
}

# Every process the Python side starts is appended to $WORK/pids as "pid starttime";
# stop exactly those (a reused pid has another start time), TERM then KILL.
ours() {
    local pid="$1" st="$2" now
    now="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f20)" || return 1
    [[ -n "$now" && "$now" == "$st" ]]
}

stop_recorded() {
    local pidfile="$1/pids" pid st left=0
    [[ -f "$pidfile" ]] || return 0
    while read -r pid st; do
        if ours "$pid" "$st"; then kill -TERM "$pid" 2>/dev/null && left=1; fi
    done <"$pidfile"
    if ((left)); then
        sleep 2
        while read -r pid st; do
            if ours "$pid" "$st"; then kill -KILL "$pid" 2>/dev/null || true; fi
        done <"$pidfile"
    fi
    rm -f "$pidfile"
}

# Run the Python driver in the background and wait for it, so that INT/TERM reach
# this shell at once; on any exit stop the driver, then everything it recorded.
run_python() {
    CLEANUP_WORK="$1"
    shift
    PY_PID=""
    trap 'cleanup "$CLEANUP_WORK"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    python3 "$@" &
    PY_PID=$!
    wait "$PY_PID"
}

cleanup() {
    if [[ -n "${PY_PID:-}" ]] && kill -0 "$PY_PID" 2>/dev/null; then
        kill -TERM "$PY_PID" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$PY_PID" 2>/dev/null || break
            sleep 0.5
        done
    fi
    stop_recorded "$1"
}
