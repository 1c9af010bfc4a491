//! The corpus of real log formats (fixtures/nginx/formats/), each run for
//! real: nginx writes its access log in that format in front of a missing
//! unix socket and a live Gunicorn, so retries write `, ` lists and an
//! error_page redirect to a second upstream writes ` : ` groups. The test
//! reads the log and the error log itself, with its own regex, and the
//! exporter's scrape must match those counts exactly.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::nginx::Nginx;
use common::*;
use regex::Regex;

const T: Duration = Duration::from_secs(30);

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/nginx/formats")
}

fn read_corpus(name: &str) -> String {
    let p = corpus_dir().join(format!("{name}.conf"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The `log_format` directive of a corpus file, without the comment lines
/// above it, and named `corpus` (nginx refuses to redefine `combined`).
fn directive(conf: &str) -> String {
    let start = conf
        .lines()
        .position(|l| l.starts_with("log_format"))
        .expect("a log_format line");
    let text = conf.lines().skip(start).collect::<Vec<_>>().join("\n");
    Regex::new(r"^log_format\s+\S+")
        .unwrap()
        .replace(&text, "log_format corpus")
        .into_owned()
}

/// The format string of a directive, joined from its quoted pieces (no
/// piece of the corpus holds a quote of its own kind or an escape), and
/// whether it is `escape=json`. Written here rather than taken from the
/// exporter, so that the counts below do not share its reading.
fn format_of(directive: &str) -> (String, bool) {
    let code: String = directive
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let pieces = Regex::new(r#"'([^']*)'|"([^"]*)""#).unwrap();
    let format = pieces
        .captures_iter(&code)
        .map(|c| c.get(1).or(c.get(2)).unwrap().as_str().to_string())
        .collect();
    (format, code.contains("escape=json"))
}

const LISTS: &[&str] = &[
    "upstream_addr",
    "upstream_status",
    "upstream_response_time",
    "upstream_connect_time",
    "upstream_header_time",
    "upstream_response_length",
];

/// One regex for a whole line of `format`: upstream lists by their grammar
/// (entries without spaces or commas, joined by `, ` and ` : `), `$status`
/// as three digits, any other variable as little text as lets the line
/// match.
fn line_regex(format: &str) -> Regex {
    let var = Regex::new(r"\$(\w+)").unwrap();
    let mut re = String::from("^");
    let mut last = 0;
    for m in var.captures_iter(format) {
        let whole = m.get(0).unwrap();
        re.push_str(&regex::escape(&format[last..whole.start()]));
        let name = &m[1];
        re.push_str(&if LISTS.contains(&name) {
            format!(r#"(?P<{name}>[^ ,"]*(?:(?:, | : )[^ ,"]*)*)"#)
        } else if name == "status" {
            r"(?P<status>\d{3})".to_string()
        } else {
            "(?:.*?)".to_string()
        });
        last = whole.end();
    }
    re.push_str(&regex::escape(&format[last..]));
    re.push('$');
    Regex::new(&re).unwrap()
}

fn entries(list: &str) -> Vec<&str> {
    Regex::new(r", | : ").unwrap().split(list).collect()
}

fn nil(v: &str) -> bool {
    v.is_empty() || v == "-"
}

type Counts = BTreeMap<Vec<String>, f64>;

/// What the exporter should report, counted from the logs nginx wrote.
#[derive(Default, Debug)]
struct Expected {
    lines: usize,
    responses: Counts,
    attempts: Counts,
    failures: Counts,
    lists: usize,
    groups: usize,
}

fn count_access_log(format: &str, log: &str) -> Expected {
    let re = line_regex(format);
    let has_status = format.contains("$upstream_status");
    let mut e = Expected::default();
    for line in log.lines() {
        let c = re
            .captures(line)
            .unwrap_or_else(|| panic!("the test's regex {re} does not match\n{line}"));
        e.lines += 1;
        let mut last = "-".to_string();
        if let Some(addrs) = c.name("upstream_addr").map(|m| m.as_str()) {
            e.lists += usize::from(addrs.contains(", "));
            e.groups += usize::from(addrs.contains(" : "));
            let addrs = entries(addrs);
            let statuses = match c.name("upstream_status") {
                Some(s) if has_status => entries(s.as_str()),
                _ => vec!["-"; addrs.len()],
            };
            assert_eq!(addrs.len(), statuses.len(), "{line}");
            for (a, s) in addrs.iter().zip(statuses) {
                if nil(a) {
                    continue;
                }
                let s = if nil(s) { "-" } else { s };
                *e.attempts
                    .entry(vec![a.to_string(), s.to_string()])
                    .or_default() += 1.0;
                last = a.to_string();
            }
        }
        *e.responses
            .entry(vec![last, c["status"].to_string()])
            .or_default() += 1.0;
    }
    e
}

/// Failures by upstream and reason, from the error log. The setup only
/// fails one way (connecting to a socket that does not exist); any other
/// error line means the setup changed and the exact counts mean nothing.
fn count_error_log(log: &str, e: &mut Expected) {
    let missing = Regex::new(
        r"connect\(\) to (unix:\S+) failed \(2: No such file or directory\) while connecting to upstream",
    )
    .unwrap();
    for line in log.lines() {
        let c = missing
            .captures(line)
            .unwrap_or_else(|| panic!("unexpected error-log line: {line}"));
        *e.failures
            .entry(vec![
                c[1].to_string(),
                "socket_missing".into(),
                "connect".into(),
            ])
            .or_default() += 1.0;
    }
}

/// A GET with a user agent and referer that hold quotes and list
/// separators, as clients send them.
fn get(addr: &str, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: corpus\r\nUser-Agent: Mozilla/5.0 (X11; a, b : c) \"q\"\r\nReferer: http://ref/x?a=b,c\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    buf.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The scrape's series of `metric` for log `corpus`, keyed by `labels`.
fn scraped(s: &Scrape, metric: &str, labels: &[&str]) -> Counts {
    s.find(metric, &[("log", "corpus")])
        .into_iter()
        .map(|(l, v)| (labels.iter().map(|k| l[*k].clone()).collect(), v))
        .collect()
}

fn run_corpus(name: &str) {
    let conf = read_corpus(name);
    let directive = directive(&conf);
    let (format, json) = format_of(&directive);
    let tmp = TempDir::new(&format!("corpus-{name}"));
    let d = tmp.path();
    let dir = d.display().to_string();
    let app = Gunicorn::start(GunicornOpts {
        workers: 1,
        bind: format!("unix:{dir}/app.sock"),
        pidfile: d.join("app.pid"),
        extra: &[],
        pre_exec: None,
        venv: None,
    });
    let setup = |f: &str| read_corpus(f).replace("@DIR@", &dir);
    let nginx = Nginx::start_with(
        d,
        &format!(
            "{}\n{directive}\naccess_log {dir}/access.log corpus;\n",
            setup("setup-http")
        ),
        &setup("setup-server"),
    );
    let indented: String = directive.lines().map(|l| format!("      {l}\n")).collect();
    let config = format!(
        "nginx:\n  - name: corpus\n    access_log: {dir}/access.log\n    error_log: {dir}/error.log\n    log_format: |-\n{indented}"
    );
    let e = Exporter::start(Some(&config), &[]);
    e.wait_scrape(T, "the nginx source to run", |s| {
        s.get(
            "badgateway_log_lines_total",
            &[("log", "corpus"), ("file", "access")],
        )
        .is_some()
    });

    let mut sent = 0;
    for (path, times, status) in [
        ("/retry/", 6, 200),
        ("/redirect/", 4, 200),
        ("/gone/", 2, 502),
        ("/ok/?q=1", 2, 200),
        ("/static", 2, 200),
        ("/nothing", 1, 404),
    ] {
        for _ in 0..times {
            assert_eq!(get(&nginx.addr, path), status, "GET {path}");
            sent += 1;
        }
    }
    let access = d.join("access.log");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    wait_for(T, "nginx to log every request", || {
        read(&access).lines().count() == sent
    });

    let mut want = count_access_log(&format, &read(&access));
    count_error_log(&read(&d.join("error.log")), &mut want);
    assert_eq!(want.lines, sent);
    if format.contains("$upstream_addr") {
        assert!(want.lists > 0 && want.groups > 0, "{want:?}");
    }
    if json {
        assert!(read(&access).starts_with('{'));
    }

    let s = e.wait_scrape(T, "every line counted", |s| {
        s.get(
            "badgateway_log_lines_total",
            &[("log", "corpus"), ("file", "access")],
        ) == Some(sent as f64)
            && s.sum(
                "badgateway_nginx_upstream_failures_total",
                &[("log", "corpus")],
            ) == want.failures.values().sum::<f64>()
    });
    assert_eq!(
        s.sum("badgateway_log_parse_errors_total", &[("log", "corpus")]),
        0.0,
        "{}",
        s.text
    );
    assert_eq!(
        scraped(
            &s,
            "badgateway_nginx_responses_total",
            &["upstream", "status"]
        ),
        want.responses,
        "client statuses"
    );
    assert_eq!(
        scraped(
            &s,
            "badgateway_nginx_upstream_attempts_total",
            &["upstream", "status"]
        ),
        want.attempts,
        "attempts per upstream and status"
    );
    assert_eq!(
        scraped(
            &s,
            "badgateway_nginx_upstream_failures_total",
            &["upstream", "reason", "phase"]
        ),
        want.failures,
        "failures by reason"
    );
    for (metric, samples) in &s.samples {
        for (labels, _) in samples {
            for v in labels.values() {
                assert!(
                    !v.contains(", ") && !v.contains(" : ") && !v.ends_with(','),
                    "{metric}{labels:?}: a label holds a list separator"
                );
            }
        }
    }
    drop(e);
    drop(nginx);
    drop(app);
}

#[test]
fn nginx_combined() {
    run_corpus("combined");
}

#[test]
fn nginx_default_conf_main() {
    run_corpus("main");
}

#[test]
fn ingress_nginx_upstreaminfo() {
    run_corpus("upstreaminfo");
}

#[test]
fn logfmt_with_unquoted_upstream_fields() {
    run_corpus("logfmt");
}

#[test]
fn escape_json_analytics() {
    run_corpus("json_analytics");
}

#[test]
fn readme_example() {
    run_corpus("readme");
}

/// The README's example is the corpus's `readme` format.
#[test]
fn readme_example_is_the_fixture() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("    log_format: |\n")
        .expect("README has a log_format example");
    let example: String = readme[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("      "))
        .map(|l| format!("{}\n", &l[6..]))
        .collect();
    assert_eq!(
        format_of(&example),
        format_of(&directive(&read_corpus("readme")))
    );
}
