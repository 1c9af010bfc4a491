#!/usr/bin/env python3
"""Capture the own logs of uWSGI and php-fpm (Debian 12's packages) through
the ways a worker ends, into fixtures/SERVER/VERSION/NAME.log.

uWSGI runs tests/apps/app.py (callable `app`) with 3 workers, a mule and a
spooler, --auto-procname; php-fpm runs tests/apps/app.php with a static pool
of 3 children. One server per scenario, each with its own log:

  uwsgi:   max_requests   --max-requests 2 --min-worker-lifetime 1
           harakiri       --harakiri 2, a 10 s request
           segv           a worker crashing with a real segmentation fault
           sigkill        a worker SIGKILLed from outside, as the OOM killer
                          would (the same line as a harakiri's kill)
           hup_reload     SIGHUP: graceful reload
           term_reload    SIGTERM: uWSGI 2.0's brutal reload, not a stop
           int_stop       SIGINT: stop
  php-fpm: max_requests   pm.max_requests = 2
           timeout        request_terminate_timeout = 2s, a 10 s request
           sigkill        a child SIGKILLed from outside
           usr2_reload    SIGUSR2: reload
           quit_stop      SIGQUIT: graceful stop
           term_stop      SIGTERM: stop

Every process started here is in its own session and is killed by its
process group on the way out.

  nginx:   nginx's error log in front of both (uwsgi_pass, fastcgi_pass),
           into fixtures/nginx/error_uwsgi_fastcgi.log: a uWSGI worker
           SIGKILLed mid-request, a harakiri, the uWSGI socket gone; a
           php-fpm child SIGKILLed mid-request, request_terminate_timeout,
           a full php-fpm listen queue (listen.backlog = 1, one child busy),
           the php-fpm socket gone

Usage: tools/capture_server_logs.py uwsgi|php-fpm|nginx [SCENARIO...]
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(url, timeout=15):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read()
    except Exception as e:  # a killed worker's request fails; that is the point
        return repr(e).encode()


def wait_for(pred, what, secs=15):
    end = time.time() + secs
    while time.time() < end:
        if pred():
            return
        time.sleep(0.1)
    raise SystemExit("timed out waiting for " + what)


def children(pid):
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(pid)],
                         capture_output=True, text=True).stdout
    return [(int(l.split(None, 1)[0]), l.split(None, 1)[1]) for l in out.splitlines() if l.strip()]


def in_background(url):
    import threading
    t = threading.Thread(target=get, args=(url,), daemon=True)
    t.start()
    return t


# ---- uWSGI -------------------------------------------------------------

def uwsgi_version():
    return subprocess.run(["uwsgi", "--version"], capture_output=True, text=True).stdout.strip().split("-")[0]


def run_uwsgi(tmp, name, extra, scenario):
    port = free_port()
    log = os.path.join(tmp, name + ".log")
    pidfile = os.path.join(tmp, name + ".pid")
    spool = os.path.join(tmp, name + "-spool")
    os.makedirs(spool, exist_ok=True)
    cmd = ["uwsgi", "--plugin", "python3", "--master", "--processes", "3", "--mule",
           "--spooler", spool, "--auto-procname", "--http-socket", "127.0.0.1:%d" % port,
           "--wsgi-file", os.path.join(ROOT, "tests/apps/app.py"), "--callable", "app",
           "--logto", log, "--pidfile", pidfile, "--reload-mercy", "5",
           "--worker-reload-mercy", "5"] + extra
    p = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: os.path.exists(log) and "spawned uWSGI mule 1" in open(log).read(), "uwsgi up")
        base = "http://127.0.0.1:%d" % port
        scenario(p.pid, base, log)
        time.sleep(1)
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
    return log


def workers_of(pid):
    return [c for c, args in children(pid) if args.startswith("uWSGI worker")]


def uwsgi_scenarios():
    def max_requests(pid, base, log):
        time.sleep(1.5)
        for _ in range(12):
            get(base + "/")
        wait_for(lambda: "Seeya!" in open(log).read(), "a recycle")
        time.sleep(1)

    def harakiri(pid, base, log):
        get(base + "/sleep?s=10")
        wait_for(lambda: "HARAKIRI" in open(log).read() and "Respawned" in open(log).read(), "harakiri")

    def segv(pid, base, log):
        get(base + "/segv")
        wait_for(lambda: "Respawned" in open(log).read(), "a respawn")

    def sigkill(pid, base, log):
        os.kill(workers_of(pid)[1], signal.SIGKILL)
        wait_for(lambda: "Respawned" in open(log).read(), "a respawn")

    def reload(sig):
        def run(pid, base, log):
            os.kill(pid, sig)
            wait_for(lambda: open(log).read().count("spawned uWSGI worker 3") >= 2, "the reload", 40)
            get(base + "/")
        return run

    def int_stop(pid, base, log):
        os.kill(pid, signal.SIGINT)
        wait_for(lambda: "goodbye to uWSGI" in open(log).read(), "the stop")

    return {
        "max_requests": (["--max-requests", "2", "--min-worker-lifetime", "1"], max_requests),
        "harakiri": (["--harakiri", "2"], harakiri),
        "segv": ([], segv),
        "sigkill": ([], sigkill),
        "hup_reload": ([], reload(signal.SIGHUP)),
        "term_reload": ([], reload(signal.SIGTERM)),
        "int_stop": ([], int_stop),
    }


# ---- php-fpm -------------------------------------------------------------

def fpm_binary():
    for b in sorted(os.listdir("/usr/sbin")):
        if re.fullmatch(r"php-fpm\d+\.\d+", b):
            return os.path.join("/usr/sbin", b)
    raise SystemExit("php-fpm is not installed (apt-get install php-fpm)")


def fpm_version():
    out = subprocess.run([fpm_binary(), "-v"], capture_output=True, text=True).stdout
    return re.search(r"PHP (\d+\.\d+)", out).group(1)


FPM_CONF = """[global]
error_log = {log}
pid = {pid}
daemonize = no
log_level = notice

[www]
user = www-data
group = www-data
listen = {sock}
listen.mode = 0666
pm = static
pm.max_children = 3
catch_workers_output = yes
{extra}
"""


def fcgi_get(sock, script, query=""):
    """One FastCGI request over the unix socket, with cgi-fcgi's own
    framing kept out: a minimal FCGI_BEGIN_REQUEST/PARAMS/STDIN."""
    def rec(t, content, rid=1):
        return bytes([1, t, rid >> 8, rid & 255, len(content) >> 8, len(content) & 255, 0, 0]) + content

    def nv(k, v):
        k, v = k.encode(), v.encode()
        return bytes([len(k), len(v)]) + k + v

    params = b"".join(nv(k, v) for k, v in {
        "SCRIPT_FILENAME": script, "SCRIPT_NAME": "/app.php", "REQUEST_METHOD": "GET",
        "QUERY_STRING": query, "REQUEST_URI": "/app.php?" + query, "SERVER_PROTOCOL": "HTTP/1.1",
        "GATEWAY_INTERFACE": "CGI/1.1", "REMOTE_ADDR": "127.0.0.1", "SERVER_NAME": "localhost",
        "SERVER_PORT": "80"}.items())
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(15)
    try:
        s.connect(sock)
        s.sendall(rec(1, bytes([0, 1, 0, 0, 0, 0, 0, 0])) + rec(4, params) + rec(4, b"") + rec(5, b""))
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
        return out
    except OSError as e:
        return repr(e).encode()
    finally:
        s.close()


def run_fpm(tmp, name, extra, scenario):
    log = os.path.join(tmp, name + ".log")
    pidfile = os.path.join(tmp, name + ".pid")
    sock = os.path.join(tmp, name + ".sock")
    conf = os.path.join(tmp, name + ".conf")
    with open(conf, "w") as f:
        f.write(FPM_CONF.format(log=log, pid=pidfile, sock=sock, extra=extra))
    p = subprocess.Popen([fpm_binary(), "-F", "-y", conf], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: os.path.exists(sock) and len(children(p.pid)) == 3, "php-fpm up")
        scenario(p, sock, log, os.path.join(ROOT, "tests/apps/app.php"))
        time.sleep(1)
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
    return log


def fpm_scenarios():
    def max_requests(p, sock, log, app):
        for _ in range(9):
            fcgi_get(sock, app)
        wait_for(lambda: "exited with code 0" in open(log).read(), "a recycle")

    def timeout(p, sock, log, app):
        fcgi_get(sock, app, "sleep=10")
        wait_for(lambda: "timed out" in open(log).read() and "exited on signal" in open(log).read(), "the timeout")

    def sigkill(p, sock, log, app):
        os.kill(children(p.pid)[1][0], signal.SIGKILL)
        wait_for(lambda: "SIGKILL" in open(log).read(), "the reap")

    def usr2_reload(p, sock, log, app):
        os.kill(p.pid, signal.SIGUSR2)
        wait_for(lambda: "ready to handle connections" in open(log).read().split("Reloading in progress")[-1], "the reload")
        wait_for(lambda: len(children(p.pid)) == 3, "the new children")

    def stop(sig):
        def run(p, sock, log, app):
            os.kill(p.pid, sig)
            p.wait(15)
        return run

    return {
        "max_requests": ("pm.max_requests = 2", max_requests),
        "timeout": ("request_terminate_timeout = 2s", timeout),
        "sigkill": ("", sigkill),
        "usr2_reload": ("", usr2_reload),
        "quit_stop": ("", stop(signal.SIGQUIT)),
        "term_stop": ("", stop(signal.SIGTERM)),
    }


NGINX_CONF = """worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log error;
daemon off;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {d}/tb; proxy_temp_path {d}/tp; fastcgi_temp_path {d}/tf;
    uwsgi_temp_path {d}/tu; scgi_temp_path {d}/ts;
    access_log off;
    server {{
        listen 127.0.0.1:{port};
        location /uwsgi/ {{ rewrite ^/uwsgi(/.*)$ $1 break; include /etc/nginx/uwsgi_params; uwsgi_pass unix:{d}/uwsgi.sock; }}
        location /php {{ include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME {app}; fastcgi_pass unix:{d}/fpm.sock; }}
    }}
}}
"""


def capture_nginx():
    import threading
    tmp = tempfile.mkdtemp(prefix="bgw-capture-")
    port = free_port()
    with open(os.path.join(tmp, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(d=tmp, port=port, app=os.path.join(ROOT, "tests/apps/app.php")))
    procs = []

    def start(cmd):
        p = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        return p

    try:
        start(["nginx", "-p", tmp, "-c", os.path.join(tmp, "nginx.conf")])
        u = start(["uwsgi", "--plugin", "python3", "--master", "--processes", "2", "--auto-procname",
                   "--socket", os.path.join(tmp, "uwsgi.sock"), "--harakiri", "2",
                   "--wsgi-file", os.path.join(ROOT, "tests/apps/app.py"), "--callable", "app",
                   "--logto", os.path.join(tmp, "uwsgi.log")])
        conf = os.path.join(tmp, "fpm.conf")
        with open(conf, "w") as f:
            f.write(FPM_CONF.format(log=os.path.join(tmp, "fpm.log"), pid=os.path.join(tmp, "fpm.pid"),
                                    sock=os.path.join(tmp, "fpm.sock"),
                                    extra="request_terminate_timeout = 2s\nlisten.backlog = 1\n"
                                          "php_admin_value[memory_limit] = -1").replace(
                                        "pm.max_children = 3", "pm.max_children = 1"))
        fpm = start([fpm_binary(), "-F", "-R", "-y", conf])
        base = "http://127.0.0.1:%d" % port
        wait_for(lambda: os.path.exists(os.path.join(tmp, "uwsgi.sock")) and os.path.exists(os.path.join(tmp, "fpm.sock")), "servers up")
        time.sleep(1)

        def kill_mid_request(url, parent):
            t = in_background(url)
            time.sleep(1)
            busy = [c for c, args in children(parent) if "worker" in args or "pool" in args]
            for c in busy:
                os.kill(c, signal.SIGKILL)
            t.join()

        kill_mid_request(base + "/uwsgi/sleep?s=5", u.pid)
        time.sleep(1)
        get(base + "/uwsgi/sleep?s=6")  # harakiri
        kill_mid_request(base + "/php?sleep=5", fpm.pid)
        time.sleep(1)
        get(base + "/php?sleep=6")  # request_terminate_timeout
        time.sleep(1)
        # One child busy, a backlog of 1: the next connects are refused.
        ts = [in_background(base + "/php?sleep=1") for _ in range(8)]
        for t in ts:
            t.join()
        os.kill(u.pid, signal.SIGINT)
        u.wait(15)
        os.kill(fpm.pid, signal.SIGQUIT)
        fpm.wait(15)
        get(base + "/uwsgi/")
        get(base + "/php")
        time.sleep(0.5)
        out = os.path.join(ROOT, "fixtures", "nginx", "error_uwsgi_fastcgi.log")
        with open(os.path.join(tmp, "error.log")) as f:
            text = f.read().replace(tmp, "/run/app")
        with open(out, "w") as f:
            f.write(text)
        print("captured", out)
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    server = sys.argv[1] if len(sys.argv) > 1 else "uwsgi"
    if server == "nginx":
        return capture_nginx()
    wanted = sys.argv[2:]
    tmp = tempfile.mkdtemp(prefix="bgw-capture-")
    if server == "uwsgi":
        version, scenarios, run = uwsgi_version(), uwsgi_scenarios(), run_uwsgi
    elif server == "php-fpm":
        version, scenarios, run = fpm_version(), fpm_scenarios(), run_fpm
    else:
        raise SystemExit("usage: capture_server_logs.py uwsgi|php-fpm [SCENARIO...]")
    out = os.path.join(ROOT, "fixtures", server, version)
    os.makedirs(out, exist_ok=True)
    for name, (extra, scenario) in scenarios.items():
        if wanted and name not in wanted:
            continue
        log = run(tmp, name, extra, scenario)
        shutil.copy(log, os.path.join(out, name + ".log"))
        print("captured", os.path.join(out, name + ".log"))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
