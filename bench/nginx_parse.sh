#!/usr/bin/env bash
# Access-log parse throughput, badgateway_exporter against mtail on the same
# file in the same run, in lines per CPU-second, for two formats:
# - quoted: upstream fields in quotes (`ua="$upstream_addr"`), with
#   bench/access.mtail;
# - unquoted: ingress-nginx's default `upstreaminfo`, whose upstream lists
#   are unquoted and separated by single spaces, with
#   bench/access_unquoted.mtail.
# - mtail (Debian's package) runs the program with --one_shot.
# - badgateway_exporter runs for real: it follows an empty access log, the
#   file is appended in one go, and its process CPU is read from /proc until
#   every line is counted. That includes the follower, the parse and the
#   counting, the rules that judge each 5xx, and the other collectors' idle
#   work. The line count is read from /metrics every 0.2 s, and those
#   scrapes are in the figure too.
# - The same binary's CPU for the same work varies by a fifth or more from
#   one run to the next on a shared VM, so the exporter runs RUNS times
#   (default 3), each a fresh process on a fresh log. Every run is printed;
#   the rate and the ratio to mtail are from the median run. mtail runs
#   once: it takes about 30 s a run.
# Usage: bench/nginx_parse.sh [LINES] [RUNS]   (default 2,000,000 and 3)
# On a busy machine CPU seconds are noisy. To compare two builds on the
# same work, count instructions with callgrind:
#   cargo build --release --example nginx_parse_bench
#   valgrind --tool=callgrind target/release/examples/nginx_parse_bench LOG FORMAT
# and time it too, since a change's instructions and its time can disagree
# (a value's search waits on the one before it), the two builds taking
# turns on the same lines:
#   cargo build --release --example access_parse_time
#   target/release/examples/access_parse_time LOG FORMAT
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
N=${1:-2000000}
RUNS=${2:-3}
command -v mtail >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mtail >/dev/null; }
cargo build --release -q
bin=$root/target/release/badgateway_exporter
work=$(mktemp -d)
trap 'kill -9 $bgw 2>/dev/null || true; rm -rf "$work"' EXIT
bgw=

quoted_fmt='$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time" uht="$upstream_header_time" urt="$upstream_response_time" ua="$upstream_addr" us="$upstream_status"'
unquoted_fmt='$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_length $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name] $upstream_addr $upstream_response_length $upstream_response_time $upstream_status $req_id'

# run NAME MTAIL_PROGRAM LOG_FORMAT (the body is not indented: it holds
# heredocs)
run() {
local name=$1 prog=$2 fmt=$3
echo "## $name"

python3 bench/gen_access_log.py "$N" "$work/big.log" "$name"
echo "# $N lines, $(du -m "$work/big.log" | cut -f1) MiB"
# Warm the page cache so both read from memory.
cat "$work/big.log" > /dev/null

# mtail: CPU of the child, from getrusage.
python3 - "$work" "$prog" <<'PY'
import resource, subprocess, sys, time
work, prog = sys.argv[1], sys.argv[2]
t0 = time.time()
out = subprocess.run(["mtail", "--one_shot", "--one_shot_format=prometheus", "--progs", prog,
                      "--logs", f"{work}/big.log", "--logtostderr"], capture_output=True, text=True)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = ru.ru_utime + ru.ru_stime
lines = sum(float(l.split()[-1]) for l in out.stdout.splitlines() if l.startswith("nginx_responses_total{"))
attempts = sum(float(l.split()[-1]) for l in out.stdout.splitlines() if l.startswith("nginx_upstream_attempts_total{"))
print(f"mtail               lines={int(lines)} attempts={int(attempts)} cpu_s={cpu:.2f} wall_s={time.time()-t0:.2f} lines_per_cpu_s={lines/cpu:,.0f}")
open(f"{work}/mtail_rate", "w").write(str(lines / cpu))
PY

rm -f "$work/cpu_runs"
for run in $(seq "$RUNS"); do
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
: > "$work/access.log"
cat > "$work/cfg.yml" <<YML
nginx:
  - name: bench
    access_log: $work/access.log
    log_format: '$fmt'
YML
"$bin" --config.file="$work/cfg.yml" --web.listen-address=127.0.0.1:$port --log.level=warn 2>"$work/bgw.log" &
bgw=$!
for _ in $(seq 50); do curl -sf "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
sleep 1
python3 - "$work" "$bgw" "$port" "$N" "$run" <<'PY'
import os, sys, time, urllib.request
work, pid, port, n, run = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
hz = os.sysconf("SC_CLK_TCK")
def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / hz
def lines():
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    for l in body.splitlines():
        if l.startswith('badgateway_log_lines_total{log="bench",file="access"}'):
            return int(float(l.split()[-1]))
    return 0
c0, t0 = cpu(), time.time()
with open(f"{work}/big.log", "rb") as src, open(f"{work}/access.log", "ab") as dst:
    while True:
        b = src.read(1 << 20)
        if not b:
            break
        dst.write(b)
while lines() < n:
    time.sleep(0.2)
c1, t1 = cpu(), time.time()
got = lines()
body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
errs = sum(float(l.split()[-1]) for l in body.splitlines() if l.startswith("badgateway_log_parse_errors_total{"))
attempts = sum(float(l.split()[-1]) for l in body.splitlines() if l.startswith("badgateway_nginx_upstream_attempts_total{"))
rate = got / (c1 - c0)
print(f"badgateway_exporter run {run}: lines={got} attempts={int(attempts)} parse_errors={int(errs)} cpu_s={c1-c0:.2f} wall_s={t1-t0:.2f} lines_per_cpu_s={rate:,.0f}")
assert got == n and errs == 0, "every line counted, none rejected"
open(f"{work}/cpu_runs", "a").write(f"{c1 - c0}\n")
PY
kill -9 $bgw 2>/dev/null || true
wait $bgw 2>/dev/null || true
bgw=
done
python3 - "$work" "$N" <<'PY'
import statistics, sys
work, n = sys.argv[1], int(sys.argv[2])
cpus = [float(l) for l in open(f"{work}/cpu_runs")]
cpu = statistics.median(cpus)
rate, mt = n / cpu, float(open(f"{work}/mtail_rate").read())
print(f"badgateway_exporter median of {len(cpus)} runs: cpu_s={cpu:.2f} lines_per_cpu_s={rate:,.0f} (runs: {', '.join(f'{c:.2f}' for c in cpus)} s; least {n / min(cpus):,.0f} lines per CPU-second)")
print(f"ratio badgateway/mtail = {rate/mt:.1f}x  (target: 4,000,000 lines per CPU-second)")
PY
}

run quoted bench/access.mtail "$quoted_fmt"
run unquoted bench/access_unquoted.mtail "$unquoted_fmt"
