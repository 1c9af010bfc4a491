//! Real nginx on loopback, logging in a format with every upstream field.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{free_port, http_get, spawn, wait_for, Proc};

pub fn nginx_bin() -> PathBuf {
    let p = PathBuf::from("/usr/sbin/nginx");
    assert!(
        p.exists(),
        "nginx is not installed at {}: run scripts/test.sh, which installs nginx-light",
        p.display()
    );
    p
}

pub const LOG_FORMAT: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time" uht="$upstream_header_time" urt="$upstream_response_time" ua="$upstream_addr" us="$upstream_status""#;

pub struct Nginx {
    pub proc: Proc,
    pub dir: PathBuf,
    pub addr: String,
}

impl Nginx {
    /// Start nginx logging `access.log` in [`LOG_FORMAT`], with `locations`
    /// inside its one server block.
    pub fn start(dir: &Path, locations: &str) -> Nginx {
        Nginx::start_with(
            dir,
            &format!(
                "log_format upstreamlog '{LOG_FORMAT}';\n    access_log {}/access.log upstreamlog;",
                dir.display()
            ),
            &format!("proxy_next_upstream off;\n        {locations}"),
        )
    }

    /// Real nginx in the foreground, killed on drop, with everything it
    /// writes (pid, error log, temp files) under `dir`. `http` goes into the
    /// http block (log formats, access logs, upstreams), `server` into its
    /// one server block, which listens on a free loopback port. The error
    /// log is `dir/error.log` at level `error`.
    pub fn start_with(dir: &Path, http: &str, server: &str) -> Nginx {
        let port = free_port();
        let conf = format!(
            r#"
worker_processes 1;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
daemon off;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {dir}/tmp_body;
    proxy_temp_path {dir}/tmp_proxy;
    fastcgi_temp_path {dir}/tmp_fcgi;
    uwsgi_temp_path {dir}/tmp_uwsgi;
    scgi_temp_path {dir}/tmp_scgi;
    {http}
    server {{
        listen 127.0.0.1:{port};
        server_name _;
        {server}
    }}
}}
"#,
            dir = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let proc = spawn(
            "nginx",
            Command::new(nginx_bin())
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let addr = format!("127.0.0.1:{port}");
        wait_for(Duration::from_secs(10), "nginx to listen", || {
            std::net::TcpStream::connect(&addr).is_ok()
        });
        Nginx {
            proc,
            dir: dir.to_path_buf(),
            addr,
        }
    }

    pub fn config(&self, name: &str) -> String {
        self.config_with(name, LOG_FORMAT)
    }

    /// The exporter's config for this nginx, its access log written in
    /// `format`.
    pub fn config_with(&self, name: &str, format: &str) -> String {
        format!(
            "nginx:\n  - name: {name}\n    access_log: {d}/access.log\n    error_log: {d}/error.log\n    log_format: |-\n      log_format upstreamlog '{format}';\n",
            d = self.dir.display(),
        )
    }

    pub fn get(&self, path: &str) -> u16 {
        http_get(&self.addr, path, Duration::from_secs(30))
            .map(|(s, _)| s)
            .unwrap_or_else(|e| panic!("GET {path} through nginx: {e}"))
    }
}
