#!/usr/bin/env bash
# A statically linked badgateway_exporter (musl), and a tarball of it with
# the systemd unit, its env and sysusers files, the alert rules and the
# dashboards: target/badgateway_exporter-VERSION.linux-amd64.tar.gz.
# Needs the musl target (rustup target add x86_64-unknown-linux-musl) and
# Debian's musl-tools (musl-gcc, for ring's C and assembly).
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
if ! rustup target list --installed | grep -qx "$target"; then
  echo "the $target target is missing: rustup target add $target" >&2
  exit 1
fi
if ! command -v musl-gcc >/dev/null; then
  echo "musl-gcc is missing: apt-get install musl-tools" >&2
  exit 1
fi
export CC_x86_64_unknown_linux_musl=musl-gcc
cargo build --release --locked --target "$target" --bin badgateway_exporter
bin="target/$target/release/badgateway_exporter"
# A static binary has no program interpreter (no ld.so to find).
if readelf -l "$bin" | grep -q 'Requesting program interpreter'; then
  echo "$bin is dynamically linked" >&2
  exit 1
fi
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
name="badgateway_exporter-$version.linux-amd64"
stage="target/$name"
rm -rf "$stage"
mkdir -p "$stage/alerts" "$stage/dashboards/provisioning" "$stage/systemd"
cp "$bin" "$stage/"
cp deploy/systemd/badgateway_exporter.service deploy/systemd/badgateway_exporter.env \
  deploy/systemd/badgateway_exporter.sysusers "$stage/systemd/"
cp alerts/*.yml "$stage/alerts/"
cp dashboards/*.json "$stage/dashboards/"
cp dashboards/provisioning/*.yml "$stage/dashboards/provisioning/"
cp README.md "$stage/"
tar -C target -czf "target/$name.tar.gz" "$name"
echo "target/$name.tar.gz"
