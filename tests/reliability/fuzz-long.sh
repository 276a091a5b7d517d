#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Long fuzzing runs: build the libFuzzer targets of fuzz/ with clang (ASan+UBSan+libFuzzer)
# and run each for a fixed time, one after another, starting from a copy of its seed corpus.
# CI runs the same targets for a few seconds each (tests/run-all.sh); this is the long run
# whose figures go into docs/RELIABILITY.md.
#
#   tests/reliability/fuzz-long.sh [SECONDS_EACH] [TARGET...]
#
# SECONDS_EACH defaults to 600 (10 min). TARGET defaults to every fuzz-* built. Environment:
#   QDM_FUZZ_BUILD   build directory (default build-fuzz-long in the source tree)
#   QDM_FUZZ_OUT     where corpora, crash files and logs go (default a new dir under $TMPDIR)
#   QDM_FUZZ_JOBS    libFuzzer -jobs/-workers (default 1: one core per target)
# Prints, per target: executions, coverage, corpus size, and OK or the crash found.
# Exit status: 0 when no target crashed, 1 otherwise, 2 on a build or usage error.
set -u
cd "$(dirname "$0")/../.."
src=$PWD
seconds=${1:-600}
shift || true
case $seconds in '' | *[!0-9]*)
        echo "usage: $0 [SECONDS_EACH] [TARGET...]" >&2; exit 2 ;;
esac
build=${QDM_FUZZ_BUILD:-$src/build-fuzz-long}
out=${QDM_FUZZ_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/qdm-fuzz-long.XXXXXX")}
jobs=${QDM_FUZZ_JOBS:-1}
mkdir -p "$out"
par=()
[ "$jobs" -gt 1 ] && par=(-jobs="$jobs" -workers="$jobs")

command -v clang >/dev/null || { echo "clang is not installed" >&2; exit 2; }
if [ ! -f "$build/build.ninja" ]; then
        CC=clang meson setup "$build" -Dfuzz=true -Dtests=false >"$out/setup.log" 2>&1 ||
                { cat "$out/setup.log" >&2; exit 2; }
fi
ninja -C "$build" >"$out/build.log" 2>&1 || { tail -50 "$out/build.log" >&2; exit 2; }

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
        for f in "$build"/fuzz/fuzz-*; do
                [ -f "$f" ] && [ -x "$f" ] && targets+=("$(basename "$f")")
        done
fi
[ ${#targets[@]} -gt 0 ] || { echo "no fuzz targets were built in $build" >&2; exit 2; }

echo "fuzzing ${targets[*]} for ${seconds}s each; output in $out"
printf '%-16s %8s %14s %10s %8s %8s  %s\n' target seconds executions exec/s cov corpus result
failed=0
for name in "${targets[@]}"; do
        bin=$build/fuzz/$name
        corpus=$out/corpus-$name
        mkdir -p "$corpus" "$out/artifacts-$name"
        cp -r "$src/fuzz/corpus/${name#fuzz-}/." "$corpus/" 2>/dev/null
        log=$out/$name.log
        start=$(date +%s)
        # libFuzzer writes fuzz-N.log into the working directory with -jobs: keep it in $out.
        (cd "$out" && rm -f fuzz-[0-9]*.log &&
                "$bin" -max_total_time="$seconds" -print_final_stats=1 "${par[@]}" \
                        -artifact_prefix="$out/artifacts-$name/" \
                        -rss_limit_mb=2048 -timeout=10 "$corpus" >"$log" 2>&1)
        rc=$?
        took=$(($(date +%s) - start))
        # With -jobs > 1 the stats are in fuzz-N.log files: add them up.
        logs=("$log")
        [ "$jobs" -gt 1 ] && logs=("$out"/fuzz-[0-9]*.log)
        execs=$(grep -h 'stat::number_of_executed_units' "${logs[@]}" 2>/dev/null |
                awk '{s += $2} END {print s + 0}')
        rate=$(grep -h 'stat::average_exec_per_sec' "${logs[@]}" 2>/dev/null |
                awk '{s += $2} END {print s + 0}')
        cov=$(grep -ho 'cov: [0-9]*' "${logs[@]}" 2>/dev/null | tail -1 | awk '{print $2}')
        units=$(find "$corpus" -type f | wc -l)
        if [ $rc -eq 0 ] && ! grep -qE 'ERROR: (libFuzzer|AddressSanitizer|UndefinedBehavior)|runtime error:' "${logs[@]}"; then
                result=OK
        else
                result="FAILED (exit $rc): $(grep -hE 'ERROR|runtime error|SUMMARY' "${logs[@]}" | head -3 | tr '\n' ' ')"
                failed=1
        fi
        printf '%-16s %8s %14s %10s %8s %8s  %s\n' "$name" "$took" "$execs" "$rate" "${cov:-?}" \
                "$units" "$result"
done
echo "logs, corpora and any crash inputs: $out"
exit $failed
