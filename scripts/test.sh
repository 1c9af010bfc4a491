#!/usr/bin/env bash
# The whole test suite. Installs what the tests need when it is missing:
# Debian's nginx-light, prometheus, prometheus-alertmanager, mtail,
# systemd (for systemd-analyze), chromium (the status page test),
# kubernetes-client (kubectl, for kustomize), util-linux (unshare) and
# musl-tools; the musl target; cargo-deb from crates.io; kubernetes-validate,
# grafana-foundation-sdk (tools/gen_dashboards.py)
# and Gunicorn from PyPI into venvs under target/ (Gunicorn twice: one
# without setproctitle, one with it, since Gunicorn names its processes
# differently in each case). Builds the static tarball
# (scripts/build-static.sh) that a test checks.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# A clean run builds everything once; incremental caches would only take
# disk (GBs), and a CI machine's disk has been seen full.
export CARGO_INCREMENTAL=0
echo "disk before the build: $(df -h . | tail -1)"

# Lint gates first: they fail in seconds, before the installs and the tests.
cargo fmt --check
cargo clippy --all-targets -- -D warnings

need_pkgs=()
command -v nginx >/dev/null || need_pkgs+=(nginx-light)
command -v prometheus >/dev/null || need_pkgs+=(prometheus)
command -v promtool >/dev/null || need_pkgs+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need_pkgs+=(prometheus-alertmanager)
command -v mtail >/dev/null || need_pkgs+=(mtail)
# tests/servers.rs: uWSGI, php-fpm, Unicorn and Puma as Debian ships them.
command -v uwsgi >/dev/null || need_pkgs+=(uwsgi-core)
[ -e /usr/lib/uwsgi/plugins/python3_plugin.so ] || need_pkgs+=(uwsgi-plugin-python3)
ls /usr/sbin/php-fpm* >/dev/null 2>&1 || need_pkgs+=(php-fpm)
command -v unicorn >/dev/null || need_pkgs+=(unicorn)
command -v puma >/dev/null || need_pkgs+=(puma)
# tests/packaging.rs: systemd-analyze verify on the shipped unit; tests/cli.rs:
# systemd-socket-activate for --web.systemd-socket.
command -v systemd-analyze >/dev/null && command -v systemd-socket-activate >/dev/null || need_pkgs+=(systemd)
# tests/kubernetes.rs: `kubectl kustomize` renders deploy/kubernetes.
command -v kubectl >/dev/null || need_pkgs+=(kubernetes-client)
# tests/namespaces.rs: the exporter in new namespaces, as a container runs it.
command -v unshare >/dev/null || need_pkgs+=(util-linux)
# tests/deb.rs: dpkg installs the .deb into a clean root.
command -v dpkg-deb >/dev/null || need_pkgs+=(dpkg)
# scripts/build-static.sh: musl-gcc for ring's C and assembly.
command -v musl-gcc >/dev/null || need_pkgs+=(musl-tools)
# tests/status_page.rs: the status page in headless Chromium.
command -v chromium >/dev/null || need_pkgs+=(chromium)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Package scripts would start the services; the tests start their own.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

# tests/deb.rs: `cargo deb` packs the binary the tests built. Pinned: it
# packs the dev profile's binary, which later versions mean to refuse.
if ! cargo deb --version 2>/dev/null | grep -qx 'cargo-deb 3.8.0'; then
  echo "installing cargo-deb 3.8.0"
  cargo install cargo-deb --version 3.8.0 --locked
fi

# tests/kubernetes.rs: Kubernetes' schemas for the rendered manifests.
if [ ! -x "$root/target/k8s-venv/bin/kubernetes-validate" ]; then
  echo "installing kubernetes-validate into $root/target/k8s-venv"
  python3 -m venv "$root/target/k8s-venv"
  "$root/target/k8s-venv/bin/pip" install -q --disable-pip-version-check 'kubernetes-validate==1.37.0'
fi

# tests/alerts.rs: tools/record_alert_series.py and runbook_urls.py read
# YAML with the python3 on the PATH.
if ! python3 -c 'import yaml' 2>/dev/null; then
  echo "installing PyYAML for python3"
  python3 -m pip install -q --disable-pip-version-check 'PyYAML==6.0.3'
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
# grafana-foundation-sdk, Grafana's typed dashboard builders: tools/gen_dashboards.py
# writes dashboards/ with it and tests/lint.rs checks they are what it writes.
# Pinned: a newer SDK may write other JSON for the same panels.
dashboard_sdk='grafana-foundation-sdk==1769699379!11.6.0'
if ! "$root/target/dashboard-venv/bin/python" -c 'import grafana_foundation_sdk' 2>/dev/null \
  || [ "$("$root/target/dashboard-venv/bin/pip" show grafana-foundation-sdk 2>/dev/null | sed -n 's/^Version: //p')" != "${dashboard_sdk#*==}" ]; then
  echo "installing $dashboard_sdk into $root/target/dashboard-venv"
  python3 -m venv "$root/target/dashboard-venv"
  "$root/target/dashboard-venv/bin/pip" install -q --disable-pip-version-check "$dashboard_sdk"
fi
export BADGATEWAY_DASHBOARD_PYTHON="$root/target/dashboard-venv/bin/python"
export BADGATEWAY_TEST_VENV="$root/target/test-venv"
export BADGATEWAY_TEST_VENV_SETPROCTITLE="$root/target/test-venv-spt"

# tests/static_build.rs checks the static tarball: a release build for the
# musl target, made here rather than inside a test.
rustup target list --installed | grep -qx x86_64-unknown-linux-musl \
  || rustup target add x86_64-unknown-linux-musl
scripts/build-static.sh

# Integration tests start real servers and OOM kills; two at a time keeps
# them honest on a 2-core machine.
cargo test --all-targets --no-fail-fast -- --test-threads=2
