//! The whole pipeline with real components: nginx -> Gunicorn in a small
//! memory cgroup -> real OOM kills and 502s, watched by two exporters
//! standing in for two hosts, scraped every second by a real Prometheus
//! that loads alerts/*.yml unchanged, which sends to a real Alertmanager
//! configured from deploy/alertmanager/alertmanager.yml (its receivers
//! pointed at a webhook this test runs). Then every dashboard query runs
//! through Prometheus's HTTP API, and the main dashboard is drawn into
//! target/pipeline/overview.png (Grafana cannot run here).
//!
//! Host A: pool "shop", one worker in a memory cgroup; a leaking endpoint
//! gets it OOM-killed over and over: the 502 burst pages with the cause,
//! `cause="worker_oom_killed"`. Pool "batch" beside it has one worker
//! OOM-killed by a request that did not come through nginx: no 502, so a
//! warning (a ticket) and no page. Host B: pool "api", whose master is
//! stopped: BadGatewayPoolDown, and its 502 burst held back by the
//! inhibition. Needs root (cgroup, /dev/kmsg).
//!
//! With BADGATEWAY_RECORD_ALERT_SERIES=1 it also records what Prometheus
//! scraped into alerts/tests/recorded/pipeline.series.yml
//! (tools/record_alert_series.py), the series of the promtool tests in
//! alerts/tests/pipeline.spec.yml.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use common::cgroup::{oom_protect_conf, Cgroup};
use common::nginx::Nginx;
use common::shipped::{self, runbook_base};
use common::*;

const MIB: u64 = 1 << 20;

/// Dashboard panels whose queries need not return data in this scenario,
/// and why. Queries on NOT_YET_EXPORTED metrics need not either; they must
/// still parse. Every other query must return data.
const NEED_NOT_RETURN_DATA: &[(&str, &str)] = &[];

/// `$__rate_interval` as Grafana would make it for a 1 s scrape interval
/// on a few minutes' range, rounded up to keep the lines smooth.
const RATE_INTERVAL: &str = "10s";

fn binary(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.exists(),
        "{path} is missing: run scripts/test.sh, which installs Debian's {package}"
    );
    p
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn get_json(addr: &str, path: &str) -> Value {
    let (status, body) = http_get(addr, path, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("GET {addr}{path}: {e}"));
    serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("GET {addr}{path}: status {status}, not JSON ({e}): {body}"))
}

/// A real Prometheus on loopback.
struct Prometheus {
    _proc: Proc,
    addr: String,
}

impl Prometheus {
    fn start(dir: &Path, targets: &[&str], alertmanager: &str) -> Prometheus {
        let rule_files: Vec<String> = shipped::rule_files()
            .iter()
            .map(|p| format!("  - {}\n", p.display()))
            .collect();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n{}\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{alertmanager}']\n\
             scrape_configs:\n  - job_name: badgateway\n    static_configs:\n      - targets: [{}]\n",
            rule_files.concat(),
            targets.join(", ")
        );
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, config).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let proc = spawn(
            "prometheus",
            Command::new(binary("/usr/bin/prometheus", "prometheus"))
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap()),
        );
        wait_for(Duration::from_secs(30), "Prometheus to be ready", || {
            matches!(
                http_get(&addr, "/-/ready", Duration::from_secs(2)),
                Ok((200, _))
            )
        });
        Prometheus { _proc: proc, addr }
    }

    /// An instant query; panics if Prometheus rejects it.
    fn query(&self, q: &str, at: Option<f64>) -> Vec<Value> {
        let mut path = format!("/api/v1/query?query={}", urlencode(q));
        if let Some(t) = at {
            path.push_str(&format!("&time={t:.3}"));
        }
        let v = get_json(&self.addr, &path);
        assert_eq!(v["status"], "success", "query {q}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    fn query_range(&self, q: &str, start: f64, end: f64, step: f64) -> Vec<Value> {
        let path = format!(
            "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step}",
            urlencode(q)
        );
        let v = get_json(&self.addr, &path);
        assert_eq!(v["status"], "success", "query {q}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Alerts Prometheus has in `state` (pending, firing).
    fn alerts(&self, state: &str) -> Vec<Value> {
        get_json(&self.addr, "/api/v1/alerts")["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["state"] == state)
            .collect()
    }
}

/// A real Alertmanager with the shipped example configuration, its
/// receivers pointed at `webhook` and its waits shortened.
struct Alertmanager {
    _proc: Proc,
    addr: String,
}

impl Alertmanager {
    fn start(dir: &Path, webhook: &str) -> Alertmanager {
        let mut cfg =
            shipped::read_yaml(&shipped::repo_path("deploy/alertmanager/alertmanager.yml"));
        // The routes and inhibition rules stay as shipped; only where the
        // notifications go and how long Alertmanager waits change.
        for r in cfg["receivers"].as_array_mut().expect("receivers") {
            let name = r["name"].as_str().unwrap().to_string();
            *r = json!({
                "name": name,
                "webhook_configs": [{"url": format!("http://{webhook}/{name}"), "send_resolved": false}],
            });
        }
        fn shorten(route: &mut Value) {
            route["group_wait"] = json!("1s");
            route["group_interval"] = json!("2s");
            for r in route["routes"].as_array_mut().into_iter().flatten() {
                shorten(r);
            }
        }
        shorten(&mut cfg["route"]);
        let path = dir.join("alertmanager.yml");
        std::fs::write(&path, serde_norway::to_string(&cfg).unwrap()).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let proc = spawn(
            "alertmanager",
            Command::new(binary(
                "/usr/bin/prometheus-alertmanager",
                "prometheus-alertmanager",
            ))
            .arg(format!("--config.file={}", path.display()))
            .arg(format!("--storage.path={}", dir.join("am").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("alertmanager.log")).unwrap()),
        );
        wait_for(Duration::from_secs(30), "Alertmanager to be ready", || {
            matches!(
                http_get(&addr, "/-/ready", Duration::from_secs(2)),
                Ok((200, _))
            )
        });
        Alertmanager { _proc: proc, addr }
    }

    fn alerts(&self) -> Vec<Value> {
        get_json(&self.addr, "/api/v2/alerts")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// GET `path` straight from a Gunicorn unix socket, bypassing nginx; the
/// status, or None when the connection ended without an answer (the
/// worker was killed).
fn get_unix(sock: &Path, path: &str) -> Option<u16> {
    let mut s = std::os::unix::net::UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ').nth(1)?.parse().ok()
}

/// The notifications Alertmanager sent: (receiver path, alert).
type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// A webhook receiver on loopback, storing every alert of every
/// notification with the path it was posted to.
fn webhook(stop: Arc<AtomicBool>) -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    let received: Received = Arc::default();
    let store = received.clone();
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let (head, body) = loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break (String::new(), Vec::new());
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).into_owned();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    let mut body = buf[i + 4..].to_vec();
                    while body.len() < len {
                        let n = s.read(&mut chunk).unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        body.extend_from_slice(&chunk[..n]);
                    }
                    break (head, body);
                }
            };
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                let mut st = store.lock().unwrap();
                for a in v["alerts"].as_array().into_iter().flatten() {
                    st.push((path.clone(), a.clone()));
                }
            }
        }
    });
    (addr, received)
}

fn labels_match(a: &Value, want: &[(&str, &str)]) -> bool {
    want.iter().all(|(k, v)| a["labels"][*k] == *v)
}

/// Traffic through nginx in a thread until `stop`: GET `path` every `pause`.
fn load(
    addr: String,
    path: &'static str,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<BTreeMap<u16, u64>> {
    std::thread::spawn(move || {
        let mut statuses = BTreeMap::new();
        while !stop.load(Ordering::SeqCst) {
            let s = http_get(&addr, path, Duration::from_secs(30)).map_or(0, |r| r.0);
            *statuses.entry(s).or_insert(0) += 1;
            std::thread::sleep(pause);
        }
        statuses
    })
}

#[test]
fn oom_kills_and_502s_reach_alertmanager_and_every_dashboard_query_answers() {
    let started = Instant::now();
    let t_start = now();
    // Declared first so that it is dropped last, after Gunicorn.
    let cg = Cgroup::create("pipeline");
    let dir = TempDir::new("pipeline");
    let d = dir.path();
    let (dir_a, dir_b) = (d.join("host-a"), d.join("host-b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();

    let stop_hook = Arc::new(AtomicBool::new(false));
    let (hook, received) = webhook(stop_hook.clone());
    let am = Alertmanager::start(d, &hook);

    // Host A: one Gunicorn worker in a memory cgroup with 60 MiB of room.
    // The master sits in a cgroup of its own beside it: in a storm of
    // kills the master, sharing the workers' cgroup, is now and then the
    // only task left while a killed worker's pages are still charged, and
    // the kernel takes it (then the pool is down, which holds back the 502
    // page as it should, but this scenario is about the workers). Lowering
    // its oom_score_adj to -1000 needs CAP_SYS_RESOURCE, which a sandboxed
    // root may not have. Each worker moves itself into `workers` after
    // fork (tests/apps/oom_protect_master.py).
    let master_cg = cg.child("master");
    let workers_cg = cg.child("workers");
    let conf = oom_protect_conf();
    let shop_log = dir_a.join("shop.log");
    let shop = Gunicorn::start(GunicornOpts {
        workers: 1,
        bind: format!("unix:{}/shop.sock", dir_a.display()),
        pidfile: dir_a.join("shop.pid"),
        extra: &[
            "--timeout",
            "30",
            "--config",
            &conf,
            "--error-logfile",
            &shop_log.display().to_string(),
        ],
        pre_exec: Some(format!(
            "{}; export BGW_WORKER_CGROUP={}",
            master_cg.enter_protected(),
            workers_cg.file("cgroup.procs").display()
        )),
        venv: None,
    });
    workers_cg.set_limit(workers_cg.usage() + 60 * MIB);
    // The pool's own cgroup (the master's) has a limit too, for the
    // dashboard's memory-against-limit panels.
    master_cg.set_limit(master_cg.usage() + 64 * MIB);
    // Pool "batch" on host A, set up the same way with a cgroup of its
    // own; nginx does not know it.
    let batch_master_cg = cg.child("batch-master");
    let batch_workers_cg = cg.child("batch-workers");
    let batch = Gunicorn::start(GunicornOpts {
        workers: 1,
        bind: format!("unix:{}/batch.sock", dir_a.display()),
        pidfile: dir_a.join("batch.pid"),
        extra: &["--timeout", "30", "--config", &conf],
        pre_exec: Some(format!(
            "{}; export BGW_WORKER_CGROUP={}",
            batch_master_cg.enter_protected(),
            batch_workers_cg.file("cgroup.procs").display()
        )),
        venv: None,
    });
    batch_workers_cg.set_limit(batch_workers_cg.usage() + 60 * MIB);
    let sock_a = format!("unix:{}/shop.sock", dir_a.display());
    let nginx_a = Nginx::start(
        &dir_a,
        &format!(
            "location /shop/ {{ proxy_pass http://{sock_a}:/; }}\n\
             location /shop-slow/ {{ proxy_pass http://{sock_a}:/; proxy_read_timeout 1s; }}"
        ),
    );
    let exporter_a = Exporter::start(
        Some(&format!(
            "pools:\n  - name: shop\n    server: gunicorn\n    pidfile: {}\n  - name: batch\n    server: gunicorn\n    pidfile: {}\n{}",
            shop.pidfile.display(),
            batch.pidfile.display(),
            nginx_a.config("edge")
        )),
        &[],
    );

    // Host B: pool "api", to be stopped.
    let api = Gunicorn::start(GunicornOpts {
        workers: 1,
        bind: format!("unix:{}/api.sock", dir_b.display()),
        pidfile: dir_b.join("api.pid"),
        extra: &[],
        pre_exec: None,
        venv: None,
    });
    let sock_b = format!("unix:{}/api.sock", dir_b.display());
    let nginx_b = Nginx::start(
        &dir_b,
        &format!("location /api/ {{ proxy_pass http://{sock_b}:/; }}"),
    );
    let exporter_b = Exporter::start(
        Some(&format!(
            "pools:\n  - name: api\n    server: gunicorn\n    pidfile: {}\n{}",
            api.pidfile.display(),
            nginx_b.config("edge")
        )),
        &[],
    );
    let (inst_a, inst_b) = (exporter_a.addr.clone(), exporter_b.addr.clone());
    let prom = Prometheus::start(d, &[&inst_a, &inst_b], &am.addr);
    wait_for(Duration::from_secs(30), "both exporters scraped", || {
        prom.query("up{job=\"badgateway\"} == 1", None).len() == 2
    });

    // Healthy traffic first, so that nginx has seen both upstreams and the
    // exporters tie them to their pools; a 500 the app sends itself and
    // two 504s, for the dashboard's panels.
    for _ in 0..5 {
        assert_eq!(nginx_a.get("/shop/"), 200);
        assert_eq!(nginx_b.get("/api/"), 200);
    }
    assert_eq!(nginx_a.get("/shop/sleep?s=oops"), 500);
    for _ in 0..2 {
        assert_eq!(nginx_a.get("/shop-slow/sleep?s=1.5"), 504);
    }
    wait_for(
        Duration::from_secs(30),
        "upstreams tied to their pools",
        || {
            prom.query("badgateway:upstream_pool:last1h{pool=~\"shop|api\"}", None)
                .len()
                == 2
        },
    );

    // Batch's worker is OOM-killed by requests sent straight to its
    // socket: no request through nginx fails.
    let batch_sock = dir_a.join("batch.sock");
    let batch_worker = batch.worker_pids();
    for _ in 0..20 {
        if get_unix(&batch_sock, "/leak?mb=20").is_none() {
            break;
        }
    }
    wait_for(
        Duration::from_secs(30),
        "batch's worker killed and replaced",
        || {
            let now = batch.worker_pids();
            !now.is_empty() && now != batch_worker
        },
    );

    // Host B's master goes away: BadGatewayPoolDown after its minute.
    drop(api);
    let stop = Arc::new(AtomicBool::new(false));
    // Host A: a leaking request every 200 ms gets the worker OOM-killed
    // every third one, while 4 ordinary requests a second go through.
    let leak = load(
        nginx_a.addr.clone(),
        "/shop/leak?mb=20",
        Duration::from_millis(200),
        stop.clone(),
    );
    let ok = load(
        nginx_a.addr.clone(),
        "/shop/",
        Duration::from_millis(250),
        stop.clone(),
    );

    let got = |path: &str, want: &[(&str, &str)]| -> Option<Value> {
        received
            .lock()
            .unwrap()
            .iter()
            .find(|(p, a)| p == path && labels_match(a, want))
            .map(|(_, a)| a.clone())
    };
    let dump = || {
        format!(
            "received: {:#?}\nPrometheus firing: {:#?}\nPrometheus pending: {:#?}\n--- shop's Gunicorn log, last lines ---\n{}",
            received.lock().unwrap(),
            prom.alerts("firing"),
            prom.alerts("pending"),
            tail_lines(&shop_log, 40)
        )
    };
    let wait_alert = |path: &str, want: &[(&str, &str)], timeout: Duration| -> Value {
        let t = Instant::now();
        loop {
            if let Some(a) = got(path, want) {
                eprintln!(
                    "{:>6.1}s {want:?} reached {path}",
                    started.elapsed().as_secs_f64()
                );
                return a;
            }
            assert!(
                t.elapsed() < timeout,
                "no {want:?} at {path} within {timeout:?}\n{}",
                dump()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let base = runbook_base();
    let check = |a: &Value, name: &str, severity: &str, pool: &str, instance: &str| {
        assert_eq!(a["labels"]["severity"], severity, "{a:#}");
        assert_eq!(a["labels"]["job"], "badgateway", "{a:#}");
        assert_eq!(a["labels"]["pool"], pool, "{a:#}");
        assert_eq!(a["labels"]["instance"], instance, "{a:#}");
        assert_eq!(
            a["annotations"]["runbook_url"],
            format!("{base}#{}", name.to_lowercase()),
            "{a:#}"
        );
        assert!(
            a["annotations"]["description"]
                .as_str()
                .is_some_and(|d| d.contains(pool) && d.contains(instance)),
            "{a:#}"
        );
    };

    // An OOM kill is a cause, not a symptom: a ticket at once, for host
    // A's pools only. Batch's kill failed no request and pages nobody.
    let batch_oom = wait_alert(
        "/ticket",
        &[
            ("alertname", "BadGatewayWorkerOOMKilled"),
            ("pool", "batch"),
        ],
        Duration::from_secs(60),
    );
    check(
        &batch_oom,
        "BadGatewayWorkerOOMKilled",
        "warning",
        "batch",
        &inst_a,
    );
    let oom = wait_alert(
        "/ticket",
        &[("alertname", "BadGatewayWorkerOOMKilled"), ("pool", "shop")],
        Duration::from_secs(60),
    );
    check(
        &oom,
        "BadGatewayWorkerOOMKilled",
        "warning",
        "shop",
        &inst_a,
    );

    // The pool down pages; only then does traffic reach host B's dead pool.
    let down = wait_alert(
        "/page",
        &[("alertname", "BadGatewayPoolDown"), ("pool", "api")],
        Duration::from_secs(100),
    );
    check(&down, "BadGatewayPoolDown", "critical", "api", &inst_b);
    let dead = load(
        nginx_b.addr.clone(),
        "/api/",
        Duration::from_millis(200),
        stop.clone(),
    );

    // Host A's 502s page after the burst's minute, naming their cause.
    let burst = wait_alert(
        "/page",
        &[("alertname", "BadGateway502Burst"), ("pool", "shop")],
        Duration::from_secs(120),
    );
    check(&burst, "BadGateway502Burst", "critical", "shop", &inst_a);
    assert_eq!(burst["labels"]["cause"], "worker_oom_killed", "{burst:#}");
    assert!(
        burst["annotations"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("the leading cause is worker_oom_killed")),
        "{burst:#}"
    );
    assert!(
        got(
            "/page",
            &[("alertname", "BadGatewayPoolDown"), ("pool", "shop")]
        )
        .is_none(),
        "host A's master was killed too: {}",
        dump()
    );

    // Host B's 502 burst fires in Prometheus, and Alertmanager holds it
    // back while its pool is down.
    let t = Instant::now();
    let inhibited = loop {
        let am_alerts = am.alerts();
        if let Some(a) = am_alerts
            .iter()
            .find(|a| labels_match(a, &[("alertname", "BadGateway502Burst"), ("pool", "api")]))
        {
            break a.clone();
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "host B's burst never reached Alertmanager\n{}",
            dump()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!(
        "{:>6.1}s host B's burst in Alertmanager",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(inhibited["labels"]["instance"], inst_b.as_str());
    assert_eq!(inhibited["status"]["state"], "suppressed", "{inhibited:#}");
    assert!(
        !inhibited["status"]["inhibitedBy"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{inhibited:#}"
    );
    // Several group intervals later it still has not been sent anywhere.
    std::thread::sleep(Duration::from_secs(6));
    for (path, a) in received.lock().unwrap().iter() {
        assert!(
            !labels_match(a, &[("alertname", "BadGateway502Burst"), ("pool", "api")]),
            "the inhibited burst reached {path}: {a:#}"
        );
        assert!(
            !labels_match(
                a,
                &[
                    ("alertname", "BadGatewayWorkerOOMKilled"),
                    ("instance", &inst_b)
                ]
            ),
            "host B has no pool that was OOM-killed: {a:#}"
        );
        assert!(
            !(path == "/page" && labels_match(a, &[("pool", "batch")])),
            "batch's OOM kill failed no request, yet it paged: {a:#}"
        );
        assert!(
            a["labels"]["severity"] == "critical" || path == "/ticket",
            "a warning reached {path}: {a:#}"
        );
    }

    stop.store(true, Ordering::SeqCst);
    let leak = leak.join().unwrap();
    let ok = ok.join().unwrap();
    let dead = dead.join().unwrap();
    eprintln!("statuses: leak {leak:?}, ok {ok:?}, dead pool {dead:?}");
    if std::env::var_os("BADGATEWAY_RECORD_ALERT_SERIES").is_some() {
        let out = Command::new("python3")
            .arg(shipped::repo_path("tools/record_alert_series.py"))
            .args(["record", "--prometheus"])
            .arg(format!("http://{}", prom.addr))
            .arg("--start")
            .arg(format!("{t_start:.0}"))
            .arg("--end")
            .arg(format!("{:.0}", now()))
            .args(["--step", "1", "--out"])
            .arg(shipped::repo_path("alerts/tests/recorded/pipeline.series.yml"))
            .arg("--note")
            .arg(format!(
                "tests/pipeline.rs with BADGATEWAY_RECORD_ALERT_SERIES=1: host a = {inst_a} (pools shop, batch), host b = {inst_b} (pool api)"
            ))
            .output()
            .expect("running tools/record_alert_series.py");
        assert!(
            out.status.success(),
            "recording failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    }
    assert!(leak.get(&502).copied().unwrap_or(0) >= 3, "{leak:?}");
    assert!(dead.get(&502).copied().unwrap_or(0) >= 10, "{dead:?}");
    let alerts_done = started.elapsed();

    // Every dashboard query through Prometheus's API.
    let t_end = now();
    let range = format!("{}s", (t_end - t_start).ceil() as u64);
    let vars = [
        ("job", ".+"),
        ("instance", ".+"),
        ("pool", ".+"),
        ("__rate_interval", RATE_INTERVAL),
        ("__range", range.as_str()),
        ("__interval", "2s"),
    ];
    let mut all_panels = Vec::new();
    let mut missing = Vec::new();
    let mut plotted = Vec::new();
    for (path, board) in shipped::dashboards() {
        let is_main = path.ends_with("badgateway-overview.json");
        for p in shipped::panels(&board) {
            all_panels.push(p["title"].as_str().unwrap_or("").to_string());
        }
        for q in shipped::queries(&board) {
            let expr = shipped::substitute(&q.expr, &vars);
            let future = shipped::selectors(
                &shipped::parse(&expr)
                    .unwrap_or_else(|e| panic!("{} / {}: {e}\n{expr}", q.dashboard, q.panel)),
            )
            .iter()
            .any(shipped::needs_future);
            // Prometheus parses and runs every one, or the query fails.
            let series = if q.instant {
                prom.query(&expr, Some(t_end))
            } else {
                prom.query_range(&expr, t_start, t_end, 2.0)
            };
            let excused = NEED_NOT_RETURN_DATA.iter().any(|(p, _)| *p == q.panel);
            if series.is_empty() && !future && !excused {
                missing.push(format!("{} / {}: {expr}", q.dashboard, q.panel));
            }
            if is_main && q.panel_type != "variable" && q.panel_type != "annotation" {
                plotted.push(json!({
                    "panel": q.panel,
                    "type": q.panel_type,
                    "instant": q.instant,
                    "future": future,
                    "legend": legend_of(&board, &q.panel, &q.expr),
                    "series": series,
                }));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "dashboard queries with no data:\n{}",
        missing.join("\n")
    );
    for (p, _) in NEED_NOT_RETURN_DATA {
        assert!(
            all_panels.iter().any(|t| t == p),
            "NEED_NOT_RETURN_DATA names no panel: {p}"
        );
    }

    // Heartbeat ages, as Prometheus stored them over the whole run: some,
    // and never a negative one (a worker still importing its app has a
    // tmp file whose mtime is wall-clock time, which Gunicorn subtracts
    // from its monotonic clock).
    let hb = "badgateway_worker_heartbeat_age_seconds";
    assert!(!prom.query_range(hb, t_start, t_end, 1.0).is_empty());
    let negative = prom.query_range(&format!("{hb} < 0"), t_start, t_end, 1.0);
    assert!(negative.is_empty(), "negative heartbeat ages: {negative:?}");

    // The picture of the main dashboard at the end of the scenario.
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pipeline");
    std::fs::create_dir_all(&out_dir).unwrap();
    let data = out_dir.join("overview.json");
    let png = out_dir.join("overview.png");
    std::fs::write(
        &data,
        serde_json::to_string(&json!({
            "title": "badgateway / Overview",
            "start": t_start,
            "end": t_end,
            "panels": plotted,
        }))
        .unwrap(),
    )
    .unwrap();
    let _ = std::fs::remove_file(&png);
    let python = plot_python();
    let out = Command::new(&python)
        .arg(shipped::repo_path("tools/plot_dashboard.py"))
        .arg(&data)
        .arg(&png)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "plotting failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 50_000, "{} is {size} bytes", png.display());
    eprintln!(
        "alerts checked after {alerts_done:?}; the whole test took {:?}; picture: {}",
        started.elapsed(),
        png.display()
    );
    drop(prom);
    drop(exporter_a);
    drop(exporter_b);
    drop(nginx_a);
    drop(nginx_b);
    drop(shop);
    drop(batch);
    stop_hook.store(true, Ordering::SeqCst);
}

/// The legend format of the target of `panel` whose expression is `expr`.
fn legend_of(board: &Value, panel: &str, expr: &str) -> String {
    shipped::panels(board)
        .into_iter()
        .filter(|p| p["title"] == panel)
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .find(|t| t["expr"] == expr)
        .and_then(|t| t["legendFormat"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The Python with matplotlib that scripts/test.sh installs under target/.
fn plot_python() -> PathBuf {
    let p = std::env::var_os("BADGATEWAY_PLOT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| shipped::repo_path("target/plot-venv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/test.sh, which installs matplotlib into target/plot-venv",
        p.display()
    );
    p
}

/// The last `n` lines of a file, or why it cannot be read.
fn tail_lines(path: &std::path::Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("{}: {e}", path.display()),
    }
}
