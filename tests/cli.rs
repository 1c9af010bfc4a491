//! The binary's edges: graceful shutdown, and bad input that fails loudly
//! with a message naming what is wrong.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_badgateway_exporter"))
        .args(args)
        .output()
        .expect("running the exporter");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let mut e = Exporter::start(Some("pools: []\n"), &[]);
    assert_eq!(
        http_get(&e.addr, "/healthz", Duration::from_secs(5))
            .unwrap()
            .0,
        200
    );
    e.proc.signal(libc::SIGTERM);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = e.proc.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}\n{}", e.log());
    assert!(e.log().contains("shut down"), "{}", e.log());
}

#[test]
fn bad_config_names_the_key_and_line() {
    let dir = TempDir::new("badcfg");
    let p = dir.path().join("c.yml");
    std::fs::write(
        &p,
        "pools:\n  - name: api\n    pidfile: /run/a.pid\n    sever: gunicorn\n",
    )
    .unwrap();
    let (code, err) = run(&[
        &format!("--config.file={}", p.display()),
        "--web.listen-address=127.0.0.1:0",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("sever") && err.contains("line 4") && err.contains("c.yml"),
        "{err}"
    );

    let (code, err) = run(&["--config.file=/nonexistent/bgw.yml"]);
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent/bgw.yml"), "{err}");

    std::fs::write(&p, "nginx:\n  - name: edge\n    access_log: /tmp/x.log\n    log_format: '$remote_addr $request'\n").unwrap();
    let (code, err) = run(&[
        &format!("--config.file={}", p.display()),
        "--web.listen-address=127.0.0.1:0",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("nginx[0].log_format") && err.contains("$status") && err.contains("line 4"),
        "{err}"
    );
}

#[test]
fn bad_flags_fail_with_a_message() {
    let (code, err) = run(&["--web.listen-address=nonsense"]);
    assert_ne!(code, 0);
    assert!(err.contains("--web.listen-address"), "{err}");
    let (code, err) = run(&["--collector.pools.interval=5x"]);
    assert_ne!(code, 0);
    assert!(err.contains("5x"), "{err}");
    let (code, err) = run(&["--web.telemetry-path=metrics"]);
    assert_ne!(code, 0);
    assert!(err.contains("telemetry-path"), "{err}");
}

#[test]
fn custom_telemetry_path_and_json_logs() {
    let e = Exporter::start(
        Some("pools: []\n"),
        &["--web.telemetry-path=/m", "--log.format=json"],
    );
    let (st, body) = http_get(&e.addr, "/m", Duration::from_secs(5)).unwrap();
    assert_eq!(st, 200);
    assert!(body.contains("badgateway_exporter_build_info"), "{body}");
    // The classic text format unless OpenMetrics is asked for.
    assert!(!body.contains("# EOF"), "{body}");
    let om = http_request(
        &e.addr,
        "/m",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(om.status, 200);
    assert!(String::from_utf8_lossy(&om.body)
        .trim_end()
        .ends_with("# EOF"));
    let (st, _) = http_get(&e.addr, "/metrics", Duration::from_secs(5)).unwrap();
    assert_eq!(st, 404);
    std::thread::sleep(Duration::from_millis(300));
    let first = e.log().lines().next().unwrap_or_default().to_string();
    assert!(
        first.starts_with('{') && first.contains("\"level\""),
        "{first}"
    );
}

/// A one-shot diagnosis reads its logs to the end, however many of the
/// follower's 32 MiB polls that takes (it read the first 32 MiB only:
/// found by bench/diagnose.sh, two thirds of a 48 MiB log's 502s judged).
#[test]
fn diagnose_reads_a_log_larger_than_one_poll() {
    use std::io::Write;
    let dir = TempDir::new("bigdiag");
    let log = dir.path().join("access.log");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
    let pad = "x".repeat(300);
    let (mut bytes, mut failed, mut i) = (0u64, 0u64, 0u64);
    while bytes < 40 << 20 {
        let status = if i % 50 == 0 { 502 } else { 200 };
        failed += (status == 502) as u64;
        let line = format!(
            "127.0.0.1 - - [23/Nov/2026:04:20:{:02} +0000] \"GET /{pad} HTTP/1.1\" {status} 5 \"-\" \"bench\"\n",
            i % 60
        );
        bytes += line.len() as u64;
        f.write_all(line.as_bytes()).unwrap();
        i += 1;
    }
    f.flush().unwrap();
    let cfg = dir.path().join("c.yml");
    std::fs::write(
        &cfg,
        format!(
            "kernel:\n  kmsg: false\nnginx:\n  - name: edge\n    access_log: {}\n",
            log.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_badgateway_exporter"))
        .args([
            "diagnose",
            &format!("--config.file={}", cfg.display()),
            "--format=json",
            "--since=100000h",
        ])
        .output()
        .expect("running diagnose");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let judged: u64 = report["failures"]["by_cause"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert_eq!(judged, failed, "every 502 of a {} MiB log", bytes >> 20);
}
