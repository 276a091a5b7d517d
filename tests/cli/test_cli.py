#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
Integration tests of the `qdm` command-line tool: the built binary, driven as a user drives it,
against the real qemu-system-x86_64 (KVM when /dev/kvm is usable, TCG otherwise: accel "auto").

Every test checks what a user sees: exit codes, the words on stdout and stderr, `status` and
`list` output, and the processes themselves in /proc. After every test nothing may be left:
no device-model directory in the run directory (only the dot-directories .cache and .uids), no
process the test saw, no process of qdm's uid range that belongs to this test, and not one
more open fd in this process.

Run one class with `python3 test_cli.py LifecycleTests` (meson runs each class as its own test);
QDM_TEST_BUILD_DIR must name the build directory (meson sets it).

Uids: every configuration here uses the range 64800-64899, not the default 64000-64999. The
uid locks live in RUN_DIR/.uids, so test suites running at the same time in other run
directories (other build directories, other engineers) allocate from the default range
independently of us, and `qdm destroy` kills every process of its uid (see
RestrictTests.test_uids_unique_across_run_dirs). A private range keeps our tests and theirs
from killing each other's QEMUs. Python standard library only.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

BUILD_DIR = os.environ.get('QDM_TEST_BUILD_DIR')
QDM = os.path.join(BUILD_DIR, 'src', 'cli', 'qdm') if BUILD_DIR else None
QEMU = os.environ.get('QDM_TEST_QEMU') or shutil.which('qemu-system-x86_64') or \
    '/usr/bin/qemu-system-x86_64'

TEST_UID_MIN, TEST_UID_MAX = 64800, 64899
TEST_UID_RANGE = range(TEST_UID_MIN, TEST_UID_MAX + 1)
SUBCOMMANDS = ['create', 'status', 'list', 'resume', 'pause', 'shutdown', 'audit', 'destroy',
               'qmp', 'events', 'logs', 'version']
STATUS_KEYS = {'name': str, 'state': str, 'qemu_status': (str, type(None)), 'qemu_pid': int,
               'supervisor_pid': int, 'uid': int, 'restrict': str}

_DEFAULT = object()
# The libxl-compatible mode, where QEMU drops its privileges itself. The default is "jail",
# which runs an ELF binary only: the fake QEMUs here (shell scripts) need this one.
RESTRICT_QEMU = {'mode': 'qemu', 'uid_min': TEST_UID_MIN, 'uid_max': TEST_UID_MAX}


# ---- /proc ------------------------------------------------------------------------------------

def read_stat(pid):
    """(state, start_time) of pid from /proc/PID/stat, or None if there is no such process."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(')') + 2:].split()
    return fields[0], int(fields[19])   # field 3 (state) and field 22 (starttime)


def proc_alive(pid, start_time=None):
    """Alive and not a zombie (a zombie is dead: only its parent's bookkeeping is left)."""
    s = read_stat(pid)
    if s is None or s[0] in 'ZXx':
        return False
    return start_time is None or s[1] == start_time


def proc_status(pid):
    with open(f'/proc/{pid}/status') as f:
        return dict(line.rstrip('\n').split(':\t', 1) for line in f if ':\t' in line)


def proc_cmdline(pid):
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            return [a.decode(errors='replace') for a in f.read().split(b'\0') if a]
    except (FileNotFoundError, ProcessLookupError):
        return []


def read_text(path):
    with open(path) as f:
        return f.read()


def fd_count():
    return len(os.listdir('/proc/self/fd'))


def wait_until(predicate, timeout=3.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# ---- the base class ---------------------------------------------------------------------------

class QdmTestCase(unittest.TestCase):
    """A private run directory per class under $TMPDIR; the leftover checks after every test."""

    maxDiff = None

    @classmethod
    def setUpClass(cls):
        if not BUILD_DIR:
            raise RuntimeError('QDM_TEST_BUILD_DIR is not set (run this through meson test)')
        if not os.access(QDM, os.X_OK):
            raise RuntimeError(f'{QDM} is not an executable: build first')
        base = os.environ.get('TMPDIR') or '/tmp'
        cls.tmp = os.path.realpath(tempfile.mkdtemp(prefix='qdm-test-cli-', dir=base))
        cls.run_dir = os.path.join(cls.tmp, 'run')   # created by qdm itself
        cls.run_dir2 = os.path.join(cls.tmp, 'run2')
        # As long as a run directory may be (80): a 64-character name no longer fits a socket.
        cls.long_run_dir = os.path.join(cls.tmp, 'long-' + 'x' * max(1, 80 - len(cls.tmp) - 6))
        cls.run_dirs = [cls.run_dir, cls.run_dir2, cls.long_run_dir]
        cls.cfg_dir = os.path.join(cls.tmp, 'cfg')
        os.mkdir(cls.cfg_dir, 0o700)
        # A token no stray process of someone else carries: fake QEMUs sleep for this long.
        cls.sleep_token = f'86399.{os.getpid()}'
        cls.n_files = 0
        if len(cls.long_run_dir) > 80:
            raise RuntimeError(f'{cls.tmp}: too long a path for run directories; set TMPDIR')

    @classmethod
    def tearDownClass(cls):
        for rd in cls.run_dirs:
            cls._destroy_all(rd)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def _destroy_all(cls, run_dir):
        if not os.path.isdir(run_dir):
            return
        for name in os.listdir(run_dir):
            if not name.startswith('.'):
                subprocess.run([QDM, '--run-dir', run_dir, 'destroy', name],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
                path = os.path.join(run_dir, name)
                if os.path.lexists(path):
                    shutil.rmtree(path, ignore_errors=True)

    def setUp(self):
        self.fds_before = fd_count()
        self.seen = []   # (pid, start_time, description)

    def tearDown(self):
        problems = []
        # Processes: what the test saw, and anything of qdm's uid range that is ours.
        def leftovers():
            left = [f'{what} (pid {pid})' for pid, start, what in self.seen
                    if proc_alive(pid, start)]
            return left + self.stray_processes()
        # Killed processes take a moment to die; orphans' zombies count as dead.
        if not wait_until(lambda: not leftovers(), timeout=3.0):
            problems.append('processes left behind: ' + '; '.join(leftovers()))
        for rd in self.run_dirs:
            if os.path.isdir(rd):
                extra = sorted(set(os.listdir(rd)) - {'.cache', '.uids'})
                if extra:
                    problems.append(f'{rd} still holds {extra}')
        fds = fd_count()
        if fds != self.fds_before:
            problems.append(f'this process has {fds} fds open, {self.fds_before} before the test')
        if problems:
            # Clean up for the next test, then report.
            for rd in self.run_dirs:
                self._destroy_all(rd)
            for pid, start, _ in self.seen:
                if proc_alive(pid, start):
                    try:
                        os.kill(pid, 9)
                    except ProcessLookupError:
                        pass
            for desc in self.stray_processes():
                try:
                    os.kill(int(desc.split('pid ')[1].split(',')[0]), 9)
                except (ProcessLookupError, ValueError, IndexError):
                    pass
            self.fail('after the test: ' + ' | '.join(problems))

    def stray_processes(self):
        """Live processes that belong to this test class: any process of our private uid range
        (which lies in qdm's 64000-64999), any whose command line names our directory (QEMU's
        -chroot, supervisors' --run-dir, qdm commands), and fake QEMUs sleeping our token.
        Processes of the default range that belong to other suites running at the same time
        (other run directories) are not ours to judge."""
        found = []
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                st = proc_status(pid)
            except (FileNotFoundError, ProcessLookupError):
                continue
            if st.get('State', '').startswith(('Z', 'X')):
                continue
            if pid == os.getpid():
                continue
            uids = [int(u) for u in st.get('Uid', '').split()]
            cmd = ' '.join(proc_cmdline(pid))
            if (any(u in TEST_UID_RANGE for u in uids) or self.tmp in cmd or
                    self.sleep_token in cmd):
                found.append(f'pid {pid}, uid {uids[0] if uids else "?"}: {cmd[:160]}')
        return found

    # ---- running qdm -------------------------------------------------------------------------

    def qdm(self, *args, run_dir=_DEFAULT, env=None, timeout=60):
        argv = [QDM]
        if run_dir is _DEFAULT:
            run_dir = self.run_dir
        if run_dir is not None:
            argv += ['--run-dir', run_dir]
        argv += [str(a) for a in args]
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, env=env)

    def expect(self, r, code, stderr=(), stdout=()):
        """Exit code `code`, and each of the strings in the right stream."""
        what = (f'`{" ".join(r.args[1:])}` exited {r.returncode}, expected {code}\n'
                f'--- stdout:\n{r.stdout}--- stderr:\n{r.stderr}')
        self.assertEqual(r.returncode, code, what)
        for s in ([stderr] if isinstance(stderr, str) else stderr):
            self.assertIn(s, r.stderr, what)
        for s in ([stdout] if isinstance(stdout, str) else stdout):
            self.assertIn(s, r.stdout, what)
        return r

    def write(self, text, suffix='.json', mode=0o600):
        type(self).n_files += 1
        path = os.path.join(self.cfg_dir, f'f{self.n_files}{suffix}')
        with open(path, 'w') as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def config(self, name, **fields):
        doc = {'name': name, 'accel': 'auto',
               'restrict': {'uid_min': TEST_UID_MIN, 'uid_max': TEST_UID_MAX}}
        doc.update(fields)
        return self.write(json.dumps(doc))

    def script(self, body, probe_passes=False):
        """An executable fake QEMU. Its pid goes to a file of its own, so the test can check
        it is gone; it runs with an empty environment. With probe_passes, qdm's capability
        probe (a throwaway QEMU on a socketpair monitor) runs the real QEMU instead."""
        pidfile = self.write('', suffix='.pid')
        probe = f'case "$*" in *id=probe*) exec {QEMU} "$@";; esac\n' if probe_passes else ''
        path = self.write(f'#!/bin/sh\n{probe}echo $$ > {pidfile}\n{body}\n', suffix='.sh',
                          mode=0o755)
        return path, pidfile

    def track(self, pid, what):
        s = read_stat(pid)
        if s is not None:
            self.seen.append((pid, s[1], what))

    def status(self, name, run_dir=_DEFAULT):
        r = self.expect(self.qdm('status', '--json', name, run_dir=run_dir), 0)
        return json.loads(r.stdout)

    def create(self, name, paused=True, run_dir=_DEFAULT, **fields):
        cfg = self.config(name, **fields)
        r = self.qdm('create', *(['--paused'] if paused else []), cfg, run_dir=run_dir)
        self.expect(r, 0)
        self.assertRegex(r.stdout, r'^' + re.escape(name) + r': ready in [0-9.]+ ms, ' +
                         ('paused' if paused else 'running') + r'\n$')
        st = self.status(name, run_dir=run_dir)
        self.track(st['qemu_pid'], f'QEMU of {name}')
        self.track(st['supervisor_pid'], f'supervisor of {name}')
        return st

    def destroy(self, name, run_dir=_DEFAULT):
        st = None
        if os.path.exists(os.path.join(self.run_dir if run_dir is _DEFAULT else run_dir,
                                       name, 'state.json')):
            st = self.status(name, run_dir=run_dir)
        self.expect(self.qdm('destroy', name, run_dir=run_dir), 0, stdout=f'{name}: destroyed')
        rd = self.run_dir if run_dir is _DEFAULT else run_dir
        self.assertFalse(os.path.lexists(os.path.join(rd, name)),
                         f'destroy left {rd}/{name} behind')
        if st:
            # destroy returns once they are dead, not some time later
            self.assertFalse(proc_alive(st['qemu_pid']), 'QEMU survived destroy')
            self.assertFalse(proc_alive(st['supervisor_pid']), 'the supervisor survived destroy')
        self.expect(self.qdm('status', name, run_dir=run_dir), 1,
                    stderr=f'no device model named "{name}"')

    def run_parallel(self, calls, timeout=60):
        """calls: list of (args, run_dir). All start together; returns their results."""
        results = [None] * len(calls)
        barrier = threading.Barrier(len(calls))

        def worker(i):
            args, rd = calls[i]
            try:
                barrier.wait()
                results[i] = self.qdm(*args, run_dir=rd, timeout=timeout)
            except Exception as e:  # reported by the caller
                results[i] = e
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in results:
            if isinstance(r, Exception):
                raise r
        return results

    def events(self, name):
        r = self.expect(self.qdm('events', name), 0)
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


# ---- the lifecycle ----------------------------------------------------------------------------

class LifecycleTests(QdmTestCase):

    def test_paused_resume_pause_shutdown_destroy(self):
        st = self.create('life', paused=True)
        self.assertEqual((st['state'], st['qemu_status']), ('ready', 'prelaunch'))
        self.assertTrue(st['qemu_alive'] and st['supervisor_alive'], st)
        r = self.expect(self.qdm('status', 'life'), 0)
        self.assertRegex(r.stdout, r'(?m)^state:\s+ready$')
        self.assertRegex(r.stdout, r'(?m)^qemu status:\s+prelaunch$')

        self.expect(self.qdm('resume', 'life'), 0, stdout='life: running')
        st = self.status('life')
        self.assertEqual((st['state'], st['qemu_status']), ('running', 'running'))

        self.expect(self.qdm('pause', 'life'), 0, stdout='life: paused')
        st = self.status('life')
        self.assertEqual((st['state'], st['qemu_status']), ('paused', 'paused'))
        qemu = st['qemu_pid']

        # A paused guest cannot power itself off (and machine "none" has no ACPI anyway):
        # refused without --force; with --force, QEMU is killed at once, without waiting.
        self.expect(self.qdm('shutdown', 'life'), 1,
                    stderr='life: the guest is paused and cannot power itself off (resume it '
                           'first, or use --force to kill it)')
        self.assertTrue(proc_alive(qemu), 'a refused shutdown killed QEMU')
        self.assertEqual(self.status('life')['qemu_status'], 'paused')
        t0 = time.monotonic()
        r = self.expect(self.qdm('shutdown', '--force', 'life'), 0)
        self.assertEqual(r.stdout, 'life: the guest was paused; killed QEMU\n')
        self.assertLess(time.monotonic() - t0, 5, 'shutdown --force waited for a paused guest')
        self.assertFalse(proc_alive(qemu), 'shutdown --force returned with QEMU alive')

        st = self.status('life')
        self.assertEqual(st['state'], 'exited', st)
        self.assertIsNone(st['qemu_status'])
        self.assertFalse(st['qemu_alive'])
        # The supervisor records how it ended.
        st = wait_until(lambda: (lambda s: s if 'exit_signal' in s else None)(
            self.status('life')), timeout=3) or self.status('life')
        self.assertEqual(st.get('exit_signal'), 9, st)
        r = self.expect(self.qdm('status', 'life'), 0)
        self.assertRegex(r.stdout, r'(?m)^state:\s+exited$')
        self.assertRegex(r.stdout, r'(?m)^ended:\s+killed by signal 9$')
        self.destroy('life')

    def test_create_without_paused_runs(self):
        st = self.create('run1', paused=False)
        self.assertEqual((st['state'], st['qemu_status']), ('running', 'running'))
        self.destroy('run1')

    def test_shutdown_of_a_running_guest_without_acpi(self):
        # machine "none" has no ACPI: a running guest never powers off.
        st = self.create('noacpi', paused=False)
        t0 = time.monotonic()
        self.expect(self.qdm('shutdown', '--timeout', '1', 'noacpi'), 1,
                    stderr='noacpi: the guest did not power off within 1 s (use --force to '
                           'kill it)')
        self.assertLess(time.monotonic() - t0, 5)
        self.assertTrue(proc_alive(st['qemu_pid']), 'shutdown without --force killed QEMU')
        self.assertEqual(self.status('noacpi')['qemu_status'], 'running')
        t0 = time.monotonic()
        r = self.expect(self.qdm('shutdown', '--force', '--timeout', '1', 'noacpi'), 0)
        self.assertEqual(r.stdout, 'noacpi: the guest did not power off within 1 s; '
                                   'killed QEMU\n')
        self.assertLess(time.monotonic() - t0, 5)
        self.assertFalse(proc_alive(st['qemu_pid']))
        self.assertEqual(self.status('noacpi')['state'], 'exited')
        self.destroy('noacpi')

    def test_shutdown_of_a_guest_that_never_ran(self):
        st = self.create('never', paused=True)
        t0 = time.monotonic()
        self.expect(self.qdm('shutdown', 'never'), 0, stdout='never: shut down')
        self.assertLess(time.monotonic() - t0, 5, 'a prelaunch guest must be quit at once')
        self.assertFalse(proc_alive(st['qemu_pid']))
        st = wait_until(lambda: (lambda s: s if 'exit_code' in s else None)(
            self.status('never')), timeout=3) or self.status('never')
        self.assertEqual((st['state'], st.get('exit_code')), ('exited', 0), st)
        self.expect(self.qdm('resume', 'never'), 1, stderr='never')
        self.destroy('never')

    def test_events_after_resume(self):
        self.create('ev', paused=True)
        self.expect(self.qdm('resume', 'ev'), 0)
        now = time.time()
        # The supervisor's event monitor is a second connection: allow it a moment.
        evs = wait_until(lambda: [e for e in self.events('ev') if e.get('event') == 'RESUME'],
                         timeout=3)
        self.assertTrue(evs, 'no RESUME in `qdm events`: ' + self.qdm('events', 'ev').stdout)
        for line in self.qdm('events', 'ev').stdout.splitlines():
            e = json.loads(line)   # every line is one JSON object
            self.assertEqual(set(e), {'timestamp', 'event', 'data'}, line)
            self.assertIsInstance(e['timestamp'], (int, float))
            self.assertIsInstance(e['event'], str)
            self.assertIsInstance(e['data'], dict)
        self.assertLess(abs(evs[0]['timestamp'] - now), 300, evs[0])
        self.assertEqual(evs[0]['data'], {})
        self.destroy('ev')

    def test_events_follow_sees_stop_and_ends_on_destroy(self):
        self.create('fol', paused=False)
        out = self.write('', suffix='.out')
        with open(out, 'w') as f:
            p = subprocess.Popen([QDM, '--run-dir', self.run_dir, 'events', '--follow', 'fol'],
                                 stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
        try:
            self.track(p.pid, 'qdm events --follow')
            self.expect(self.qdm('pause', 'fol'), 0)
            got = wait_until(lambda: '"STOP"' in read_text(out), timeout=3)
            self.assertTrue(got, 'events --follow did not print STOP: ' + read_text(out))
            self.destroy('fol')
            self.assertEqual(p.wait(timeout=5), 0, read_text(out))
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()

    def test_logs_hold_qemu_stderr(self):
        # An unknown -global class makes QEMU warn on stderr and carry on.
        self.create('lg', paused=True, extra_args=['-global', 'nosuchdev.prop=1'])
        words = 'global nosuchdev.prop has invalid class name'
        got = wait_until(lambda: words in self.qdm('logs', 'lg').stdout, timeout=3)
        r = self.expect(self.qdm('logs', 'lg'), 0)
        self.assertTrue(got, f'`qdm logs` does not show QEMU\'s warning: {r.stdout!r}')
        self.destroy('lg')


# ---- concurrency ------------------------------------------------------------------------------

class ConcurrencyTests(QdmTestCase):

    def check_parallel_qmp(self, n, limit):
        self.create('con', paused=True)
        t0 = time.monotonic()
        results = self.run_parallel([(['qmp', 'con', 'query-status'], _DEFAULT)] * n)
        elapsed = time.monotonic() - t0
        bad = [r for r in results if r.returncode != 0]
        self.assertFalse(bad, f'{len(bad)} of {n} failed, e.g. exit {bad[0].returncode}: '
                              f'{bad[0].stderr}' if bad else '')
        for r in results:
            reply = json.loads(r.stdout)
            self.assertEqual((reply.get('status'), reply.get('running')), ('prelaunch', False),
                             r.stdout)
        self.assertLess(elapsed, limit, f'{n} concurrent callers took {elapsed:.1f} s')
        self.destroy('con')

    def test_16_concurrent_qmp_callers(self):
        self.check_parallel_qmp(16, 10)

    def test_64_concurrent_qmp_callers(self):
        self.check_parallel_qmp(64, 20)

    def test_concurrent_callers_get_their_own_answers(self):
        # Different commands at once: a reply handed to the wrong client shows up here.
        self.create('mix', paused=False)
        kinds = [('query-status', lambda v: v.get('status') == 'running'),
                 ('query-name', lambda v: v == {'name': 'mix'}),
                 ('query-version', lambda v: 'qemu' in v and 'package' in v),
                 ('query-kvm', lambda v: set(v) == {'enabled', 'present'})]
        calls = [(['qmp', 'mix', kinds[i % 4][0]], _DEFAULT) for i in range(32)]
        results = self.run_parallel(calls)
        for i, r in enumerate(results):
            self.expect(r, 0)
            self.assertTrue(kinds[i % 4][1](json.loads(r.stdout)),
                            f'{kinds[i % 4][0]} got {r.stdout}')
        self.destroy('mix')

    def test_timed_out_callers_do_not_disturb_others(self):
        # R3: a caller whose command times out keeps its connection until the late reply has
        # come, so the next caller never receives it.
        self.create('late', paused=True)
        calls = []
        for i in range(24):
            if i % 3 == 0:
                calls.append((['qmp', '--timeout', '0.0005', 'late', 'query-qmp-schema'],
                              _DEFAULT))
            elif i % 3 == 1:
                calls.append((['qmp', 'late', 'query-status'], _DEFAULT))
            else:
                calls.append((['qmp', 'late', 'query-name'], _DEFAULT))
        results = self.run_parallel(calls)
        for (args, _), r in zip(calls, results):
            if 'query-qmp-schema' in args:
                if r.returncode == 0:   # fast enough after all
                    self.assertIsInstance(json.loads(r.stdout), list)
                else:
                    self.expect(r, 1, stderr='query-qmp-schema: no reply within 0.0005 s')
            elif 'query-status' in args:
                self.expect(r, 0)
                self.assertEqual(json.loads(r.stdout).get('status'), 'prelaunch', r.stdout)
            else:
                self.expect(r, 0)
                self.assertEqual(json.loads(r.stdout), {'name': 'late'})
        self.expect(self.qdm('qmp', 'late', 'query-status'), 0, stdout='"prelaunch"')
        self.destroy('late')

    def test_concurrent_create_of_one_name(self):
        cfg = self.config('same')
        results = self.run_parallel([(['create', '--paused', cfg], _DEFAULT)] * 4)
        ok = [r for r in results if r.returncode == 0]
        self.assertEqual(len(ok), 1, [(r.returncode, r.stdout, r.stderr) for r in results])
        for r in results:
            if r.returncode != 0:
                self.expect(r, 1, stderr='a device model named "same" already exists')
        st = self.status('same')
        self.track(st['qemu_pid'], 'QEMU of same')
        self.track(st['supervisor_pid'], 'supervisor of same')
        self.assertEqual((st['state'], st['qemu_status']), ('ready', 'prelaunch'))
        self.assertTrue(st['supervisor_alive'])
        self.expect(self.qdm('resume', 'same'), 0)
        self.destroy('same')


# ---- crashes and conflicts --------------------------------------------------------------------

class FailureTests(QdmTestCase):

    def test_supervisor_killed(self):
        st = self.create('orphan', paused=False)
        qemu, sup = st['qemu_pid'], st['supervisor_pid']
        os.kill(sup, 9)
        self.assertTrue(wait_until(lambda: not proc_alive(sup)), 'the supervisor survived SIGKILL')
        self.assertTrue(proc_alive(qemu), 'QEMU died with its supervisor')
        st = self.status('orphan')
        self.assertFalse(st['supervisor_alive'])
        self.assertTrue(st['qemu_alive'])
        self.assertEqual((st['state'], st['qemu_status']), ('running', 'running'))
        r = self.expect(self.qdm('status', 'orphan'), 0)
        self.assertRegex(r.stdout, r"(?m)^supervisor:\s+%d \(gone: QEMU runs unsupervised; "
                                   r"'qdm destroy' still works\)$" % sup)
        r = self.expect(self.qdm('list'), 0)
        row = [line.split() for line in r.stdout.splitlines()[1:] if line.split()[0] == 'orphan']
        self.assertEqual(row[0][-1], 'gone', r.stdout)
        # The control monitor still works without a supervisor.
        self.expect(self.qdm('pause', 'orphan'), 0, stdout='orphan: paused')
        self.assertEqual(self.status('orphan')['qemu_status'], 'paused')
        self.destroy('orphan')
        self.assertFalse(proc_alive(qemu))

    def test_supervisor_killed_during_start(self):
        # The supervisor dies (OOM killer, an operator's kill -9) while QEMU is starting: the
        # start fails, and either nothing is left or `qdm destroy` can remove what is.
        fake, pidfile = self.script(f'exec sleep {self.sleep_token}', probe_passes=True)
        cfg = self.config('midway', qemu=fake, restrict=RESTRICT_QEMU)
        p = subprocess.Popen([QDM, '--run-dir', self.run_dir, 'create', '--timeout', '20', cfg],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            self.assertTrue(wait_until(lambda: read_text(pidfile).strip(), timeout=10),
                            'the fake QEMU never started')
            fake_pid = int(read_text(pidfile))
            self.track(fake_pid, 'the fake QEMU of midway')
            sup = [int(e) for e in os.listdir('/proc') if e.isdigit() and
                   '__supervise' in proc_cmdline(int(e)) and
                   self.run_dir in proc_cmdline(int(e))]
            self.assertEqual(len(sup), 1, sup)
            os.kill(sup[0], 9)
            out, err = p.communicate(timeout=10)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        self.assertEqual(p.returncode, 1, err)
        self.assertIn('create midway: the supervisor killed by signal 9', err)
        left = os.path.lexists(os.path.join(self.run_dir, 'midway'))
        fake_alive = proc_alive(fake_pid)
        # The supervisor recorded the start before spawning QEMU; the record still says
        # "starting", and status must not repeat it.
        self.assertTrue(os.path.exists(os.path.join(self.run_dir, 'midway', 'state.json')))
        st = self.status('midway')
        self.assertEqual(st['state'], 'failed', st)
        self.assertIn('the supervisor died during the start', st['end_reason'])
        if left or fake_alive:
            r = self.qdm('destroy', 'midway')
            if r.returncode != 0:
                again = self.qdm('create', '--timeout', '1', cfg)
                self.fail(f'the failed create left {"its directory" if left else ""}'
                          f'{" and " if left and fake_alive else ""}'
                          f'{"QEMU (pid %d) running" % fake_pid if fake_alive else ""}, and '
                          f'`qdm destroy midway` cannot remove it: exit {r.returncode}: '
                          f'{r.stderr.strip()} (while `qdm create` says: '
                          f'{again.stderr.strip()})')
            self.assertIn('midway: ', r.stdout)
            self.assertFalse(os.path.lexists(os.path.join(self.run_dir, 'midway')))
            self.assertFalse(proc_alive(fake_pid), 'destroy left the QEMU of midway running')

    def test_destroy_during_start(self):
        # A start that hangs (QEMU never greets): `status` tells it is starting, `destroy`
        # ends it at once, and the waiting `create` fails; nothing is left.
        fake, pidfile = self.script(f'exec sleep {self.sleep_token}', probe_passes=True)
        cfg = self.config('stuck', qemu=fake, restrict=RESTRICT_QEMU)
        p = subprocess.Popen([QDM, '--run-dir', self.run_dir, 'create', '--timeout', '30', cfg],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            self.assertTrue(wait_until(lambda: read_text(pidfile).strip(), timeout=10),
                            'the fake QEMU never started')
            fake_pid = int(read_text(pidfile))
            self.track(fake_pid, 'the fake QEMU of stuck')
            self.assertTrue(wait_until(lambda: os.path.exists(
                os.path.join(self.run_dir, 'stuck', 'state.json'))))
            t0 = time.monotonic()
            st = self.qdm('status', '--json', 'stuck')
            status_took = time.monotonic() - t0
            t0 = time.monotonic()
            self.expect(self.qdm('destroy', 'stuck'), 0, stdout='stuck: destroyed')
            self.assertLess(time.monotonic() - t0, 5)
            out, err = p.communicate(timeout=10)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        self.assertEqual(p.returncode, 1, err)
        self.assertIn('create stuck: ', err)
        self.assertFalse(os.path.lexists(os.path.join(self.run_dir, 'stuck')))
        self.assertFalse(proc_alive(fake_pid), 'destroy left the fake QEMU running')
        self.expect(st, 0)
        doc = json.loads(st.stdout)
        self.assertEqual((doc['state'], doc['qemu_pid'], doc['qemu_alive']),
                         ('starting', fake_pid, True), st.stdout)
        self.assertLess(status_took, 2, f'`qdm status` of a starting device model took '
                                        f'{status_took:.1f} s; stderr: {st.stderr.strip()!r}')
        self.assertEqual(st.stderr, '')

    def test_qemu_killed_behind_qdms_back(self):
        st = self.create('victim', paused=False)
        qemu, sup = st['qemu_pid'], st['supervisor_pid']
        os.kill(qemu, 9)
        self.assertTrue(wait_until(lambda: not proc_alive(qemu)))
        st = self.status('victim')
        self.assertEqual(st['state'], 'exited', st)
        self.assertFalse(st['qemu_alive'])
        self.assertIsNone(st['qemu_status'])
        st = wait_until(lambda: (lambda s: s if 'exit_signal' in s else None)(
            self.status('victim')), timeout=3) or self.status('victim')
        self.assertEqual(st.get('exit_signal'), 9, st)
        self.assertIn('SIGKILL', st.get('end_reason', ''), st)
        # Uptime stops when QEMU ended, it does not go on counting.
        self.assertEqual(st['uptime_sec'], st['ended_at'] - st['created'], st)
        # Its supervisor has nothing left to do.
        self.assertTrue(wait_until(lambda: not proc_alive(sup), timeout=5),
                        'the supervisor outlived its QEMU')
        self.expect(self.qdm('qmp', 'victim', 'query-status'), 1, stderr='victim')
        self.expect(self.qdm('resume', 'victim'), 1, stderr='victim')
        r = self.expect(self.qdm('list'), 0)
        self.assertRegex(r.stdout, r'(?m)^victim\s+exited\s')
        self.destroy('victim')

    def test_create_with_a_name_in_use(self):
        st = self.create('taken', paused=True)
        state_file = os.path.join(self.run_dir, 'taken', 'state.json')
        with open(state_file, 'rb') as f:
            before = f.read()
        # Another configuration with the same name, which would run (no --paused).
        cfg = self.config('taken', memory_mib=64)
        r = self.expect(self.qdm('create', cfg), 1,
                        stderr='a device model named "taken" already exists')
        self.assertEqual(r.stdout, '')
        after = self.status('taken')
        for key in ('qemu_pid', 'supervisor_pid', 'uid', 'state', 'qemu_status'):
            self.assertEqual(after[key], st[key], key)
        self.assertEqual((after['state'], after['qemu_status']), ('ready', 'prelaunch'))
        self.assertTrue(after['qemu_alive'] and after['supervisor_alive'])
        with open(state_file, 'rb') as f:
            self.assertEqual(f.read(), before, 'the refused create rewrote state.json')
        self.expect(self.qdm('qmp', 'taken', 'query-status'), 0, stdout='"prelaunch"')
        self.destroy('taken')


# ---- exit codes and messages ------------------------------------------------------------------

class ExitCodeTests(QdmTestCase):

    def assert_nothing_of(self, name, pidfile=None):
        self.assertFalse(os.path.lexists(os.path.join(self.run_dir, name)),
                         f'a failed create left {self.run_dir}/{name} behind')
        if pidfile:
            text = read_text(pidfile).strip()
            if text:
                pid = int(text)
                alive = proc_alive(pid) and self.sleep_token in ' '.join(proc_cmdline(pid))
                self.assertFalse(alive, f'the fake QEMU (pid {pid}) survived the failed create')

    def test_success_is_0(self):
        self.expect(self.qdm('list'), 0)
        self.create('zero')
        self.expect(self.qdm('qmp', 'zero', 'query-status'), 0)
        self.destroy('zero')

    def test_unknown_name_is_1(self):
        fresh = os.path.join(self.tmp, 'nothing-here')
        for rd in (fresh, self.run_dir):
            if rd == self.run_dir:
                os.makedirs(rd, mode=0o700, exist_ok=True)
            for args in (['status', 'nosuch'], ['status', '--json', 'nosuch'],
                         ['resume', 'nosuch'], ['pause', 'nosuch'], ['shutdown', 'nosuch'],
                         ['destroy', 'nosuch'], ['qmp', 'nosuch', 'query-status'],
                         ['events', 'nosuch'], ['logs', 'nosuch'], ['audit', 'nosuch']):
                r = self.expect(self.qdm(*args, run_dir=rd), 1,
                                stderr='no device model named "nosuch"')
                self.assertEqual(r.stdout, '', args)
        self.assertFalse(os.path.exists(fresh), 'a lookup created the run directory')

    def test_qmp_error_is_1(self):
        self.create('qe')
        self.expect(self.qdm('qmp', 'qe', 'no-such-command'), 1,
                    stderr=['CommandNotFound', 'no-such-command'])
        self.expect(self.qdm('qmp', 'qe', 'query-status'), 0)   # the monitor is still fine
        self.destroy('qe')

    def test_qemu_that_exits_at_once(self):
        t0 = time.monotonic()
        # Restricted modes accept only known-safe extra_args; an unknown one reaches QEMU
        # only with restrict.mode "none".
        r = self.expect(self.qdm('create', self.config('badopt', extra_args=['-no-such-option'],
                                                       restrict={'mode': 'none'})),
                        1, stderr=['badopt', '-no-such-option: invalid option'])
        self.assertLess(time.monotonic() - t0, 5)
        self.assertIn('status 1', r.stderr)   # how it died
        self.assert_nothing_of('badopt')

    def test_unknown_machine(self):
        self.expect(self.qdm('create', self.config('badm', machine='nosuchmachine')), 1,
                    stderr=['create badm', 'qemu-system-x86_64: unsupported machine type'])
        self.assert_nothing_of('badm')

    def test_qemu_bin_false(self):
        t0 = time.monotonic()
        self.expect(self.qdm('create', self.config('falsy', qemu='/bin/false')), 1,
                    stderr=['create falsy', '/bin/false'])
        self.assertLess(time.monotonic() - t0, 5, 'QEMU\'s death must be noticed at once')
        self.assert_nothing_of('falsy')

    def test_qemu_that_dies_on_the_probe_says_why(self):
        # A QEMU that cannot even start (here: a missing library) fails qdm's capability
        # probe. R6: the user must learn how it died, with its own words.
        fake, pidfile = self.script(
            'echo "qemu-system-x86_64: error while loading shared libraries: '
            'libqdmtest.so.1: cannot open shared object file" >&2\nexit 127')
        t0 = time.monotonic()
        r = self.expect(self.qdm('create', self.config('nolib', qemu=fake, restrict=RESTRICT_QEMU)), 1,
                        stderr='create nolib')
        self.assertLess(time.monotonic() - t0, 5)
        self.assert_nothing_of('nolib', pidfile)
        self.assertIn('libqdmtest.so.1: cannot open shared object file', r.stderr,
                      'QEMU\'s own words are missing')
        self.assertIn('127', r.stderr, 'how QEMU died (exit status 127) is missing')

    def test_qemu_that_dies_after_the_probe_says_why(self):
        # The same binary passes the probe (it runs the real QEMU for it) and then fails.
        fake, pidfile = self.script(
            'echo "fake-qemu: cannot initialise the frobnicator" >&2\nexit 3', probe_passes=True)
        t0 = time.monotonic()
        r = self.expect(self.qdm('create', self.config('late', qemu=fake, restrict=RESTRICT_QEMU)), 1,
                        stderr=['create late', 'fake-qemu: cannot initialise the frobnicator'])
        self.assertLess(time.monotonic() - t0, 5)
        self.assertIn('status 3', r.stderr)
        self.assert_nothing_of('late', pidfile)

    def test_start_deadline(self):
        # Passes the probe (real QEMU), then hangs without ever greeting.
        fake, pidfile = self.script(f'exec sleep {self.sleep_token}', probe_passes=True)
        t0 = time.monotonic()
        r = self.expect(self.qdm('create', '--timeout', '0.5', self.config('slow', qemu=fake, restrict=RESTRICT_QEMU)),
                        1, stderr=['create slow', 'not ready within 500 ms'])
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 3, f'--timeout 0.5 took {elapsed:.1f} s')
        self.assertEqual(r.stdout, '')
        self.assert_nothing_of('slow', pidfile)

    def test_start_deadline_covers_the_probe(self):
        # A binary that hangs from the start: the deadline must hold here too (the issue's
        # case: "a config whose qemu is a script that sleeps forever").
        fake, pidfile = self.script(f'exec sleep {self.sleep_token}')
        t0 = time.monotonic()
        r = self.qdm('create', '--timeout', '0.5', self.config('hang', qemu=fake, restrict=RESTRICT_QEMU))
        elapsed = time.monotonic() - t0
        self.expect(r, 1, stderr='create hang')
        self.assert_nothing_of('hang', pidfile)
        self.assertLess(elapsed, 3, f'`create --timeout 0.5` took {elapsed:.1f} s; '
                                    f'stderr: {r.stderr.strip()}')

    def test_name_too_long_for_the_socket_path(self):
        # Run directory (80 at most) + a 64-character name + "/qmp.sock" exceed sun_path: the
        # start must fail, leave nothing, and say what is too long.
        name = 'n' * 64
        rd = self.long_run_dir
        r = self.qdm('create', self.config(name), run_dir=rd)
        self.assertIn(r.returncode, (1, 2), r.stderr)
        self.assertFalse(os.path.lexists(os.path.join(rd, name)))
        self.assertTrue(rd in r.stderr or 'socket' in r.stderr,
                        f'the message does not say what is too long: {r.stderr.strip()!r}')

    def test_bad_usage_is_2(self):
        good = self.config('u')
        bad_json = self.write('{"name": "u",\n')
        unknown_key = self.write('{"name": "u", "bogus": 1}')
        slash = self.write('{"name": "a/b"}')
        no_qemu = self.write('{"name": "u", "qemu": "/nonexistent/qemu"}')
        missing = os.path.join(self.cfg_dir, 'missing.json')
        cases = [
            ([], 'Usage: qdm'),
            (['bogus'], "unknown command 'bogus'"),
            (['--bogus'], "unrecognized option '--bogus'"),
            (['--run-dir'], "requires an argument"),
            (['create', '--bogus', good], "unrecognized option '--bogus'"),
            (['status', '--bogus', 'u'], "unrecognized option '--bogus'"),
            (['list', '--bogus'], "unrecognized option '--bogus'"),
            (['resume', '--bogus', 'u'], "unrecognized option '--bogus'"),
            (['pause', '--bogus', 'u'], "unrecognized option '--bogus'"),
            (['shutdown', '--bogus', 'u'], "unrecognized option '--bogus'"),
            (['destroy', '--bogus', 'u'], "unrecognized option '--bogus'"),
            (['qmp', '--bogus', 'u', 'query-status'], "unrecognized option '--bogus'"),
            (['events', '--bogus', 'u'], "unrecognized option '--bogus'"),
            (['logs', '--bogus', 'u'], "unrecognized option '--bogus'"),
            (['audit', '--bogus', 'u'], "unrecognized option '--bogus'"),
            (['status', 'u', '--bogus'], "unrecognized option '--bogus'"),
            (['create', '--timeout', 'abc', good], "--timeout: 'abc'"),
            (['create', '--timeout', '0', good], "--timeout: '0'"),
            (['create', '--timeout', '-1', good], "--timeout: '-1'"),
            (['create', '--timeout', 'nan', good], "--timeout: 'nan'"),
            (['create', '--timeout', '1e400', good], "--timeout: '1e400'"),
            (['create', '--timeout', '1s', good], "--timeout: '1s'"),
            (['resume', '--timeout', 'x', 'u'], "--timeout: 'x'"),
            (['pause', '--timeout', '0', 'u'], "--timeout: '0'"),
            (['shutdown', '--timeout', '-3', 'u'], "--timeout: '-3'"),
            (['qmp', '--timeout', 'soon', 'u', 'query-status'], "--timeout: 'soon'"),
            (['qmp', '--drain-timeout', '-1', 'u', 'query-status'], "--drain-timeout: '-1'"),
            (['create'], 'expected one CONFIG.json'),
            (['create', good, good], 'expected one CONFIG.json'),
            (['create', missing], f'{missing}: No such file or directory'),
            (['create', bad_json], f'{bad_json}: document: invalid JSON'),
            (['create', unknown_key], f'{unknown_key}: bogus: unknown key'),
            (['create', slash], f'{slash}: name: must be 1-64 characters'),
            (['create', no_qemu], f'{no_qemu}: qemu: '),
            (['status'], 'status: expected NAME'),
            (['status', 'a', 'b'], 'status: expected NAME'),
            (['destroy'], 'destroy: expected NAME'),
            (['qmp', 'u'], 'qmp: expected NAME COMMAND'),
            (['qmp', 'u', 'query-status', '[1]'], 'ARGS_JSON is not a JSON object'),
            (['qmp', 'u', 'query-status', '{"a":'], 'ARGS_JSON is not a JSON object'),
            (['list', 'extra'], 'list: takes no arguments'),
            (['version', 'extra'], 'version: takes no arguments'),
        ]
        for verb in ('status', 'resume', 'pause', 'shutdown', 'destroy', 'events', 'logs',
                     'audit'):
            for name in ('a/b', '../x', '.hidden', '..'):
                cases.append(([verb, name], f"'{name}' is not a device model name"))
        cases.append((['qmp', 'a/b', 'query-status'], "'a/b' is not a device model name"))
        for args, words in cases:
            with self.subTest(args=args):
                r = self.expect(self.qdm(*args), 2, stderr=words)
                self.assertEqual(r.stdout, '', f'{args}: usage errors go to stderr')
        self.assertFalse(os.path.exists(os.path.join(self.run_dir, 'u')))

    def test_version_and_help(self):
        for args in (['version'], ['--version']):
            r = self.expect(self.qdm(*args, run_dir=None), 0)
            self.assertRegex(r.stdout, r'^qdm \d+\.\d+\.\d+\n$')
        for args in (['--help'], ['-h'], ['help']):
            r = self.expect(self.qdm(*args, run_dir=None), 0, stdout='Usage: qdm')
            for sub in SUBCOMMANDS:
                self.assertRegex(r.stdout, rf'(?m)^  {sub}\s', f'--help does not list {sub}')
        for sub in SUBCOMMANDS:
            for flag in ('--help', '-h'):
                with self.subTest(sub=sub, flag=flag):
                    r = self.expect(self.qdm(sub, flag, run_dir=None), 0,
                                    stdout=f'Usage: qdm {sub}')
                    self.assertEqual(r.stderr, '')

    def test_run_dir_from_environment(self):
        env = dict(os.environ, QDM_RUN_DIR=self.run_dir)
        cfg = self.config('envy')
        self.expect(self.qdm('create', '--paused', cfg, run_dir=None, env=env), 0,
                    stdout='envy: ready in')
        self.assertTrue(os.path.isdir(os.path.join(self.run_dir, 'envy')))
        st = self.status('envy')   # the same device model through --run-dir
        self.track(st['qemu_pid'], 'QEMU of envy')
        self.track(st['supervisor_pid'], 'supervisor of envy')
        r = self.expect(self.qdm('list', run_dir=None, env=env), 0)
        self.assertEqual([line.split()[0] for line in r.stdout.splitlines()[1:]], ['envy'])
        # --run-dir wins over the environment.
        env_other = dict(os.environ, QDM_RUN_DIR=os.path.join(self.tmp, 'elsewhere'))
        r = self.expect(self.qdm('list', env=env_other), 0)
        self.assertIn('envy', r.stdout)
        self.expect(self.qdm('destroy', 'envy', run_dir=None, env=env), 0,
                    stdout='envy: destroyed')
        self.assertFalse(os.path.lexists(os.path.join(self.run_dir, 'envy')))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, 'elsewhere')))


# ---- output formats ---------------------------------------------------------------------------

class OutputTests(QdmTestCase):

    def check_status_keys(self, doc):
        for key, kind in STATUS_KEYS.items():
            self.assertIn(key, doc)
            self.assertIsInstance(doc[key], kind, f'{key}: {doc[key]!r}')

    def test_status_and_list_json(self):
        a = self.create('alpha', paused=True)
        b = self.create('beta', paused=False)
        self.check_status_keys(a)
        self.assertEqual(a['name'], 'alpha')
        self.assertEqual(a['restrict'], 'jail')   # the default
        self.assertGreater(a['qemu_pid'], 1)
        self.assertGreater(a['supervisor_pid'], 1)
        self.assertNotEqual(a['qemu_pid'], a['supervisor_pid'])
        self.assertEqual(b['qemu_status'], 'running')

        r = self.expect(self.qdm('list', '--json'), 0)
        docs = json.loads(r.stdout)
        self.assertIsInstance(docs, list)
        self.assertEqual([d['name'] for d in docs], ['alpha', 'beta'])
        for d, s in zip(docs, (a, b)):
            self.check_status_keys(d)
            for key in ('qemu_pid', 'supervisor_pid', 'uid', 'restrict'):
                self.assertEqual(d[key], s[key], key)
        self.assertEqual([d['state'] for d in docs], ['ready', 'running'])
        self.destroy('alpha')
        self.destroy('beta')

    def test_list_table(self):
        r = self.expect(self.qdm('list', run_dir=os.path.join(self.tmp, 'none-yet')), 0)
        self.assertEqual(r.stdout.split(), ['NAME', 'STATE', 'PID', 'UID', 'RESTRICT',
                                            'SUPERVISOR'])
        zed = self.create('zed', paused=False)
        abc = self.create('abc', paused=True)
        r = self.expect(self.qdm('list'), 0)
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 3, r.stdout)
        self.assertEqual(lines[0].split(), ['NAME', 'STATE', 'PID', 'UID', 'RESTRICT',
                                            'SUPERVISOR'])
        rows = {line.split()[0]: line.split() for line in lines[1:]}
        self.assertEqual(set(rows), {'zed', 'abc'})
        self.assertEqual(rows['zed'], ['zed', 'running', str(zed['qemu_pid']), str(zed['uid']),
                                       'jail', 'alive'])
        self.assertEqual(rows['abc'], ['abc', 'ready', str(abc['qemu_pid']), str(abc['uid']),
                                       'jail', 'alive'])
        self.destroy('zed')
        self.destroy('abc')
        r = self.expect(self.qdm('list'), 0)
        self.assertEqual(len(r.stdout.splitlines()), 1, r.stdout)

    def test_list_shows_what_it_cannot_read(self):
        # A directory with no record (a start's first moments, or a failed start's remains) is
        # listed with the reason, in both forms, and does not hide the others.
        self.create('good', paused=True)
        os.mkdir(os.path.join(self.run_dir, 'ghost'), 0o700)
        try:
            r = self.expect(self.qdm('list'), 0)
            rows = {line.split()[0]: line for line in r.stdout.splitlines()[1:]}
            self.assertEqual(set(rows), {'ghost', 'good'}, r.stdout)
            self.assertRegex(rows['ghost'], r'^ghost\s+unknown\s+no record', r.stdout)
            docs = json.loads(self.expect(self.qdm('list', '--json'), 0).stdout)
            self.assertEqual([d['name'] for d in docs], ['ghost', 'good'])
            self.assertEqual(docs[0]['state'], 'unknown')
            self.assertIn('no record', docs[0]['error'])
            self.assertEqual(docs[1]['state'], 'ready')
        finally:
            self.destroy('good')
            self.expect(self.qdm('destroy', 'ghost'), 0, stdout='ghost: removed')

    def test_options_after_the_name(self):
        st = self.create('late-opts', paused=True)
        r = self.expect(self.qdm('status', 'late-opts', '--json'), 0)
        self.assertEqual(json.loads(r.stdout)['qemu_pid'], st['qemu_pid'])
        r = self.expect(self.qdm('qmp', 'late-opts', 'query-name', '--pretty'), 0)
        self.assertEqual(json.loads(r.stdout), {'name': 'late-opts'})
        self.destroy('late-opts')

    def test_audit(self):
        st = self.create('aud', paused=False)
        r = self.expect(self.qdm('audit', 'aud', '--json'), 0)
        doc = json.loads(r.stdout)
        self.assertEqual((doc['name'], doc['qemu_pid'], doc['restrict'], doc['ok']),
                         ('aud', st['qemu_pid'], 'jail', True), r.stdout)
        items = {c['item']: c for c in doc['checks']}
        self.assertTrue(all(c['expected'] for c in doc['checks']), r.stdout)
        self.assertTrue(items['uid']['value'].startswith(f"{st['uid']}/"), items['uid'])
        r = self.expect(self.qdm('audit', 'aud'), 0, stdout=f"aud: QEMU pid {st['qemu_pid']}")
        self.assertRegex(r.stdout, r'(?m)^\d+ checks, 0 not as expected$')
        os.kill(st['qemu_pid'], 9)
        self.assertTrue(wait_until(lambda: not proc_alive(st['qemu_pid'])))
        self.expect(self.qdm('audit', 'aud'), 1, stderr='aud: QEMU is not running')
        self.destroy('aud')

    def test_qmp_pretty(self):
        self.create('pp')
        r = self.expect(self.qdm('qmp', '--pretty', 'pp', 'query-name'), 0)
        self.assertEqual(json.loads(r.stdout), {'name': 'pp'})
        self.assertGreater(len(r.stdout.splitlines()), 1, 'not indented')
        r = self.expect(self.qdm('qmp', 'pp', 'query-status'), 0)
        self.assertEqual(len(r.stdout.splitlines()), 1)
        self.destroy('pp')

    def test_qmp_socket_on_a_qemu_of_our_own(self):
        path = os.path.join(self.tmp, 'own.sock')
        err = self.write('', suffix='.log')
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            lsock.bind(path)
            lsock.listen(1)
            fd = lsock.fileno()
            with open(err, 'w') as ef:
                p = subprocess.Popen(
                    [QEMU, '-S', '-nodefaults', '-no-user-config', '-display', 'none',
                     '-machine', 'none', '-name', 'own',
                     '-chardev', f'socket,id=mon,fd={fd},server=on,wait=off',
                     '-mon', 'chardev=mon,mode=control'],
                    pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=ef, stderr=ef)
        finally:
            lsock.close()
        try:
            self.track(p.pid, 'our own QEMU')
            r = self.expect(self.qdm('qmp', '--socket', path, 'query-status', run_dir=None), 0)
            self.assertEqual(json.loads(r.stdout).get('status'), 'prelaunch')
            r = self.expect(self.qdm('qmp', '--socket', path, 'query-name', run_dir=None), 0)
            self.assertEqual(json.loads(r.stdout), {'name': 'own'})
            self.expect(self.qdm('qmp', '--socket', path, 'query-name', '{"x": 1}',
                                 run_dir=None), 1, stderr='GenericError')
            self.expect(self.qdm('qmp', '--socket', path, 'quit', run_dir=None), 0)
            self.assertEqual(p.wait(timeout=10), 0, read_text(err))
            self.expect(self.qdm('qmp', '--socket', path, 'query-status', run_dir=None), 1,
                        stderr=path)
        finally:
            if p.poll() is None:
                p.kill()
            p.wait()
            if os.path.lexists(path):
                os.unlink(path)


# ---- restriction ------------------------------------------------------------------------------

class RestrictTests(QdmTestCase):

    def check_restricted(self, name, st, run_dir):
        pid = st['qemu_pid']
        ps = proc_status(pid)
        uids = [int(x) for x in ps['Uid'].split()]
        gids = [int(x) for x in ps['Gid'].split()]
        self.assertNotEqual(st['uid'], 0)
        self.assertIn(st['uid'], TEST_UID_RANGE, 'outside the configured uid range')
        self.assertEqual(uids, [st['uid']] * 4, ps['Uid'])
        self.assertEqual(gids, [st['gid']] * 4, ps['Gid'])
        self.assertNotEqual(st['gid'], 0)
        for cap in ('CapEff', 'CapPrm', 'CapInh', 'CapAmb'):
            self.assertEqual(int(ps[cap], 16), 0, f'{cap} {ps[cap]}')
        self.assertEqual(ps['Seccomp'], '2')
        self.assertEqual(ps['NoNewPrivs'], '1')
        if st['restrict'] == 'jail':
            # Pivoted into a root of its own; the directory it was built on stays empty.
            self.assertEqual(int(ps['CapBnd'], 16), 0, ps['CapBnd'])
            self.assertEqual(os.readlink(f'/proc/{pid}/root'), '/')
            self.assertEqual(os.listdir(os.path.join(run_dir, name, 'root')), [])
            self.assertEqual(os.path.basename(proc_cmdline(pid)[0]), os.path.basename(QEMU))
        else:
            self.assertEqual(os.readlink(f'/proc/{pid}/root'),
                             os.path.join(run_dir, name, 'root'))
            self.assertEqual(os.path.realpath(f'/proc/{pid}/exe'), os.path.realpath(QEMU))

    def test_restricted_qemu(self):
        st = self.create('locked', paused=False, restrict=RESTRICT_QEMU)
        self.assertEqual(st['restrict'], 'qemu')
        self.check_restricted('locked', st, self.run_dir)
        self.destroy('locked')

    def test_default_is_jail(self):
        st = self.create('dflt', paused=False)
        self.assertEqual(st['restrict'], 'jail')
        self.check_restricted('dflt', st, self.run_dir)
        self.destroy('dflt')

    def test_two_device_models_two_uids(self):
        a = self.create('one', paused=True)
        b = self.create('two', paused=True)
        self.assertNotEqual(a['uid'], b['uid'])
        self.check_restricted('one', a, self.run_dir)
        self.check_restricted('two', b, self.run_dir)
        # destroy kills every process of its uid: only its own.
        self.destroy('one')
        self.assertTrue(proc_alive(b['qemu_pid']), 'destroying one killed the other')
        self.expect(self.qdm('qmp', 'two', 'query-status'), 0, stdout='prelaunch')
        self.destroy('two')

    def test_restrict_none_runs_as_root(self):
        st = self.create('free', paused=False, restrict={'mode': 'none'})
        self.assertEqual((st['restrict'], st['uid']), ('none', 0))
        ps = proc_status(st['qemu_pid'])
        self.assertEqual(ps['Uid'].split(), ['0'] * 4)
        self.assertEqual(ps['Seccomp'], '0')
        self.assertEqual(os.readlink(f"/proc/{st['qemu_pid']}/root"), '/')
        self.destroy('free')

    # ---- restrict.mode "jail": proven by `qdm audit` ----

    def jail(self, **extra):
        return dict({'mode': 'jail', 'uid_min': TEST_UID_MIN, 'uid_max': TEST_UID_MAX}, **extra)

    def check_jailed(self, name, st):
        """What /proc shows, and `qdm audit` exiting 0 with the jail's own items."""
        pid = st['qemu_pid']
        self.assertEqual(st['restrict'], 'jail')
        self.assertIn(st['uid'], TEST_UID_RANGE)
        ps = proc_status(pid)
        self.assertEqual([int(x) for x in ps['Uid'].split()], [st['uid']] * 4, ps['Uid'])
        for cap in ('CapEff', 'CapPrm', 'CapInh', 'CapAmb', 'CapBnd'):
            self.assertEqual(int(ps[cap], 16), 0, f'{cap} {ps[cap]}')
        self.assertEqual((ps['Seccomp'], ps['NoNewPrivs']), ('2', '1'))
        self.assertEqual(os.readlink(f'/proc/{pid}/root'), '/')
        self.assertEqual(os.listdir(os.path.join(self.run_dir, name, 'root')), [])
        r = self.expect(self.qdm('audit', name), 0, stdout=f'{name}: QEMU pid {pid}, restrict jail')
        self.assertRegex(r.stdout, r'(?m)^\d+ checks, 0 not as expected$')
        doc = json.loads(self.expect(self.qdm('audit', '--json', name), 0).stdout)
        self.assertTrue(doc['ok'], r.stdout)
        items = {c['item']: c for c in doc['checks']}
        self.assertEqual(items['CapBnd']['value'], '0000000000000000')
        self.assertTrue(items['root']['value'].startswith('/ (its own mount namespace)'),
                        items['root'])
        self.assertIn('all read-only and nosuid', items['mounts']['value'])
        for ns in ('mnt', 'ipc', 'uts'):
            self.assertTrue(items[f'ns {ns}']['value'].startswith('its own'), items[f'ns {ns}'])
        return r

    def test_jail_none_audit(self):
        st = self.create('jnone', paused=False, restrict=self.jail())
        self.check_jailed('jnone', st)
        self.destroy('jnone')

    def test_jail_q35_disk_audit(self):
        disk = self.write('', suffix='.raw')
        os.truncate(disk, 1024 * 1024)
        st = self.create('jdisk', paused=False, machine='q35', memory_mib=64,
                         disks=[{'path': disk, 'format': 'raw'}],
                         restrict=self.jail(namespaces={'net': True, 'pid': True}))
        r = self.check_jailed('jdisk', st)
        self.assertRegex(r.stdout, r'(?m)^  ok   fd \d+ +' + re.escape(disk) + '$')
        self.assertRegex(r.stdout, r'(?m)^  ok   ns net +its own')
        self.assertRegex(r.stdout, r'(?m)^  ok   ns pid +its own')
        blocks = json.loads(self.expect(self.qdm('qmp', 'jdisk', 'query-block'), 0).stdout)
        self.assertEqual([b['inserted']['file'] for b in blocks], ['/dev/fdset/0'])
        self.destroy('jdisk')

    def test_jail_kernel_audit(self):
        kernel = '/boot/ipxe.lkrn' if os.path.exists('/boot/ipxe.lkrn') else None
        if not kernel:
            kernels = sorted(f for f in os.listdir('/boot') if f.startswith('vmlinuz-'))
            kernel = os.path.join('/boot', kernels[-1]) if kernels else None
        if not kernel:
            self.skipTest('no kernel installed (/boot/ipxe.lkrn from the ipxe package, or '
                          '/boot/vmlinuz-*)')
        initrd = self.write('an initrd', suffix='.img', mode=0o644)
        st = self.create('jkernel', paused=False, machine='q35', memory_mib=128, kernel=kernel,
                         initrd=initrd, restrict=self.jail())
        self.check_jailed('jkernel', st)
        self.destroy('jkernel')

    def test_jail_refuses_a_wrapper_script(self):
        fake, pidfile = self.script('exit 0')
        self.expect(self.qdm('create', self.config('jscript', qemu=fake, restrict=self.jail())),
                    1, stderr=[fake, 'is not an ELF executable', 'wrapper script'])
        self.assertEqual(read_text(pidfile), '', 'the script ran')
        self.assertFalse(os.path.lexists(os.path.join(self.run_dir, 'jscript')))

    def test_jail_kvm_refused_with_the_fix(self):
        try:
            kvm = os.stat('/dev/kvm')
        except FileNotFoundError:
            self.skipTest('no /dev/kvm')
        usable = (kvm.st_mode & 0o006) == 0o006 or ((kvm.st_mode & 0o060) == 0o060 and
                                                     kvm.st_gid != 0)
        if usable:
            self.skipTest('/dev/kvm is usable by device models here')
        cfg = self.config('jkvm', accel='kvm', restrict=self.jail())
        self.expect(self.qdm('create', cfg), 1,
                    stderr=['accel "kvm": /dev/kvm is ', 'cannot open it',
                            '"chgrp kvm /dev/kvm && chmod 0660 /dev/kvm"'])
        self.assertFalse(os.path.lexists(os.path.join(self.run_dir, 'jkvm')))

    def test_uids_unique_across_run_dirs(self):
        # Two run directories on one host (e.g. /run/qdm and a --run-dir), started at the same
        # moment: their QEMUs must not share a uid, and destroying one must not kill the other.
        collisions = []
        for attempt in range(3):
            cfg_a, cfg_b = self.config('ua'), self.config('ub')
            ra, rb = self.run_parallel([(['create', '--paused', cfg_a], self.run_dir),
                                        (['create', '--paused', cfg_b], self.run_dir2)])
            self.expect(ra, 0)
            self.expect(rb, 0)
            a = self.status('ua')
            b = self.status('ub', run_dir=self.run_dir2)
            for st, n in ((a, 'ua'), (b, 'ub')):
                self.track(st['qemu_pid'], f'QEMU of {n}')
                self.track(st['supervisor_pid'], f'supervisor of {n}')
            self.destroy('ua')
            b_survived = proc_alive(b['qemu_pid'])
            self.destroy('ub', run_dir=self.run_dir2)
            if a['uid'] == b['uid'] or not b_survived:
                collisions.append(f'attempt {attempt + 1}: both QEMUs got uid {a["uid"]}/'
                                  f'{b["uid"]}; `qdm destroy ua` in {self.run_dir} '
                                  f'{"killed" if not b_survived else "spared"} the QEMU of ub '
                                  f'in {self.run_dir2}')
                break
        self.assertFalse(collisions, '; '.join(collisions))


if __name__ == '__main__':
    unittest.main(verbosity=2)
