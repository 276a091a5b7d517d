#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
The run directory as an attack surface, against real QEMU.

    rundir.py [--known-bugs include|exclude|only]

--known-bugs: the one case that fails because of a reported bug in src/ (state.json a named
pipe: every command blocks forever in open()): run it too, skip it, or run only it.

1. Permissions of what qdm creates: the run directory and each device model's directory 0700,
   the control socket and every file 0600, the empty chroot 0000, all owned by root.
2. A run directory that is group- or world-writable, owned by another user (chown to
   nobody:nogroup), or a symlink, is refused by `create` (which then starts nothing and
   creates nothing) and by `status`, `destroy`, `qmp`, `resume`, `pause`, `shutdown`, `audit`
   for a device model already running there, which must not be touched (same QEMU and
   supervisor, alive, still prelaunch).
3. A state.json tampered with: owned by another user, mode 0666 or 0606 or 0660, a symlink to
   a good copy, a directory, a named pipe, a hard link owned by another user; and one whose
   pids point at an innocent process of ours with a wrong start time. `status` and `destroy`
   refuse the untrusted ones with a clear message, within 5 s, signalling nothing; nothing is
   ever signalled but the device model's own processes.
After restoring, the device model still works and `destroy` cleans up; nothing is left.
"""

import argparse
import json
import os
import pwd
import grp
import shutil
import signal
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relsupport as rs  # noqa: E402

UNTRUSTED_RUN_DIR = 'is not owned by uid 0 or is writable by others; refusing to trust it'
UNTRUSTED_STATE = 'state.json is not owned by uid 0 or is writable by others; refusing to trust it'


class T:
    def __init__(self):
        self.case = rs.Case('rundir')

    def check(self, cond, what):
        if not cond:
            self.case.fail(what)
        self.case.runs += 1
        return cond


def qdm(env, *args, run_dir=None, timeout=5):
    try:
        return env.qdm(*args, run_dir=run_dir, timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 'timeout', '', f'no answer within {timeout} s')


def identity(pid):
    s = rs.read_stat(pid)
    return (pid, s[1]) if s else None


def untouched(t, env, name, before, label):
    """QEMU and supervisor are the same processes, alive, and QEMU is still prelaunch."""
    q, s = before
    ok = t.check(rs.proc_alive(*q) and rs.proc_alive(*s),
                 f'{label}: QEMU or supervisor was signalled')
    return ok


def perms(t, env, name):
    rd = env.run_dir
    d = os.path.join(rd, name)
    want = {rd: 0o700, d: 0o700, os.path.join(d, 'qmp.sock'): 0o600,
            os.path.join(d, 'state.json'): 0o600, os.path.join(d, 'lock'): 0o600,
            os.path.join(d, 'stderr.log'): 0o600, os.path.join(d, 'events.log'): 0o600,
            os.path.join(d, 'root'): 0o000, os.path.join(rd, '.cache'): 0o700,
            '/run/qdm/.uids': 0o700}
    for p, mode in want.items():
        st = os.lstat(p)
        t.check(stat.S_IMODE(st.st_mode) == mode and st.st_uid == 0,
                f'{p}: mode {stat.S_IMODE(st.st_mode):04o} uid {st.st_uid}, expected {mode:04o} '
                f'uid 0')
    t.check(stat.S_ISSOCK(os.lstat(os.path.join(d, 'qmp.sock')).st_mode), 'qmp.sock is no socket')
    extra = sorted(set(os.listdir(d)) - {'qmp.sock', 'state.json', 'lock', 'stderr.log',
                                         'events.log', 'root'})
    t.check(not extra, f'{d} holds unexpected files: {extra}')


COMMANDS = [['status', '{n}'], ['destroy', '{n}'], ['qmp', '{n}', 'query-status'],
            ['resume', '{n}'], ['pause', '{n}'], ['shutdown', '--force', '{n}'],
            ['audit', '{n}'], ['events', '{n}'], ['logs', '{n}']]


def bad_run_dir(t, env, name, before, label, expect):
    """With the run directory made untrustworthy: everything refused, nothing touched."""
    for cmd in COMMANDS:
        argv = [a.format(n=name) for a in cmd]
        r = qdm(env, *argv)
        t.check(r.returncode == 1 and expect in r.stderr,
                f'{label}: `qdm {" ".join(argv)}` exit {r.returncode}: {r.stderr.strip()[:200]}')
    untouched(t, env, name, before, label)
    # create there: refused, starts nothing, creates nothing.
    listing = sorted(os.listdir(env.run_dir)) if os.path.isdir(env.run_dir) else None
    r = qdm(env, 'create', '--paused', env.config('intruder'), timeout=30)
    t.check(r.returncode == 1 and expect in r.stderr,
            f'{label}: create exit {r.returncode}: {r.stderr.strip()[:200]}')
    now = sorted(os.listdir(env.run_dir)) if os.path.isdir(env.run_dir) else None
    t.check(now == listing, f'{label}: create changed the run directory: {listing} -> {now}')
    t.check(not [p for p in rs.processes_naming(env.run_dir) if 'intruder' in p],
            f'{label}: create started something')
    untouched(t, env, name, before, label)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--known-bugs', choices=['include', 'exclude', 'only'], default='include')
    args = ap.parse_args()
    only_bugs = args.known_bugs == 'only'
    rs.require_root_and_qemu()
    env = rs.Env('rundir')
    t = T()
    nobody = pwd.getpwnam('nobody').pw_uid
    try:
        nogroup = grp.getgrnam('nogroup').gr_gid
    except KeyError:
        nogroup = pwd.getpwnam('nobody').pw_gid
    victim = None
    fds_before = rs.fd_count()
    try:
        name = 'target'
        r = qdm(env, 'create', '--paused', env.config(name), timeout=60)
        if not t.check(r.returncode == 0, f'create: {r.stderr}'):
            return 1
        st = env.status(name)
        before = (identity(st['qemu_pid']), identity(st['supervisor_pid']))
        rd = env.run_dir
        if not only_bugs:
            perms(t, env, name)

        # ---- the run directory ----
        for mode in () if only_bugs else (0o770, 0o720, 0o707, 0o702, 0o777, 0o1777):
            os.chmod(rd, mode)
            bad_run_dir(t, env, name, before, f'run dir mode {mode:04o}', UNTRUSTED_RUN_DIR)
            os.chmod(rd, 0o700)
        if not only_bugs:
            os.chown(rd, nobody, nogroup)
            bad_run_dir(t, env, name, before, 'run dir owned by nobody:nogroup', UNTRUSTED_RUN_DIR)
            os.chown(rd, 0, 0)
            # A symlink in place of the run directory (to the real one).
            real = rd + '.real'
            os.rename(rd, real)
            os.symlink(real, rd)
            bad_run_dir(t, env, name, before, 'run dir is a symlink', 'Not a directory')
            os.unlink(rd)
            os.rename(real, rd)
        r = qdm(env, 'qmp', name, 'query-status')
        t.check(r.returncode == 0 and '"prelaunch"' in r.stdout,
                f'after restoring the run directory: {r.returncode} {r.stdout} {r.stderr}')

        # ---- state.json ----
        sf = os.path.join(rd, name, 'state.json')
        good = os.path.join(env.tmp, 'state.good')
        shutil.copy2(sf, good)

        def restore():
            if os.path.isdir(sf) and not os.path.islink(sf):
                os.rmdir(sf)
            elif os.path.lexists(sf):
                os.unlink(sf)
            shutil.copy2(good, sf)
            os.chown(sf, 0, 0)
            os.chmod(sf, 0o600)

        def tamper_owner():
            os.chown(sf, nobody, nogroup)

        def tamper_mode(m):
            return lambda: os.chmod(sf, m)

        def tamper_symlink():
            os.unlink(sf)
            os.symlink(good, sf)

        def tamper_dir():
            os.unlink(sf)
            os.mkdir(sf, 0o700)

        def tamper_fifo():
            os.unlink(sf)
            os.mkfifo(sf, 0o600)

        def tamper_hardlink():
            os.unlink(sf)
            other = os.path.join(env.tmp, 'nobodys-state')
            shutil.copy2(good, other)
            os.chown(other, nobody, nogroup)
            os.link(other, sf)

        tampers = [('owned by nobody', tamper_owner, UNTRUSTED_STATE, False),
                   ('mode 0666', tamper_mode(0o666), UNTRUSTED_STATE, False),
                   ('mode 0606', tamper_mode(0o606), UNTRUSTED_STATE, False),
                   ('mode 0660', tamper_mode(0o660), UNTRUSTED_STATE, False),
                   ('a symlink to a good copy', tamper_symlink, UNTRUSTED_STATE, False),
                   ('a hard link owned by nobody', tamper_hardlink, UNTRUSTED_STATE, False),
                   ('a directory', tamper_dir, UNTRUSTED_STATE, False),
                   # Known bug: open() without O_NONBLOCK blocks on a FIFO (rundir.c).
                   ('a named pipe', tamper_fifo, 'state.json', True)]
        for label, tamper, expect, bug in tampers:
            if (args.known_bugs == 'exclude' and bug) or (only_bugs and not bug):
                continue
            tamper()
            cmds = [['status', name], ['destroy', name], ['qmp', name, 'query-status'],
                    ['shutdown', '--force', name], ['list']]
            for cmd in cmds[:2] if bug else cmds:
                t0 = time.monotonic()
                r = qdm(env, *cmd, timeout=3 if bug else 5)
                took = time.monotonic() - t0
                if cmd == ['list']:
                    # list shows every device model; an untrusted one as "unknown".
                    t.check(r.returncode == 0 and f'{name}' in r.stdout and 'unknown' in r.stdout,
                            f'state.json {label}: `qdm list` exit {r.returncode}: '
                            f'{r.stdout.strip()[:200]} {r.stderr.strip()[:200]}')
                    continue
                t.check(r.returncode == 1 and expect in r.stderr,
                        f'state.json {label}: `qdm {" ".join(cmd)}` exit {r.returncode} after '
                        f'{took:.1f} s: {r.stderr.strip()[:200]}')
            untouched(t, env, name, before, f'state.json {label}')
            t.check(os.path.isdir(os.path.join(rd, name)),
                    f'state.json {label}: the device model directory was removed')
            restore()
            t.check(env.status(name) is not None, f'after restoring from {label}: status fails')

        if only_bugs:
            r = qdm(env, 'destroy', name, timeout=30)
            t.check(r.returncode == 0, f'destroy: {r.stderr}')
            raise StopIteration
        # A record naming an innocent process with a wrong start time: never signalled.
        victim = subprocess.Popen(['sleep', '600'])
        vs = rs.read_stat(victim.pid)
        doc = json.load(open(good))
        doc['qemu_pid'] = victim.pid
        doc['qemu_start_time'] = vs[1] + 12345
        doc['supervisor_pid'] = victim.pid
        doc['supervisor_start_time'] = vs[1] + 1
        with open(sf, 'w') as f:
            json.dump(doc, f)
        os.chmod(sf, 0o600)
        r = qdm(env, 'status', '--json', name)
        t.check(r.returncode == 0 and not json.loads(r.stdout or '{}').get('qemu_alive', True),
                f'a record with a reused pid: status says {r.stdout.strip()[:200]}')
        r = qdm(env, 'destroy', name, timeout=30)
        t.check(victim.poll() is None and rs.proc_alive(*identity(victim.pid)),
                'destroy signalled a process whose start time does not match the record')
        # That destroy removed the directory while the real QEMU (whose pid the record no
        # longer names) lives on: the record is trusted by design (ours, 0600), so this is the
        # caller's doing; end the real processes ourselves.
        for p in before:
            if p and rs.proc_alive(*p):
                os.kill(p[0], signal.SIGKILL)
        t.check(rs.wait_until(lambda: not any(p and rs.proc_alive(*p) for p in before),
                              timeout=5), 'the real QEMU or supervisor does not die')
    except StopIteration:
        pass
    finally:
        if victim:
            victim.kill()
            victim.wait()
        env.cleanup()
    left = env.leftovers()
    t.check(not left, 'left behind: ' + ' | '.join(left))
    t.check(rs.fd_count() == fds_before, f'{rs.fd_count()} fds open, {fds_before} before')
    print(t.case.line(), flush=True)
    print(f'rundir: {"FAILED" if t.case.failures else "ok"} ({t.case.failures} failed checks)')
    return 1 if t.case.failures else 0


if __name__ == '__main__':
    sys.exit(main())
