#!/bin/bash
# Run every test qdm has, the way CI does:
#   1. style: clang-format on every C file
#   2. the normal build (-Werror): unit, fake-server and real-QEMU integration tests
#   3. the same suite built with ASan+UBSan
#   4. each libFuzzer target for a short fixed time (clang)
#   5. nothing left behind: no QEMU, supervisor, uid-range process, test directory
# Prints one closing line "N passed, N failed"; exits 1 if anything failed.
set -u
cd "$(dirname "$0")/.."
src=$PWD
scripts/install-deps.sh || exit 1
out=${QDM_TEST_OUT:-$src/build-tests}
fuzz_seconds=${QDM_FUZZ_SECONDS:-10}
passed=0
failed=0
export TMPDIR=$(mktemp -d /tmp/qdm-tests.XXXXXX)
trap 'rm -rf "$TMPDIR"' EXIT

step() { # name, command...
        local name=$1; shift
        echo "=== $name"
        if "$@"; then
                echo "--- $name: ok"; return 0
        fi
        echo "--- $name: FAILED"; return 1
}

count_meson() { # build dir: add its test results to the totals
        local log=$1/meson-logs/testlog.json
        [ -f "$log" ] || { failed=$((failed + 1)); return; }
        local p f
        read -r p f < <(python3 - "$log" <<'PY'
import json, sys
p = f = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("result") in ("OK", "EXPECTEDFAIL"):
        p += 1
    else:
        f += 1
print(p, f)
PY
)
        passed=$((passed + p)); failed=$((failed + f))
}

if step "clang-format" bash -c 'git ls-files "*.c" "*.h" | xargs clang-format --dry-run --Werror'; then
        passed=$((passed + 1)); else failed=$((failed + 1)); fi

for variant in plain asan; do
        dir=$out/$variant
        opts=(--werror -Dtests=true)
        [ $variant = asan ] && opts+=(-Db_sanitize=address,undefined -Db_lundef=false)
        if [ ! -f "$dir/build.ninja" ]; then
                meson setup "$dir" "${opts[@]}" >"$out.$variant.setup.log" 2>&1 ||
                        { cat "$out.$variant.setup.log"; failed=$((failed + 1)); continue; }
        fi
        if ! step "build ($variant)" ninja -C "$dir"; then
                failed=$((failed + 1)); continue
        fi
        rm -f "$dir/meson-logs/testlog.json"
        step "tests ($variant)" meson test -C "$dir" --print-errorlogs --num-processes 2
        count_meson "$dir"
done

if command -v clang >/dev/null; then
        dir=$out/fuzz
        if [ -f "$dir/build.ninja" ] || CC=clang meson setup "$dir" -Dfuzz=true -Dtests=false \
                >"$out.fuzz.setup.log" 2>&1; then
                if step "build (fuzz)" ninja -C "$dir"; then
                        for f in "$dir"/fuzz/fuzz-*; do
                                [ -f "$f" ] && [ -x "$f" ] || continue
                                name=$(basename "$f")
                                corpus=$TMPDIR/corpus-$name
                                mkdir -p "$corpus"
                                cp -r "$src/fuzz/corpus/${name#fuzz-}/." "$corpus/" 2>/dev/null
                                if step "$name (${fuzz_seconds}s)" "$f" -max_total_time="$fuzz_seconds" \
                                        -print_final_stats=1 "$corpus" >"$TMPDIR/$name.log" 2>&1; then
                                        passed=$((passed + 1)); else failed=$((failed + 1)); fi
                                grep -E "stat::number_of_executed_units|ERROR|SUMMARY" "$TMPDIR/$name.log"
                        done
                else
                        failed=$((failed + 1))
                fi
        else
                cat "$out.fuzz.setup.log"; failed=$((failed + 1))
        fi
else
        echo "clang is not installed: fuzz targets not run"; failed=$((failed + 1))
fi

if step "nothing left behind" tests/check-leftovers.sh; then
        passed=$((passed + 1)); else failed=$((failed + 1)); fi

echo "whole run: $SECONDS s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
