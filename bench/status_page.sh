#!/usr/bin/env bash
# The status page's cost: rendering `/` (and /api/v1/timeline) from a full
# hour of history for 64 workers, and the history's size. The issue asks
# for under 5 ms and under 1 MiB. Then the real thing: the release binary
# serving `/` (the bytes the renderer made), timed over 1,000 requests.
# Usage: bench/status_page.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --example status_bench
cargo build --release -q
echo "# the worst hour the history holds, 64 workers (examples/status_bench.rs)"
target/release/examples/status_bench

echo "# serving / from the running exporter (no pools, no logs): 1,000 requests"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
work=$(mktemp -d)
printf 'pools: []\nkernel: {kmsg: false}\n' > "$work/c.yml"
target/release/badgateway_exporter --config.file="$work/c.yml" \
  --web.listen-address="127.0.0.1:$port" 2>"$work/log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.1
done
sleep 1.5
python3 - "$port" <<'PY'
import http.client, sys, time
port = int(sys.argv[1])
c = http.client.HTTPConnection("127.0.0.1", port)
ms = []
for _ in range(1000):
    t = time.perf_counter()
    c.request("GET", "/")
    body = c.getresponse().read()
    ms.append((time.perf_counter() - t) * 1e3)
ms.sort()
print(f"GET / over keep-alive: median {ms[500]:.3f} ms, p99 {ms[990]:.3f} ms, {len(body)} bytes")
PY
