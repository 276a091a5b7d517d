#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
Load: many device models alive at once, each driven by its own stream of CLI calls, plus a
libqdm client process, plus bursts of concurrent callers on one device model.

    load.py [--dms 32] [--seconds 5] [--burst 64] [--rounds N]

1. `qdm create --paused` DMS device models (restrict mode "qemu", machine "none"), 8 at once.
2. For SECONDS: one thread per device model runs, in a loop, `qdm qmp NAME query-status`,
   `qdm status --json NAME`, `qdm resume`/`qdm pause` (alternately), `qdm qmp NAME
   query-name`; every answer is checked against the run state that thread last set (only it
   changes its device model's run state). Meanwhile load-client (libqdm) takes each device
   model's lock in turn and asks query-name and query-status. And ROUNDS times, BURST callers
   start at once on the first device model (`qdm qmp` query-name / query-status /
   query-version, mixed), on top of its own stream.
3. Every call must be answered (exit 0), none refused (no "busy"), none wrong. RSS of every
   supervisor and of the library client is taken before and after the load.
4. `qdm destroy` all of them; nothing may be left.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relsupport as rs  # noqa: E402

LOAD_CLIENT = os.path.join(rs.BUILD_DIR, 'tests', 'reliability', 'load-client')
EXPECT_STATE = {'prelaunch': 'ready', 'running': 'running', 'paused': 'paused'}


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.calls = self.failed = self.refused = self.wrong = 0
        self.durations = []
        self.examples = []

    def add(self, took, problem=None, kind='failed'):
        with self.lock:
            self.calls += 1
            self.durations.append(took)
            if problem:
                setattr(self, kind, getattr(self, kind) + 1)
                if len(self.examples) < 10:
                    self.examples.append(problem)


def timed(env, *args):
    t0 = time.monotonic()
    r = env.qdm(*args, timeout=120)
    return r, time.monotonic() - t0


def check(tally, r, took, what, ok, got):
    if r.returncode != 0:
        kind = 'refused' if 'busy' in r.stderr else 'failed'
        tally.add(took, f'{what}: exit {r.returncode}: {r.stderr.strip()[:200]}', kind)
    elif not ok:
        tally.add(took, f'{what}: wrong answer {got!r}', 'wrong')
    else:
        tally.add(took)


def stream(env, name, until, tally):
    expected = 'prelaunch'
    step = 0
    while time.monotonic() < until:
        op = step % 4
        step += 1
        if op == 0:
            r, took = timed(env, 'qmp', name, 'query-status')
            got = json.loads(r.stdout).get('status') if r.returncode == 0 else None
            check(tally, r, took, f'{name} qmp query-status', got == expected, got)
        elif op == 1:
            r, took = timed(env, 'status', '--json', name)
            st = json.loads(r.stdout) if r.returncode == 0 else {}
            ok = (st.get('state') == EXPECT_STATE[expected] and
                  st.get('qemu_status') == expected and st.get('supervisor_alive') and
                  st.get('qemu_alive'))
            check(tally, r, took, f'{name} status', ok, st)
        elif op == 2:
            verb = 'pause' if expected == 'running' else 'resume'
            r, took = timed(env, verb, name)
            want = 'paused' if verb == 'pause' else 'running'
            check(tally, r, took, f'{name} {verb}', r.stdout == f'{name}: {want}\n', r.stdout)
            if r.returncode == 0:
                expected = want
        else:
            r, took = timed(env, 'qmp', name, 'query-name')
            got = json.loads(r.stdout) if r.returncode == 0 else None
            check(tally, r, took, f'{name} qmp query-name', got == {'name': name}, got)


def burst(env, name, n, tally):
    kinds = [('query-name', lambda v: v == {'name': name}),
             ('query-status', lambda v: v.get('status') in EXPECT_STATE),
             ('query-version', lambda v: 'qemu' in v and 'package' in v)]
    barrier = threading.Barrier(n)

    def caller(i):
        cmd, good = kinds[i % len(kinds)]
        barrier.wait()
        r, took = timed(env, 'qmp', name, cmd)
        got = json.loads(r.stdout) if r.returncode == 0 else None
        check(tally, r, took, f'burst {cmd}', r.returncode == 0 and good(got), got)
    threads = [threading.Thread(target=caller, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def pct(values, p):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--dms', type=int, default=32)
    ap.add_argument('--seconds', type=float, default=5)
    ap.add_argument('--burst', type=int, default=64)
    ap.add_argument('--rounds', type=int, default=2)
    args = ap.parse_args()
    rs.require_root_and_qemu()
    if not os.access(LOAD_CLIENT, os.X_OK):
        print(f'{LOAD_CLIENT} is not built')
        return 1
    env = rs.Env('load')
    failures = []
    fds_before = rs.fd_count()
    try:
        if rs.range_processes():
            print('FAIL: processes of the uid range before the test: ' +
                  '; '.join(rs.range_processes()))
            return 1
        names = [f'l{i:02d}' for i in range(args.dms)]
        t0 = time.monotonic()

        def create(name):
            return env.qdm('create', '--paused', env.config(name), timeout=120)
        with ThreadPoolExecutor(8) as ex:
            created = list(ex.map(create, names))
        for name, r in zip(names, created):
            if r.returncode != 0:
                failures.append(f'create {name}: {r.stderr.strip()}')
        print(f'load: created {args.dms} device models in {time.monotonic() - t0:.1f} s',
              flush=True)
        if failures:
            raise RuntimeError('; '.join(failures))
        sts = {n: env.status(n) for n in names}
        sup_pids = {n: st['supervisor_pid'] for n, st in sts.items()}
        qemu_pids = {n: st['qemu_pid'] for n, st in sts.items()}
        uids = {st['uid'] for st in sts.values()}
        if len(uids) != args.dms:
            failures.append(f'{args.dms} device models share {len(uids)} uids')
        rss_sup_start = {n: rs.rss_kib(p) for n, p in sup_pids.items()}

        tally = Tally()
        burst_tally = Tally()
        until = time.monotonic() + args.seconds
        lc = subprocess.Popen([LOAD_CLIENT, '--run-dir', env.run_dir, '--seconds',
                               str(args.seconds)] + names, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        streams = [threading.Thread(target=stream, args=(env, n, until, tally)) for n in names]
        for t in streams:
            t.start()
        # The bursts, spread over the period.
        for i in range(args.rounds):
            time.sleep(max(0.0, args.seconds / (args.rounds + 1) - 0.1))
            burst(env, names[0], args.burst, burst_tally)
        for t in streams:
            t.join()
        lc_out, _ = lc.communicate(timeout=120)
        elapsed = args.seconds
        rss_sup_end = {n: rs.rss_kib(p) for n, p in sup_pids.items()}
        lc_line = [ln for ln in lc_out.splitlines() if ln.startswith('load-client:')]
        lc_fields = {}
        if lc_line:
            parts = lc_line[-1].split()[1:]
            lc_fields = {parts[i]: parts[i + 1] for i in range(0, len(parts) - 1, 2)}
        if lc.returncode != 0:
            failures.append('load-client: ' + lc_out.strip()[-600:])

        # Every device model is still as its stream left it, and alive.
        for n in names:
            if not rs.proc_alive(qemu_pids[n]) or not rs.proc_alive(sup_pids[n]):
                failures.append(f'{n}: QEMU or its supervisor died under load')

        for t, label in ((tally, 'streams'), (burst_tally, 'bursts')):
            d = t.durations
            print(f'load: {label}: {t.calls} CLI calls, failed {t.failed}, refused {t.refused}, '
                  f'wrong {t.wrong}; per call median {statistics.median(d) * 1000 if d else 0:.1f}'
                  f' ms, p99 {pct(d, 0.99) * 1000:.1f} ms, max {max(d) * 1000 if d else 0:.1f} ms',
                  flush=True)
            if t.failed or t.refused or t.wrong:
                failures.append(f'{label}: ' + ' | '.join(t.examples))
        rate = tally.calls / elapsed
        print(f'load: {args.dms} device models for {args.seconds:g} s: {rate:.0f} CLI calls/s '
              f'from the streams; {args.rounds} bursts of {args.burst} concurrent callers on '
              f'{names[0]}', flush=True)
        print(f'load: library client: {lc_fields.get("calls", "?")} QMP calls, failed '
              f'{lc_fields.get("failed", "?")}, wrong {lc_fields.get("wrong", "?")}; RSS '
              f'{lc_fields.get("rss_kib_first", "?")} KiB at exec, '
              f'{lc_fields.get("rss_kib_start", "?")} KiB after its first round, '
              f'{lc_fields.get("rss_kib_end", "?")} KiB at the end; fds '
              f'{lc_fields.get("fds_start", "?")} -> {lc_fields.get("fds_end", "?")}', flush=True)
        s0, s1 = list(rss_sup_start.values()), list(rss_sup_end.values())
        if None in s0 or None in s1:
            failures.append('a supervisor vanished during the load')
        else:
            grew = [(n, rss_sup_start[n], rss_sup_end[n]) for n in names
                    if rss_sup_end[n] - rss_sup_start[n] > 1024]
            print(f'load: supervisors\' RSS: at start total {sum(s0)} KiB (each '
                  f'{min(s0)}-{max(s0)} KiB), at end total {sum(s1)} KiB (each {min(s1)}-{max(s1)}'
                  f' KiB); largest growth {max(b - a for a, b in zip(s0, s1))} KiB', flush=True)
            if grew:
                failures.append(f'supervisor RSS grew by more than 1 MiB: {grew[:5]}')

        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as ex:
            destroyed = list(ex.map(lambda n: env.qdm('destroy', n, timeout=120), names))
        for n, r in zip(names, destroyed):
            if r.returncode != 0 or r.stdout != f'{n}: destroyed\n':
                failures.append(f'destroy {n}: {r.returncode} {r.stdout} {r.stderr}')
        print(f'load: destroyed them in {time.monotonic() - t0:.1f} s', flush=True)
        for n in names:
            if not rs.wait_until(lambda: not rs.proc_alive(qemu_pids[n]) and
                                 not rs.proc_alive(sup_pids[n]), timeout=3):
                failures.append(f'{n}: QEMU or supervisor survived destroy')
        left = env.wait_clean()
        if left:
            failures.append('left behind: ' + ' | '.join(left))
        if rs.fd_count() != fds_before:
            failures.append(f'{rs.fd_count()} fds open, {fds_before} before')
    except Exception as e:  # reported below, after cleaning up
        failures.append(f'{type(e).__name__}: {e}')
    finally:
        env.cleanup()
    for f in failures:
        print(f'FAIL: {f}')
    print(f'load: {"FAILED" if failures else "ok"}')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
