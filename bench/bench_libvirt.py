#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""libvirt, side by side: the same questions asked of libvirt, qdm and the raw baselines.

Three columns in every row, measured in the same loop and alternating A B C (qdm, libvirt,
raw), reported as min/median/max with the ratios of the medians:

1. start to paused-and-ready: `qdm create --paused CFG` (mode qemu, q35) | `virsh create
   --paused dom.xml` (a transient domain) | `raw-launch --restricted --hold` (q35), each a whole
   process; then `qdm destroy` | `virsh destroy` | raw-launch's own kill+reap+rmdir.
2. resume and pause of a paused guest: `qdm resume`/`qdm pause` | `virsh resume`/`virsh
   suspend` | `raw-qmp --once --command cont`/`stop` (on qdm's QEMU, as run.py does).
3. one relayed query-status as a whole process: `qdm qmp NAME query-status` | `virsh
   qemu-monitor-command NAME '{"execute":"query-status"}'` | `raw-qmp --once`; and throughput
   on one long-lived client: libqdm's bench-qmp-client --seq N | one `virsh` reading N
   qemu-monitor-command lines from stdin | raw-qmp --seq N (plus python3-libvirt's
   qemuMonitorCommand in a loop when python3-libvirt happens to be installed).
4. 10 creates released together from a barrier, wall time until all returned.

Used by bench/run.py (available(), measure(ctx), render(results, table), cleanup()), or on its
own from the repository root, as root: `python3 bench/bench_libvirt.py` (BENCH_RUNS and
BENCH_QUICK as for run.py; the markdown goes to stdout, progress to stderr).

What this module starts and changes, and why (everything is undone by cleanup()):

- If no libvirtd answers on /run/libvirt/libvirt-sock, it starts its own `virtlogd` (unless one
  already answers on /run/libvirt/virtlogd-sock: libvirt's QEMU stdio goes through it) and its
  own `libvirtd -f PRIVATE.conf`, whose only settings are a private socket directory under the
  benchmark's temp dir and a warnings-only log file there. /etc/libvirt is not touched. Both run
  in sessions of their own and are stopped by pid at the end. If a libvirtd is already running
  (a normal host with systemd) it is used as it is and nothing below is done.
- libvirtd is started under a tiny reaper process (PR_SET_CHILD_SUBREAPER) that does what
  systemd as PID 1 does on a normal host: reap libvirt's daemonized QEMUs the moment they exit.
  PID 1 of this container reaps orphans only every ~1-2 s, and libvirt's `virsh destroy`
  (virProcessKillPainfully: SIGTERM, then kill(pid, 0) every 200 ms) sees the unreaped zombie
  as alive, so every destroy took ~1.6 s here instead of ~0.2 s.
- /dev/kvm: libvirt runs QEMU as its own user (libvirt-qemu on Debian, in group kvm) and
  relies on udev giving /dev/kvm to group kvm, mode 0660. Here (no udev) it is root:root 0600.
  That is what made `virsh create --paused` take ~52 s before QEMU even started: libvirt probes
  QEMU's capabilities with CAP_DAC_OVERRIDE kept, so the probe sees KVM working, but every later
  lookup checks /dev/kvm as the plain qemu user, finds it inaccessible, declares the cached
  capabilities outdated ("KVM was enabled when probing ..., but it is not available now") and
  probes QEMU again, twice (kvm:tcg, then tcg), several times per create; and the domain then
  failed anyway ("Could not access KVM kernel module: Permission denied"). So, with accel kvm
  and only when the qemu user cannot open it, /dev/kvm is given group kvm and g+rw for the run
  (what udev does on a normal host) and its owner, group and mode are restored at the end (only
  if nobody changed them meanwhile). The raw and qdm QEMUs open /dev/kvm as root before they
  drop privileges, so this changes nothing for them.
- libvirt's per-driver "autostarted" markers in /run/libvirt/{qemu,network,storage} are
  created when missing, so that our libvirtd autostarts no domain, network (no virbr0, no
  dnsmasq, no firewall rules) or storage pool of the host. Everything our libvirtd creates
  under /run/libvirt is removed at the end, as are the per-domain logs in
  /var/log/libvirt/qemu and any new empty "machine" cgroup directory. libvirt's capabilities
  cache in /var/cache/libvirt/qemu is kept (as on any host: without it every start of libvirtd
  re-probes QEMU for tens of seconds).
- Not started: dbus-daemon. libvirt only uses the system bus for systemd-machined, firewalld
  and polkit, none of which runs here; without a bus it notes "DBus not available" once and
  goes on without waiting, and root clients bypass polkit. On a normal host libvirt registers
  each domain with machined over D-Bus (a few ms more); here it creates its cgroups itself.

What makes the comparison unequal (also rendered in the section, with what this run saw):
libvirt's QEMU gets a private mount namespace with its own /dev, cgroups per domain, DAC
labelling of its files, runs as the qemu user with no capabilities and QEMU's -sandbox, and
libvirt adds devices and options of its own (-cpu, -rtc, memory backend, -no-acpi); qdm mode
qemu uses -chroot/-runas/-sandbox plus its own pre-exec namespaces, rlimits and capability cut;
raw-launch --restricted only the QEMU options. virsh adds its own process, a connection to
libvirtd (auth, open) and, for qemu-monitor-command, a domain lookup per command.

Python 3.11 standard library only.
"""

import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

LIBVIRTD = "/usr/sbin/libvirtd"
VIRTLOGD = "/usr/sbin/virtlogd"
HOST_SOCK = "/run/libvirt/libvirt-sock"
VIRTLOGD_SOCK = "/run/libvirt/virtlogd-sock"
RUN_LIBVIRT = "/run/libvirt"
DOMAIN_LOG_DIR = "/var/log/libvirt/qemu"
DOMAIN_LIB_DIR = "/var/lib/libvirt/qemu"
KVM = "/dev/kvm"
SCALE_N = 10
CMD_TIMEOUT_S = 60          # any one virsh/qdm/raw command
DAEMON_TIMEOUT_S = 300      # libvirtd until it answers (a cold capabilities cache: QEMU probing)
MAX_FAILURES = 10

# The reaper libvirtd runs under: a child subreaper (prctl PR_SET_CHILD_SUBREAPER = 36) that
# reaps every orphan at once, as systemd does as PID 1 on a normal host. It prints libvirtd's
# pid, forwards SIGTERM/SIGINT/SIGHUP to it and exits when libvirtd has exited.
REAPER = r"""
import ctypes, os, signal, sys
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
log = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
pid = os.fork()
if pid == 0:
    os.dup2(log, 1); os.dup2(log, 2)
    os.execv(sys.argv[2], sys.argv[2:])
def fwd(sig, frame):
    try:
        os.kill(pid, sig)
    except OSError:
        pass
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, fwd)
print(pid, flush=True)
while True:
    w, st = os.wait()
    if w == pid:
        break
sys.exit(0)
"""

# python3-libvirt, when installed: N query-status through one connection and one domain
# handle, timed inside the process (connect and lookup excluded, like raw-qmp --seq).
PYLIBVIRT = r"""
import sys, time, libvirt, libvirt_qemu
uri, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = libvirt.open(uri)
d = c.lookupByName(name)
cmd = '{"execute":"query-status"}'
libvirt_qemu.qemuMonitorCommand(d, cmd, 0)
t0 = time.perf_counter()
for _ in range(n):
    r = libvirt_qemu.qemuMonitorCommand(d, cmd, 0)
dt = time.perf_counter() - t0
assert '"return"' in r, r
print("cps=%f" % (n / dt))
c.close()
"""


class Failure(Exception):
    pass


# Everything cleanup() must undo. Module-level so that cleanup() works from any path.
_S = {
    "lock": threading.Lock(),
    "reaper": None,          # Popen of the reaper (its child is libvirtd)
    "libvirtd_pid": None,
    "virtlogd": None,        # Popen, if we started it
    "uri": None,
    "own_daemon": False,
    "domains": set(),        # libvirt domains that may still be running
    "qemu_pids": {},         # pid -> domain name, libvirt's QEMUs we saw
    "qdm": None,             # ctx["qdm"] for qdm destroy
    "qdm_names": set(),
    "raw": [],               # raw-launch --hold processes not yet released
    "kvm": None,             # (orig uid, orig gid, orig mode, our gid, our mode)
    "snap_run": None,        # paths under /run/libvirt before we started
    "snap_cg": None,         # cgroup "machine" dirs before we started
    "dom_prefix": None,
    "tmp": None,
    "daemon_ok": False,      # our libvirtd came up (only then are new files in /run/libvirt ours)
}


# ---- small helpers -------------------------------------------------------------------------

def _kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass


def _run(argv, timeout=CMD_TIMEOUT_S, env=None, input=None, check=True):
    """Run argv in a session of its own (as run.py does for every measured process), stdout
    and stderr captured; whole-process wall time in µs (spawn to exit) and the stdout. The
    deadline is a watchdog thread that kills the process group, so that waiting for the exit
    is a blocking wait (no polling added to the figure)."""
    t0 = time.perf_counter_ns()
    p = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         start_new_session=True)
    timer = threading.Timer(timeout, _kill_group, (p,))
    timer.start()
    try:
        out, err = p.communicate(input)
    finally:
        timer.cancel()
    us = (time.perf_counter_ns() - t0) / 1000.0
    if check and p.returncode != 0:
        raise Failure("%s failed (exit %d): %s" % (" ".join(argv[:6]), p.returncode,
                                                    (err.strip() or out.strip())[-400:]))
    return us, out


def _kv(line):
    return dict(f.split("=", 1) for f in line.split() if "=" in f)


def _wait_all(procs, timeout):
    """Blocking waits with one overall deadline (a watchdog kills stragglers)."""
    timer = threading.Timer(timeout, lambda: [_kill_group(p) for p in procs])
    timer.start()
    try:
        for p in procs:
            p.wait()
    finally:
        timer.cancel()
    return [p.returncode for p in procs]


def _connectable(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _qemu_user():
    """libvirt's qemu user: `user = "..."` in /etc/libvirt/qemu.conf, else the distribution's
    built-in default (libvirt-qemu on Debian, qemu elsewhere)."""
    try:
        with open("/etc/libvirt/qemu.conf") as f:
            for line in f:
                m = re.match(r'^\s*user\s*=\s*"([^"]+)"', line)
                if m:
                    u = m.group(1)
                    if u.startswith("+"):
                        return pwd.getpwuid(int(u[1:]))
                    return pwd.getpwnam(u)
    except (OSError, KeyError, ValueError):
        pass
    for u in ("libvirt-qemu", "qemu"):
        try:
            return pwd.getpwnam(u)
        except KeyError:
            pass
    return None


def _can_open_rw(st, uid, gids):
    m = st.st_mode
    if uid == 0:
        return True
    if st.st_uid == uid:
        return m & 0o600 == 0o600
    if st.st_gid in gids:
        return m & 0o060 == 0o060
    return m & 0o006 == 0o006


def _cpu_us(pid):
    """CPU time so far of every thread of pid (/proc/PID/task/*/schedstat), µs; None if gone."""
    total = 0
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total / 1000.0


def _running_libvirtd():
    """The pid of a running libvirtd, if any (read-only scan of /proc/*/exe)."""
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink("/proc/%s/exe" % d).split(" (deleted)")[0] == LIBVIRTD:
                    return int(d)
            except OSError:
                pass
    return None


def _tree(top):
    out = set()
    for d, dirs, files in os.walk(top):
        out.add(d)
        for f in files + dirs:
            out.add(os.path.join(d, f))
    return out


def _machine_cgroups():
    out = set()
    for base in ("/sys/fs/cgroup",):
        try:
            for c in os.listdir(base):
                p = os.path.join(base, c, "machine")
                if os.path.isdir(p):
                    out.add(p)
        except OSError:
            pass
        if os.path.isdir(os.path.join(base, "machine")):
            out.add(os.path.join(base, "machine"))
    return out


# ---- the interface -------------------------------------------------------------------------

def available():
    """(usable, reason when not): libvirtd, virtlogd and virsh installed, and root. Cheap;
    never raises."""
    try:
        if os.geteuid() != 0:
            return False, "not root (libvirtd's qemu:///system needs root)"
        missing = [p for p in (LIBVIRTD, VIRTLOGD) if not os.access(p, os.X_OK)]
        if not shutil.which("virsh"):
            missing.append("virsh")
        if missing:
            return False, ("libvirt is not installed (%s missing; apt-get install "
                           "libvirt-daemon-system)" % ", ".join(missing))
        if _qemu_user() is None:
            return False, "libvirt's qemu user (libvirt-qemu or qemu) does not exist"
        return True, ""
    except Exception as e:   # never raises
        return False, "cannot tell whether libvirt is usable: %s" % e


def measure(ctx):
    """Run everything; returns raw samples (µs for times, commands/s for throughput), or
    {"skipped": reason} when libvirt is not usable here."""
    ok, why = available()
    if not ok:
        return {"skipped": why}
    log = ctx["log"]
    t_begin = time.monotonic()
    res = {"skipped": None, "failures": [], "setup": {"accel": ctx["accel"]}}
    try:
        _setup(ctx, res)
    except (Failure, OSError, subprocess.SubprocessError) as e:
        log("libvirt: could not start libvirt: %s" % e)
        cleanup()
        return {"skipped": "libvirt could not be started: %s" % str(e).strip()[-300:]}
    try:
        res["start"], res["destroy"] = _bench_start(ctx, res)
        res["ctl"], res["thr"], res["confinement"] = _bench_control(ctx, res)
        res["scale"] = _bench_scale(ctx, res)
    except Failure as e:
        res["failures"].append("aborted: %s" % e)
        log("libvirt: aborted: %s" % e)
    finally:
        cleanup()
    res["elapsed_s"] = time.monotonic() - t_begin
    return res


def _note(ctx, res, what, err):
    msg = "%s: %s" % (what, str(err).strip().splitlines()[-1] if str(err).strip() else "failed")
    res["failures"].append(msg)
    ctx["log"]("libvirt: FAILED (left out of the figures): " + msg)
    if len(res["failures"]) > MAX_FAILURES:
        raise Failure("more than %d failures; giving up" % MAX_FAILURES)


# ---- setup ---------------------------------------------------------------------------------

def _setup(ctx, res):
    log = ctx["log"]
    st = res["setup"]
    tmp = os.path.join(ctx["tmp"], "libvirt")
    os.makedirs(tmp, exist_ok=True)
    _S["tmp"] = tmp
    _S["daemon_ok"] = False
    _S["qdm"] = ctx["qdm"]
    _S["dom_prefix"] = ctx["name_prefix"] + "lv"
    v = _run([LIBVIRTD, "--version"], timeout=20)[1]
    m = re.search(r"\d+\.\d+(\.\d+)?", v)
    st["libvirt_version"] = "libvirt " + (m.group(0) if m else v.strip())
    user = _qemu_user()
    st["qemu_user"] = user.pw_name
    st["started"] = []
    st["changed"] = []

    if _connectable(HOST_SOCK):
        # A libvirtd is already running (a normal host): use it as it is, change nothing.
        _S["uri"] = "qemu:///system"
        _S["own_daemon"] = False
        st["daemon"] = "the host's running libvirtd (qemu:///system); nothing started or changed"
        log("libvirt: using the running libvirtd at %s" % HOST_SOCK)
    else:
        other = _running_libvirtd()
        if other:
            # Someone else's libvirtd on a socket we do not know (e.g. another run of this
            # benchmark): a second one could not take libvirt's driver locks, and what this
            # module removes from /run/libvirt at the end could be that daemon's.
            raise Failure("another libvirtd is running (pid %d) without %s; not starting a second one"
                          % (other, HOST_SOCK))
        _S["own_daemon"] = True
        _S["snap_run"] = _tree(RUN_LIBVIRT) if os.path.isdir(RUN_LIBVIRT) else set()
        _S["snap_cg"] = _machine_cgroups()
        if ctx["accel"] == "kvm" and os.path.exists(KVM):
            _kvm_prepare(user, st)
        for drv in ("qemu", "network", "storage"):
            marker = os.path.join(RUN_LIBVIRT, drv, "autostarted")
            if not os.path.exists(marker):
                os.makedirs(os.path.dirname(marker), exist_ok=True)
                open(marker, "w").close()
                st["changed"].append("created %s (so that nothing of the host is autostarted; removed "
                                     "at the end)" % marker)
        if _connectable(VIRTLOGD_SOCK):
            st["started"].append("virtlogd: not started, one already answers on %s" % VIRTLOGD_SOCK)
        else:
            logf = open(os.path.join(tmp, "virtlogd.out"), "w")
            _S["virtlogd"] = subprocess.Popen([VIRTLOGD, "-p", os.path.join(tmp, "virtlogd.pid")],
                                              stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                              start_new_session=True)
            logf.close()
            deadline = time.monotonic() + 20
            while not _connectable(VIRTLOGD_SOCK):
                if _S["virtlogd"].poll() is not None or time.monotonic() > deadline:
                    raise Failure("virtlogd did not come up")
                time.sleep(0.05)
            st["started"].append("virtlogd -p %s/virtlogd.pid (pid %d; libvirt's QEMU stdio goes "
                                 "through it, as on a normal host)" % (tmp, _S["virtlogd"].pid))
        sockdir = os.path.join(tmp, "sock")
        os.makedirs(sockdir, exist_ok=True)
        conf = os.path.join(tmp, "libvirtd.conf")
        with open(conf, "w") as f:
            f.write('unix_sock_dir = "%s"\nlog_outputs = "3:file:%s"\n'
                    % (sockdir, os.path.join(tmp, "libvirtd.log")))
        reaper = os.path.join(tmp, "reaper.py")
        with open(reaper, "w") as f:
            f.write(REAPER)
        t0 = time.perf_counter_ns()
        _S["reaper"] = subprocess.Popen(
            [sys.executable, reaper, os.path.join(tmp, "libvirtd.out"), LIBVIRTD, "-f", conf,
             "-p", os.path.join(tmp, "libvirtd.pid")],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True)
        line = _S["reaper"].stdout.readline()
        _S["reaper"].stdout.close()
        if not line.strip().isdigit():
            raise Failure("the reaper did not start libvirtd")
        _S["libvirtd_pid"] = int(line)
        _S["uri"] = "qemu+unix:///system?socket=%s" % os.path.join(sockdir, "libvirt-sock")
        deadline = time.monotonic() + 30
        while not _connectable(os.path.join(sockdir, "libvirt-sock")):
            if not _alive(_S["libvirtd_pid"]) or time.monotonic() > deadline:
                raise Failure("libvirtd did not open its socket: %s" % _tail(os.path.join(tmp, "libvirtd.log")))
            time.sleep(0.05)
        # The first call waits for the drivers' initialisation (capabilities probing when the
        # cache is cold).
        _run(["virsh", "-c", _S["uri"], "uri"], timeout=DAEMON_TIMEOUT_S)
        st["daemon_ready_us"] = (time.perf_counter_ns() - t0) / 1000.0
        _S["daemon_ok"] = True   # it holds libvirt's driver locks: what appears in /run/libvirt is ours
        st["started"].append("libvirtd -f %s (pid %d) under a child-subreaper (pid %d), private "
                             "socket directory %s, warnings to %s/libvirtd.log"
                             % (conf, _S["libvirtd_pid"], _S["reaper"].pid, sockdir, tmp))
        st["daemon"] = "started by this module: %s" % _S["uri"]
        log("libvirt: libvirtd answered after %.1f s" % (st["daemon_ready_us"] / 1e6))
    st["uri"] = _S["uri"]
    st["pylibvirt"] = subprocess.run([sys.executable, "-c", "import libvirt, libvirt_qemu"],
                                     capture_output=True).returncode == 0


def _tail(path, n=300):
    try:
        with open(path) as f:
            return f.read()[-n:].strip()
    except OSError:
        return "(no log)"


def _kvm_prepare(user, st):
    """Give /dev/kvm to group kvm, g+rw, as udev does on a normal host, when libvirt's qemu
    user cannot open it; remember what to restore."""
    s = os.stat(KVM)
    gids = set(os.getgrouplist(user.pw_name, user.pw_gid))
    if _can_open_rw(s, user.pw_uid, gids):
        return
    try:
        kvm_gid = grp.getgrnam("kvm").gr_gid
    except KeyError:
        raise Failure("libvirt's qemu user %s cannot open %s and there is no group kvm" % (user.pw_name, KVM))
    if kvm_gid not in gids:
        raise Failure("libvirt's qemu user %s cannot open %s and is not in group kvm" % (user.pw_name, KVM))
    new_mode = (s.st_mode & 0o7777) | 0o060
    _S["kvm"] = (s.st_uid, s.st_gid, s.st_mode & 0o7777, kvm_gid, new_mode)
    os.chown(KVM, -1, kvm_gid)
    os.chmod(KVM, new_mode)
    st["changed"].append("%s: group %s mode %04o -> group kvm mode %04o for the run (udev's rule "
                         "on a normal host; libvirt's QEMU runs as %s), restored at the end"
                         % (KVM, _group_name(s.st_gid), s.st_mode & 0o7777, new_mode, user.pw_name))


def _group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# ---- the libvirt side ----------------------------------------------------------------------

def _domain_xml(path, name, ctx, cfg_path):
    """The domain closest to qdm's configuration: q35, the same accelerator and memory, 1 vCPU,
    no disks, NICs, graphics, serial, USB controller or balloon; libvirt's default qemu user."""
    with open(cfg_path) as f:
        cfg = json.load(f)
    mem = cfg.get("memory_mib") or 128      # qdm omits -m: QEMU's default, 128 MiB
    vcpus = cfg.get("vcpus") or 1
    qemu = shutil.which(ctx["qemu"]) or ctx["qemu"]
    arch = "x86_64" if "x86_64" in os.path.basename(qemu) else os.uname().machine
    xml = """<domain type='%s'>
  <name>%s</name>
  <memory unit='MiB'>%d</memory>
  <vcpu>%d</vcpu>
  <os><type arch='%s' machine='q35'>hvm</type></os>
  <devices>
    <emulator>%s</emulator>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
""" % ("kvm" if ctx["accel"] == "kvm" else "qemu", name, mem, vcpus, arch, qemu)
    with open(path, "w") as f:
        f.write(xml)
    return path


def _virsh(*args):
    return ["virsh", "-c", _S["uri"]] + list(args)


def _domain_pid(name):
    try:
        with open(os.path.join(RUN_LIBVIRT, "qemu", name + ".pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _lv_create(xml, name):
    """`virsh create --paused` as a whole process, µs."""
    with _S["lock"]:
        _S["domains"].add(name)
    us, _ = _run(_virsh("create", "--paused", xml))
    _remember_pid(name)
    return us


def _remember_pid(name):
    pid = _domain_pid(name)
    if pid:
        with _S["lock"]:
            _S["qemu_pids"][pid] = name


def _lv_destroy(name):
    us, _ = _run(_virsh("destroy", name))
    with _S["lock"]:
        _S["domains"].discard(name)
    return us


def _qdm_destroy(ctx, name):
    us, _ = _run(ctx["qdm"]("destroy", name))
    _S["qdm_names"].discard(name)
    return us


def _raw_argv(ctx, hold_teardown=True):
    return [ctx["raw_launch"], "--qemu", shutil.which(ctx["qemu"]) or ctx["qemu"], "--machine", "q35",
            "--accel", ctx["accel"], "--hold"] + (["--teardown"] if hold_teardown else []) + \
           ["--timeout", str(ctx["start_timeout_s"]), "--restricted", "--runas", ctx["raw_runas"]]


# ---- 1. start to paused-and-ready ----------------------------------------------------------

def _bench_start(ctx, res):
    log = ctx["log"]
    runs = ctx["runs"]
    qname = ctx["name_prefix"] + "lvq-start"
    lname = _S["dom_prefix"] + "-start"
    cfg = ctx["write_config"](qname, "q35", ctx["accel"], "qemu")
    xml = _domain_xml(os.path.join(_S["tmp"], lname + ".xml"), lname, ctx, cfg)
    raw = _raw_argv(ctx)
    log("libvirt: start to paused-and-ready, q35 %s: qdm create | virsh create --paused | "
        "raw-launch --restricted (%d runs)" % (ctx["accel"], runs))
    start = {"qdm": [], "qdm_lib": [], "libvirt": [], "raw": [], "raw_inproc": [], "libvirtd_cpu": []}
    destroy = {"qdm": [], "libvirt": [], "raw": []}

    def one():
        _S["qdm_names"].add(qname)
        a = ctx["qdm_create"](cfg)                        # A
        ad = _qdm_destroy(ctx, qname)
        cpu0 = _cpu_us(_S["libvirtd_pid"]) if _S["libvirtd_pid"] else None
        b = _lv_create(xml, lname)                        # B
        bd = _lv_destroy(lname)
        cpu1 = _cpu_us(_S["libvirtd_pid"]) if _S["libvirtd_pid"] else None
        if cpu0 is not None and cpu1 is not None:
            start["libvirtd_cpu"].append(cpu1 - cpu0)
        c = ctx["raw_launch_once"](raw)                   # C
        return a, ad, b, bd, c

    # One of each, not counted: page cache, qdm's probe cache, libvirt's capabilities check.
    for i in range(runs + 1):
        try:
            a, ad, b, bd, c = one()
        except Exception as e:   # Failure, TimeoutExpired, run.py's Failure
            _note(ctx, res, "start round", e)
            _quiet(ctx["qdm"]("destroy", qname))
            _quiet(_virsh("destroy", lname))
            continue
        if i == 0:
            res["setup"]["first_create_us"] = b
            del start["libvirtd_cpu"][:]
            continue
        start["qdm"].append(a[0])
        start["qdm_lib"].append(a[1])
        start["libvirt"].append(b)
        start["raw"].append(c[0])
        start["raw_inproc"].append(c[1])
        destroy["qdm"].append(ad)
        destroy["libvirt"].append(bd)
        destroy["raw"].append(c[2])
    return start, destroy


def _quiet(argv):
    try:
        _run(argv, check=False)
    except Exception:
        pass


# ---- 2./3. control commands and throughput -------------------------------------------------

def _run_dir(ctx):
    if ctx.get("run_dir"):
        return ctx["run_dir"]
    argv = ctx["qdm"]()
    return argv[argv.index("--run-dir") + 1]


def _bench_control(ctx, res):
    log = ctx["log"]
    quick = ctx["quick"]
    ctl_runs = max(3, ctx["runs"] * 5)
    thr_runs = 2 if quick else max(3, ctx["runs"] // 4)
    n_cmds = 300 if quick else 2000
    qname = ctx["name_prefix"] + "lvq-ctl"
    lname = _S["dom_prefix"] + "-ctl"
    cfg = ctx["write_config"](qname, "q35", ctx["accel"], "qemu")
    xml = _domain_xml(os.path.join(_S["tmp"], lname + ".xml"), lname, ctx, cfg)
    _S["qdm_names"].add(qname)
    ctx["qdm_create"](cfg)
    _lv_create(xml, lname)
    sock = os.path.join(_run_dir(ctx), qname, "qmp.sock")
    once = [ctx["raw_qmp"], "--socket", sock, "--once"]
    ctl = {k: {"qdm": [], "libvirt": [], "raw": []} for k in ("qmp", "resume", "pause")}
    thr = {"lib": [], "virsh": [], "virsh_marginal": [], "virsh_one": [], "raw": [], "pylibvirt": [],
           "n": n_cmds}
    conf = {}
    try:
        conf = _confinement(ctx, qname, lname)
        qs = '{"execute":"query-status"}'
        plan = (
            ("qmp", ctx["qdm"]("qmp", qname, "query-status"), _virsh("qemu-monitor-command", lname, qs), once),
            ("resume", ctx["qdm"]("resume", qname), _virsh("resume", lname), once + ["--command", "cont"]),
            ("pause", ctx["qdm"]("pause", qname), _virsh("suspend", lname), once + ["--command", "stop"]),
        )
        log("libvirt: control commands, %d rounds: qdm | virsh | raw-qmp --once, qmp/resume/pause" % ctl_runs)
        # Each guest goes paused -> running -> paused in every round: resume and pause of each
        # side run back to back (A A' B B' C C'); the raw side acts on qdm's QEMU as in run.py.
        for _ in range(ctl_runs):
            try:
                got = {k: [] for k in ctl}
                for key in ("qmp",):
                    for argv in plan[0][1:]:
                        got[key].append(_run(argv)[0])
                for side in (1, 2, 3):
                    got["resume"].append(_run(plan[1][side])[0])
                    got["pause"].append(_run(plan[2][side])[0])
            except Exception as e:
                _note(ctx, res, "control round", e)
                _quiet(ctx["qdm"]("pause", qname))
                _quiet(_virsh("suspend", lname))
                continue
            for k, v in got.items():
                for side, us in zip(("qdm", "libvirt", "raw"), v):
                    ctl[k][side].append(us)

        log("libvirt: QMP throughput, %d runs x %d query-status: bench-qmp-client --seq | one virsh "
            "reading stdin | raw-qmp --seq%s" % (thr_runs, n_cmds,
                                                 " | python3-libvirt" if res["setup"]["pylibvirt"] else ""))
        batch = "".join("qemu-monitor-command %s '%s'\n" % (lname, qs) for _ in range(n_cmds))
        batch1 = "qemu-monitor-command %s '%s'\n" % (lname, qs)
        for _ in range(thr_runs):
            try:
                a = float(_kv(_run([ctx["bench_client"], "--socket", sock, "--seq", str(n_cmds)])[1])["cps"])
                b_us, out = _run(_virsh_batch(), input=batch, timeout=600)
                if out.count('"return"') != n_cmds:
                    raise Failure("virsh batch: %d of %d replies" % (out.count('"return"'), n_cmds))
                b1_us, out1 = _run(_virsh_batch(), input=batch1)
                c = float(_kv(_run([ctx["raw_qmp"], "--socket", sock, "--seq", str(n_cmds)])[1])["cps"])
                d = None
                if res["setup"]["pylibvirt"]:
                    d = float(_kv(_run([sys.executable, "-c", PYLIBVIRT, _S["uri"], lname, str(n_cmds)],
                                       timeout=600)[1])["cps"])
            except Exception as e:
                _note(ctx, res, "throughput run", e)
                continue
            thr["lib"].append(a)
            thr["virsh"].append(n_cmds / (b_us / 1e6))
            thr["virsh_one"].append(b1_us)
            if b_us > b1_us:
                thr["virsh_marginal"].append((n_cmds - 1) / ((b_us - b1_us) / 1e6))
            thr["raw"].append(c)
            if d is not None:
                thr["pylibvirt"].append(d)
    finally:
        _quiet(ctx["qdm"]("destroy", qname))
        _S["qdm_names"].discard(qname)
        try:
            _lv_destroy(lname)
        except Exception:
            pass
    return ctl, thr, conf


def _virsh_batch():
    """One virsh process reading commands from stdin (quiet: no banner)."""
    return ["virsh", "-q", "-c", _S["uri"]]


def _confinement(ctx, qname, lname):
    """What each QEMU runs as and inside, from /proc: the facts behind "unequal"."""
    out = {}
    try:
        qpid = json.loads(_run(ctx["qdm"]("status", "--json", qname))[1])["qemu_pid"]
    except Exception:
        qpid = None
    lpid = _domain_pid(lname)
    for key, pid in (("qdm", qpid), ("libvirt", lpid)):
        if not pid:
            continue
        d = {}
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in ("Uid", "CapEff", "CapBnd", "NoNewPrivs", "Seccomp"):
                        d[k] = v.split()[0] if k == "Uid" else v.strip()
            ns = []
            for n in ("mnt", "pid", "net", "ipc", "uts", "user", "cgroup"):
                if os.readlink("/proc/%d/ns/%s" % (pid, n)) != os.readlink("/proc/self/ns/%s" % n):
                    ns.append(n)
            d["namespaces"] = ns
            with open("/proc/%d/cgroup" % pid) as f:
                d["cgroup"] = next((l.strip()[3:] for l in f if l.startswith("0::")), "")
            d["root"] = os.readlink("/proc/%d/root" % pid)
            d["cmdline"] = _cmdline(pid)
        except OSError:
            pass
        out[key] = d
    return out


# ---- 4. parallel creates -------------------------------------------------------------------

def _bench_scale(ctx, res):
    log = ctx["log"]
    rounds = 1 if ctx["quick"] else max(2, ctx["runs"] // 2)
    n = SCALE_N
    log("libvirt: %d creates released together, %d rounds: qdm | virsh | raw-launch --restricted --hold"
        % (n, rounds))
    qnames = ["%slvq-s%d" % (ctx["name_prefix"], i) for i in range(n)]
    lnames = ["%s-s%d" % (_S["dom_prefix"], i) for i in range(n)]
    cfgs = [ctx["write_config"](q, "q35", ctx["accel"], "qemu") for q in qnames]
    xmls = [_domain_xml(os.path.join(_S["tmp"], l + ".xml"), l, ctx, c) for l, c in zip(lnames, cfgs)]
    out = {"n": n, "qdm": [], "libvirt": [], "raw": [], "qdm_destroy": [], "libvirt_destroy": []}
    for _ in range(rounds):
        try:
            a, ad = _scale_qdm(ctx, cfgs, qnames)
            b, bd = _scale_libvirt(ctx, xmls, lnames)
            c = _scale_raw(ctx, n)
        except Exception as e:
            _note(ctx, res, "%d in parallel" % n, e)
            continue
        out["qdm"].append(a)
        out["qdm_destroy"].append(ad)
        out["libvirt"].append(b)
        out["libvirt_destroy"].append(bd)
        out["raw"].append(c)
    return out


def _together(ctx, argvs, **kw):
    procs, t0 = ctx["spawn_together"](argvs, stdout=subprocess.DEVNULL, **kw)
    rcs = _wait_all(procs, CMD_TIMEOUT_S)
    return (time.perf_counter_ns() - t0) / 1000.0, rcs


def _parallel(argvs):
    t0 = time.perf_counter_ns()
    ps = [subprocess.Popen(a, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
          for a in argvs]
    rcs = _wait_all(ps, CMD_TIMEOUT_S)
    return (time.perf_counter_ns() - t0) / 1000.0, rcs


def _scale_qdm(ctx, cfgs, names):
    """n x `qdm create --paused` released together; wall until all exited. Then all destroyed
    in parallel (timed)."""
    _S["qdm_names"].update(names)
    try:
        us, rcs = _together(ctx, [ctx["qdm"]("create", "--paused", c) for c in cfgs])
        if any(rcs):
            raise Failure("qdm: %d of %d creates failed" % (sum(1 for r in rcs if r), len(rcs)))
    finally:
        dus, rcs2 = _parallel([ctx["qdm"]("destroy", nm) for nm in names])
        _S["qdm_names"].difference_update(names)
    return us, dus


def _scale_libvirt(ctx, xmls, names):
    """n x `virsh create --paused` released together; wall until all exited. Then all
    `virsh destroy`ed in parallel (timed)."""
    with _S["lock"]:
        _S["domains"].update(names)
    try:
        us, rcs = _together(ctx, [_virsh("create", "--paused", x) for x in xmls])
        for nm in names:
            _remember_pid(nm)
        if any(rcs):
            raise Failure("libvirt: %d of %d creates failed" % (sum(1 for r in rcs if r), len(rcs)))
    finally:
        dus, rcs2 = _parallel([_virsh("destroy", nm) for nm in names])
        left = [nm for nm, rc in zip(names, rcs2) if rc != 0 and _domain_pid(nm)]
        for nm in left:
            _quiet(_virsh("destroy", nm))
        with _S["lock"]:
            _S["domains"].difference_update(names)
    return us, dus


def _scale_raw(ctx, n):
    """n x raw-launch --restricted --hold released together; wall until each printed its
    ready line; then released."""
    argv = _raw_argv(ctx, hold_teardown=False)
    procs = []
    try:
        procs, t0 = ctx["spawn_together"]([argv] * n, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          env=ctx["raw_env"], live=_S["raw"])
        timer = threading.Timer(CMD_TIMEOUT_S, lambda: [_kill_group(p) for p in procs])
        timer.start()
        try:
            lines = [p.stdout.readline() for p in procs]
        finally:
            timer.cancel()
        us = (time.perf_counter_ns() - t0) / 1000.0
        if not all(l.strip().isdigit() for l in lines):
            raise Failure("raw-launch: %d of %d did not become ready"
                          % (sum(1 for l in lines if not l.strip().isdigit()), n))
        return us
    finally:
        _release_raw()


def _release_raw():
    procs = list(_S["raw"])
    for p in procs:
        try:
            if p.stdin:
                p.stdin.close()
        except OSError:
            pass
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            try:
                with open("/proc/%d/task/%d/children" % (p.pid, p.pid)) as f:
                    for k in f.read().split():
                        os.kill(int(k), signal.SIGKILL)
            except OSError:
                pass
            p.kill()
            p.wait()
        if p.stdout:
            p.stdout.close()
        try:
            _S["raw"].remove(p)
        except ValueError:
            pass


# ---- cleanup -------------------------------------------------------------------------------

def cleanup():
    """Stop every domain, device model and daemon this module started and undo what it
    changed. Idempotent; never raises; every wait has a deadline."""
    steps = (_release_raw, _cleanup_domains, _cleanup_qdm, _stop_libvirtd, _stop_virtlogd,
             _kill_domain_qemus, _restore_kvm, _restore_files)
    for step in steps:
        try:
            step()
        except Exception as e:   # keep going: the other steps still have to run
            print("bench_libvirt: cleanup step %s: %s" % (step.__name__, e), file=sys.stderr)


def _cleanup_domains():
    if not _S["domains"] or not _S["uri"]:
        return
    if _S["own_daemon"] and not (_S["libvirtd_pid"] and _alive(_S["libvirtd_pid"])):
        return   # nobody to ask; their QEMUs are killed by pid below
    for name in list(_S["domains"]):
        _quiet(_virsh("destroy", name))
        _S["domains"].discard(name)


def _cleanup_qdm():
    for name in list(_S["qdm_names"]):
        if _S["qdm"]:
            _quiet(_S["qdm"]("destroy", name))
        _S["qdm_names"].discard(name)


def _stop_libvirtd():
    r = _S["reaper"]
    if r is None:
        return
    lpid = _S["libvirtd_pid"]
    try:
        r.send_signal(signal.SIGTERM)       # the reaper forwards it to libvirtd
    except OSError:
        pass
    try:
        r.wait(timeout=30)
    except subprocess.TimeoutExpired:
        if lpid and _alive(lpid) and LIBVIRTD in _cmdline(lpid):
            try:
                os.kill(lpid, signal.SIGKILL)
            except OSError:
                pass
        try:
            r.wait(timeout=10)
        except subprocess.TimeoutExpired:
            r.kill()
            r.wait(timeout=10)
    _S["reaper"] = None
    # libvirtd is our reaper's child: once the reaper has exited after it, it is gone.
    deadline = time.monotonic() + 10
    while lpid and _alive(lpid) and LIBVIRTD in _cmdline(lpid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _stop_virtlogd():
    p = _S["virtlogd"]
    if p is None:
        return
    p.terminate()
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=10)
    _S["virtlogd"] = None


def _kill_domain_qemus():
    """Any of libvirt's QEMUs we saw still alive (libvirtd does not kill its domains when it
    stops): SIGKILL by pid, after checking the pid is still that domain's QEMU."""
    for pid, name in list(_S["qemu_pids"].items()):
        c = _cmdline(pid)
        if _alive(pid) and ("guest=%s," % name) in c:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        del _S["qemu_pids"][pid]


def _restore_kvm():
    k = _S["kvm"]
    if not k:
        return
    uid, gid, mode, our_gid, our_mode = k
    s = os.stat(KVM)
    if s.st_gid == our_gid and (s.st_mode & 0o7777) == our_mode:
        os.chown(KVM, uid, gid)
        os.chmod(KVM, mode)
    else:
        print("bench_libvirt: %s was changed by someone else meanwhile; left as it is" % KVM, file=sys.stderr)
    _S["kvm"] = None


def _restore_files():
    """Only with our own daemon, once it is stopped: remove what it created under /run/libvirt
    (sockets, pid files, markers, state), the per-domain logs of our domains, their leftover
    directories in /var/lib/libvirt/qemu, new empty "machine" cgroups, and our temp dir."""
    if _S["snap_run"] is not None and _S["daemon_ok"] and not (_S["libvirtd_pid"] and _alive(_S["libvirtd_pid"])):
        new = sorted(_tree(RUN_LIBVIRT) - _S["snap_run"] if os.path.isdir(RUN_LIBVIRT) else [],
                     key=lambda p: -p.count("/"))
        for p in new:
            try:
                if os.path.isdir(p) and not os.path.islink(p):
                    os.rmdir(p)
                else:
                    os.unlink(p)
            except OSError:
                pass
        _S["snap_run"] = None
    if _S["snap_cg"] is not None:
        for d in _machine_cgroups() - _S["snap_cg"]:
            try:
                os.rmdir(d)
            except OSError:
                pass
        _S["snap_cg"] = None
    pre = _S["dom_prefix"]
    if pre:
        for base in (DOMAIN_LOG_DIR, DOMAIN_LIB_DIR):
            try:
                names = os.listdir(base)
            except OSError:
                continue
            for fn in names:
                if fn.startswith(pre) or re.match(r"^domain-\d+-%s" % re.escape(pre), fn):
                    p = os.path.join(base, fn)
                    if os.path.isdir(p):
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        try:
                            os.unlink(p)
                        except OSError:
                            pass
    if _S["tmp"] and os.path.isdir(_S["tmp"]):
        shutil.rmtree(_S["tmp"], ignore_errors=True)
        _S["tmp"] = None


def leftovers():
    """What of ours is still there (for the standalone run's final check)."""
    left = []
    for pid in (_S["libvirtd_pid"],):
        if pid and _alive(pid) and LIBVIRTD in _cmdline(pid):
            left.append("libvirtd pid %d" % pid)
    for pid, name in _S["qemu_pids"].items():
        if _alive(pid) and ("guest=%s," % name) in _cmdline(pid):
            left.append("QEMU pid %d (%s)" % (pid, name))
    if _S["kvm"]:
        left.append("%s not restored" % KVM)
    return left


# ---- rendering -----------------------------------------------------------------------------

def _fmt(x, unit):
    if x is None:
        return "-"
    if unit == "ms":
        return "%.2f" % (x / 1000.0)
    return "%.0f" % x


def _mmm(v, unit):
    if not v:
        return "-"
    return "%s / **%s** / %s" % (_fmt(min(v), unit), _fmt(statistics.median(v), unit), _fmt(max(v), unit))


def _ratio(a, b):
    if not a or not b:
        return "-"
    mb = statistics.median(b)
    return "%.2f" % (statistics.median(a) / mb) if mb else "-"


def _table3(title, unit, rows, higher_is_better=False, labels=("qdm", "libvirt", "raw")):
    """rows: (label, qdm samples, libvirt samples, raw samples); min / median / max per cell
    and every ratio of medians."""
    u = {"ms": "ms", "us": "µs", "cps": "commands/s"}[unit]
    q, l, r = labels
    out = ["| %s | %s | %s | %s | %s/%s | %s/%s | %s/%s |" % (title, q, l, r, l, r, q, r, q, l),
           "|---|---:|---:|---:|---:|---:|---:|"]
    ns = set()
    for label, a, b, c in rows:
        for v in (a, b, c):
            if v:
                ns.add(len(v))
        out.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            label, _mmm(a, unit), _mmm(b, unit), _mmm(c, unit), _ratio(b, c), _ratio(a, c), _ratio(a, b)))
    out.append("")
    out.append("Each cell: min / **median** / max, in %s; n = %s per cell; ratios are of the "
               "medians; %s is better." % (u, "/".join(str(x) for x in sorted(ns)) or "0",
                                           "higher" if higher_is_better else "lower"))
    return "\n".join(out) + "\n"


def render(results, table=None):
    """(markdown body of the "libvirt, side by side" section, without its "## N." heading;
    headline rows [(label, a samples, b samples, unit)] with table()'s unit keys: "ms" means
    samples in µs shown in ms, "cps" commands per second).

    `table` (run.py's two-column table()) is accepted for the interface but not used: every
    row here has three columns, and table() would file the libvirt-vs-raw rows under run.py's
    "rows more than 10% behind raw", which is about qdm."""
    if results.get("skipped"):
        return ("skipped: %s\n" % results["skipped"]), []
    L = []
    w = L.append
    st = results["setup"]
    med = statistics.median
    w("libvirt (%s) against qdm and the raw baselines, on the same QEMU binary, machine q35, the "
      "same accelerator; every row measured in one loop, alternating qdm, libvirt, raw. The libvirt "
      "domain is the closest equivalent of qdm's configuration: a transient domain (`virsh create "
      "--paused`), q35, the same memory (128 MiB, QEMU's default, which qdm uses) and 1 vCPU, no "
      "disk, NIC, graphics, serial, USB controller (`<controller type='usb' model='none'/>`) or "
      "balloon (`<memballoon model='none'/>`), run as libvirt's default qemu user (%s).\n"
      % (st.get("libvirt_version", "?"), st.get("qemu_user", "?")))
    w("How libvirt ran here: %s.\n" % st.get("daemon", "?"))
    if st.get("started") or st.get("changed"):
        for s in st.get("started", []):
            w("- started: %s" % s)
        for s in st.get("changed", []):
            w("- changed: %s" % s)
        w("- libvirtd runs under a child-subreaper: PID 1 of this container reaps orphans only "
          "every ~1-2 s, and `virsh destroy` (SIGTERM, then kill(pid, 0) every 200 ms) waits "
          "until libvirt's daemonized QEMU is reaped: ~1.6 s per destroy instead of ~0.2 s. "
          "systemd reaps at once on a normal host; the subreaper does the same.")
        w("- not started: dbus-daemon (libvirt uses the system bus only for systemd-machined, "
          "firewalld and polkit, none of which runs here; without it libvirt goes on at once, "
          "root clients bypass polkit, and libvirt creates its cgroups itself).")
        w("")
        w("Why this matters: with /dev/kvm root:root 0600 (no udev here) libvirt's capabilities "
          "probe (which keeps CAP_DAC_OVERRIDE) sees KVM, but every later lookup checks /dev/kvm "
          "as the qemu user, finds it closed, declares the cached capabilities outdated and "
          "probes QEMU again, twice, several times per create: that was the ~52 s per `virsh "
          "create --paused` seen before, and the domain then failed on /dev/kvm anyway.\n")
    if st.get("daemon_ready_us"):
        w("libvirtd answered %.2f s after it was started%s; the first `virsh create --paused` "
          "(not counted) took %.0f ms.\n" % (st["daemon_ready_us"] / 1e6,
                                             " (capabilities cache warm)" if st["daemon_ready_us"] < 10e6
                                             else " (it probed QEMU's capabilities)",
                                             st.get("first_create_us", 0) / 1000))

    s, d = results.get("start"), results.get("destroy")
    if s:
        w("### Start to paused-and-ready\n")
        w(_table3("q35 %s, whole process" % _accel(results), "ms", [
            ("start: `qdm create --paused` (mode qemu) / `virsh create --paused` / raw-launch --restricted",
             s["qdm"], s["libvirt"], s["raw"]),
            ("teardown: `qdm destroy` / `virsh destroy` / raw-launch's kill+reap+rmdir",
             d["qdm"], d["libvirt"], d["raw"]),
        ], labels=("qdm", "libvirt", "raw")))
        w("What it includes: `qdm create` until it exits (supervisor forked, QEMU restricted, "
          "greeting, qmp_capabilities, query-status `prelaunch`, state.json); `virsh create "
          "--paused` until it exits (virsh start, connection and auth to libvirtd, XML parse and "
          "validation against the capabilities cache, namespace/cgroup/DAC set-up, virtlogd "
          "log, QEMU start, and on the monitor qmp_capabilities plus libvirt's own queries of "
          "the new guest); raw-launch until its ready line (fork, exec, greeting, "
          "qmp_capabilities, query-status). Teardown: `qdm destroy` as a whole process; `virsh "
          "destroy` as a whole process, whose floor is libvirt's 200 ms poll after SIGTERM "
          "(virProcessKillPainfully); raw-launch's SIGKILL + waitpid + rmdir timed inside it. "
          "Inside the process, qdm's own \"ready in\" was %.2f ms and raw-launch's fork-to-reply "
          "%.2f ms (medians); virsh prints no such figure.%s\n"
          % (med(s["qdm_lib"]) / 1000 if s["qdm_lib"] else 0, med(s["raw_inproc"]) / 1000 if s["raw_inproc"] else 0,
             (" libvirtd's own threads used %.1f ms of CPU per create + destroy (median, from "
              "/proc/PID/task/*/schedstat; not counting the helper processes it forks, virsh or "
              "QEMU): the rest of libvirt's wall time is spread over many small steps (a debug log "
              "of one start showed no single wait above ~25 ms)."
              % (med(s["libvirtd_cpu"]) / 1000)) if s.get("libvirtd_cpu") else ""))

    c = results.get("ctl")
    if c:
        w("### Control commands, whole process\n")
        w("On one paused q35 guest per side (qdm mode qemu; a libvirt domain), `raw-qmp --once` "
          "on qdm's QEMU as in section 2; per round each side's resume and pause run back to "
          "back, so every guest goes paused -> running -> paused.\n")
        w(_table3("whole process", "ms", [
            ("query-status: `qdm qmp NAME query-status` / `virsh qemu-monitor-command NAME "
             "'{\"execute\":\"query-status\"}'` / raw-qmp --once", c["qmp"]["qdm"], c["qmp"]["libvirt"], c["qmp"]["raw"]),
            ("resume: `qdm resume` / `virsh resume` / raw-qmp --once --command cont",
             c["resume"]["qdm"], c["resume"]["libvirt"], c["resume"]["raw"]),
            ("pause: `qdm pause` / `virsh suspend` / raw-qmp --once --command stop",
             c["pause"]["qdm"], c["pause"]["libvirt"], c["pause"]["raw"]),
        ]))
        w("What it includes: each is a process spawned by this script, until it exits: qdm's "
          "CLI connects to the device model's QMP socket itself; raw-qmp connects, reads the "
          "greeting, negotiates and sends the one command; virsh connects to libvirtd (auth, "
          "open), looks the domain up by name, and libvirtd relays the command on its own, "
          "already negotiated monitor connection (for resume/suspend libvirt also waits for "
          "QEMU's RESUME/STOP event and updates its domain state).\n")

    t = results.get("thr")
    if t and t.get("raw"):
        w("### Relayed QMP throughput\n")
        rows = [
            ("sequential query-status: libqdm (bench-qmp-client --seq) / one virsh reading %d "
             "commands from stdin, N/wall / raw-qmp --seq" % t["n"], t["lib"], t["virsh"], t["raw"]),
            ("the same, virsh's start and connection taken out ((N-1)/(wall(N) - wall(1)))",
             t["lib"], t["virsh_marginal"], t["raw"]),
        ]
        if t.get("pylibvirt"):
            rows.append(("the same, libvirt through python3-libvirt (one connection and domain "
                         "handle, qemuMonitorCommand in a loop, timed inside)", t["lib"], t["pylibvirt"], t["raw"]))
        w(_table3("commands/s", "cps", rows, higher_is_better=True))
        w("What it includes: libqdm and raw-qmp time N sequential commands on one negotiated "
          "connection to qdm's QEMU, inside the process (the next command sent when the previous "
          "reply is in). The virsh row is one `virsh -q -c URI` process fed N `qemu-monitor-command "
          "NAME '{\"execute\":\"query-status\"}'` lines on stdin, timed as a whole (spawn to "
          "exit) and divided into N: per command virsh parses the line, looks the domain up "
          "(one RPC) and sends the command (a second RPC), libvirtd relays it to QEMU on its "
          "own monitor connection and back, and virsh prints the reply. The one-command batch "
          "took %.1f ms (median): virsh's start and connection, which the second row takes out. "
          "N = %d per run.%s\n" % (med(t["virsh_one"]) / 1000 if t["virsh_one"] else 0, t["n"],
                                   "" if results["setup"].get("pylibvirt") else
                                   " python3-libvirt is not installed: no in-process libvirt row."))

    sc = results.get("scale")
    if sc and sc.get("qdm"):
        w("### %d creates at once\n" % sc["n"])
        w(_table3("%d in parallel, q35 %s" % (sc["n"], _accel(results)), "ms", [
            ("start: `qdm create --paused` / `virsh create --paused` / raw-launch --restricted --hold, "
             "until all returned", sc["qdm"], sc["libvirt"], sc["raw"]),
            ("then destroy all in parallel: `qdm destroy` / `virsh destroy`", sc["qdm_destroy"],
             sc["libvirt_destroy"], None),
        ]))
        w("What it includes: the %d processes of each side are released together from a barrier "
          "(run.py's spawn_together); the wall time runs from the release until the last one "
          "exited (qdm, virsh) or printed its ready line (raw-launch). libvirtd serves the %d "
          "virsh clients with its worker threads; the work of each start is spread over "
          "libvirtd, the helper processes it forks (namespace, cgroups, access checks) and QEMU, "
          "all competing for the %d CPUs.\n"
          % (sc["n"], sc["n"], len(os.sched_getaffinity(0))))

    conf = results.get("confinement") or {}
    if conf:
        w("### What each QEMU runs with (unequal on purpose)\n")
        w("| | qdm (mode qemu) | libvirt |\n|---|---|---|")
        q, l = conf.get("qdm", {}), conf.get("libvirt", {})
        for label, key in (("uid", "Uid"), ("effective capabilities", "CapEff"),
                           ("bounding set", "CapBnd"), ("no_new_privs", "NoNewPrivs"),
                           ("seccomp mode", "Seccomp")):
            w("| %s | %s | %s |" % (label, q.get(key, "?"), l.get(key, "?")))
        w("| namespaces other than the host's | %s | %s |" % (", ".join(q.get("namespaces", [])) or "none",
                                                            ", ".join(l.get("namespaces", [])) or "none"))
        w("| root directory | %s | %s |" % (q.get("root", "?"), l.get("root", "?")))
        w("| cgroup (v2 path) | `%s` | `%s` |" % (q.get("cgroup", "?"), l.get("cgroup", "?")))
        w("")
        if l.get("cmdline"):
            w("libvirt's QEMU command line for the domain (for comparison with qdm's in section 1):\n")
            w("```\n%s\n```\n" % l["cmdline"].strip())
        if q.get("cmdline"):
            w("qdm's:\n")
            w("```\n%s\n```\n" % q["cmdline"].strip())
        w("So libvirt does more per start than qdm and raw-launch: its own private mount "
          "namespace with a populated /dev, per-domain cgroups, DAC labelling of the domain's "
          "files, a virtlogd log, a master key secret, its own device model options (-cpu, -rtc, "
          "a memory backend, -no-acpi, -audiodev none, -boot strict) and several monitor queries "
          "after QEMU's greeting. That is part of what it costs; the figures above compare what "
          "a caller waits for, not equal work.\n")

    if results.get("failures"):
        w("Failures in this section (each affected round left out): %s.\n" % "; ".join(results["failures"]))
    w("Duration of this section: %.0f s.\n" % results.get("elapsed_s", 0))

    head = []
    if s and s["libvirt"]:
        head.append(("start to paused-and-ready, q35 %s: `virsh create --paused` (in the qdm column) vs "
                     "raw-launch --restricted" % _accel(results), s["libvirt"], s["raw"], "ms"))
        head.append(("the same: `qdm create --paused` vs `virsh create --paused` (in the raw column)",
                     s["qdm"], s["libvirt"], "ms"))
    if t and t.get("virsh_marginal"):
        head.append(("query-status relayed by libvirt (one virsh, start taken out; in the qdm column) vs "
                     "raw-qmp --seq, higher is better", t["virsh_marginal"], t["raw"], "cps"))
        head.append(("libqdm sequential vs libvirt relayed (in the raw column), higher is better",
                     t["lib"], t["virsh_marginal"], "cps"))
    return "\n".join(L), head


def _accel(results):
    return results.get("setup", {}).get("accel", "")


# ---- standalone ----------------------------------------------------------------------------

def main():
    """Run this section alone, from the repository root, with run.py's helpers."""
    bench_dir = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, bench_dir)
    import run as R   # module level of run.py only reads the environment and /proc/mounts
    import tempfile

    ok, why = available()
    if not ok:
        print("skipped: %s" % why)
        return 0

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    R.build()
    accel = "kvm" if R.kvm_usable() else "tcg"
    R.UID_LOCKS_BEFORE = R.uid_locks()
    for d in (R.UID_LOCK_DIR, os.path.dirname(R.UID_LOCK_DIR)):
        R.UID_DIRS_BEFORE[d] = os.path.isdir(d)
    R.TMP = tempfile.mkdtemp(prefix="qdm-bench.", dir=R.TMP_BASE)
    R.RUN_DIR = os.path.join(R.TMP, "run")
    os.makedirs(os.path.join(R.TMP, "cfg"))
    R.RAW_ENV = dict(os.environ, TMPDIR=R.TMP)
    ctx = {"runs": R.RUNS, "quick": R.QUICK, "accel": accel, "qemu": R.QEMU,
           "raw_launch": R.RAW_LAUNCH, "raw_qmp": R.RAW_QMP, "bench_client": R.LIB_CLIENT,
           "qdm": R.qdm, "write_config": R.write_config, "qdm_create": R.qdm_create,
           "raw_launch_once": R.raw_launch_once, "spawn_together": R.spawn_together,
           "tmp": R.TMP, "log": R.log, "name_prefix": R.NAME_PREFIX, "raw_env": R.RAW_ENV,
           "raw_runas": R.RAW_RUNAS, "start_timeout_s": R.START_TIMEOUT_S}
    rc = 0
    results = None
    try:
        results = measure(ctx)
    except KeyboardInterrupt:
        R.log("interrupted: cleaning up")
        rc = 130
    finally:
        cleanup()
        R.cleanup()
        left = R.leftovers() + leftovers()
    if left:
        R.log("LEFT BEHIND: " + "; ".join(left))
        rc = rc or 1
    if results is not None:
        text, head = render(results, R.table)
        print("## libvirt, side by side\n")
        print(text)
        if head:
            print("Headline rows:\n")
            print("| figure | a (median) | b (median) | a/b |\n|---|---:|---:|---:|")
            for label, a, b, unit in head:
                div = 1000.0 if unit == "ms" else 1.0
                print("| %s | %.2f | %.2f | %.2f |" % (label, statistics.median(a) / div,
                                                       statistics.median(b) / div,
                                                       statistics.median(a) / statistics.median(b)))
        if results.get("failures"):
            rc = rc or 1
    R.log("bench_libvirt: done%s" % ("" if not left else "; left behind: " + "; ".join(left)))
    return rc


if __name__ == "__main__":
    sys.exit(main())
