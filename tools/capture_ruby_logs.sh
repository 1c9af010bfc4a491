#!/bin/sh
# Capture Unicorn's and Puma's own logs (Debian 12's packages: unicorn 6,
# puma 5.6) through the ways a worker ends, with tests/apps/config.ru and
# 3 workers, into fixtures/unicorn/VERSION/ and fixtures/puma/VERSION/:
#
#   unicorn/timeout_sigkill_hup_quit.log  a request past `timeout 3`, a
#       worker SIGKILLed from outside (as the OOM killer would), HUP
#       (reload), QUIT (graceful stop)
#   puma/sigkill_usr1_usr2_term.log  a worker SIGKILLed from outside, USR1
#       (phased restart), USR2 (hot restart: the master execs itself, its
#       comm becomes ruby3.x), TERM (stop)
#
# Every process started here is in its own session and is killed by its
# process group on the way out. Usage: tools/capture_ruby_logs.sh
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
app=$root/tests/apps/config.ru
tmp=$(mktemp -d /tmp/bgw-capture-ruby.XXXXXX)
pids=""
cleanup() { for p in $pids; do kill -9 -- "-$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
wait_file() { i=0; while [ ! -s "$1" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; }

uv=$(unicorn -v | awk '{print $2}' | sed 's/v//')
cat > "$tmp/unicorn.rb" <<CONF
worker_processes 3
timeout 3
listen "$tmp/unicorn.sock"
pid "$tmp/unicorn.pid"
stderr_path "$tmp/unicorn.log"
CONF
setsid unicorn -c "$tmp/unicorn.rb" "$app" >/dev/null 2>&1 &
pids="$pids $!"
wait_file "$tmp/unicorn.pid"; sleep 2
m=$(cat "$tmp/unicorn.pid")
curl -s --unix-socket "$tmp/unicorn.sock" "http://x/sleep?s=6" >/dev/null || true
kill -9 "$(pgrep -P "$m" | head -1)"; sleep 2
kill -HUP "$m"; sleep 3
kill -QUIT "$m"; sleep 2
mkdir -p "$root/fixtures/unicorn/$uv"
sed "s#$tmp#/run/app#g" "$tmp/unicorn.log" > "$root/fixtures/unicorn/$uv/timeout_sigkill_hup_quit.log"

pv=$(puma --version | awk '{print $3}')
cd "$tmp"
setsid puma -w 3 -b "unix://$tmp/puma.sock" --pidfile "$tmp/puma.pid" \
  --redirect-stdout "$tmp/puma.log" --redirect-stderr "$tmp/puma.log" --redirect-append "$app" >/dev/null 2>&1 &
pids="$pids $!"
wait_file "$tmp/puma.pid"; sleep 3
m=$(cat "$tmp/puma.pid")
kill -9 "$(pgrep -P "$m" | head -1)"; sleep 3
kill -USR1 "$m"; sleep 4
kill -USR2 "$m"; sleep 5
kill -TERM "$m"; sleep 2
mkdir -p "$root/fixtures/puma/$pv"
sed "s#$tmp#/run/app#g" "$tmp/puma.log" > "$root/fixtures/puma/$pv/sigkill_usr1_usr2_term.log"
echo "captured fixtures/unicorn/$uv and fixtures/puma/$pv"
