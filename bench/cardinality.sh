#!/usr/bin/env bash
# Cardinality attack: LINES access-log lines (default 1,000,000), every one
# with a distinct upstream address, Host and URI, appended in ten equal
# chunks to a log the real exporter follows. After each chunk: the number
# of series in /metrics, the exporter's RSS, and
# badgateway_label_overflow_total{metric="upstream"}. Flat series and RSS
# from the first chunk to the last, and an overflow count of every line
# past the cap, are the pass; the first chunk is the baseline, so the
# figure is a ratio within one run.
#
# Usage: bench/cardinality.sh [LINES]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
N=${1:-1000000}
CHUNKS=10
CAP=32
cargo build --release -q
bin=$root/target/release/badgateway_exporter
work=$(mktemp -d)
bgw=
trap 'kill $bgw 2>/dev/null || true; rm -rf "$work"' EXIT

python3 - "$N" "$CHUNKS" "$work" <<'PY'
import sys
n, chunks, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
per = n // chunks
for c in range(chunks):
    with open(f"{work}/chunk.{c}", "w") as f:
        for i in range(c * per, (c + 1) * per):
            ua = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:{1024 + i % 60000}"
            st = 502 if i % 10 == 0 else 200
            f.write(f'10.0.0.1 - - [23/Nov/2026:04:20:00 +0000] "GET /u/{i}/item?q={i} HTTP/1.1" {st} 512 "-" "attack" '
                    f'rt=0.010 uct="0.000" uht="0.010" urt="0.010" ua="{ua}" us="{st}" host="h{i}.example.com"\n')
PY

fmt='$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time" uht="$upstream_header_time" urt="$upstream_response_time" ua="$upstream_addr" us="$upstream_status" host="$host"'
: > "$work/access.log"
cat > "$work/cfg.yml" <<YML
max_upstreams: $CAP
nginx:
  - name: attack
    access_log: $work/access.log
    log_format: '$fmt'
YML
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$bin" --config.file="$work/cfg.yml" --web.listen-address=127.0.0.1:"$port" --log.level=warn \
  --collector.nginx.interval=100ms >/dev/null 2>"$work/bgw.log" &
bgw=$!
for _ in $(seq 100); do curl -sf "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

python3 - "$work" "$bgw" "$port" "$N" "$CHUNKS" "$CAP" <<'PY'
import sys, time, urllib.request
work, pid, port, n, chunks, cap = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
per = n // chunks
def status(key):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith(key):
            return int(l.split()[1]) / 1024
def scrape():
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    series = [l for l in body.splitlines() if l and not l.startswith("#")]
    def val(prefix):
        return sum(float(l.split()[-1]) for l in series if l.startswith(prefix))
    return (len(series), val('badgateway_log_lines_total{log="attack",file="access"}'),
            val('badgateway_label_overflow_total{metric="upstream"}'), body)
print(f"# {n:,} lines, each with a distinct upstream, Host and URI; max_upstreams={cap}")
print(f"{'lines':>9} {'series':>7} {'rss_MiB':>8} {'hwm_MiB':>8} {'overflow':>9}")
rows = []
t0 = time.time()
for c in range(chunks):
    with open(f"{work}/chunk.{c}", "rb") as src, open(f"{work}/access.log", "ab") as dst:
        dst.write(src.read())
    want = (c + 1) * per
    while True:
        series, lines, overflow, body = scrape()
        if lines >= want:
            break
        time.sleep(0.1)
    rows.append((int(lines), series, status("VmRSS"), status("VmHWM"), int(overflow)))
    print(f"{rows[-1][0]:>9} {series:>7} {rows[-1][2]:>8.1f} {rows[-1][3]:>8.1f} {int(overflow):>9}")
wall = time.time() - t0
i = n - 1  # a line past the cap: none of its values may be a label
ua = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:{1024 + i % 60000}"
leak = [w for w in (f"h{i}.example.com", f"/u/{i}/item", ua) if w in body]
first, last = rows[0], rows[-1]
ok = True
def check(what, good, detail):
    global ok
    ok &= good
    print(f"{'ok    ' if good else 'MISSED'} {what}: {detail}")
check("series flat", last[1] == first[1], f"{first[1]} after the first chunk, {last[1]} after the last")
check("RSS flat", last[2] - first[2] < 1.0, f"{first[2]:.1f} -> {last[2]:.1f} MiB (growth under 1 MiB)")
check("overflow counted", last[4] == n - cap, f"badgateway_label_overflow_total{{metric=\"upstream\"}} = {last[4]:,}, lines past the cap = {n - cap:,}")
check("no Host, URI or overflowed upstream in labels", not leak, f"found {leak}" if leak else "none")
print(f"# {wall:.1f}s wall for {n:,} lines")
print("targets met" if ok else "targets missed")
PY
