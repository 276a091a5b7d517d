#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
SIGKILL of the supervisor (`qdm __supervise`) at each lifecycle step, through the CLI, against
real QEMU, with a random 0-5 ms delay before each kill.

    fault_cli.py [--runs N] [--seed S] [--step STEP]...

Steps, and how the kill is placed. The supervisor's own library log (`qdm -vv`) says when it
enters each state ("dm NAME: greeting -> negotiating"); the moment that line arrives the
supervisor is frozen with SIGSTOP, so that it stays at that step (QEMU runs on), and after the
random delay it is killed with SIGKILL:
    greeting     on "spawning -> greeting"     (QEMU spawned, no greeting read yet)
    negotiating  on "greeting -> negotiating"  (greeting read, qmp_capabilities sent)
    querying     on "negotiating -> querying"  (query-status sent)
    ready        after `qdm create --paused` returned: the device model is ready
    cont         on "querying -> ready" of a `qdm create` without --paused: the supervisor
                 sends "cont" right then. Here QEMU is frozen instead (and continued right
                 after the kill), so that the reply cannot arrive first: the supervisor dies
                 with "cont" in flight. QEMU's run state afterwards shows whether it got out
                 ("running") or not ("prelaunch"); its reply goes to nobody, or, QEMU 7.2
                 style, to the next client (`qdm qmp query-status`), which must not be fooled.
    stopping     while `qdm shutdown --force --timeout 0.3` of a running guest is in flight

What must hold (the issue: "QEMU keeps running; `qdm status` says so; `qdm destroy` cleans"):
    - a `create` still waiting fails at once: exit 1, "the supervisor killed by signal 9"
      (or, if the kill landed after the supervisor's report, exit 0)
    - QEMU keeps running (except in `stopping`, where the shutdown ends it, exit 0)
    - `qdm status` says the supervisor is gone and QEMU alive ("gone: QEMU runs unsupervised;
      'qdm destroy' still works"); the control monitor still answers `qdm qmp`
    - `qdm destroy` exits 0 and leaves no QEMU, supervisor, process of the uid range,
      directory or socket; this process has no more fds than before
Latency: from the kill to `create` reporting it (start steps), or to the first `qdm list`
that shows the supervisor gone (ready, stopping; `qdm status` would wait for the monitor
lock, which a shutdown in flight holds).
"""

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relsupport as rs  # noqa: E402

TRANSITION = {
    'greeting': 'spawning -> greeting',
    'negotiating': 'greeting -> negotiating',
    'querying': 'negotiating -> querying',
    'cont': 'querying -> ready',
}
STEPS = ['greeting', 'negotiating', 'querying', 'ready', 'cont', 'stopping']
GONE_TEXT = "gone: QEMU runs unsupervised; 'qdm destroy' still works"


def kill_during_start(env, case, step, name, delay, qemu_pids):
    """Start `qdm -vv create`, kill its supervisor delay seconds after it logs the step."""
    cfg = env.config(name)
    argv = [rs.QDM, '-vv', '--run-dir', env.run_dir, 'create'] + \
        (['--paused'] if step != 'cont' else []) + [cfg]
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    sup = None
    seen = []
    t_inject = None
    try:
        sup_list = rs.wait_until(lambda: rs.children(p.pid), timeout=10, interval=0.0005)
        if not sup_list:
            case.fail('no supervisor appeared')
            return None
        sup = sup_list[0]
        want = f'dm {name}: {TRANSITION[step]}'
        while True:
            line = p.stderr.readline()
            if not line:
                break
            seen.append(line.rstrip('\n'))
            if want in line:
                if step == 'cont':
                    # Hold QEMU instead, so that the "cont" the supervisor sends now cannot be
                    # answered before the supervisor dies: the command is in flight.
                    kids = rs.children(sup)
                    for k in kids:
                        os.kill(k, signal.SIGSTOP)
                else:
                    # Hold the supervisor at this step (QEMU runs on).
                    os.kill(sup, signal.SIGSTOP)
                    # QEMU is its child: known without trusting state.json.
                    kids = rs.wait_until(lambda: rs.children(sup), timeout=1, interval=0.0005)
                qemu_pids[:] = [(k, rs.read_stat(k)[1]) for k in kids if rs.read_stat(k)]
                time.sleep(delay)
                t_inject = time.monotonic()
                os.kill(sup, signal.SIGKILL)
                for k, _ in qemu_pids if step == 'cont' else []:
                    os.kill(k, signal.SIGCONT)
                break
        rest = p.stderr.read()
        p.wait(timeout=30)
        t_report = time.monotonic()
        out = p.stdout.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()
    if t_inject is None:
        case.fail(f'the supervisor never logged "{TRANSITION[step]}": ' + ' / '.join(seen[-5:]))
        return None
    # The state the supervisor had reached when it died: its last transition logged.
    last = [m.group(1) for m in (re.search(rf'dm {re.escape(name)}: \S+ -> (\S+)', s)
                                 for s in seen + rest.splitlines()) if m]
    reached = last[-1] if last else '?'
    if p.returncode == 1:
        if 'the supervisor killed by signal 9' not in rest:
            case.fail(f'create exit 1 without "the supervisor killed by signal 9": {rest[-300:]}')
        case.latency.append(t_report - t_inject)
        case.outcome(f'create 1 (died at {reached})')
    elif p.returncode == 0:
        # The kill landed after the supervisor's report: the device model is ready.
        case.outcome(f'create 0 (killed after its report, at {reached})')
    else:
        case.fail(f'create exit {p.returncode}: {rest[-300:]} {out}')
    return p.returncode


def supervisor_gone(env, name):
    """`qdm list --json` (which takes no lock, unlike status) says the supervisor is gone."""
    r = env.qdm('list', '--json')
    if r.returncode != 0:
        return False
    return any(d['name'] == name and not d['supervisor_alive'] for d in json.loads(r.stdout))


def one_run(env, case, step, delay):
    name = f's-{step}-{case.runs}'
    fds_before = rs.fd_count()
    qemu = None
    ok_before = case.failures
    if step in TRANSITION:
        qemu_pids = []
        rc = kill_during_start(env, case, step, name, delay, qemu_pids)
        if qemu_pids:
            qemu = qemu_pids[0]
            # Let QEMU finish starting on its own (it has lost its supervisor, not its life):
            # its root becomes the empty chroot once it has dropped privileges.
            rs.wait_until(lambda: not rs.proc_alive(*qemu) or rs.proc_root(qemu[0]).endswith(
                f'/{name}/root'), timeout=3)
        st = env.status(name)
        if rc is not None and st is None:
            case.fail(f'`qdm status {name}` fails after the supervisor died, while its QEMU '
                      f'(pid {qemu and qemu[0]}) is '
                      f'{"alive" if qemu and rs.proc_alive(*qemu) else "gone"}: '
                      f'{env.qdm("status", name).stderr.strip()}; the directory holds '
                      f'{sorted(os.listdir(os.path.join(env.run_dir, name))) if os.path.isdir(os.path.join(env.run_dir, name)) else "nothing"}')
        if st:
            if qemu and st['qemu_pid'] != qemu[0]:
                case.fail(f'status names QEMU pid {st["qemu_pid"]}, the supervisor\'s child '
                          f'is {qemu[0]}')
            if st['supervisor_alive']:
                case.fail(f'status says the supervisor is alive: {st}')
            if not st['qemu_alive'] or not rs.proc_alive(st['qemu_pid']):
                case.fail(f'QEMU did not keep running: {st}')
            r = env.qdm('status', name)
            if GONE_TEXT not in r.stdout:
                case.fail(f'`qdm status` does not say the supervisor is gone: {r.stdout}')
            r = env.qdm('qmp', name, 'query-status')
            if r.returncode != 0:
                case.fail(f'the monitor no longer answers: {r.returncode} {r.stderr.strip()}')
            else:
                live = json.loads(r.stdout).get('status')
                case.outcome(f'status "{st["state"]}", QEMU {live}')
    elif step == 'ready':
        cfg = env.config(name)
        r = env.qdm('create', '--paused', cfg)
        if r.returncode != 0:
            case.fail(f'create: {r.stderr.strip()}')
            return
        st = env.status(name)
        qemu = (st['qemu_pid'], None)
        time.sleep(delay)
        t_inject = time.monotonic()
        os.kill(st['supervisor_pid'], signal.SIGKILL)
        if not rs.wait_until(lambda: supervisor_gone(env, name), timeout=5, interval=0):
            case.fail('`qdm list` never said the supervisor is gone')
        else:
            case.latency.append(time.monotonic() - t_inject)
            st2 = env.status(name)
            if not st2['qemu_alive'] or st2['state'] != 'ready' or \
                    st2['qemu_status'] != 'prelaunch':
                case.fail(f'QEMU did not keep running, ready: {st2}')
            r = env.qdm('status', name)
            if GONE_TEXT not in r.stdout:
                case.fail(f'`qdm status` does not say the supervisor is gone: {r.stdout}')
            r = env.qdm('qmp', name, 'query-status')
            if r.returncode != 0 or '"prelaunch"' not in r.stdout:
                case.fail(f'the monitor no longer answers: {r.returncode} {r.stdout} {r.stderr}')
            case.outcome(f'status "{st2["state"]}", qmp ok')
    else:  # stopping
        cfg = env.config(name)
        r = env.qdm('create', cfg)
        if r.returncode != 0:
            case.fail(f'create: {r.stderr.strip()}')
            return
        st = env.status(name)
        qemu = (st['qemu_pid'], None)
        sh = subprocess.Popen([rs.QDM, '--run-dir', env.run_dir, 'shutdown', '--force',
                               '--timeout', '0.3', name], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        t_inject = time.monotonic()
        os.kill(st['supervisor_pid'], signal.SIGKILL)
        if rs.wait_until(lambda: supervisor_gone(env, name), timeout=5, interval=0):
            case.latency.append(time.monotonic() - t_inject)
        else:
            case.fail('`qdm list` never said the supervisor is gone')
        out, err = sh.communicate(timeout=30)
        if sh.returncode != 0 or 'killed QEMU' not in out:
            case.fail(f'shutdown --force: exit {sh.returncode}: {out} {err}')
        st3 = env.status(name)
        if not st3 or st3['qemu_alive'] or st3['state'] != 'exited':
            case.fail(f'after the shutdown, status says {st3}')
        case.outcome(f'shutdown {sh.returncode}, status "{st3 and st3["state"]}"')

    # `qdm destroy` cleans up whatever is left.
    if os.path.lexists(os.path.join(env.run_dir, name)):
        r = env.qdm('destroy', name)
        if r.returncode != 0 or not r.stdout.startswith(f'{name}: '):
            case.fail(f'destroy: exit {r.returncode}: {r.stdout} {r.stderr}')
    if qemu and not rs.wait_until(lambda: not rs.proc_alive(*qemu), timeout=1):
        case.fail(f'QEMU pid {qemu[0]} (uid {rs.proc_uids(qemu[0])[:1]}) survived `qdm destroy` '
                  f'("{r.stdout.strip()}"), orphaned: {" ".join(rs.proc_cmdline(qemu[0]))[:60]}')
        case.leaks += 1
        os.kill(qemu[0], signal.SIGKILL)
    left = env.wait_clean()
    if left:
        case.fail('left behind: ' + ' | '.join(left))
        env.destroy_all()
    if rs.fd_count() != fds_before:
        case.fail(f'{rs.fd_count()} fds open, {fds_before} before')
    if left:
        case.leaks += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--runs', type=int, default=10)
    ap.add_argument('--seed', type=int, default=None)
    ap.add_argument('--step', action='append', choices=STEPS)
    args = ap.parse_args()
    rs.require_root_and_qemu()
    seed = args.seed if args.seed is not None else int(time.time()) ^ os.getpid()
    rng = random.Random(seed)
    steps = args.step or STEPS
    print(f'fault-cli: SIGKILL of the supervisor, {args.runs} runs per step, seed {seed}, '
          f'random delay 0-5 ms', flush=True)
    env = rs.Env('sup')
    failed = 0
    try:
        pre = rs.range_processes()
        if pre:
            print('FAIL: processes of the uid range before the test: ' + '; '.join(pre))
            return 1
        for step in steps:
            case = rs.Case(f'supervisor-kill-{step}')
            while case.runs < args.runs:
                one_run(env, case, step, rng.uniform(0, 0.005))
                case.runs += 1
            print(case.line(), flush=True)
            failed += case.failures
    finally:
        env.cleanup()
    print(f'fault-cli: {"FAILED" if failed else "ok"} ({failed} failed checks)')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
