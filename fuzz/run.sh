#!/usr/bin/env bash
# Builds every fuzz target and runs each for a while from its seed corpus:
#   fuzz/run.sh                  every target, FUZZ_SECONDS (default 30) each
#   fuzz/run.sh query 1800       one target, 30 minutes (the long runs of docs/testing.md)
# A crash stops the run with the reproducer under fuzz/artifacts/<target>/.
# The toolchain is stable: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags.
# No sanitizer (`--sanitizer none`): the code under test has no unsafe of its own
# on these paths, and the sanitizer runtime needs nightly's std.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
# Its own target dir: the instrumented build never mixes with the normal one.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-target}-fuzz}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
targets=("$@")
seconds="${FUZZ_SECONDS:-30}"
if [[ ${#targets[@]} -eq 2 && "${targets[1]}" =~ ^[0-9]+$ ]]; then
    seconds="${targets[1]}"
    targets=("${targets[0]}")
fi
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build --sanitizer none
for t in "${targets[@]}"; do
    corpus="${FUZZ_CORPUS:-${CARGO_TARGET_DIR}/corpus}/$t"
    mkdir -p "$corpus"
    seeds=()
    [[ -d "fuzz/seeds/$t" ]] && seeds=("fuzz/seeds/$t")
    echo "== fuzz $t for ${seconds}s"
    log="$(mktemp)"
    status=0
    cargo fuzz run --sanitizer none "$t" "$corpus" "${seeds[@]}" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
    if [[ $status -ne 0 ]]; then
        # libFuzzer wrote the reproducer (crash-*, timeout-*, oom-*) under fuzz/artifacts/.
        tail -n 60 "$log" >&2
        rm -f "$log"
        echo "fuzz $t: failed (exit $status); reproducer in fuzz/artifacts/$t" >&2
        exit 1
    fi
    rm -f "$log"
done
