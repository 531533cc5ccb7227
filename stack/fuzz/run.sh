#!/usr/bin/env bash
# Bounded coverage-guided fuzzing of the stack's wire parsers (cargo fuzz,
# libFuzzer). Usage: stack/fuzz/run.sh [SECONDS_PER_TARGET] (default 30).
# Runs on the stable toolchain: RUSTC_BOOTSTRAP lets cargo-fuzz pass the
# sanitizer flags it needs. Exits non-zero on the first crash; the input that
# crashed is left in stack/fuzz/artifacts/TARGET/.
set -euo pipefail
seconds="${1:-30}"
cd "$(dirname "$0")"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2
    exit 1
fi
export RUSTC_BOOTSTRAP=1 CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for target in parsers reassembly frame; do
    echo "fuzz: $target for ${seconds}s"
    # New finds go to corpus/TARGET (not committed); seeds/TARGET holds real
    # frames the stack produced (ARP, UDP, fragments, ICMP) to start from.
    mkdir -p "corpus/$target"
    dirs=("corpus/$target")
    [ -d "seeds/$target" ] && dirs+=("seeds/$target")
    if ! cargo fuzz run -O "$target" "${dirs[@]}" -- -max_total_time="$seconds" -rss_limit_mb=2048 >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz: $target FAILED (crashing input in stack/fuzz/artifacts/$target/)" >&2
        exit 1
    fi
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" || true
done
