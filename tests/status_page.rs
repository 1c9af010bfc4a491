//! The status page in a real browser: real nginx in front of a real
//! Gunicorn pool in a small memory cgroup, a leaking endpoint driven until
//! the kernel OOM-kills workers and nginx answers 502, and the exporter's
//! `/` loaded in headless Chromium (Debian's `chromium`, which
//! scripts/test.sh installs). The rendered DOM must hold the 502 bars with
//! the cause `worker_oom_killed`, the OOM marks in the same minutes, and a
//! verdict that names the kills and the recovery numbers. Screenshots go
//! to target/status-page/.
//!
//! A second test writes hostile lines into nginx's logs (`<script>` in an
//! upstream and a path, a line of 1 MB) and checks the page shows them
//! escaped or not at all. Needs root.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::cgroup::{oom_protect_conf, Cgroup};
use common::kmsg::{kernel_kills, kmsg_records};
use common::nginx::Nginx;
use common::*;

const T: Duration = Duration::from_secs(30);
const MIB: u64 = 1 << 20;
const W: usize = 2;
const ROOM_MIB: u64 = 60;

/// An access format with the fields the join needs, and `$msec` so the
/// test knows each line's time.
const FORMAT: &str = r#"$remote_addr [$time_local] "$request" $status $body_bytes_sent rt=$request_time uct="$upstream_connect_time" uht="$upstream_header_time" urt="$upstream_response_time" ua="$upstream_addr" us="$upstream_status" conn=$connection msec=$msec"#;

fn chromium() -> PathBuf {
    let found = ["/usr/bin/chromium", "/usr/lib/chromium/chromium"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    found.expect("Debian's chromium is not installed: run scripts/test.sh, which installs it")
}

/// Headless Chromium on `url` with `args` (`--dump-dom`, `--screenshot`),
/// a fresh profile each time; its stdout.
fn chromium_run(url: &str, args: &[&str]) -> String {
    let profile = TempDir::new("chromium");
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("running chromium");
    assert!(
        out.status.success(),
        "chromium {args:?} {url}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn screenshot(url: &str, name: &str, size: &str, extra: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/status-page");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let mut args = vec![
        format!("--screenshot={}", path.display()),
        format!("--window-size={size}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    chromium_run(url, &args);
    let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    assert!(len > 10_000, "{} is {len} bytes", path.display());
    eprintln!("screenshot: {}", path.display());
    path
}

/// The attributes of every element in `dom` whose start tag begins with
/// `open` (e.g. `<rect class="bar"`), as Chromium serializes them.
fn elements(dom: &str, open: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = dom[from..].find(open) {
        let start = from + i + 1;
        let end = start + dom[start..].find('>').unwrap();
        let tag = &dom[start..end];
        let mut attrs = BTreeMap::new();
        let mut rest = tag.split_once(' ').map_or("", |x| x.1);
        while let Some((k, v)) = rest.split_once("=\"") {
            let (val, r) = v.split_once('"').unwrap();
            attrs.insert(k.trim().to_string(), val.to_string());
            rest = r;
        }
        out.push(attrs);
        from = end;
    }
    out
}

/// The part of `dom` inside the element that starts with `open`, up to
/// its first `close`.
fn inside<'a>(dom: &'a str, open: &str, close: &str) -> &'a str {
    let at = dom
        .find(open)
        .unwrap_or_else(|| panic!("no {open} in the page"));
    let end = at + dom[at..].find(close).unwrap();
    &dom[at..end]
}

fn unix_of(rfc3339: &str) -> u64 {
    // 2026-12-07T14:03:00Z, by hand: days from the civil date.
    let (y, m, d) = (
        rfc3339[0..4].parse::<i64>().unwrap(),
        rfc3339[5..7].parse::<i64>().unwrap(),
        rfc3339[8..10].parse::<i64>().unwrap(),
    );
    let (hh, mm, ss) = (
        rfc3339[11..13].parse::<i64>().unwrap(),
        rfc3339[14..16].parse::<i64>().unwrap(),
        rfc3339[17..19].parse::<i64>().unwrap(),
    );
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + hh * 3600 + mm * 60 + ss) as u64
}

/// 502s in the access log, with their `$msec`.
fn failed_lines(access: &Path) -> Vec<(f64, String)> {
    std::fs::read_to_string(access)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\" 502 "))
        .map(|l| {
            let msec: f64 = l.rsplit("msec=").next().unwrap().trim().parse().unwrap();
            (msec, l.to_string())
        })
        .collect()
}

#[test]
fn the_page_draws_oom_kills_beside_their_502s_in_chromium() {
    let cg = Cgroup::create("status-leak");
    let dir = TempDir::new("status-page");
    let d = dir.path();
    let (log, sock) = (d.join("leak.log"), d.join("leak.sock"));
    let (log_arg, conf) = (log.display().to_string(), oom_protect_conf());
    let g = Gunicorn::start(GunicornOpts {
        workers: W,
        bind: format!("unix:{}", sock.display()),
        pidfile: d.join("leak.pid"),
        extra: &["--log-file", &log_arg, "--timeout", "30", "--config", &conf],
        pre_exec: Some(cg.enter_protected()),
        venv: None,
    });
    let upstream = format!("unix:{}", sock.display());
    let nginx = Nginx::start_with(
        d,
        &format!(
            "log_format upstreamlog '{FORMAT}';\n    access_log {}/access.log upstreamlog;",
            d.display()
        ),
        &format!(
            "proxy_next_upstream off;\n        location / {{ proxy_pass http://{upstream}:; }}\n"
        ),
    );
    let yaml = format!(
        "pools:\n  - name: leak\n    server: gunicorn\n    pidfile: {}\n    log_file: {}\n{}",
        g.pidfile.display(),
        log.display(),
        nginx.config_with("edge", FORMAT)
    );
    let e = Exporter::start(
        Some(&yaml),
        &[
            "--collector.proc-events=true",
            "--collector.nginx.interval=250ms",
        ],
    );
    assert_eq!(nginx.get("/leak?mb=0"), 200);
    e.wait_scrape(T, "the upstream tied to its pool", |s| {
        s.get(
            "badgateway_nginx_upstream_pool",
            &[("log", "edge"), ("upstream", &upstream), ("pool", "leak")],
        ) == Some(1.0)
    });
    let url = format!("http://{}/", e.addr);
    // Before anything failed: the page says so.
    let calm = chromium_run(&url, &["--dump-dom"]);
    assert!(calm.contains("No 502s in the last hour."), "{calm}");

    // The leak, from W clients at once, until the kernel has killed three
    // workers and nginx has answered at least two 502s.
    let since = kmsg_records().last().map_or(0, |r| r.0);
    cg.set_limit(cg.usage() + W as u64 * ROOM_MIB * MIB);
    let access = d.join("access.log");
    let done = AtomicBool::new(false);
    let start = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..W {
            sc.spawn(|| {
                while !done.load(Ordering::SeqCst) {
                    let _ = http_get(&nginx.addr, "/leak?mb=2", T);
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
        while kernel_kills(since, &cg.path).len() < 3 || failed_lines(&access).len() < 2 {
            if start.elapsed() > Duration::from_secs(90) {
                done.store(true, Ordering::SeqCst);
                panic!(
                    "fewer than 3 OOM kills or 2 502s: {:?}",
                    kernel_kills(since, &cg.path)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        done.store(true, Ordering::SeqCst);
    });
    g.wait_workers(W, T);
    // Requests in flight when the clients stopped can still end in a kill
    // and a 502: take the counts once they hold still for two seconds.
    let counts = || {
        (
            kernel_kills(since, &cg.path).len(),
            failed_lines(&access).len(),
        )
    };
    let mut last = counts();
    let settled = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let now = counts();
        if now == last || settled.elapsed() > T {
            break;
        }
        last = now;
    }
    let kills = kernel_kills(since, &cg.path);
    let failed = failed_lines(&access);
    e.wait_scrape(T, "every 502 judged", |s| {
        s.get(
            "badgateway_failed_requests_total",
            &[
                ("pool", "leak"),
                ("status", "502"),
                ("cause", "worker_oom_killed"),
            ],
        ) == Some(failed.len() as f64)
            && s.get("badgateway_oom_kills_total", &[("pool", "leak")]) == Some(kills.len() as f64)
    });
    // The page is rebuilt with the diagnosis, once a second.
    std::thread::sleep(Duration::from_millis(2500));

    let dom = chromium_run(&url, &["--dump-dom"]);
    let timeline = inside(&dom, "<svg id=\"timeline\"", "</svg>");
    // 1. The 502 bars, with their cause, add up to nginx's 502s.
    let bars: Vec<_> = elements(timeline, "<rect class=\"bar\"")
        .into_iter()
        .filter(|b| b["data-status"] == "502")
        .collect();
    assert!(!bars.is_empty(), "no 502 bar\n{timeline}");
    assert!(
        bars.iter().all(|b| b["data-cause"] == "worker_oom_killed"),
        "{bars:?}"
    );
    let drawn: u64 = bars
        .iter()
        .map(|b| b["data-count"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(drawn, failed.len() as u64, "{bars:?}\n{failed:?}");
    // Each bar sits in the minute of its 502s.
    for b in &bars {
        let m = unix_of(&b["data-minute"]) as f64;
        let n = failed
            .iter()
            .filter(|(at, _)| *at >= m && *at < m + 60.0)
            .count();
        assert_eq!(n as u64, b["data-count"].parse::<u64>().unwrap(), "{b:?}");
    }
    // 2. One OOM mark of the pool per kernel kill, each at its kill's
    //    time, and every bar with a kill in its minute or just before it
    //    (a kill precedes the 502s it causes by milliseconds). The kernel
    //    log of the last hour is replayed: other tests' kills on this host
    //    are marks of no pool.
    let marks: Vec<_> = elements(timeline, "<g class=\"mark\"")
        .into_iter()
        .filter(|m| m["data-kind"] == "oom_kill" && m["data-pool"] == "leak")
        .collect();
    assert_eq!(marks.len(), kills.len(), "{marks:?}\n{kills:?}");
    for k in &kills {
        let at = k.at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(
            marks.iter().any(|m| m["data-pid"] == k.pid.to_string()
                && (m["data-at"].parse::<f64>().unwrap() - at).abs() < 2.0),
            "no mark for the kill of {} at {at}: {marks:?}",
            k.pid
        );
    }
    for b in &bars {
        let m = unix_of(&b["data-minute"]) as f64;
        assert!(
            marks.iter().any(|k| {
                let at: f64 = k["data-at"].parse().unwrap();
                k["data-minute"] == b["data-minute"] || (at >= m - 5.0 && at < m + 60.0)
            }),
            "the bar of {} has no OOM mark in its minute: {marks:?}",
            b["data-minute"]
        );
    }
    // Each mark's evidence: pid, slot, the victim's memory, and the request
    // in flight on one of them at least.
    let titles: Vec<&str> = timeline
        .split("<g class=\"mark\" data-kind=\"oom_kill\"")
        .skip(1)
        .filter(|g| g[..g.find('>').unwrap()].contains("data-pool=\"leak\""))
        .map(|g| inside(g, "<title>", "</title>"))
        .collect();
    assert!(
        titles
            .iter()
            .all(|t| t.contains(", slot ") && t.contains("victim's memory")),
        "{titles:?}"
    );
    assert!(
        titles.iter().any(|t| t.contains("in flight: GET /leak")),
        "{titles:?}"
    );
    // 3. The verdict names the kills and the recovery numbers.
    let verdict = inside(&dom, "<section id=\"verdict\"", "</section>");
    assert!(verdict.contains("data-severity=\"critical\""), "{verdict}");
    assert!(
        verdict.contains(&format!(
            "{} worker(s) of the pools were OOM-killed by the kernel",
            kills.len()
        )),
        "{verdict}"
    );
    assert!(
        verdict.contains(&format!("{} failed request(s) (502/504)", failed.len())),
        "{verdict}"
    );
    let add_ram = inside(verdict, "<li data-option=\"add_ram\"", "</li>");
    for words in [
        "leak largest OOM victim",
        "leak needed for 2 workers that large",
        "leak cgroup limit",
    ] {
        let row = inside(add_ram, words, "</tr>");
        assert!(row.contains(" MiB"), "{words}: {row}");
    }
    // 4. Each slot's memory is drawn, and the share line of the cgroup.
    let memory = inside(&dom, "<svg class=\"memory\" data-pool=\"leak\"", "</svg>");
    assert!(memory.contains("<polyline data-slot=\"0\""), "{memory}");
    assert!(memory.contains("share of the cgroup limit"), "{memory}");

    // The JSON says the same.
    let (st, body) = http_get(&e.addr, "/api/v1/timeline", T).unwrap();
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let json_failed: u64 = v["minutes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["failed"].as_array().unwrap())
        .filter(|f| f["cause"] == "worker_oom_killed")
        .map(|f| f["count"].as_u64().unwrap())
        .sum();
    assert_eq!(json_failed, failed.len() as u64);
    let json_kills = v["marks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "oom_kill" && m["pool"] == "leak")
        .count();
    assert_eq!(json_kills, kills.len());

    // Pictures: a desktop, a phone in the dark theme.
    let shot = screenshot(&url, "status.png", "1280,2600", &[]);
    let phone = screenshot(
        &url,
        "status-phone-dark.png",
        "390,3200",
        &[
            "--force-dark-mode",
            "--blink-settings=preferredColorScheme=0",
        ],
    );
    eprintln!("status page: {} and {}", shot.display(), phone.display());
}

#[test]
fn hostile_log_lines_are_escaped_or_left_out() {
    let dir = TempDir::new("status-hostile");
    let d = dir.path();
    let (access, error) = (d.join("access.log"), d.join("error.log"));
    std::fs::write(&access, "").unwrap();
    std::fs::write(&error, "").unwrap();
    let hostile_pool = "<script>alert('pool')</script>";
    let yaml = format!(
        "pools:\n  - name: \"{hostile_pool}\"\n    server: gunicorn\n    pidfile: {}/none.pid\nnginx:\n  - name: edge\n    access_log: {}\n    error_log: {}\n    log_format: |-\n      log_format upstreamlog '{FORMAT}';\n",
        d.display(),
        access.display(),
        error.display()
    );
    let e = Exporter::start(Some(&yaml), &[]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let upstream = "<script>alert('upstream')</script>";
    let mut lines = String::new();
    for k in 0..3 {
        lines.push_str(&format!(
            "127.0.0.1 [07/Dec/2026:14:00:00 +0000] \"GET /<script>alert('path')</script>?q={k} HTTP/1.1\" 502 150 rt=0.001 uct=\"-\" uht=\"-\" urt=\"0.001\" ua=\"{upstream}\" us=\"502\" conn={k} msec={now:.3}\n"
        ));
    }
    // A line of 1 MB, of a path and an upstream.
    let huge = format!("/<script>{}", "A".repeat(1 << 20));
    lines.push_str(&format!(
        "127.0.0.1 [07/Dec/2026:14:00:00 +0000] \"GET {huge} HTTP/1.1\" 502 150 rt=0.001 uct=\"-\" uht=\"-\" urt=\"0.001\" ua=\"{upstream}{}\" us=\"502\" conn=9 msec={now:.3}\n",
        "B".repeat(1 << 20)
    ));
    std::fs::OpenOptions::new()
        .append(true)
        .open(&access)
        .and_then(|mut f| std::io::Write::write_all(&mut f, lines.as_bytes()))
        .unwrap();
    let error_line = format!(
        "2026/12/07 14:00:00 [error] 1#1: *1 connect() to {upstream} failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: _, request: \"GET /<script>x</script> HTTP/1.1\", upstream: \"http://{upstream}/\", host: \"<script>h</script>\"\n"
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(&error)
        .and_then(|mut f| std::io::Write::write_all(&mut f, error_line.as_bytes()))
        .unwrap();
    e.wait_scrape(T, "the hostile 502s counted", |s| {
        s.sum("badgateway_failed_requests_total", &[("status", "502")]) >= 3.0
    });
    std::thread::sleep(Duration::from_millis(2500));
    let (st, page) = http_get(&e.addr, "/", T).unwrap();
    assert_eq!(st, 200);
    // The lines were read and drawn...
    assert!(page.contains("class=\"bar\""), "{page}");
    // ...and nothing from them, nor the pool's name, is markup: the page's
    // own script is its only one.
    assert_eq!(page.matches("<script").count(), 1, "{page}");
    assert!(!page.contains("alert('"), "unescaped quote or script");
    assert!(
        page.contains("&lt;script&gt;alert(&#39;pool&#39;)&lt;/script&gt;"),
        "{page}"
    );
    assert!(page.len() < 300_000, "the page is {} bytes", page.len());
    // The browser agrees: no element came from a log.
    let dom = chromium_run(&format!("http://{}/", e.addr), &["--dump-dom"]);
    assert_eq!(dom.matches("<script").count(), 1, "{dom}");
    let (st, json) = http_get(&e.addr, "/api/v1/timeline", T).unwrap();
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["minutes"].as_array().unwrap().len() == 60);
    assert!(json.len() < 300_000, "{} bytes", json.len());
}
