use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::pools::proc::ProcId;
use crate::pools::PoolsView;
use crate::pools::{Memory, WorkerState};
use crate::state::history::History;
use crate::state::timeline::{
    DeadWorker, EventKind, FailedRequest, KillRule, OomKill, Request, ServerError, Timeline,
};

/// What the page is made of, as the renderer would hold it.
struct Inputs {
    pools: PoolsView,
    timeline: Timeline,
    sources: BTreeMap<String, SourceStatus>,
}

const HOSTILE: &str = "<script>alert(1)</script>";

fn pool(name: &str) -> PoolState {
    let mut p = PoolState::new(name, crate::config::Server::Gunicorn);
    p.up = true;
    p.master = Some(ProcId {
        pid: 10,
        starttime: 1,
    });
    for slot in 0..2 {
        p.workers.push(WorkerState {
            id: ProcId {
                pid: 11 + slot as i32,
                starttime: 2,
            },
            slot,
            start_time: 0.0,
            memory: Memory {
                rss: 80 << 20,
                pss: Some(70 << 20),
                uss: Some(60 << 20),
                swap: 0,
            },
            open_fds: None,
            max_fds: None,
            cpu_seconds: None,
            heartbeat_age: Some(0.5),
        });
    }
    p
}

/// A page over an hour where pool `name` lost a worker to the OOM killer
/// with `path` in flight, and two 502s followed.
fn scenario(name: &str, path: &[u8], now: SystemTime) -> (Inputs, History) {
    let mut inputs = Inputs {
        pools: PoolsView {
            pools: vec![pool(name)],
            children_files: None,
        },
        timeline: Timeline::new(1024),
        sources: BTreeMap::new(),
    };
    let at = now - Duration::from_secs(300);
    let p: Option<Arc<str>> = Some(Arc::from(name));
    let tl = &mut inputs.timeline;
    tl.push(
        at,
        p.clone(),
        EventKind::OomKill(OomKill {
            seq: 1,
            pid: 12,
            comm: "gunicorn".into(),
            slot: Some(1),
            cgroup: None,
            memcg: true,
            rule: KillRule::Live,
            anon_bytes: 90 << 20,
            file_bytes: 0,
            shmem_bytes: Some(0),
        }),
    );
    for k in 0..2 {
        tl.push(
            at + Duration::from_millis(10 + k),
            p.clone(),
            EventKind::FailedRequest(FailedRequest {
                error: ServerError {
                    log: Arc::from("edge"),
                    status: 502,
                    upstream: Some(HOSTILE.into()),
                    conn: None,
                    request: Some(Request::new(b"GET", path)),
                    backend_sent: false,
                },
                cause: FailureCause::WorkerOomKilled,
                worker: Some(DeadWorker {
                    pid: 12,
                    slot: Some(1),
                    rss_bytes: None,
                    pss_bytes: None,
                }),
            }),
        );
    }
    let mut h = History::new();
    h.advance(now);
    h.read_timeline(tl.since(0), tl.next_seq());
    h.sample(name, 0, 70 << 20, now);
    h.sample(name, 1, 90 << 20, at);
    (inputs, h)
}

fn render(inputs: &Inputs, h: &History, now: SystemTime) -> (String, String) {
    let (mem, lq) = (MemoryCounters::default(), ListenQueues::default());
    let report = diagnose::build(
        &diagnose::Evidence {
            pools: &inputs.pools,
            kills: &Default::default(),
            memory: &mem,
            nginx: &Default::default(),
            exits: &Default::default(),
            failures: &Default::default(),
            sources: &inputs.sources,
            timeline: &inputs.timeline,
            growth: None,
        },
        diagnose::Window {
            from: now - Duration::from_secs(3600),
            to: now,
        },
    );
    let page = Page {
        report: &report,
        history: h,
        pools: &inputs.pools,
        listen_queues: &lq,
        memory: &mem,
        sources: &inputs.sources,
        telemetry_path: "/metrics",
        config_origin: "test.yml",
        now,
    };
    (page.html(), page.json())
}

#[test]
fn bars_and_marks_carry_their_minute_cause_and_evidence() {
    let now = SystemTime::now();
    let (inputs, h) = scenario("api", b"/leak", now);
    let (html, json) = render(&inputs, &h, now);
    assert!(html.contains("data-cause=\"worker_oom_killed\""), "{html}");
    assert!(html.contains("data-status=\"502\" data-cause=\"worker_oom_killed\" data-count=\"2\""));
    assert!(html.contains("data-kind=\"oom_kill\""));
    assert!(html.contains("in flight: GET /leak"), "{html}");
    assert!(html.contains("victim&#39;s memory 90.0 MiB"), "{html}");
    assert!(html.contains("data-severity=\"critical\""));
    assert!(html.contains("OOM-killed by the kernel"));
    assert!(html.contains("<polyline data-slot=\"1\""));
    assert!(html.contains("Okabe–Ito"));
    assert!(html.contains("prefers-color-scheme:dark"));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["minutes"].as_array().unwrap().len(), 60);
    let failed: Vec<&serde_json::Value> = v["minutes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["failed"].as_array().unwrap())
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["cause"], "worker_oom_killed");
    assert_eq!(failed[0]["count"], 2);
    assert_eq!(v["marks"][0]["kind"], "oom_kill");
    assert_eq!(v["marks"][0]["request"]["path"], "/leak");
    assert_eq!(v["pools"][0]["slots"].as_array().unwrap().len(), 2);
}

#[test]
fn nothing_wrong_says_so() {
    let now = SystemTime::now();
    let inputs = Inputs {
        pools: PoolsView::default(),
        timeline: Timeline::new(16),
        sources: BTreeMap::new(),
    };
    let mut h = History::new();
    h.advance(now);
    let (html, _) = render(&inputs, &h, now);
    assert!(html.contains("No 502s in the last hour."), "{html}");
    assert!(html.contains("data-severity=\"ok\""));
    assert!(!html.contains("class=\"bar\""));
}

#[test]
fn hostile_names_and_paths_are_escaped_and_a_huge_path_is_cut() {
    let now = SystemTime::now();
    let huge = format!("/{HOSTILE}{}", "A".repeat(1 << 20));
    let (mut inputs, h) = scenario(HOSTILE, huge.as_bytes(), now);
    inputs.sources.insert(
        format!("nginx/{HOSTILE}/access"),
        SourceStatus {
            up: false,
            ever_up: false,
            errors: 1,
            last_error: Some(HOSTILE.into()),
        },
    );
    let (html, json) = render(&inputs, &h, now);
    // The page's own script is the only one.
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.len() < 200_000, "{} bytes", html.len());
    assert!(json.len() < 100_000, "{} bytes", json.len());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let path = v["marks"][0]["request"]["path"].as_str().unwrap();
    assert!(path.starts_with("/<script>") && path.len() <= 128, "{path}");
}

#[test]
fn a_source_that_cannot_be_read_names_its_fix() {
    assert!(source_fix("kmsg", "Permission denied").contains("CAP_SYSLOG"));
    assert!(source_fix("proc_connector", "").contains("CAP_NET_ADMIN"));
    assert!(source_fix("pool/api", "Permission denied (os error 13)").contains("CAP_SYS_PTRACE"));
    assert!(source_fix("app_log/api", "").contains("log_file"));
    assert!(source_fix("nginx/edge/access", "no such file").contains("log_format"));
}
