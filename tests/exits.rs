//! Why each worker ended, with real Gunicorn: recycling, an OOM kill in a
//! memory cgroup, a worker stopped past its timeout, a SIGSEGV, a reload
//! and a shutdown. Each scenario runs with every mix of the evidence the
//! exporter can have (Gunicorn's log file, the proc connector's events),
//! and each exit must be counted exactly once, with the reason that
//! evidence allows: the table below. Needs root.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cgroup::{oom_protect_conf, Cgroup};
use common::kmsg::{kernel_kills, kmsg_records};
use common::*;

const T: Duration = Duration::from_secs(30);
const MIB: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Gunicorn's log file and the proc connector.
    Full,
    /// The proc connector only.
    Events,
    /// Gunicorn's log file only.
    Log,
    /// /proc polling alone (the kernel log still names OOM kills).
    Polling,
}

const MODES: [Mode; 4] = [Mode::Full, Mode::Events, Mode::Log, Mode::Polling];

impl Mode {
    fn log(self) -> bool {
        matches!(self, Mode::Full | Mode::Log)
    }
    fn events(self) -> bool {
        matches!(self, Mode::Full | Mode::Events)
    }
}

/// A Gunicorn pool, an exporter watching it, and the pool's own log.
struct Setup {
    g: Gunicorn,
    e: Exporter,
    log: std::path::PathBuf,
    _dir: TempDir,
}

const POOL: &str = "app";

fn setup(mode: Mode, extra: &[&str], cgroup: Option<&Cgroup>) -> Setup {
    let dir = TempDir::new("exits");
    let log = dir.path().join("gunicorn.log");
    let pidfile = dir.path().join("gunicorn.pid");
    let log_arg = log.display().to_string();
    let mut args = vec!["--log-file", &log_arg, "--log-level", "debug"];
    args.extend_from_slice(extra);
    let g = Gunicorn::start(GunicornOpts {
        workers: 2,
        bind: format!("127.0.0.1:{}", free_port()),
        pidfile: pidfile.clone(),
        extra: &args,
        // In a cgroup, the master is kept out of the OOM killer's reach:
        // the scenario is about workers (see tests/apps/oom_protect_master.py).
        pre_exec: cgroup.map(Cgroup::enter_protected),
        venv: None,
    });
    let mut yaml = format!(
        "pools:\n  - name: {POOL}\n    server: gunicorn\n    pidfile: {}\n",
        pidfile.display()
    );
    if mode.log() {
        yaml.push_str(&format!("    log_file: {}\n", log.display()));
    }
    let events = format!("--collector.proc-events={}", mode.events());
    let e = Exporter::start(Some(&yaml), &[&events]);
    // Steady state: the workers, and the master's control socket found
    // (Gunicorn binds it after its first workers boot).
    e.wait_scrape(T, "the pool with its 2 workers", |s| {
        s.get("badgateway_pool_workers", &[("pool", POOL)]) == Some(2.0)
            && s.get("badgateway_source_up", &[("source", "control/app")]) == Some(1.0)
            && s.get(
                "badgateway_worker_exits_total",
                &[("pool", POOL), ("reason", "unknown")],
            )
            .is_some()
    });
    let s = e.scrape();
    assert_eq!(
        s.get("badgateway_source_up", &[("source", "proc_connector")]),
        mode.events().then_some(1.0),
        "proc connector as asked"
    );
    Setup {
        g,
        e,
        log,
        _dir: dir,
    }
}

/// Wait until `n` exits are counted, give the judge time to count any
/// extra one, and return the counts by reason.
fn exits_by_reason(e: &Exporter, n: usize) -> BTreeMap<String, usize> {
    let counts = |s: &Scrape| -> BTreeMap<String, usize> {
        s.find("badgateway_worker_exits_total", &[("pool", POOL)])
            .into_iter()
            .filter(|(_, v)| *v > 0.0)
            .map(|(l, v)| (l["reason"].clone(), v as usize))
            .collect()
    };
    let total = |s: &Scrape| s.sum("badgateway_worker_exits_total", &[("pool", POOL)]) as usize;
    e.wait_scrape(T, &format!("{n} exits counted"), |s| total(s) >= n);
    // An exit is judged 1.5 s after it is seen: anything counted twice, or
    // late, would show by now.
    std::thread::sleep(Duration::from_secs(3));
    let s = e.scrape();
    assert_eq!(total(&s), n, "exactly {n} exits: {:?}", counts(&s));
    counts(&s)
}

fn one(reason: &str, n: usize) -> BTreeMap<String, usize> {
    [(reason.to_string(), n)].into()
}

/// The exits of each run, and what the table expects of it.
fn check(scenario: &str, mode: Mode, got: BTreeMap<String, usize>, want: BTreeMap<String, usize>) {
    eprintln!("{scenario:>13} {mode:?}: {got:?}");
    assert_eq!(got, want, "{scenario} with {mode:?}");
}

fn gunicorn_log(s: &Setup) -> String {
    std::fs::read_to_string(&s.log).unwrap_or_default()
}

#[test]
fn recycling_is_max_requests() {
    for mode in MODES {
        let s = setup(
            mode,
            &["--max-requests", "3", "--max-requests-jitter", "0"],
            None,
        );
        for _ in 0..12 {
            let (st, _) = http_get(&s.g.bind, "/", T).expect("request to gunicorn");
            assert_eq!(st, 200);
            // Without the proc connector a worker that lives less than a
            // cycle (300 ms here) is never seen, so neither is its exit;
            // paced, every worker is.
            if !mode.events() {
                std::thread::sleep(Duration::from_millis(400));
            }
        }
        // Gunicorn says itself how many workers it recycled.
        wait_for(T, "the recycled workers replaced", || {
            gunicorn_log(&s).matches("Autorestarting worker").count() >= 2
                && s.g.worker_pids().len() == 2
        });
        let n = gunicorn_log(&s).matches("Autorestarting worker").count();
        let want = match mode {
            Mode::Polling => "unknown",
            _ => "max_requests",
        };
        check("max_requests", mode, exits_by_reason(&s.e, n), one(want, n));
    }
}

#[test]
fn a_stopped_worker_past_its_timeout_is_timeout_not_oom() {
    for mode in MODES {
        let s = setup(mode, &["--timeout", "2"], None);
        let victim = s.g.worker_pids()[0];
        unsafe { libc::kill(victim, libc::SIGSTOP) };
        wait_for(T, "gunicorn to kill the stopped worker", || {
            gunicorn_log(&s).contains(&format!("Worker (pid:{victim}) was sent SIGKILL!"))
        });
        // Gunicorn logs it "Perhaps out of memory?"; no OOM kill happened.
        assert!(gunicorn_log(&s).contains("Perhaps out of memory?"));
        let want = match mode {
            Mode::Full | Mode::Log => "timeout",
            Mode::Events => "signal",
            Mode::Polling => "unknown",
        };
        check("timeout", mode, exits_by_reason(&s.e, 1), one(want, 1));
    }
}

#[test]
fn sigsegv_is_signal() {
    for mode in MODES {
        let s = setup(mode, &[], None);
        let victim = s.g.worker_pids()[0];
        let killed = Instant::now();
        unsafe { libc::kill(victim, libc::SIGSEGV) };
        // The figure the note asks for: from the death to its reason in
        // /metrics (scraped every 100 ms).
        s.e.wait_scrape(T, "the exit counted", |sc| {
            sc.sum("badgateway_worker_exits_total", &[("pool", POOL)]) >= 1.0
        });
        eprintln!(
            "FIGURE {mode:?}: a worker's death to its reason in /metrics: {:?}",
            killed.elapsed()
        );
        let want = match mode {
            Mode::Polling => "unknown",
            _ => "signal",
        };
        check("sigsegv", mode, exits_by_reason(&s.e, 1), one(want, 1));
    }
}

#[test]
fn hup_is_reload_and_term_is_shutdown() {
    for mode in MODES {
        let s = setup(mode, &[], None);
        s.g.proc.signal(libc::SIGHUP);
        wait_for(T, "the reload done", || {
            gunicorn_log(&s).contains("Hang up: Master") && s.g.worker_pids().len() == 2
        });
        let reload = exits_by_reason(&s.e, 2);
        check("reload", mode, reload, one("reload", 2));

        s.g.proc.signal(libc::SIGTERM);
        let got = exits_by_reason(&s.e, 4);
        let mut want = one("reload", 2);
        want.insert("shutdown".into(), 2);
        check("shutdown", mode, got, want);
    }
}

#[test]
fn a_leaking_worker_is_oom_killed_with_no_kill_left_unattributed() {
    for mode in [Mode::Full, Mode::Polling] {
        let since = kmsg_records().last().map_or(0, |r| r.0);
        let cg = Cgroup::create(&format!("exits-oom-{mode:?}"));
        let conf = oom_protect_conf();
        let s = setup(mode, &["--timeout", "30", "--config", &conf], Some(&cg));
        let pool_kills = |sc: &Scrape| sc.get("badgateway_oom_kills_total", &[("pool", POOL)]);
        let kills0 = pool_kills(
            &s.e.wait_scrape(T, "the kernel log replayed", |sc| pool_kills(sc).is_some()),
        )
        .unwrap();
        // Room for the pool plus 60 MiB: the third 20 MiB leak is over.
        cg.set_limit(cg.usage() + 60 * MIB);
        let start = Instant::now();
        while kernel_kills(since, &cg.path).is_empty() {
            assert!(start.elapsed() < T, "no OOM kill in the cgroup");
            let _ = http_get(&s.g.bind, "/leak?mb=20", Duration::from_secs(10));
        }
        let kills = kernel_kills(since, &cg.path).len();
        let got = exits_by_reason(&s.e, kills);
        check("oom_killed", mode, got, one("oom_killed", kills));
        // Every kill of the cgroup is the pool's, none under "-".
        assert_eq!(pool_kills(&s.e.scrape()), Some(kills0 + kills as f64));
        drop(s);
    }
}

/// Workers that boot into a cgroup of their own and are OOM-killed there
/// within milliseconds of their fork: no cycle ever sees them. With the
/// proc connector every kill is the pool's and every exit is counted
/// `oom_killed`; without it the kills are nobody's (`pool="-"`) and the
/// exits are never seen. The test times each victim's life with its own
/// subscription to the process events.
#[test]
fn a_worker_forked_and_oom_killed_within_100ms_is_attributed_to_its_pool() {
    use badgateway_exporter::netlink::proc_connector::{
        EventKind, ProcConnector, ProcConnectorOptions,
    };
    for mode in [Mode::Events, Mode::Polling] {
        let since = kmsg_records().last().map_or(0, |r| r.0);
        let cg = Cgroup::create(&format!("hog-{mode:?}"));
        let wcg = cg.child("workers");
        wcg.set_limit(32 * MIB);
        let dir = TempDir::new("hog");
        let hog = dir.path().join("hog");
        let pidfile = dir.path().join("gunicorn.pid");
        let conf = apps_dir().join("worker_cgroup.py").display().to_string();
        let g = Gunicorn::start(GunicornOpts {
            workers: 1,
            bind: format!("127.0.0.1:{}", free_port()),
            pidfile: pidfile.clone(),
            extra: &["--config", &conf],
            pre_exec: Some(format!(
                "echo $$ > {}; export BGW_WORKER_CGROUP={} BGW_HOG_FILE={}",
                cg.file("cgroup.procs").display(),
                wcg.file("cgroup.procs").display(),
                hog.display()
            )),
            venv: None,
        });
        let yaml = format!(
            "pools:\n  - name: {POOL}\n    server: gunicorn\n    pidfile: {}\n",
            pidfile.display()
        );
        let events = format!("--collector.proc-events={}", mode.events());
        // A cycle every 300 ms: these workers live far shorter.
        let e = Exporter::start(Some(&yaml), &[&events]);
        let pool_kills = |s: &Scrape| s.get("badgateway_oom_kills_total", &[("pool", POOL)]);
        let nobodys = |s: &Scrape| {
            s.get("badgateway_oom_kills_total", &[("pool", "-")])
                .unwrap()
        };
        let s0 = e.wait_scrape(T, "the pool and the replayed kernel log", |s| {
            s.get("badgateway_pool_workers", &[("pool", POOL)]) == Some(1.0)
                && pool_kills(s).is_some()
        });
        let mut conn =
            ProcConnector::open(&ProcConnectorOptions::default()).expect("proc connector");

        // From now on each new worker hogs 200 MiB as it boots.
        std::fs::write(&hog, "").unwrap();
        unsafe { libc::kill(g.master_pid(), libc::SIGTTIN) };
        let start = Instant::now();
        let mut born = BTreeMap::new();
        let mut lives = Vec::new();
        let mut buf = Vec::new();
        let under_100ms = |lives: &[(i32, Duration)]| {
            kernel_kills(since, &wcg.path)
                .iter()
                .filter_map(|k| lives.iter().find(|(p, _)| *p == k.pid))
                .any(|(_, l)| *l < Duration::from_millis(100))
        };
        while kernel_kills(since, &wcg.path).len() < 3 || !under_100ms(&lives) {
            assert!(
                start.elapsed() < T,
                "no OOM kill of a worker under 100 ms old: {lives:?}"
            );
            buf.clear();
            conn.read(Duration::from_millis(100), &mut buf).unwrap();
            for ev in &buf {
                match ev.kind {
                    EventKind::Fork { parent, child }
                        if parent.tgid == g.master_pid() && !child.is_thread() =>
                    {
                        born.insert(child.pid, ev.timestamp_ns);
                    }
                    EventKind::Exit { task, .. } if !task.is_thread() => {
                        if let Some(t0) = born.remove(&task.pid) {
                            lives.push((task.pid, Duration::from_nanos(ev.timestamp_ns - t0)));
                        }
                    }
                    _ => {}
                }
            }
        }
        std::fs::remove_file(&hog).unwrap();
        let kills = kernel_kills(since, &wcg.path);
        let killed: Vec<Duration> = kills
            .iter()
            .filter_map(|k| lives.iter().find(|(p, _)| *p == k.pid).map(|(_, l)| *l))
            .collect();
        eprintln!("{mode:?}: {} kills, victims lived {killed:?}", kills.len());
        // The pool gets back its workers; a hog that was booting when the
        // file went may still die, so the kills are counted once they have
        // stopped for a second.
        g.wait_workers(2, T);
        let mut n = kernel_kills(since, &wcg.path).len();
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = kernel_kills(since, &wcg.path).len();
            if now == n {
                break;
            }
            n = now;
        }
        let s = e.wait_scrape(T, "every kill counted once", |s| {
            pool_kills(s).unwrap() + nobodys(s)
                == pool_kills(&s0).unwrap() + nobodys(&s0) + n as f64
        });
        let ours = pool_kills(&s).unwrap() - pool_kills(&s0).unwrap();
        eprintln!("{mode:?}: of {n} kills, {ours} the pool's, the rest under pool=\"-\"");
        if mode == Mode::Events {
            assert_eq!(ours, n as f64, "no kill of ours under pool=\"-\"");
            check(
                "forked_oom",
                mode,
                exits_by_reason(&e, n),
                one("oom_killed", n),
            );
        }
        drop(e);
        drop(g);
        drop(wcg);
    }
}
