//! A real OOM kill: a Gunicorn pool in a memory cgroup with a small limit,
//! a worker that leaks until the kernel kills it, and the exporter's
//! scrape checked against what the kernel logged. Needs root.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cgroup::Cgroup;
use common::kmsg::{kernel_kills, kmsg_records};
use common::*;

const MIB: u64 = 1 << 20;

#[test]
fn real_oom_kill_is_counted_and_attributed_to_the_pool() {
    let start = Instant::now();
    let since = kmsg_records().last().map_or(0, |r| r.0);
    // Declared first so that it is dropped last, after Gunicorn.
    let cg = Cgroup::create("oomtest");
    let dir = TempDir::new("oom");
    let port = free_port();
    let pidfile = dir.path().join("gunicorn.pid");
    let g = Gunicorn::start(GunicornOpts {
        workers: 1,
        bind: format!("127.0.0.1:{port}"),
        pidfile: pidfile.clone(),
        extra: &["--timeout", "30"],
        pre_exec: Some(format!("echo $$ > {}", cg.file("cgroup.procs").display())),
        venv: None,
    });
    assert!(
        cg.pids().contains(&g.master_pid()),
        "gunicorn runs in the cgroup"
    );
    // Room for the pool as it is plus 60 MiB: the third 20 MiB leak of the
    // worker is over the limit, and the worker is by far the largest task.
    let limit = cg.usage() + 60 * MIB;
    cg.set_limit(limit);

    let yaml = format!(
        "pools:\n  - name: oomtest\n    server: gunicorn\n    pidfile: {}\n",
        pidfile.display()
    );
    let e = Exporter::start(Some(&yaml), &[]);
    let before = e.wait_scrape(Duration::from_secs(10), "the pool and its cgroup", |s| {
        s.get("badgateway_pool_workers", &[("pool", "oomtest")]) == Some(1.0)
            && s.get(
                "badgateway_pool_cgroup_memory_limit_bytes",
                &[("pool", "oomtest")],
            ) == Some(limit as f64)
            && s.get("badgateway_oom_kills_total", &[("pool", "oomtest")])
                .is_some()
    });
    let kills0 = before
        .get("badgateway_oom_kills_total", &[("pool", "oomtest")])
        .unwrap();
    assert_eq!(kills0, 0.0);
    assert_eq!(
        before.get("badgateway_source_up", &[("source", "kmsg")]),
        Some(1.0)
    );
    assert_eq!(
        before.get("badgateway_source_up", &[("source", "cgroup")]),
        Some(1.0)
    );
    let vm0 = before
        .get("badgateway_kernel_oom_kills_total", &[])
        .unwrap();
    let cg0 = before
        .get(
            "badgateway_pool_cgroup_oom_kills_total",
            &[("pool", "oomtest")],
        )
        .unwrap();
    let usage = before
        .get(
            "badgateway_pool_cgroup_memory_bytes",
            &[("pool", "oomtest")],
        )
        .unwrap();
    assert!(usage > 0.0 && usage < limit as f64, "{usage}");

    // Leak until the kernel kills a worker; the master respawns it.
    let workers_before: BTreeSet<i32> = g.worker_pids().into_iter().collect();
    let mut seen_workers = workers_before.clone();
    let mut killed = Vec::new();
    for _ in 0..30 {
        let _ = http_get(&g.bind, "/leak?mb=20", Duration::from_secs(10));
        seen_workers.extend(g.worker_pids());
        killed = kernel_kills(since, &cg.path);
        if !killed.is_empty() {
            break;
        }
    }
    let seen_kill = Instant::now();
    assert!(
        !killed.is_empty(),
        "the kernel killed no process in {}",
        cg.path
    );
    for k in &killed {
        assert_ne!(k.pid, g.master_pid(), "the master was killed, not a worker");
        assert!(
            seen_workers.contains(&k.pid),
            "victim {} was not a worker",
            k.pid
        );
    }
    g.wait_workers(1, Duration::from_secs(20));

    let n = killed.len() as f64;
    let after = e.wait_scrape(Duration::from_secs(2), "the kill in the scrape", |s| {
        s.get("badgateway_oom_kills_total", &[("pool", "oomtest")]) == Some(kills0 + n)
    });
    let lag = seen_kill.elapsed();
    eprintln!("kill seen in the scrape {lag:?} after the test saw it in kmsg");
    assert!(
        lag < Duration::from_secs(1),
        "a kill shows within 1 s: {lag:?}"
    );

    let last = killed.last().unwrap();
    let victim = |t: &str| {
        after.get(
            "badgateway_oom_kill_victim_memory_bytes",
            &[("pool", "oomtest"), ("type", t)],
        )
    };
    assert_eq!(victim("anon"), Some((last.anon_kb * 1024) as f64));
    assert_eq!(victim("file"), Some((last.file_kb * 1024) as f64));
    assert_eq!(victim("shmem"), Some((last.shmem_kb * 1024) as f64));
    let ts = after
        .get(
            "badgateway_last_oom_kill_timestamp_seconds",
            &[("pool", "oomtest")],
        )
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        ts <= now + 1.0 && ts > now - 60.0,
        "kill time {ts}, now {now}"
    );
    assert_eq!(
        after.get("badgateway_oom_kills_total", &[("pool", "-")]),
        before.get("badgateway_oom_kills_total", &[("pool", "-")]),
        "the kill was not also counted as unattributed"
    );

    // The counters that need no log catch up on the poller's interval.
    let after = e.wait_scrape(Duration::from_secs(5), "vmstat and cgroup counters", |s| {
        s.get("badgateway_kernel_oom_kills_total", &[])
            .unwrap_or(0.0)
            >= vm0 + n
            && s.get(
                "badgateway_pool_cgroup_oom_kills_total",
                &[("pool", "oomtest")],
            )
            .unwrap_or(0.0)
                >= cg0 + n
    });

    // Exactly: nothing counted twice, however long we wait.
    std::thread::sleep(Duration::from_millis(1500));
    let again = e.scrape();
    let logged = kernel_kills(since, &cg.path).len() as f64;
    assert_eq!(
        again.get("badgateway_oom_kills_total", &[("pool", "oomtest")]),
        Some(kills0 + logged)
    );
    assert_eq!(
        after.get(
            "badgateway_pool_cgroup_oom_kills_total",
            &[("pool", "oomtest")]
        ),
        Some(cg0 + n),
        "v1 oom_control / v2 memory.events count the same kills"
    );
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "took {:?}",
        start.elapsed()
    );
    drop(e);

    // A fresh exporter replays the ring buffer: the same kills, counted
    // once, and attributed to the pool by its cgroup since the victim is
    // long gone.
    let replay = Exporter::start(Some(&yaml), &[]);
    let r = replay.wait_scrape(Duration::from_secs(20), "the replayed kill", |s| {
        s.get("badgateway_oom_kills_total", &[("pool", "oomtest")]) == Some(logged)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        replay
            .scrape()
            .get("badgateway_oom_kills_total", &[("pool", "oomtest")]),
        Some(logged),
        "replayed kills are counted once\n{}",
        r.text
    );
    drop(replay);
    drop(g);
}
