//! Gunicorn's control socket through the exporter, against real Gunicorn
//! 27.0.1: heartbeats per slot, Gunicorn's own counts, reloads on the
//! timeline, the socket kept out of the pool's listeners, and what a
//! non-root exporter does without it.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use badgateway_exporter::gunicorn::control::{ControlClient, ControlOptions, Stats};
use common::nginx::Nginx;
use common::*;

const T: Duration = Duration::from_secs(30);

/// Gunicorn with its control socket at DIR/ctl.sock (not the default path,
/// which every master of this user shares) and its app socket at
/// DIR/app.sock.
fn gunicorn(dir: &Path, workers: usize, extra: &[&str]) -> (Gunicorn, PathBuf) {
    let ctl = dir.join("ctl.sock");
    let mut args = vec!["--control-socket".to_string(), ctl.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let g = Gunicorn::start(GunicornOpts {
        workers,
        bind: format!("unix:{}/app.sock", dir.display()),
        pidfile: dir.join("g.pid"),
        extra: &args,
        pre_exec: None,
        venv: None,
    });
    wait_for(T, "the control socket", || {
        ControlClient::connect(&ctl, &ControlOptions::default()).is_ok()
    });
    (g, ctl)
}

fn pool_config(pidfile: &Path, extra: &str) -> String {
    format!(
        "pools:\n  - name: api\n    server: gunicorn\n    pidfile: {}\n{extra}",
        pidfile.display()
    )
}

/// `show stats`, retried over the moments around a fork when the socket
/// is being bound again.
fn stats(ctl: &Path) -> Stats {
    let start = Instant::now();
    loop {
        match ControlClient::connect(ctl, &ControlOptions::default())
            .and_then(|mut c| c.show_stats())
        {
            Ok(s) => return s,
            Err(e) if e.is_transient() && start.elapsed() < T => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("show stats: {e}"),
        }
    }
}

const POOL: [(&str, &str); 1] = [("pool", "api")];

fn heartbeat(s: &Scrape, slot: &str) -> Option<f64> {
    s.get(
        "badgateway_worker_heartbeat_age_seconds",
        &[("pool", "api"), ("slot", slot)],
    )
}

fn source_up(s: &Scrape, source: &str) -> Option<f64> {
    s.get("badgateway_source_up", &[("source", source)])
}

#[test]
fn a_stopped_workers_heartbeat_climbs_in_its_slot() {
    let dir = TempDir::new("ctl-hb");
    // An idle worker beats every --timeout/2 = 4 s.
    let (g, _) = gunicorn(dir.path(), 2, &["--timeout", "8"]);
    let e = Exporter::start(Some(&pool_config(&g.pidfile, "")), &[]);
    let s = e.wait_scrape(T, "heartbeats of both slots", |s| {
        heartbeat(s, "0").is_some() && heartbeat(s, "1").is_some()
    });
    assert_eq!(source_up(&s, "control/api"), Some(1.0));
    // The timeout the heartbeats are judged against, from `show config`.
    assert_eq!(
        s.get("badgateway_pool_worker_timeout_seconds", &POOL),
        Some(8.0),
        "{}",
        s.text
    );
    for slot in ["0", "1"] {
        let hb = heartbeat(&s, slot).unwrap();
        assert!((0.0..5.0).contains(&hb), "slot {slot}: {hb}");
    }
    // Which slot the victim has: the one whose start time is its own.
    let victim = g.worker_pids()[0];
    let stat = std::fs::read_to_string(format!("/proc/{victim}/stat")).unwrap();
    let start_ticks: f64 = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    let btime: f64 = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .unwrap()
        .parse()
        .unwrap();
    let started = btime + start_ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let slot_of = |s: &Scrape| -> String {
        s.find("badgateway_worker_start_time_seconds", &POOL)
            .into_iter()
            .find(|(_, v)| (v - started).abs() < 0.02)
            .map(|(l, _)| l["slot"].clone())
            .unwrap_or_else(|| panic!("no slot started at {started}\n{}", s.text))
    };
    let slot = slot_of(&s);
    let other = if slot == "0" { "1" } else { "0" };

    unsafe { libc::kill(victim, libc::SIGSTOP) };
    let mut seen = Vec::new();
    let start = Instant::now();
    // Until the master kills it at its 8 s timeout.
    while g.worker_pids().contains(&victim) {
        let s = e.scrape();
        if let Some(hb) = heartbeat(&s, &slot) {
            if s.get(
                "badgateway_worker_start_time_seconds",
                &[("pool", "api"), ("slot", &slot)],
            )
            .is_some_and(|v| (v - started).abs() < 0.02)
            {
                seen.push(hb);
            }
        }
        if let Some(hb) = heartbeat(&s, other) {
            assert!(
                hb < 6.0,
                "a running worker beats every 4 s: {hb}\n{}",
                s.text
            );
        }
        assert!(start.elapsed() < T, "never killed: {seen:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        seen.windows(2).all(|p| p[1] >= p[0] - 0.01),
        "the stopped worker's heartbeat age went down: {seen:?}"
    );
    let top = seen.iter().cloned().fold(0.0, f64::max);
    assert!(top > 5.5 && top < 12.0, "climbed to {top}: {seen:?}");
    // Its replacement takes the slot, with a fresh heartbeat.
    g.wait_workers(2, T);
    e.wait_scrape(T, "the replacement's heartbeat", |s| {
        s.get(
            "badgateway_worker_start_time_seconds",
            &[("pool", "api"), ("slot", &slot)],
        )
        .is_some_and(|v| v > started + 1.0)
            && heartbeat(s, &slot).is_some_and(|hb| hb < 5.0)
    });
}

#[test]
fn gunicorns_own_counts_match_its_show_stats() {
    let dir = TempDir::new("ctl-stats");
    let (g, ctl) = gunicorn(dir.path(), 2, &["--max-requests", "3"]);
    let e = Exporter::start(Some(&pool_config(&g.pidfile, "")), &[]);
    let app = format!("unix:{}/app.sock", dir.path().display());
    for _ in 0..10 {
        unix_get(&app, "/");
    }
    g.wait_workers(2, T);
    let theirs = |s: &Scrape| {
        (
            s.get("badgateway_gunicorn_workers_spawned_total", &POOL),
            s.get("badgateway_gunicorn_workers_killed_total", &POOL),
            s.get("badgateway_gunicorn_reloads_total", &POOL),
        )
    };
    let mut last = None;
    let s = e.wait_scrape(
        T,
        "the exporter's counts equal show stats twice in a row",
        |s| {
            let st = stats(&ctl);
            let want = (
                Some(st.workers_spawned as f64),
                Some(st.workers_killed as f64),
                Some(st.reloads as f64),
            );
            let ok = theirs(s) == want && last == Some(want);
            last = Some(want);
            ok
        },
    );
    let (spawned, _, reloads) = theirs(&s);
    // Two first workers and at least two recycled ones.
    assert!(spawned.unwrap() >= 4.0, "{}", s.text);
    assert_eq!(reloads, Some(0.0));
    // A reload counts; the old workers are sent SIGTERM (counted as kills).
    let before = stats(&ctl);
    g.proc.signal(libc::SIGHUP);
    let s = e.wait_scrape(T, "the reload counted", |s| {
        s.get("badgateway_gunicorn_reloads_total", &POOL) == Some(1.0)
            && s.get("badgateway_gunicorn_workers_killed_total", &POOL)
                >= Some(before.workers_killed as f64 + 2.0)
    });
    let st = stats(&ctl);
    assert_eq!(st.reloads, 1);
    assert!(
        s.get("badgateway_gunicorn_workers_spawned_total", &POOL)
            .unwrap()
            <= st.workers_spawned as f64
    );
}

/// GET over a unix socket; returns the status.
fn unix_get(app: &str, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(app.trim_start_matches("unix:")).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    buf.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_reload_without_a_log_file_counts_the_old_workers_exits_as_reload() {
    // With the proc connector the exits come as they happen, and are
    // judged 1.5 s later: with a pool cycle every 10 s, only the `show
    // stats` that a fork of the master triggers puts the reload on the
    // timeline in time. Without it the pool cycle sees the exits, and the
    // reload in the same cycle.
    for (proc_events, interval) in [("true", "10s"), ("false", "300ms")] {
        let dir = TempDir::new("ctl-reload");
        let (g, _) = gunicorn(dir.path(), 2, &[]);
        let flags = [
            format!("--collector.proc-events={proc_events}"),
            format!("--collector.pools.interval={interval}"),
        ];
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let e = Exporter::start(Some(&pool_config(&g.pidfile, "")), &flags);
        e.wait_scrape(T, "the control socket answering", |s| {
            source_up(s, "control/api") == Some(1.0) && heartbeat(s, "1").is_some()
        });
        let old = g.worker_pids();
        g.proc.signal(libc::SIGHUP);
        wait_for(T, "new workers after the reload", || {
            let now = g.worker_pids();
            now.len() == 2 && now.iter().all(|p| !old.contains(p))
        });
        let s = e.wait_scrape(T, "two exits counted", |s| {
            s.sum("badgateway_worker_exits_total", &POOL) >= 2.0
        });
        // Give a wrong third judgement the time to show.
        std::thread::sleep(Duration::from_secs(2));
        let s2 = e.scrape();
        let reason = |r| {
            s2.get(
                "badgateway_worker_exits_total",
                &[("pool", "api"), ("reason", r)],
            )
            .unwrap()
        };
        assert_eq!(
            (
                reason("reload"),
                s2.sum("badgateway_worker_exits_total", &POOL)
            ),
            (2.0, 2.0),
            "proc-events={proc_events}\n{}\n--- log ---\n{}",
            s.text,
            e.log()
        );
        assert_eq!(
            s2.get("badgateway_gunicorn_reloads_total", &POOL),
            Some(1.0)
        );
    }
}

#[test]
fn the_control_socket_is_no_listener_of_the_pool() {
    let dir = TempDir::new("ctl-nolisten");
    let d = dir.path();
    let (g, ctl) = gunicorn(d, 1, &[]);
    let app = format!("unix:{}/app.sock", d.display());
    let ctl_up = format!("unix:{}", ctl.display());
    let locations = format!(
        r#"
        location /app/ {{ proxy_pass http://{app}:/; }}
        location /ctl/ {{ proxy_pass http://{ctl_up}:/; }}
        "#
    );
    let nginx = Nginx::start(d, &locations);
    let config = format!("{}{}", pool_config(&g.pidfile, ""), nginx.config("edge"));
    let e = Exporter::start(Some(&config), &[]);
    e.wait_scrape(T, "the pool's listeners sampled", |s| {
        s.get(
            "badgateway_pool_listen_queue_limit",
            &[("pool", "api"), ("listener", &app)],
        )
        .is_some()
            && source_up(s, "control/api") == Some(1.0)
    });
    assert_eq!(nginx.get("/app/"), 200);
    // The control socket answers HTTP by closing: a 502 for nginx.
    assert_eq!(nginx.get("/ctl/"), 502);
    let s = e.wait_scrape(T, "both upstreams in the access log", |s| {
        s.find("badgateway_nginx_responses_total", &[("upstream", &ctl_up)])
            .len()
            == 1
            && s.find("badgateway_nginx_upstream_pool", &[("upstream", &app)])
                .len()
                == 1
    });
    let listeners: BTreeSet<String> = s
        .find("badgateway_pool_listen_queue_limit", &POOL)
        .into_iter()
        .map(|(l, _)| l["listener"].clone())
        .collect();
    assert_eq!(listeners, BTreeSet::from([app.clone()]), "{}", s.text);
    assert_eq!(
        s.get(
            "badgateway_nginx_upstream_pool",
            &[("log", "edge"), ("upstream", &app), ("pool", "api")]
        ),
        Some(1.0)
    );
    assert!(
        s.find("badgateway_nginx_upstream_pool", &[("upstream", &ctl_up)])
            .is_empty(),
        "{}",
        s.text
    );
    // Still answering after nginx's HTTP on it.
    assert_eq!(stats(&ctl).reloads, 0);
}

/// As nobody, the exporter can neither read the master's fds nor open its
/// mode-0600 control socket: `control/api` is down, the rest serves.
#[test]
fn a_non_root_exporter_degrades_through_source_up() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("ctl-nonroot");
    let (g, ctl) = gunicorn(dir.path(), 2, &[]);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&g.pidfile, std::fs::Permissions::from_mode(0o644)).unwrap();
    // Found by the search (the master's fds are unreadable), or named.
    for extra in [
        String::new(),
        format!("    control_socket: {}\n", ctl.display()),
    ] {
        let e = Exporter::start_as(Some(&pool_config(&g.pidfile, &extra)), &[], Some(65534));
        let s = e.wait_scrape(T, "the pool up, its control socket down", |s| {
            s.get("badgateway_pool_workers", &POOL) == Some(2.0)
                && source_up(s, "control/api") == Some(0.0)
        });
        // Never up: not available to this exporter by design, not broken,
        // so BadGatewaySourceBroken stays quiet.
        assert_eq!(
            s.get("badgateway_source_ever_up", &[("source", "control/api")]),
            Some(0.0),
            "{}",
            s.text
        );
        assert!(
            s.find("badgateway_worker_heartbeat_age_seconds", &POOL)
                .is_empty()
                && s.find("badgateway_pool_worker_timeout_seconds", &POOL)
                    .is_empty()
                && s.find("badgateway_gunicorn_workers_spawned_total", &POOL)
                    .is_empty(),
            "{}",
            s.text
        );
        assert_eq!(
            s.find(
                "badgateway_worker_memory_bytes",
                &[("pool", "api"), ("type", "rss")]
            )
            .len(),
            2
        );
        // One warning for the transition, not one a cycle.
        std::thread::sleep(Duration::from_secs(2));
        let log = e.log();
        let warnings = log
            .lines()
            .filter(|l| l.contains("source=control/api") && l.contains("cannot be read"))
            .collect::<Vec<_>>();
        assert_eq!(warnings.len(), 1, "{log}");
        let why = if extra.is_empty() {
            format!("Permission Denied: /proc/{}/fd", g.master_pid())
        } else {
            format!("{}: permission denied", ctl.display())
        };
        assert!(warnings[0].contains(&why), "{}", warnings[0]);
    }
}
