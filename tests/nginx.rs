//! Real nginx in front of real Gunicorn: each classic cause of a 502/504
//! is produced for real and must show in the scrape with exact counts.
//! Also: log rotation under load (rename+USR1, copytruncate, delete).

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(30);

const LOG_FORMAT: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time" uht="$upstream_header_time" urt="$upstream_response_time" ua="$upstream_addr" us="$upstream_status""#;

/// nginx writing `access.log` in LOG_FORMAT, with `locations` in its server.
fn start_nginx(dir: &Path, locations: &str) -> Nginx {
    Nginx::start(
        dir,
        &format!(
            "log_format upstreamlog '{LOG_FORMAT}';\n    access_log {}/access.log upstreamlog;",
            dir.display()
        ),
        &format!("proxy_next_upstream off;\n{locations}"),
    )
}

/// The exporter's config for the nginx of `start_nginx`.
fn nginx_config(nginx: &Nginx, name: &str) -> String {
    format!(
        "nginx:\n  - name: {name}\n    access_log: {d}/access.log\n    error_log: {d}/error.log\n    log_format: |-\n      log_format upstreamlog '{f}';\n",
        d = nginx.dir.display(),
        f = LOG_FORMAT
    )
}

fn unix_gunicorn(dir: &Path, name: &str, workers: usize, extra: &[&str]) -> Gunicorn {
    Gunicorn::start(GunicornOpts {
        workers,
        bind: format!("unix:{}/{name}.sock", dir.display()),
        pidfile: dir.join(format!("{name}.pid")),
        extra,
        pre_exec: None,
        venv: None,
    })
}

fn failures(s: &Scrape, upstream: &str, reason: &str, phase: &str) -> f64 {
    s.get(
        "badgateway_nginx_upstream_failures_total",
        &[
            ("log", "edge"),
            ("upstream", upstream),
            ("reason", reason),
            ("phase", phase),
        ],
    )
    .unwrap_or(0.0)
}

fn responses(s: &Scrape, upstream: &str, status: &str) -> f64 {
    s.get(
        "badgateway_nginx_responses_total",
        &[("log", "edge"), ("upstream", upstream), ("status", status)],
    )
    .unwrap_or(0.0)
}

#[test]
fn each_upstream_failure_gives_its_reason_with_exact_counts() {
    let tmp = TempDir::new("nginx502");
    let d = tmp.path();
    let backlog = unix_gunicorn(d, "backlog", 1, &["--backlog", "1"]);
    let killed = unix_gunicorn(d, "killed", 1, &[]);
    let slow = unix_gunicorn(d, "slow", 2, &[]);
    let stopped_port = free_port();
    let stopped = Gunicorn::start(GunicornOpts {
        workers: 1,
        bind: format!("127.0.0.1:{stopped_port}"),
        pidfile: d.join("stopped.pid"),
        extra: &[],
        pre_exec: None,
        venv: None,
    });
    let u = |n: &str| format!("unix:{}/{n}.sock", d.display());
    let locations = format!(
        r#"
        location /missing/ {{ proxy_pass http://{missing}:/; }}
        location /stopped/ {{ proxy_pass http://127.0.0.1:{stopped_port}/; }}
        location /backlog/ {{ proxy_pass http://{backlog}:/; }}
        location /killed/ {{ proxy_pass http://{killed}:/; }}
        location /timeout/ {{ proxy_pass http://{slow}:/; proxy_read_timeout 1s; }}
        location /ok/ {{ proxy_pass http://{slow}:/; }}
        "#,
        missing = u("missing"),
        backlog = u("backlog"),
        killed = u("killed"),
        slow = u("slow"),
    );
    let nginx = start_nginx(d, &locations);
    let config = format!(
        "pools:\n  - name: slowpool\n    server: gunicorn\n    pidfile: {}\n  - name: tcppool\n    server: gunicorn\n    pidfile: {}\n{}",
        slow.pidfile.display(),
        stopped.pidfile.display(),
        nginx_config(&nginx, "edge")
    );
    let e = Exporter::start(Some(&config), &[]);
    e.wait_scrape(T, "the nginx source to run", |s| {
        s.get(
            "badgateway_log_lines_total",
            &[("log", "edge"), ("file", "access")],
        )
        .is_some()
    });

    // Healthy traffic first: 200s through the upstream, no failures.
    for _ in 0..5 {
        assert_eq!(nginx.get("/ok/"), 200);
    }
    e.wait_scrape(T, "5 OKs", |s| responses(s, &u("slow"), "200") == 5.0);
    // The unix socket nginx proxies to is the one the pool's master holds.
    e.wait_scrape(T, "upstream tied to its pool", |s| {
        s.get(
            "badgateway_nginx_upstream_pool",
            &[
                ("log", "edge"),
                ("upstream", &u("slow")),
                ("pool", "slowpool"),
            ],
        ) == Some(1.0)
    });

    // 1. Missing socket.
    for _ in 0..3 {
        assert_eq!(nginx.get("/missing/"), 502);
    }
    e.wait_scrape(T, "socket_missing x3", |s| {
        failures(s, &u("missing"), "socket_missing", "connect") == 3.0
            && responses(s, &u("missing"), "502") == 3.0
    });

    // 2. A stopped master (and its workers): nothing listens on the port.
    assert_eq!(nginx.get("/stopped/"), 200);
    e.wait_scrape(T, "TCP upstream tied to its pool", |s| {
        s.get(
            "badgateway_nginx_upstream_pool",
            &[
                ("log", "edge"),
                ("upstream", &format!("127.0.0.1:{stopped_port}")),
                ("pool", "tcppool"),
            ],
        ) == Some(1.0)
    });
    unsafe {
        libc::kill(-stopped.master_pid(), libc::SIGKILL);
    }
    drop(stopped);
    wait_for(T, "the port to close", || {
        std::net::TcpStream::connect(("127.0.0.1", stopped_port)).is_err()
    });
    for _ in 0..2 {
        assert_eq!(nginx.get("/stopped/"), 502);
    }
    let stopped_up = format!("127.0.0.1:{stopped_port}");
    e.wait_scrape(T, "connection_refused x2", |s| {
        failures(s, &stopped_up, "connection_refused", "connect") == 2.0
            && responses(s, &stopped_up, "502") == 2.0
            && responses(s, &stopped_up, "200") == 1.0
    });

    // 3. A full listen queue: one sync worker, backlog 1, concurrent slow
    // requests. The ones the queue cannot hold fail at connect (EAGAIN).
    let statuses: Vec<u16> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|_| sc.spawn(|| nginx.get("/backlog/sleep?s=1.5")))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let full = statuses.iter().filter(|s| **s == 502).count() as f64;
    assert!(full >= 1.0, "the queue should overflow: {statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count() as f64 + full,
        8.0,
        "{statuses:?}"
    );
    e.wait_scrape(T, "backlog_full counted exactly", |s| {
        failures(s, &u("backlog"), "backlog_full", "connect") == full
            && responses(s, &u("backlog"), "502") == full
    });
    drop(backlog);

    // 4. A worker killed mid-request.
    let worker = killed.worker_pids()[0];
    let h = std::thread::spawn({
        let addr = nginx.addr.clone();
        move || {
            http_get(&addr, "/killed/sleep?s=10", Duration::from_secs(30))
                .unwrap()
                .0
        }
    });
    std::thread::sleep(Duration::from_millis(800));
    unsafe {
        libc::kill(worker, libc::SIGKILL);
    }
    assert_eq!(h.join().unwrap(), 502);
    e.wait_scrape(T, "premature_close x1", |s| {
        failures(s, &u("killed"), "premature_close", "read_header") == 1.0
            && responses(s, &u("killed"), "502") == 1.0
    });

    // 5. An upstream timeout: 504.
    for _ in 0..2 {
        assert_eq!(nginx.get("/timeout/sleep?s=3"), 504);
    }
    let s = e.wait_scrape(T, "timeout x2", |s| {
        failures(s, &u("slow"), "timeout", "read_header") == 2.0
            && responses(s, &u("slow"), "504") == 2.0
    });

    // Nothing else was classified, and every line parsed.
    let total_failures = s.sum(
        "badgateway_nginx_upstream_failures_total",
        &[("log", "edge")],
    );
    assert_eq!(total_failures, 3.0 + 2.0 + full + 1.0 + 2.0, "{}", s.text);
    assert_eq!(
        s.sum("badgateway_log_parse_errors_total", &[("log", "edge")]),
        0.0,
        "{}",
        s.text
    );
    // Attempts carry the same story: nginx recorded its generated statuses.
    assert_eq!(
        s.get(
            "badgateway_nginx_upstream_attempts_total",
            &[
                ("log", "edge"),
                ("upstream", &u("missing")),
                ("status", "502")
            ]
        ),
        Some(3.0)
    );
    // Those 502s were nginx's, not the backend's.
    assert!(s
        .find(
            "badgateway_nginx_upstream_backend_errors_total",
            &[("log", "edge")]
        )
        .is_empty());
    // The response-time histogram saw every request through /timeout.
    let timeout_count = s
        .get(
            "badgateway_nginx_response_seconds_count",
            &[("log", "edge"), ("upstream", &u("slow"))],
        )
        .unwrap();
    assert_eq!(timeout_count, 5.0 + 2.0);
    drop(nginx);
    drop(killed);
    drop(slow);
}

/// Lines written at a few thousand a second while the access log is rotated
/// three ways; the count read must equal the count written, exactly.
#[test]
fn rotation_under_load_loses_and_duplicates_nothing() {
    let tmp = TempDir::new("rotate");
    let d = tmp.path();
    let nginx = start_nginx(d, "location / { return 204; }");
    let e = Exporter::start(Some(&nginx_config(&nginx, "edge")), &[]);
    let lines = |s: &Scrape| {
        s.get(
            "badgateway_log_lines_total",
            &[("log", "edge"), ("file", "access")],
        )
        .unwrap_or(0.0)
    };
    e.wait_scrape(T, "the nginx source to run", |s| {
        s.get(
            "badgateway_log_lines_total",
            &[("log", "edge"), ("file", "access")],
        )
        .is_some()
    });

    let sent = Arc::new(AtomicU64::new(0));
    let paused = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (sent, paused, stop, addr) = (
                sent.clone(),
                paused.clone(),
                stop.clone(),
                nginx.addr.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if paused.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    if let Ok((204, _)) = http_get(&addr, "/", Duration::from_secs(5)) {
                        sent.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    let log = d.join("access.log");
    let usr1 = || nginx.proc.signal(libc::SIGUSR1);
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(700));

    // logrotate's default: rename, then nginx reopens on USR1 a bit later.
    std::fs::rename(&log, d.join("access.log.1")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    usr1();
    std::thread::sleep(Duration::from_millis(700));

    // copytruncate loses whatever is written between the last read and the
    // truncate, by its nature; pause the writers and let the exporter
    // catch up so that the exact count is meaningful.
    paused.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(100));
    let want = sent.load(Ordering::SeqCst) as f64;
    e.wait_scrape(T, "the exporter to catch up before copytruncate", |s| {
        lines(s) == want
    });
    std::fs::copy(&log, d.join("access.log.2")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    paused.store(false, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(700));

    // Delete, then nginx recreates the file on USR1.
    std::fs::remove_file(&log).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    usr1();
    std::thread::sleep(Duration::from_millis(700));

    stop.store(true, Ordering::SeqCst);
    for h in load {
        h.join().unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let written = sent.load(Ordering::SeqCst) as f64;
    let rate = written / elapsed;
    eprintln!("rotation test: {written} lines at {rate:.0} lines/s");
    assert!(
        rate > 1000.0,
        "load too light to test anything: {rate:.0} lines/s"
    );
    let s = e.wait_scrape(T, "every line counted", |s| lines(s) >= written);
    std::thread::sleep(Duration::from_millis(500));
    let s2 = e.scrape();
    assert_eq!(
        lines(&s2),
        written,
        "exactly once: {rate:.0} lines/s\n{}",
        s.text
    );
    assert!(
        s2.get("badgateway_log_rotations_total", &[("log", "edge")])
            .unwrap()
            >= 3.0,
        "{}",
        s2.text
    );
    assert_eq!(
        s2.sum("badgateway_log_parse_errors_total", &[("log", "edge")]),
        0.0
    );
    assert_eq!(
        s2.get(
            "badgateway_nginx_responses_total",
            &[("log", "edge"), ("upstream", "-"), ("status", "204")]
        ),
        Some(written)
    );
}
