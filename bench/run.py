#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""qdm's benchmark: runs everything and writes docs/PERFORMANCE.md and its plots (PNG).

Every qdm figure is paired with a raw baseline measured in the same run, the two alternating
A B A B, and reported as min/median/max plus the ratio of the medians. A benchmark reports; it
never asserts a threshold: the exit status is non-zero only when something could not be
measured or was left behind.

    python3 bench/run.py                  # full run, ~2.5 min (~4 with libvirt), writes docs/PERFORMANCE.md
    BENCH_QUICK=1 python3 bench/run.py    # ~20 s smoke run, writes build-bench/PERFORMANCE-quick.md

Environment: BENCH_RUNS (paired runs per start-to-ready figure, default 20), BENCH_QUICK=1,
BENCH_OUT (output file), BENCH_BUILD_DIR (default build-bench), BENCH_QEMU (default
qemu-system-x86_64 from PATH), BENCH_TMPDIR, BENCH_LIBVIRT=0 (skip the libvirt section).
Python 3 standard library only.

Importing this file has no side effects (everything happens under main()); while a run is in
progress, `import run` from bench/ gets this very module (main() registers it under that name),
so helpers see the run's state (TMP, RUN_DIR, RAW_ENV).

The libvirt section is a plug-in: bench/bench_libvirt.py, if it imports, provides

    available() -> (bool, reason)      # False: the section says "skipped: <reason>"
    measure(ctx) -> dict               # ctx: see libvirt_ctx(); run last (it is slow)
    render(results, table) -> (markdown, headline_rows)
    cleanup()                          # after measure() and again on every exit path (signals
                                       # included): must be idempotent

headline_rows are (label, a_samples, b_samples, unit) with a = libvirt/qdm side, b = its
baseline, and the samples in the unit convention of table(): "ms" and "us" take microseconds,
"KiB" KiB, "B" bytes, "cps" commands/s. table(title, unit, rows, ...) is the function every
section uses; rows are (label, a_samples, b_samples).
"""

import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
RUNS = int(os.environ.get("BENCH_RUNS", "3" if QUICK else "20"))
BUILD = os.path.abspath(os.path.join(ROOT, os.environ.get("BENCH_BUILD_DIR", "build-bench")))
OUT = os.environ.get("BENCH_OUT") or (
    os.path.join(BUILD, "PERFORMANCE-quick.md") if QUICK else os.path.join(ROOT, "docs", "PERFORMANCE.md"))
PLOT_DIR = os.path.join(os.path.dirname(os.path.abspath(OUT)), "performance" if not QUICK else "performance-quick")
QEMU = os.environ.get("BENCH_QEMU", "qemu-system-x86_64")

CTL_RUNS = max(3, RUNS * 5)            # whole-process control commands, per command
LAT_PER_RUN = 20                       # in-process control sessions per tool invocation
QMP_N = 300 if QUICK else 2000         # commands per throughput run
SCALE_RUNS = 1 if QUICK else max(2, RUNS // 2)
SCALE_NS = [1, 8, 32, 64]
# The largest N takes the longest (64 q35 QEMUs, about 2.5 GiB, for a second or two); it runs in
# every other round, so it gets half the runs of the others (stated in the report).
SCALE_BIG = 64
SCALE_BIG_EVERY = 2
MEM_RUNS = 1 if QUICK else max(3, RUNS // 4)   # memory per device model: runs per row
MEM_K = 4 if QUICK else 16                      # device models held per run
CG_BIG, CG_SMALL = (600, 100) if QUICK else (1100, 100)

START_TIMEOUT_S = 15                   # qdm's start_timeout_ms and raw-launch --timeout
SCALE_TIMEOUT_S = 90                   # the same for N starts at once (64 on 2 CPUs, other load)
NAME_PREFIX = "qb%d-" % os.getpid()   # device-model names of this run, and nothing else's
# qdm's uid range here, and raw-launch --restricted's uid (its default is 64999): both outside
# qdm's default range 64000-64999, which other users' tests on this machine use and whose
# processes `qdm destroy` kills and tests/check-leftovers.sh reports.
UID_MIN, UID_MAX = 65100, 65299
RAW_RUNAS = "65399:65399"

QDM = os.path.join(BUILD, "src", "cli", "qdm")
RAW_LAUNCH = os.path.join(BUILD, "bench", "raw-launch")
RAW_QMP = os.path.join(BUILD, "bench", "raw-qmp")
LIB_CLIENT = os.path.join(BUILD, "bench", "bench-qmp-client")
DM_MEM = os.path.join(BUILD, "bench", "bench-dm-mem")


def log(msg):
    print("[bench %6.1fs] %s" % (time.monotonic() - T_START, msg), file=sys.stderr, flush=True)


T_START = time.monotonic()


class Failure(Exception):
    pass


FAILURES = []      # what failed during the run: reported, the affected round left out
MAX_FAILURES = 10


def note_failure(what, err):
    msg = "%s: %s" % (what, str(err).strip().splitlines()[-1] if str(err).strip() else "failed")
    FAILURES.append(msg)
    log("FAILED (left out of the figures): " + msg)
    if len(FAILURES) > MAX_FAILURES:
        raise Failure("more than %d failures; giving up" % MAX_FAILURES)


def guarded(what, fn, *args):
    """fn(*args), or None when it failed (noted)."""
    try:
        return fn(*args)
    except (Failure, subprocess.TimeoutExpired) as e:
        note_failure(what, e)
        return None


# ---- processes ---------------------------------------------------------------------------

TMP = None      # our private temp dir: run dir, configs, the raw tools' TMPDIR
RUN_DIR = None
RAW_ENV = None
LIVE_RAW = []   # raw-launch --hold processes not yet reaped


def run(argv, check=True, env=None, timeout=None):
    # A session of its own for every measured process: with autogroup scheduling
    # (/proc/sys/kernel/sched_autogroup_enabled) a session is a CPU-share group, and qdm's
    # supervisor calls setsid() itself; without this, raw baselines would share one group with
    # this script and lose CPU share against other users' load while qdm's would not.
    # No timeout for measured commands: with one, subprocess.run() reaps the child by polling
    # waitpid(WNOHANG) with 1 ms sleeps, which added up to a millisecond to a figure whenever
    # the child had not quite exited when its pipes closed. Every measured tool has its own
    # deadline (qdm's start_timeout_ms and command timeouts, raw-launch --timeout, raw-qmp's
    # 30 s read limit).
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                       timeout=timeout, start_new_session=True)
    if check and p.returncode != 0:
        raise Failure("%s failed (exit %d): %s" % (" ".join(argv), p.returncode,
                                                    (p.stderr.strip() or p.stdout.strip())[-1500:]))
    return p


def timed(argv, env=None, check=True):
    """Whole-process wall time in microseconds (spawn to exit), and the process's stdout."""
    t0 = time.perf_counter_ns()
    p = run(argv, env=env, check=check)
    return (time.perf_counter_ns() - t0) / 1000.0, p.stdout


def qdm(*args):
    return [QDM, "--run-dir", RUN_DIR] + list(args)


def kv(line):
    return dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)


def vmrss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_us(pid):
    """CPU time so far of every thread of pid, from /proc/PID/task/*/schedstat (ns on CPU)."""
    total = 0
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                total += int(f.read().split()[0])
    except OSError:
        pass
    return total / 1000.0


def children_of(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def fs_type(path):
    """The type of the filesystem holding path, from /proc/mounts (longest matching mount)."""
    best, kind = "", "?"
    path = os.path.realpath(path)
    with open("/proc/mounts") as f:
        for line in f:
            p = line.split()
            if len(p) >= 3 and (path == p[1] or path.startswith(p[1].rstrip("/") + "/")) and len(p[1]) >= len(best):
                best, kind = p[1], p[2]
    return kind


def pick_tmp_base():
    """Where the run directory and the raw launchers' directories go: tmpfs, like /run/qdm on a
    normal host (on disk, every file qdm creates per device model costs a journal write)."""
    if os.environ.get("BENCH_TMPDIR"):
        return os.environ["BENCH_TMPDIR"]
    for d in ("/run", "/dev/shm", "/tmp"):
        if os.path.isdir(d) and os.access(d, os.W_OK) and fs_type(d) == "tmpfs":
            return d
    return "/tmp"


TMP_BASE = None   # set by main(): pick_tmp_base()


def environ_of(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def ours(pid):
    """A process this run started: its command line names our temp dir (supervisors, restricted
    QEMUs, raw-launch's chroot) or our device-model name prefix (qdm's QEMUs), or it inherited
    TMPDIR=our temp dir (raw-launch and its QEMUs). Never matched by program name alone: other
    people's QEMUs and other runs of this benchmark are not ours."""
    if not TMP or pid == os.getpid():
        return False
    c = cmdline(pid)
    return bool(c) and (TMP in c or ("guest=" + NAME_PREFIX) in c or ("TMPDIR=" + TMP + "\0") in environ_of(pid))


def write_config(name, machine, accel, mode, timeout_s=None):
    # A start that hangs (see FINDINGS.md, the accept race) fails after 15 s instead of 60.
    cfg = {"name": name, "qemu": shutil.which(QEMU) or QEMU, "machine": machine, "accel": accel,
           "restrict": {"mode": mode}, "start_timeout_ms": (timeout_s or START_TIMEOUT_S) * 1000}
    if mode != "none":
        cfg["restrict"].update({"uid_min": UID_MIN, "uid_max": UID_MAX})
    path = os.path.join(TMP, "cfg", name + ".json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


def qdm_create(cfg):
    """(whole-process usec, qdm's own ready figure in usec)."""
    us, out = timed(qdm("create", "--paused", cfg))
    m = re.search(r"ready in ([0-9.]+) ms", out)
    if not m:
        raise Failure("qdm create printed no ready time: %r" % out)
    return us, float(m.group(1)) * 1000.0


def qdm_status_json(name):
    return json.loads(run(qdm("status", "--json", name)).stdout)


# ---- statistics and tables ---------------------------------------------------------------

def mmm(v):
    return min(v), statistics.median(v), max(v)


def fmt(x, unit):
    if x is None:
        return "-"
    if unit == "ms":
        return "%.2f" % (x / 1000.0)
    if unit == "us":
        return "%.0f" % x
    if unit == "cps":
        return "%.0f" % x
    if unit == "KiB":
        return "%.0f" % x
    if unit == "Ir" or unit == "B":
        return "{:,.0f}".format(x)
    if unit == "fds":
        return "%.1f" % x
    return "%g" % x


# What each unit of table() and the headline is called; "ms" and "us" both take microseconds.
UNIT_NAMES = {"ms": "ms", "us": "µs", "cps": "commands/s", "KiB": "KiB", "Ir": "Ir", "B": "bytes",
              "fds": "file descriptors"}


def verdict(ratio, higher_is_better):
    """How far qdm is from raw, in words; >10% behind is flagged."""
    behind = (1.0 / ratio - 1.0) if higher_is_better else (ratio - 1.0)
    if behind > 0.10:
        return "**%.0f%% behind**" % (behind * 100)
    if behind > 0:
        return "%.0f%% behind" % (behind * 100)
    return "%.0f%% ahead" % (-behind * 100)


ROWS_BEHIND = []  # (table, row, verdict) for the summary


def table(title, unit, rows, higher_is_better=False, qdm_label="qdm", raw_label="raw"):
    """rows: (label, qdm samples, raw samples). Returns markdown."""
    u = UNIT_NAMES.get(unit, unit)
    out = ["| %s | %s min | %s median | %s max | %s min | %s median | %s max | ratio %s/%s (medians) | |"
           % (title, qdm_label, qdm_label, qdm_label, raw_label, raw_label, raw_label, qdm_label, raw_label),
           "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for label, a, b in rows:
        if not a or not b:
            out.append("| %s | - | - | - | - | - | - | - | not measured |" % label)
            continue
        qa, qb = mmm(a), mmm(b)
        ratio = qa[1] / qb[1] if qb[1] else float("nan")
        v = verdict(ratio, higher_is_better)
        if v.startswith("**"):
            ROWS_BEHIND.append((title, label, v.strip("*")))
        out.append("| %s | %s | %s | %s | %s | %s | %s | %.3f | %s |" % (
            label, fmt(qa[0], unit), fmt(qa[1], unit), fmt(qa[2], unit),
            fmt(qb[0], unit), fmt(qb[1], unit), fmt(qb[2], unit), ratio, v))
    out.append("")
    out.append("Unit: %s; n = %s per cell%s." % (
        u, "/".join(sorted({str(len(a)) for _, a, _ in rows if a})),
        "; higher is better" if higher_is_better else "; lower is better"))
    return "\n".join(out) + "\n"


# ---- machine facts -------------------------------------------------------------------------

def kvm_usable():
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
        os.close(fd)
        return True
    except OSError:
        return False


JAIL_KVM = None   # jail_kvm()'s answer, decided once per run (other users' tests change /dev/kvm)
KVM_CHANGED = None  # (uid, gid, mode before, gid, mode we set) while kvm_udev_default() holds
KVM_NOTE = None     # what kvm_udev_default() did, for the report


def kvm_udev_default():
    """Give /dev/kvm udev's default on Debian (group kvm, mode 0660: 50-udev-default.rules)
    for the run when this host, which has no udev, left it root:root 0600: a jailed QEMU runs
    as its own uid and could otherwise not use KVM at all (and libvirt's QEMU, as its own
    user, neither). Restored by kvm_restore() if nobody changed it meanwhile. BENCH_KVM_UDEV=0
    leaves /dev/kvm alone (mode jail is then measured with TCG only)."""
    global KVM_CHANGED, KVM_NOTE
    if os.environ.get("BENCH_KVM_UDEV", "1") == "0" or not kvm_usable():
        return
    try:
        import grp
        kvm_gid = grp.getgrnam("kvm").gr_gid
        st = os.stat("/dev/kvm")
    except (KeyError, OSError):
        return
    mode = st.st_mode & 0o7777
    if st.st_gid == kvm_gid and (mode & 0o060) == 0o060:
        return
    new_mode = mode | 0o060
    os.chown("/dev/kvm", -1, kvm_gid)
    os.chmod("/dev/kvm", new_mode)
    KVM_CHANGED = (st.st_uid, st.st_gid, mode, kvm_gid, new_mode)
    KVM_NOTE = ("/dev/kvm was gid %d mode %04o (this host has no udev); it was given udev's default, "
                "group kvm mode %04o, for the run and restored at the end (BENCH_KVM_UDEV=0 to "
                "leave it)" % (st.st_gid, mode, new_mode))


def kvm_restore():
    global KVM_CHANGED
    if not KVM_CHANGED:
        return
    uid, gid, mode, our_gid, our_mode = KVM_CHANGED
    try:
        st = os.stat("/dev/kvm")
        if st.st_gid == our_gid and (st.st_mode & 0o7777) == our_mode:
            os.chown("/dev/kvm", uid, gid)
            os.chmod("/dev/kvm", mode)
        else:
            log("/dev/kvm was changed by someone else during the run; left as it is")
    except OSError as e:
        log("cannot restore /dev/kvm: %s" % e)
    KVM_CHANGED = None


def jail_kvm():
    """(usable, why not): a jailed QEMU runs as its own uid from its first instruction, so it
    can open /dev/kvm only through the world bits or a group other than root's (qdm.json(5)).
    Decided once per run, so that every section measures mode jail with the same accelerator."""
    global JAIL_KVM
    if JAIL_KVM is None:
        JAIL_KVM = _jail_kvm()
    return JAIL_KVM


def _jail_kvm():
    try:
        st = os.stat("/dev/kvm")
    except OSError as e:
        return False, "/dev/kvm: %s" % e.strerror
    if (st.st_mode & 0o006) == 0o006 or (st.st_gid != 0 and (st.st_mode & 0o060) == 0o060):
        return True, ""
    try:
        import grp
        group = grp.getgrgid(st.st_gid).gr_name
    except (KeyError, ImportError):
        group = str(st.st_gid)
    return False, ("/dev/kvm is root:%s mode %04o on this host, so a jailed QEMU (its own uid, no "
                   "capabilities) cannot open it and qdm refuses accel kvm in mode jail; the fix "
                   "(`chgrp kvm /dev/kvm && chmod 0660 /dev/kvm`, Debian's default) is one this "
                   "benchmark makes for the run unless BENCH_KVM_UDEV=0" % (group, st.st_mode & 0o7777))


def facts():
    f = {}
    f["nproc"] = os.cpu_count()
    f["affinity"] = len(os.sched_getaffinity(0))
    cpu, flags = "unknown", ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    f["cpu"] = cpu
    f["hypervisor"] = " hypervisor" in flags
    f["kernel"] = platform.release()
    with open("/proc/meminfo") as fh:
        f["mem_gib"] = int(fh.readline().split()[1]) / 1048576.0
    try:
        f["qemu"] = run([QEMU, "--version"]).stdout.splitlines()[0]
    except (Failure, OSError) as e:
        raise Failure("cannot run %s: %s" % (QEMU, e))
    f["kvm"] = kvm_usable()
    try:
        with open("/etc/debian_version") as fh:
            f["os"] = "Debian " + fh.read().strip()
    except OSError:
        f["os"] = platform.platform()
    g = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    d = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no", "--", "src", "include"],
                       capture_output=True, text=True)
    f["commit"] = (g.stdout.strip() or "unknown") + (" (with uncommitted changes under src/ or include/)" if d.stdout.strip() else "")
    f["load_start"] = os.getloadavg()
    f["foreign_qemu"] = sum(1 for p in all_pids() if "qemu-system" in cmdline(p) and not ours(p))
    f["tools"] = {t: bool(shutil.which(t)) for t in ("valgrind", "callgrind_annotate", "strace", "perf", "gnuplot")}
    f["busy_start"] = busy_others()
    return f


def proc_cpu_ticks():
    out = {}
    for pid in all_pids():
        try:
            with open("/proc/%d/stat" % pid) as fh:
                st = fh.read()
            rest = st[st.rindex(")") + 2:].split()
            out[pid] = (st[st.index("(") + 1:st.rindex(")")], int(rest[11]) + int(rest[12]))
        except (OSError, ValueError, IndexError):
            pass
    return out


def busy_others(seconds=1.0):
    """The processes (not ours) that used the most CPU over `seconds`, as "name 87%"."""
    a = proc_cpu_ticks()
    time.sleep(seconds)
    b = proc_cpu_ticks()
    hz = os.sysconf("SC_CLK_TCK")
    use = []
    for pid, (name, ticks) in b.items():
        if pid in a and pid != os.getpid() and not ours(pid):
            pct = (ticks - a[pid][1]) * 100.0 / hz / seconds
            if pct >= 5:
                use.append((pct, name))
    use.sort(reverse=True)
    return ["%s %.0f%%" % (n, p) for p, n in use[:4]]


# ---- 1. start to ready ---------------------------------------------------------------------

def raw_launch_once(argv):
    """raw-launch --hold --teardown: (spawn to its ready line, as a whole process; its own
    fork-to-prelaunch figure; its kill+reap+rmdir figure), all in microseconds."""
    t0 = time.perf_counter_ns()
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=RAW_ENV, text=True, start_new_session=True)
    LIVE_RAW.append(p)
    line = p.stdout.readline()          # raw-launch gives up on QEMU after --timeout
    wall = (time.perf_counter_ns() - t0) / 1000.0
    p.stdin.close()
    p.stdin = None   # communicate() must not flush it
    rest, err = p.communicate(timeout=START_TIMEOUT_S + 30)
    LIVE_RAW.remove(p)
    m = re.search(r"teardown (\d+)", rest)
    if p.returncode != 0 or not line.strip().isdigit() or not m:
        raise Failure("raw-launch failed (exit %s): %s" % (p.returncode, err.strip()[-500:]))
    return wall, float(line), float(m.group(1))


START_MODES = (("none", False), ("qemu", True), ("jail", True))   # qdm mode, raw --restricted


def mode_label(r):
    return "mode %s vs raw%s" % (r["mode"], " --restricted" if r["restricted"] else "")


def bench_start(accels):
    """Per machine, accel and qdm mode: RUNS pairs of (qdm create + qdm destroy, raw-launch).
    Returns the rows and, per mode, the whole-process time of its first (cold) create."""
    res = []
    first_cold = {}
    jail_kvm_ok, jail_kvm_why = jail_kvm()
    for machine in ("none", "q35"):
        for accel in accels:
            for mode, restricted in START_MODES:
                r = {"machine": machine, "accel": accel, "mode": mode, "restricted": restricted,
                     "qdm_wall": [], "qdm_lib": [], "qdm_destroy": [], "raw": [], "raw_wall": [],
                     "raw_teardown": [], "skipped": None}
                res.append(r)
                if mode == "jail" and accel == "kvm" and not jail_kvm_ok:
                    r["skipped"] = jail_kvm_why
                    log("start-to-ready: machine %s, accel kvm, mode jail: skipped (%s)"
                        % (machine, jail_kvm_why.split(",")[0]))
                    continue
                name = "%ss-%s-%s-%s" % (NAME_PREFIX, machine, accel, mode)
                cfg = write_config(name, machine, accel, mode)
                raw = [RAW_LAUNCH, "--qemu", shutil.which(QEMU) or QEMU, "--machine", machine,
                       "--accel", accel, "--hold", "--teardown", "--timeout", str(START_TIMEOUT_S)] + \
                      (["--restricted", "--runas", RAW_RUNAS] if restricted else [])
                log("start-to-ready: machine %s, accel %s, qdm mode %s vs raw%s (%d runs)"
                    % (machine, accel, mode, " --restricted" if restricted else "", RUNS))
                # One start of each, not counted: page cache, and qdm's per-binary probe cache
                # (the very first create of a mode in a run directory probes QEMU; a jail's
                # probe also lists the libraries, modules and firmware to bind-mount).
                what = "machine %s, %s, qdm mode %s / raw%s" % (machine, accel, mode,
                                                                 " --restricted" if restricted else "")
                if mode == "jail" and accel == "kvm":
                    # /dev/kvm may have been closed to jailed uids since the start of the run
                    # (other users' tests change its mode): then the row is skipped, not failed
                    # 20 times.
                    try:
                        a = qdm_create(cfg)
                    except Failure as e:
                        run(qdm("destroy", name), check=False)
                        if "/dev/kvm" not in str(e):
                            raise
                        r["skipped"] = ("/dev/kvm was open to a jailed uid at the start of the run but "
                                        "not when this row ran (another user changed its mode)")
                        log("start-to-ready: machine %s, accel kvm, mode jail: skipped (/dev/kvm closed meanwhile)"
                            % machine)
                        continue
                else:
                    a = guarded("qdm create (warm-up), " + what, qdm_create, cfg)
                if a and mode not in first_cold:
                    first_cold[mode] = a[0]
                run(qdm("destroy", name), check=False)
                guarded("raw-launch (warm-up), " + what, raw_launch_once, raw)
                for _ in range(RUNS):
                    a = guarded("qdm create, " + what, qdm_create, cfg)          # A
                    d = guarded("qdm destroy, " + what, timed, qdm("destroy", name))
                    b = guarded("raw-launch, " + what, raw_launch_once, raw)     # B
                    if a is None or d is None or b is None:
                        run(qdm("destroy", name), check=False)
                        continue                                              # the pair is left out
                    r["qdm_wall"].append(a[0])
                    r["qdm_lib"].append(a[1])
                    r["qdm_destroy"].append(d[0])
                    r["raw_wall"].append(b[0])
                    r["raw"].append(b[1])
                    r["raw_teardown"].append(b[2])
    return res, first_cold


# ---- 2. control latency, 3. throughput (on one qdm device model) ----------------------------

def bench_control(name, sock):
    log("control latency: %d rounds of qdm qmp/status/resume/pause/version vs raw-qmp --once/true" % CTL_RUNS)
    r = {k: [] for k in ("qmp", "raw_qmp", "status", "raw_status", "resume", "raw_cont", "pause",
                         "raw_stop", "version", "true", "raw_inproc")}
    once = [RAW_QMP, "--socket", sock, "--once"]

    def raw_once(key, *extra):
        us, out = timed(once + list(extra))
        r[key].append(us)
        r["raw_inproc"].append(float(kv(out.strip())["usec"]))

    true_bin = shutil.which("true") or "/bin/true"

    def q(key, *args):
        r[key].append(timed(qdm(*args))[0])

    # Every other round runs the raw side first, so that neither side always runs right after
    # the other's command (a resume or pause keeps the supervisor busy for a moment after it:
    # it logs the event and rewrites state.json). The guest state goes paused -> running ->
    # paused -> running -> paused either way.
    def one_round(i):
        if i % 2 == 0:
            q("qmp", "qmp", name, "query-status")
            raw_once("raw_qmp")
            q("status", "status", name)
            raw_once("raw_status")
            q("resume", "resume", name)                    # paused -> running
            raw_once("raw_stop", "--command", "stop")      # running -> paused
            raw_once("raw_cont", "--command", "cont")      # paused -> running
            q("pause", "pause", name)                      # running -> paused
        else:
            raw_once("raw_qmp")
            q("qmp", "qmp", name, "query-status")
            raw_once("raw_status")
            q("status", "status", name)
            raw_once("raw_cont", "--command", "cont")      # paused -> running
            q("pause", "pause", name)                      # running -> paused
            q("resume", "resume", name)                    # paused -> running
            raw_once("raw_stop", "--command", "stop")      # running -> paused
        return True

    # Exec overhead on its own, alternating, away from the rounds (whose resume/pause keep the
    # supervisor busy rewriting state.json for a moment afterwards).
    for _ in range(CTL_RUNS):
        r["version"].append(timed([QDM, "version"])[0])
        r["true"].append(timed([true_bin])[0])
    for i in range(CTL_RUNS):
        if guarded("control round", one_round, i) is None:
            # Leave the round out: trim every list back to the shortest complete length.
            keys = [k for k in r if k not in ("raw_inproc", "version", "true")]
            n = min(len(r[k]) for k in keys)
            for k in keys:
                del r[k][n:]
            run(qdm("pause", name), check=False)

    log("control latency in-process: %d x %d sessions each, raw-qmp vs bench-qmp-client" % (RUNS, LAT_PER_RUN))
    r["lat_raw"], r["lat_lib"] = [], []
    for _ in range(RUNS):
        outs = [guarded("in-process latency", run, [tool, "--socket", sock, "--latency", str(LAT_PER_RUN)])
                for tool in (RAW_QMP, LIB_CLIENT)]
        if None in outs:
            continue
        for key, p in zip(("lat_raw", "lat_lib"), outs):
            r[key] += [float(x) for x in kv(p.stdout.strip())["samples"].split(",")]
    return r


def bench_throughput(sock, wire):
    log("QMP throughput: %d runs x %d query-status, raw-qmp vs bench-qmp-client" % (RUNS, QMP_N))
    r = {k: [] for k in ("raw_seq", "lib_seq", "raw_pipe", "lib_pipe", "raw_seq_id", "lib_seq_timeout")}
    n = str(QMP_N)
    plan = (("raw_seq", [RAW_QMP, "--seq", n]), ("lib_seq", [LIB_CLIENT, "--seq", n]),
            ("raw_pipe", [RAW_QMP, "--pipe", n]), ("lib_pipe", [LIB_CLIENT, "--pipe", n]),
            ("raw_seq_id", [RAW_QMP, "--seq", n, "--id-prefix", wire["raw_prefix"]]),
            ("lib_seq_timeout", [LIB_CLIENT, "--seq", n, "--timeout-usec", "30000000"]))
    for _ in range(RUNS):
        outs = [guarded("throughput " + key, run, argv[:1] + ["--socket", sock] + argv[1:]) for key, argv in plan]
        if None in outs:
            continue
        for (key, _), p in zip(plan, outs):
            r[key].append(float(kv(p.stdout.strip())["cps"]))
    return r


def qemu_reads_per_byte(qemu_pid, sock):
    """strace -c on QEMU while raw-qmp sends 200 commands: recvmsg calls per byte sent."""
    if not shutil.which("strace"):
        return None
    out = os.path.join(TMP, "qemu-strace.txt")
    st = subprocess.Popen(["strace", "-c", "-f", "-e", "trace=recvmsg,read", "-o", out, "-p", str(qemu_pid)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        n = 200
        run([RAW_QMP, "--socket", sock, "--seq", str(n)])
        time.sleep(0.2)
    finally:
        st.send_signal(signal.SIGINT)
        st.wait(timeout=20)
    calls = None
    with open(out) as f:
        for line in f:
            p = line.split()
            if p and p[-1] == "recvmsg":
                calls = int(p[3] if len(p) >= 6 else p[-2])
    if calls is None:
        return None
    # greeting is written, not read; qmp_capabilities + n query-status are read
    sent = len('{"execute":"qmp_capabilities"}\n') + n * len('{"execute":"query-status"}\n')   # raw-qmp's
    return {"recvmsg": calls, "bytes": sent}


def capture_commands(argv, n=3):
    """The exact bytes a QMP client sends: run argv + ["--socket", S, "--seq", n] against a
    minimal QMP server of our own on S (greeting, then a reply to every line, echoing its id)
    and return the command lines it received, terminators included."""
    import socket
    import threading
    path = os.path.join(TMP, "capture.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(20)
    lines = []

    def serve():
        try:
            c, _ = srv.accept()
        except OSError:
            return
        with c:
            c.settimeout(20)
            c.sendall(b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, '
                      b'"package": ""}, "capabilities": ["oob"]}}\r\n')
            buf = b""
            while True:
                try:
                    d = c.recv(4096)
                except OSError:
                    return
                if not d:
                    return
                buf += d
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    lines.append(line + b"\n")
                    m = json.loads(line)
                    ret = ({"status": "prelaunch", "singlestep": False, "running": False}
                           if m.get("execute") == "query-status" else {})
                    rep = {"return": ret}
                    if "id" in m:
                        rep["id"] = m["id"]
                    c.sendall(json.dumps(rep).encode() + b"\r\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        p = run(argv[:1] + ["--socket", path, "--seq", str(n)] + argv[1:], check=False, timeout=30)
    finally:
        t.join(25)
        srv.close()
        os.unlink(path)
    if p.returncode != 0:
        raise Failure("capturing %s: exit %d: %s" % (os.path.basename(argv[0]), p.returncode, p.stderr.strip()[-300:]))
    return lines


def wire_bytes():
    """What libqdm puts on the wire per query-status, read from a capture, not assumed: the
    command line libqdm sent (with its id and terminator), the raw client's line without id, the
    id prefix's length (common to a connection's ids; the decimal serial follows), and the same
    for raw-qmp --id-prefix (a prefix of that length), which must come out byte for byte as long."""
    lib = [l for l in capture_commands([LIB_CLIENT]) if b'"query-status"' in l]
    raw = [l for l in capture_commands([RAW_QMP]) if b'"query-status"' in l]
    ids = [json.loads(l)["id"] for l in lib]
    prefix = os.path.commonprefix(ids)
    serials = [int(i[len(prefix):]) for i in ids]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    raw_prefix = "".join(alphabet[b % len(alphabet)] for b in os.urandom(len(prefix)))
    raw_id = [l for l in capture_commands([RAW_QMP, "--id-prefix", raw_prefix]) if b'"query-status"' in l]
    return {"lib_line": lib[0], "lib_serial": serials[0], "raw_line": raw[0], "raw_id_line": raw_id[0],
            "prefix_len": len(prefix), "raw_prefix": raw_prefix,
            "same_length": [len(x) for x in lib] == [len(x) for x in raw_id],
            "terminator": "\\r\\n" if lib[0].endswith(b"\r\n") else "\\n"}


def id_extra_bytes(wire, n):
    """Average bytes libqdm's id adds to a query-status over the serials of a --seq n run
    (2..n+1: qmp_capabilities is 1), from the captured line: its length at the captured serial,
    plus the serial's extra digits."""
    base = len(wire["lib_line"]) - len(wire["raw_line"]) - len(str(wire["lib_serial"]))
    return base + sum(len(str(i + 2)) for i in range(n)) / float(n)


# ---- 4. scale ------------------------------------------------------------------------------

def bench_scale(accel):
    machine = "q35"
    log("scale: %s parallel, %d runs, machine %s accel %s, qdm mode qemu vs raw --restricted"
        % ("/".join(map(str, SCALE_NS)), SCALE_RUNS, machine, accel))
    res = {n: {"qdm": [], "raw": [], "qdm_destroy": [], "sup_rss": [], "raw_rss": [],
               "qdm_qemu_rss": [], "raw_qemu_rss": [], "qdm_cpu": [], "raw_cpu": [],
               "qdm_qemu_cpu": [], "raw_qemu_cpu": []} for n in SCALE_NS}
    cfgs = [write_config("%sscale-%d" % (NAME_PREFIX, i), machine, accel, "qemu", SCALE_TIMEOUT_S)
            for i in range(max(SCALE_NS))]
    for i in range(SCALE_RUNS):
        for n in SCALE_NS:
            if n >= SCALE_BIG and i % SCALE_BIG_EVERY:
                continue   # the largest N in every other round only

            a = guarded("%d x qdm create in parallel" % n, scale_qdm, cfgs[:n])
            b = guarded("%d x raw-launch in parallel" % n, scale_raw, n, machine, accel)
            if a is None or b is None:
                continue   # the pair is left out
            for k, v in list(a.items()) + list(b.items()):
                if isinstance(v, list):
                    res[n][k] += v
                else:
                    res[n][k].append(v)
    return res


def scale_qdm(cfgs):
    """A: len(cfgs) x `qdm create --paused` released together; wait for all, then read each
    supervisor's and QEMU's RSS and CPU time, then destroy them all in parallel."""
    n = len(cfgs)
    out = {"qdm_cpu": [], "qdm_qemu_cpu": [], "sup_rss": [], "qdm_qemu_rss": []}
    procs, t0 = spawn_together([qdm("create", "--paused", c) for c in cfgs], stdout=subprocess.DEVNULL)
    cli_cpu, rcs = [], []
    for p in procs:
        # wait4, not wait: the CLI's own CPU time comes with its exit status.
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        rcs.append(p.returncode)
        cli_cpu.append((ru.ru_utime + ru.ru_stime) * 1e6)
    out["qdm"] = (time.perf_counter_ns() - t0) / 1000.0
    names = ["%sscale-%d" % (NAME_PREFIX, i) for i in range(n)]
    try:
        if any(rc != 0 for rc in rcs):
            raise Failure("%d of %d failed to start" % (sum(rc != 0 for rc in rcs), n))
        for nm, cc in zip(names, cli_cpu):
            st = qdm_status_json(nm)
            out["sup_rss"].append(vmrss_kib(st["supervisor_pid"]))
            out["qdm_qemu_rss"].append(vmrss_kib(st["qemu_pid"]))
            out["qdm_cpu"].append(cc + cpu_us(st["supervisor_pid"]))
            out["qdm_qemu_cpu"].append(cpu_us(st["qemu_pid"]))
    finally:
        t1 = time.perf_counter_ns()
        ds = [subprocess.Popen(qdm("destroy", nm), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True) for nm in names]
        for d in ds:
            d.wait()
        out["qdm_destroy"] = (time.perf_counter_ns() - t1) / 1000.0
    return out


def scale_raw(n, machine, accel):
    """B: n x raw-launch --restricted --hold released together; wait until each printed its
    ready line, read its RSS and CPU time and its QEMU's, then let them all go."""
    argv = [RAW_LAUNCH, "--qemu", shutil.which(QEMU) or QEMU, "--machine", machine, "--accel", accel,
            "--restricted", "--runas", RAW_RUNAS, "--hold", "--timeout", str(SCALE_TIMEOUT_S)]
    out = {"raw_rss": [], "raw_cpu": [], "raw_qemu_rss": [], "raw_qemu_cpu": []}
    try:
        procs, t0 = spawn_together([argv] * n, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   env=RAW_ENV, live=LIVE_RAW)
        lines = [p.stdout.readline() for p in procs]
        out["raw"] = (time.perf_counter_ns() - t0) / 1000.0
        if not all(l.strip().isdigit() for l in lines):
            raise Failure("%d of %d did not become ready" % (sum(not l.strip().isdigit() for l in lines), n))
        for p in procs:
            out["raw_rss"].append(vmrss_kib(p.pid))
            out["raw_cpu"].append(cpu_us(p.pid))
            kids = children_of(p.pid)
            if kids:
                out["raw_qemu_rss"].append(vmrss_kib(kids[0]))
                out["raw_qemu_cpu"].append(cpu_us(kids[0]))
    finally:
        release_raw()
    return out


def spawn_together(argvs, live=None, **kw):
    """Start every argv behind a barrier (a shell blocked reading a pipe that reaches EOF when
    we close its write end), so that the N processes start within microseconds of each other
    instead of one Popen at a time while the first ones already compete for the CPUs. Returns
    the processes and the time of the release (perf_counter_ns). The shell execs the command:
    its pid, and so the rusage and schedstat read later, are the command's (the shell's own
    start-up, well under a millisecond of CPU, is included on both sides)."""
    r, w = os.pipe()
    procs = []
    try:
        for argv in argvs:
            p = subprocess.Popen(["sh", "-c", 'read _ <&%d; exec %d<&-; exec "$@"' % (r, r), "sh"] + argv,
                                 pass_fds=(r,), stderr=subprocess.DEVNULL, text=True,
                                 start_new_session=True, **kw)
            procs.append(p)
            if live is not None:
                live.append(p)
        time.sleep(0.2 + 0.005 * len(argvs))   # let every shell reach its read
    finally:
        os.close(r)
        t0 = time.perf_counter_ns()
        os.close(w)
    return procs, t0


def release_raw():
    """Let every held raw-launch kill and reap its QEMU; force it if it will not."""
    for p in LIVE_RAW:
        try:
            if p.stdin:
                p.stdin.close()
        except OSError:
            pass
    for p in LIVE_RAW:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            for k in children_of(p.pid):
                os.kill(k, signal.SIGKILL)
            p.kill()
            p.wait()
        if p.stdout:
            p.stdout.close()
    LIVE_RAW.clear()


# ---- memory a process holds per device model ------------------------------------------------

def bench_mem(best_accel):
    """bench-dm-mem --lib K (libqdm, K device models in one process) against --raw K
    (raw-launch's code holding K QEMUs), per mode, MEM_RUNS alternating pairs. Heap bytes and
    fds per device model, from the program's own mallinfo2() and /proc/self/fd."""
    jail_accel = "tcg"   # the heap does not depend on it, and /dev/kvm's mode may change under us
    rows = []
    mem_run = os.path.join(TMP, "memrun")
    os.makedirs(mem_run, mode=0o700, exist_ok=True)
    for mode, restricted in START_MODES:
        accel = jail_accel if mode == "jail" else best_accel
        log("memory per device model: %d x %d, machine none, %s, mode %s vs raw%s"
            % (MEM_RUNS, MEM_K, accel, mode, " --restricted" if restricted else ""))
        common = ["--qemu", shutil.which(QEMU) or QEMU, "--machine", "none", "--accel", accel,
                  "--timeout-ms", str(SCALE_TIMEOUT_S * 1000)]
        lib = [DM_MEM, "--lib", str(MEM_K), "--run-dir", mem_run, "--mode", mode,
               "--name-prefix", NAME_PREFIX, "--uid-min", str(UID_MIN), "--uid-max", str(UID_MAX)] + common
        raw = [DM_MEM, "--raw", str(MEM_K)] + common + (["--restricted", "--runas", RAW_RUNAS] if restricted else [])
        r = {"mode": mode, "accel": accel, "restricted": restricted, "lib": [], "raw": [],
             "lib_fds": [], "raw_fds": [], "lib_kept": [], "raw_kept": []}
        for _ in range(MEM_RUNS):
            a = guarded("bench-dm-mem --lib, mode " + mode, run, lib, True, None, SCALE_TIMEOUT_S + 60)
            b = guarded("bench-dm-mem --raw, mode " + mode, run, raw, True, RAW_ENV, SCALE_TIMEOUT_S + 60)
            if a is None or b is None:
                continue
            for side, p in (("lib", a), ("raw", b)):
                d = kv(p.stdout.strip())
                r[side].append(float(d["per_dm_bytes"]))
                r[side + "_fds"].append(float(d["fds_per_dm"]))
                r[side + "_kept"].append(float(d["heap_after"]) - float(d["heap_before"]))
        rows.append(r)
    return rows


# ---- 5. callgrind --------------------------------------------------------------------------

def callgrind_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise Failure("no totals in " + path)


def bench_callgrind(sock):
    if not shutil.which("valgrind"):
        return None
    log("callgrind: Ir per query-status, library vs raw (%d - %d commands)" % (CG_BIG, CG_SMALL))
    res = {}
    for key, tool in (("lib", LIB_CLIENT), ("raw", RAW_QMP)):
        totals = {}
        for n in (CG_BIG, CG_SMALL):
            out = os.path.join(TMP, "callgrind.%s.%d" % (key, n))
            run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, tool, "--socket", sock,
                 "--seq", str(n)], timeout=600)
            totals[n] = callgrind_total(out)
        res[key] = (totals[CG_BIG] - totals[CG_SMALL]) / float(CG_BIG - CG_SMALL)
    top = ""
    if shutil.which("callgrind_annotate"):
        p = run(["callgrind_annotate", "--threshold=95", os.path.join(TMP, "callgrind.lib.%d" % CG_BIG)], check=False)
        lines = []
        started = False
        for line in p.stdout.splitlines():
            if re.match(r"^-+$", line.strip()) and started and lines:
                break
            if "file:function" in line:
                started = True
                continue
            if started and line.strip() and not line.startswith("--"):
                # Short names: "file.c:function [libfoo.so]".
                line = re.sub(r"\[([^\]]*/)?([^/\]]+)\]", r"[\2]", line.rstrip())
                line = re.sub(r"(\s)(\S*/)([^/\s]+:)", r"\1\3", line)
                lines.append(line)
        top = "\n".join(lines[:14])
    res["top"] = top
    return res


# ---- 6. where the start time goes (a syscall timeline) ------------------------------------

TRACE_SYSCALLS = "execve,clone,clone3,flock,bind,unshare,accept4,sendmsg,recvfrom,kill,exit_group"
TL_REPS = 1 if QUICK else 8
STRACE_RE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(\w+)\((.*)$")
PERF_RE = re.compile(r"^\s*([\d.]+) \(\s*[\d.]*\s*(?:ms)?\s*\): (\S+)/(\d+)\s+(?:\.\.\. \[continued\]: )?(\w+)\((.*)$")


def perf_trace_works():
    if not shutil.which("perf"):
        return False
    out = os.path.join(TMP, "perf-check.txt")
    p = subprocess.run(["perf", "trace", "-o", out, "-e", "exit_group", "true"], capture_output=True)
    try:
        with open(out) as f:
            return p.returncode == 0 and "exit_group" in f.read()
    except OSError:
        return False


def parse_trace(path, tool):
    """Syscall entries as [pid, time (s), name, text]; for perf, the "[continued]" line of a
    split syscall is appended to its entry's text, for strace "resumed" lines go to `rest`."""
    ev, rest, seen = [], [], {}
    with open(path) as f:
        for line in f:
            if tool == "perf":
                m = PERF_RE.match(line)
                if not m:
                    continue
                key = (int(m.group(3)), m.group(1), m.group(4))
                if key in seen:
                    seen[key][3] += line
                    continue
                e = [int(m.group(3)), float(m.group(1)) / 1000.0, m.group(4), line]
                seen[key] = e
                ev.append(e)
            else:
                m = STRACE_RE.match(line)
                if m:
                    ev.append([int(m.group(1)), float(m.group(2)), m.group(3), line])
                else:
                    rest.append(line)
    ev.sort(key=lambda e: e[1])
    return ev, rest


def clone_child(e, rest):
    m = re.search(r"\)\s+=\s+(\d+)", e[3])
    if m:
        return int(m.group(1))
    for line in rest:
        p = line.split()
        if p and p[0].isdigit() and int(p[0]) == e[0] and "clone" in line and "resumed>" in line:
            m = re.search(r"\)\s+=\s+(\d+)", line)
            if m:
                return int(m.group(1))
    return None


def first(ev, pred, after=0.0):
    for e in ev:
        if e[1] >= after and pred(e):
            return e
    return None


def qdm_phases(ev, rest, t0):
    cli = first(ev, lambda e: e[2] in ("clone", "clone3"))[0]   # the first fork is the CLI's
    fork_sup = first(ev, lambda e: e[0] == cli and e[2] in ("clone", "clone3"))
    sup = clone_child(fork_sup, rest)
    exec_sup = first(ev, lambda e: e[0] == sup and e[2] == "execve")
    lock = first(ev, lambda e: e[0] == sup and e[2] == "flock", exec_sup[1])
    bind = first(ev, lambda e: e[0] == sup and e[2] == "bind", exec_sup[1])
    fork_q = first(ev, lambda e: e[0] == sup and e[2] in ("clone", "clone3"), bind[1])
    qpid = clone_child(fork_q, rest)
    exec_q = first(ev, lambda e: e[0] == qpid and e[2] == "execve", fork_q[1])
    greet = first(ev, lambda e: e[0] not in (sup, cli) and e[2] == "sendmsg", exec_q[1])
    exit_cli = first(ev, lambda e: e[0] == cli and e[2] == "exit_group")
    reply = [e for e in ev if e[0] == sup and e[2] == "recvfrom" and e[1] <= exit_cli[1]][-1]
    return [
        ("qdm create: exec, read + validate the config, fork the supervisor", t0, fork_sup[1]),
        ("supervisor: fork + exec of the qdm binary", fork_sup[1], exec_sup[1]),
        ("supervisor: dynamic linking, config, context, probe cache, up to the uid lock", exec_sup[1], lock[1]),
        ("uid lookups (NSS; a /proc scan only after an unclean release), runtime dir, empty root, up to bind()", lock[1], bind[1]),
        ("control socket, event socketpair, logs, up to the fork of QEMU", bind[1], fork_q[1]),
        ("child: namespaces, rlimits, capabilities, exec of QEMU", fork_q[1], exec_q[1]),
        ("QEMU: initialisation up to its first greeting", exec_q[1], greet[1]),
        ("greeting, qmp_capabilities, query-status (both monitors)", greet[1], reply[1]),
        ("record state.json, report, qdm create exits", reply[1], exit_cli[1]),
    ]


def raw_phases(ev, rest, t0):
    rl = first(ev, lambda e: e[2] in ("clone", "clone3"))[0]
    rfork = first(ev, lambda e: e[0] == rl and e[2] in ("clone", "clone3"))
    rchild = clone_child(rfork, rest)
    rexec = first(ev, lambda e: e[0] == rchild and e[2] == "execve", rfork[1])
    rgreet = first(ev, lambda e: e[0] != rl and e[2] == "sendmsg", rexec[1])
    rkill = first(ev, lambda e: e[0] == rl and e[2] == "kill", rgreet[1])
    return [
        ("raw-launch: fork, exec of QEMU", rfork[1], rexec[1]),
        ("QEMU: initialisation up to its first greeting", rexec[1], rgreet[1]),
        ("greeting, qmp_capabilities, query-status", rgreet[1], rkill[1]),
    ]


def traced(tool, out, argv, env=None, until_line=None):
    """Run argv under the tracer. With until_line, return once the workload printed a line
    (strace follows the supervisor, which outlives `qdm create`); the caller ends it."""
    if tool == "perf":
        pre = ["perf", "trace", "-o", out, "-e", TRACE_SYSCALLS]
    else:
        pre = ["strace", "-f", "--seccomp-bpf", "-ttt", "-e", "trace=" + TRACE_SYSCALLS, "-o", out]
    p = subprocess.Popen(pre + argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = p.stdout.readline()
    return p, line


def trace_start(accel):
    """qdm create (mode qemu, machine none) and raw-launch --restricted under a syscall
    tracer, TL_REPS times each; the median of each phase."""
    tool = "perf" if perf_trace_works() else ("strace" if shutil.which("strace") else None)
    if not tool:
        return None
    log("timeline: %d x qdm create --paused and raw-launch --restricted under %s" %
        (TL_REPS, "perf trace" if tool == "perf" else "strace --seccomp-bpf"))
    name = NAME_PREFIX + "trace"
    cfg = write_config(name, "none", accel, "qemu")
    qruns, rruns, unparsed = [], [], []
    try:
        for i in range(TL_REPS):
            out_q = os.path.join(TMP, "trace-qdm-%d.txt" % i)
            p, line = traced(tool, out_q, qdm("create", "--paused", cfg))
            try:
                if "ready" not in line:
                    raise Failure("traced qdm create printed %r" % line)
                if tool == "perf":
                    p.wait(timeout=60)
            finally:
                run(qdm("destroy", name), check=False)
                try:
                    p.wait(timeout=30)   # strace ends with the supervisor
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                p.stdout.close()
            out_r = os.path.join(TMP, "trace-raw-%d.txt" % i)
            p, line = traced(tool, out_r, [RAW_LAUNCH, "--qemu", shutil.which(QEMU) or QEMU, "--machine", "none",
                                           "--accel", accel, "--restricted", "--runas", RAW_RUNAS,
                                           "--timeout", str(START_TIMEOUT_S)], env=RAW_ENV)
            p.wait(timeout=60)
            p.stdout.close()
            # A trace the tracer lost events of (it happens under load) is left out alone.
            try:
                ev, rest = parse_trace(out_q, tool)
                qruns.append(qdm_phases(ev, rest, 0.0 if tool == "perf" else ev[0][1]))
            except (AttributeError, IndexError, TypeError, ValueError) as e:
                unparsed.append("qdm run %d: %s" % (i, e))
            try:
                ev, rest = parse_trace(out_r, tool)
                rruns.append(raw_phases(ev, rest, ev[0][1]))
            except (AttributeError, IndexError, TypeError, ValueError) as e:
                unparsed.append("raw run %d: %s" % (i, e))
    except (AttributeError, IndexError, TypeError, ValueError) as e:
        log("timeline: could not parse the %s output (%s); skipped" % (tool, e))
        return None
    if unparsed:
        log("timeline: left out %d unparsable trace(s): %s" % (len(unparsed), "; ".join(unparsed)))
    if not qruns or not rruns:
        log("timeline: no parsable %s output; skipped" % tool)
        return None

    def med(runs):
        return [(runs[0][k][0], min((r[k][2] - r[k][1]) * 1000.0 for r in runs),
                 statistics.median((r[k][2] - r[k][1]) * 1000.0 for r in runs))
                for k in range(len(runs[0]))]
    return {"tool": tool, "qdm": med(qruns), "raw": med(rruns), "procs": len(all_pids()),
            "n": (len(qruns), len(rruns))}


# ---- plots ---------------------------------------------------------------------------------

def gp_quote(text):
    """A gnuplot double-quoted string ("\\n" inside it is a line break)."""
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def png_terminal():
    """pngcairo (anti-aliased) when this gnuplot has it, else the plain png terminal."""
    p = subprocess.run(["gnuplot", "-e", "set terminal pngcairo"], capture_output=True, text=True)
    if p.returncode == 0 and not p.stderr.strip():
        return "pngcairo", "font 'sans,10'"
    return "png", "font 'sans' 9"


def gnuplot(script, path, made):
    p = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if p.returncode == 0 and os.path.exists(path):
        made.append(path)
    else:
        log("gnuplot failed for %s: %s" % (os.path.basename(path), p.stderr.strip()[-300:]))


def bar_plot(made, term, fname, title, ylabel, rows, a_label, b_label, scale=1.0, width=None, fmt_v="%.1f",
             note=None):
    """Grouped bars, A (qdm) next to B (raw) per row: the median as the bar, min..max as the
    whisker, the median's value above the whisker. rows: (label, a samples, b samples); a
    label's "\n" breaks the tick label. Rows without samples are left out."""
    rows = [r for r in rows if r[1] and r[2]]
    if not rows:
        return
    path = os.path.join(PLOT_DIR, fname)
    dat = os.path.join(TMP, fname + ".dat")
    top = 0.0
    with open(dat, "w") as f:
        for i, (label, a, b) in enumerate(rows):
            qa, qb = mmm([x / scale for x in a]), mmm([x / scale for x in b])
            top = max(top, qa[2], qb[2])
            f.write("%d %g %g %g %g %g %g\n" % (i, qa[1], qa[0], qa[2], qb[1], qb[0], qb[2]))
    w = width or max(640, 150 + 105 * len(rows))
    tics = ", ".join("%s %d" % (gp_quote(r[0]), i) for i, r in enumerate(rows))
    lines = max(r[0].count("\n") for r in rows) + 1
    script = """
set terminal %(term)s size %(w)d,500 %(font)s
set output %(out)s
set title %(title)s
set ylabel %(ylabel)s
set yrange [0:%(ymax)g]
set style fill solid 0.75 border -1
set boxwidth 0.36
set bmargin %(bm)d
set xtics nomirror scale 0 (%(tics)s)
set ytics nomirror
set grid ytics lc rgb '#dddddd'
set xrange [-0.6:%(xmax)g]
set key above
set termoption noenhanced
%(note)s
plot %(dat)s using ($1-0.19):2 with boxes lc rgb '#3a6ea5' title %(a)s, \\
     '' using ($1-0.19):2:3:4:2 with candlesticks lc rgb 'black' fs empty notitle whiskerbars 0.5, \\
     '' using ($1-0.19):4:(sprintf('%(vf)s', $2)) with labels offset 0,0.7 font ',8' notitle, \\
     '' using ($1+0.19):5 with boxes lc rgb '#e08a2c' title %(b)s, \\
     '' using ($1+0.19):5:6:7:5 with candlesticks lc rgb 'black' fs empty notitle whiskerbars 0.5, \\
     '' using ($1+0.19):7:(sprintf('%(vf)s', $5)) with labels offset 0,0.7 font ',8' notitle
""" % {"term": term[0], "font": term[1], "w": w, "out": gp_quote(path), "title": gp_quote(title),
       "ylabel": gp_quote(ylabel), "ymax": top * 1.25 if top > 0 else 1, "bm": 2 + lines,
       "tics": tics, "xmax": len(rows) - 0.4, "dat": gp_quote(dat), "a": gp_quote(a_label),
       "b": gp_quote(b_label), "vf": fmt_v,
       "note": ("set label 1 %s at graph 0.99, graph 0.97 right font ',9'" % gp_quote(note)) if note else ""}
    gnuplot(script, path, made)


PLOT_NAMES = ("start-to-ready.png", "start-to-ready-inside.png", "teardown.png", "control-latency.png",
              "throughput.png", "scale.png", "scale-memory.png", "memory-per-dm.png",
              "start-to-ready.svg", "scale.svg")   # the last two: written by earlier versions


def plots(start, scale, ctl, thr, mem):
    if not shutil.which("gnuplot"):
        msg = "gnuplot is not installed (apt-get install gnuplot-nox): plots skipped"
        print("bench: " + msg, file=sys.stderr)
        return [], msg
    os.makedirs(PLOT_DIR, exist_ok=True)
    for old in PLOT_NAMES:   # what an earlier run (or an older run.py) left there
        try:
            os.unlink(os.path.join(PLOT_DIR, old))
        except FileNotFoundError:
            pass
    term = png_terminal()
    made = []
    wl = "whiskers: min..max, n = %d per bar" % RUNS
    jail_note = None if jail_kvm()[0] else "mode jail: TCG only (/dev/kvm is closed to a jailed uid on this host)"

    def slabel(r):
        return "machine %s\n%s\nmode %s" % (r["machine"], r["accel"], r["mode"])
    bar_plot(made, term, "start-to-ready.png",
             "Start to ready, whole process (median; %s)" % wl, "milliseconds (lower is better)",
             [(slabel(r), r["qdm_wall"], r["raw_wall"]) for r in start],
             "qdm create --paused", "raw-launch (--restricted for modes qemu and jail)", scale=1000.0,
             note=jail_note)
    bar_plot(made, term, "start-to-ready-inside.png",
             "Start to ready, inside the process (median; %s)" % wl, "milliseconds (lower is better)",
             [(slabel(r), r["qdm_lib"], r["raw"]) for r in start],
             "qdm_dm_start() to READY", "raw-launch: fork to the prelaunch reply", scale=1000.0, note=jail_note)
    bar_plot(made, term, "teardown.png",
             "Teardown (median; %s)" % wl, "milliseconds (lower is better)",
             [(slabel(r), r["qdm_destroy"], r["raw_teardown"]) for r in start],
             "qdm destroy (whole process)", "raw-launch: SIGKILL + waitpid + rmdir", scale=1000.0, note=jail_note)
    if ctl:
        bar_plot(made, term, "control-latency.png",
                 "Control latency: commands as whole processes (n = %d each), one in-process session (n = %d)\n"
                 "(median; whiskers: min..max)" % (len(ctl["qmp"]), len(ctl["lat_lib"])),
                 "milliseconds (lower is better)",
                 [("qdm qmp\nquery-status", ctl["qmp"], ctl["raw_qmp"]),
                  ("qdm status", ctl["status"], ctl["raw_status"]),
                  ("qdm resume\n(raw: cont)", ctl["resume"], ctl["raw_cont"]),
                  ("qdm pause\n(raw: stop)", ctl["pause"], ctl["raw_stop"]),
                  ("qdm version\n(raw: true)", ctl["version"], ctl["true"]),
                  ("in-process\nsession", ctl["lat_lib"], ctl["lat_raw"])],
                 "qdm / libqdm", "raw-qmp --once (raw-qmp --latency for the session)", scale=1000.0,
                 fmt_v="%.2f")
    if thr:
        bar_plot(made, term, "throughput.png",
                 "QMP throughput, %d query-status per run (median; whiskers: min..max, n = %d)"
                 % (QMP_N, len(thr["lib_seq"])), "commands per second (higher is better)",
                 [("sequential", thr["lib_seq"], thr["raw_seq"]),
                  ("pipelined", thr["lib_pipe"], thr["raw_pipe"]),
                  ("sequential,\nraw sends\nlibqdm's id bytes", thr["lib_seq"], thr["raw_seq_id"]),
                  ("sequential,\n30 s deadline\nper command", thr["lib_seq_timeout"], thr["raw_seq"])],
                 "libqdm (bench-qmp-client)", "raw-qmp", fmt_v="%.0f")
    if scale:
        dat = os.path.join(TMP, "scale.dat")
        ns = [n for n in SCALE_NS if scale[n]["qdm"] and scale[n]["raw"]]
        with open(dat, "w") as f:
            for n in ns:
                a, b = mmm([x / 1000 for x in scale[n]["qdm"]]), mmm([x / 1000 for x in scale[n]["raw"]])
                f.write("%d %f %f %f %f %f %f\n" % (n, a[1], a[0], a[2], b[1], b[0], b[2]))
        path = os.path.join(PLOT_DIR, "scale.png")
        script = """
set terminal %s size 760,500 %s
set output %s
set title "N device models (q35, mode qemu) started at once: wall time until all are ready\\n(median; whiskers: min..max)"
set xlabel 'N device models started together (log scale)'
set ylabel 'milliseconds (lower is better)'
set key top left opaque box
set termoption noenhanced
set logscale x 2
set xtics (%s)
set grid lc rgb '#dddddd'
set xrange [0.8:%g]
set yrange [0:*]
plot %s using 1:2:3:4 with yerrorlines lw 2 pt 7 lc rgb '#3a6ea5' title 'qdm create --paused x N', \\
     '' using 1:5:6:7 with yerrorlines lw 2 pt 5 lc rgb '#e08a2c' title 'raw-launch --restricted x N', \\
     '' using 1:2:(sprintf('%%.0f', $2)) with labels offset -2.5,0.8 font ',8' notitle, \\
     '' using 1:5:(sprintf('%%.0f', $5)) with labels offset 2.5,-0.8 font ',8' notitle
""" % (term[0], term[1], gp_quote(path), ", ".join("'%d' %d" % (n, n) for n in ns), max(ns) * 1.25 if ns else 80,
       gp_quote(dat))
        if ns:
            gnuplot(script, path, made)
        bar_plot(made, term, "scale-memory.png",
                 "Resident memory (VmRSS) of each device model's parent process (median; whiskers: min..max)",
                 "KiB (lower is better)",
                 [("N = %d" % n, [x for x in scale[n]["sup_rss"] if x], [x for x in scale[n]["raw_rss"] if x])
                  for n in SCALE_NS], "qdm supervisor", "raw-launch --restricted --hold", fmt_v="%.0f")
    if mem:
        bar_plot(made, term, "memory-per-dm.png",
                 "Heap a process holds per ready device model (median; whiskers: min..max)",
                 "KiB per device model (lower is better)",
                 [("mode %s\n%s" % (r["mode"], r["accel"]), r["lib"], r["raw"]) for r in mem],
                 "libqdm (K device models in one process)",
                 "raw-launch's code (bench_qemu + bench_conn, 64 KiB line buffer)", scale=1024.0)
    return made, None


# ---- cleanup and the leftover check --------------------------------------------------------

def cleanup():
    libvirt_cleanup()
    kvm_restore()
    release_raw()
    if RUN_DIR and os.path.isdir(RUN_DIR):
        p = subprocess.run(qdm("list"), capture_output=True, text=True)
        for line in p.stdout.splitlines()[1:]:
            nm = line.split()[0] if line.split() else ""
            if nm:
                subprocess.run(qdm("destroy", nm), capture_output=True)
    # Anything of ours still alive (an interrupted run): supervisors first, then QEMUs.
    for _ in range(2):
        for pid in all_pids():
            c = cmdline(pid)
            if ours(pid) and ("__supervise" in c or "qemu-system" in c or "raw-launch" in c
                              or "bench-dm-mem" in c):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.2)
    if TMP and os.path.isdir(TMP):
        shutil.rmtree(TMP, ignore_errors=True)
    remove_our_uid_locks()


UID_LOCK_DIR = "/run/qdm/.uids"   # host-wide, whatever the run directory (QDM_UID_LOCK_DIR)
UID_LOCKS_BEFORE = None


def uid_locks():
    try:
        return set(os.listdir(UID_LOCK_DIR))
    except OSError:
        return set()


UID_DIRS_BEFORE = {}


def remove_our_uid_locks():
    """qdm keeps a lock file per uid it ever handed out; remove those of our range that this
    run created (nobody else uses the range, and none is held once everything is destroyed),
    and the lock directories if this run created them and they are empty again."""
    if UID_LOCKS_BEFORE is None:
        return
    for fn in uid_locks() - UID_LOCKS_BEFORE:
        m = re.match(r"^uid-(\d+)\.lock$", fn)
        if m and UID_MIN <= int(m.group(1)) <= UID_MAX:
            try:
                os.unlink(os.path.join(UID_LOCK_DIR, fn))
            except OSError:
                pass
    for d in (UID_LOCK_DIR, os.path.dirname(UID_LOCK_DIR)):
        if not UID_DIRS_BEFORE.get(d, True):
            try:
                os.rmdir(d)   # only if empty
            except OSError:
                pass


def leftovers():
    left = []
    for pid in all_pids():
        c = cmdline(pid)
        if ours(pid):
            left.append("pid %d: %s" % (pid, c[:160]))
    if TMP and os.path.exists(TMP):
        left.append("directory %s" % TMP)
    if UID_LOCKS_BEFORE is not None:
        ours_left = [fn for fn in uid_locks() - UID_LOCKS_BEFORE
                     if re.match(r"^uid-(\d+)\.lock$", fn) and UID_MIN <= int(fn[4:-5]) <= UID_MAX]
        if ours_left:
            left.append("uid lock files %s in %s" % (", ".join(sorted(ours_left)), UID_LOCK_DIR))
    return left


# ---- the report ----------------------------------------------------------------------------

def write_report(f, start, first_cold, ctl, thr, reads, wire, scale, mem, cg, timeline, lv, plot_files,
                 plot_msg, elapsed, best_accel, left):
    L = []
    w = L.append
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    w("# qdm performance\n")
    w("Generated by `bench/run.py` on %s%s. Do not edit by hand: rerun it.\n" %
      (now, " — **BENCH_QUICK smoke run: too few samples to quote**" if QUICK else ""))
    w("Every qdm figure below is paired with a raw baseline measured in the same run, the two "
      "alternating A B A B; each cell is min / median / max over the runs, and the ratio is "
      "qdm's median over raw's. A row more than 10% behind raw is marked in bold and explained in "
      "[Where the time goes](#where-the-time-goes). The benchmark asserts nothing.\n")
    w("## Machine and run\n")
    w("| | |\n|---|---|")
    w("| CPUs | %d (%d usable by this process) |" % (f["nproc"], f["affinity"]))
    w("| CPU model | %s%s |" % (f["cpu"], " (virtual machine: the hypervisor flag is set)" if f["hypervisor"] else ""))
    w("| memory | %.1f GiB |" % f["mem_gib"])
    w("| OS, kernel | %s, Linux %s |" % (f["os"], f["kernel"]))
    w("| QEMU | %s |" % f["qemu"])
    w("| KVM | %s |" % ("usable (/dev/kvm opens read-write): KVM and TCG measured" if f["kvm"]
                         else "not usable: TCG only"))
    w("| qdm | commit %s, built `%s` by meson (buildtype debugoptimized, -O2 -g) |" % (f["commit"], os.path.relpath(BUILD, ROOT)))
    w("| other load | load average %.2f at the start, %.2f at the end; QEMU processes of other "
      "users running at the start: %d; CPU used by other processes at the start: %s; at the "
      "end: %s |" % (f["load_start"][0], os.getloadavg()[0], f["foreign_qemu"],
                     ", ".join(f["busy_start"]) or "none above 5%",
                     ", ".join(f.get("busy_end", [])) or "none above 5%"))
    w("| files | run directory and the raw launchers' directories under %s (%s; qdm's default /run/qdm "
      "is tmpfs on a normal host) |" % (TMP_BASE, fs_type(TMP_BASE)))
    if KVM_NOTE:
        w("| /dev/kvm | %s |" % KVM_NOTE)
    jk = jail_kvm()
    if not jk[0]:
        w("| mode jail | measured with TCG only: %s |" % jk[1])
    w("| tools | %s |" % ", ".join("%s %s" % (k, "yes" if v else "no") for k, v in f["tools"].items()))
    w("| duration | %.0f s (%s) |" % (elapsed, "BENCH_QUICK=1" if QUICK else "BENCH_RUNS=%d" % RUNS))
    w("")
    w("Reproduce (from the repository root, as root, since restricted mode needs it):\n")
    w("```sh\n%spython3 bench/run.py\n```\n" % ("BENCH_QUICK=1 " if QUICK else ("BENCH_RUNS=%d " % RUNS if RUNS != 20 else "")))
    w("It builds `build-bench/` (meson setup + ninja) if needed, runs everything below, writes "
      "this file%s, and checks that it left no process or directory behind. `BENCH_QUICK=1` is a "
      "smoke run of about 20 seconds (written to build-bench/PERFORMANCE-quick.md); "
      "`BENCH_LIBVIRT=0` skips the libvirt section. Other engineers run "
      "tests on this machine at the same time, so medians are quoted, not means; the whiskers "
      "show the noise.\n" % (" and the plots" if plot_files else ""))

    # headline
    med = statistics.median
    w("## Headline\n")
    w("| figure | qdm (median) | raw (median) | qdm/raw |\n|---|---:|---:|---:|")

    def hl(label, a, b, unit):
        """unit as in table(): "ms" and "us" take microseconds."""
        if a and b:
            u = UNIT_NAMES.get(unit, unit)
            w("| %s | %s %s | %s %s | %.2f |" % (label, fmt(med(a), unit), u, fmt(med(b), unit), u,
                                                 med(a) / med(b)))

    def start_hl(r, inside=False):
        if inside:
            hl("the same, inside the process (`qdm_dm_start()` vs fork-to-reply), q35 %s, mode %s"
               % (r["accel"], r["mode"]), r["qdm_lib"], r["raw"], "ms")
        else:
            hl("start to ready, q35 %s, %s, whole process" % (r["accel"], mode_label(r)),
               r["qdm_wall"], r["raw_wall"], "ms")
    # q35 with the best accelerator; mode jail where it was measured (TCG when KVM is closed to it).
    heads = [r for r in start if r["machine"] == "q35" and r["accel"] == best_accel and r["qdm_wall"]]
    if not any(r["mode"] == "jail" for r in heads):
        heads += [r for r in start if r["machine"] == "q35" and r["mode"] == "jail" and r["qdm_wall"]][:1]
    for r in heads:
        start_hl(r)
    for r in heads:
        start_hl(r, inside=True)
    hl("`qdm qmp NAME query-status` vs raw-qmp --once (whole process)", ctl["qmp"], ctl["raw_qmp"], "ms")
    hl("control session in-process (connect .. query-status .. close)", ctl["lat_lib"], ctl["lat_raw"], "us")
    hl("sequential query-status throughput (higher is better)", thr["lib_seq"], thr["raw_seq"], "cps")
    if scale:
        for top in sorted({32, max(SCALE_NS)}):
            if top in scale:
                hl("%d device models started at once, until all ready" % top, scale[top]["qdm"],
                   scale[top]["raw"], "ms")
        hl("resident memory of the parent: supervisor vs raw-launch",
           [x for n in SCALE_NS for x in scale[n]["sup_rss"] if x],
           [x for n in SCALE_NS for x in scale[n]["raw_rss"] if x], "KiB")
    for r in mem or []:
        if r["mode"] == "qemu":
            hl("heap held per ready device model: libqdm vs raw-launch's code (mode qemu)", r["lib"], r["raw"], "B")
    for row in (lv or {}).get("headline", []):
        try:
            hl(*row)
        except (TypeError, ValueError, ZeroDivisionError, statistics.StatisticsError) as e:
            log("libvirt headline row %r: %s" % (row[:1], e))
    w("")

    # 1
    w("## 1. Start to ready\n")
    w("`qdm create --paused CONFIG` (the CLI, the supervisor it forks, the library's start, "
      "state.json and the report back), followed by `qdm destroy`, against `raw-launch`: "
      "socket+bind+listen, fork, exec QEMU with the listening fd at 3, greeting, "
      "qmp_capabilities, query-status until `prelaunch`, printing the microseconds from just "
      "before fork to that reply. Each is timed twice: as a whole process from this script, and "
      "inside (qdm's own \"ready in\", raw-launch's printed figure). "
      "Both answer the same question (R1: a paused QEMU that has answered `prelaunch`). "
      "qdm mode `none` is paired with plain raw-launch; qdm mode `qemu` (libxl-compatible "
      "restriction) with `raw-launch --restricted` (the same -chroot/-runas/-sandbox options, "
      "without qdm's pre-exec namespaces, rlimits and capability cut); qdm mode `jail` (qdm drops "
      "every privilege itself before exec: a uid of its own, new mount/IPC/UTS namespaces, a "
      "tmpfs root holding read-only bind mounts of exactly what QEMU needs, pivot_root, no "
      "capabilities, `-sandbox` with elevateprivileges=deny) with the same `raw-launch "
      "--restricted`, the least code that gives QEMU a uid, a chroot and a sandbox. %d runs per "
      "row, plus one unmeasured warm-up of each.\n" % RUNS)
    rows = []
    for r in start:
        rows.append(("machine %s, %s, %s" % (r["machine"], r["accel"], mode_label(r)), r["qdm_wall"], r["raw_wall"]))
    w(table("start to ready, whole process", "ms", rows, qdm_label="qdm create", raw_label="raw-launch"))
    w("What it means: the time a caller waits from spawning the command to knowing the device "
      "model is paused and proven ready: `qdm create` until it exits, raw-launch until its ready "
      "line arrives (read by this script; raw-launch keeps QEMU until told, then tears it down). "
      "Both include spawning a process (the `true` row of section 2). qdm also passes "
      "`-no-user-config` and a second, event-only monitor that raw-launch does not.\n")
    for why in dict.fromkeys(r["skipped"] for r in start if r["skipped"]):
        w("Not measured (mode jail with KVM): %s.\n" % why)
    rows = []
    for r in start:
        rows.append(("machine %s, %s, %s" % (r["machine"], r["accel"], mode_label(r)), r["qdm_lib"], r["raw"]))
    w(table("start to ready, inside the process", "ms", rows, qdm_label="qdm_dm_start", raw_label="raw-launch"))
    w("What it means: the same starts, timed inside: for qdm the library's own "
      "`qdm_dm_start()` to READY (the \"ready in\" that `qdm create` prints: uid allocation, probe "
      "cache, runtime directory, socket, spawn with restrictions, QMP readiness), for raw-launch "
      "its figure from just before fork to the `prelaunch` reply. The difference between the two "
      "tables is what the processes around them add.\n")
    if first_cold:
        w("The first `qdm create` of each mode in this run's fresh run directory (the QEMU probe "
          "cache is cold for it; a jail's probe also resolves the libraries, modules and firmware "
          "it bind-mounts) took: %s. Not in the tables (warm-ups).\n"
          % ", ".join("mode %s %.1f ms" % (m, v / 1000) for m, v in first_cold.items()))
    rows = []
    for r in start:
        rows.append(("machine %s, %s, mode %s" % (r["machine"], r["accel"], r["mode"]), r["qdm_destroy"], r["raw_teardown"]))
    w(table("teardown", "ms", rows, qdm_label="qdm destroy", raw_label="raw kill"))
    w("What it means: `qdm destroy NAME` as a whole process, spawn included (lock, SIGTERM to the "
      "supervisor, which SIGKILLs QEMU, reaps it, kills any process left with its uid and removes "
      "the directory; in mode jail QEMU's mount namespace, and with it the tmpfs root and its bind "
      "mounts, goes away with QEMU) against raw-launch's SIGKILL + waitpid + rmdir, timed inside raw-launch. "
      "QEMU's own death after SIGKILL is inside both: with KVM and q35 it took anywhere between "
      "about 3 and 25 ms on this host (KVM tearing the VM down), so those rows are bimodal and "
      "their medians say more about that than about either side.\n")

    # 2
    w("## 2. Control latency\n")
    w("On one device model started by qdm (mode qemu, machine none, %s), alternating: each "
      "whole-process `qdm` command and `raw-qmp --once` with the same command (a process that "
      "connects, reads the greeting, negotiates, runs it and closes), the raw side first in "
      "every other round. %d rounds.\n" % (best_accel, CTL_RUNS))
    w(table("whole process", "us", [
        ("`qdm qmp NAME query-status` vs raw query-status", ctl["qmp"], ctl["raw_qmp"]),
        ("`qdm status NAME` vs raw query-status", ctl["status"], ctl["raw_status"]),
        ("`qdm resume NAME` vs raw cont", ctl["resume"], ctl["raw_cont"]),
        ("`qdm pause NAME` vs raw stop", ctl["pause"], ctl["raw_stop"]),
        ("`qdm version` vs `true` (exec overhead only)", ctl["version"], ctl["true"]),
    ], qdm_label="qdm", raw_label="raw"))
    med_true = statistics.median(ctl["true"])
    w("What it means: what an operator or a script pays per command. Spawning a trivial process "
      "(`true`) costs %.0f µs here and is inside every figure; `qdm version` shows what loading "
      "the qdm binary and its libraries adds before any work. Inside raw-qmp's process the "
      "session itself took %.0f µs (median).\n" % (med_true, statistics.median(ctl["raw_inproc"])))
    w(table("in-process session", "us", [
        ("connect, greeting, capabilities, query-status, close", ctl["lat_lib"], ctl["lat_raw"]),
    ], qdm_label="libqdm", raw_label="raw-qmp"))
    w("What it means: the raw control latency without process start-up: a new connection, the "
      "greeting, qmp_capabilities, one query-status and the close (libqdm: `qdm_qmp_connect`, "
      "`qdm_qmp_wait_ready`, `qdm_qmp_execute`, unref and drain, on one context). %d sessions "
      "per invocation, %d invocations of each, alternating.\n" % (LAT_PER_RUN, RUNS))

    # 3
    w("## 3. QMP throughput\n")
    w("On the same device model: %d query-status per run on one negotiated connection, %d runs, "
      "each tool in turn. Sequential: the next command is sent when the previous reply is in "
      "(libqdm: from the reply callback). Pipelined: all sent at once, then every reply read.\n"
      % (QMP_N, RUNS))
    w(table("throughput", "cps", [
        ("sequential: libqdm vs raw-qmp", thr["lib_seq"], thr["raw_seq"]),
        ("pipelined: libqdm vs raw-qmp", thr["lib_pipe"], thr["raw_pipe"]),
        ("sequential: libqdm vs raw-qmp sending libqdm's id bytes", thr["lib_seq"], thr["raw_seq_id"]),
        ("sequential, 30 s deadline per command: libqdm vs raw-qmp", thr["lib_seq_timeout"], thr["raw_seq"]),
    ], higher_is_better=True, qdm_label="libqdm", raw_label="raw"))
    us_raw = 1e6 / statistics.median(thr["raw_seq"])
    us_id = 1e6 / statistics.median(thr["raw_seq_id"])
    us_lib = 1e6 / statistics.median(thr["lib_seq"])
    extra = id_extra_bytes(wire, QMP_N)
    per_byte = (us_id - us_raw) / extra
    w("What it means: commands per second one client gets from one QEMU monitor. A raw "
      "query-status round trip takes %.0f µs; with the %.1f bytes of libqdm's id added to each "
      "command (on average over this run's serials), the same raw loop takes %.0f µs (%.1f µs per "
      "extra byte), and libqdm %.0f µs. The target was libqdm >= 0.95 of raw for sequential.\n"
      % (us_raw, extra, us_id, per_byte, us_lib))
    w("The bytes, captured at the start of this run from each client talking to a minimal QMP "
      "server of this script (not assumed from the code): libqdm sent `%s` (%d bytes, an id of "
      "a %d-character per-connection random prefix and the decimal serial, ended by `%s`); "
      "raw-qmp sends `%s` (%d bytes), and with `--id-prefix` `%s` (%d bytes)%s.\n"
      % (wire["lib_line"].decode().rstrip("\r\n"), len(wire["lib_line"]), wire["prefix_len"], wire["terminator"],
         wire["raw_line"].decode().rstrip("\r\n"), len(wire["raw_line"]),
         wire["raw_id_line"].decode().rstrip("\r\n"), len(wire["raw_id_line"]),
         ": the same length as libqdm's, serial for serial" if wire["same_length"]
         else ": **not the same length as libqdm's** (the third row compares unequal bytes)"))
    if reads:
        w("QEMU read the %d bytes of qmp_capabilities + 200 query-status with %d recvmsg calls "
          "(strace -c on QEMU): **%.2f bytes per read**. See [Where the time goes](#where-the-time-goes).\n"
          % (reads["bytes"], reads["recvmsg"], reads["bytes"] / float(reads["recvmsg"])))

    # 4
    if scale:
        w("## 4. Scale: N device models at once\n")
        w("N `qdm create --paused` started together as background processes (machine q35, %s, "
          "mode qemu), wall time until all have exited ready; against N `raw-launch --restricted "
          "--hold` started together, wall time until all printed their ready line. Then all "
          "destroyed. %d runs per N (N = %d: %d, in every other round), alternating qdm and raw "
          "at each N. The qdm side's start deadline is %d s here.\n"
          % (best_accel, SCALE_RUNS, SCALE_BIG, len(scale[SCALE_BIG]["qdm"]) if SCALE_BIG in scale else 0,
             SCALE_TIMEOUT_S))
        w(table("N in parallel", "ms", [("N = %d" % n, scale[n]["qdm"], scale[n]["raw"]) for n in SCALE_NS],
                qdm_label="qdm", raw_label="raw"))
        w("What it means: how starting many device models at once (a host booting its guests) "
          "scales on %d CPUs; with N above the CPU count both are bound by QEMU's own "
          "initialisation competing for the CPUs.\n" % f["affinity"])
        sup = [x for n in SCALE_NS for x in scale[n]["sup_rss"] if x]
        rawr = [x for n in SCALE_NS for x in scale[n]["raw_rss"] if x]
        qq = [x for n in SCALE_NS for x in scale[n]["qdm_qemu_rss"] if x]
        rq = [x for n in SCALE_NS for x in scale[n]["raw_qemu_rss"] if x]
        w(table("resident memory (VmRSS)", "KiB", [
            ("parent process: qdm supervisor vs raw-launch --hold", sup, rawr),
            ("its QEMU (for scale)", qq, rq),
        ], qdm_label="qdm", raw_label="raw"))
        w("What it means: what each running device model costs in memory besides QEMU: the "
          "supervisor that reaps QEMU, logs its stderr and events and records its end (from "
          "/proc/PID/status of the supervisor_pid in `qdm status --json`), against the least "
          "possible parent, raw-launch holding its QEMU. All device models of all runs.\n")
        rows = []
        for n in SCALE_NS:
            rows.append(("N = %d, outside QEMU: qdm create + its supervisor vs raw-launch" % n,
                         scale[n]["qdm_cpu"], scale[n]["raw_cpu"]))
        for n in SCALE_NS:
            rows.append(("N = %d, QEMU until ready" % n, scale[n]["qdm_qemu_cpu"], scale[n]["raw_qemu_cpu"]))
        w(table("CPU time per start", "us", rows, qdm_label="qdm", raw_label="raw"))
        w("What it means: the CPU each start costs, which is what N parallel starts compete for "
          "once N exceeds the CPUs: `qdm create`'s own time (rusage from wait4) plus its "
          "supervisor's, against raw-launch's; and QEMU's (both from /proc/PID/task/*/schedstat, "
          "read once all were ready).\n")
        dd = [("N = %d" % n, scale[n]["qdm_destroy"]) for n in SCALE_NS]
        w("Destroying them all in parallel (`qdm destroy` x N) took, median: %s.\n" %
          ", ".join("%s: %.0f ms" % (l, statistics.median(v) / 1000) for l, v in dd if v))
    if mem:
        w("### Memory a process holds per device model\n")
        w("`bench-dm-mem` (bench/bench-dm-mem.c) starts %d device models at once in one process and "
          "waits until all are ready, then reads its own heap (glibc `mallinfo2()`: `uordblks` + "
          "`hblkhd`, the bytes in use from malloc, mmap'd chunks included) and open file "
          "descriptors, against the same before the starts; the difference divided by %d is one "
          "sample. `--lib`: libqdm's public API (`qdm_config_new_from_json`, `qdm_dm_new`, "
          "`qdm_dm_start` on one `qdm_ctx`; the caller's config reference is dropped, the device "
          "model keeps its own). `--raw`: raw-launch's own code from bench/bench-util.h, each QEMU "
          "with a `bench_qemu` (paths, listening fd, pid) and a `bench_conn` (the connected "
          "control socket and raw-launch's 64 KiB line buffer) kept on the heap. Each side first "
          "starts and tears down one device model unmeasured, so one-time costs (libqdm's probe "
          "cache, NSS modules, json-c's and stdio's first allocations) are not counted per device "
          "model. Machine none; %d runs per row, alternating.\n" % (MEM_K, MEM_K, MEM_RUNS))
        w(table("heap per ready device model", "B",
                [("mode %s, %s vs raw%s" % (r["mode"], r["accel"], " --restricted" if r["restricted"] else ""),
                  r["lib"], r["raw"]) for r in mem], qdm_label="libqdm", raw_label="raw"))
        w(table("file descriptors per ready device model", "fds",
                [("mode %s, %s vs raw%s" % (r["mode"], r["accel"], " --restricted" if r["restricted"] else ""),
                  r["lib_fds"], r["raw_fds"]) for r in mem], qdm_label="libqdm", raw_label="raw"))
        kept = [x for r in mem for x in r["lib_kept"]]
        w("What it means: what an embedding toolstack's process holds for each device model it "
          "keeps ready (libqdm: the device model, its configuration, its control and event QMP "
          "clients with their buffers, loop sources, the uid lock), against what the least "
          "launcher holds. Counted: heap bytes in use and file descriptors. Not counted: QEMU's "
          "own memory (another process; see the VmRSS table), kernel memory behind the fds "
          "(socket buffers, pidfd, epoll and timer entries), the libraries' code and data "
          "(mapped once per process, whatever K), and the stack. raw's heap is dominated by its "
          "64 KiB line buffer, a size chosen for QMP replies, not a minimum. After tearing all "
          "%d down again libqdm's heap was %s bytes above where it started (median; the loop's "
          "grown tables, not per device model).\n"
          % (MEM_K, "{:,.0f}".format(statistics.median(kept)) if kept else "?"))

    # 5
    w("## 5. Instructions per command (callgrind)\n")
    if cg:
        w("`valgrind --tool=callgrind` on the client process only, sequential query-status on the "
          "same device model; Ir per command = (Ir for %d commands - Ir for %d) / %d, so start-up "
          "and connection cancel out.\n" % (CG_BIG, CG_SMALL, CG_BIG - CG_SMALL))
        w("| client | Ir per query-status | ratio libqdm/raw |\n|---|---:|---:|")
        w("| libqdm (bench-qmp-client) | %s | %.1f |" % (fmt(cg["lib"], "Ir"), cg["lib"] / cg["raw"]))
        w("| raw-qmp | %s | 1.0 |\n" % fmt(cg["raw"], "Ir"))
        w("What it means: the CPU work the library does per command (JSON serialisation and "
          "parsing, validation, id matching, the epoll loop) against a write + read-one-line "
          "loop. At 0.3-1 ns per instruction, %s Ir is %.1f-%.1f µs of CPU, small next to "
          "QEMU's round trip in section 3.\n" % (fmt(cg["lib"], "Ir"), cg["lib"] * 0.3 / 1000.0,
                                                  cg["lib"] / 1000.0))
        if cg.get("top"):
            w("Where libqdm's instructions go (callgrind_annotate, %d commands, self cost, top "
              "functions):\n\n```\n%s\n```\n" % (CG_BIG, cg["top"]))
    else:
        w("valgrind is not installed: skipped.\n")

    # 6
    w("## 6. libvirt\n")
    if lv and lv.get("markdown"):
        md = lv["markdown"].strip()
        w((md[md.index("\n") + 1:].strip() if md.startswith("## ") else md) + "\n")
    else:
        w("skipped: %s\n" % " ".join(str((lv or {}).get("reason") or "not run").split()))

    # where the time goes
    w("## Where the time goes\n")
    if ROWS_BEHIND:
        w("Rows more than 10% behind raw in this run:\n")
        for t in dict.fromkeys(t for t, _, _ in ROWS_BEHIND):
            w("- %s: %s" % (t, "; ".join("%s (%s)" % (r, v) for tt, r, v in ROWS_BEHIND if tt == t)))
        w("")
    else:
        w("No row is more than 10% behind raw in this run.\n")
    w("### What this run's own figures say\n")
    med = statistics.median
    w("- **Bytes on the monitor.** QEMU's QMP monitor took %.1f µs per extra request byte "
      "(raw-qmp with and without libqdm's id). libqdm's id adds %.1f bytes per command (captured, "
      "section 3), so %.0f µs of every round trip; against the raw loop sending the same bytes "
      "libqdm's ratio is %.2f, i.e. the library's own code is not what separates it from raw. "
      "At this rate libqdm reaches 0.95 of raw sequential throughput only if a command carries "
      "at most %.1f extra bytes; an id costs at least `,\"id\":\"\"` (8 bytes) plus its "
      "prefix (%d characters) and serial."
      % (per_byte, extra, per_byte * extra, med(thr["lib_seq"]) / med(thr["raw_seq_id"]),
         us_raw * (1 / 0.95 - 1) / per_byte if per_byte > 0 else float("nan"), wire["prefix_len"]))
    done = [r for r in start if r["qdm_wall"] and r["raw_wall"]]
    diffs = [med(r["qdm_wall"]) - med(r["qdm_lib"]) for r in done]
    rdiffs = [med(r["raw_wall"]) - med(r["raw"]) for r in done]
    if diffs:
        w("- **The processes around the start.** `qdm create` spends %.1f-%.1f ms outside "
          "`qdm_dm_start()` (median whole process minus median \"ready in\", per row: spawning "
          "`qdm create`, validating, forking and exec'ing the supervisor, state.json, the report "
          "pipe, exit); raw-launch spends %.1f-%.1f ms outside its fork-to-reply figure (spawn, "
          "exec, socket setup, printing)."
          % (min(diffs) / 1000, max(diffs) / 1000, min(rdiffs) / 1000, max(rdiffs) / 1000))
    by = {(r["machine"], r["accel"], r["mode"]): r for r in done}

    def mode_gap(mode, base):
        """Medians of (mode - base) over the machine/accel pairs where both were measured:
        library start, raw start, whole-process start, destroy."""
        out = ([], [], [], [])
        for (m, a, md), r in by.items():
            if md == mode and (m, a, base) in by:
                p0 = by[(m, a, base)]
                out[0].append(med(r["qdm_lib"]) - med(p0["qdm_lib"]))
                out[1].append(med(r["raw"]) - med(p0["raw"]))
                out[2].append(med(r["qdm_wall"]) - med(p0["qdm_wall"]))
                out[3].append(med(r["qdm_destroy"]) - med(p0["qdm_destroy"]))
        return [med(x) / 1000 if x else None for x in out]
    q = mode_gap("qemu", "none")
    if q[0] is not None:
        w("- **Restriction.** Mode `qemu` costs the library %.1f ms more than mode `none` (median "
          "over the machine/accel pairs), while the same QEMU options cost raw-launch %.1f ms: "
          "the rest is qdm's uid allocation (an flock, NSS lookups; the /proc scan only for a "
          "uid whose last holder did not release it cleanly) and its pre-exec measures "
          "(namespaces, rlimits, capabilities). Destroying a restricted device model takes "
          "%.1f ms more than an unrestricted one (sweeping what is left of the uid: a forked "
          "helper's kill(-1) and a /proc scan, then the clean mark)."
          % (q[0], q[1], q[3]))
    # Jail against qemu, each row over its own raw pair (measured alongside it, so a burst of
    # other users' load that hits one row does not read as a difference between the modes).
    excess = {}
    for (m, a, md), r in by.items():
        if md in ("qemu", "jail") and (m, a, "jail") in by and (m, a, "qemu") in by:
            excess.setdefault(md, []).append((med(r["qdm_lib"]) - med(r["raw"]),
                                              med(r["qdm_wall"]) - med(r["raw_wall"]),
                                              med(r["qdm_destroy"]) - med(r["raw_teardown"])))
    if excess.get("jail"):
        accs = sorted({a for (m, a, md) in by if md == "jail"})

        def ex(md, k):
            return med([x[k] for x in excess[md]]) / 1000
        w("- **Jail.** Over the same `raw-launch --restricted`, mode `jail` adds %.1f ms inside the "
          "library (%.1f ms as a whole process) where mode `qemu` adds %.1f ms (%.1f ms), median "
          "over the machine/%s rows where both were measured: the difference is the jail's "
          "preparation in the parent (the libraries, modules and firmware to bind, from the "
          "cache after the first start of a binary, every entry's identity checked) and, "
          "between fork and exec, the mount namespace with its tmpfs root and "
          "read-only bind mounts, pivot_root and the credential and capability changes qdm does "
          "instead of QEMU. Destroy adds %.1f ms over raw in mode `jail`, %.1f ms in mode `qemu`."
          % (ex("jail", 0), ex("jail", 1), ex("qemu", 0), ex("qemu", 1), "/".join(accs),
             ex("jail", 2), ex("qemu", 2)))
    if scale:
        qc = [x for n in SCALE_NS for x in scale[n]["qdm_cpu"]]
        rc = [x for n in SCALE_NS for x in scale[n]["raw_cpu"]]
        tops = [n for n in SCALE_NS if scale[n]["qdm"] and scale[n]["raw"]]
        if qc and rc and tops:
            qc, rc, top = med(qc), med(rc), max(tops)
            w("- **Scale.** Each qdm start burns %.1f ms of CPU outside QEMU against raw-launch's "
              "%.1f ms; with %d starts on %d CPUs that alone is about %.0f ms of the %.0f ms "
              "difference at N = %d."
              % (qc / 1000, rc / 1000, top, f["affinity"], (qc - rc) * top / f["affinity"] / 1000,
                 (med(scale[top]["qdm"]) - med(scale[top]["raw"])) / 1000, top))
    w("")
    if timeline:
        w("### The start, phase by phase\n")
        how = ("`perf trace` (kernel tracepoints: a small cost per traced syscall, none for the "
               "others)" if timeline["tool"] == "perf" else
               "`strace -f --seccomp-bpf` (a ptrace stop per traced syscall and per fork)")
        w("`qdm create --paused` (mode qemu, machine none, %s) and `raw-launch --restricted`, %s "
          "times each under %s, tracing only %s. A phase runs from one traced syscall to the "
          "next, so it holds everything untraced in between, including time the process spent "
          "preempted: the minimum over the runs is the better estimate of a phase's own cost, "
          "the median shows what contention added. Tracing inflates the totals a little. %d "
          "processes were running on the host at the end.\n"
          % (best_accel, ("%d" % TL_REPS) if timeline["n"] == (TL_REPS, TL_REPS) else
             "%d (of which %d and %d traces were complete enough to use)" % ((TL_REPS,) + timeline["n"]),
             how, TRACE_SYSCALLS.replace(",", ", "), timeline["procs"]))
        for who, label in (("qdm", "qdm create"), ("raw", "raw-launch --restricted")):
            w("| phase (%s) | min ms | median ms |\n|---|---:|---:|" % label)
            for ph, lo, mid in timeline[who]:
                w("| %s | %.2f | %.2f |" % (ph, lo, mid))
            w("| **sum** | **%.2f** | **%.2f** |\n" % (sum(x[1] for x in timeline[who]),
                                                     sum(x[2] for x in timeline[who])))
    fnd = os.path.join(ROOT, "bench", "FINDINGS.md")
    if os.path.exists(fnd):
        with open(fnd) as fh:
            w(fh.read().strip() + "\n")

    if plot_files:
        w("## Plots\n")
        for p in plot_files:
            w("![%s](%s)\n" % (os.path.basename(p), os.path.relpath(p, os.path.dirname(os.path.abspath(OUT)))))
    elif plot_msg:
        w("Plots: %s.\n" % plot_msg)

    w("## Failures\n")
    if FAILURES:
        w("These failed during the run; each affected pair (or round) is left out of the figures "
          "above:\n")
        for m in FAILURES:
            w("- %s" % m)
        w("")
    else:
        w("Nothing failed during the run.\n")
    w("## Leftovers\n")
    w("After the run: %s.\n" % ("no process and no directory of the benchmark was left" if not left
                                else "**left behind: " + "; ".join(left) + "**"))
    return "\n".join(L)


# ---- main ----------------------------------------------------------------------------------

def build():
    if not os.path.exists(os.path.join(BUILD, "build.ninja")):
        log("meson setup %s" % BUILD)
        run(["meson", "setup", BUILD, ROOT], timeout=600)
    # Only what the benchmark runs: a test that does not compile is not our concern here.
    targets = [os.path.relpath(b, BUILD) for b in (QDM, RAW_LAUNCH, RAW_QMP, LIB_CLIENT, DM_MEM)]
    log("ninja -C %s %s" % (BUILD, " ".join(targets)))
    run(["ninja", "-C", BUILD] + targets, timeout=1200)
    for b in (QDM, RAW_LAUNCH, RAW_QMP, LIB_CLIENT, DM_MEM):
        if not os.access(b, os.X_OK):
            raise Failure("%s was not built" % b)


# ---- the libvirt section (bench/bench_libvirt.py, written separately) ----------------------

LIBVIRT = None   # the imported bench_libvirt module, once main() loaded it


def libvirt_ctx(best_accel):
    """What bench_libvirt.measure() gets: this run's settings, tools and helpers."""
    return {
        "runs": RUNS, "quick": QUICK, "accel": best_accel, "qemu": shutil.which(QEMU) or QEMU,
        "raw_launch": RAW_LAUNCH, "raw_qmp": RAW_QMP, "bench_client": LIB_CLIENT,
        "qdm": qdm, "write_config": write_config, "qdm_create": qdm_create,
        "raw_launch_once": raw_launch_once, "spawn_together": spawn_together,
        "tmp": TMP, "log": log, "name_prefix": NAME_PREFIX, "raw_env": RAW_ENV,
        "raw_runas": RAW_RUNAS, "start_timeout_s": START_TIMEOUT_S,
    }


def bench_libvirt_section(best_accel):
    """{"markdown", "headline"} from the plug-in, or {"reason"} when it was skipped or failed.
    Never fatal: a failure is noted and the rest of the report stands."""
    global LIBVIRT
    if os.environ.get("BENCH_LIBVIRT", "") == "0":
        return {"reason": "BENCH_LIBVIRT=0"}
    sys.dont_write_bytecode = True   # no bench/__pycache__ left in the tree
    bench_dir = os.path.dirname(os.path.abspath(__file__))
    if bench_dir not in sys.path:
        sys.path.insert(0, bench_dir)
    try:
        import bench_libvirt
    except ImportError as e:
        return {"reason": "bench/bench_libvirt.py is not available (%s)" % e}
    except Exception as e:   # a plug-in that does not even import: say so, carry on
        return {"reason": "bench/bench_libvirt.py failed to import: %s: %s" % (type(e).__name__, e)}
    LIBVIRT = bench_libvirt
    try:
        ok, why = bench_libvirt.available()
    except Exception as e:
        return {"reason": "bench_libvirt.available() failed: %s: %s" % (type(e).__name__, e)}
    if not ok:
        return {"reason": why or "bench_libvirt.available() said no"}
    log("libvirt: measuring (bench/bench_libvirt.py)")
    try:
        results = bench_libvirt.measure(libvirt_ctx(best_accel))
        md, head = bench_libvirt.render(results, table)
    except KeyboardInterrupt:
        raise
    except Exception as e:
        note_failure("libvirt section", "%s: %s" % (type(e).__name__, e))
        return {"reason": "failed: %s: %s" % (type(e).__name__, e)}
    finally:
        libvirt_cleanup()
    return {"markdown": md, "headline": list(head or [])}


def libvirt_cleanup():
    if LIBVIRT is None:
        return
    try:
        LIBVIRT.cleanup()
    except Exception as e:
        log("bench_libvirt.cleanup() failed: %s: %s" % (type(e).__name__, e))


def on_signal(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main():
    global TMP, RUN_DIR, RAW_ENV, UID_LOCKS_BEFORE, TMP_BASE
    # `import run` (from bench_libvirt, say) must get this module with this run's state, not a
    # second, pristine copy of it.
    sys.modules.setdefault("run", sys.modules[__name__])
    if os.geteuid() != 0:
        print("bench: restricted mode needs root; run as root", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        build()
        kvm_udev_default()
        f = facts()
    except Failure as e:
        print("bench: %s" % e, file=sys.stderr)
        return 1
    accels = ["kvm", "tcg"] if f["kvm"] else ["tcg"]
    best = accels[0]
    TMP_BASE = pick_tmp_base()
    UID_LOCKS_BEFORE = uid_locks()
    for d in (UID_LOCK_DIR, os.path.dirname(UID_LOCK_DIR)):
        UID_DIRS_BEFORE[d] = os.path.isdir(d)
    TMP = tempfile.mkdtemp(prefix="qdm-bench.", dir=TMP_BASE)
    RUN_DIR = os.path.join(TMP, "run")
    os.makedirs(os.path.join(TMP, "cfg"))
    RAW_ENV = dict(os.environ, TMPDIR=TMP)
    left = []
    rc = 0
    lv = None
    try:
        wire = wire_bytes()
        start, first_cold = bench_start(accels)

        name = NAME_PREFIX + "ctl"
        cfg = write_config(name, "none", best, "qemu")
        if guarded("qdm create of the control device model", qdm_create, cfg) is None:
            run(qdm("destroy", name), check=False)
            qdm_create(cfg)
        sock = os.path.join(RUN_DIR, name, "qmp.sock")
        qemu_pid = qdm_status_json(name)["qemu_pid"]
        try:
            ctl = bench_control(name, sock)
            thr = bench_throughput(sock, wire)
            reads = qemu_reads_per_byte(qemu_pid, sock)
            cg = bench_callgrind(sock)
        finally:
            run(qdm("destroy", name), check=False)

        scale = bench_scale(best)
        mem = bench_mem(best)
        timeline = trace_start(best)
        lv = bench_libvirt_section(best)   # last: it is slow
        plot_files, plot_msg = plots(start, scale, ctl, thr, mem)
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        rc = 130
    except (Failure, subprocess.TimeoutExpired, OSError) as e:
        log("failed: %s" % e)
        rc = 1
    finally:
        cleanup()
        left = leftovers()
    if left:
        log("LEFT BEHIND: " + "; ".join(left))
        rc = rc or 1
    if rc != 0:
        return rc
    f["busy_end"] = busy_others()
    elapsed = time.monotonic() - T_START
    text = write_report(f, start, first_cold, ctl, thr, reads, wire, scale, mem, cg, timeline, lv, plot_files,
                        plot_msg, elapsed, best, left)
    os.makedirs(os.path.dirname(os.path.abspath(OUT)), exist_ok=True)
    with open(OUT, "w") as fh:
        fh.write(text)
    log("wrote %s (%.0f s); nothing left behind" % (OUT, elapsed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
