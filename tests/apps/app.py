"""A WSGI app for the integration tests.

/            answers at once
/sleep?s=N   answers after N seconds (slow requests, timeouts)
/leak?mb=N   allocates N MiB and keeps it, the memory growth that ends in
             an OOM kill
/pid         answers with the worker's pid
/burn?s=N    spins on the CPU for N seconds (a CPU-bound request)
"""
import os
import time
from urllib.parse import parse_qs

_hoard = []


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
    body = ("%d\n" % os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
