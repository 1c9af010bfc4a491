//! A discovered pool whose master goes stays known, as down, so that the
//! pool-down alert (`badgateway_pool_up == 0` for a minute) fires for
//! auto-discovered pools too; it is forgotten only after
//! `pools::gone::KEEP_GONE` (15 minutes, checked by that module's unit
//! test). Real Gunicorn, found with no config file, as the README's Start
//! section runs the exporter.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_discovered_pool_whose_master_is_gone_stays_exported_as_down() {
    let dir = TempDir::new("discovered-gone");
    let name = format!("gone{}", std::process::id());
    let g = Gunicorn::start(GunicornOpts {
        workers: 1,
        bind: format!("127.0.0.1:{}", free_port()),
        pidfile: dir.path().join("gone.pid"),
        extra: &["--name", &name],
        pre_exec: None,
        venv: None,
    });
    let e = Exporter::start(None, &["--collector.discover.interval=1s"]);
    let up = [("pool", name.as_str()), ("server", "gunicorn")];
    e.wait_scrape(Duration::from_secs(30), "the pool discovered, up", |s| {
        s.get("badgateway_pool_up", &up) == Some(1.0)
    });
    drop(g);
    e.wait_scrape(Duration::from_secs(30), "the pool down", |s| {
        s.get("badgateway_pool_up", &up) == Some(0.0)
    });
    // Still there, down, after many discovery rounds that no longer find
    // its master.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        let s = e.scrape();
        assert_eq!(
            s.get("badgateway_pool_up", &up),
            Some(0.0),
            "the gone pool must stay exported as down"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}
