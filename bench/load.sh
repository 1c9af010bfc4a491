#!/usr/bin/env bash
# Scrape load: 200 concurrent scrapers (wrk) for 15 s each against
# badgateway_exporter and node_exporter in the same run, over plain HTTP and
# over TLS + basic auth (the same exporter-toolkit web config for both),
# while the exporter's collectors run and its access log grows at 5,000
# lines/s. Prints p50/p99 latency, requests/s, socket errors, non-2xx
# answers and each exporter's peak RSS (VmHWM, reset before each phase).
# Loopback only; bounded: four phases of SECONDS each (six with BASELINE_BIN).
#
# Usage: bench/load.sh [SECONDS] [CONNECTIONS]    (default 15 200)
# BASELINE_BIN=/path/to/older/badgateway_exporter adds a plain and a TLS
# phase for that binary, to compare two builds in one run.
# Targets: 0 errors; p99 under 10 ms plain and 25 ms with TLS; peak RSS
# under 16 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
D=${1:-15}
C=${2:-200}
RATE=5000

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v prometheus-node-exporter >/dev/null || need+=(prometheus-node-exporter)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  apt-get update -qq
  # Package scripts would start node_exporter; this script starts its own.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi
cargo build --release -q
bin=$root/target/release/badgateway_exporter

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_up() { # url, curl args...
  local url=$1; shift
  for _ in $(seq 100); do curl -skf "$@" "$url" >/dev/null && return 0; sleep 0.1; done
  echo "not up: $url" >&2; return 1
}

# TLS + basic auth: one web config for both exporters.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
  -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
hash=$(htpasswd -nbBC 10 "" bench-password | tr -d ':\n')
cat > "$work/web.yml" <<YML
tls_server_config:
  cert_file: $work/tls.crt
  key_file: $work/tls.key
basic_auth_users:
  prometheus: '$hash'
YML
auth="Authorization: Basic $(printf 'prometheus:bench-password' | base64)"

# The access log grows at RATE lines/s for the whole run.
fmt='$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time" uht="$upstream_header_time" urt="$upstream_response_time" ua="$upstream_addr" us="$upstream_status"'
: > "$work/access.log"
python3 - "$work/access.log" "$RATE" <<'PY' &
import random, sys, time
path, rate = sys.argv[1], int(sys.argv[2])
rnd = random.Random(1)
ups = ["unix:/run/gunicorn/api.sock", "127.0.0.1:8001", "127.0.0.1:8002"]
def line(i):
    st = 502 if rnd.random() < 0.03 else 200
    rt = rnd.random() * 0.2
    return (f'10.1.{i % 250}.{i % 7} - - [23/Nov/2026:04:20:{i % 60:02d} +0000] "GET /api/v1/items?page={i} HTTP/1.1" '
            f'{st} 512 "-" "bench" rt={rt:.3f} uct="0.000" uht="{rt:.3f}" urt="{rt:.3f}" ua="{rnd.choice(ups)}" us="{st}"\n')
tick, i, t0 = 0.05, 0, time.time()
with open(path, "a") as f:
    while True:
        due = int((time.time() - t0) * rate)
        chunk = "".join(line(j) for j in range(i, due))
        i = due
        f.write(chunk)
        f.flush()
        time.sleep(tick)
PY
pids+=($!)

start_bgw() { # port, extra flags...
  local port=$1; shift
  "${BGW_BIN:-$bin}" --web.listen-address=127.0.0.1:"$port" --nginx.access-log="$work/access.log" \
    --nginx.log-format="$fmt" --log.level=warn "$@" >/dev/null 2>>"$work/bgw.log" &
  echo $!
}
start_node() { # port, extra flags...
  local port=$1; shift
  prometheus-node-exporter --web.listen-address=127.0.0.1:"$port" --log.level=warn "$@" >/dev/null 2>>"$work/node.log" &
  echo $!
}

# Resident memory of an exporter at rest, before its first phase.
idle=()
idle_rss() { # label, pid
  idle+=("$(printf '%-34s %6.1f MiB' "$1" "$(awk '/^VmRSS/{print $2/1024}' "/proc/$2/status")")")
}

# One phase: reset the peak RSS, run wrk, print one row.
rows=()
phase() { # label, pid, url, wrk args...
  local label=$1 pid=$2 url=$3; shift 3
  echo 5 > "/proc/$pid/clear_refs"
  wrk -t2 -c"$C" -d"${D}s" --timeout 5s --latency "$@" "$url" > "$work/wrk.out" 2>&1
  local hwm
  hwm=$(awk '/^VmHWM/{print $2}' "/proc/$pid/status")
  rows+=("$(python3 - "$label" "$hwm" "$work/wrk.out" <<'PY'
import re, sys
label, hwm_kb, out = sys.argv[1], int(sys.argv[2]), open(sys.argv[3]).read()
def ms(s):
    v, u = re.match(r"([\d.]+)(us|ms|s|m)", s).groups()
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[u]
pct = dict(re.findall(r"^\s+(\d+)%\s+(\S+)", out, re.M))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
total = int(re.search(r"(\d+) requests in", out).group(1))
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
errors = sum(int(x) for x in m.groups()) if m else 0
m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
non2xx = int(m.group(1)) if m else 0
print(f"{label:<34} {rps:>9.0f} {total:>9} {ms(pct['50']):>8.2f} {ms(pct['99']):>8.2f} {errors:>7} {non2xx:>8} {hwm_kb/1024:>8.1f}")
PY
)")
}

load0=$(cut -d' ' -f1-3 /proc/loadavg)
bgw_port=$(free_port); bgw=$(start_bgw "$bgw_port"); pids+=("$bgw")
node_port=$(free_port); node=$(start_node "$node_port"); pids+=("$node")
wait_up "http://127.0.0.1:$bgw_port/healthz"
wait_up "http://127.0.0.1:$node_port/metrics"
sleep 2
idle_rss "badgateway_exporter" "$bgw"
idle_rss "node_exporter" "$node"
bgw_plain=${#rows[@]}
phase "badgateway_exporter  plain" "$bgw" "http://127.0.0.1:$bgw_port/metrics"
phase "node_exporter        plain" "$node" "http://127.0.0.1:$node_port/metrics"
kill "$bgw" "$node"
if [ -n "${BASELINE_BIN:-}" ]; then
  base_port=$(free_port); base=$(BGW_BIN=$BASELINE_BIN start_bgw "$base_port"); pids+=("$base")
  wait_up "http://127.0.0.1:$base_port/healthz"
  sleep 2
  idle_rss "baseline build" "$base"
  phase "baseline build       plain" "$base" "http://127.0.0.1:$base_port/metrics"
  kill "$base"
fi

bgw_port=$(free_port); bgw=$(start_bgw "$bgw_port" --web.config.file="$work/web.yml"); pids+=("$bgw")
node_port=$(free_port); node=$(start_node "$node_port" --web.config.file="$work/web.yml"); pids+=("$node")
wait_up "https://127.0.0.1:$bgw_port/metrics" -H "$auth"
wait_up "https://127.0.0.1:$node_port/metrics" -H "$auth"
sleep 2
bgw_tls=${#rows[@]}
phase "badgateway_exporter  TLS+basic auth" "$bgw" "https://127.0.0.1:$bgw_port/metrics" -H "$auth"
phase "node_exporter        TLS+basic auth" "$node" "https://127.0.0.1:$node_port/metrics" -H "$auth"

lines=$(curl -sk -H "$auth" "https://127.0.0.1:$bgw_port/metrics" \
  | awk '/^badgateway_log_lines_total\{.*file="access"/{s+=$NF} END{print s+0}')
size=$(curl -sk -H "$auth" "https://127.0.0.1:$bgw_port/metrics" | wc -c)
kill "$bgw" "$node"
if [ -n "${BASELINE_BIN:-}" ]; then
  base_port=$(free_port); base=$(BGW_BIN=$BASELINE_BIN start_bgw "$base_port" --web.config.file="$work/web.yml"); pids+=("$base")
  wait_up "https://127.0.0.1:$base_port/metrics" -H "$auth"
  sleep 2
  phase "baseline build       TLS+basic auth" "$base" "https://127.0.0.1:$base_port/metrics" -H "$auth"
  kill "$base"
fi

echo "# $C connections, ${D}s per phase, access log growing at $RATE lines/s; /metrics is $size bytes"
echo "# load average before: $load0; after: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores (other work shares them)"
printf '%-34s %9s %9s %8s %8s %7s %8s %8s\n' target req/s requests p50_ms p99_ms errors non2xx rss_MiB
printf '%s\n' "${rows[@]}"
echo "# RSS at rest, before the first phase:"
printf '#   %s\n' "${idle[@]}"
echo "# access lines counted by the TLS exporter in its ${D}s+ life: $lines"
echo "# targets: 0 errors; p99 < 10 ms plain, < 25 ms TLS; peak RSS < 16 MiB"
printf '%s\n' "${rows[$bgw_plain]}" "${rows[$bgw_tls]}" | python3 -c '
import sys
ok = True
for row, p99max in zip(sys.stdin.read().splitlines(), (10, 25)):
    f = row.split()
    p99, err, rss = float(f[-4]), int(f[-3]), float(f[-1])
    for what, good in (("errors", err == 0), ("p99", p99 < p99max), ("rss", rss < 16)):
        if not good:
            ok = False
            print(f"MISSED {what}: {row}")
print("targets met" if ok else "targets missed")
'
