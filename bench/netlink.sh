#!/usr/bin/env bash
# Benchmark of the netlink readers (src/netlink/), beside `ss` in one run:
# - the cost of sampling the listen queues of 4 listeners by inode/address
#   (what the pool source will do every 100 ms), against `ss -lx`, `ss -xa`,
#   `ss -ltn` and an in-process dump of every unix socket, with OTHERS extra
#   unix sockets on the host;
# - the time from kill(2) to the exit event being read from the proc
#   connector;
# - the reader's CPU per process event, blocked in read or draining on a timer.
# Usage: bench/netlink.sh  (root; OTHERS=2000 RUNS=200 KILLS=200 PROCS=2000)
set -euo pipefail
cd "$(dirname "$0")/.."
OTHERS=${OTHERS:-2000}
RUNS=${RUNS:-200}
KILLS=${KILLS:-200}
PROCS=${PROCS:-2000}

command -v ss >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2 >/dev/null; }
cargo build --release -q --example netlink_bench
bin=target/release/examples/netlink_bench

holder=
cleanup() { [ -n "$holder" ] && kill "$holder" 2>/dev/null || true; }
trap cleanup EXIT
# One process holding OTHERS unix sockets (socket pairs), so that the kernel
# has a busy host's worth to walk or dump.
python3 - "$OTHERS" <<'PY' &
import socket, sys, time, resource
n = int(sys.argv[1]) // 2
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
keep = [socket.socketpair() for _ in range(n)]
time.sleep(3600)
PY
holder=$!
for _ in $(seq 100); do
  [ "$(($(wc -l </proc/net/unix) - 1))" -ge "$OTHERS" ] && break
  sleep 0.1
done
echo "# Linux $(uname -r), $(nproc) CPUs, $(($(wc -l </proc/net/unix) - 1)) unix sockets and $(($(wc -l </proc/net/tcp) - 1)) IPv4 TCP sockets on the host"

echo "## listen queues"
"$bin" sock-diag 0 20000 | grep -v '^#'
TIMEFORMAT='%R %U %S'
for cmd in "ss -lx" "ss -xa" "ss -ltn"; do
  read -r real user sys < <({ time (for _ in $(seq "$RUNS"); do $cmd >/dev/null; done); } 2>&1)
  awk -v c="$cmd" -v r="$real" -v u="$user" -v s="$sys" -v n="$RUNS" \
    'BEGIN { printf "%s: %.0f us wall, %.0f us CPU per run (%d runs, a process each)\n", c, r/n*1e6, (u+s)/n*1e6, n }'
done

echo "## proc connector"
"$bin" kill-latency "$KILLS"
for interval in 0 10 100; do "$bin" event-cost "$PROCS" "$interval"; done
