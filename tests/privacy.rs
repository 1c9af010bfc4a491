//! Privacy, end to end: real nginx in front of real Gunicorn, requests with
//! distinctive paths, query strings and a distinctive client address, a
//! distinctive variable in Gunicorn's environment and a distinctive
//! argument on its command line. None of them may reach a label or a log
//! line; /diagnose, the status page and /api/v1/timeline may show a path
//! without its query (the request in flight on a worker that died), never
//! a query or a client address.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use common::nginx::Nginx;
use common::*;

const T: Duration = Duration::from_secs(30);

const CLIENT: &str = "127.0.0.77";
const ENV_SECRET: &str = "env-secret-8v2m";
const ARG_SECRET: &str = "argv-secret-3j9q";
const QUERY_SECRET: &str = "qs-secret-91xz";
const QUERY_USER: &str = "qs-user-44";
const PATH_OK: &str = "/privacy-7f3k/";
const PATH_DEAD: &str = "/dead-55qq/";

/// GET `path` from `CLIENT`; returns the status.
fn get_from_client(addr: &str, path: &str) -> u16 {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{CLIENT}:0").parse().unwrap();
    s.bind(&from.into()).unwrap();
    let to: SocketAddr = addr.parse().unwrap();
    s.connect(&to.into()).unwrap();
    let mut s: std::net::TcpStream = s.into();
    s.set_read_timeout(Some(T)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: privacy.example\r\n\r\n").unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Where `needle` occurs in `hay`, with some context, for the message.
fn occurrences(hay: &str, needle: &str) -> Vec<String> {
    hay.lines()
        .filter(|l| l.contains(needle))
        .take(5)
        .map(str::to_string)
        .collect()
}

fn assert_absent(what: &str, text: &str, needles: &[&str]) {
    for n in needles {
        let found = occurrences(text, n);
        assert!(
            found.is_empty(),
            "{what} carries {n:?}:\n{}",
            found.join("\n")
        );
    }
}

#[test]
fn no_label_page_or_log_line_carries_private_data() {
    let dir = TempDir::new("privacy");
    let sock = dir.path().join("app.sock");
    let log = dir.path().join("gunicorn.log");
    let env_arg = format!("BGW_ARG_SECRET={ARG_SECRET}");
    let log_arg = log.display().to_string();
    let g = Gunicorn::start(GunicornOpts {
        workers: 2,
        bind: format!("unix:{}", sock.display()),
        pidfile: dir.path().join("app.pid"),
        extra: &[
            "--env",
            &env_arg,
            "--log-file",
            &log_arg,
            "--log-level",
            "debug",
        ],
        pre_exec: Some(format!("export BGW_ENV_SECRET={ENV_SECRET}")),
        venv: None,
    });
    // The secrets really are where a careless exporter would find them.
    let master = g.master_pid();
    let environ = std::fs::read(format!("/proc/{master}/environ")).unwrap();
    assert!(String::from_utf8_lossy(&environ).contains(ENV_SECRET));
    let cmdline = std::fs::read(format!("/proc/{master}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).contains(ARG_SECRET));

    let ndir = dir.path().join("nginx");
    std::fs::create_dir(&ndir).unwrap();
    let nginx = Nginx::start(
        &ndir,
        &format!(
            "location {PATH_OK} {{ proxy_pass http://unix:{sock}:/; }}\n        \
             location {PATH_DEAD} {{ proxy_pass http://unix:{dead}:/; }}",
            sock = sock.display(),
            dead = dir.path().join("nothing.sock").display()
        ),
    );
    let config = format!(
        "pools:\n  - name: app\n    server: gunicorn\n    pidfile: {}\n    log_file: {}\n{}",
        g.pidfile.display(),
        log.display(),
        nginx.config("edge")
    );
    let e = Exporter::start(Some(&config), &["--log.level=debug"]);
    e.wait_scrape(T, "pool app", |s| {
        s.get("badgateway_pool_workers", &[("pool", "app")]) == Some(2.0)
    });

    let query = format!("token={QUERY_SECRET}&email={QUERY_USER}%40example.com");
    for _ in 0..5 {
        assert_eq!(
            get_from_client(&nginx.addr, &format!("{PATH_OK}?{query}")),
            200
        );
    }
    for _ in 0..3 {
        assert_eq!(
            get_from_client(&nginx.addr, &format!("{PATH_DEAD}x?{query}")),
            502
        );
    }
    // Requests in flight on workers that die: their paths are what
    // /diagnose names for "reduce the request scope".
    let addr = nginx.addr.clone();
    let q = query.clone();
    let slow = std::thread::spawn(move || {
        (0..2)
            .map(|_| {
                let (a, q) = (addr.clone(), q.clone());
                std::thread::spawn(move || get_from_client(&a, &format!("{PATH_OK}sleep?s=5&{q}")))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<u16>>()
    });
    std::thread::sleep(Duration::from_millis(800));
    for w in g.worker_pids() {
        unsafe {
            libc::kill(w, libc::SIGKILL);
        }
    }
    assert_eq!(slow.join().unwrap(), [502, 502]);

    let s = e.wait_scrape(T, "the 502s counted and judged", |s| {
        s.sum(
            "badgateway_nginx_responses_total",
            &[("log", "edge"), ("status", "502")],
        ) == 5.0
            && s.sum("badgateway_failed_requests_total", &[("pool", "app")]) >= 2.0
    });
    assert_eq!(
        s.sum(
            "badgateway_nginx_responses_total",
            &[("log", "edge"), ("status", "200")]
        ),
        5.0
    );
    // The diagnosis is rebuilt at most once a second: wait for it to name
    // the paths of the requests on the dead workers, or the scan below
    // would prove nothing.
    let mut diagnose = String::new();
    wait_for(T, "the diagnosis to name the in-flight path", || {
        diagnose = http_get(&e.addr, "/diagnose", T).unwrap().1;
        diagnose.contains(&format!("{PATH_OK}sleep"))
    });
    let (_, diagnose_json) = http_get(&e.addr, "/diagnose?format=json", T).unwrap();
    let (_, page) = http_get(&e.addr, "/", T).unwrap();
    let (_, timeline) = http_get(&e.addr, "/api/v1/timeline", T).unwrap();
    let s = e.scrape();

    let never = [
        CLIENT,
        ENV_SECRET,
        ARG_SECRET,
        QUERY_SECRET,
        QUERY_USER,
        "BGW_ENV_SECRET",
        "BGW_ARG_SECRET",
        "privacy.example",
    ];
    let no_paths = [
        PATH_OK.trim_end_matches('/'),
        PATH_DEAD.trim_end_matches('/'),
    ];
    assert_absent("the scrape", &s.text, &never);
    assert_absent("the scrape", &s.text, &no_paths);
    assert_absent("the status page", &page, &never);
    assert_absent("/api/v1/timeline", &timeline, &never);
    assert_absent("/diagnose", &diagnose, &never);
    assert_absent("/diagnose?format=json", &diagnose_json, &never);
    let exporter_log = e.log();
    assert!(exporter_log.lines().count() > 3, "{exporter_log}");
    assert_absent("the exporter's log", &exporter_log, &never);
    assert_absent("the exporter's log", &exporter_log, &no_paths);
    // nginx's own logs do carry them: the exporter read them and kept
    // them to itself.
    let error_log = std::fs::read_to_string(ndir.join("error.log")).unwrap();
    assert!(
        error_log.contains(CLIENT) && error_log.contains(QUERY_SECRET),
        "{error_log}"
    );
}
