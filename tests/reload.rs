//! SIGHUP in the real binary: a new config applies to the running sources
//! and keeps what did not change, counters included; a bad one changes
//! nothing, is logged once, and the exporter keeps serving.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

fn gunicorn(dir: &TempDir, name: &str, workers: usize) -> Gunicorn {
    Gunicorn::start(GunicornOpts {
        workers,
        bind: format!("127.0.0.1:{}", free_port()),
        pidfile: dir.path().join(format!("{name}.pid")),
        extra: &[],
        pre_exec: None,
        venv: None,
    })
}

fn pool(name: &str, pidfile: &Path) -> String {
    format!(
        "  - name: {name}\n    server: gunicorn\n    pidfile: {}\n",
        pidfile.display()
    )
}

fn nginx(name: &str, access_log: &Path) -> String {
    format!(
        "nginx:\n  - name: {name}\n    access_log: {}\n    log_format: combined\n",
        access_log.display()
    )
}

fn append_lines(path: &Path, n: usize, status: u16) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for i in 0..n {
        writeln!(
            f,
            r#"127.0.0.1 - - [23/Nov/2026:04:20:01 +0000] "GET /r/{i} HTTP/1.1" {status} 5 "-" "curl""#
        )
        .unwrap();
    }
}

/// Rewrite the exporter's config file and send it SIGHUP.
fn reload(e: &Exporter, config: &str) {
    std::fs::write(e.dir.path().join("config.yml"), config).unwrap();
    e.proc.signal(libc::SIGHUP);
}

fn count(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(what)).count()
}

fn access_lines(s: &Scrape, log: &str) -> Option<f64> {
    s.get(
        "badgateway_log_lines_total",
        &[("log", log), ("file", "access")],
    )
}

#[test]
fn counters_survive_a_reload_that_adds_a_pool_and_removed_sources_go() {
    let dir = TempDir::new("reload");
    let access = dir.path().join("access.log");
    std::fs::write(&access, "").unwrap();
    let a = gunicorn(&dir, "a", 2);
    let first = format!(
        "pools:\n{}{}",
        pool("a", &a.pidfile),
        nginx("edge", &access)
    );
    let e = Exporter::start(Some(&first), &[]);
    e.wait_scrape(T, "pool a with its 2 workers", |s| {
        s.get("badgateway_pool_workers", &[("pool", "a")]) == Some(2.0)
    });
    // Counters to keep: 40 access lines, and a worker killed and replaced.
    append_lines(&access, 30, 200);
    append_lines(&access, 10, 502);
    unsafe {
        libc::kill(a.worker_pids()[0], libc::SIGKILL);
    }
    let before = e.wait_scrape(T, "the lines counted and the worker replaced", |s| {
        access_lines(s, "edge") == Some(40.0)
            && s.get("badgateway_worker_spawns_total", &[("pool", "a")]) >= Some(1.0)
            && s.sum("badgateway_worker_exits_total", &[("pool", "a")]) >= 1.0
            && s.get("badgateway_pool_workers", &[("pool", "a")]) == Some(2.0)
    });
    let spawns = before.get("badgateway_worker_spawns_total", &[("pool", "a")]);
    let exits = before.sum("badgateway_worker_exits_total", &[("pool", "a")]);
    let responses = before.sum(
        "badgateway_nginx_responses_total",
        &[("log", "edge"), ("status", "502")],
    );
    assert_eq!(responses, 10.0);

    // Reload with a second pool.
    let b = gunicorn(&dir, "b", 3);
    let second = format!(
        "pools:\n{}{}{}",
        pool("a", &a.pidfile),
        pool("b", &b.pidfile),
        nginx("edge", &access)
    );
    reload(&e, &second);
    let after = e.wait_scrape(T, "pool b after the reload", |s| {
        s.get("badgateway_pool_workers", &[("pool", "b")]) == Some(3.0)
    });
    assert_eq!(
        after.get("badgateway_worker_spawns_total", &[("pool", "a")]),
        spawns,
        "pool a's spawns survive the reload"
    );
    assert_eq!(
        after.sum("badgateway_worker_exits_total", &[("pool", "a")]),
        exits
    );
    assert_eq!(
        after.get("badgateway_pool_workers", &[("pool", "a")]),
        Some(2.0)
    );
    assert_eq!(access_lines(&after, "edge"), Some(40.0));
    assert_eq!(
        after.sum(
            "badgateway_nginx_responses_total",
            &[("log", "edge"), ("status", "502")]
        ),
        10.0
    );
    // The same follower: the next lines are counted once, none re-read.
    append_lines(&access, 5, 200);
    e.wait_scrape(T, "5 more lines", |s| access_lines(s, "edge") == Some(45.0));
    // A pool new in the config counts from the reload: its workers were
    // there before, so none is a spawn.
    assert_eq!(
        after.get("badgateway_worker_spawns_total", &[("pool", "b")]),
        Some(0.0)
    );
    assert_eq!(count(&e.log(), "config reloaded"), 1, "{}", e.log());

    // Remove pool a and the nginx: they stop being exported, b stays.
    reload(&e, &format!("pools:\n{}", pool("b", &b.pidfile)));
    let s = e.wait_scrape(T, "pool a and nginx edge gone", |s| {
        s.find("badgateway_pool_up", &[("pool", "a")]).is_empty()
            && access_lines(s, "edge").is_none()
    });
    assert_eq!(
        s.get("badgateway_pool_workers", &[("pool", "b")]),
        Some(3.0)
    );
    for source in ["pool/a", "smaps/a", "nginx/edge/access"] {
        assert!(
            s.find("badgateway_source_up", &[("source", source)])
                .is_empty(),
            "{source} still exported:\n{}",
            s.text
        );
    }
    assert_eq!(
        s.get("badgateway_source_up", &[("source", "pool/b")]),
        Some(1.0)
    );
    // A log added back starts at its end: the 45 lines are not read again.
    reload(
        &e,
        &format!(
            "pools:\n{}{}",
            pool("b", &b.pidfile),
            nginx("edge", &access)
        ),
    );
    e.wait_scrape(T, "nginx edge back, from the end of its log", |s| {
        access_lines(s, "edge") == Some(0.0)
    });
    append_lines(&access, 2, 200);
    e.wait_scrape(T, "2 new lines", |s| access_lines(s, "edge") == Some(2.0));
}

#[test]
fn an_nginx_added_by_a_reload_starts_its_source() {
    // No nginx at start: the nginx source is idle until a reload gives it
    // a log.
    let dir = TempDir::new("reload-nginx");
    let access = dir.path().join("access.log");
    std::fs::write(&access, "").unwrap();
    let e = Exporter::start(Some("pools: []\n"), &[]);
    let s = e.scrape();
    assert!(s
        .find(
            "badgateway_collector_cycles_total",
            &[("collector", "nginx")]
        )
        .is_empty());
    reload(&e, &nginx("late", &access));
    e.wait_scrape(T, "the nginx source started", |s| {
        access_lines(s, "late") == Some(0.0)
    });
    append_lines(&access, 3, 504);
    e.wait_scrape(T, "its lines counted", |s| {
        access_lines(s, "late") == Some(3.0)
    });
}

#[test]
fn a_bad_config_on_sighup_keeps_the_old_one_and_is_logged_once() {
    let dir = TempDir::new("reload-bad");
    let a = gunicorn(&dir, "a", 2);
    let good = format!("pools:\n{}", pool("a", &a.pidfile));
    let mut e = Exporter::start(Some(&good), &[]);
    e.wait_scrape(T, "pool a", |s| {
        s.get("badgateway_pool_workers", &[("pool", "a")]) == Some(2.0)
    });
    let refused = "the config is invalid; keeping the previous one";

    // A regex that does not compile, sent twice.
    let bad_regex = format!("{good}  - name: b\n    cmdline: 'gunicorn: master [('\n");
    reload(&e, &bad_regex);
    wait_for(T, "the refusal in the log", || {
        count(&e.log(), refused) == 1
    });
    e.proc.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_secs(1));
    let log = e.log();
    assert_eq!(count(&log, refused), 1, "logged once:\n{log}");
    let line = log.lines().find(|l| l.contains(refused)).unwrap();
    assert!(
        line.contains("config.yml") && line.contains("pools[1].cmdline") && line.contains("line 6"),
        "{line}"
    );
    // Still serving the old config.
    let s = e.scrape();
    assert_eq!(
        s.get("badgateway_pool_workers", &[("pool", "a")]),
        Some(2.0)
    );
    assert!(s.find("badgateway_pool_up", &[("pool", "b")]).is_empty());
    assert!(e.proc.is_running());

    // Another mistake is news: logged too. A log format nginx's parser
    // cannot follow used to fail only at startup.
    let bad_format = format!(
        "{good}nginx:\n  - name: edge\n    access_log: /tmp/x.log\n    log_format: '$remote_addr $request'\n"
    );
    reload(&e, &bad_format);
    wait_for(T, "the second refusal", || count(&e.log(), refused) == 2);
    assert!(e.log().contains("log_format has no $status"), "{}", e.log());
    assert_eq!(count(&e.log(), "config reloaded"), 0);

    // Fixed: applied.
    let b = gunicorn(&dir, "b", 1);
    reload(&e, &format!("{good}{}", pool("b", &b.pidfile)));
    e.wait_scrape(T, "pool b from the fixed config", |s| {
        s.get("badgateway_pool_workers", &[("pool", "b")]) == Some(1.0)
    });
    assert_eq!(count(&e.log(), "config reloaded"), 1);
}
