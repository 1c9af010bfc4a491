#!/usr/bin/env bash
# `badgateway_exporter diagnose` on a busy host: 2,000 other processes, a
# Gunicorn pool with its log file, and a 500 MB nginx access log whose
# first upstream is the pool's socket. Its wall time and peak RSS, from
# /usr/bin/time -v, beside the peers run on the same log in the same run:
# - mtail --one_shot with bench/access.mtail: one pass over the log,
#   counting what the exporter counts per line;
# - grep -c '" 502 ': the operator's first command over the log.
# diagnose reads every line (its time too, for the growth fit), judges
# every 502 and 504 (about 2% of the lines), and walks the process table.
# Usage: bench/diagnose.sh [LOG_MB]   (default 500; root; installs mtail)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
MB=${1:-500}
OTHERS=${OTHERS:-2000}
command -v mtail >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mtail >/dev/null; }
. bench/lib.sh
gunicorn_venv
cargo build --release -q
bin=$root/target/release/badgateway_exporter

echo "# starting $OTHERS other processes and a 4-worker Gunicorn pool"
start_sleepers "$OTHERS"
spawn "$venv/bin/gunicorn" -w 4 -b "unix:$work/api.sock" --chdir "$root/tests/apps" \
  --pid "$work/g.pid" --log-file "$work/gunicorn.log" app:app >/dev/null 2>&1
wait_workers "$work/g.pid" 4

# Lines for MB megabytes, from the size of a sample.
BGW_BENCH_SOCKET="unix:$work/api.sock" python3 bench/gen_access_log.py 10000 "$work/sample.log"
n=$(python3 -c "import os; print(int($MB * 1e6 / (os.path.getsize('$work/sample.log') / 10000)))")
BGW_BENCH_SOCKET="unix:$work/api.sock" python3 bench/gen_access_log.py "$n" "$work/access.log"
: > "$work/error.log"
echo "# processes on the host: $(ls -d /proc/[0-9]* | wc -l); access log: $n lines, $(du -m "$work/access.log" | cut -f1) MiB"
cat "$work/access.log" > /dev/null

fmt='$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time" uht="$upstream_header_time" urt="$upstream_response_time" ua="$upstream_addr" us="$upstream_status"'
cat > "$work/bgw.yml" <<YML
pools:
  - name: api
    server: gunicorn
    pidfile: $work/g.pid
    log_file: $work/gunicorn.log
nginx:
  - name: bench
    access_log: $work/access.log
    error_log: $work/error.log
    log_format: '$fmt'
YML

# timed NAME CMD...: wall seconds and peak RSS of CMD, its stdout in
# $work/NAME.out and its exit code in $work/NAME.rc.
timed() {
  local name=$1; shift
  set +e
  /usr/bin/time -v -o "$work/$name.time" "$@" > "$work/$name.out" 2>/dev/null
  echo $? > "$work/$name.rc"
  set -e
  python3 - "$name" "$work/$name.time" "$(cat "$work/$name.rc")" <<'PY'
import re, sys
name, path, rc = sys.argv[1], sys.argv[2], sys.argv[3]
t = open(path).read()
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (.*)", t).group(1)
secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.split(":"))))
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
cpu = float(re.search(r"User time \(seconds\): ([0-9.]+)", t).group(1)) + float(re.search(r"System time \(seconds\): ([0-9.]+)", t).group(1))
print(f"{name:<20} wall_s={secs:.2f} cpu_s={cpu:.2f} peak_rss_mib={rss / 1024:.1f} exit={rc}")
open(path + ".wall", "w").write(str(secs))
PY
}

echo
echo "## one pass over the log, each tool"
# The generated lines are of 2026-11-23 04:20: a window that holds them.
timed diagnose "$bin" diagnose --config.file="$work/bgw.yml" --format json --since 100000h
timed mtail mtail --one_shot --one_shot_format=prometheus --progs bench/access.mtail --logs "$work/access.log" --logtostderr
timed grep grep -c '" 502 ' "$work/access.log"
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
r = json.load(open(f"{work}/diagnose.out"))
failed = sum(c["count"] for c in r["failures"]["by_cause"])
pool = next(p for p in r["pools"] if p["name"] == "api")
wall = {n: float(open(f"{work}/{n}.time.wall").read()) for n in ("diagnose", "mtail", "grep")}
causes = {}
for c in r["failures"]["by_cause"]:
    causes[f"{c['pool']}/{c['cause']}"] = causes.get(f"{c['pool']}/{c['cause']}", 0) + c["count"]
print(f"diagnose: severity={r['severity']} pool api workers={len(pool['workers'])} "
      f"failed requests judged={failed} {causes}")
print(f"grep counted {open(f'{work}/grep.out').read().strip()} lines with a 502")
print(f"wall ratio diagnose/mtail = {wall['diagnose'] / wall['mtail']:.2f}, diagnose/grep = {wall['diagnose'] / wall['grep']:.1f}")
PY
