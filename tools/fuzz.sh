#!/usr/bin/env bash
# fuzz.sh BUILD_DIR SECONDS - run every libFuzzer target of BUILD_DIR for
# SECONDS each, seeded with (and adding finds to a scratch copy of) its
# checked-in corpus. Crashes are written to BUILD_DIR/fuzz-artifacts/.
# Exits non-zero when a target finds a crash, a leak or a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
secs=${2:-60}
mkdir -p "$build/fuzz-artifacts"
rc=0
for src in tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    bin="$build/$name"
    [ -x "$bin" ] || { echo "fuzz: $bin not built" >&2; exit 1; }
    work="$build/fuzz-corpus/$name"
    mkdir -p "$work"
    cp -n tests/fuzz/corpus/"$name"/* "$work"/ 2>/dev/null || true
    echo "fuzz: $name for ${secs}s"
    if ! "$bin" -max_total_time="$secs" -rss_limit_mb=1024 -malloc_limit_mb=256 -timeout=10 \
        -artifact_prefix="$build/fuzz-artifacts/$name-" "$work" 2>"$build/fuzz-artifacts/$name.log"; then
        echo "fuzz: $name FAILED; see $build/fuzz-artifacts/$name.log" >&2
        tail -30 "$build/fuzz-artifacts/$name.log" >&2
        rc=1
    else
        grep -E "^(#[0-9]+|Done)" "$build/fuzz-artifacts/$name.log" | tail -1
    fi
done
exit $rc
