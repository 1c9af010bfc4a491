#!/usr/bin/env python3
"""Capture Gunicorn's own error log through the ways a worker ends.

Runs the real Gunicorn of the test venv (scripts/test.sh installs 27.0.1 into
target/test-venv) with tests/apps/app.py, one master per scenario, each with
its own --error-logfile, and copies each log to
fixtures/gunicorn/VERSION/NAME.log:

  max_requests        --max-requests 3: workers recycle after their requests
  timeout_sigstop     a worker stopped with SIGSTOP past --timeout: WORKER
                      TIMEOUT, SIGABRT (pending, it is stopped), then SIGKILL
                      on a later pass, logged "Perhaps out of memory?"
  timeout_busy        a worker inside a 10 s request past --timeout 2: WORKER
                      TIMEOUT, SIGABRT, whose handler raises SystemExit in
                      the request; the worker logs the traceback and leaves
                      with code 0, so no exit line
  segv                a worker crashing with a real segmentation fault
  exit_code           sys.exit(7) inside a request, which 23.0 and 27.0
                      catch (the worker answers 500 and lives on) and 20.1
                      does not, then os._exit(7)
  exit_code_3_boot    sys.exit(3) while the app is imported (boot_exit.py):
                      3 is Gunicorn's WORKER_BOOT_ERROR, so the master halts
                      ("Reason: Worker failed to boot.")
  exit_code_3_os      os._exit(3) inside a request: the master halts the same
  hup_reload          SIGHUP to the master: new workers, old ones stopped
  term_shutdown       SIGTERM to the master, at --log-level debug (DEBUG
                      lines, a multi-line configuration dump)
  term_shutdown_busy  SIGTERM while a request outlives --graceful-timeout: the
                      master SIGKILLs the worker during shutdown
  sigkill_external    a worker SIGKILLed by someone else (as the OOM killer
                      would)
  worker_signals      workers ended by signals Gunicorn leaves at their default
                      action: SIGHUP and SIGUSR2 from outside, real-time
                      signal 40 ("signal 40"), and SIGTERM raised by the
                      worker itself after restoring its default action
  master_signals      TTIN, TTOU, USR1 and WINCH, then SIGINT
  control             (25.1.0 and later) raw control-socket frames, each
                      answer as it came off the socket (4-byte big-endian
                      length, then JSON) in control_*.frame: show workers,
                      show workers with one worker SIGSTOPped for 4.5 s, show
                      stats after a recycle and a HUP, an unknown command;
                      and app_socket_answer.bin, what an app's own unix
                      socket answers to the same request: nothing until
                      the worker, stuck reading a request line, hits its
                      --timeout (2 s here) and answers 500
  control_booting     (25.1.0 and later) show workers while the one worker
                      is still importing a slow app (tests/apps/slow_boot.py)
                      and has sent no heartbeat, with the wall and monotonic
                      clocks at the moment of asking beside it

Scenarios run under different TZ values, so the logs carry +0000, +0530 and
-0400/-0500 offsets. Every process started here is in its own session and is
killed by its process group on the way out.

Usage: tools/capture_gunicorn_logs.py [VENV [SCENARIO...]]

VENV defaults to target/test-venv. For an older Gunicorn, make a venv with
it (python3 -m venv /tmp/g23 && /tmp/g23/bin/pip install gunicorn==23.0.0)
and pass it; versions before 25.1.0 have no control socket and are run
without --control-socket.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/test-venv")
OUT = None  # set by main() from the version
CONTROL_SOCKET = True  # 25.1.0 and later
APPS = os.path.join(ROOT, "tests/apps")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(") ", 1)[1].split()
        if int(fields[1]) == pid:
            out.append(int(d))
    return sorted(out)


def wait_for(what, f, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        v = f()
        if v:
            return v
        time.sleep(0.05)
    raise SystemExit("timed out waiting for %s" % what)


class Master:
    def __init__(self, name, workers, args, tz, app="app:app", wait=True):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="bgw-capture-%s-" % name)
        self.log = os.path.join(self.dir, "error.log")
        self.addr = "127.0.0.1:%d" % free_port()
        cmd = [os.path.join(VENV, "bin/gunicorn"),
               "--workers", str(workers),
               "--bind", self.addr,
               "--chdir", APPS,
               "--error-logfile", self.log,
               "--graceful-timeout", "2"] + args + [app]
        if CONTROL_SOCKET:
            cmd[1:1] = ["--control-socket", os.path.join(self.dir, "gunicorn.ctl")]
        env = dict(os.environ, TZ=tz)
        self.proc = subprocess.Popen(cmd, env=env, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait:
            self.workers(workers)

    def workers(self, n):
        """The `n` workers, once each has logged its boot line."""
        pids = wait_for("%d workers" % n, lambda: (lambda c: c if len(c) == n else None)(
            children(self.proc.pid)))
        wait_for("boot lines of %s" % pids, lambda: all(
            ("Booting worker with pid: %d\n" % p) in self.text() for p in pids))
        return pids

    def text(self):
        try:
            with open(self.log) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def get(self, path, timeout=5):
        try:
            with urllib.request.urlopen("http://%s%s" % (self.addr, path), timeout=timeout) as r:
                return r.read()
        except Exception as e:  # a killed worker drops the connection
            return e

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout=30):
        self.proc.wait(timeout=timeout)

    def finish(self):
        try:
            if self.proc.poll() is None:
                self.signal(signal.SIGTERM)
                self.wait_exit()
            time.sleep(0.2)
            shutil.copyfile(self.log, os.path.join(OUT, self.name + ".log"))
            with open(self.log) as f:
                print("%-20s %3d lines" % (self.name, len(f.readlines())), file=sys.stderr)
        finally:
            self.kill()

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def replaced(m, old, n):
    """Wait until `old` is no longer a worker and there are `n` booted workers."""
    wait_for("worker %d replaced" % old,
             lambda: (lambda c: old not in c and len(c) == n)(children(m.proc.pid)))
    return m.workers(n)


def max_requests():
    m = Master("max_requests", 1, ["--max-requests", "3"], "UTC")
    for _ in range(7):
        m.get("/")
    m.workers(1)
    m.finish()


def timeout_sigstop():
    m = Master("timeout_sigstop", 2, ["--timeout", "3"], "Asia/Kolkata")
    victim = m.workers(2)[0]
    os.kill(victim, signal.SIGSTOP)
    replaced(m, victim, 2)
    time.sleep(0.5)
    m.finish()


def timeout_busy():
    m = Master("timeout_busy", 1, ["--timeout", "2"], "UTC")
    victim = m.workers(1)[0]
    m.get("/sleep?s=10", timeout=15)
    replaced(m, victim, 1)
    time.sleep(0.5)
    m.finish()


def segv():
    m = Master("segv", 1, [], "America/New_York")
    victim = m.workers(1)[0]
    m.get("/segv")
    replaced(m, victim, 1)
    m.finish()


def exit_code():
    m = Master("exit_code", 1, [], "UTC")
    m.get("/exit?code=7")
    # 27.0.1 catches the SystemExit; 23.0.0 and older end the worker, and
    # the master notices on its next pass.
    time.sleep(2)
    victim = m.workers(1)[0]
    m.get("/exit?code=7&hard=1")
    replaced(m, victim, 1)
    m.finish()


def exit_code_3_boot():
    m = Master("exit_code_3_boot", 1, [], "UTC", app="boot_exit:app", wait=False)
    m.wait_exit()
    m.finish()


def exit_code_3_os():
    m = Master("exit_code_3_os", 1, [], "UTC")
    m.get("/exit?code=3&hard=1")
    m.wait_exit()
    m.finish()


def hup_reload():
    m = Master("hup_reload", 2, [], "Asia/Kolkata")
    old = m.workers(2)
    m.signal(signal.SIGHUP)
    wait_for("new workers", lambda: (lambda c: len(c) == 2 and not set(c) & set(old))(
        children(m.proc.pid)))
    m.workers(2)
    m.finish()


def term_shutdown():
    m = Master("term_shutdown", 2, ["--log-level", "debug"], "UTC")
    m.get("/")
    m.finish()


def term_shutdown_busy():
    # The master SIGKILLs the busy worker at the end of its graceful timeout
    # and reaps once more; the worker is logged only when that last reap
    # finds it dead already (a race it mostly loses), so try until a run
    # shows it, else keep the last run, which has no line for the worker.
    import threading
    for _ in range(15):
        m = Master("term_shutdown_busy", 1, [], "UTC")
        t = threading.Thread(target=m.get, args=("/sleep?s=30", 40))
        t.start()
        time.sleep(0.5)
        m.finish()
        t.join()
        with open(os.path.join(OUT, m.name + ".log")) as f:
            if "was sent SIGKILL!" in f.read():
                return
    print("term_shutdown_busy: no run logged the SIGKILL; kept one without", file=sys.stderr)


def sigkill_external():
    m = Master("sigkill_external", 2, [], "America/New_York")
    victim = m.workers(2)[1]
    os.kill(victim, signal.SIGKILL)
    replaced(m, victim, 2)
    m.finish()


def worker_signals():
    m = Master("worker_signals", 2, [], "UTC")
    for sig in (signal.SIGHUP, signal.SIGUSR2, 40):
        victim = m.workers(2)[0]
        os.kill(victim, sig)
        replaced(m, victim, 2)
    victims = m.workers(2)
    m.get("/raise?sig=%d" % signal.SIGTERM)
    wait_for("a worker replaced", lambda: (lambda c: len(c) == 2 and c != victims)(
        children(m.proc.pid)))
    m.workers(2)
    m.finish()


def master_signals():
    m = Master("master_signals", 2, [], "UTC")
    m.signal(signal.SIGTTIN)
    m.workers(3)
    m.signal(signal.SIGTTOU)
    m.workers(2)
    m.signal(signal.SIGUSR1)
    m.signal(signal.SIGWINCH)
    time.sleep(1.5)
    m.signal(signal.SIGINT)
    m.wait_exit()
    m.finish()


def control():
    if not CONTROL_SOCKET:
        return
    import struct
    import json
    # --timeout 6: an idle worker beats every 3 s, a stopped one not at all.
    m = Master("control", 2, ["--max-requests", "2", "--timeout", "6"], "UTC")
    ctl = os.path.join(m.dir, "gunicorn.ctl")
    app_sock = os.path.join(m.dir, "app.sock")
    # A second master for the app socket: one bound to a unix path.
    m2 = Master("control_app", 1, ["--bind", "unix:" + app_sock, "--timeout", "2"], "UTC")

    def request(path, command, raw=False):
        payload = json.dumps({"id": 1, "command": command, "args": []}).encode()
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(path)
            s.sendall(struct.pack(">I", len(payload)) + payload)
            data = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                data += chunk
                if not raw and len(data) >= 4 and len(data) >= 4 + struct.unpack(">I", data[:4])[0]:
                    break
            return data

    def save(name, data):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)

    wait_for("the control socket", lambda: os.path.exists(ctl))
    save("control_show_workers.frame", request(ctl, "show workers"))
    victim = m.workers(2)[0]
    os.kill(victim, signal.SIGSTOP)
    time.sleep(4.5)
    save("control_show_workers_stopped.frame", request(ctl, "show workers"))
    os.kill(victim, signal.SIGCONT)
    for _ in range(4):
        m.get("/")
    m.signal(signal.SIGHUP)
    time.sleep(1.5)
    m.workers(2)
    save("control_show_stats.frame", request(ctl, "show stats"))
    save("control_unknown_command.frame", request(ctl, "show nonsense"))
    save("app_socket_answer.bin", request(app_sock, "show workers", raw=True))
    m2.kill()
    m.finish()


def control_booting():
    """`show workers` while the only worker is still importing its app:
    it has not sent a heartbeat yet, and the master reads the tmp file's
    wall-clock creation time against its monotonic clock. The clocks at the
    moment of asking go beside it, `wall monotonic`, in seconds."""
    if not CONTROL_SOCKET:
        return
    import struct
    import json
    m = Master("control_booting", 1, ["--timeout", "30"], "UTC", app="slow_boot:app")
    ctl = os.path.join(m.dir, "gunicorn.ctl")
    wait_for("the control socket", lambda: os.path.exists(ctl))
    payload = json.dumps({"id": 1, "command": "show workers", "args": []}).encode()
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(ctl)
        clocks = "%.3f %.3f\n" % (time.time(), time.monotonic())
        s.sendall(struct.pack(">I", len(payload)) + payload)
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    with open(os.path.join(OUT, "control_show_workers_booting.frame"), "wb") as f:
        f.write(data)
    with open(os.path.join(OUT, "control_show_workers_booting.clocks"), "w") as f:
        f.write(clocks)
    m.finish()


SCENARIOS = ["max_requests", "timeout_sigstop", "timeout_busy", "segv", "exit_code",
             "exit_code_3_boot", "exit_code_3_os", "hup_reload", "term_shutdown",
             "term_shutdown_busy", "sigkill_external", "worker_signals", "master_signals", "control", "control_booting"]


def main():
    global OUT, CONTROL_SOCKET
    out = subprocess.run([os.path.join(VENV, "bin/gunicorn"), "--version"],
                         capture_output=True, text=True, check=True)
    # "gunicorn (version 27.0.1)"; older versions print it to stderr.
    version = (out.stdout + out.stderr).strip().rsplit(" ", 1)[1].rstrip(")")
    CONTROL_SOCKET = tuple(int(x) for x in version.split(".")[:2]) >= (25, 1)
    OUT = os.path.join(ROOT, "fixtures/gunicorn", version)
    os.makedirs(OUT, exist_ok=True)
    print("gunicorn", version, "->", OUT, file=sys.stderr)
    for name in sys.argv[2:] or SCENARIOS:
        globals()[name]()


if __name__ == "__main__":
    main()
