//! The exposition as scrapers get it from the real binary: Prometheus' text
//! format by default, clean under `promtool check metrics`; OpenMetrics
//! when the `Accept` header asks for it; gzip when allowed.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

/// The series of an exposition, without values.
fn series(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.rsplit_once(' ').unwrap().0.to_string())
        .collect()
}

fn promtool_check(body: &[u8]) -> (bool, String) {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test.sh installs it)");
    p.stdin.take().unwrap().write_all(body).unwrap();
    let out = p.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn text_by_default_openmetrics_when_asked_gzip_when_allowed() {
    let dir = TempDir::new("exposition");
    let g = Gunicorn::start(GunicornOpts {
        workers: 2,
        bind: format!("127.0.0.1:{}", free_port()),
        pidfile: dir.path().join("g.pid"),
        extra: &[],
        pre_exec: None,
        venv: None,
    });
    let access = dir.path().join("access.log");
    std::fs::write(
        &access,
        "127.0.0.1 - - [23/Nov/2026:04:16:44 +0000] \"GET / HTTP/1.1\" 200 2 \"-\" \"curl\"\n",
    )
    .unwrap();
    let yaml = format!(
        "pools:\n  - name: api\n    server: gunicorn\n    pidfile: {}\nnginx:\n  - name: edge\n    access_log: {}\n",
        g.pidfile.display(),
        access.display()
    );
    let e = Exporter::start(Some(&yaml), &[]);
    // Every series that comes a moment after the first cycle (PSS from
    // the smaps sampler, heartbeats from the control socket, the
    // exporter's own process figures) is there, so that the two scrapes
    // below list the same ones.
    e.wait_scrape(T, "the pool's workers with all their series", |s| {
        ["0", "1"].iter().all(|slot| {
            s.get(
                "badgateway_worker_memory_bytes",
                &[("pool", "api"), ("slot", slot), ("type", "pss")],
            )
            .is_some()
                && s.get(
                    "badgateway_worker_heartbeat_age_seconds",
                    &[("pool", "api"), ("slot", slot)],
                )
                .is_some()
        }) && s.get("process_resident_memory_bytes", &[]).is_some()
    });

    // No Accept: the text format, which promtool finds nothing to say about.
    let plain = http_request(&e.addr, "/metrics", &[], T).unwrap();
    assert_eq!(plain.status, 200);
    assert_eq!(
        plain.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = String::from_utf8(plain.body.clone()).unwrap();
    assert!(!text.contains("# EOF") && !text.contains("{}"), "{text}");
    assert!(text.contains("\nbadgateway_exporter_resident_memory_bytes "));
    let (ok, said) = promtool_check(&plain.body);
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics: {said}"
    );

    // What Prometheus sends: OpenMetrics.
    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let om = http_request(&e.addr, "/metrics", &[("Accept", accept)], T).unwrap();
    assert_eq!(
        om.headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om_text = String::from_utf8(om.body).unwrap();
    assert!(om_text.ends_with("# EOF\n"));
    assert!(om_text.contains("# TYPE badgateway_worker_spawns counter\n"));
    assert!(text.contains("# TYPE badgateway_worker_spawns_total counter\n"));
    assert_eq!(series(&om_text), series(&text), "the same series in both");

    // gzip: the same exposition, compressed.
    let gz = http_request(
        &e.addr,
        "/metrics",
        &[("Accept-Encoding", "gzip, deflate")],
        T,
    )
    .unwrap();
    assert_eq!(gz.headers["content-encoding"], "gzip");
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_string(&mut unzipped)
        .unwrap();
    assert_eq!(series(&unzipped), series(&text));
    assert!(
        gz.body.len() * 2 < unzipped.len(),
        "{} of {}",
        gz.body.len(),
        unzipped.len()
    );
    drop(g);
}
