//! The listen queues of a real Gunicorn's sockets, filled by a burst of
//! slow requests: the backlog as the limit, and a peak that a scrape sees.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

/// `n` clients at once, each with one slow request; returns when all are
/// answered. One sync worker serves them one by one, so the rest wait in
/// the listen queue.
fn burst(n: usize, connect: impl Fn() -> Box<dyn ReadWrite> + Sync) {
    std::thread::scope(|s| {
        for _ in 0..n {
            s.spawn(|| {
                let mut c = connect();
                c.write_all(b"GET /sleep?s=0.4 HTTP/1.0\r\nHost: x\r\n\r\n")
                    .unwrap();
                let mut answer = String::new();
                c.read_to_string(&mut answer).unwrap();
                assert!(
                    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
                    "{answer}"
                );
            });
        }
    });
}

trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

#[test]
fn a_burst_shows_the_backlog_and_a_peak_on_unix_and_tcp_sockets() {
    let dir = TempDir::new("listenq");
    let d = dir.path();
    let port = free_port();
    let unix = format!("unix:{}/app.sock", d.display());
    let tcp = format!("127.0.0.1:{port}");
    let ctl = d.join("ctl.sock");
    let g = Gunicorn::start(GunicornOpts {
        workers: 1,
        bind: unix.clone(),
        pidfile: d.join("g.pid"),
        extra: &[
            "--bind",
            &tcp,
            "--backlog",
            "8",
            "--timeout",
            "30",
            "--control-socket",
            &ctl.display().to_string(),
        ],
        pre_exec: None,
        venv: None,
    });
    let config = format!(
        "pools:\n  - name: api\n    server: gunicorn\n    pidfile: {}\n",
        g.pidfile.display()
    );
    // A short peak window, so that the peak falls back soon after the burst.
    let e = Exporter::start(Some(&config), &["--collector.listen-queue.peak-window=1s"]);
    let q = |s: &Scrape, what: &str, listener: &str| {
        s.get(
            &format!("badgateway_pool_listen_queue_{what}"),
            &[("pool", "api"), ("listener", listener)],
        )
    };
    let s = e.wait_scrape(T, "both sockets sampled, idle", |s| {
        q(s, "limit", &unix).is_some() && q(s, "limit", &tcp).is_some()
    });
    let listeners: Vec<String> = s
        .find("badgateway_pool_listen_queue_limit", &[("pool", "api")])
        .into_iter()
        .map(|(l, _)| l["listener"].clone())
        .collect();
    assert_eq!(
        listeners.len(),
        2,
        "the control socket is not one: {listeners:?}"
    );
    for l in [&unix, &tcp] {
        assert_eq!(q(&s, "limit", l), Some(8.0), "{l}\n{}", s.text);
        assert_eq!(q(&s, "length", l), Some(0.0), "{l}");
    }
    assert_eq!(
        s.get("badgateway_source_up", &[("source", "listen_queue")]),
        Some(1.0)
    );

    let path = d.join("app.sock");
    for (listener, connect) in [
        (
            &unix,
            Box::new(|| Box::new(UnixStream::connect(&path).unwrap()) as Box<dyn ReadWrite>)
                as Box<dyn Fn() -> Box<dyn ReadWrite> + Sync>,
        ),
        (
            &tcp,
            Box::new(|| Box::new(TcpStream::connect(&tcp).unwrap()) as Box<dyn ReadWrite>),
        ),
    ] {
        let mut peak = 0.0f64;
        std::thread::scope(|s| {
            let sender = s.spawn(|| burst(6, &connect));
            while !sender.is_finished() {
                let sc = e.scrape();
                let (len, p) = (
                    q(&sc, "length", listener).unwrap(),
                    q(&sc, "peak", listener).unwrap(),
                );
                assert!(len <= p && p <= 9.0, "{listener}: length {len}, peak {p}");
                peak = peak.max(p);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        assert!(peak > 0.0, "{listener}: no queue seen during the burst");
        // 6 clients, one in the worker: at most 5 ever wait.
        assert!(peak <= 5.0, "{listener}: peak {peak}");
        e.wait_scrape(T, "the queue drained", |s| {
            q(s, "length", listener) == Some(0.0) && q(s, "peak", listener) == Some(0.0)
        });
    }
    drop(g);
}
