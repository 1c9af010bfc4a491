//! uWSGI, php-fpm, Unicorn and Puma from Debian's packages (scripts/test.sh
//! installs them), each with 3 workers in a memory cgroup behind real
//! nginx (`uwsgi_pass`, `fastcgi_pass`, `proxy_pass`), with a leaking
//! endpoint (tests/apps/: app.py, app.php, config.ru). From real
//! scrapes: the pool and its workers (a uWSGI mule and spooler not
//! counted), per-slot memory under the server's own worker numbers,
//! recycling counted `max_requests`, the server's request timeout counted
//! `timeout` with its 502 as `worker_timeout`, a real OOM kill counted
//! `oom_killed` with its 502 as `worker_oom_killed`, and a reload and a
//! stop by each server's own signals. And each server's status interface
//! read through a pool's `status:`: uWSGI's stats server, php-fpm's status
//! page over FastCGI, Puma's control app. Needs root.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::cgroup::Cgroup;
use common::kmsg::{kernel_kills, kmsg_records};
use common::nginx::Nginx;
use common::*;

const T: Duration = Duration::from_secs(30);
const MIB: u64 = 1 << 20;

fn need(bin: &str, package: &str) -> PathBuf {
    let p = Path::new(bin);
    assert!(
        p.exists(),
        "{bin} is not installed: run scripts/test.sh, which installs {package}"
    );
    p.to_path_buf()
}

/// `cmd` started inside `cg` (its first process enters the cgroup, then
/// execs), in its own process group.
fn start_in(cg: &Cgroup, name: &str, cmd: &[String]) -> Proc {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!(
            "echo $$ > {} && exec \"$@\"",
            cg.file("cgroup.procs").display()
        ))
        .arg("sh")
        .args(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    spawn(name, &mut c)
}

fn exits(s: &common::Scrape, pool: &str, reason: &str) -> f64 {
    s.get(
        "badgateway_worker_exits_total",
        &[("pool", pool), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

fn failed(s: &common::Scrape, pool: &str, cause: &str) -> f64 {
    s.sum(
        "badgateway_failed_requests_total",
        &[("pool", pool), ("cause", cause)],
    )
}

/// Slots of the pool that have an RSS, PSS and USS.
fn slots_with_memory(s: &common::Scrape, pool: &str) -> Vec<String> {
    let mut slots: Vec<String> = s
        .find(
            "badgateway_worker_memory_bytes",
            &[("pool", pool), ("type", "rss")],
        )
        .into_iter()
        .filter(|(_, v)| *v > 0.0)
        .map(|(l, _)| l["slot"].clone())
        .filter(|slot| {
            ["pss", "uss"].iter().all(|t| {
                s.get(
                    "badgateway_worker_memory_bytes",
                    &[("pool", pool), ("slot", slot), ("type", t)],
                )
                .is_some_and(|v| v > 0.0)
            })
        })
        .collect();
    slots.sort();
    slots
}

/// Leak through nginx until the kernel OOM-kills a process in `cg`;
/// returns the number of kills and the statuses nginx answered.
fn leak_until_killed(nginx: &Nginx, cg: &Cgroup, since: u64, path: &str) -> (usize, Vec<u16>) {
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(nginx.get(path));
        let k = kernel_kills(since, &cg.path);
        if !k.is_empty() {
            return (k.len(), statuses);
        }
    }
    panic!("the kernel killed no process in {}: {statuses:?}", cg.path);
}

/// A real OOM kill: the cgroup's limit set 60 MiB above its use, then
/// `path` leaked through nginx until the kernel kills; every kill counted
/// `oom_killed`, and its 502 `worker_oom_killed`. Returns the scrapes
/// before and after, for what each server adds.
fn oom_kill_counted(
    e: &Exporter,
    nginx: &Nginx,
    cg: &Cgroup,
    since: u64,
    pool: &str,
    path: &str,
) -> (common::Scrape, common::Scrape) {
    let s0 = e.scrape();
    cg.set_limit(cg.usage() + 60 * MIB);
    let (kills, statuses) = leak_until_killed(nginx, cg, since, path);
    assert!(statuses.contains(&502), "{statuses:?}");
    let s = e.wait_scrape(T, "the OOM kill and its 502", |s| {
        exits(s, pool, "oom_killed") == exits(&s0, pool, "oom_killed") + kills as f64
            && failed(s, pool, "worker_oom_killed") >= failed(&s0, pool, "worker_oom_killed") + 1.0
    });
    (s0, s)
}

/// `sig` to the server's master ends its 3 workers, counted `reason`, at a
/// scrape that `also` holds for; returns that scrape.
fn three_ends_counted(
    e: &Exporter,
    server: &Proc,
    sig: i32,
    pool: &str,
    reason: &str,
    what: &str,
    also: impl Fn(&common::Scrape) -> bool,
) -> common::Scrape {
    let s0 = e.scrape();
    server.signal(sig);
    e.wait_scrape(T, what, |s| {
        exits(s, pool, reason) == exits(&s0, pool, reason) + 3.0 && also(s)
    })
}

/// `sig`, the server's stop: its 3 workers counted `shutdown`, and the
/// pool down.
fn stopped(e: &Exporter, server: &Proc, sig: i32, pool: &str) {
    let s = three_ends_counted(e, server, sig, pool, "shutdown", "the stop counted", |_| {
        true
    });
    assert_eq!(s.get("badgateway_pool_up", &[("pool", pool)]), Some(0.0));
}

#[test]
fn uwsgi_behind_nginx() {
    let uwsgi = need("/usr/bin/uwsgi", "uwsgi-core");
    need(
        "/usr/lib/uwsgi/plugins/python3_plugin.so",
        "uwsgi-plugin-python3",
    );
    let since = kmsg_records().last().map_or(0, |r| r.0);
    let cg = Cgroup::create("uwsgi");
    let dir = TempDir::new("uwsgi");
    let d = dir.path();
    let sock = d.join("uwsgi.sock");
    let log = d.join("uwsgi.log");
    let pidfile = d.join("uwsgi.pid");
    std::fs::create_dir_all(d.join("spool")).unwrap();
    let arg = |s: &str| s.to_string();
    let path = |p: &Path| p.display().to_string();
    let server = start_in(
        &cg,
        "uwsgi",
        &[
            path(&uwsgi),
            arg("--plugin"),
            arg("python3"),
            arg("--master"),
            arg("--processes"),
            arg("3"),
            arg("--mule"),
            arg("--spooler"),
            path(&d.join("spool")),
            arg("--auto-procname"),
            arg("--socket"),
            path(&sock),
            arg("--chmod-socket=666"),
            arg("--wsgi-file"),
            path(&apps_dir().join("uwsgi_app.py")),
            arg("--harakiri"),
            arg("3"),
            arg("--max-requests"),
            arg("4"),
            arg("--min-worker-lifetime"),
            arg("1"),
            arg("--reload-mercy"),
            arg("5"),
            arg("--worker-reload-mercy"),
            arg("5"),
            arg("--logto"),
            path(&log),
            arg("--pidfile"),
            path(&pidfile),
        ],
    );
    wait_for(T, "uWSGI's mule", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("spawned uWSGI mule 1"))
    });
    let master = server.pid();
    // The master, its 3 workers, the mule and the spooler.
    assert_eq!(children_of(master).len(), 5, "{:?}", children_of(master));

    let nginx_dir = TempDir::new("uwsgi-nginx");
    let nginx = Nginx::start(
        nginx_dir.path(),
        &format!(
            "location / {{ include /etc/nginx/uwsgi_params; uwsgi_pass unix:{}; }}",
            sock.display()
        ),
    );
    let yaml = format!(
        "pools:\n  - name: uw\n    server: uwsgi\n    pidfile: {}\n    log_file: {}\n{}",
        pidfile.display(),
        log.display(),
        nginx.config("edge"),
    );
    let e = Exporter::start(Some(&yaml), &[]);

    // 3 workers, the mule and the spooler not counted; slots 1, 2, 3 as
    // uWSGI numbers its workers, each with its RSS, PSS and USS.
    let s = e.wait_scrape(T, "3 workers with their memory", |s| {
        s.get("badgateway_pool_workers", &[("pool", "uw")]) == Some(3.0)
            && slots_with_memory(s, "uw") == ["1", "2", "3"]
    });
    assert_eq!(s.get("badgateway_pool_up", &[("pool", "uw")]), Some(1.0));
    assert_eq!(nginx.get("/"), 200);
    // The same from /proc polling alone, without the process events.
    let polling = Exporter::start(Some(&yaml), &["--collector.proc-events=false"]);
    polling.wait_scrape(T, "3 workers by polling", |s| {
        s.get("badgateway_pool_workers", &[("pool", "uw")]) == Some(3.0)
            && slots_with_memory(s, "uw") == ["1", "2", "3"]
    });
    drop(polling);

    // Recycling: --max-requests 4 once a worker is 1 s old.
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..16 {
        assert_eq!(nginx.get("/"), 200);
    }
    let s = e.wait_scrape(T, "recycled workers counted max_requests", |s| {
        exits(s, "uw", "max_requests") >= 1.0
    });
    eprintln!("max_requests exits: {}", exits(&s, "uw", "max_requests"));
    e.wait_scrape(T, "3 workers again", |s| {
        s.get("badgateway_pool_workers", &[("pool", "uw")]) == Some(3.0)
            && slots_with_memory(s, "uw") == ["1", "2", "3"]
    });
    let s0 = e.scrape();

    // Harakiri: a request past --harakiri 3 is a timeout, its 502 the
    // worker's timeout.
    let status = nginx.get("/sleep?s=10");
    assert_eq!(status, 502);
    let s = e.wait_scrape(T, "the harakiri counted timeout", |s| {
        exits(s, "uw", "timeout") == exits(&s0, "uw", "timeout") + 1.0
            && failed(s, "uw", "worker_timeout") == failed(&s0, "uw", "worker_timeout") + 1.0
    });
    assert_eq!(
        exits(&s, "uw", "signal"),
        exits(&s0, "uw", "signal"),
        "the harakiri's SIGKILL is not counted signal"
    );

    // A real OOM kill of a worker leaking in one request (many small
    // leaks would recycle workers at --max-requests around the kill, and
    // its 502 would have two possible causes).
    e.wait_scrape(T, "3 workers again", |s| {
        s.get("badgateway_pool_workers", &[("pool", "uw")]) == Some(3.0)
    });
    // Past the failure-cause window (2 s) of the harakiri's end, so that
    // the kill is the only end near its 502.
    std::thread::sleep(Duration::from_secs(3));
    let (s0, s) = oom_kill_counted(&e, &nginx, &cg, since, "uw", "/leak?mb=200");
    assert_eq!(exits(&s, "uw", "signal"), exits(&s0, "uw", "signal"));

    // SIGHUP: a graceful reload; its 3 workers counted reload.
    e.wait_scrape(T, "3 workers again", |s| {
        s.get("badgateway_pool_workers", &[("pool", "uw")]) == Some(3.0)
    });
    three_ends_counted(
        &e,
        &server,
        libc::SIGHUP,
        "uw",
        "reload",
        "the reload counted",
        |s| s.get("badgateway_pool_workers", &[("pool", "uw")]) == Some(3.0),
    );

    // SIGTERM: in uWSGI 2.0 a brutal reload, not a stop.
    three_ends_counted(
        &e,
        &server,
        libc::SIGTERM,
        "uw",
        "reload",
        "the brutal reload counted",
        |s| s.get("badgateway_pool_workers", &[("pool", "uw")]) == Some(3.0),
    );
    assert_eq!(exits(&e.scrape(), "uw", "shutdown"), 0.0);

    // SIGINT: a stop; its 3 workers counted shutdown.
    stopped(&e, &server, libc::SIGINT, "uw");
    drop(e);
    drop(nginx);
    drop(server);
}

fn php_fpm_binary() -> PathBuf {
    let found = std::fs::read_dir("/usr/sbin").ok().and_then(|d| {
        d.flatten().map(|e| e.path()).find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("php-fpm"))
        })
    });
    found.unwrap_or_else(|| {
        panic!("php-fpm is not installed: run scripts/test.sh, which installs php-fpm")
    })
}

#[test]
fn php_fpm_behind_nginx() {
    let fpm = php_fpm_binary();
    let since = kmsg_records().last().map_or(0, |r| r.0);
    let cg = Cgroup::create("phpfpm");
    let dir = TempDir::new("phpfpm");
    let d = dir.path();
    let sock = d.join("fpm.sock");
    let log = d.join("fpm.log");
    let pidfile = d.join("fpm.pid");
    let conf = d.join("fpm.conf");
    std::fs::write(
        &conf,
        format!(
            "[global]\nerror_log = {log}\npid = {pid}\ndaemonize = no\n\n\
             [www]\nuser = www-data\ngroup = www-data\nlisten = {sock}\nlisten.mode = 0666\n\
             pm = static\npm.max_children = 3\npm.max_requests = 5\n\
             request_terminate_timeout = 3s\nphp_admin_value[memory_limit] = -1\n\n\
             [admin]\nuser = www-data\ngroup = www-data\nlisten = {admin}\n\
             pm = static\npm.max_children = 1\n",
            admin = d.join("admin.sock").display(),
            log = log.display(),
            pid = pidfile.display(),
            sock = sock.display(),
        ),
    )
    .unwrap();
    let server = start_in(
        &cg,
        "php-fpm",
        &[
            fpm.display().to_string(),
            "-F".into(),
            "-R".into(),
            "-y".into(),
            conf.display().to_string(),
        ],
    );
    // 3 children of pool www, 1 of pool admin.
    wait_for(T, "php-fpm's 4 children", || {
        sock.exists() && children_of(server.pid()).len() == 4
    });

    let nginx_dir = TempDir::new("phpfpm-nginx");
    let nginx = Nginx::start(
        nginx_dir.path(),
        &format!(
            "location / {{ include /etc/nginx/fastcgi_params; \
             fastcgi_param SCRIPT_FILENAME {}; fastcgi_pass unix:{}; }}",
            apps_dir().join("app.php").display(),
            sock.display()
        ),
    );
    let yaml = format!(
        "pools:\n  - name: fpm\n    server: php-fpm\n    php_fpm_pool: www\n    pidfile: {}\n    log_file: {}\n{}",
        pidfile.display(),
        log.display(),
        nginx.config("edge"),
    );
    let e = Exporter::start(Some(&yaml), &[]);
    let three =
        |s: &common::Scrape| s.get("badgateway_pool_workers", &[("pool", "fpm")]) == Some(3.0);

    // 3 children on the lowest free slots, each with RSS, PSS and USS; the
    // child of pool admin not counted.
    e.wait_scrape(T, "3 children with their memory", |s| {
        three(s) && slots_with_memory(s, "fpm") == ["0", "1", "2"]
    });
    assert_eq!(nginx.get("/"), 200);

    // pm.max_requests = 5: a child leaves with code 0. php-fpm gives a
    // request to whichever child is idle, so how they spread is its
    // choice: 27 requests over 3 slots recycle at least 3 children however
    // they spread (a slot that got n recycled n / 5 times, and 27 = 3 x 5
    // + 3 x 4), where 21 could recycle only 2.
    for _ in 0..26 {
        assert_eq!(nginx.get("/"), 200);
    }
    e.wait_scrape(T, "recycled children counted max_requests", |s| {
        exits(s, "fpm", "max_requests") >= 3.0 && three(s)
    });
    std::thread::sleep(Duration::from_secs(3));

    // request_terminate_timeout = 3s: php-fpm logs the timeout and ends
    // the child with SIGTERM.
    let s0 = e.scrape();
    assert_eq!(nginx.get("/?sleep=10"), 502);
    let s = e.wait_scrape(T, "the timeout counted", |s| {
        exits(s, "fpm", "timeout") == exits(&s0, "fpm", "timeout") + 1.0
            && failed(s, "fpm", "worker_timeout") == failed(&s0, "fpm", "worker_timeout") + 1.0
    });
    assert_eq!(exits(&s, "fpm", "signal"), exits(&s0, "fpm", "signal"));
    e.wait_scrape(T, "3 children again", three);
    std::thread::sleep(Duration::from_secs(3));

    // A real OOM kill of a child allocating 200 MiB in one request.
    let (s0, s) = oom_kill_counted(&e, &nginx, &cg, since, "fpm", "/?leak=200");
    assert_eq!(exits(&s, "fpm", "signal"), exits(&s0, "fpm", "signal"));

    // SIGUSR2: a reload; SIGQUIT: a graceful stop.
    e.wait_scrape(T, "3 children again", three);
    three_ends_counted(
        &e,
        &server,
        libc::SIGUSR2,
        "fpm",
        "reload",
        "the reload counted",
        three,
    );
    stopped(&e, &server, libc::SIGQUIT, "fpm");
    drop(e);
    drop(nginx);
    drop(server);
}

#[test]
fn unicorn_behind_nginx() {
    need("/usr/bin/unicorn", "unicorn");
    let since = kmsg_records().last().map_or(0, |r| r.0);
    let cg = Cgroup::create("unicorn");
    let dir = TempDir::new("unicorn");
    let d = dir.path();
    let sock = d.join("unicorn.sock");
    let log = d.join("unicorn.log");
    let pidfile = d.join("unicorn.pid");
    let conf = d.join("unicorn.rb");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 3\ntimeout 3\nlisten \"{}\"\npid \"{}\"\nstderr_path \"{}\"\n",
            sock.display(),
            pidfile.display(),
            log.display()
        ),
    )
    .unwrap();
    let server = start_in(
        &cg,
        "unicorn",
        &[
            "env".into(),
            "BGW_WORKER_OOM_FIRST=1".into(),
            "unicorn".into(),
            "-c".into(),
            conf.display().to_string(),
            apps_dir().join("config.ru").display().to_string(),
        ],
    );
    wait_for(T, "Unicorn's 3 workers ready", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.matches(" ready").count() >= 3)
    });
    let nginx_dir = TempDir::new("unicorn-nginx");
    let nginx = Nginx::start(
        nginx_dir.path(),
        &format!(
            "location / {{ proxy_pass http://unix:{}; }}",
            sock.display()
        ),
    );
    let yaml = format!(
        "pools:\n  - name: uc\n    server: unicorn\n    pidfile: {}\n    log_file: {}\n{}",
        pidfile.display(),
        log.display(),
        nginx.config("edge"),
    );
    let e = Exporter::start(Some(&yaml), &[]);
    let three =
        |s: &common::Scrape| s.get("badgateway_pool_workers", &[("pool", "uc")]) == Some(3.0);
    // Slots are Unicorn's worker[N].
    e.wait_scrape(T, "3 workers with their memory", |s| {
        three(s) && slots_with_memory(s, "uc") == ["0", "1", "2"]
    });
    assert_eq!(nginx.get("/"), 200);

    // A request past `timeout 3`: Unicorn logs the timeout and SIGKILLs.
    let s0 = e.scrape();
    assert_eq!(nginx.get("/sleep?s=10"), 502);
    let s = e.wait_scrape(T, "the timeout counted", |s| {
        exits(s, "uc", "timeout") == exits(&s0, "uc", "timeout") + 1.0
            && failed(s, "uc", "worker_timeout") == failed(&s0, "uc", "worker_timeout") + 1.0
    });
    assert_eq!(exits(&s, "uc", "signal"), exits(&s0, "uc", "signal"));
    e.wait_scrape(T, "3 workers again", |s| {
        three(s) && slots_with_memory(s, "uc") == ["0", "1", "2"]
    });
    std::thread::sleep(Duration::from_secs(3));

    // A real OOM kill: the same reap line as the timeout's, without one.
    let (s0, s) = oom_kill_counted(&e, &nginx, &cg, since, "uc", "/leak?mb=200");
    assert_eq!(exits(&s, "uc", "timeout"), exits(&s0, "uc", "timeout"));

    // HUP: a reload; QUIT: a graceful stop.
    e.wait_scrape(T, "3 workers again", three);
    three_ends_counted(
        &e,
        &server,
        libc::SIGHUP,
        "uc",
        "reload",
        "the reload counted",
        three,
    );
    stopped(&e, &server, libc::SIGQUIT, "uc");
    drop(e);
    drop(nginx);
    drop(server);
}

#[test]
fn puma_discovered_behind_nginx() {
    need("/usr/bin/puma", "puma");
    let since = kmsg_records().last().map_or(0, |r| r.0);
    let cg = Cgroup::create("puma");
    let dir = TempDir::new("puma");
    let d = dir.path();
    let sock = d.join("puma.sock");
    let log = d.join("puma.log");
    let pidfile = d.join("puma.pid");
    let log_s = log.display().to_string();
    let server = start_in(
        &cg,
        "puma",
        &[
            "env".into(),
            "BGW_WORKER_OOM_FIRST=1".into(),
            "puma".into(),
            "-w".into(),
            "3".into(),
            "--tag".into(),
            "bgwpuma".into(),
            "-b".into(),
            format!("unix://{}", sock.display()),
            "--redirect-stdout".into(),
            log_s.clone(),
            "--redirect-stderr".into(),
            log_s,
            "--redirect-append".into(),
            "--pidfile".into(),
            pidfile.display().to_string(),
            apps_dir().join("config.ru").display().to_string(),
        ],
    );
    wait_for(T, "Puma's 3 workers booted", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.matches(") booted").count() >= 3)
    });
    let nginx_dir = TempDir::new("puma-nginx");
    let nginx = Nginx::start(
        nginx_dir.path(),
        &format!(
            "location / {{ proxy_pass http://unix:{}; }}",
            sock.display()
        ),
    );
    // Discovery: found by its process title (`puma 5.6.5 (unix://...)
    // [bgwpuma]`), named by its tag, slots its worker indexes.
    let discovered = Exporter::start(
        Some(&format!("discover: [puma]\n{}", nginx.config("edge"))),
        &[],
    );
    discovered.wait_scrape(T, "the discovered pool, 3 workers with their memory", |s| {
        s.get("badgateway_pool_workers", &[("pool", "bgwpuma")]) == Some(3.0)
            && slots_with_memory(s, "bgwpuma") == ["0", "1", "2"]
    });
    drop(discovered);

    // Configured with its log, for the rest.
    let yaml = format!(
        "pools:\n  - name: pu\n    server: puma\n    pidfile: {}\n    log_file: {}\n{}",
        pidfile.display(),
        log.display(),
        nginx.config("edge"),
    );
    let e = Exporter::start(Some(&yaml), &[]);
    let three =
        |s: &common::Scrape| s.get("badgateway_pool_workers", &[("pool", "pu")]) == Some(3.0);
    e.wait_scrape(T, "3 workers with their memory", |s| {
        three(s) && slots_with_memory(s, "pu") == ["0", "1", "2"]
    });
    assert_eq!(nginx.get("/"), 200);

    // A real OOM kill. Puma logs nothing about it: the process events and
    // the kernel are the evidence.
    oom_kill_counted(&e, &nginx, &cg, since, "pu", "/leak?mb=200");

    // USR2, a hot restart: the master execs itself (its comm becomes
    // ruby3.x), the pool follows the same pid, its old workers counted
    // reload.
    e.wait_scrape(T, "3 workers again", three);
    let s0 = e.scrape();
    let master = server.pid();
    server.signal(libc::SIGUSR2);
    wait_for(T, "the master's comm after the hot restart", || {
        std::fs::read_to_string(format!("/proc/{master}/comm")).is_ok_and(|c| c.starts_with("ruby"))
    });
    let s = e.wait_scrape(T, "the hot restart counted reload", |s| {
        exits(s, "pu", "reload") == exits(&s0, "pu", "reload") + 3.0
            && three(s)
            && slots_with_memory(s, "pu") == ["0", "1", "2"]
    });
    assert_eq!(s.get("badgateway_pool_up", &[("pool", "pu")]), Some(1.0));

    // TERM: a stop.
    stopped(&e, &server, libc::SIGTERM, "pu");
    drop(e);
    drop(nginx);
    drop(server);
}

/// Gunicorn's USR2 hot restart forks a new master from the old one: with
/// setproctitle it is titled `gunicorn: master`, and it is not a worker of
/// the old master's pool, nor counted as a worker's exit when it leaves
/// the old master's children. When the old master quits, the pidfile
/// names the new one and the pool follows it.
#[test]
fn gunicorn_usr2_new_master_is_not_a_worker() {
    let dir = TempDir::new("usr2");
    let pidfile = dir.path().join("gunicorn.pid");
    let g = Gunicorn::start(GunicornOpts {
        workers: 2,
        bind: format!("127.0.0.1:{}", free_port()),
        pidfile: pidfile.clone(),
        extra: &["--name", "usr2"],
        pre_exec: None,
        venv: Some(venv_setproctitle()),
    });
    let yaml = format!(
        "pools:\n  - name: app\n    server: gunicorn\n    pidfile: {}\n",
        pidfile.display()
    );
    let e = Exporter::start(Some(&yaml), &[]);
    let workers = |s: &common::Scrape| s.get("badgateway_pool_workers", &[("pool", "app")]);
    let ended = |s: &common::Scrape| s.sum("badgateway_worker_exits_total", &[("pool", "app")]);
    e.wait_scrape(T, "2 workers", |s| workers(s) == Some(2.0));
    let s0 = e.scrape();

    let old = g.master_pid();
    g.proc.signal(libc::SIGUSR2);
    let title =
        |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let new_master = || {
        children_of(old)
            .into_iter()
            .find(|c| title(*c).starts_with("gunicorn: master"))
    };
    wait_for(T, "the new master with its 2 workers", || {
        new_master().is_some_and(|m| children_of(m).len() == 2)
    });
    // Past the 2 s a child may keep its master's title.
    std::thread::sleep(Duration::from_secs(3));
    let s = e.wait_scrape(T, "the old master's 2 workers alone", |s| {
        workers(s) == Some(2.0)
    });
    assert_eq!(ended(&s), ended(&s0), "no worker ended");
    assert_eq!(children_of(old).len(), 3, "2 workers and the new master");

    // The old master quits gracefully; Gunicorn moved its pidfile aside
    // and the new master wrote its own.
    let new = new_master().unwrap();
    unsafe {
        libc::kill(old, libc::SIGTERM);
    }
    let s = e.wait_scrape(T, "the pool on the new master", |s| {
        workers(s) == Some(2.0)
            && ended(s) == ended(&s0) + 2.0
            && std::fs::read_to_string(&pidfile).is_ok_and(|p| p.trim() == new.to_string())
    });
    assert_eq!(s.get("badgateway_pool_up", &[("pool", "app")]), Some(1.0));
    unsafe {
        libc::kill(new, libc::SIGTERM);
    }
    drop(e);
    drop(g);
}

/// The worker series of one pool, by slot.
fn by_slot(s: &common::Scrape, name: &str, pool: &str) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = s
        .find(name, &[("pool", pool)])
        .into_iter()
        .map(|(l, v)| (l["slot"].clone(), v))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// uWSGI's stats server (`--stats`): each worker's requests under its
/// worker id, the pool's harakiris and the source's health.
#[test]
fn uwsgi_stats_server_read() {
    let uwsgi = need("/usr/bin/uwsgi", "uwsgi-core");
    let dir = TempDir::new("uwsgi-stats");
    let d = dir.path();
    let (sock, stats, pidfile) = (
        d.join("uwsgi.sock"),
        d.join("stats.sock"),
        d.join("uwsgi.pid"),
    );
    let log = d.join("uwsgi.log");
    let mut cmd = Command::new(&uwsgi);
    cmd.args([
        "--plugin",
        "python3",
        "--master",
        "--processes",
        "3",
        "--auto-procname",
    ])
    .arg("--socket")
    .arg(&sock)
    .arg("--chmod-socket=666")
    .arg("--stats")
    .arg(&stats)
    .arg("--wsgi-file")
    .arg(apps_dir().join("uwsgi_app.py"))
    .args(["--harakiri", "2", "--logto"])
    .arg(&log)
    .arg("--pidfile")
    .arg(&pidfile)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let _server = spawn("uwsgi", &mut cmd);
    wait_for(T, "uWSGI's stats server", || {
        stats.exists() && pidfile.exists()
    });
    let nginx_dir = TempDir::new("uwsgi-stats-nginx");
    let nginx = Nginx::start(
        nginx_dir.path(),
        &format!(
            "location / {{ include /etc/nginx/uwsgi_params; uwsgi_pass unix:{}; }}",
            sock.display()
        ),
    );
    let yaml = format!(
        "pools:\n  - name: uw\n    server: uwsgi\n    pidfile: {}\n    status: {}\n",
        pidfile.display(),
        stats.display(),
    );
    let e = Exporter::start(Some(&yaml), &[]);
    let s = e.wait_scrape(T, "3 workers, each with its requests", |s| {
        s.get("badgateway_pool_workers", &[("pool", "uw")]) == Some(3.0)
            && by_slot(s, "badgateway_worker_requests_total", "uw").len() == 3
    });
    let before = s.sum("badgateway_worker_requests_total", &[("pool", "uw")]);
    assert_eq!(before, 0.0, "no request yet");
    assert_eq!(
        s.get("badgateway_source_up", &[("source", "status/uw")]),
        Some(1.0)
    );
    assert_eq!(
        s.get("badgateway_uwsgi_harakiris_total", &[("pool", "uw")]),
        Some(0.0)
    );
    for _ in 0..12 {
        assert_eq!(nginx.get("/"), 200);
    }
    let s = e.wait_scrape(T, "the 12 requests counted by worker", |s| {
        s.sum("badgateway_worker_requests_total", &[("pool", "uw")]) == 12.0
    });
    let slots = by_slot(&s, "badgateway_worker_requests_total", "uw");
    let names: Vec<&str> = slots.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, ["1", "2", "3"], "uWSGI's worker ids: {slots:?}");
    eprintln!("requests by slot: {slots:?}");

    // A harakiri: counted by uWSGI.
    std::thread::scope(|t| {
        let slow = t.spawn(|| nginx.get("/sleep?s=6"));
        e.wait_scrape(T, "one worker busy", |s| {
            s.get("badgateway_pool_busy_workers", &[("pool", "uw")]) == Some(1.0)
        });
        assert_eq!(slow.join().unwrap(), 502);
    });
    // The killed worker reads busy until its replacement is up.
    e.wait_scrape(T, "the harakiri counted, no worker busy", |s| {
        s.get("badgateway_uwsgi_harakiris_total", &[("pool", "uw")]) == Some(1.0)
            && s.get("badgateway_pool_workers", &[("pool", "uw")]) == Some(3.0)
            && s.get("badgateway_pool_busy_workers", &[("pool", "uw")]) == Some(0.0)
    });

    // The stats server gone: the source is down, its series absent.
    std::fs::remove_file(&stats).unwrap();
    let s = e.wait_scrape(T, "the status source down", |s| {
        s.get("badgateway_source_up", &[("source", "status/uw")]) == Some(0.0)
    });
    assert!(by_slot(&s, "badgateway_worker_requests_total", "uw").is_empty());
}

/// php-fpm's status page, read over FastCGI on the pool's socket: max
/// children reached counted when more requests come than
/// `pm.max_children`, slow requests, each child's requests.
#[test]
fn php_fpm_status_page_read() {
    let fpm = php_fpm_binary();
    let dir = TempDir::new("phpfpm-status");
    let d = dir.path();
    let (sock, log, pidfile, conf) = (
        d.join("fpm.sock"),
        d.join("fpm.log"),
        d.join("fpm.pid"),
        d.join("fpm.conf"),
    );
    std::fs::write(
        &conf,
        format!(
            "[global]\nerror_log = {log}\npid = {pid}\ndaemonize = no\n\n\
             [www]\nuser = www-data\ngroup = www-data\nlisten = {sock}\nlisten.mode = 0666\n\
             pm = dynamic\npm.max_children = 2\npm.start_servers = 1\n\
             pm.min_spare_servers = 1\npm.max_spare_servers = 2\n\
             pm.status_path = /fpm-status\n\
             request_slowlog_timeout = 1s\nslowlog = {slow}\n",
            log = log.display(),
            pid = pidfile.display(),
            sock = sock.display(),
            slow = d.join("slow.log").display(),
        ),
    )
    .unwrap();
    let mut cmd = Command::new(&fpm);
    cmd.args(["-F", "-R", "-y"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _server = spawn("php-fpm", &mut cmd);
    wait_for(T, "php-fpm's socket", || sock.exists() && pidfile.exists());
    let nginx_dir = TempDir::new("phpfpm-status-nginx");
    let nginx = Nginx::start(
        nginx_dir.path(),
        &format!(
            "location / {{ include /etc/nginx/fastcgi_params; \
             fastcgi_param SCRIPT_FILENAME {}; fastcgi_pass unix:{}; }}",
            apps_dir().join("app.php").display(),
            sock.display()
        ),
    );
    let yaml = format!(
        "pools:\n  - name: fpm\n    server: php-fpm\n    pidfile: {}\n    status: 'unix:{}:/fpm-status'\n",
        pidfile.display(),
        sock.display(),
    );
    let e = Exporter::start(Some(&yaml), &[]);
    let reached = |s: &common::Scrape| {
        s.get(
            "badgateway_php_fpm_max_children_reached_total",
            &[("pool", "fpm")],
        )
    };
    let s = e.wait_scrape(T, "the status page read", |s| reached(s).is_some());
    assert_eq!(reached(&s), Some(0.0));
    assert_eq!(
        s.get("badgateway_source_up", &[("source", "status/fpm")]),
        Some(1.0)
    );
    assert_eq!(
        s.get("badgateway_php_fpm_slow_requests_total", &[("pool", "fpm")]),
        Some(0.0)
    );

    // 5 requests of 2 s at once on pm.max_children = 2.
    std::thread::scope(|t| {
        let hs: Vec<_> = (0..5).map(|_| t.spawn(|| nginx.get("/?sleep=2"))).collect();
        // Both children busy: the status request waits for one, and the
        // read fails at its timeout; between requests it answers.
        e.wait_scrape(T, "a busy child", |s| {
            s.get("badgateway_pool_busy_workers", &[("pool", "fpm")]) >= Some(1.0)
        });
        for h in hs {
            assert_eq!(h.join().unwrap(), 200);
        }
    });
    let s = e.wait_scrape(T, "max children reached and the slow requests", |s| {
        reached(s).is_some_and(|n| n >= 1.0)
            && s.get("badgateway_php_fpm_slow_requests_total", &[("pool", "fpm")]) >= Some(5.0)
    });
    eprintln!("max children reached: {:?}", reached(&s));
    // Each child's requests under its slot: the 5 requests and the
    // exporter's own status reads.
    let slots = by_slot(&s, "badgateway_worker_requests_total", "fpm");
    assert_eq!(slots.len(), 2, "{slots:?}");
    assert!(
        slots.iter().map(|(_, n)| n).sum::<f64>() >= 5.0,
        "{slots:?}"
    );
    let memory: Vec<String> = s
        .find(
            "badgateway_worker_memory_bytes",
            &[("pool", "fpm"), ("type", "rss")],
        )
        .into_iter()
        .map(|(l, _)| l["slot"].clone())
        .collect();
    assert!(
        slots.iter().all(|(slot, _)| memory.contains(slot)),
        "{slots:?} {memory:?}"
    );

    // A wrong status path: php-fpm answers 404, the source says so.
    let bad = format!(
        "pools:\n  - name: fpm\n    server: php-fpm\n    pidfile: {}\n    status: 'unix:{}:/nope'\n",
        pidfile.display(),
        sock.display(),
    );
    let e2 = Exporter::start(Some(&bad), &[]);
    let s = e2.wait_scrape(T, "the status source down", |s| {
        s.get("badgateway_source_up", &[("source", "status/fpm")]) == Some(0.0)
    });
    assert_eq!(reached(&s), None);
}

/// Puma's control app: each worker's check-in age as its heartbeat age,
/// its requests and backlog under its index.
#[test]
fn puma_control_app_read() {
    need("/usr/bin/puma", "puma");
    let dir = TempDir::new("puma-status");
    let d = dir.path();
    let (sock, pidfile) = (d.join("puma.sock"), d.join("puma.pid"));
    let control = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new("puma");
    cmd.args(["-w", "3", "-b"])
        .arg(format!("unix://{}", sock.display()))
        .arg("--control-url")
        .arg(format!("tcp://{control}"))
        .args(["--control-token", "s3cret", "--pidfile"])
        .arg(&pidfile)
        .arg(apps_dir().join("config.ru"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let server = spawn("puma", &mut cmd);
    wait_for(T, "Puma's 3 workers", || {
        pidfile.exists() && children_of(server.pid()).len() == 3
    });
    let nginx_dir = TempDir::new("puma-status-nginx");
    let nginx = Nginx::start(
        nginx_dir.path(),
        &format!(
            "location / {{ proxy_pass http://unix:{}; }}",
            sock.display()
        ),
    );
    let yaml = format!(
        "pools:\n  - name: pu\n    server: puma\n    pidfile: {}\n    status: '{control}/stats?token=s3cret'\n",
        pidfile.display(),
    );
    let e = Exporter::start(Some(&yaml), &[]);
    let s = e.wait_scrape(T, "a check-in age for each of the 3 workers", |s| {
        by_slot(s, "badgateway_worker_heartbeat_age_seconds", "pu").len() == 3
    });
    let ages = by_slot(&s, "badgateway_worker_heartbeat_age_seconds", "pu");
    let slots: Vec<&str> = ages.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(slots, ["0", "1", "2"]);
    // Puma's workers check in every 5 s, stamped to the second.
    for (slot, age) in &ages {
        assert!((0.0..=7.0).contains(age), "slot {slot}: {age}");
    }
    assert_eq!(
        s.get("badgateway_source_up", &[("source", "status/pu")]),
        Some(1.0)
    );
    let backlog = by_slot(&s, "badgateway_worker_queued_requests", "pu");
    assert_eq!(backlog.len(), 3);
    // The status page reads the same view: each worker's row has an age.
    let (st, page) = http_get(&e.addr, "/", T).unwrap();
    assert_eq!(st, 200);
    let rows = page
        .lines()
        .filter(|l| l.starts_with("<tr><td>") && l.ends_with(" s</td></tr>"))
        .count();
    assert_eq!(rows, 3, "worker rows with a heartbeat age:\n{page}");
    // The ages keep moving: a later scrape sees a fresh check-in.
    let first = ages.clone();
    e.wait_scrape(T, "a later check-in", |s| {
        let now = by_slot(s, "badgateway_worker_heartbeat_age_seconds", "pu");
        now.len() == 3 && now.iter().zip(&first).any(|(a, b)| a.1 < b.1)
    });

    // Requests show after the workers' next check-in.
    for _ in 0..9 {
        assert_eq!(nginx.get("/"), 200);
    }
    e.wait_scrape(T, "the 9 requests counted by worker", |s| {
        s.sum("badgateway_worker_requests_total", &[("pool", "pu")]) == 9.0
    });

    // A wrong token: Puma answers 403, the source is down.
    let bad = yaml.replace("s3cret", "wrong");
    let e2 = Exporter::start(Some(&bad), &[]);
    e2.wait_scrape(T, "the status source down", |s| {
        s.get("badgateway_source_up", &[("source", "status/pu")]) == Some(0.0)
    });
    drop(e);
    drop(nginx);
    drop(server);
}
