//! The pool source against real Gunicorn: memory per slot, slots that stay
//! bounded while workers recycle, master restarts and a dead master.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

fn gunicorn(dir: &TempDir, workers: usize, extra: &[&str]) -> Gunicorn {
    Gunicorn::start(GunicornOpts {
        workers,
        bind: format!("127.0.0.1:{}", free_port()),
        pidfile: dir.path().join("gunicorn.pid"),
        extra,
        pre_exec: None,
        venv: None,
    })
}

fn pool_config(name: &str, pidfile: &std::path::Path) -> String {
    format!(
        "pools:\n  - name: {name}\n    server: gunicorn\n    pidfile: {}\n",
        pidfile.display()
    )
}

fn slots(s: &Scrape, pool: &str) -> BTreeSet<String> {
    s.find(
        "badgateway_worker_memory_bytes",
        &[("pool", pool), ("type", "rss")],
    )
    .into_iter()
    .map(|(l, _)| l["slot"].clone())
    .collect()
}

#[test]
fn memory_per_slot_and_bounded_slots_under_recycling() {
    let dir = TempDir::new("recycle");
    let g = gunicorn(
        &dir,
        4,
        &["--max-requests", "15", "--max-requests-jitter", "5"],
    );
    let e = Exporter::start(Some(&pool_config("api", &g.pidfile)), &[]);
    let pool = [("pool", "api")];

    let s = e.wait_scrape(T, "pool up with 4 workers and pss", |s| {
        s.get(
            "badgateway_pool_up",
            &[("pool", "api"), ("server", "gunicorn")],
        ) == Some(1.0)
            && s.get("badgateway_pool_workers", &pool) == Some(4.0)
            && s.find(
                "badgateway_worker_memory_bytes",
                &[("pool", "api"), ("type", "pss")],
            )
            .len()
                == 4
    });
    assert_eq!(
        slots(&s, "api"),
        ["0", "1", "2", "3"].map(String::from).into()
    );
    for slot in ["0", "1", "2", "3"] {
        let m = |t| {
            s.get(
                "badgateway_worker_memory_bytes",
                &[("pool", "api"), ("slot", slot), ("type", t)],
            )
            .unwrap_or_else(|| panic!("slot {slot} has no {t}\n{}", s.text))
        };
        let (rss, pss, uss) = (m("rss"), m("pss"), m("uss"));
        assert!(rss > 1e6, "slot {slot} rss {rss}");
        assert!(pss > 0.0 && pss <= rss, "slot {slot}: pss {pss} rss {rss}");
        assert!(uss > 0.0 && uss <= pss, "slot {slot}: uss {uss} pss {pss}");
        assert!(
            s.get(
                "badgateway_worker_open_fds",
                &[("pool", "api"), ("slot", slot)]
            )
            .unwrap()
                > 0.0
        );
        assert!(
            s.get(
                "badgateway_worker_max_fds",
                &[("pool", "api"), ("slot", slot)]
            )
            .unwrap()
                > 0.0
        );
        assert!(
            s.get(
                "badgateway_worker_start_time_seconds",
                &[("pool", "api"), ("slot", slot)]
            )
            .unwrap()
                > 1.6e9
        );
    }
    // CPU per slot is the workers' own /proc/PID/stat time: a request
    // that spins for 0.3 s shows in one slot (idle workers add a tick now
    // and then, hence the tolerance).
    let (st, _) = http_get(&g.bind, "/burn?s=0.3", T).expect("request to gunicorn");
    assert_eq!(st, 200);
    let s = e.wait_scrape(T, "the burn in a slot's CPU", |s| {
        s.sum("badgateway_worker_cpu_seconds_total", &pool) >= 0.25
    });
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let proc_cpu: f64 = g
        .worker_pids()
        .iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            let f: Vec<&str> = stat
                .rsplit_once(')')
                .unwrap()
                .1
                .split_whitespace()
                .collect();
            (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) as f64 / ticks
        })
        .sum();
    let cpu = s.sum("badgateway_worker_cpu_seconds_total", &pool);
    assert_eq!(
        s.find("badgateway_worker_cpu_seconds_total", &pool).len(),
        4
    );
    assert!(
        (cpu - proc_cpu).abs() < 0.1,
        "exported {cpu} s, /proc {proc_cpu} s"
    );
    // The pool's RSS includes the master: more than the workers' sum.
    let worker_rss = s.sum(
        "badgateway_worker_memory_bytes",
        &[("pool", "api"), ("type", "rss")],
    );
    let pool_rss = s
        .get(
            "badgateway_pool_memory_bytes",
            &[("pool", "api"), ("type", "rss")],
        )
        .unwrap();
    assert!(
        pool_rss > worker_rss,
        "pool {pool_rss} vs workers {worker_rss}"
    );
    let spawns0 = s.get("badgateway_worker_spawns_total", &pool).unwrap();
    let exits0 = s.sum("badgateway_worker_exits_total", &pool);
    let before: BTreeSet<i32> = g.worker_pids().into_iter().collect();

    // Drive enough requests that every worker recycles at least once, and
    // watch slots while it happens.
    let mut seen_slots = BTreeSet::new();
    for i in 0..200 {
        let (st, _) = http_get(&g.bind, "/", Duration::from_secs(5)).expect("request to gunicorn");
        assert_eq!(st, 200);
        if i % 20 == 0 {
            let s = e.scrape();
            let now = slots(&s, "api");
            assert!(now.len() <= 4, "more series than workers: {now:?}");
            seen_slots.extend(now);
        }
    }
    g.wait_workers(4, T);
    let after: BTreeSet<i32> = g.worker_pids().into_iter().collect();
    assert!(
        before.is_disjoint(&after),
        "every worker should have recycled: {before:?} {after:?}"
    );

    let s = e.wait_scrape(T, "spawns and exits counted, 4 workers", |s| {
        s.get("badgateway_worker_spawns_total", &pool).unwrap() >= spawns0 + 4.0
            && s.sum("badgateway_worker_exits_total", &pool) >= exits0 + 4.0
            && s.get("badgateway_pool_workers", &pool) == Some(4.0)
            && slots(s, "api").len() == 4
    });
    seen_slots.extend(slots(&s, "api"));
    assert_eq!(
        seen_slots,
        ["0", "1", "2", "3"].map(String::from).into(),
        "slots stay 0..3 under recycling"
    );
    assert_eq!(s.get("badgateway_master_restarts_total", &pool), Some(0.0));
    // Recycled workers exit with status 0 on their own: max_requests, from
    // the proc connector's wait status (no log file here).
    let by_reason = |r| {
        s.get(
            "badgateway_worker_exits_total",
            &[("pool", "api"), ("reason", r)],
        )
        .unwrap()
    };
    assert_eq!(
        by_reason("max_requests"),
        s.sum("badgateway_worker_exits_total", &pool),
        "{}",
        s.text
    );

    // A dead master: pool_up 0 and no stale worker series.
    g.proc.signal(libc::SIGKILL);
    let s = e.wait_scrape(T, "pool down after the master was killed", |s| {
        s.get(
            "badgateway_pool_up",
            &[("pool", "api"), ("server", "gunicorn")],
        ) == Some(0.0)
    });
    assert_eq!(s.get("badgateway_pool_workers", &pool), Some(0.0));
    assert!(
        slots(&s, "api").is_empty(),
        "stale worker series: {}",
        s.text
    );
    assert!(s.find("badgateway_pool_memory_bytes", &pool).is_empty());
    drop(g);
}

#[test]
fn master_restart_is_counted_and_configured_down_pool_exports_zero() {
    let dir = TempDir::new("restart");
    let pidfile: PathBuf = dir.path().join("gunicorn.pid");
    // Started before Gunicorn: the pool is configured but down.
    let e = Exporter::start(Some(&pool_config("web", &pidfile)), &[]);
    let pool = [("pool", "web")];
    let s = e.wait_scrape(T, "a configured pool that is down", |s| {
        s.get(
            "badgateway_pool_up",
            &[("pool", "web"), ("server", "gunicorn")],
        ) == Some(0.0)
    });
    assert_eq!(s.get("badgateway_pool_workers", &pool), Some(0.0));

    let g = gunicorn(&dir, 2, &[]);
    e.wait_scrape(T, "pool up", |s| {
        s.get(
            "badgateway_pool_up",
            &[("pool", "web"), ("server", "gunicorn")],
        ) == Some(1.0)
            && s.get("badgateway_pool_workers", &pool) == Some(2.0)
    });
    g.proc.signal(libc::SIGTERM);
    drop(g);
    let _ = std::fs::remove_file(&pidfile);
    e.wait_scrape(T, "pool down", |s| {
        s.get(
            "badgateway_pool_up",
            &[("pool", "web"), ("server", "gunicorn")],
        ) == Some(0.0)
    });
    let g2 = gunicorn(&dir, 2, &[]);
    let s = e.wait_scrape(T, "restarted master counted", |s| {
        s.get(
            "badgateway_pool_up",
            &[("pool", "web"), ("server", "gunicorn")],
        ) == Some(1.0)
            && s.get("badgateway_master_restarts_total", &pool) == Some(1.0)
            && s.get("badgateway_pool_workers", &pool) == Some(2.0)
    });
    // The new master's workers are spawns seen by the exporter.
    assert!(s.get("badgateway_worker_spawns_total", &pool).unwrap() >= 2.0);
    drop(g2);
}

/// With no config the exporter finds Gunicorn masters by itself, with and
/// without setproctitle (which changes the command lines Gunicorn shows).
#[test]
fn auto_discovers_gunicorn_with_and_without_setproctitle() {
    let dir = TempDir::new("discover");
    let plain_name = format!("plain{}", std::process::id());
    let titled_name = format!("titled{}", std::process::id());
    let _plain = Gunicorn::start(GunicornOpts {
        workers: 2,
        bind: format!("127.0.0.1:{}", free_port()),
        pidfile: dir.path().join("plain.pid"),
        extra: &["--name", &plain_name],
        pre_exec: None,
        venv: None,
    });
    let titled = Gunicorn::start(GunicornOpts {
        workers: 3,
        bind: format!("127.0.0.1:{}", free_port()),
        pidfile: dir.path().join("titled.pid"),
        extra: &["--name", &titled_name],
        pre_exec: None,
        venv: Some(venv_setproctitle()),
    });
    let cmd = std::fs::read_to_string(format!("/proc/{}/cmdline", titled.master_pid())).unwrap();
    assert!(
        cmd.starts_with("gunicorn: master"),
        "setproctitle venv gives titles: {cmd:?}"
    );
    let e = Exporter::start(None, &[]);
    let s = e.wait_scrape(T, "both pools discovered", |s| {
        s.get("badgateway_pool_workers", &[("pool", &plain_name)]) == Some(2.0)
            && s.get("badgateway_pool_workers", &[("pool", &titled_name)]) == Some(3.0)
    });
    for name in [&plain_name, &titled_name] {
        assert_eq!(
            s.get(
                "badgateway_pool_up",
                &[("pool", name), ("server", "gunicorn")]
            ),
            Some(1.0)
        );
    }
    // Workers are never mistaken for masters of pools of their own.
    let pools: BTreeSet<String> = s
        .find("badgateway_pool_up", &[])
        .into_iter()
        .map(|(l, _)| l["pool"].clone())
        .filter(|p| p.contains(&std::process::id().to_string()))
        .collect();
    assert_eq!(pools.len(), 2, "{pools:?}");
    let page = http_get(&e.addr, "/", Duration::from_secs(5)).unwrap().1;
    assert!(
        page.contains(&titled_name) && page.contains("href=\"/metrics\""),
        "{page}"
    );
}

/// As a user who cannot read the workers' smaps or fds, the exporter keeps
/// what it can read and counts the rest as errors: no crash, no zeros.
#[test]
fn unprivileged_exporter_degrades_and_counts_errors() {
    let dir = TempDir::new("nonroot");
    let g = gunicorn(&dir, 2, &[]);
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(
        &g.pidfile,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let e = Exporter::start_as(Some(&pool_config("locked", &g.pidfile)), &[], Some(65534));
    // The smaps reads fail as nobody: counted by the smaps collector, in the
    // pool's read errors, and as the smaps source being down. The counts are
    // published a moment apart; wait for all.
    let s = e.wait_scrape(T, "pool up as nobody with errors counted", |s| {
        s.get("badgateway_pool_workers", &[("pool", "locked")]) == Some(2.0)
            && s.get(
                "badgateway_collector_errors_total",
                &[("collector", "smaps")],
            )
            .unwrap_or(0.0)
                > 0.0
            && s.get("badgateway_source_up", &[("source", "smaps/locked")]) == Some(0.0)
            && s.get(
                "badgateway_pool_read_errors_total",
                &[("pool", "locked"), ("kind", "permission_denied")],
            )
            .unwrap_or(0.0)
                > 0.0
    });
    assert_eq!(
        s.find(
            "badgateway_worker_memory_bytes",
            &[("pool", "locked"), ("type", "rss")]
        )
        .len(),
        2
    );
    assert!(
        s.find(
            "badgateway_worker_memory_bytes",
            &[("pool", "locked"), ("type", "pss")]
        )
        .is_empty(),
        "PSS is unreadable as nobody and must be absent, not zero"
    );
    // RSS comes from /proc/PID/status, which anyone may read, and Linux
    // 6.2+ reports the fd count as the size of /proc/PID/fd, which anyone
    // may stat: the pool's own reads are all there.
    assert_eq!(
        s.get("badgateway_source_up", &[("source", "pool/locked")]),
        Some(1.0),
        "{}",
        s.text
    );
}

/// The seeds' fix, `--max-requests` with jitter, recycles workers all the
/// time; the view must keep up with the host at every scrape, not only at
/// each /proc cycle: a fork is applied as it happens, beside the exit it
/// replaces.
#[test]
fn a_recycling_pool_is_never_shown_emptier_than_the_host() {
    let dir = TempDir::new("recycle");
    let g = gunicorn(
        &dir,
        4,
        &["--max-requests", "5", "--max-requests-jitter", "2"],
    );
    let e = Exporter::start(Some(&pool_config("api", &g.pidfile)), &[]);
    let pool = [("pool", "api")];
    e.wait_scrape(T, "the pool's four workers", |s| {
        s.get("badgateway_pool_workers", &pool) == Some(4.0)
    });

    // Continuous load from two clients: every worker recycles about once a
    // second.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, addr) = (stop.clone(), g.bind.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if matches!(http_get(&addr, "/", Duration::from_secs(5)), Ok((200, _))) {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();

    // The master's workers on the host, every 10 ms, on a thread of its
    // own.
    let host: std::sync::Arc<std::sync::Mutex<Vec<(std::time::Instant, usize)>>> =
        Default::default();
    let sampler = {
        let (stop, host, master) = (stop.clone(), host.clone(), g.master_pid());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let n = live_children(master);
                host.lock().unwrap().push((std::time::Instant::now(), n));
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    // Scrape every 100 ms, 50 times. A scrape serves the last snapshot:
    // it shows the host as it was up to LAG before (the events gather for
    // 100 ms, the snapshot is rendered at most every 200 ms), so each is
    // compared with the host's counts over the LAG before it.
    const LAG: Duration = Duration::from_millis(400);
    let spawns_before = e
        .scrape()
        .get("badgateway_worker_spawns_total", &pool)
        .unwrap_or(0.0);
    let mut seen = Vec::new();
    let started = std::time::Instant::now();
    while seen.len() < 50 {
        assert!(started.elapsed() < Duration::from_secs(60), "{seen:?}");
        let s = e.scrape();
        let at = std::time::Instant::now();
        let shown = s.get("badgateway_pool_workers", &pool).unwrap() as usize;
        let rss = slots(&s, "api").len();
        let live: Vec<usize> = host
            .lock()
            .unwrap()
            .iter()
            .rev()
            // Those within LAG, and the last one before: the host's state
            // at the start of the window.
            .scan(false, |past, (t, n)| {
                if *past {
                    return None;
                }
                *past = *t + LAG < at;
                Some(*n)
            })
            .collect();
        seen.push((shown, rss, live));
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let served: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    let spawns = e
        .scrape()
        .get("badgateway_worker_spawns_total", &pool)
        .unwrap()
        - spawns_before;

    // The scenario did what it says: workers recycled many times.
    assert!(served > 100, "{served} requests served");
    let took = started.elapsed();
    assert!(spawns >= 20.0, "{spawns} spawns in {took:?}");
    // Never 0 while the master has workers.
    let empty: Vec<_> = seen
        .iter()
        .filter(|(n, _, live)| *n == 0 && live.iter().all(|&l| l > 0))
        .collect();
    assert!(
        empty.is_empty(),
        "shown 0 with workers alive: {empty:?} of {seen:?}"
    );
    // Every worker counted has its slot's RSS series.
    assert!(seen.iter().all(|(n, rss, _)| n == rss), "{seen:?}");
    // Within 1 of the host in at least 95% of scrapes.
    let close = seen
        .iter()
        .filter(|(n, _, live)| live.iter().any(|l| n.abs_diff(*l) <= 1))
        .count();
    assert!(
        close * 100 >= seen.len() * 95,
        "{close} of {} scrapes within 1 of the host: {seen:?}",
        seen.len()
    );
    eprintln!(
        "{} scrapes in {took:?}, {close} within 1 of the host, {} equal to it; {served} requests, {spawns} spawns",
        seen.len(),
        seen.iter().filter(|(n, _, live)| live.contains(n)).count()
    );
}

/// The live (not zombie) children of `pid`, from the kernel's children
/// list: one file and a stat each, cheap enough to sample every 10 ms.
fn live_children(pid: i32) -> usize {
    let list =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    list.split_whitespace()
        .filter(|c| {
            std::fs::read_to_string(format!("/proc/{c}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
                .unwrap_or(false)
        })
        .count()
}

/// Between two /proc cycles, a worker that replaces a killed one is in the
/// view at once, with its RSS, and has its PSS and USS within about a
/// second: the cycle here is 60 s away, so only the process events and the
/// smaps sampler can bring them.
#[test]
fn a_replacement_has_its_rss_at_once_and_its_pss_within_a_second() {
    let dir = TempDir::new("replace");
    let g = gunicorn(&dir, 2, &[]);
    let e = Exporter::start(
        Some(&pool_config("api", &g.pidfile)),
        &["--collector.pools.interval=60s"],
    );
    let pool = [("pool", "api")];
    let pss = |s: &Scrape| {
        s.find(
            "badgateway_worker_memory_bytes",
            &[("pool", "api"), ("type", "pss")],
        )
        .len()
    };
    e.wait_scrape(T, "both workers with their PSS", |s| {
        s.get("badgateway_pool_workers", &pool) == Some(2.0) && pss(s) == 2
    });
    let victim = g.worker_pids()[0];
    unsafe { libc::kill(victim, libc::SIGKILL) };
    let killed = std::time::Instant::now();
    wait_for(T, "the replacement", || {
        let w = g.worker_pids();
        w.len() == 2 && !w.contains(&victim)
    });
    let forked = killed.elapsed();
    let s = e.wait_scrape(Duration::from_secs(2), "the replacement in the view", |s| {
        s.get("badgateway_worker_spawns_total", &pool) == Some(1.0)
            && s.get("badgateway_pool_workers", &pool) == Some(2.0)
    });
    let in_view = killed.elapsed();
    assert_eq!(slots(&s, "api").len(), 2, "RSS of both slots");
    e.wait_scrape(Duration::from_secs(3), "the replacement's PSS", |s| {
        pss(s) == 2
    });
    let with_pss = killed.elapsed();
    eprintln!(
        "after the kill: forked {forked:?}, in the view {in_view:?}, with its PSS {with_pss:?}"
    );
}
