"""A WSGI app for the integration tests.

/            answers at once
/sleep?s=N   answers after N seconds (slow requests, timeouts)
/leak?mb=N   allocates N MiB and keeps it, the memory growth that ends in
             an OOM kill
/pid         answers with the worker's pid
/burn?s=N    spins on the CPU for N seconds (a CPU-bound request)
/exit?code=N raises SystemExit(N), which Gunicorn's sync worker catches
             (it answers 500 and lives on); with &hard=1, os._exit(N)
             ends the worker
/segv        crashes the worker with a real segmentation fault
/raise?sig=N restores signal N's default action and sends it to the worker
             itself, as code that resets handlers lets a signal end it

When the file named by BGW_HOG_FILE exists while a worker boots (imports
this module), the worker allocates BGW_HOG_MB MiB (default 200) before it
serves anything: a worker that dies of an OOM kill right after its fork.
"""
import os
import signal
import sys
import time
from urllib.parse import parse_qs

_hoard = []

if os.path.exists(os.environ.get("BGW_HOG_FILE", "/nonexistent")):
    for _ in range(int(os.environ.get("BGW_HOG_MB", "200"))):
        _hoard.append(bytearray(b"x" * (1 << 20)))


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    q = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/sleep":
        time.sleep(float(q.get("s", ["1"])[0]))
    elif path == "/burn":
        end = time.process_time() + float(q.get("s", ["1"])[0])
        while time.process_time() < end:
            pass
    elif path == "/leak":
        mb = int(q.get("mb", ["10"])[0])
        for _ in range(mb):
            # Touch every page so the memory is resident, not just mapped.
            _hoard.append(bytearray(b"x" * (1 << 20)))
    elif path == "/exit":
        code = int(q.get("code", ["1"])[0])
        if q.get("hard", ["0"])[0] == "1":
            os._exit(code)
        sys.exit(code)
    elif path == "/segv":
        import ctypes
        ctypes.string_at(0)
    elif path == "/raise":
        sig = int(q.get("sig", ["15"])[0])
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        time.sleep(5)
    body = ("%d\n" % os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
