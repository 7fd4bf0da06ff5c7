#!/usr/bin/env bash
# Runs every cargo-fuzz target under fuzz/ for N seconds each (default 60), starting from the
# corpus kept in the repo. Needs the nightly toolchain; installs cargo-fuzz when missing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
secs=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install --quiet --locked cargo-fuzz
rustup toolchain list | grep -q '^nightly' || rustup toolchain install --profile minimal nightly
cd "$REPO/fuzz"
export CARGO_TARGET_DIR=${GCRS_FUZZ_TARGET_DIR:-$HOME/.cache/gcrs-fuzz-target}
for t in $(cargo +nightly fuzz list); do
    say "fuzz $t for ${secs}s"
    mkdir -p "corpus/$t" "$CARGO_TARGET_DIR"
    # New inputs go to a scratch corpus; the repo's corpus is read as seeds only.
    work=$(mktemp -d)
    set +e
    cargo +nightly fuzz run "$t" "$work" "corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 \
        >"$CARGO_TARGET_DIR/fuzz-$t.log" 2>&1
    rc=$?
    set -e
    rm -rf "$work"
    grep -E '^(stat::number_of_executed_units|SUMMARY)' "$CARGO_TARGET_DIR/fuzz-$t.log" || true
    if [ "$rc" -ne 0 ]; then
        tail -n 40 "$CARGO_TARGET_DIR/fuzz-$t.log" >&2
        echo "fuzz target $t failed (exit $rc): the failing input is under fuzz/artifacts/$t" >&2
        exit 1
    fi
done
