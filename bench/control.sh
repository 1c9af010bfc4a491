#!/usr/bin/env bash
# Benchmark of what Gunicorn's control socket and the listen-queue sampler
# cost, beside the same exporter without them, in one run:
# - the control-socket calls of one pool cycle (connect, show workers, show
#   stats) against a WORKERS-worker Gunicorn 27.0.1, CALLS times: the
#   exporter's CPU and wall time per cycle, and the Gunicorn master's CPU
#   per cycle, which the app pays (examples/control_bench.rs);
# - the pool collector's CPU per cycle of two exporters watching that pool
#   side by side for RUN seconds, one as `server: gunicorn` (control socket
#   on) and one as `server: generic` (off), OTHERS other processes on the
#   host;
# - the listen-queue sampler's CPU per sample of the pool's 2 sockets (one
#   unix, one TCP), every 100 ms.
# The per-cycle figures are taken between two scrapes RUN seconds apart,
# after SETTLE seconds, so that the first cycles (baseline, first smaps)
# do not count.
# Usage: bench/control.sh  (root; WORKERS=64 OTHERS=2000 CALLS=2000 SETTLE=20 RUN=60)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
WORKERS=${WORKERS:-64}
OTHERS=${OTHERS:-2000}
CALLS=${CALLS:-2000}
SETTLE=${SETTLE:-20}
RUN=${RUN:-60}

. bench/lib.sh
gunicorn_venv
cargo build --release -q
cargo build --release -q --example control_bench
bin=$root/target/release/badgateway_exporter

echo "# starting $OTHERS other processes and a $WORKERS-worker Gunicorn pool"
start_sleepers "$OTHERS"
port=$(free_port)
spawn "$venv/bin/gunicorn" -w "$WORKERS" -b "unix:$work/app.sock" -b "127.0.0.1:$port" \
  --control-socket "$work/ctl.sock" --chdir "$root/tests/apps" --pid "$work/g.pid" app:app >/dev/null 2>&1
wait_workers "$work/g.pid" "$WORKERS"
for _ in $(seq 120); do [ -S "$work/ctl.sock" ] && break; sleep 0.5; done
master=$(cat "$work/g.pid")
echo "# Linux $(uname -r), $(nproc) CPUs; processes on the host: $(ls -d /proc/[0-9]* | wc -l); gunicorn workers: $(pgrep -P "$master" | wc -l)"

echo
echo "## control-socket calls of one pool cycle ($CALLS cycles)"
"$root/target/release/examples/control_bench" "$work/ctl.sock" "$master" "$CALLS"

for server in gunicorn generic; do
  cat > "$work/$server.yml" <<YML
pools:
  - name: bench
    server: $server
    pidfile: $work/g.pid
YML
done
p1=$(free_port); p2=$(free_port)
spawn "$bin" --config.file="$work/gunicorn.yml" --web.listen-address=127.0.0.1:$p1 --collector.pools.interval=1s --log.level=warn 2>"$work/on.log"
spawn "$bin" --config.file="$work/generic.yml" --web.listen-address=127.0.0.1:$p2 --collector.pools.interval=1s --log.level=warn 2>"$work/off.log"
echo
echo "## two exporters side by side, ${RUN}s after ${SETTLE}s (pools interval 1s)"
metric() { curl -s "127.0.0.1:$1/metrics" | grep -F "$2 " | awk '{print $NF}'; }
counts() { # port collector -> "cpu cycles"
  echo "$(metric "$1" "badgateway_collector_cpu_seconds_total{collector=\"$2\"}") $(metric "$1" "badgateway_collector_cycles_total{collector=\"$2\"}")"
}
sleep "$SETTLE"
declare -A before
for x in "$p1 pools" "$p2 pools" "$p1 listen_queue" "$p2 listen_queue"; do before[$x]=$(counts $x); done
sleep "$RUN"
per() { # port collector unit
  read -r c1 n1 <<<"${before[$1 $2]}"
  read -r c2 n2 < <(counts "$1" "$2")
  python3 -c "print(f'{int(float($n2)-float($n1))} {\"$3\"}s, cpu_us_per_$3={(float($c2)-float($c1))/(float($n2)-float($n1))*1e6:.0f}')"
}
up=$(metric "$p1" 'badgateway_source_up{source="control/bench"}')
hb=$(curl -s "127.0.0.1:$p1/metrics" | grep -c '^badgateway_worker_heartbeat_age_seconds{' || true)
echo "control on  (server: gunicorn): pools $(per "$p1" pools cycle); control_up=$up heartbeat_series=$hb"
echo "control off (server: generic):  pools $(per "$p2" pools cycle)"
echo "listen-queue sampler, 2 sockets, exporter 1: $(per "$p1" listen_queue sample)"
echo "listen-queue sampler, 2 sockets, exporter 2: $(per "$p2" listen_queue sample)"
