#!/usr/bin/env bash
# Which alerts fire while nothing is wrong: the exporter, two idle Gunicorn
# pools behind nginx with a little traffic (a request a second), and a
# Prometheus loading alerts/*.yml as shipped, scraping and evaluating every
# 15 s, for SECONDS (default 600). Prints every alert that was pending or
# firing at any time (from Prometheus' ALERTS series); the goal is none.
# Needs nginx, Prometheus and the tests' Gunicorn venv (scripts/test.sh).
#
#   bench/alerts_quiet.sh [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. bench/lib.sh
duration=${1:-600}
bin=$root/target/debug/badgateway_exporter
[ -x "$bin" ] || cargo build
gunicorn_venv

for p in web api; do
  mkdir -p "$work/$p.run"
  spawn env XDG_RUNTIME_DIR="$work/$p.run" "$venv/bin/gunicorn" --workers 2 \
    --bind "unix:$work/$p.sock" --pid "$work/$p.pid" --chdir "$root/tests/apps" \
    --error-logfile "$work/$p.log" app:app
  wait_workers "$work/$p.pid" 2
done
format='$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time" uht="$upstream_header_time" urt="$upstream_response_time" ua="$upstream_addr" us="$upstream_status"'
nginx_port=$(free_port)
start_nginx "$nginx_port" "" \
"    location /web/ { proxy_pass http://unix:$work/web.sock:/; }
    location /api/ { proxy_pass http://unix:$work/api.sock:/; }
"
{
  echo "pools:"
  for p in web api; do
    printf '  - name: %s\n    server: gunicorn\n    pidfile: %s\n    log_file: %s\n' "$p" "$work/$p.pid" "$work/$p.log"
  done
  printf 'nginx:\n  - name: edge\n    access_log: %s\n    error_log: %s\n    log_format: |-\n      log_format upstreamlog '"'"'%s'"'"';\n' \
    "$work/nginx/access.log" "$work/nginx/error.log" "$format"
} > "$work/exporter.yml"
port=$(free_port)
spawn "$bin" --config.file="$work/exporter.yml" --web.listen-address="127.0.0.1:$port"

prom_port=$(free_port)
cat > "$work/prometheus.yml" <<EOF
global: {scrape_interval: 15s, evaluation_interval: 15s}
rule_files: [$root/alerts/alerts.yml, $root/alerts/thresholds.yml, $root/alerts/recording.yml]
scrape_configs:
  - job_name: badgateway
    static_configs: [{targets: ['127.0.0.1:$port']}]
EOF
spawn /usr/bin/prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn
prom=http://127.0.0.1:$prom_port
for _ in $(seq 120); do curl -sf "$prom/-/ready" >/dev/null && break; sleep 0.5; done
spawn bash -c "while true; do curl -s -o /dev/null http://127.0.0.1:$nginx_port/web/; curl -s -o /dev/null http://127.0.0.1:$nginx_port/api/; sleep 1; done"
start=$(date +%s)
echo "$(date +%T) running for $duration s: $("$venv/bin/python" -c 'import gunicorn; print("Gunicorn", gunicorn.__version__)'), Linux $(uname -r)"
sleep "$duration"
end=$(date +%s)
curl -s "$prom/api/v1/query_range" --data-urlencode 'query=ALERTS' \
  --data-urlencode "start=$start" --data-urlencode "end=$end" --data-urlencode step=15 | python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(f"alerts pending or firing at any time in the run: {len(r)}")
for s in r:
    m = s["metric"]
    labels = {k: v for k, v in m.items() if k not in ("__name__", "alertname", "alertstate")}
    print(" ", m["alertstate"], m["alertname"], labels, len(s["values"]), "evaluations")'
curl -s "$prom/api/v1/query" --data-urlencode 'query=sum by (source) (badgateway_source_ever_up == 0)' | python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print("sources never up on this host:", ", ".join(s["metric"]["source"] for s in r) or "none")'
