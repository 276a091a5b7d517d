#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The long versions of the reliability tests: the figures in docs/RELIABILITY.md come from here.
# The CI versions (meson suite 'reliability') run the same programs with smaller counts.
#
#   tests/reliability/soak.sh [BUILD_DIR]
#
# BUILD_DIR defaults to build-rel (set up and built if missing). Needs root, /dev/kvm (or it
# runs on TCG) and qemu-system-x86_64. Counts (environment):
#   SOAK_RUNS=50           fault runs per case and step (libqdm and CLI)
#   SOAK_WEDGE=10000       wedge cycles
#   SOAK_MISROUTE=1000     misroute runs
#   SOAK_HOSTILE=20        cycles per hostile peer mode
#   SOAK_LOAD_SECONDS=20   load period, with SOAK_LOAD_ROUNDS=5 bursts of 64 callers
# Every step prints its exact command, then its figures; the logs stay in a directory under
# $TMPDIR that is printed at the end. Exit status: 1 if any step failed (the steps that show
# known bugs fail until those are fixed; see docs/RELIABILITY.md).
set -u
cd "$(dirname "$0")/../.."
src=$PWD
build=${1:-$src/build-rel}
runs=${SOAK_RUNS:-50}
wedge=${SOAK_WEDGE:-10000}
misroute=${SOAK_MISROUTE:-1000}
hostile=${SOAK_HOSTILE:-20}
load_seconds=${SOAK_LOAD_SECONDS:-20}
load_rounds=${SOAK_LOAD_ROUNDS:-5}

if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" >/dev/null || exit 2
fi
ninja -C "$build" >/dev/null || { ninja -C "$build" | tail -20; exit 2; }
export QDM_TEST_BUILD_DIR=$build
logs=$(mktemp -d "${TMPDIR:-/tmp}/qdm-soak.XXXXXX")
# The tests' own private directories go here too; short, for UNIX socket paths.
export TMPDIR=$logs
rel=$src/tests/reliability
failed=0

step() { # name, command...
        local name=$1
        shift
        echo "=== $name"
        echo "\$ $*"
        local t0=$(date +%s)
        "$@" >"$logs/$name.log" 2>&1
        local rc=$?
        grep -vE '^(FAIL|  )' "$logs/$name.log" | grep -v '^$'
        grep -c '^FAIL' "$logs/$name.log" | sed 's/^/failure lines: /'
        grep '^FAIL' "$logs/$name.log" | head -5
        echo "--- $name: exit $rc after $(($(date +%s) - t0)) s"
        [ $rc -eq 0 ] || failed=1
}

step fault-dm "$build/tests/reliability/fault-dm" --runs "$runs" --quiet
step fault-cli python3 "$rel/fault_cli.py" --runs "$runs"
step qmp-peers "$build/tests/reliability/qmp-peers" --wedge-cycles "$wedge" \
        --misroute-runs "$misroute" --hostile-cycles "$hostile"
step load python3 "$rel/load.py" --dms 32 --seconds "$load_seconds" --rounds "$load_rounds"
step hostile python3 "$rel/hostile.py"
step rundir python3 "$rel/rundir.py"
echo "logs: $logs"
exit $failed
