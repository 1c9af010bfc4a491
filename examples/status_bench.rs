//! The status page's cost, run by bench/status_page.sh (not a test: it
//! prints figures and asserts nothing about time).
//!
//! It builds the worst hour the history can hold for 64 workers (4 pools
//! of 16): every minute with 502s and 504s of every cause, every slot
//! sampled every minute, the mark ring full of OOM kills and exits with a
//! 128-byte path in flight, and a timeline of 8,192 events for the
//! diagnosis. Then it prints:
//! - the time to render `/` (the HTML) and `/api/v1/timeline` (the JSON)
//!   from the history and a diagnosis, as the renderer does once a second;
//! - the history's size as it counts itself, and the RSS that 32 copies of
//!   it add to this process, per copy.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use badgateway_exporter::diagnose::{self, Evidence, Window};
use badgateway_exporter::pools::proc::ProcId;
use badgateway_exporter::pools::{Memory, PoolState, PoolsView, WorkerState};
use badgateway_exporter::state::history::{History, MARKS_CAP, MINUTES};
use badgateway_exporter::state::thread_cpu_seconds;
use badgateway_exporter::state::timeline::{
    DeadWorker, EventKind, ExitReason, FailedRequest, FailureCause, KillRule, OomKill, Process,
    Request, ServerError, Timeline, WorkerEnd, WorkerExit, TIMELINE_CAP,
};
use badgateway_exporter::status::Page;

const POOLS: usize = 4;
const WORKERS: usize = 16;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn pools() -> PoolsView {
    let mut out = PoolsView::default();
    for p in 0..POOLS {
        let mut pool = PoolState::new(
            &format!("pool{p}"),
            badgateway_exporter::config::Server::Gunicorn,
        );
        pool.up = true;
        pool.master = Some(ProcId {
            pid: 1000 + p as i32,
            starttime: 1,
        });
        for slot in 0..WORKERS {
            pool.workers.push(WorkerState {
                id: ProcId {
                    pid: 2000 + (p * WORKERS + slot) as i32,
                    starttime: 2,
                },
                slot,
                start_time: 0.0,
                memory: Memory {
                    rss: 90 << 20,
                    pss: Some(80 << 20),
                    uss: Some(70 << 20),
                    swap: 0,
                },
                open_fds: Some(20),
                max_fds: Some(1024),
                cpu_seconds: Some(1.0),
                heartbeat_age: Some(0.4),
            });
        }
        out.pools.push(pool);
    }
    out
}

/// The hour's events: a kill and its 502 every few seconds across the
/// pools, exits between them, and 504s of every cause.
fn events(now: SystemTime, n: usize) -> Vec<(SystemTime, Option<Arc<str>>, EventKind)> {
    let names: Vec<Arc<str>> = (0..POOLS).map(|p| Arc::from(format!("pool{p}"))).collect();
    let path = format!("/reports/{}", "x".repeat(120));
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let at = now - Duration::from_millis((3_590_000 * (n - i) / n) as u64);
        let pool = names[i % POOLS].clone();
        let pid = 3000 + i as i32;
        let slot = Some(i % WORKERS);
        let kind = match i % 4 {
            0 => EventKind::OomKill(OomKill {
                seq: i as u64,
                pid,
                comm: "gunicorn".into(),
                slot,
                cgroup: Some("/system.slice/app.service".into()),
                memcg: true,
                rule: KillRule::Live,
                anon_bytes: 300 << 20,
                file_bytes: 4 << 20,
                shmem_bytes: Some(0),
            }),
            1 => EventKind::WorkerEnd(WorkerEnd {
                exit: WorkerExit {
                    process: Process {
                        pid: pid - 1,
                        started: at,
                        slot,
                    },
                    status: None,
                    rss_bytes: Some(310 << 20),
                    pss_bytes: Some(300 << 20),
                },
                reason: ExitReason::ALL[i % ExitReason::ALL.len()],
                lifetime: Duration::from_secs(600),
            }),
            _ => EventKind::FailedRequest(FailedRequest {
                error: ServerError {
                    log: Arc::from("edge"),
                    status: if i % 8 == 2 { 504 } else { 502 },
                    upstream: Some("unix:/run/app.sock".into()),
                    conn: Some(i as u64),
                    request: Some(Request::new(b"GET", path.as_bytes())),
                    backend_sent: false,
                },
                cause: FailureCause::ALL[i % FailureCause::ALL.len()],
                worker: Some(DeadWorker {
                    pid: pid - 2,
                    slot,
                    rss_bytes: None,
                    pss_bytes: None,
                }),
            }),
        };
        out.push((at, Some(pool), kind));
    }
    out
}

fn full_history(now: SystemTime, pools: &PoolsView) -> History {
    let mut h = History::new();
    h.advance(now);
    let mut tl = Timeline::new(TIMELINE_CAP);
    for (at, pool, kind) in events(now, 4 * MARKS_CAP) {
        tl.push(at, pool, kind);
    }
    h.read_timeline(tl.since(0), tl.next_seq());
    for m in 0..MINUTES {
        let at = now - Duration::from_secs(60 * m as u64);
        for p in &pools.pools {
            for w in &p.workers {
                // A sawtooth: grows for ten minutes, then recycled.
                let pss = (60 << 20) + ((m + w.slot) % 10) as u64 * (20 << 20);
                h.sample(&p.name, w.slot, pss, at);
            }
        }
    }
    h
}

fn main() {
    let now = SystemTime::now();
    let pools = pools();
    let history = full_history(now, &pools);
    assert_eq!(history.marks().count(), MARKS_CAP, "the mark ring is full");
    let mut tl = Timeline::new(TIMELINE_CAP);
    for (at, pool, kind) in events(now, TIMELINE_CAP) {
        tl.push(at, pool, kind);
    }
    let (kills, memory, nginx, exits, failures, sources, lq) = Default::default();
    let sources: std::collections::BTreeMap<_, _> = sources;
    let report = diagnose::build(
        &Evidence {
            pools: &pools,
            kills: &kills,
            memory: &memory,
            nginx: &nginx,
            exits: &exits,
            failures: &failures,
            sources: &sources,
            timeline: &tl,
            growth: None,
        },
        Window {
            from: now - Duration::from_secs(3600),
            to: now,
        },
    );
    let page = Page {
        report: &report,
        history: &history,
        pools: &pools,
        listen_queues: &lq,
        memory: &memory,
        sources: &sources,
        telemetry_path: "/metrics",
        config_origin: "bench.yml",
        now,
    };
    // To look at the page this measures.
    if let Some(path) = std::env::var_os("STATUS_BENCH_HTML") {
        std::fs::write(path, page.html()).unwrap();
    }
    // Wall time, and the thread's CPU time, which waiting for a core on
    // a busy machine does not inflate.
    let time = |f: &dyn Fn() -> usize| -> (f64, f64, f64, usize) {
        let (mut wall, mut cpu) = (Vec::new(), Vec::new());
        let mut len = 0;
        for _ in 0..200 {
            let (t, c) = (Instant::now(), thread_cpu_seconds());
            len = f();
            cpu.push((thread_cpu_seconds() - c) * 1e3);
            wall.push(t.elapsed().as_secs_f64() * 1e3);
        }
        wall.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        (wall[100], wall[198], cpu[100], len)
    };
    let (html_p50, html_p99, html_cpu, html_len) = time(&|| page.html().len());
    let (json_p50, json_p99, json_cpu, json_len) = time(&|| page.json().len());
    println!(
        "workers: {}, marks: {}, minutes: {}",
        POOLS * WORKERS,
        history.marks().count(),
        history.minutes().count()
    );
    println!(
        "render / (HTML): CPU median {html_cpu:.3} ms; wall median {html_p50:.3} ms, p99 {html_p99:.3} ms; {html_len} bytes"
    );
    println!(
        "render /api/v1/timeline (JSON): CPU median {json_cpu:.3} ms; wall median {json_p50:.3} ms, p99 {json_p99:.3} ms; {json_len} bytes"
    );

    let counted = history.size_bytes();
    let before = rss_kib();
    let copies: Vec<History> = (0..32).map(|_| full_history(now, &pools)).collect();
    let after = rss_kib();
    std::hint::black_box(&copies);
    println!(
        "history for 64 workers: {counted} bytes ({:.1} KiB) as counted; RSS added per copy: {:.1} KiB (32 copies)",
        counted as f64 / 1024.0,
        (after - before) as f64 / 32.0
    );
}
