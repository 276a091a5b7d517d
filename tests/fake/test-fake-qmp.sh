#!/bin/sh
# Self-test of the fake QMP server: every mode against a small Python client, plus the
# process hygiene the other tests rely on (SIGTERM, parent death, no fd growth, socket
# removed at exit). Usage: test-fake-qmp.sh PATH/TO/fake-qmp [TEST_NAME...]
set -eu
exe=${1:?usage: test-fake-qmp.sh PATH/TO/fake-qmp [TEST...]}
shift
if ! command -v python3 >/dev/null 2>&1; then
        echo "python3 not found: skipping" >&2
        exit 77
fi
exec python3 - "$exe" "$@" <<'PY'
import json, os, shutil, socket, subprocess, sys, time, signal, tempfile, select

EXE = sys.argv[1]
TMP = tempfile.mkdtemp(prefix="fakeqmp-")
GREETING = b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "fake"}, "capabilities": ["oob"]}}\r\n'
failures = 0

def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what, flush=True)
    return cond

class Server:
    n = 0
    def __init__(self, mode="normal", *extra):
        Server.n += 1
        self.path = os.path.join(TMP, "s%d.sock" % Server.n)
        self.log = os.path.join(TMP, "s%d.log" % Server.n)
        self.p = subprocess.Popen([EXE, "--listen", self.path, "--mode", mode, "--log", self.log, *extra],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.p.stdout.readline()
        assert line == b"READY\n", line
    def loglines(self):
        with open(self.log) as f:
            return f.read().splitlines()
    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        rc = self.p.wait(5)
        err = self.p.stderr.read()
        self.p.stdout.close(); self.p.stderr.close()
        check(rc == 0, "server exit status %r" % rc)
        check(err in (b"", b"WEDGED\n"), "server stderr %r" % err[:3000])
        check(not os.path.exists(self.path), "socket removed at exit")
        return rc

class Client:
    def __init__(self, srv):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(srv.path)
        self.buf = b""
    def send(self, obj):
        data = obj if isinstance(obj, bytes) else (json.dumps(obj) + "\r\n").encode()
        self.s.sendall(data)
    def line(self, timeout=2.0):
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.s], [], [], left)
            if not r:
                return None
            d = self.s.recv(65536)
            if not d:
                return b""
            self.buf += d
        l, _, self.buf = self.buf.partition(b"\n")
        return l + b"\n"
    def msg(self, timeout=2.0):
        l = self.line(timeout)
        return json.loads(l) if l else l
    def reply(self, timeout=2.0):
        """next non-event message"""
        while True:
            m = self.msg(timeout)
            if not m or "event" not in m:
                return m
    def cmd(self, name, args=None, id=None, **kw):
        c = {"execute": name}
        if args is not None: c["arguments"] = args
        if id is not None: c["id"] = id
        self.send(c)
        return self.reply(**kw)
    def negotiate(self):
        g = self.line()
        check(g == GREETING, "greeting bytes %r" % g)
        r = self.cmd("qmp_capabilities", id="cap")
        check(r == {"return": {}, "id": "cap"}, "caps reply %r" % r)
    def close(self):
        self.s.close()

def fds_of(pid):
    return sorted(os.listdir("/proc/%d/fd" % pid), key=int)

def test_normal():
    s = Server()
    c = Client(s)
    check(c.line() == GREETING, "greeting")
    r = c.cmd("query-status", id=1)
    check(r == {"error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}, "id": 1}, "before caps %r" % r)
    r = c.cmd("qmp_capabilities", {"enable": ["oob"]}, id={"a": [1, "x"]})
    check(r == {"return": {}, "id": {"a": [1, "x"]}}, "caps %r" % r)
    r = c.cmd("qmp_capabilities", id=2)
    check(r["error"]["class"] == "CommandNotFound", "caps twice")
    r = c.cmd("query-status", id="q1")
    check(r == {"return": {"status": "prelaunch", "singlestep": False, "running": False}, "id": "q1"}, "status %r" % r)
    c.send({"execute": "cont", "id": "c"})
    ev = c.msg(); r = c.msg()
    check(ev.get("event") == "RESUME" and "seconds" in ev["timestamp"], "RESUME %r" % ev)
    check(r == {"return": {}, "id": "c"}, "cont %r" % r)
    r = c.cmd("query-status", id="q2")
    check(r["return"]["status"] == "running" and r["return"]["running"] is True, "running")
    c.send({"execute": "stop", "id": "s"})
    ev = c.msg(); r = c.msg()
    check(ev.get("event") == "STOP" and r == {"return": {}, "id": "s"}, "stop")
    check(c.cmd("query-status", id=3)["return"]["status"] == "paused", "paused")
    r = c.cmd("query-version", id=4)
    check(r["return"]["qemu"] == {"micro": 0, "minor": 2, "major": 7}, "version")
    r = c.cmd("x-echo", {"k": [1, 2, {"z": None}], "s": "\u00e9/\n"}, id=5)
    check(r == {"return": {"k": [1, 2, {"z": None}], "s": "\u00e9/\n"}, "id": 5}, "echo %r" % r)
    c.send({"execute": "x-events", "arguments": {"count": 5}, "id": 6})
    evs = [c.msg() for _ in range(5)]
    check([e["event"] for e in evs] == ["X_EVENT"] * 5 and [e["data"]["n"] for e in evs] == list(range(5)), "x-events")
    check(c.msg() == {"return": {}, "id": 6}, "x-events reply")
    r = c.cmd("x-big", {"bytes": 3000000}, id=7)
    check(r["return"] == "a" * 3000000 and r["id"] == 7, "x-big")
    r = c.cmd("nope", id=8)
    check(r == {"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}, "id": 8}, "unknown")
    c.send(b'{"execute": oops}\r\n')
    r = c.msg()
    check("error" in r and r["error"]["class"] == "GenericError" and r["error"]["desc"].startswith("JSON parse error") and "id" not in r, "parse error %r" % r)
    r = c.cmd("query-status")  # no id
    check("id" not in r and "return" in r, "no id %r" % r)
    # id verbatim for big ints, floats, strings needing escapes
    for ident in [18446744073709551615, -5, 1.5, "a/b\"c\u00e9", [1, {"x": True}], None]:
        r = c.cmd("query-status", id=ident) if ident is not None else (c.send({"execute": "query-status", "id": None}) or c.reply())
        check("id" in r and r["id"] == ident, "id %r -> %r" % (ident, r.get("id")))
    # several commands in one write, without newlines between them
    c.send(b'{"execute":"x-echo","arguments":{"n":1},"id":"p1"}{"execute":"x-echo","arguments":{"n":2},"id":"p2"} \n')
    check(c.reply()["id"] == "p1" and c.reply()["id"] == "p2", "pipelined")
    # bad input kinds
    c.send(b'[1,2]\r\n'); r = c.reply(); check(r["error"]["desc"] == "QMP input must be a JSON object", "array %r" % r)
    c.send(b'{"id": 9}\r\n'); r = c.reply(); check(r == {"error": {"class": "GenericError", "desc": "QMP input lacks member 'execute'"}, "id": 9}, "lacks %r" % r)
    c.send(b'{"execute": "x-echo", "arguments": 3, "id": 10}\r\n'); r = c.reply(); check(r["error"]["class"] == "GenericError" and r["id"] == 10, "args type")
    c.send(b'{"execute": "x-echo", "bad": 3}\r\n'); r = c.reply(); check("unexpected" in r["error"]["desc"], "unexpected member")
    c.send(b'{"execute": "x-echo", "arguments": {"s": "\xff"}}\r\n'); r = c.reply(); check(r["error"]["desc"].startswith("JSON parse error"), "bad utf8 in")
    c.send(b'garbage line here\r\n'); r = c.reply(); check(r["error"]["desc"].startswith("JSON parse error"), "garbage in")
    check(c.cmd("x-sleep", {"ms": 10}, id="sl") == {"return": {}, "id": "sl"}, "x-sleep")
    check(c.cmd("x-sleep", {}, id="sl2")["error"]["desc"] == "Parameter 'ms' is missing", "x-sleep missing")
    # the monitor runs one command at a time: query-status waits for x-sleep
    t = time.monotonic()
    c.send(b'{"execute":"x-sleep","arguments":{"ms":200},"id":"slow"}{"execute":"query-status","id":"after"}\r\n')
    r1 = c.reply(); r2 = c.reply()
    check(r1["id"] == "slow" and r2["id"] == "after" and time.monotonic() - t >= 0.19, "one command at a time")
    pid = s.p.pid
    before = fds_of(pid)
    c.send({"execute": "quit", "id": "bye"})
    check(c.msg() == {"return": {}, "id": "bye"}, "quit reply")
    ev = c.msg()
    check(ev["event"] == "SHUTDOWN", "SHUTDOWN")
    check(c.line() == b"", "EOF after quit")
    check(s.p.wait(3) == 0, "quit exits 0")
    check(len(before) == 7, "fds while serving: %r" % before)  # 0 1 2 sig log listen conn
    s.stop()
    log = s.loglines()
    check("CMD quit \"bye\"" in log and "REPLY \"bye\"" in log and log[-1] == "EXIT", "log %r" % log[-4:])

def test_fd_leak_and_serial_clients():
    s = Server("normal", "--max-clients", "5")
    base = None
    for i in range(5):
        c = Client(s); c.negotiate()
        check(c.cmd("query-status", id=i)["id"] == i, "client %d" % i)
        c.close()
        time.sleep(0.05)
        fds = fds_of(s.p.pid) if s.p.poll() is None else None
        if i == 0: base = fds
        elif fds is not None: check(fds == base, "fds stable %r %r" % (fds, base))
    check(s.p.wait(3) == 0, "max-clients exits")
    s.stop()

def test_one_at_a_time():
    s = Server()
    a = Client(s); a.negotiate()
    b = Client(s)  # sits in backlog
    check(b.line(0.3) is None, "second client not served while first is")
    a.close()
    b.negotiate()
    b.close(); s.stop()

def test_wedge():
    # naive client: sends and hangs up 50 ms later, before the reply
    s = Server("wedge")
    a = Client(s)
    check(a.line() == GREETING, "wedge greeting")
    a.send({"execute": "qmp_capabilities", "id": "c"})
    a.send({"execute": "x-sleep", "arguments": {"ms": 200}, "id": "z"})
    time.sleep(0.05); a.close()
    time.sleep(0.1)
    b = Client(s)
    check(b.line() == GREETING, "greeting after wedge")
    b.send({"execute": "qmp_capabilities", "id": "c2"})
    check(b.line(1.5) is None, "wedged: silence")
    b.close()
    c = Client(s)
    check(c.line() == GREETING, "greeting 3")
    c.send({"execute": "qmp_capabilities", "id": "c3"})
    check(c.line(0.7) is None, "still wedged")
    c.close()
    time.sleep(0.1)
    log = s.loglines()
    check("WEDGED" in log, "WEDGED logged")
    s.stop()
    # patient client: waits for every reply, then closes
    s = Server("wedge")
    a = Client(s); a.negotiate()
    t = time.monotonic()
    r = a.cmd("x-sleep", {"ms": 100}, id="z")
    check(r == {"return": {}, "id": "z"} and time.monotonic() - t >= 0.29, "wedge mode: delay+sleep")
    a.close()
    b = Client(s); b.negotiate()
    check(b.cmd("query-status", id=1)["return"]["status"] == "prelaunch", "not wedged")
    b.close(); time.sleep(0.05)
    log = s.loglines()
    check("WEDGED" not in log and 'REPLY "z"' in log, "no wedge for patient client")
    s.stop()

def test_misroute():
    s = Server("misroute")
    a = Client(s); a.negotiate()
    a.send({"execute": "x-sleep", "arguments": {"ms": 200}, "id": "abandoned"})
    time.sleep(0.05); a.close()
    b = Client(s)
    check(b.line() == GREETING, "misroute greeting")
    r = b.msg(1.0)
    check(r == {"return": {}, "id": "abandoned"}, "misrouted reply %r" % r)
    check(b.cmd("qmp_capabilities", id="mine") == {"return": {}, "id": "mine"}, "own caps after")
    b.close()
    # reply finished before next client connects: stashed and delivered after greeting
    c = Client(s); c.negotiate()
    c.send({"execute": "x-sleep", "arguments": {"ms": 50}, "id": "ab2"})
    time.sleep(0.01); c.close(); time.sleep(0.2)
    d = Client(s)
    check(d.line() == GREETING and d.msg() == {"return": {}, "id": "ab2"}, "stashed misroute")
    d.close(); time.sleep(0.05)
    log = s.loglines()
    check(any(l.startswith('MISROUTE "abandoned"') for l in log), "MISROUTE logged")
    s.stop()

def raw_session(mode, send=b'{"execute":"qmp_capabilities","id":1}\r\n{"execute":"query-status","id":2}\r\n', extra=(), until=None, timeout=2.0):
    s = Server(mode, *extra)
    sk = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); sk.connect(s.path)
    sk.sendall(send)
    chunks = []
    end = time.monotonic() + timeout
    data = b""
    while time.monotonic() < end:
        r, _, _ = select.select([sk], [], [], end - time.monotonic())
        if not r: break
        d = sk.recv(65536)
        if not d: break
        chunks.append(d); data += d
        if until and until(data): break
    sk.close(); time.sleep(0.02)
    return s, chunks, data

def test_split_merge():
    sN, cN, dN = raw_session("normal", until=lambda d: d.count(b"\n") >= 3)
    sN.stop()
    sS, cS, dS = raw_session("split", until=lambda d: d.count(b"\n") >= 3)
    sS.stop()
    check(dS == dN, "split bytes identical\n%r\n%r" % (dS, dN))
    check(len(cS) > 100, "split reads %d" % len(cS))
    sM, cM, dM = raw_session("merge", until=lambda d: d.count(b"\n") >= 4)
    sM.stop()
    check(len(cM) == 1, "merge: one read %r" % cM)
    lines = dM.split(b"\r\n")
    check(lines[0] + b"\r\n" == GREETING and json.loads(lines[2]) == {"return": {}, "id": 1} and json.loads(lines[4])["id"] == 2, "merge content %r" % dM)

def test_reorder():
    s = Server("reorder")
    c = Client(s); c.negotiate()  # lone caps reply released after delay
    c.send(b'{"execute":"x-echo","arguments":{"n":1},"id":"first"}\r\n{"execute":"x-echo","arguments":{"n":2},"id":"second"}\r\n')
    r1 = c.reply(); r2 = c.reply()
    check(r1["id"] == "second" and r2["id"] == "first" and r1["return"] == {"n": 2}, "reorder %r %r" % (r1, r2))
    c.close(); s.stop()

def test_events():
    s = Server("events")
    c = Client(s)
    check(c.line() == GREETING, "greeting")
    check(c.msg()["event"] == "X_EARLY", "early event")
    c.send({"execute": "qmp_capabilities", "id": 1})
    check(c.msg()["event"] == "X_BETWEEN", "between")
    check(c.msg() == {"return": {}, "id": 1}, "reply after event")
    c.close(); s.stop()

def test_stale():
    s, ch, d = raw_session("stale", until=lambda d: d.count(b"\n") >= 6)
    lines = [json.loads(l) for l in d.split(b"\r\n") if l]
    check(lines[0]["id"] == "stale-pre" and "QMP" in lines[1] and lines[2]["id"] == "stale-0" and "id" not in lines[3], "stale %r" % lines)
    check(lines[4] == {"return": {}, "id": 1}, "stale then real")
    s.stop()

def test_garbage():
    s, ch, d = raw_session("garbage", until=lambda d: d.count(b"\n") >= 9)
    lines = d.split(b"\r\n")
    check(lines[0].startswith(b"\xff\xfe\x00") and lines[1] + b"\r\n" == GREETING, "garbage pre %r" % lines[:2])
    check(lines[2] == b"this is not JSON }{ ][" and b"\xff" in lines[3] and lines[4] == b"[1, 2, 3]" and json.loads(lines[5])["id"] == 1, "garbage lines %r" % lines)
    s.stop()

def test_deep_badutf8():
    s, ch, d = raw_session("deep", until=lambda d: d.count(b"\n") >= 3)
    lines = d.split(b"\r\n")
    check(json.loads(lines[1])["id"] == 1 and lines[2] == b'{"return": ' + b"[" * 100000 + b"]" * 100000 + b', "id": 2}', "deep")
    s.stop()
    s, ch, d = raw_session("badutf8", until=lambda d: d.count(b"\n") >= 3)
    lines = d.split(b"\r\n")
    check(b"\xff" in lines[2] and lines[2].endswith(b', "id": 2}'), "badutf8 %r" % lines[2])
    try:
        lines[2].decode("utf-8"); check(False, "should be invalid utf-8")
    except UnicodeDecodeError:
        pass
    s.stop()

def test_greet_twice_closemid_silent_nogreet():
    s, ch, d = raw_session("greet-twice", until=lambda d: d.count(b"\n") >= 4)
    check(d.startswith(GREETING + GREETING), "greet twice")
    s.stop()
    s, ch, d = raw_session("close-mid", timeout=2)
    lines = d.split(b"\r\n")
    check(json.loads(lines[1]) == {"return": {}, "id": 1} and len(lines) == 3 and lines[2] and not lines[2].endswith(b"}"), "close-mid %r" % lines)
    check(s.p.poll() is None, "server alive after close-mid")
    s.stop()
    s, ch, d = raw_session("silent", timeout=0.5)
    check(d == GREETING, "silent %r" % d)
    s.stop()
    s, ch, d = raw_session("nogreet", timeout=0.5)
    check(d == b"", "nogreet")
    s.stop()

def test_endless():
    s = Server("endless")
    c = Client(s); c.negotiate()
    c.send({"execute": "query-status", "id": 2})
    total = 0; nl = False
    end = time.monotonic() + 10
    while time.monotonic() < end:
        r, _, _ = select.select([c.s], [], [], 1.0)
        if not r: break
        d = c.s.recv(1 << 20)
        if not d: break
        total += len(d); nl = nl or b"\n" in d
    check(total == 64 * 1024 * 1024 + len('{"return": "') and not nl, "endless %d" % total)
    c.close(); time.sleep(0.05)
    d = Client(s); d.negotiate(); d.close()
    s.stop()

def test_flood():
    s = Server("flood")
    c = Client(s); c.negotiate()
    t0 = time.monotonic(); n = 0; got_reply = False
    c.send({"execute": "query-status", "id": "during"})
    buf = b""
    while time.monotonic() - t0 < 1.5:
        r, _, _ = select.select([c.s], [], [], 0.3)
        if not r: break
        d = c.s.recv(1 << 20)
        if not d: break
        buf += d
        *ls, buf = buf.split(b"\n")
        for l in ls:
            if b'"FLOOD"' in l: n += 1
            elif b'"during"' in l: got_reply = True
    dt = time.monotonic() - t0
    print("flood: %d events in %.2fs" % (n, dt))
    check(n >= 100000, "flood count %d" % n)
    check(got_reply, "reply during flood")
    c.close(); time.sleep(0.05)
    s.stop()
    check(any(l.startswith("FLOOD ") for l in s.loglines()), "flood logged")

def test_slow_and_greeting_delay():
    s = Server("slow", "--delay-ms", "150", "--greeting-delay-ms", "100")
    c = Client(s)
    t = time.monotonic(); g = c.line(); dt = time.monotonic() - t
    check(g == GREETING and dt >= 0.09, "greeting delay %.3f" % dt)
    t = time.monotonic(); c.cmd("qmp_capabilities", id=1); dt = time.monotonic() - t
    check(dt >= 0.14, "slow %.3f" % dt)
    c.close(); s.stop()

def test_sigterm_and_fd_mode():
    s = Server()
    c = Client(s); c.negotiate()
    s.p.send_signal(signal.SIGTERM)
    check(s.p.wait(3) == 0, "SIGTERM exit 0 with client connected")
    s.stop()
    # --fd: parent binds
    path = os.path.join(TMP, "fd.sock")
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); ls.bind(path); ls.listen(1)
    p = subprocess.Popen([EXE, "--fd", str(ls.fileno())], pass_fds=[ls.fileno()], stdout=subprocess.PIPE)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.connect(path)
    c.settimeout(2)
    check(c.recv(4096) == GREETING, "--fd greeting")
    c.close()
    p.terminate(); check(p.wait(3) == 0, "--fd exit")
    check(p.stdout.read() == b"", "no READY in --fd mode")
    check(os.path.exists(path), "--fd leaves parent's socket alone")
    ls.close(); os.unlink(path)
    # not a listening socket
    r = subprocess.run([EXE, "--fd", "0"], stdin=subprocess.DEVNULL, capture_output=True)
    check(r.returncode == 1, "--fd 0 rejected")
    r = subprocess.run([EXE, "--mode", "bogus", "--listen", "/tmp/x"], capture_output=True)
    check(r.returncode == 2, "bad mode rejected")

def test_parent_death():
    path = os.path.join(TMP, "pd.sock")
    # an intermediate parent that starts fake-qmp and prints its pid, then is killed
    mid = subprocess.Popen([sys.executable, "-c",
        "import subprocess,sys,time\n"
        "p=subprocess.Popen([sys.argv[1],'--listen',sys.argv[2]],stdout=subprocess.PIPE)\n"
        "p.stdout.readline(); print(p.pid, flush=True); time.sleep(60)", EXE, path],
        stdout=subprocess.PIPE)
    pid = int(mid.stdout.readline())
    mid.kill(); mid.wait()
    gone = False
    for _ in range(100):
        try:
            with open("/proc/%d/stat" % pid) as f:
                st = f.read().split(") ")[1].split()[0]
            if st == "Z": gone = True; break
        except FileNotFoundError:
            gone = True; break
        time.sleep(0.02)
    check(gone, "exits when parent dies")
    time.sleep(0.05)
    check(not os.path.exists(path), "parent death: socket removed")
    mid.stdout.close()

tests = [v for k, v in sorted(globals().items()) if k.startswith("test_")]
only = sys.argv[2:]
for t in tests:
    if only and t.__name__[5:] not in only:
        continue
    print("==", t.__name__, flush=True)
    try:
        t()
    except Exception as e:
        import traceback; traceback.print_exc()
        failures += 1
shutil.rmtree(TMP)
print("failures:", failures)
sys.exit(1 if failures else 0)
PY
