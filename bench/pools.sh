#!/usr/bin/env bash
# Benchmark of the pool source, side by side with its peers in one run:
# - scrape latency p50/p99 with a 64-worker Gunicorn pool and 2,000 other
#   processes on the host (badgateway_exporter, process-exporter, node_exporter);
# - the pool collector's CPU per cycle;
# - the cost of one smaps_rollup read against one status read;
# - each exporter's RSS.
# Usage: bench/pools.sh  (root; installs the peers from Debian when missing)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
WORKERS=${WORKERS:-64}
OTHERS=${OTHERS:-2000}
SCRAPES=${SCRAPES:-2000}
SETTLE=${SETTLE:-60}

need=()
command -v prometheus-process-exporter >/dev/null || need+=(prometheus-process-exporter)
command -v prometheus-node-exporter >/dev/null || need+=(prometheus-node-exporter)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
venv=$root/target/test-venv
[ -x "$venv/bin/gunicorn" ] || { python3 -m venv "$venv"; "$venv/bin/pip" install -q gunicorn==27.0.1; }
cargo build --release -q
bin=$root/target/release/badgateway_exporter

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 -- "-$p" 2>/dev/null || kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

echo "# starting $OTHERS other processes and a $WORKERS-worker Gunicorn pool"
# One parent holding many sleeping children: the host's process table grows
# without loading the CPU. In a process group of its own, ended by that
# group with everything else started here, never by name.
setsid python3 - "$OTHERS" <<'PY' &
import os, sys, time
n = int(sys.argv[1])
for _ in range(n):
    if os.fork() == 0:
        os.execvp("sleep", ["bgw-bench-sleeper", "3600"])
time.sleep(3600)
PY
pids+=($!); disown
setsid "$venv/bin/gunicorn" -w "$WORKERS" -b 127.0.0.1:0 --chdir "$root/tests/apps" --pid "$work/g.pid" app:app >/dev/null 2>&1 &
pids+=($!); disown
for _ in $(seq 120); do
  [ -f "$work/g.pid" ] && [ "$(pgrep -P "$(cat "$work/g.pid")" | wc -l)" -ge "$WORKERS" ] && break
  sleep 0.5
done
master=$(cat "$work/g.pid")
echo "# processes on the host: $(ls -d /proc/[0-9]* | wc -l); gunicorn workers: $(pgrep -P "$master" | wc -l)"

cat > "$work/bgw.yml" <<YML
pools:
  - name: bench
    server: gunicorn
    pidfile: $work/g.pid
YML
cat > "$work/pe.yml" <<YML
process_names:
  - name: "gunicorn"
    cmdline: ['gunicorn']
YML
p1=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
p2=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
p3=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
setsid "$bin" --config.file="$work/bgw.yml" --web.listen-address=127.0.0.1:$p1 --log.level=warn 2>"$work/bgw.log" &
bgw=$!; pids+=($bgw); disown
setsid prometheus-process-exporter -config.path "$work/pe.yml" -web.listen-address 127.0.0.1:$p2 >/dev/null 2>&1 &
pe=$!; pids+=($pe); disown
setsid prometheus-node-exporter --web.listen-address=127.0.0.1:$p3 >/dev/null 2>&1 &
ne=$!; pids+=($ne); disown

echo "# settling for ${SETTLE}s (smaps interval 15s, pools interval 5s)"
sleep "$SETTLE"

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
metric() { curl -s "127.0.0.1:$p1/metrics" | grep -F "$1 " | awk '{print $NF}'; }

echo
echo "## scrape latency ($SCRAPES scrapes each, keep-alive, sequential)"
echo "badgateway_exporter $(python3 bench/scrape.py 127.0.0.1:$p1 /metrics "$SCRAPES")"
echo "process-exporter    $(python3 bench/scrape.py 127.0.0.1:$p2 /metrics "$SCRAPES")"
echo "node_exporter       $(python3 bench/scrape.py 127.0.0.1:$p3 /metrics "$((SCRAPES / 10))")"

echo
echo "## pool collector CPU per cycle"
cpu=$(metric 'badgateway_collector_cpu_seconds_total{collector="pools"}')
cyc=$(metric 'badgateway_collector_cycles_total{collector="pools"}')
dur=$(metric 'badgateway_collector_duration_seconds{collector="pools"}')
python3 -c "print(f'cycles={int(float($cyc))} cpu_per_cycle_ms={float($cpu)/float($cyc)*1000:.2f} last_cycle_wall_ms={float($dur)*1000:.2f}')"

echo
echo "## smaps_rollup vs status read cost (per worker, python, $WORKERS workers x 20)"
python3 - "$master" <<'PY'
import os, sys, time
master = sys.argv[1]
ws = [p for p in os.listdir("/proc") if p.isdigit() and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1] == master]
def cost(name):
    t0 = time.perf_counter()
    for _ in range(20):
        for w in ws:
            with open(f"/proc/{w}/{name}", "rb") as f:
                f.read()
    return (time.perf_counter() - t0) / (20 * len(ws)) * 1e6
print(f"smaps_rollup_us={cost('smaps_rollup'):.1f} status_us={cost('status'):.1f} workers={len(ws)}")
PY

echo
echo "## exporter CPU over 30 s idle (ticks of 10 ms) and RSS"
c1=$(cpu_ticks $bgw); d1=$(cpu_ticks $pe); e1=$(cpu_ticks $ne); sleep 30
c2=$(cpu_ticks $bgw); d2=$(cpu_ticks $pe); e2=$(cpu_ticks $ne)
echo "badgateway_exporter rss_kib=$(rss_kib $bgw) cpu_ticks_30s=$((c2 - c1))"
echo "process-exporter    rss_kib=$(rss_kib $pe) cpu_ticks_30s=$((d2 - d1))"
echo "node_exporter       rss_kib=$(rss_kib $ne) cpu_ticks_30s=$((e2 - e1))"
python3 -c "print(f'rss ratio process-exporter/badgateway = {$(rss_kib $pe)/$(rss_kib $bgw):.2f}, node_exporter/badgateway = {$(rss_kib $ne)/$(rss_kib $bgw):.2f}')"
