#!/usr/bin/env python3
"""Write N access-log lines with upstream fields and ~5% retries, in the
benchmark's quoted format (default) or ingress-nginx's `upstreaminfo`, whose
upstream lists are unquoted: gen_access_log.py N OUT [quoted|unquoted]
BGW_BENCH_SOCKET=unix:/path replaces the first upstream's socket."""
import os
import random
import sys

n, out = int(sys.argv[1]), sys.argv[2]
fmt = sys.argv[3] if len(sys.argv) > 3 else "quoted"
assert fmt in ("quoted", "unquoted"), fmt
rnd = random.Random(42)
ups = ["unix:/run/gunicorn/api.sock", "127.0.0.1:8001", "127.0.0.1:8002", "10.0.0.7:8000"]
# The first upstream's socket, for a benchmark that runs a pool behind it.
ups[0] = os.environ.get("BGW_BENCH_SOCKET", ups[0])
paths = ["/", "/api/v1/items?page=%d", "/static/app.js", "/login", "/api/v1/search?q=%d&sort=desc"]
agent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
with open(out, "w") as f:
    for i in range(n):
        p = rnd.choice(paths)
        if "%d" in p:
            p = p % rnd.randint(1, 100000)
        rt = rnd.random() * 0.3
        r = rnd.random()
        if r < 0.05:
            a, b = rnd.sample(ups, 2)
            ua, us, urt, uct, uht, st = f"{a}, {b}", "502, 200", f"0.000, {rt:.3f}", "-, 0.000", f"-, {rt:.3f}", 200
        elif r < 0.07:
            ua, us, urt, uct, uht, st = rnd.choice(ups), "502", "0.000", "-", "-", 502
        else:
            ua, us, urt, uct, uht, st = rnd.choice(ups), "200", f"{rt:.3f}", "0.000", f"{rt:.3f}", 200
        size = rnd.randint(100, 9000)
        # $upstream_response_length: nothing from a failed attempt.
        url = ", ".join(["0"] * (ua.count(",")) + [str(size if st == 200 else 0)])
        head = (
            f'10.1.{i % 250}.{i % 7} - - [23/Nov/2026:04:20:{i % 60:02d} +0000] "GET {p} HTTP/1.1" {st} {size} '
            f'"https://example.com/ref" "{agent}" '
        )
        if fmt == "quoted":
            f.write(head + f'rt={rt:.3f} uct="{uct}" uht="{uht}" urt="{urt}" ua="{ua}" us="{us}"\n')
        else:
            f.write(head + f"{300 + i % 200} {rt:.3f} [default-api-8000] [] {ua} {url} {urt} {us} {rnd.getrandbits(128):032x}\n")
