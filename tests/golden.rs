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
    src.collect(Instant::now());
    let children_files = src.view().get().children_files;
    let inputs = Inputs {
        pools: src.view(),
        ..Inputs::empty(sinks, "golden")
    };
    let body = Renderer::new(inputs).render().body;
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
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden)
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
