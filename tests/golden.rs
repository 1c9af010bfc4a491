//! The pool source on a captured /proc tree, rendered and diffed with a
//! checked-in expectation (node_exporter's fixture + golden-output style).
//! Regenerate with `UPDATE_GOLDEN=1 cargo test --test golden`.

use std::path::Path;
use std::time::Instant;

use badgateway_exporter::config::{Config, Discover};
use badgateway_exporter::pools::{PoolOptions, PoolSource};
use badgateway_exporter::snapshot::{Inputs, Renderer};
use badgateway_exporter::state::Sinks;

fn render_fixture(tree: &str, config: &str) -> String {
    render_fixture_with(tree, config).0
}

/// The rendered pool families, and whether the children files were used.
fn render_fixture_with(tree: &str, config: &str) -> (String, Option<bool>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/proc")
        .join(tree);
    let config = config.replace("$TREE", &root.display().to_string());
    let cfg = Config::parse(&config, Path::new("golden.yml")).unwrap();
    let sinks = Sinks::new(64);
    let opts = PoolOptions {
        procfs: root,
        pools: cfg.pools.clone(),
        discover_gunicorn: cfg.discover.contains(&Discover::Gunicorn),
        ..PoolOptions::default()
    };
    let mut src = PoolSource::new(opts, sinks.clone());
    let mut smaps = src.smaps_sampler();
    src.collect(Instant::now());
    smaps.sample(true);
    src.collect(Instant::now());
    let children_files = src.view().get().children_files;
    let inputs = Inputs {
        pools: src.view(),
        ..Inputs::empty(sinks, "golden")
    };
    let body = Renderer::new(inputs).render().text.plain;
    let text = String::from_utf8(body.to_vec()).unwrap();
    // Keep the pool families only: self-observation varies run to run.
    let text = text
        .lines()
        .filter(|l| {
            let name = l
                .trim_start_matches("# HELP ")
                .trim_start_matches("# TYPE ");
            name.starts_with("badgateway_pool")
                || name.starts_with("badgateway_worker")
                || name.starts_with("badgateway_master")
                || name.starts_with("badgateway_smaps")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    (text, children_files)
}

fn check(tree: &str, config: &str) {
    let got = render_fixture(tree, config);
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/proc/{tree}.golden"));
    diff_with_golden(&got, &golden);
}

/// Compare with the checked-in expectation, or rewrite it under
/// UPDATE_GOLDEN=1.
fn diff_with_golden(got: &str, golden: &Path) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(golden, got).unwrap();
    }
    let want = std::fs::read_to_string(golden)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1", golden.display()));
    assert_eq!(
        got,
        want,
        "rendered output differs from {}",
        golden.display()
    );
}

#[test]
fn gunicorn_without_setproctitle_by_cmdline() {
    check(
        "gunicorn_plain",
        "pools:\n  - name: app\n    server: gunicorn\n    cmdline: 'gunicorn .*app:app'\n  - name: absent\n    server: uwsgi\n    pidfile: /nonexistent/uwsgi.pid\n",
    );
}

#[test]
fn discovery_names_the_pool_from_the_app_argument() {
    let text = render_fixture("gunicorn_plain", "discover: [gunicorn]\n");
    assert!(
        text.contains("badgateway_pool_up{pool=\"app:app\",server=\"gunicorn\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("badgateway_pool_workers{pool=\"app:app\"} 2"),
        "{text}"
    );
}

/// A kernel with /proc/PID/task/TID/children: a pidfile pool is read from
/// its master's children files without scanning the process table, and
/// gives the same figures as the scan.
#[test]
fn children_files_and_the_scan_agree() {
    let cfg = "pools:\n  - name: app\n    server: gunicorn\n    pidfile: $TREE/gunicorn.pid\n";
    let (fast, used) = render_fixture_with("gunicorn_children", cfg);
    assert_eq!(used, Some(true));
    let (scan, used) = render_fixture_with("gunicorn_plain", cfg);
    assert_eq!(used, Some(false), "this tree has no children files");
    assert_eq!(fast, scan);
    assert!(
        fast.contains("badgateway_pool_workers{pool=\"app\"} 2"),
        "{fast}"
    );
}

/// Every source's one-shot step over one captured host (a /proc tree, a
/// cgroup tree, a kmsg capture, nginx's access and error logs), rendered
/// into one snapshot and diffed with the checked-in expectation. See
/// fixtures/golden/host/README.md.
#[test]
fn every_source_on_one_captured_host() {
    use badgateway_exporter::follow::StartAt;
    use badgateway_exporter::kernel::counter_reader::{CounterOptions, CounterReader};
    use badgateway_exporter::kernel::kmsg_reader::{KmsgOptions, KmsgReader};
    use badgateway_exporter::nginx::{NginxOptions, NginxSource};
    use badgateway_exporter::rules::{Judge, JudgeOptions};
    use std::time::{Duration, SystemTime};

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden/host");
    let text = std::fs::read_to_string(dir.join("config.yml"))
        .unwrap()
        .replace("$DIR", &dir.display().to_string());
    let cfg = Config::parse(&text, &dir.join("config.yml")).unwrap();
    let sinks = Sinks::new(1024);
    let mut pools = PoolSource::new(
        PoolOptions {
            procfs: dir.join("proc"),
            pools: cfg.pools.clone(),
            ..PoolOptions::default()
        },
        sinks.clone(),
    );
    let mut counters = CounterReader::new(
        CounterOptions {
            procfs: dir.join("proc"),
            sysfs: dir.join("sys"),
            interval: Duration::from_secs(5),
        },
        sinks.clone(),
        pools.index(),
    );
    // The capture's clock starts at the fixture's boot time.
    let btime: u64 = std::fs::read_to_string(dir.join("proc/stat"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
        .unwrap();
    let mut kmsg = KmsgReader::new(
        KmsgOptions {
            path: cfg.kernel.kmsg_path.clone(),
            exit_window: Duration::from_secs(60),
            boot_time: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(btime)),
        },
        sinks.clone(),
        pools.index(),
        counters.published(),
    );
    let mut nginx = NginxSource::new(
        NginxOptions {
            logs: cfg.nginx.clone(),
            max_upstreams: cfg.max_upstreams,
            start: StartAt::Beginning,
            interval: Duration::from_millis(250),
            request_history: false,
        },
        sinks.clone(),
        pools.index(),
    )
    .unwrap();

    let mut judge = Judge::new(JudgeOptions::default(), sinks.clone(), pools.index());

    let mut smaps = pools.smaps_sampler();
    assert_eq!(pools.collect(Instant::now()), 0);
    assert_eq!(smaps.sample(true), 0);
    assert_eq!(pools.collect(Instant::now()), 0);
    assert_eq!(counters.collect(), 0);
    kmsg.replay().unwrap();
    assert_eq!(nginx.poll(), (0, true));
    judge.finish();

    let inputs = Inputs {
        pools: pools.view(),
        kills: kmsg.published(),
        memory: counters.published(),
        nginx: nginx.published(),
        exits: judge.exits(),
        failures: judge.failures(),
        ..Inputs::empty(sinks.clone(), "golden")
    };
    let body = Renderer::new(inputs).render().text.plain;
    // The collector loops did not run; their families are empty headers.
    // The exporter's own build, memory and CPU change from run to run.
    let got: String = String::from_utf8(body.to_vec())
        .unwrap()
        .lines()
        .filter(|l| !l.contains("badgateway_collector_") && !l.contains("badgateway_exporter_"))
        .map(|l| format!("{l}\n"))
        .collect();
    // Every histogram's +Inf bucket is its count.
    let mut histograms = 0;
    for l in got.lines().filter(|l| l.contains("_bucket{le=\"+Inf\"")) {
        let (series, inf) = l.rsplit_once(' ').unwrap();
        let count_series = series.replace("_bucket{le=\"+Inf\",", "_count{");
        let count = got
            .lines()
            .find_map(|c| c.strip_prefix(&format!("{count_series} ")))
            .unwrap_or_else(|| panic!("no {count_series}"));
        assert_eq!(inf, count, "{l}");
        histograms += 1;
    }
    assert!(histograms > 10, "{histograms}");
    diff_with_golden(&got, &dir.join("expected.txt"));

    // The joins read this timeline: every source put its events on it.
    let kinds: std::collections::BTreeSet<&str> = sinks
        .timeline
        .read(|t| t.iter().map(|e| e.kind.name()).collect());
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "failed_request",
            "master_start",
            "oom_kill",
            "server_error",
            "upstream_failure",
            "worker_spawn"
        ]
    );
}
