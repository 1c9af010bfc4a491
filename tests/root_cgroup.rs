//! A Gunicorn master left in the root memory cgroup: the root's usage is
//! the whole host's, so the pool exports no cgroup figures, while a pool
//! in a cgroup of its own beside it does.

mod common;

use std::time::Duration;

use common::cgroup::Cgroup;
use common::*;

fn memory_cgroup_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctl, path) = (p.next()?, p.next()?, p.next()?);
            (ctl.split(',').any(|c| c == "memory") || ctl.is_empty()).then(|| path.to_string())
        })
        .unwrap()
}

#[test]
fn a_master_in_the_root_memory_cgroup_exports_no_cgroup_figures() {
    let boxed_cg = Cgroup::create("boxed");
    let dir = TempDir::new("rootcg");
    let start = |name: &str, pre_exec: String| {
        Gunicorn::start(GunicornOpts {
            workers: 1,
            bind: format!("127.0.0.1:{}", free_port()),
            pidfile: dir.path().join(format!("{name}.pid")),
            extra: &[],
            pre_exec: Some(pre_exec),
            venv: None,
        })
    };
    // The root of the hierarchy the test cgroup is in (common::cgroup).
    let root_procs = boxed_cg.dir.parent().unwrap().join("cgroup.procs");
    let in_root = start("in_root", format!("echo $$ > {}", root_procs.display()));
    let boxed = start(
        "boxed",
        format!("echo $$ > {}", boxed_cg.file("cgroup.procs").display()),
    );
    assert_eq!(memory_cgroup_of(in_root.master_pid()), "/");
    assert_eq!(memory_cgroup_of(boxed.master_pid()), boxed_cg.path);

    let yaml = format!(
        "pools:\n  - {{name: in_root, server: gunicorn, pidfile: {}}}\n  - {{name: boxed, server: gunicorn, pidfile: {}}}\n",
        in_root.pidfile.display(),
        boxed.pidfile.display()
    );
    let e = Exporter::start(Some(&yaml), &[]);
    let s = e.wait_scrape(
        Duration::from_secs(20),
        "both pools, boxed with its cgroup",
        |s| {
            s.get("badgateway_pool_workers", &[("pool", "in_root")]) == Some(1.0)
                && s.get("badgateway_pool_cgroup_memory_bytes", &[("pool", "boxed")])
                    .is_some()
        },
    );
    // Two kernel cycles more: the root pool's figures never come.
    std::thread::sleep(Duration::from_millis(700));
    let s2 = e.scrape();
    for s in [&s, &s2] {
        for family in [
            "badgateway_pool_cgroup_memory_bytes",
            "badgateway_pool_cgroup_memory_limit_bytes",
            "badgateway_pool_cgroup_oom_kills_total",
            "badgateway_pool_cgroup_memory_events_total",
        ] {
            assert!(
                s.find(family, &[("pool", "in_root")]).is_empty(),
                "{family} for a pool in the root cgroup:\n{}",
                s.text
            );
        }
    }
    let usage = s2
        .get("badgateway_pool_cgroup_memory_bytes", &[("pool", "boxed")])
        .unwrap();
    assert!(usage > 0.0 && usage < 1e9, "{usage}");
    // Being in the root is not a failure of the cgroup source.
    assert_eq!(
        s2.get("badgateway_source_up", &[("source", "cgroup")]),
        Some(1.0)
    );
    drop(in_root);
    drop(boxed);
}
