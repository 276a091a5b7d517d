#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Run the unit and integration test executables under valgrind memcheck and report, per test:
# memcheck errors, bytes definitely / indirectly / possibly lost, and the test's own result.
#
#   scripts/valgrind.sh [BUILD_DIR] [MESON_TEST_ARGS...]
#
# BUILD_DIR defaults to build-valgrind in the source tree, set up (plain, no sanitizers:
# valgrind and ASan do not mix) if it does not exist. MESON_TEST_ARGS replace the default test
# selection (--suite unit --suite integration), e.g. `scripts/valgrind.sh build-vg dm`.
#
# Each test runs as
#   valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite
#            --error-exitcode=1 --trace-children=no --child-silent-after-fork=yes
# so what it execs (QEMU, the fake QMP server, spawn-probe) is not traced, and a forked child
# that has not exec'd yet reports nothing. Under valgrind everything runs 10-50x slower: a test
# may then fail on a deadline of its own (meson's timeouts are multiplied by 10). Such a
# failure, without memcheck errors, is reported as "test failed (not memcheck)".
# Exit status: 0 when memcheck found no error in any test, 1 when it did, 2 on a setup error.
set -u
cd "$(dirname "$0")/.."
src=$PWD
build=${1:-$src/build-valgrind}
[ $# -gt 0 ] && shift
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }
if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" -Dtests=true >/dev/null || exit 2
fi
sanitize=$(meson introspect --buildoptions "$build" | python3 -c '
import json, sys
print([o for o in json.load(sys.stdin) if o["name"] == "b_sanitize"][0]["value"])')
if [ "$sanitize" != none ]; then
        echo "$build is built with -Db_sanitize=$sanitize; valgrind needs a plain build" >&2
        exit 2
fi
ninja -C "$build" >/dev/null || { ninja -C "$build" | tail -20; exit 2; }

out=$(mktemp -d "${TMPDIR:-/tmp}/qdm-valgrind.XXXXXX")
wrapper="valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite"
wrapper+=" --error-exitcode=1 --trace-children=no --child-silent-after-fork=yes"
wrapper+=" --num-callers=30 --log-file=$out/vg.%p.log"
selection=("$@")
[ ${#selection[@]} -eq 0 ] && selection=(--suite unit --suite integration)

echo "valgrind: running ${selection[*]} in $build under memcheck (logs in $out)"
start=$(date +%s)
meson test -C "$build" --wrapper "$wrapper" --timeout-multiplier 10 --num-processes 1 \
        "${selection[@]}" >"$out/meson.log" 2>&1
echo "valgrind: done in $(($(date +%s) - start)) s"

# One valgrind log per process: the test executable's own is the one whose command is it.
# meson names its log after the wrapper: testlog-valgrind.json.
testlog=$(ls -t "$build"/meson-logs/testlog*.json 2>/dev/null | head -1)
python3 - "$out" "$testlog" <<'PY'
import glob, json, os, re, sys
out, testlog = sys.argv[1], sys.argv[2]
results = {}
for line in open(testlog):
    r = json.loads(line)
    cmd = r.get('command') or []
    exe = next((c for c in cmd if not c.startswith('-') and os.path.basename(c).startswith(
        ('test-', 'fuzz-')) and '/' in c), cmd[-1] if cmd else '?')
    results[os.path.realpath(exe)] = (r['name'].split(' / ')[-1], r['result'], r['duration'])
rows = {}
bad = 0
for log in sorted(glob.glob(os.path.join(out, 'vg.*.log'))):
    text = open(log, errors='replace').read()
    m = re.search(r'==\d+== Command: (\S+)', text)
    if not m:
        continue
    exe = os.path.realpath(m.group(1))
    def num(pat):
        mm = re.search(pat, text)
        return int(mm.group(1).replace(',', '')) if mm else 0
    errors = num(r'ERROR SUMMARY: ([\d,]+) errors')
    # Valgrind 3.19 (Debian 12) does not know pidfd_open (434) and fails it with ENOSYS: whatever
    # spawns a process through libqdm then fails as a test, not as memcheck.
    nosys = set(re.findall(r'unhandled amd64-linux syscall: (\d+)', text))
    definite = num(r'definitely lost: ([\d,]+) bytes')
    indirect = num(r'indirectly lost: ([\d,]+) bytes')
    possible = num(r'possibly lost: ([\d,]+) bytes')
    name, result, dur = results.get(exe, (os.path.basename(exe), '?', 0))
    prev = rows.get(name)
    if prev:  # several processes of one test: add up
        errors += prev[0]; definite += prev[1]; indirect += prev[2]; possible += prev[3]
        nosys |= prev[7]
    rows[name] = (errors, definite, indirect, possible, result, dur, log, nosys)
print(f'{"test":<24} {"result":<8} {"seconds":>8} {"errors":>7} {"definite":>9} '
      f'{"indirect":>9} {"possible":>9}  verdict')
for name in sorted(rows):
    errors, definite, indirect, possible, result, dur, log, nosys = rows[name]
    note = (f'; valgrind lacks syscall {",".join(sorted(nosys))} (pidfd_open), so the test '
            f'fails, and its failed assertions skip their frees' if nosys else '')
    if errors:
        verdict = f'MEMCHECK ERRORS (see {log}){note}'
        bad += 1
    elif result not in ('OK', 'EXPECTEDFAIL', 'SKIP'):
        verdict = f'test failed (not memcheck): see meson.log{note}'
    else:
        verdict = 'clean'
    print(f'{name:<24} {result:<8} {dur:8.1f} {errors:7d} {definite:9d} {indirect:9d} '
          f'{possible:9d}  {verdict}')
missing = sorted(n for n, _, _ in results.values() if n not in rows)
if missing:
    print('no valgrind log for: ' + ', '.join(missing))
print(f'valgrind: {bad} test(s) with memcheck errors')
sys.exit(1 if bad else 0)
PY
