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
. bench/lib.sh
gunicorn_venv
cargo build --release -q
bin=$root/target/release/badgateway_exporter

echo "# starting $OTHERS other processes and a $WORKERS-worker Gunicorn pool"
start_sleepers "$OTHERS"
spawn "$venv/bin/gunicorn" -w "$WORKERS" -b 127.0.0.1:0 --chdir "$root/tests/apps" --pid "$work/g.pid" app:app >/dev/null 2>&1
wait_workers "$work/g.pid" "$WORKERS"
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
p1=$(free_port); p2=$(free_port); p3=$(free_port)
spawn "$bin" --config.file="$work/bgw.yml" --web.listen-address=127.0.0.1:$p1 --log.level=warn 2>"$work/bgw.log"
bgw=$spawned
spawn prometheus-process-exporter -config.path "$work/pe.yml" -web.listen-address 127.0.0.1:$p2 >/dev/null 2>&1
pe=$spawned
spawn prometheus-node-exporter --web.listen-address=127.0.0.1:$p3 >/dev/null 2>&1
ne=$spawned

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
echo "## collector CPU per cycle (pools: the pool cycle and the process events between; smaps: one PSS/USS pass)"
for c in pools smaps; do
  cpu=$(metric "badgateway_collector_cpu_seconds_total{collector=\"$c\"}")
  cyc=$(metric "badgateway_collector_cycles_total{collector=\"$c\"}")
  dur=$(metric "badgateway_collector_duration_seconds{collector=\"$c\"}")
  python3 -c "print(f'$c cycles={int(float($cyc))} cpu_per_cycle_ms={float($cpu)/float($cyc)*1000:.2f} last_cycle_wall_ms={float($dur)*1000:.2f}')"
done

echo
echo "## smaps_rollup vs status read cost (per worker, python, $WORKERS workers x 20)"
python3 - "$master" <<'PY'
import os, sys, time
master = sys.argv[1]
def parent(p):
    try:
        return open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1]
    except OSError:  # gone while we looked
        return None
ws = [p for p in os.listdir("/proc") if p.isdigit() and parent(p) == master]
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
steady() { for c in pools proc_connector smaps; do
  echo "$c $(metric "badgateway_collector_cpu_seconds_total{collector=\"$c\"}") $(metric "badgateway_collector_cycles_total{collector=\"$c\"}")"
done; }
s1=$(steady)
c1=$(cpu_ticks $bgw); d1=$(cpu_ticks $pe); e1=$(cpu_ticks $ne); sleep 30
c2=$(cpu_ticks $bgw); d2=$(cpu_ticks $pe); e2=$(cpu_ticks $ne)
s2=$(steady)
echo "badgateway_exporter rss_kib=$(rss_kib $bgw) cpu_ticks_30s=$((c2 - c1))"
echo "process-exporter    rss_kib=$(rss_kib $pe) cpu_ticks_30s=$((d2 - d1))"
echo "node_exporter       rss_kib=$(rss_kib $ne) cpu_ticks_30s=$((e2 - e1))"
echo "## steady state over those 30 s: CPU per pool cycle, with the process events between cycles apart"
python3 - "$s1" "$s2" <<'PY'
import sys
a = {l.split()[0]: l.split()[1:] for l in sys.argv[1].splitlines() if len(l.split()) == 3}
b = {l.split()[0]: l.split()[1:] for l in sys.argv[2].splitlines() if len(l.split()) == 3}
cycles = float(b["pools"][1]) - float(a["pools"][1])
for c in ("pools", "proc_connector", "smaps"):
    if c in a and c in b:
        cpu = (float(b[c][0]) - float(a[c][0])) * 1000
        print(f"{c:15s} cpu_ms={cpu:.2f} per_pool_cycle_ms={cpu / cycles:.3f} (pool cycles={cycles:.0f})")
PY
python3 -c "print(f'rss ratio process-exporter/badgateway = {$(rss_kib $pe)/$(rss_kib $bgw):.2f}, node_exporter/badgateway = {$(rss_kib $ne)/$(rss_kib $bgw):.2f}')"
