//! The cause of every 502 and 504, end to end: real nginx in front of five
//! real Gunicorn pools, two of them in small memory cgroups, each with its
//! Gunicorn log file, and the exporter with the process events on. Each
//! scenario makes its failures for real. The test counts them itself from
//! nginx's access log (a format with `$msec`, `$connection`, `$request`
//! and the upstream fields) and checks that the exporter counted every 502
//! and 504 exactly once, with the cause the scenario gives it:
//!
//! 1. `leak`: a leaking endpoint driven until the kernel OOM-kills workers:
//!    `worker_oom_killed`, with as many kills as the kernel logged;
//! 2. `slow`: a worker stopped (SIGSTOP) past `--timeout` while it serves a
//!    slow request: `worker_timeout`;
//! 3. `recycle`: `--max-requests` under load: no failed request at all;
//! 4. `down`: the master SIGKILLed: `pool_down`;
//! 5. `stop`: a supervisor that does what systemd's default
//!    `OOMPolicy=stop` does (systemd cannot run here: a thread watches the
//!    cgroup's oom_kill counter and sends the master SIGTERM): the 502 the
//!    kill cut is `worker_oom_killed`, the 502s after the stop are
//!    `pool_stopped_after_oom`;
//! 6. `badgateway_exporter diagnose` on that host, as root and as nobody,
//!    and /diagnose on the running exporter, in text and JSON.
//!
//! It prints the figures the issue asks for: the share of 502s with a
//! cause other than `other`, and the time from nginx writing a 502 (the
//! line's `$msec`) to its cause in /metrics. Needs root.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::cgroup::{oom_protect_conf, Cgroup};
use common::kmsg::{kernel_kills, kmsg_records, KernelKill};
use common::nginx::Nginx;
use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);
const MIB: u64 = 1 << 20;

/// The access log's format: the usual fields, the upstream's, and the
/// three the join needs: `$msec`, `$connection`, `$request`.
const FORMAT: &str = r#"$remote_addr [$time_local] "$request" $status $body_bytes_sent rt=$request_time uct="$upstream_connect_time" uht="$upstream_header_time" urt="$upstream_response_time" ua="$upstream_addr" us="$upstream_status" conn=$connection msec=$msec"#;

/// The leaking pool: W workers, each request to /leak keeps G MiB, and
/// the cgroup gives each worker ROOM MiB above what the pool weighs at
/// rest.
const W: usize = 2;
const G_MIB: u64 = 2;
const ROOM_MIB: u64 = 60;

/// One access line, parsed here by hand, independently of the exporter.
#[derive(Debug, Clone)]
struct Line {
    at: SystemTime,
    conn: u64,
    status: u16,
    method: String,
    path: String,
    upstream: String,
}

fn access_lines(path: &Path) -> Vec<Line> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| {
            let (_, rest) = l.split_once("] \"").unwrap();
            let (request, rest) = rest.split_once("\" ").unwrap();
            let field = |k: &str| {
                let v = rest.split(&format!(" {k}=")).nth(1).unwrap();
                let v = v.strip_prefix('"').map_or_else(
                    || v.split(' ').next().unwrap(),
                    |q| q.split('"').next().unwrap(),
                );
                v.to_string()
            };
            let mut req = request.split(' ');
            let method = req.next().unwrap().to_string();
            let path = req.next().unwrap().split('?').next().unwrap().to_string();
            let msec: f64 = field("msec").parse().unwrap();
            Line {
                at: UNIX_EPOCH + Duration::from_secs_f64(msec),
                conn: field("conn").parse().unwrap(),
                status: rest.split(' ').next().unwrap().parse().unwrap(),
                method,
                path,
                upstream: field("ua"),
            }
        })
        .collect()
}

/// A pool: its Gunicorn, the socket nginx proxies to, its own log.
struct Pool {
    g: Gunicorn,
    upstream: String,
    log: PathBuf,
}

/// The host: nginx, the pools, the exporter. Dropped in this order: the
/// exporter, nginx, the pools, the cgroups (which end what is left in
/// them), the directory.
struct Host {
    e: Exporter,
    nginx: Nginx,
    pools: BTreeMap<&'static str, Pool>,
    cg_leak: Cgroup,
    cg_stop: Cgroup,
    config: PathBuf,
    /// Every failed request by (pool, status, cause), as the scenarios
    /// counted them from nginx's logs.
    expected: Mutex<BTreeMap<(String, u16, String), u64>>,
    dir: TempDir,
}

fn start_pool(dir: &Path, name: &str, workers: usize, extra: &[&str], cg: Option<&Cgroup>) -> Pool {
    let log = dir.join(format!("{name}.log"));
    let sock = dir.join(format!("{name}.sock"));
    let log_arg = log.display().to_string();
    let mut args = vec!["--log-file", &log_arg];
    args.extend_from_slice(extra);
    let g = Gunicorn::start(GunicornOpts {
        workers,
        bind: format!("unix:{}", sock.display()),
        pidfile: dir.join(format!("{name}.pid")),
        extra: &args,
        pre_exec: cg.map(Cgroup::enter_protected),
        venv: None,
    });
    Pool {
        g,
        upstream: format!("unix:{}", sock.display()),
        log,
    }
}

impl Host {
    fn start() -> Host {
        let cg_leak = Cgroup::create("causes-leak");
        let cg_stop = Cgroup::create("causes-stop");
        let dir = TempDir::new("causes");
        let d = dir.path();
        let conf = oom_protect_conf();
        let mut pools = BTreeMap::new();
        let in_cgroup = ["--timeout", "30", "--config", &conf];
        pools.insert("leak", start_pool(d, "leak", W, &in_cgroup, Some(&cg_leak)));
        pools.insert("slow", start_pool(d, "slow", 1, &["--timeout", "2"], None));
        pools.insert(
            "recycle",
            start_pool(
                d,
                "recycle",
                2,
                &["--max-requests", "5", "--max-requests-jitter", "0"],
                None,
            ),
        );
        // A short timeout: a worker whose master is gone notices it when
        // it wakes, every half timeout.
        pools.insert("down", start_pool(d, "down", 1, &["--timeout", "2"], None));
        pools.insert("stop", start_pool(d, "stop", 2, &in_cgroup, Some(&cg_stop)));

        // /leak goes to the leak pool as it is; the others by prefix.
        let mut locations = format!(
            "proxy_next_upstream off;\n        location /leak {{ proxy_pass http://{}:; }}\n",
            pools["leak"].upstream
        );
        for name in ["slow", "recycle", "down", "stop"] {
            locations.push_str(&format!(
                "        location /{name}/ {{ proxy_pass http://{}:/; }}\n",
                pools[name].upstream
            ));
        }
        let nginx = Nginx::start_with(
            d,
            &format!(
                "log_format upstreamlog '{FORMAT}';\n    access_log {}/access.log upstreamlog;",
                d.display()
            ),
            &locations,
        );
        let mut yaml = String::from("pools:\n");
        for (name, p) in &pools {
            yaml.push_str(&format!(
                "  - name: {name}\n    server: gunicorn\n    pidfile: {}\n    log_file: {}\n",
                p.g.pidfile.display(),
                p.log.display()
            ));
        }
        yaml.push_str(&nginx.config_with("edge", FORMAT));
        let config = d.join("exporter.yml");
        std::fs::write(&config, &yaml).unwrap();
        // nginx's logs read at the default interval: the time from a line to
        // its cause in /metrics is the one a user gets.
        let e = Exporter::start(
            Some(&yaml),
            &[
                "--collector.proc-events=true",
                "--collector.nginx.interval=250ms",
            ],
        );

        // nginx has seen each upstream once, and the exporter tied each
        // to its pool.
        for path in ["/leak?mb=0", "/slow/", "/recycle/", "/down/", "/stop/"] {
            assert_eq!(nginx.get(path), 200, "{path}");
        }
        e.wait_scrape(T, "every upstream tied to its pool", |s| {
            pools.iter().all(|(name, p)| {
                s.get(
                    "badgateway_nginx_upstream_pool",
                    &[("log", "edge"), ("upstream", &p.upstream), ("pool", name)],
                ) == Some(1.0)
            }) && s.get("badgateway_source_up", &[("source", "proc_connector")]) == Some(1.0)
        });
        Host {
            e,
            nginx,
            pools,
            cg_leak,
            cg_stop,
            config,
            expected: Mutex::default(),
            dir,
        }
    }

    fn access(&self) -> Vec<Line> {
        access_lines(&self.dir.path().join("access.log"))
    }

    fn pool_of(&self, upstream: &str) -> &'static str {
        self.pools
            .iter()
            .find(|(_, p)| p.upstream == upstream)
            .map_or("-", |(n, _)| n)
    }
}

/// /metrics scraped every 20 ms in the background: when each pool's count
/// of failed requests first reached each value.
struct Poller {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeMap<String, Vec<SystemTime>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    fn start(addr: &str) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<BTreeMap<String, Vec<SystemTime>>>> = Arc::default();
        let thread = std::thread::spawn({
            let (stop, seen, addr) = (stop.clone(), seen.clone(), addr.to_string());
            move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Ok((200, body)) = http_get(&addr, "/metrics", Duration::from_secs(2)) {
                        let at = SystemTime::now();
                        let s = Scrape::parse(&body);
                        let mut by_pool: BTreeMap<String, f64> = BTreeMap::new();
                        for (l, v) in s.find("badgateway_failed_requests_total", &[]) {
                            *by_pool.entry(l["pool"].clone()).or_default() += v;
                        }
                        let mut seen = seen.lock().unwrap();
                        for (pool, n) in by_pool {
                            let times = seen.entry(pool).or_default();
                            while times.len() < n as usize {
                                times.push(at);
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        Poller {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// For each failed request of `lines` (in the access log's order of
    /// time, per pool), how long after its line the exporter's count of
    /// the pool reached it.
    fn latencies(&self, h: &Host, lines: &[Line]) -> Vec<Duration> {
        let seen = self.seen.lock().unwrap();
        let mut by_pool: BTreeMap<&str, Vec<SystemTime>> = BTreeMap::new();
        for l in lines.iter().filter(|l| matches!(l.status, 502 | 504)) {
            by_pool
                .entry(h.pool_of(&l.upstream))
                .or_default()
                .push(l.at);
        }
        let mut out = Vec::new();
        for (pool, mut times) in by_pool {
            times.sort();
            let counted = seen.get(pool).cloned().unwrap_or_default();
            for (t, c) in times.iter().zip(counted.iter()) {
                out.push(c.duration_since(*t).unwrap_or_default());
            }
        }
        out.sort();
        out
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The exporter's failed requests of `pool`, by (status, cause).
fn counted(s: &Scrape, pool: &str) -> BTreeMap<(u16, String), u64> {
    s.find("badgateway_failed_requests_total", &[("pool", pool)])
        .into_iter()
        .filter(|(_, v)| *v > 0.0)
        .map(|(l, v)| ((l["status"].parse().unwrap(), l["cause"].clone()), v as u64))
        .collect()
}

fn tally(causes: impl IntoIterator<Item = (u16, &'static str)>) -> BTreeMap<(u16, String), u64> {
    let mut out = BTreeMap::new();
    for (status, cause) in causes {
        *out.entry((status, cause.to_string())).or_default() += 1;
    }
    out
}

/// Wait until the exporter has counted as many failed requests of `pool`
/// as `want` holds, give the judge time to count any extra, and check
/// them against `want`, exactly.
fn check_pool(h: &Host, pool: &str, want: &BTreeMap<(u16, String), u64>) {
    let mut expected = h.expected.lock().unwrap();
    for ((status, cause), n) in want {
        expected.insert((pool.to_string(), *status, cause.clone()), *n);
    }
    drop(expected);
    let n: u64 = want.values().sum();
    let total = |s: &Scrape| counted(s, pool).values().sum::<u64>();
    h.e.wait_scrape(T, &format!("{n} failed requests of {pool}"), |s| {
        total(s) >= n
    });
    // A failure is judged 0.3 s after it is read: one counted twice, or
    // late, shows by now.
    std::thread::sleep(Duration::from_secs(2));
    let got = counted(&h.e.scrape(), pool);
    eprintln!("{pool:>8}: access log {want:?}, exporter {got:?}");
    assert_eq!(
        &got,
        want,
        "pool {pool}: failed requests by (status, cause)\n--- nginx error log ---\n{}\n--- exporter log ---\n{}",
        std::fs::read_to_string(h.dir.path().join("error.log")).unwrap_or_default(),
        h.e.log()
    );
}

fn failed_of<'a>(lines: &'a [Line], h: &Host, pool: &str) -> Vec<&'a Line> {
    lines
        .iter()
        .filter(|l| matches!(l.status, 502 | 504) && h.pool_of(&l.upstream) == pool)
        .collect()
}

/// 1. Leaking requests from W clients at once (so that the worker the
///    kernel picks is one serving a request), until the kernel has killed
///    three workers and cut at least two requests.
fn oom_kills(h: &Host, since: u64) -> Vec<KernelKill> {
    let cg = &h.cg_leak;
    cg.set_limit(cg.usage() + W as u64 * ROOM_MIB * MIB);
    let start = Instant::now();
    let path = format!("/leak?mb={G_MIB}");
    let done = AtomicBool::new(false);
    std::thread::scope(|sc| {
        for _ in 0..W {
            sc.spawn(|| {
                while !done.load(Ordering::SeqCst) {
                    let _ = http_get(&h.nginx.addr, &path, T);
                    // About 10 requests a second each: a worker reaches its
                    // share over several of the exporter's pool cycles, as
                    // over hours of 5 s cycles on a real host.
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
        while kernel_kills(since, &cg.path).len() < 3 || failed_of(&h.access(), h, "leak").len() < 2
        {
            if start.elapsed() > Duration::from_secs(60) {
                done.store(true, Ordering::SeqCst);
                panic!(
                    "fewer than 3 OOM kills or 2 cut requests: {:?}",
                    kernel_kills(since, &cg.path)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        done.store(true, Ordering::SeqCst);
    });
    h.pools["leak"].g.wait_workers(W, T);
    let kills = kernel_kills(since, &cg.path);
    let lines = h.access();
    let failed = failed_of(&lines, h, "leak");
    assert!(!failed.is_empty(), "no kill cut a request");
    assert!(
        failed
            .iter()
            .all(|l| l.method == "GET" && l.path == "/leak"),
        "{failed:?}"
    );
    assert!(
        failed.len() <= kills.len(),
        "{} 502s from {} kills",
        failed.len(),
        kills.len()
    );
    check_pool(
        h,
        "leak",
        &tally(failed.iter().map(|l| (l.status, "worker_oom_killed"))),
    );
    let s = h.e.scrape();
    assert_eq!(
        s.get("badgateway_oom_kills_total", &[("pool", "leak")]),
        Some(kills.len() as f64),
        "every kill of the cgroup is the pool's"
    );
    kills
}

/// 2. A worker stopped while it serves a slow request, twice: Gunicorn
///    kills it past its --timeout of 2 s.
fn timeouts(h: &Host) {
    let pool = &h.pools["slow"];
    for round in 0..2 {
        pool.g.wait_workers(1, T);
        let worker = pool.g.worker_pids()[0];
        let addr = h.nginx.addr.clone();
        let client =
            std::thread::spawn(move || http_get(&addr, "/slow/sleep?s=1", T).map(|r| r.0).unwrap());
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: a signal to the worker this test started.
        unsafe { libc::kill(worker, libc::SIGSTOP) };
        assert_eq!(client.join().unwrap(), 502, "round {round}");
        wait_for(T, "the stopped worker replaced", || {
            !pool.g.worker_pids().contains(&worker)
        });
    }
    let log = std::fs::read_to_string(&pool.log).unwrap();
    assert!(log.contains("WORKER TIMEOUT"), "{log}");
    let lines = h.access();
    let failed = failed_of(&lines, h, "slow");
    assert_eq!(failed.len(), 2);
    check_pool(
        h,
        "slow",
        &tally(failed.iter().map(|l| (l.status, "worker_timeout"))),
    );
}

/// 3. Recycling under load: four clients, workers that leave every five
///    requests, and no request fails.
fn recycling(h: &Host) {
    let statuses: Vec<u16> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                sc.spawn(|| {
                    (0..25)
                        .map(|_| h.nginx.get("/recycle/sleep?s=0.01"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let log = std::fs::read_to_string(&h.pools["recycle"].log).unwrap();
    let recycled = log.matches("Autorestarting worker").count();
    assert!(recycled >= 15, "{recycled} workers recycled");
    let s = h.e.wait_scrape(T, "the recycled workers counted", |s| {
        s.get(
            "badgateway_worker_exits_total",
            &[("pool", "recycle"), ("reason", "max_requests")],
        ) >= Some(recycled as f64)
    });
    assert!(failed_of(&h.access(), h, "recycle").is_empty());
    assert!(counted(&s, "recycle").is_empty(), "{}", s.text);
}

/// 4. The master SIGKILLed: once its orphaned worker has left too, nginx
///    finds nothing listening on the socket.
fn pool_down(h: &Host) {
    let pool = &h.pools["down"];
    let workers = pool.g.worker_pids();
    pool.g.proc.signal(libc::SIGKILL);
    wait_for(T, "the orphaned worker to leave", || {
        workers
            .iter()
            .all(|w| !Path::new(&format!("/proc/{w}")).exists())
    });
    for _ in 0..5 {
        assert_eq!(h.nginx.get("/down/"), 502);
    }
    let lines = h.access();
    let failed = failed_of(&lines, h, "down");
    assert_eq!(failed.len(), 5);
    check_pool(
        h,
        "down",
        &tally(failed.iter().map(|l| (l.status, "pool_down"))),
    );
}

/// 5. systemd's `OOMPolicy=stop`, played by a thread: it watches the
///    cgroup's oom_kill counter and sends the master SIGTERM after the
///    first kill. Returns the kernel's kills in the cgroup.
fn stopped_after_oom(h: &Host, since: u64) -> Vec<KernelKill> {
    let cg = &h.cg_stop;
    let master = h.pools["stop"].g.master_pid();
    let stopped: Mutex<Option<SystemTime>> = Mutex::default();
    let kills0 = cg.oom_kills();
    std::thread::scope(|sc| {
        // The supervisor: systemd reacts to the cgroup's oom_kill event
        // within milliseconds.
        sc.spawn(|| {
            let start = Instant::now();
            while cg.oom_kills() == kills0 {
                assert!(start.elapsed() < Duration::from_secs(60), "no OOM kill");
                std::thread::sleep(Duration::from_millis(10));
            }
            // SAFETY: a signal to the master this test started.
            unsafe { libc::kill(master, libc::SIGTERM) };
            *stopped.lock().unwrap() = Some(SystemTime::now());
        });
        cg.set_limit(cg.usage() + W as u64 * ROOM_MIB * MIB);
        let start = Instant::now();
        while stopped.lock().unwrap().is_none() {
            assert!(start.elapsed() < Duration::from_secs(60), "never stopped");
            let _ = http_get(&h.nginx.addr, &format!("/stop/leak?mb={G_MIB}"), T);
        }
    });
    let stop = stopped.lock().unwrap().unwrap();
    // Clients keep coming while the pool stops and after it is gone.
    let mut after = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        if h.nginx.get("/stop/") == 502 {
            after += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(after >= 10, "{after} 502s after the stop");
    wait_for(T, "the stopped master to exit", || {
        !Path::new(&format!("/proc/{master}")).exists()
            || std::fs::read_to_string(format!("/proc/{master}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    // nginx's own word on each: a request cut under it was the kill's
    // (its 502 and the stop race by milliseconds); a connection nothing
    // took was the stop's.
    let lines = h.access();
    let failed = failed_of(&lines, h, "stop");
    let errors = std::fs::read_to_string(h.dir.path().join("error.log")).unwrap();
    let error_of = |conn: u64| {
        errors
            .lines()
            .find(|e| e.contains(&format!(" *{conn} ")))
            .unwrap_or_else(|| panic!("no error line for connection {conn}"))
    };
    let want = tally(failed.iter().map(|l| {
        let e = error_of(l.conn);
        let cause = if e.contains("prematurely closed") || e.contains("reset by peer") {
            assert!(l.path == "/stop/leak", "{l:?}: {e}");
            "worker_oom_killed"
        } else {
            assert!(
                e.contains("No such file") || e.contains("Connection refused"),
                "{e}"
            );
            assert!(l.at >= stop, "{l:?} refused before the stop");
            "pool_stopped_after_oom"
        };
        (l.status, cause)
    }));
    check_pool(h, "stop", &want);
    let kills = kernel_kills(since, &cg.path);
    assert_eq!(
        h.e.scrape()
            .get("badgateway_oom_kills_total", &[("pool", "stop")]),
        Some(kills.len() as f64),
        "every kill of the cgroup is the pool's"
    );
    kills
}

/// The suggested `--max-requests` must keep a worker under its share of the
/// leak pool's limit, and not be absurdly low.
///
/// The pool's cgroup limit L was set to its usage at rest plus ROOM MiB a
/// worker; at rest the cgroup holds the master M and W fresh workers of B
/// each (their own pages; what they share with the master is charged once),
/// so (L - M) / W - B = ROOM. A worker that keeps g = G MiB per request
/// reaches its share after ((L - M) / W - B) / g = ROOM / G requests (30):
/// a suggestion must be below that. Above a quarter of it (7) it is not
/// absurdly low: the exporter aims at 80% of the share, less the jitter,
/// and counts a fresh worker by its RSS, which includes the pages it
/// shares with the master, so it comes out lower than 30, not a tenth.
fn max_requests_range() -> std::ops::Range<f64> {
    let reach = (ROOM_MIB / G_MIB) as f64;
    reach / 4.0..reach
}

/// The suggested `--max-requests` of `pool` in a report's JSON.
fn suggested_max_requests(report: &Value, pool: &str) -> Option<f64> {
    let recycle = report["recovery"]
        .as_array()?
        .iter()
        .find(|o| o["name"] == "recycle_workers")?;
    recycle["numbers"].as_array()?.iter().find_map(|n| {
        (n[0] == format!("{pool} suggested --max-requests"))
            .then(|| n[1].as_str()?.parse().ok())
            .flatten()
    })
}

const RECOVERY_ORDER: [&str; 5] = [
    "reduce_request_scope",
    "add_ram",
    "recycle_workers",
    "tune_backlog_or_timeout",
    "escalate",
];

/// What every diagnosis of the host must say, text and JSON.
fn check_diagnosis(what: &str, json: &Value, text: &str, kills: &[(&str, KernelKill)]) {
    eprintln!("--- {what} ---\n{text}");
    assert_eq!(json["severity"], "critical", "{what}");
    // The OOM kills, with pid, time and victim memory as the kernel logged
    // them.
    let rows = json["oom_kills"]["kills"].as_array().unwrap();
    for (pool, k) in kills {
        let row = rows
            .iter()
            .find(|r| r["pid"] == k.pid)
            .unwrap_or_else(|| panic!("{what}: kill of {} missing: {rows:#?}", k.pid));
        assert_eq!(row["pool"], *pool, "{what}: {row}");
        assert_eq!(row["anon_bytes"], k.anon_kb * 1024, "{what}: {row}");
        assert_eq!(row["file_bytes"], k.file_kb * 1024, "{what}: {row}");
        assert_eq!(row["shmem_bytes"], k.shmem_kb * 1024, "{what}: {row}");
        let at = rfc3339(k.at);
        let logged = row["at"].as_str().unwrap();
        assert!(
            within_seconds(logged, &at, 2),
            "{what}: kill of {} at {logged}, the kernel says {at}",
            k.pid
        );
        assert!(text.contains(&format!("pid {} ", k.pid)), "{what}");
        assert!(
            text.contains(&format!("anon {:.1} MiB", k.anon_kb as f64 / 1024.0)),
            "{what}: the victim's memory of {}",
            k.pid
        );
    }
    // The leaking path, as the request in flight on the workers that died.
    let in_flight = json["failures"]["in_flight_on_dead_workers"]
        .as_array()
        .unwrap();
    let top_leak = in_flight.iter().find(|r| r["pool"] == "leak").unwrap();
    assert_eq!(
        (&top_leak["method"], &top_leak["path"]),
        (&Value::from("GET"), &Value::from("/leak")),
        "{what}"
    );
    assert!(text.contains("leak GET /leak x"), "{what}");
    // The recovery options in the runbook's order (docs/runbook.md).
    let names: Vec<&str> = json["recovery"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, RECOVERY_ORDER, "{what}");
    let titles: Vec<usize> = [
        "1. Reduce the request scope",
        "2. Add RAM",
        "3. Recycle workers",
        "4. Fix the backlog or the timeout",
        "5. Escalate as unknown",
    ]
    .iter()
    .map(|t| text.find(t).unwrap_or_else(|| panic!("{what}: no {t:?}")))
    .collect();
    assert!(titles.windows(2).all(|w| w[0] < w[1]), "{what}: order");
    // A --max-requests that recycles a worker before it reaches its share.
    let range = max_requests_range();
    let suggested = suggested_max_requests(json, "leak");
    eprintln!("{what}: suggested --max-requests {suggested:?}, range {range:?}");
    let s = suggested.unwrap_or_else(|| panic!("{what}: no --max-requests suggested"));
    assert!(
        range.contains(&s),
        "{what}: --max-requests {s} not in {range:?}"
    );
    let advice = json["recovery"][2]["advice"].as_str().unwrap();
    assert!(
        advice.contains(&format!("for pool leak, --max-requests {s} ")),
        "{what}: the advice names the pool whose workers were killed: {advice}"
    );
}

/// A report's failed requests by (pool, status, cause).
fn by_cause(report: &Value) -> BTreeMap<(String, u16, String), u64> {
    report["failures"]["by_cause"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                (
                    r["pool"].as_str().unwrap().to_string(),
                    r["status"].as_u64().unwrap() as u16,
                    r["cause"].as_str().unwrap().to_string(),
                ),
                r["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn rfc3339(t: SystemTime) -> String {
    badgateway_exporter::diagnose::rfc3339(t)
}

/// Two RFC 3339 times of whole seconds at most `n` seconds apart.
fn within_seconds(a: &str, b: &str, n: i64) -> bool {
    let secs = |s: &str| -> i64 {
        let t = s.trim_end_matches('Z');
        let (date, time) = t.split_once('T').unwrap();
        let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
        let h: Vec<i64> = time.split(':').map(|x| x.parse().unwrap()).collect();
        // Same day is enough for a test that lasts minutes, except at
        // midnight: count the day too.
        ((d[0] * 12 + d[1]) * 31 + d[2]) * 86_400 + h[0] * 3600 + h[1] * 60 + h[2]
    };
    (secs(a) - secs(b)).abs() <= n
}

/// Run `badgateway_exporter diagnose` as `uid` (None: root).
fn diagnose(h: &Host, format: &str, uid: Option<u32>) -> (i32, String) {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_badgateway_exporter"));
    cmd.arg("diagnose")
        .arg(format!("--config.file={}", h.config.display()))
        .arg(format!("--format={format}"))
        .arg("--since=10m")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    let out = cmd.output().expect("running badgateway_exporter diagnose");
    (
        out.status.code().expect("diagnose ended by a signal"),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn every_502_has_its_cause_and_diagnose_names_the_oom_kills() {
    let started = Instant::now();
    let since = kmsg_records().last().map_or(0, |r| r.0);
    let h = Host::start();
    let poller = Poller::start(&h.e.addr);

    let kills = oom_kills(&h, since);
    eprintln!(
        "{:>5.1}s OOM kills: {}",
        started.elapsed().as_secs_f64(),
        kills.len()
    );
    timeouts(&h);
    eprintln!("{:>5.1}s timeouts", started.elapsed().as_secs_f64());
    recycling(&h);
    eprintln!("{:>5.1}s recycling", started.elapsed().as_secs_f64());
    pool_down(&h);
    eprintln!("{:>5.1}s pool down", started.elapsed().as_secs_f64());
    let stop_kills = stopped_after_oom(&h, since);
    assert!(!stop_kills.is_empty());
    eprintln!(
        "{:>5.1}s stopped after OOM",
        started.elapsed().as_secs_f64()
    );

    // Every 502 and 504 of the access log, counted once: the causes sum to
    // the log's failures exactly, none under pool "-".
    let lines = h.access();
    let failed: Vec<&Line> = lines
        .iter()
        .filter(|l| matches!(l.status, 502 | 504))
        .collect();
    let s = h.e.scrape();
    let total = s.sum("badgateway_failed_requests_total", &[]);
    assert_eq!(total, failed.len() as f64, "{}", s.text);
    assert!(counted(&s, "-").is_empty(), "{}", s.text);
    // Every failed request has its own connection, as nginx numbered them.
    let mut conns: Vec<u64> = failed.iter().map(|l| l.conn).collect();
    conns.sort();
    conns.dedup();
    assert_eq!(conns.len(), failed.len());
    let other = s.sum("badgateway_failed_requests_total", &[("cause", "other")]);
    let latencies = poller.latencies(&h, &lines);
    drop(poller);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    eprintln!(
        "FIGURES: {} failed requests, {:.1}% with a cause other than `other`; \
         line to /metrics: p50 {:?}, p90 {:?}, max {:?}",
        failed.len(),
        100.0 * (total - other) / total,
        pct(0.5),
        pct(0.9),
        latencies.last().unwrap()
    );
    assert_eq!(other, 0.0, "{}", s.text);
    assert_eq!(latencies.len(), failed.len());
    assert!(
        *latencies.last().unwrap() < Duration::from_secs(1),
        "{latencies:?}"
    );

    // 6. The diagnosis, live and one-shot.
    let all_kills: Vec<(&str, KernelKill)> = (kills.iter().map(|k| ("leak", k.clone())))
        .chain(stop_kills.iter().map(|k| ("stop", k.clone())))
        .collect();
    std::thread::sleep(Duration::from_millis(1200));
    let (st, text) = http_get(&h.e.addr, "/diagnose", T).unwrap();
    assert_eq!(st, 200);
    let (st, json) = http_get(&h.e.addr, "/diagnose?format=json", T).unwrap();
    assert_eq!(st, 200);
    let json: Value = serde_json::from_str(&json).unwrap();
    check_diagnosis("/diagnose", &json, &text, &all_kills);
    let expected = h.expected.lock().unwrap().clone();
    assert_eq!(by_cause(&json), expected, "/diagnose's failures by cause");

    let (code, text) = diagnose(&h, "text", None);
    assert_eq!(code, 2, "{text}");
    let (code, json) = diagnose(&h, "json", None);
    assert_eq!(code, 2, "{json}");
    let json: Value = serde_json::from_str(&json).unwrap();
    // A run after the fact reads the kernel's ring buffer, which other
    // OOM kills on a busy host rotate: the kills it must name are those
    // the buffer still holds after it ran.
    let held: Vec<(&str, KernelKill)> = [("leak", &h.cg_leak), ("stop", &h.cg_stop)]
        .into_iter()
        .flat_map(|(pool, cg)| {
            kernel_kills(since, &cg.path)
                .into_iter()
                .map(move |k| (pool, k))
        })
        .collect();
    eprintln!(
        "the kernel log still holds {} of the {} kills",
        held.len(),
        all_kills.len()
    );
    assert!(!held.is_empty(), "every kill rotated out of the kernel log");
    check_diagnosis("diagnose", &json, &text, &held);
    // The one-shot run judged the logs' failures itself, after the fact,
    // to the same causes: exactly, for each pool whose kills the kernel log
    // still holds. For a pool whose kills rotated out, all it has is
    // Gunicorn's "was sent SIGKILL" (a crash, by the table) and a master
    // that stopped (pool_down): the same number of failures.
    let expected = h.expected.lock().unwrap().clone();
    let got = by_cause(&json);
    let of =
        |m: &BTreeMap<(String, u16, String), u64>, pool: &str| -> BTreeMap<(u16, String), u64> {
            m.iter()
                .filter(|((p, ..), _)| p == pool)
                .map(|((_, st, c), n)| ((*st, c.clone()), *n))
                .collect()
        };
    for pool in h.pools.keys() {
        let all_held = all_kills
            .iter()
            .filter(|(p, _)| p == pool)
            .all(|(_, k)| held.iter().any(|(_, x)| x.pid == k.pid));
        if all_held {
            assert_eq!(of(&got, pool), of(&expected, pool), "diagnose, pool {pool}");
        } else {
            eprintln!(
                "diagnose, pool {pool}, kills rotated out of the kernel log: {:?} for {:?}",
                of(&got, pool),
                of(&expected, pool)
            );
            let total = |m: BTreeMap<(u16, String), u64>| m.values().sum::<u64>();
            assert_eq!(
                total(of(&got, pool)),
                total(of(&expected, pool)),
                "diagnose, pool {pool}"
            );
        }
    }
    assert!(
        got.keys().all(|(p, ..)| h.pools.contains_key(p.as_str())),
        "{got:?}"
    );

    // As nobody: what it could not read, and a verdict all the same.
    let (code, text) = diagnose(&h, "text", Some(65534));
    eprintln!("--- diagnose as nobody ---\n{text}");
    assert!((0..=2).contains(&code), "exit {code}: {text}");
    assert!(text.contains("Could not read"), "{text}");
    assert!(text.contains("kmsg"), "{text}");
    assert!(text.contains("== Verdict: "), "{text}");
    eprintln!("{:>5.1}s done", started.elapsed().as_secs_f64());
}
