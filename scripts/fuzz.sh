#!/usr/bin/env bash
# Runs every cargo-fuzz target under fuzz/ for N seconds each (default 60), starting from the
# corpus kept in the repo. Needs the nightly toolchain; installs cargo-fuzz when missing.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (no TARGET: all of `cargo fuzz list`)
# One job, one worker (CI machines are small); an input that runs longer than 20 s or grows
# past 2 GiB counts as a finding, like a crash. A summary line per target goes to
# $CARGO_TARGET_DIR/fuzz-summary.txt (executions, corpus size, findings).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
secs=${1:-60}
shift || true
command -v cargo-fuzz >/dev/null || cargo install --quiet --locked cargo-fuzz
rustup toolchain list | grep -q '^nightly' || rustup toolchain install --profile minimal nightly
cd "$REPO/fuzz"
export CARGO_TARGET_DIR=${GCRS_FUZZ_TARGET_DIR:-$HOME/.cache/gcrs-fuzz-target}
mkdir -p "$CARGO_TARGET_DIR"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
for t in "${targets[@]}"; do
    say "fuzz $t for ${secs}s"
    mkdir -p "corpus/$t"
    # New inputs go to a scratch corpus; the repo's corpus is read as seeds only.
    work=$(mktemp -d)
    set +e
    cargo +nightly fuzz run "$t" "$work" "corpus/$t" -- -max_total_time="$secs" \
        -jobs=1 -workers=1 -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$CARGO_TARGET_DIR/fuzz-$t.log" 2>&1
    rc=$?
    set -e
    execs=$(grep -aEo 'stat::number_of_executed_units: *[0-9]+' "$CARGO_TARGET_DIR/fuzz-$t.log" | grep -Eo '[0-9]+$' || echo 0)
    echo "$(date -u +%FT%TZ) $t seconds=$secs executions=${execs:-0} new_corpus=$(ls "$work" | wc -l) exit=$rc" \
        | tee -a "$CARGO_TARGET_DIR/fuzz-summary.txt"
    rm -rf "$work"
    if [ "$rc" -ne 0 ]; then
        tail -n 40 "$CARGO_TARGET_DIR/fuzz-$t.log" >&2
        echo "fuzz target $t failed (exit $rc): the failing input is under fuzz/artifacts/$t" >&2
        exit 1
    fi
done
