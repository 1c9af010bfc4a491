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

/// The standard process families on a real scrape, on each of two listen
/// addresses served at once.
#[test]
fn two_listen_addresses_serve_at_once_with_the_process_metrics() {
    let second = format!("127.0.0.1:{}", free_port());
    let e = Exporter::start(
        Some("pools: []\n"),
        &[&format!("--web.listen-address={second}")],
    );
    for addr in [&e.addr, &second] {
        let (st, body) = http_get(addr, "/metrics", Duration::from_secs(5)).unwrap();
        assert_eq!(st, 200, "{addr}: {body}");
        assert!(body.contains("badgateway_exporter_build_info{"), "{addr}");
    }
    let s = e.wait_scrape(Duration::from_secs(10), "the process families", |s| {
        s.get("process_resident_memory_bytes", &[]).is_some()
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let get = |n| {
        s.get(n, &[])
            .unwrap_or_else(|| panic!("no {n}\n{}", s.text))
    };
    let started = get("process_start_time_seconds");
    assert!(started <= now + 1.0 && started > now - 60.0, "{started}");
    let rss = get("process_resident_memory_bytes");
    assert_eq!(rss, get("badgateway_exporter_resident_memory_bytes"));
    assert!(rss > 0.0 && get("process_virtual_memory_bytes") >= rss);
    assert_eq!(
        get("process_cpu_seconds_total"),
        get("badgateway_exporter_cpu_seconds_total")
    );
    // Two listening sockets at least, and the limit of the test's shell.
    assert!(get("process_open_fds") >= 2.0);
    assert!(get("process_max_fds") >= get("process_open_fds"));
    // Read on the exporter's own tick, not by the scrape.
    assert!(
        s.get(
            "badgateway_collector_cycles_total",
            &[("collector", "process")]
        )
        .unwrap()
            >= 1.0
    );
}

/// systemd's socket activation, by systemd's own tool: it listens, and on
/// the first connection starts the exporter with the socket as fd 3.
#[test]
fn serves_on_the_socket_systemd_passes() {
    let dir = TempDir::new("socket-activation");
    let config = dir.path().join("c.yml");
    std::fs::write(&config, "pools: []\n").unwrap();
    let log = dir.path().join("exporter.log");
    let addr = format!("127.0.0.1:{}", free_port());
    // A --web.listen-address beside the flag is not used.
    let unused = format!("127.0.0.1:{}", free_port());
    let _p = spawn(
        "systemd-socket-activate",
        Command::new("systemd-socket-activate")
            .args(["--listen", &addr, env!("CARGO_BIN_EXE_badgateway_exporter")])
            .arg("--web.systemd-socket")
            .arg(format!("--web.listen-address={unused}"))
            .arg(format!("--config.file={}", config.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    wait_for(Duration::from_secs(20), "/healthz on the socket", || {
        matches!(
            http_get(&addr, "/healthz", Duration::from_secs(2)),
            Ok((200, _))
        )
    });
    let (st, body) = http_get(&addr, "/metrics", Duration::from_secs(5)).unwrap();
    assert_eq!(st, 200);
    assert!(body.contains("badgateway_exporter_build_info{"), "{body}");
    assert!(http_get(&unused, "/healthz", Duration::from_secs(2)).is_err());
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains(&format!("address={addr}")), "{said}");

    // Without systemd, the flag says what is missing.
    let (code, err) = run(&["--web.systemd-socket"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("LISTEN_PID and LISTEN_FDS are not set"),
        "{err}"
    );
}

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_badgateway_exporter"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// Each subcommand lists the flags it uses, and no other.
#[test]
fn subcommands_list_only_their_flags() {
    let diagnose = help(&["diagnose"]);
    for used in [
        "--since",
        "--config.file",
        "--path.procfs",
        "--nginx.access-log",
    ] {
        assert!(diagnose.contains(used), "diagnose --help lacks {used}");
    }
    for unused in ["--web.", "--collector."] {
        assert!(!diagnose.contains(unused), "diagnose --help lists {unused}");
    }
    let probe = help(&["healthcheck"]);
    assert!(probe.contains("--web.listen-address") && probe.contains("--web.config.file"));
    for unused in ["--config.file", "--path.", "--nginx.", "--log."] {
        assert!(!probe.contains(unused), "healthcheck --help lists {unused}");
    }
    let check = help(&["check-config"]);
    assert!(check.contains("--config.file") && check.contains("--web.config.file"));
    assert!(!check.contains("--path.") && !check.contains("--collector."));
    let serve = help(&[]);
    for flag in [
        "--web.systemd-socket",
        "--collector.pools.interval",
        "--version",
    ] {
        assert!(serve.contains(flag), "--help lacks {flag}");
    }
    // A server flag given to a subcommand is refused, not silently dropped.
    let (code, err) = run(&["--config.file=/x.yml", "diagnose"]);
    assert_ne!(code, 0);
    assert!(err.contains("cannot be used with"), "{err}");
}

/// `--version` as the Go exporters print it, with the revision this test
/// was built from.
#[test]
fn version_names_the_revision_and_toolchain() {
    let out = Command::new(env!("CARGO_BIN_EXE_badgateway_exporter"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("git (scripts/test.sh builds from a clone)");
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    let (revision, branch) = (
        git(&["rev-parse", "HEAD"]),
        git(&["rev-parse", "--abbrev-ref", "HEAD"]),
    );
    assert_eq!(revision.len(), 40, "{revision}");
    let first = format!(
        "badgateway_exporter, version {} (branch: {branch}, revision: {revision})",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(text.lines().next(), Some(first.as_str()), "{text}");
    let rustc = Command::new("rustc").arg("--version").output().unwrap();
    let rustc = String::from_utf8(rustc.stdout).unwrap();
    let rustc = rustc.split_whitespace().nth(1).unwrap();
    assert!(
        text.contains(&format!("  rust version:     {rustc}\n")),
        "{text}"
    );
    assert!(text.contains("  build date:       2"), "{text}");
    // The same in the build_info series.
    let e = Exporter::start(Some("pools: []\n"), &[]);
    let s = e.scrape();
    let want = [
        ("version", env!("CARGO_PKG_VERSION")),
        ("revision", revision.as_str()),
        ("branch", branch.as_str()),
        ("rustversion", rustc),
    ];
    assert_eq!(
        s.get("badgateway_exporter_build_info", &want),
        Some(1.0),
        "{}",
        s.text
    );
}
