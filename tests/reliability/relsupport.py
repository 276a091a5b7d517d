# SPDX-License-Identifier: LGPL-2.1-or-later
"""
What the Python reliability scripts share (standard library only, like tests/cli/test_cli.py):
the built qdm, a private run directory under $TMPDIR, configurations in the reliability uid
range (64500-64799, which no other suite allocates from), /proc readers, latency statistics,
and the leftover checks every run ends with.

Each script counts failed runs rather than stopping at the first, prints a summary line per
case, and exits 1 if anything failed (77 to skip). meson runs them with QDM_TEST_BUILD_DIR set.
"""

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BUILD_DIR = os.environ.get('QDM_TEST_BUILD_DIR') or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', '..', 'build')
QDM = os.path.join(BUILD_DIR, 'src', 'cli', 'qdm')
FAKE_QMP = os.path.join(BUILD_DIR, 'tests', 'fake', 'fake-qmp')
QEMU = os.environ.get('QDM_TEST_QEMU') or shutil.which('qemu-system-x86_64') or \
    '/usr/bin/qemu-system-x86_64'

UID_MIN, UID_MAX = 64500, 64799
UID_RANGE = range(UID_MIN, UID_MAX + 1)


def skip(why):
    print(f'SKIP: {why}')
    sys.exit(77)


def require_root_and_qemu():
    if not os.access(QDM, os.X_OK):
        print(f'{QDM} is not an executable: build first')
        sys.exit(1)
    if os.geteuid() != 0:
        skip('restricted device models need root')
    if not os.access(QEMU, os.X_OK):
        skip('qemu-system-x86_64 is not installed')


# ---- /proc --------------------------------------------------------------------------------------

def read_stat(pid):
    """(state, start_time, ppid) of pid, or None if there is no such process."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(')') + 2:].split()
    return fields[0], int(fields[19]), int(fields[1])


def proc_alive(pid, start_time=None):
    """Alive and not a zombie."""
    s = read_stat(pid) if pid and pid > 0 else None
    if s is None or s[0] in 'ZXx':
        return False
    return start_time is None or s[1] == start_time


def proc_cmdline(pid):
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            return [a.decode(errors='replace') for a in f.read().split(b'\0') if a]
    except (FileNotFoundError, ProcessLookupError):
        return []


def proc_uids(pid):
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('Uid:'):
                    return [int(x) for x in line.split()[1:]]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return []


def proc_root(pid):
    try:
        return os.readlink(f'/proc/{pid}/root')
    except OSError:
        return ''


def rss_kib(pid):
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def children(pid):
    try:
        with open(f'/proc/{pid}/task/{pid}/children') as f:
            return [int(x) for x in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def all_pids():
    return [int(e) for e in os.listdir('/proc') if e.isdigit()]


def fd_count():
    return len(os.listdir('/proc/self/fd'))


def wait_until(predicate, timeout=5.0, interval=0.005):
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def range_processes():
    """Live processes with a uid of the reliability range: 'pid uid cmdline' each."""
    found = []
    for pid in all_pids():
        if pid == os.getpid():
            continue
        s = read_stat(pid)
        if s is None or s[0] in 'ZXx':
            continue
        uids = proc_uids(pid)
        if any(u in UID_RANGE for u in uids):
            found.append(f'pid {pid} uid {uids[0]}: {" ".join(proc_cmdline(pid))[:120]}')
    return found


def processes_naming(text):
    """Live processes whose command line contains text (e.g. our run directory)."""
    found = []
    for pid in all_pids():
        if pid == os.getpid():
            continue
        s = read_stat(pid)
        if s is None or s[0] in 'ZXx':
            continue
        cmd = ' '.join(proc_cmdline(pid))
        if text in cmd:
            found.append(f'pid {pid}: {cmd[:120]}')
    return found


def qemu_processes():
    """Live QEMU processes (whatever their uid): pid list."""
    out = []
    for pid in all_pids():
        cmd = proc_cmdline(pid)
        s = read_stat(pid)
        if cmd and 'qemu-system' in os.path.basename(cmd[0]) and s and s[0] not in 'ZXx':
            out.append(pid)
    return out


# ---- statistics ---------------------------------------------------------------------------------

def ms_stats(samples):
    """'median X ms, max Y ms' of samples in seconds."""
    if not samples:
        return 'median - ms, max - ms'
    return (f'median {statistics.median(samples) * 1000:.1f} ms, '
            f'max {max(samples) * 1000:.1f} ms')


# ---- a private run directory --------------------------------------------------------------------

class Env:
    """A private directory under $TMPDIR holding a run directory and configurations."""

    def __init__(self, tag):
        base = os.environ.get('TMPDIR') or '/tmp'
        self.tmp = os.path.realpath(tempfile.mkdtemp(prefix=f'qdm-test-rel-{tag}-', dir=base))
        self.run_dir = os.path.join(self.tmp, 'run')
        self.cfg_dir = os.path.join(self.tmp, 'cfg')
        os.mkdir(self.cfg_dir, 0o700)
        self.n = 0
        if len(self.run_dir) > 80:  # qdm's own limit for run directories
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise RuntimeError(f'{self.run_dir}: too long for socket paths; set a shorter TMPDIR')

    def write(self, data, suffix='.json', mode=0o600):
        self.n += 1
        path = os.path.join(self.cfg_dir, f'f{self.n}{suffix}')
        with open(path, 'wb' if isinstance(data, bytes) else 'w') as f:
            f.write(data)
        os.chmod(path, mode)
        return path

    def config(self, name, **fields):
        doc = {'name': name, 'machine': 'none', 'accel': 'auto',
               'restrict': {'mode': 'qemu', 'uid_min': UID_MIN, 'uid_max': UID_MAX}}
        doc.update(fields)
        return self.write(json.dumps(doc))

    def qdm(self, *args, run_dir=None, timeout=60, env=None, verbose=False):
        argv = [QDM] + (['-vv'] if verbose else []) + \
            ['--run-dir', run_dir or self.run_dir] + [str(a) for a in args]
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, env=env)

    def status(self, name):
        r = self.qdm('status', '--json', name)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)

    def dm_names(self, run_dir=None):
        rd = run_dir or self.run_dir
        if not os.path.isdir(rd):
            return []
        return sorted(n for n in os.listdir(rd) if not n.startswith('.'))

    def destroy_all(self):
        for name in self.dm_names():
            self.qdm('destroy', name)
            p = os.path.join(self.run_dir, name)
            if os.path.lexists(p):
                shutil.rmtree(p, ignore_errors=True)

    def leftovers(self):
        """What a finished run must not leave: device-model directories, supervisors or
        QEMUs naming our directory, processes of the reliability uid range."""
        problems = []
        names = self.dm_names()
        if names:
            problems.append(f'{self.run_dir} still holds {names}')
        procs = processes_naming(self.tmp)
        if procs:
            problems.append('processes naming our directory: ' + '; '.join(procs))
        rng = range_processes()
        if rng:
            problems.append('processes of uid range 64500-64799: ' + '; '.join(rng))
        return problems

    def wait_clean(self, timeout=3.0):
        """Killed processes take a moment to die: the leftovers after waiting up to timeout."""
        left = wait_until(lambda: not self.leftovers(), timeout=timeout)
        return [] if left else self.leftovers()

    def cleanup(self):
        self.destroy_all()
        for p in processes_naming(self.tmp):
            try:
                pid = int(p.split()[1].rstrip(':'))
                os.kill(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGCONT)
            except (ValueError, IndexError, ProcessLookupError):
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


class Case:
    """Counts runs, failures and leaks of one case; prints the first few failures."""
    printed = 0

    def __init__(self, name):
        self.name = name
        self.runs = self.failures = self.leaks = 0
        self.latency = []
        self.outcomes = {}
        self.notes = []

    def fail(self, what):
        self.failures += 1
        if Case.printed < 40:
            print(f'FAIL: {self.name} run {self.runs}: {what}', flush=True)
        Case.printed += 1

    def outcome(self, text):
        self.outcomes[text] = self.outcomes.get(text, 0) + 1

    def line(self, extra=''):
        oc = '; '.join(f'{k} x{v}' for k, v in sorted(self.outcomes.items()))
        lat = f'  latency {ms_stats(self.latency)}' if self.latency else ''
        return (f'{self.name:<22} runs {self.runs:4d}  failures {self.failures:3d}  '
                f'leaks {self.leaks:3d}{lat}{extra}  | {oc}')
