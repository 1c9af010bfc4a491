//! `badgateway_exporter check-config`: the config and the web config
//! checked without starting anything, every error with its file, line and
//! key.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Runs check-config with `args`; returns (exit code, stdout, stderr).
fn check(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_badgateway_exporter"))
        .arg("check-config")
        .args(args)
        .output()
        .expect("running the exporter");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config_flag(p: &Path) -> String {
    format!("--config.file={}", p.display())
}

#[test]
fn a_valid_config_and_web_config_exit_0_and_nothing_is_started() {
    let dir = TempDir::new("check-ok");
    let cfg = dir.path().join("c.yml");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let example = readme
        .split("```yaml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .unwrap();
    std::fs::write(&cfg, example).unwrap();
    // exporter-toolkit's own example: TLS from files beside it, and users.
    let web = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/web/exporter-toolkit/web_config_users.good.yml");
    // A port in use would make a started exporter fail: check-config must
    // not even try to listen.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = format!("--web.listen-address={}", busy.local_addr().unwrap());
    let (code, out, err) = check(&[
        &config_flag(&cfg),
        &format!("--web.config.file={}", web.display()),
        &listen,
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("c.yml: valid: 3 pools, 1 nginx"), "{out}");
    assert!(
        out.contains("web_config_users.good.yml: valid: tls on, basic auth users 4"),
        "{out}"
    );
}

#[test]
fn every_bad_file_is_named_with_its_line_and_key() {
    let dir = TempDir::new("check-bad");
    let cfg = dir.path().join("c.yml");
    let cases: &[(&str, &[&str])] = &[
        (
            "pools:\n  - name: api\n    pidfile: /run/a.pid\n    sever: gunicorn\n",
            &["c.yml", "sever", "line 4"],
        ),
        (
            "pools:\n  - name: api\n    cmdline: 'gunicorn: master [('\n",
            &["c.yml", "pools[0].cmdline", "line 3", "unclosed character class"],
        ),
        // What used to fail only when the exporter started.
        (
            "nginx:\n  - name: edge\n    access_log: /var/log/nginx/a.log\n    log_format: |\n      log_format x '$remote_addr$status';\n",
            &["c.yml", "nginx[0].log_format", "line 4", "adjacent"],
        ),
        (
            "nginx:\n  - name: edge\n    error_log: /e.log\n  - name: edge\n    error_log: /f.log\n",
            &["c.yml", "nginx[1]", "duplicate nginx name", "line 4"],
        ),
        (
            "kernel:\n  kmsg: maybe\n",
            &["c.yml", "kernel.kmsg", "line 2"],
        ),
    ];
    for (yaml, wants) in cases {
        std::fs::write(&cfg, yaml).unwrap();
        let (code, out, err) = check(&[&config_flag(&cfg)]);
        assert_eq!(code, 1, "{yaml}\n{out}\n{err}");
        for w in *wants {
            assert!(err.contains(w), "{yaml}: no {w:?} in\n{err}");
        }
    }
    // The flags' format is checked too.
    let (code, _, err) = check(&[
        "--nginx.access-log=/var/log/nginx/a.log",
        "--nginx.log-format=$remote_addr $request",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("$status"), "{err}");
    // A missing file.
    let (code, _, err) = check(&["--config.file=/nonexistent/bgw.yml"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/bgw.yml"), "{err}");
}

#[test]
fn a_bad_web_config_is_reported_beside_a_bad_config() {
    let dir = TempDir::new("check-web");
    let cfg = dir.path().join("c.yml");
    std::fs::write(&cfg, "pools:\n  - {name: a}\n").unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        "basic_auth_users:\n  prometheus: '$2y$10$abc'\ntls_server_config:\n  cert_file: c.crt\n  key_file: c.key\n  min_versoin: TLS12\n",
    )
    .unwrap();
    let (code, out, err) = check(&[
        &config_flag(&cfg),
        &format!("--web.config.file={}", web.display()),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("c.yml")
            && err.contains("pools[0]")
            && err.contains("needs a matcher")
            && err.contains("line 2"),
        "{err}"
    );
    assert!(
        err.contains("web.yml") && err.contains("min_versoin") && err.contains("line 6"),
        "{err}"
    );
    // A certificate that cannot be read is found too, without serving.
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n",
    )
    .unwrap();
    let (code, _, err) = check(&[&format!("--web.config.file={}", web.display())]);
    assert_eq!(code, 1);
    assert!(
        err.contains("missing.crt") && err.contains("cert_file"),
        "{err}"
    );
}
