# Shared by the bench scripts that start a busy host: sourced from the
# repository root, after `root=$PWD`. Everything they start runs in a
# process group of its own (setsid) and is ended by that group when the
# script exits, never by name.

# A scratch directory, $work, removed on exit with every group `spawn`
# started.
work=$(mktemp -d)
groups=()
cleanup() {
  for g in "${groups[@]}"; do kill -9 -- "-$g" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# spawn CMD...: CMD in a process group of its own; its pid in $spawned.
spawn() {
  setsid "$@" &
  spawned=$!
  groups+=("$spawned")
  disown
}

# The tests' Gunicorn venv, made when missing: $venv.
venv=$root/target/test-venv
gunicorn_venv() {
  [ -x "$venv/bin/gunicorn" ] || { python3 -m venv "$venv"; "$venv/bin/pip" install -q gunicorn==27.0.1; }
}

# A free TCP port on loopback.
free_port() {
  python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

# start_sleepers N: one parent holding N sleeping children, so that the
# host's process table grows without loading the CPU; returns once all N
# are up (at most 60 s).
start_sleepers() {
  spawn python3 -c '
import os, sys, time
for _ in range(int(sys.argv[1])):
    if os.fork() == 0:
        os.execvp("sleep", ["bgw-bench-sleeper", "3600"])
time.sleep(3600)' "$1"
  local parent=$spawned
  for _ in $(seq 240); do
    [ "$(pgrep -c -g "$parent")" -gt "$1" ] && return
    sleep 0.25
  done
}

# wait_workers PIDFILE N: until the master named in PIDFILE has N children
# (at most 60 s).
wait_workers() {
  for _ in $(seq 120); do
    [ -f "$1" ] && [ "$(pgrep -P "$(cat "$1")" | wc -l)" -ge "$2" ] && return
    sleep 0.5
  done
}

# start_nginx PORT HTTP SERVER: nginx on 127.0.0.1:PORT under
# $work/nginx, writing $format (the caller's upstream log format) to
# $work/nginx/access.log; HTTP is more of the http block, SERVER the
# server block's directives.
start_nginx() {
  mkdir -p "$work/nginx"
  cat > "$work/nginx/nginx.conf" <<EOF
worker_processes 1;
user root;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log error;
daemon off;
events { worker_connections 256; }
http {
  client_body_temp_path $work/nginx/tmp_body;
  proxy_temp_path $work/nginx/tmp_proxy;
  fastcgi_temp_path $work/nginx/tmp_fcgi;
  uwsgi_temp_path $work/nginx/tmp_uwsgi;
  scgi_temp_path $work/nginx/tmp_scgi;
  log_format upstreamlog '$format';
  access_log $work/nginx/access.log upstreamlog;
$2  server {
    listen 127.0.0.1:$1;
$3  }
}
EOF
  spawn /usr/sbin/nginx -p "$work/nginx" -c "$work/nginx/nginx.conf"
}
