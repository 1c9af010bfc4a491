#!/usr/bin/env bash
# The whole test suite. Installs what the tests need when it is missing:
# Debian's nginx-light, prometheus, prometheus-alertmanager, mtail,
# systemd (for systemd-analyze) and python3-yaml, and
# Gunicorn from PyPI into venvs under target/ (one without setproctitle, one
# with it, since Gunicorn names its processes differently in each case).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

need_pkgs=()
command -v nginx >/dev/null || need_pkgs+=(nginx-light)
command -v prometheus >/dev/null || need_pkgs+=(prometheus)
command -v promtool >/dev/null || need_pkgs+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need_pkgs+=(prometheus-alertmanager)
command -v mtail >/dev/null || need_pkgs+=(mtail)
# tests/packaging.rs: systemd-analyze verify on the shipped unit.
command -v systemd-analyze >/dev/null || need_pkgs+=(systemd)
# tests/alerts.rs: tools/record_alert_series.py reads YAML.
python3 -c 'import yaml' 2>/dev/null || need_pkgs+=(python3-yaml)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Package scripts would start the services; the tests start their own.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

make_venv() { # dir, packages...
  local dir=$1; shift
  if [ ! -x "$dir/bin/gunicorn" ]; then
    echo "installing $* into $dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install -q --disable-pip-version-check "$@"
  fi
}
make_venv "$root/target/test-venv" 'gunicorn==27.0.1'
make_venv "$root/target/test-venv-spt" 'gunicorn==27.0.1' 'setproctitle'
# matplotlib, for the picture of the main dashboard that tests/pipeline.rs
# draws from Prometheus's answers (Grafana cannot run here).
if [ ! -x "$root/target/plot-venv/bin/python" ] || ! "$root/target/plot-venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  echo "installing matplotlib into $root/target/plot-venv"
  python3 -m venv "$root/target/plot-venv"
  "$root/target/plot-venv/bin/pip" install -q --disable-pip-version-check 'matplotlib==3.11.*'
fi
export BADGATEWAY_PLOT_PYTHON="$root/target/plot-venv/bin/python"
export BADGATEWAY_TEST_VENV="$root/target/test-venv"
export BADGATEWAY_TEST_VENV_SETPROCTITLE="$root/target/test-venv-spt"

# Integration tests start real servers and OOM kills; two at a time keeps
# them honest on a 2-core machine.
cargo test --all-targets --no-fail-fast -- --test-threads=2
