#!/usr/bin/env bash
# Runs one real host where most of the alerts of alerts/alerts.yml have a
# reason to fire, watched by a real Prometheus, and records what it scraped
# into alerts/tests/recorded/host.series.yml (tools/record_alert_series.py
# record). The promtool tests in alerts/tests/host.spec.yml are built on
# it. Not a test: it takes about 14 minutes and writes a file. Needs root
# (memory cgroups), nginx, Prometheus and the tests' Gunicorn venv
# (scripts/test.sh installs them).
#
#   tools/record_alert_scenario.sh [SECONDS]     (default 840)
#
# One exporter ("host a") watches six Gunicorn pools behind one nginx:
#   slow   1 sync worker, --timeout 4, --backlog 4, nginx gives up after 1 s.
#          From 60 s on, 6 clients each ask every 2 s for a 4.5 s request:
#          504s, a full listen queue (502 backlog_full), heartbeats as old
#          as the timeout, and the master kills the worker at it each time.
#   fds    1 worker, idle, its soft open-file limit lowered to one above
#          what it has open before the exporter starts. At 60 s its
#          control socket is unlinked (the source worked, then broke).
#   grow   1 worker in a 300 MiB memory cgroup that keeps 2 MiB more every
#          10 s (asked directly, not through nginx).
#   stop   1 worker in a 60 MiB memory cgroup, its master in another. At
#          60 s leaking requests through nginx get the worker OOM-killed
#          (502), and the master is stopped 5 s later, as systemd's
#          OOMPolicy=stop does; then a request a second gets 502.
#   busy   1 worker, --timeout 8. From 60 s on, one client asks it directly
#          for 7 s requests back to back: heartbeats 7/8 of its timeout
#          old, never killed.
#   storm  1 worker in a 60 MiB memory cgroup, its master in another. From
#          60 s to 130 s, leaking requests sent straight to its socket (no
#          nginx, so no 502) get it OOM-killed over and over, and the
#          kernel's reports of it flood the kernel log.
#   calm   1 worker, a request a second: nothing wrong.
# nginx also writes every request to a second log in a format the exporter
# is not told (log "mirror": every line a parse error). A second exporter
# ("host b", no pools) is stopped (SIGSTOP) from 55 s to 135 s, while the
# storm overwrites the kernel's ring buffer before it can read it (kernel
# records lost), and killed at 180 s.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. bench/lib.sh
duration=${1:-840}

bin=$root/target/debug/badgateway_exporter
[ -x "$bin" ] || cargo build
gunicorn_venv
for b in /usr/sbin/nginx /usr/bin/prometheus; do
  [ -x "$b" ] || { echo "$b is missing: run scripts/test.sh" >&2; exit 1; }
done

# Memory cgroups (v1 here; v2 where the root has the controller).
if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
  cg_root=/sys/fs/cgroup; limit_file=memory.max
  echo +memory > $cg_root/cgroup.subtree_control || true
else
  cg_root=/sys/fs/cgroup/memory; limit_file=memory.limit_in_bytes
fi
cg=$cg_root/bgw-record-$$
mkdir "$cg"
[ "$limit_file" = memory.max ] && echo +memory > "$cg/cgroup.subtree_control"
mkdir "$cg/grow" "$cg/stop-master" "$cg/stop-workers" "$cg/storm-master" "$cg/storm-workers"
usage() { cat "$1/memory.current" 2>/dev/null || cat "$1/memory.usage_in_bytes"; }
remove_cgroups() {
  for d in "$cg"/*/ "$cg"; do
    for _ in $(seq 40); do
      pids=$(cat "$d/cgroup.procs" 2>/dev/null || true)
      [ -z "$pids" ] && break
      kill -9 $pids 2>/dev/null || true
      sleep 0.25
    done
    rmdir "$d" 2>/dev/null || true
  done
}
trap 'cleanup; remove_cgroups' EXIT

mib=$((1 << 20))
apps=$root/tests/apps
# gunicorn NAME PRE_EXEC ARGS...: a master with its own control socket
# directory, its pid in $work/NAME.pid.
gunicorn() {
  local name=$1 pre=$2; shift 2
  mkdir -p "$work/$name.run"
  spawn env XDG_RUNTIME_DIR="$work/$name.run" sh -c \
    "$pre exec $venv/bin/gunicorn --workers 1 --bind unix:$work/$name.sock --pid $work/$name.pid --chdir $apps --graceful-timeout 1 --error-logfile $work/$name.log $* app:app"
  wait_workers "$work/$name.pid" 1
}

gunicorn slow "" --timeout 4 --backlog 4
gunicorn fds "" --timeout 30
gunicorn grow "echo \$\$ > $cg/grow/cgroup.procs;" --timeout 30
gunicorn stop "echo \$\$ > $cg/stop-master/cgroup.procs; export BGW_WORKER_CGROUP=$cg/stop-workers/cgroup.procs;" \
  --timeout 30 --config "$apps/oom_protect_master.py"
gunicorn busy "" --timeout 8
gunicorn storm "echo \$\$ > $cg/storm-master/cgroup.procs; export BGW_WORKER_CGROUP=$cg/storm-workers/cgroup.procs;" \
  --timeout 30 --config "$apps/oom_protect_master.py"
gunicorn calm "" --timeout 30
# The exporter reads a worker's limit once: lowered before it starts.
worker=$(pgrep -P "$(cat "$work/fds.pid")" | head -1)
open=$(ls "/proc/$worker/fd" | wc -l)
prlimit --pid "$worker" --nofile=$((open + 1)):
echo "fds worker $worker: $open open, soft limit $((open + 1))"
echo $((300 * mib)) > "$cg/grow/$limit_file"
echo $(($(usage "$cg/stop-workers") + 60 * mib)) > "$cg/stop-workers/$limit_file"
echo $(($(usage "$cg/storm-workers") + 60 * mib)) > "$cg/storm-workers/$limit_file"

# nginx, logging in the tests' format (tests/common/nginx.rs) and, to
# mirror.log, in one the exporter is not told.
format='$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time" uht="$upstream_header_time" urt="$upstream_response_time" ua="$upstream_addr" us="$upstream_status"'
nginx_port=$(free_port)
locations=""
for p in slow fds grow stop calm; do
  locations+="location /$p/ { proxy_pass http://unix:$work/$p.sock:/; proxy_read_timeout 1s; }
"
done
start_nginx "$nginx_port" \
"  log_format short '\$remote_addr \$status \$request_time';
  access_log $work/nginx/mirror.log short;
" \
"    proxy_next_upstream off;
$locations"
for _ in $(seq 40); do curl -s -o /dev/null "http://127.0.0.1:$nginx_port/calm/" && break; sleep 0.25; done

# The exporters.
{
  echo "pools:"
  for p in slow fds grow stop busy storm calm; do
    printf '  - name: %s\n    server: gunicorn\n    pidfile: %s\n    log_file: %s\n' "$p" "$work/$p.pid" "$work/$p.log"
  done
  echo "nginx:"
  for l in edge mirror; do
    f=access; [ $l = mirror ] && f=mirror
    printf '  - name: %s\n    access_log: %s\n    error_log: %s\n    log_format: |-\n      log_format upstreamlog '"'"'%s'"'"';\n' \
      "$l" "$work/nginx/$f.log" "$work/nginx/error.log" "$format"
  done
} > "$work/a.yml"
echo "pools: []" > "$work/b.yml"
port_a=$(free_port); port_b=$(free_port)
spawn "$bin" --config.file="$work/a.yml" --web.listen-address="127.0.0.1:$port_a"
spawn "$bin" --config.file="$work/b.yml" --web.listen-address="127.0.0.1:$port_b"
exporter_b=$spawned

prom_port=$(free_port)
cat > "$work/prometheus.yml" <<EOF
global: {scrape_interval: 5s, evaluation_interval: 5s}
rule_files: [$root/alerts/alerts.yml]
scrape_configs:
  - job_name: badgateway
    static_configs: [{targets: ['127.0.0.1:$port_a', '127.0.0.1:$port_b']}]
EOF
spawn /usr/bin/prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn
prom=http://127.0.0.1:$prom_port
for _ in $(seq 120); do curl -sf "$prom/-/ready" >/dev/null && break; sleep 0.5; done
for _ in $(seq 120); do
  [ "$(curl -s "$prom/api/v1/query?query=count(up==1)" | python3 -c 'import json,sys;r=json.load(sys.stdin)["data"]["result"];print(r[0]["value"][1] if r else 0)')" = 2 ] && break
  sleep 0.5
done
start=$(date +%s)
echo "start $start: nginx :$nginx_port, exporters :$port_a :$port_b, Prometheus $prom, work $work"
at() { while [ $(($(date +%s) - start)) -lt "$1" ]; do sleep 0.5; done; }
get() { curl -s -o /dev/null --max-time 10 "http://127.0.0.1:$nginx_port$1" || true; }
loop() { local pause=$1; shift; while true; do "$@"; sleep "$pause"; done; }

# nginx sees every pool's upstream while it is up, so that the exporter
# ties each to its pool before anything goes wrong.
for p in slow fds grow stop calm; do get "/$p/"; done
spawn bash -c "$(declare -f get loop); nginx_port=$nginx_port; loop 1 get /calm/"
spawn bash -c "while true; do curl -s -o /dev/null --max-time 10 --unix-socket $work/grow.sock http://x/leak?mb=2; sleep 10; done"

at 55
kill -STOP "$exporter_b"
at 60
spawn bash -c "while true; do curl -s -o /dev/null --max-time 10 --unix-socket $work/storm.sock http://x/leak?mb=20; sleep 0.2; done"
storm=$spawned
echo "$(date +%T) 60 s: slow load, busy requests, control socket unlinked, stop pool OOM-killed"
for _ in 1 2 3 4 5 6; do
  spawn bash -c "$(declare -f get loop); nginx_port=$nginx_port; loop 2 get /slow/sleep?s=4.5"
done
spawn bash -c "while true; do curl -s -o /dev/null --max-time 20 --unix-socket $work/busy.sock http://x/sleep?s=7; done"
rm -f "$work/fds.run/gunicorn.ctl"
stop_master=$(cat "$work/stop.pid")
kills_before=$(awk '/^oom_kill /{print $2}' /proc/vmstat)
for _ in $(seq 30); do
  get /stop/leak?mb=20
  [ "$(awk '/^oom_kill /{print $2}' /proc/vmstat)" != "$kills_before" ] && break
done
sleep 5
kill -TERM "$stop_master"
echo "$(date +%T) stop's master $stop_master stopped after an OOM kill"
spawn bash -c "$(declare -f get loop); nginx_port=$nginx_port; loop 1 get /stop/"

at 130
kill -9 -- "-$storm"
at 135
kill -CONT "$exporter_b"
echo "$(date +%T) 135 s: storm over, host b's exporter continued"
at 180
kill -9 -- "-$exporter_b"
echo "$(date +%T) 180 s: host b's exporter killed"

at "$duration"
end=$(date +%s)
echo "$(date +%T) firing in Prometheus:"
curl -s "$prom/api/v1/alerts" | python3 -c '
import json, sys
for a in json.load(sys.stdin)["data"]["alerts"]:
    l = a["labels"]
    print(" ", a["state"], l["alertname"], l.get("pool", ""), l.get("cause", ""), l.get("source", ""), l.get("instance", ""))'
python3 tools/record_alert_series.py record --prometheus "$prom" --start "$start" --end "$end" --step 5 \
  --out alerts/tests/recorded/host.series.yml \
  --note "tools/record_alert_scenario.sh $duration on $(uname -r), Gunicorn $("$venv/bin/python" -c 'import gunicorn; print(gunicorn.__version__)'), $(/usr/sbin/nginx -v 2>&1 | sed 's/.*: //'), $(/usr/bin/prometheus --version 2>&1 | head -1 | awk '{print $1, $3}'); host a = 127.0.0.1:$port_a, host b = 127.0.0.1:$port_b (stopped 55-135 s, killed at 180 s)"
