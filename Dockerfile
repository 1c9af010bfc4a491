# badgateway_exporter: a multi-stage build to a distroless runtime image.
#
#   docker build -t ghcr.io/OWNER/badgateway_exporter:0.1.0 .
#   docker run -d --name badgateway_exporter \
#     --network host --pid host --cgroupns host \
#     -v /proc:/host/proc:ro -v /sys:/host/sys:ro \
#     -v /var/log/nginx:/var/log/nginx:ro \
#     ghcr.io/OWNER/badgateway_exporter:0.1.0 \
#     --path.procfs=/host/proc --path.sysfs=/host/sys \
#     --nginx.access-log=/var/log/nginx/access.log \
#     --nginx.error-log=/var/log/nginx/error.log
#
# The host's network namespace is for the proc connector and the listen
# queues (sock_diag), its cgroup namespace for cgroup paths as the host
# names them; a Gunicorn control socket is reached through
# /host/proc/MASTER/root. It runs as an unprivileged user (65532). The four
# capabilities the sources use (see deploy/kubernetes/daemonset.yaml) reach
# a container's process only as uid 0 with `--user 0 --cap-drop ALL
# --cap-add SYSLOG --cap-add SYS_PTRACE --cap-add DAC_READ_SEARCH --cap-add
# NET_ADMIN`; without them it serves what it can read.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
# The image is built without .git: pass what build_info and --version say,
# e.g. --build-arg BADGATEWAY_BUILD_REVISION=$(git rev-parse HEAD).
ARG BADGATEWAY_BUILD_REVISION=unknown
ARG BADGATEWAY_BUILD_BRANCH=unknown
RUN cargo build --release --locked --bin badgateway_exporter

# glibc and libgcc, no shell, no package manager; "nonroot" is uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/badgateway_exporter /usr/local/bin/badgateway_exporter
USER 65532:65532
EXPOSE 9502
# The image has no curl or shell: the binary probes its own /healthz (over
# TLS too). With another --web.listen-address or a --web.config.file,
# override it with the same flags after `healthcheck`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/badgateway_exporter", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/badgateway_exporter"]
