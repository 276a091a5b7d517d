#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
Hostile input: the corpus under tests/reliability/hostile/ run through `qdm`.

    hostile.py [--only SUBSTRING] [--known-bugs include|exclude|only]

- hostile/config/*: bad configuration files, one problem each (every key and type, smuggling
  through commas, names escaping the run directory, every way extra_args could weaken the
  restriction), with the words each error message must contain in hostile/expect.tsv.
- generated here, too large to keep in the tree: a 1 MiB+ document, 100000 levels of nesting,
  50000 members in one object, a 1 MiB name, 200000 \\u escapes.
- hostile/cmdlines.tsv: bad command lines.
- hostile/known-bugs.tsv: the cases that fail because of reported bugs in src/;
  --known-bugs exclude|only selects around them.

Each must make `qdm create CONFIG` (or the command line) exit 2 with a message that names the
problem, within 5 s; start nothing: QEMU is looked up on PATH, where a tripwire
qemu-system-x86_64 records any start (and then fails, so an accepted configuration never
reaches a real QEMU), and no supervisor of our run directory may appear; and leave nothing:
the run directory (which exists, with a sentinel file) is byte-for-byte unchanged, and a run
directory that did not exist is not created.
"""

import argparse
import json
import os
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relsupport as rs  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, 'hostile')


def snapshot(path):
    """Everything about a directory tree that a run could change."""
    if not os.path.lexists(path):
        return None
    out = {}
    for root, dirs, files in os.walk(path):
        for n in sorted(dirs + files):
            p = os.path.join(root, n)
            st = os.lstat(p)
            data = None
            if stat.S_ISREG(st.st_mode):
                with open(p, 'rb') as f:
                    data = f.read()
            out[os.path.relpath(p, path)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size,
                                             st.st_mtime_ns, data)
    st = os.lstat(path)
    out['.'] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
    return out


def generated(env):
    """The bombs: (label, path, words)."""
    big = env.write('{"name": "h", "append": "' + 'a' * (1024 * 1024) + '"}')
    deep = env.write('{"name": "h", "extra_args": ' + '[' * 100000 + ']' * 100000 + '}')
    wide = env.write('{' + ', '.join(f'"k{i}": {i}' for i in range(50000)) + '}')
    long_name = env.write('{"name": "' + 'n' * (1024 * 1024 - 64) + '"}')
    escapes = env.write('{"name": "h", "kernel": "/etc/hostname", "append": "' +
                        '\\u0041' * 150000 + '"}')
    return [
        ('gen: size bomb (1 MiB + 30 bytes)', big, 'larger than 1048576 bytes'),
        ('gen: nesting bomb (100000 deep)', deep, 'nested deeper than 32'),
        ('gen: member bomb (50000 keys)', wide, 'more than 64 keys in one object'),
        ('gen: 1 MiB name', long_name, 'name: must be at most 64 bytes long'),
        ('gen: 150000 escapes in append', escapes, 'append: must be at most 4096 bytes long'),
    ]


class Runner:
    def __init__(self, env):
        self.env = env
        self.trip_dir = os.path.join(env.tmp, 'trip')
        os.mkdir(self.trip_dir, 0o700)
        self.trip_log = os.path.join(env.tmp, 'tripwire.log')
        trip = os.path.join(self.trip_dir, 'qemu-system-x86_64')
        with open(trip, 'w') as f:
            f.write(f'#!/bin/sh\necho "$$ $*" >> {self.trip_log}\n'
                    'echo "tripwire: qdm started QEMU for a configuration it should refuse" >&2\n'
                    'exit 1\n')
        os.chmod(trip, 0o755)
        self.env_vars = dict(os.environ, PATH=f'{self.trip_dir}:/usr/sbin:/usr/bin:/sbin:/bin')
        # An existing run directory with something in it, and one that must stay absent.
        os.makedirs(env.run_dir, mode=0o700)
        with open(os.path.join(env.run_dir, 'sentinel'), 'w') as f:
            f.write('not a device model\n')
        self.absent = os.path.join(env.tmp, 'absent-run')
        self.case = rs.Case('hostile')

    def tripped(self):
        try:
            with open(self.trip_log) as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def run(self, label, argv, words, run_dir=None, fds_before=None):
        env = self.env
        rd = run_dir or env.run_dir
        before = snapshot(rd)
        absent_before = os.path.lexists(self.absent)
        fds = rs.fd_count()
        t0 = time.monotonic()
        try:
            r = subprocess.run([rs.QDM, '--run-dir', rd] + argv, stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=5, env=self.env_vars)
            took = time.monotonic() - t0
        except subprocess.TimeoutExpired:
            self.case.fail(f'{label}: no answer within 5 s (hangs): qdm {" ".join(argv)[:200]}')
            self.case.outcome('hang')
            self.case.runs += 1
            return
        self.case.latency.append(took)
        err = r.stderr.decode(errors='replace')
        problems = []
        if r.returncode != 2:
            problems.append(f'exit {r.returncode}, expected 2')
        if words.lower() not in err.lower():
            problems.append(f'the message lacks "{words}"')
        if r.stdout:
            problems.append(f'wrote to stdout: {r.stdout[:100]!r}')
        trip = self.tripped()
        if trip:
            problems.append('QEMU was started (the tripwire ran)')
            os.unlink(self.trip_log)
        sup = rs.processes_naming(rd)
        if sup:
            problems.append('a process of our run directory runs: ' + '; '.join(sup))
        if snapshot(rd) != before:
            problems.append(f'{rd} changed')
        if not absent_before and os.path.lexists(self.absent):
            problems.append(f'{self.absent} was created')
        if rs.fd_count() != fds:
            problems.append('fd leak in the test')
        if problems:
            self.case.fail(f'{label}: ' + '; '.join(problems) + f' -- stderr: {err.strip()[:300]}')
            self.case.outcome('accepted' if r.returncode != 2 else 'bad message')
            # Whatever it started or left must go before the next case.
            self.env.destroy_all()
            if not os.path.exists(os.path.join(rd, 'sentinel')):
                os.makedirs(rd, mode=0o700, exist_ok=True)
                with open(os.path.join(rd, 'sentinel'), 'w') as f:
                    f.write('not a device model\n')
        else:
            self.case.outcome('refused, exit 2')
        self.case.runs += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--only', default='')
    ap.add_argument('--known-bugs', choices=['include', 'exclude', 'only'], default='include',
                    help='the cases hostile/known-bugs.tsv lists: run them too, skip them, or '
                         'run only them')
    args = ap.parse_args()
    with open(os.path.join(CORPUS, 'known-bugs.tsv')) as f:
        known = [ln.split('\t', 1)[0] for ln in f if ln.strip() and not ln.startswith('#')]

    def wanted(label):
        if args.only not in label:
            return False
        bug = any(label.startswith(k) for k in known)
        return args.known_bugs == 'include' or (bug == (args.known_bugs == 'only'))
    if not os.access(rs.QDM, os.X_OK):
        print(f'{rs.QDM} is not built')
        return 1
    env = rs.Env('hostile')
    try:
        run = Runner(env)
        with open(os.path.join(CORPUS, 'expect.tsv')) as f:
            expect = [ln.rstrip('\n').split('\t', 1) for ln in f
                      if ln.strip() and not ln.startswith('#')]
        files = sorted(os.listdir(os.path.join(CORPUS, 'config')))
        listed = {e[0] for e in expect}
        for fname in files:
            if fname not in listed:
                run.case.fail(f'{fname} has no line in expect.tsv')
        n_files = 0
        for fname, words in expect:
            if not wanted(f'config/{fname}'):
                continue
            path = os.path.join(CORPUS, 'config', fname)
            n_files += 1
            run.run(f'config/{fname}', ['create', path], words)
            # The same with the run directory absent: it must not be created.
            if n_files % 10 == 1:
                run.run(f'config/{fname} (no run dir)', ['create', path], words,
                        run_dir=run.absent)
        n_gen = 0
        for label, path, words in generated(env):
            if not wanted(label):
                continue
            n_gen += 1
            run.run(label, ['create', path], words)
        good = env.config('good')
        fifo = os.path.join(env.tmp, 'fifo')
        os.mkfifo(fifo, 0o600)
        subs = {'@GOOD@': good, '@FIFO@': fifo, '@DIR@': env.cfg_dir,
                '@NOSOCK@': os.path.join(env.tmp, 'no.sock'),
                '@LONG@': os.path.join(env.tmp, 'l' * max(1, 90 - len(env.tmp))),
                '@DEEP@': '[' * 100000}
        n_cmd = 0
        with open(os.path.join(CORPUS, 'cmdlines.tsv')) as f:
            for ln in f:
                if not ln.strip() or ln.startswith('#'):
                    continue
                a, words = ln.rstrip('\n').split('\t', 1)
                argv = [subs.get(x, x) for x in json.loads(a)]
                label = 'cmdline ' + ' '.join(json.loads(a))[:80]
                if not wanted(label):
                    continue
                n_cmd += 1
                run.run(label, argv, words)
        c = run.case
        print(f'hostile: {n_files} configuration files, {n_gen} generated bombs, {n_cmd} command '
              f'lines ({c.runs} runs with the extra absent-run-dir checks)')
        print(c.line(), flush=True)
        os.unlink(os.path.join(env.run_dir, 'sentinel'))
        left = env.wait_clean()
        if left:
            c.fail('left behind: ' + ' | '.join(left))
            c.leaks += 1
        failed = c.failures
    finally:
        env.cleanup()
    print(f'hostile: {"FAILED" if failed else "ok"} ({failed} failed checks)')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
