#!/usr/bin/env bash
# Copy the /proc files the pool source reads, for a master and its children,
# into a fixture tree: tools/capture_proc_fixture.sh MASTER_PID OUT_DIR
set -euo pipefail
master=$1 out=$2
mkdir -p "$out"
grep -E '^btime ' /proc/stat > "$out/stat"
pids="$master $(for d in /proc/[0-9]*; do p=${d#/proc/}; pp=$(awk '{print $4}' "$d/stat" 2>/dev/null || true); if [ "$pp" = "$master" ]; then echo "$p"; fi; done)"
for p in $pids; do
  mkdir -p "$out/$p/fd"
  for f in stat statm status smaps_rollup limits cmdline; do cat "/proc/$p/$f" > "$out/$p/$f"; done
  for fd in /proc/$p/fd/*; do : > "$out/$p/fd/$(basename "$fd")"; done
done
echo "captured: $pids"
