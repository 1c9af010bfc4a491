//! The kernel source in the real binary: a missing /dev/kmsg, and fixture
//! procfs trees (a 6.18 capture, and a kernel without PSI or oom_kill).

mod common;

use std::time::Duration;

use common::*;

fn fixture(tree: &str) -> String {
    format!("{}/fixtures/kernel/{tree}", env!("CARGO_MANIFEST_DIR"))
}

const NO_KMSG: &str = "kernel:\n  kmsg_path: /nonexistent/kmsg\n";

#[test]
fn absent_kmsg_is_source_up_0_and_the_rest_still_serves() {
    let e = Exporter::start(Some(NO_KMSG), &[]);
    let s = e.wait_scrape(Duration::from_secs(5), "every kernel source tried", |s| {
        ["kmsg", "vmstat", "meminfo", "pressure", "cgroup"]
            .iter()
            .all(|src| s.get("badgateway_source_up", &[("source", src)]).is_some())
    });
    let up = |src| s.get("badgateway_source_up", &[("source", src)]);
    assert_eq!(up("kmsg"), Some(0.0));
    assert_eq!(up("vmstat"), Some(1.0));
    assert_eq!(up("meminfo"), Some(1.0));
    assert_eq!(up("cgroup"), Some(1.0));
    // This host has PSI; the source is up when the file is there.
    let psi = std::path::Path::new("/proc/pressure/memory").exists();
    assert_eq!(up("pressure"), Some(psi as i32 as f64));
    assert!(s.get("badgateway_kernel_oom_kills_total", &[]).is_some());
    assert!(s.get("badgateway_host_memory_total_bytes", &[]).unwrap() > 0.0);
    // No kill counts while the log was never read: not a silent zero.
    assert!(
        s.find("badgateway_oom_kills_total", &[]).is_empty(),
        "{}",
        s.text
    );

    // Several kernel cycles later: still serving, and warned once.
    std::thread::sleep(Duration::from_millis(1500));
    let s = e.scrape();
    assert_eq!(
        s.get("badgateway_source_up", &[("source", "kmsg")]),
        Some(0.0)
    );
    assert!(
        s.get(
            "badgateway_collector_cycles_total",
            &[("collector", "kernel")]
        )
        .unwrap()
            >= 3.0
    );
    let warnings = e
        .log()
        .lines()
        .filter(|l| l.contains("source cannot be read") && l.contains("kmsg"))
        .count();
    assert_eq!(warnings, 1, "{}", e.log());
    assert!(
        e.log().contains("/nonexistent/kmsg"),
        "the warning names the path"
    );
}

#[test]
fn captured_6_18_procfs_tree() {
    let procfs = format!("--path.procfs={}", fixture("proc_6.18"));
    let e = Exporter::start(Some(NO_KMSG), &[&procfs, "--path.sysfs=/nonexistent"]);
    let s = e.wait_scrape(Duration::from_secs(5), "the fixture's counters", |s| {
        s.get("badgateway_source_up", &[("source", "cgroup")])
            .is_some()
    });
    let up = |src| s.get("badgateway_source_up", &[("source", src)]);
    assert_eq!(up("vmstat"), Some(1.0));
    assert_eq!(up("meminfo"), Some(1.0));
    assert_eq!(up("pressure"), Some(1.0));
    assert_eq!(up("cgroup"), Some(0.0), "no SYSFS/fs/cgroup");
    assert_eq!(s.get("badgateway_kernel_oom_kills_total", &[]), Some(3.0));
    assert_eq!(
        s.get("badgateway_host_memory_total_bytes", &[]),
        Some(24684092.0 * 1024.0)
    );
    assert_eq!(
        s.get("badgateway_host_memory_available_bytes", &[]),
        Some(24207772.0 * 1024.0)
    );
    assert_eq!(s.get("badgateway_host_swap_free_bytes", &[]), Some(0.0));
    let stalled = |k| {
        s.get(
            "badgateway_memory_pressure_stalled_seconds_total",
            &[("kind", k)],
        )
    };
    assert_eq!(stalled("some"), Some(0.008475));
    assert_eq!(stalled("full"), Some(0.007455));
}

#[test]
fn kernel_without_psi_or_oom_kill_counter() {
    let procfs = format!("--path.procfs={}", fixture("proc_no_psi"));
    let e = Exporter::start(Some(NO_KMSG), &[&procfs]);
    let s = e.wait_scrape(Duration::from_secs(5), "the fixture's counters", |s| {
        s.get("badgateway_source_up", &[("source", "pressure")])
            .is_some()
    });
    let up = |src| s.get("badgateway_source_up", &[("source", src)]);
    assert_eq!(up("pressure"), Some(0.0));
    assert_eq!(
        up("vmstat"),
        Some(0.0),
        "vmstat without oom_kill (before 4.13)"
    );
    assert_eq!(up("meminfo"), Some(1.0));
    assert!(s
        .find("badgateway_memory_pressure_stalled_seconds_total", &[])
        .is_empty());
    assert!(s.find("badgateway_kernel_oom_kills_total", &[]).is_empty());
    assert!(s
        .find("badgateway_host_memory_available_bytes", &[])
        .is_empty());
    assert_eq!(
        s.get("badgateway_host_memory_total_bytes", &[]),
        Some(24684092.0 * 1024.0)
    );
    assert!(e.log().contains("no PSI"), "{}", e.log());
}
