//! Gunicorn's log parser and control-socket client against real Gunicorn
//! 27.0.1 (the venv scripts/test.sh installs).

mod common;

use std::collections::{BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use badgateway_exporter::gunicorn::control::{
    find_control_socket, ControlClient, ControlError, ControlOptions, ControlSocketSearch,
    Listener, Worker,
};
use badgateway_exporter::gunicorn::log::{parse_line, parse_time, Event};
use common::*;

const T: Duration = Duration::from_secs(30);

fn opts() -> ControlOptions {
    ControlOptions::default()
}

/// Gunicorn with `workers` workers, its control socket at `ctl` and its
/// error log at `log`, both in `dir`.
fn gunicorn(dir: &TempDir, workers: usize, extra: &[&str]) -> (Gunicorn, PathBuf, PathBuf) {
    let ctl = dir.path().join("ctl.sock");
    let log = dir.path().join("error.log");
    let mut args = vec![
        "--control-socket".to_string(),
        ctl.display().to_string(),
        "--error-logfile".into(),
        log.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let g = Gunicorn::start(GunicornOpts {
        workers,
        bind: format!("127.0.0.1:{}", free_port()),
        pidfile: dir.path().join("g.pid"),
        extra: &args,
        pre_exec: None,
        venv: None,
    });
    wait_for(T, "the control socket", || {
        ControlClient::connect(&ctl, &opts()).is_ok()
    });
    (g, ctl, log)
}

/// `show workers`, retried over the moments around a fork when the master
/// has closed its control socket to bind it again (about once in a few
/// hundred calls here, where workers are forked often).
fn show_workers(ctl: &Path) -> Vec<Worker> {
    let start = Instant::now();
    loop {
        match ControlClient::connect(ctl, &opts()).and_then(|mut c| c.show_workers()) {
            Ok(w) => return w,
            Err(e) if e.is_transient() && start.elapsed() < T => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("show workers: {e}"),
        }
    }
}

fn stats(ctl: &Path) -> badgateway_exporter::gunicorn::control::Stats {
    let start = Instant::now();
    loop {
        match ControlClient::connect(ctl, &opts()).and_then(|mut c| c.show_stats()) {
            Ok(s) => return s,
            Err(e) if e.is_transient() && start.elapsed() < T => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("show stats: {e}"),
        }
    }
}

fn pids(w: &[Worker]) -> Vec<i32> {
    let mut p: Vec<i32> = w.iter().map(|w| w.pid as i32).collect();
    p.sort();
    p
}

fn log_events(log: &Path) -> Vec<(u32, Event<'static>)> {
    let text: &'static str = String::leak(std::fs::read_to_string(log).unwrap());
    text.lines()
        .filter_map(|l| parse_line(l.as_bytes()))
        .map(|l| (l.pid, l.event))
        .collect()
}

fn count(log: &Path, f: impl Fn(&Event) -> bool) -> usize {
    log_events(log).iter().filter(|(_, e)| f(e)).count()
}

#[test]
fn log_times_match_pythons_strptime() {
    // Every stamp of every captured log, converted by Python's datetime too.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/gunicorn");
    let mut stamps = Vec::new();
    for v in std::fs::read_dir(&root).unwrap().flatten() {
        for f in std::fs::read_dir(v.path()).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(f.path()).unwrap();
                for line in text.lines().filter(|l| l.starts_with('[')) {
                    stamps.push(line[..27].to_string());
                }
            }
        }
    }
    assert!(stamps.len() > 300, "{} stamps", stamps.len());
    let mut py = Command::new(venv().join("bin/python"))
        .args([
            "-c",
            "import sys, datetime\n\
             for l in sys.stdin:\n    \
             print(int(datetime.datetime.strptime(l.strip(), '[%Y-%m-%d %H:%M:%S %z]').timestamp()))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    py.stdin
        .take()
        .unwrap()
        .write_all(stamps.join("\n").as_bytes())
        .unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success());
    let python: Vec<i64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let ours: Vec<i64> = stamps
        .iter()
        .map(|s| parse_time(s.as_bytes()).unwrap())
        .collect();
    assert_eq!(ours, python);
    // Three offsets among them.
    let offsets: BTreeSet<&str> = stamps.iter().map(|s| &s[21..26]).collect();
    assert!(offsets.len() >= 3, "{offsets:?}");
}

#[test]
fn show_workers_lists_exactly_the_live_workers() {
    let dir = TempDir::new("ctl-workers");
    let (g, ctl, _) = gunicorn(&dir, 3, &["--timeout", "30"]);
    let w = show_workers(&ctl);
    assert_eq!(pids(&w), g.worker_pids());
    assert_eq!(w.iter().map(|w| w.age).collect::<Vec<_>>(), [1, 2, 3]);
    for w in &w {
        let hb = w.last_heartbeat.expect("a heartbeat");
        assert!((0.0..16.0).contains(&hb), "{w:?}");
        assert!(!w.aborted);
    }
    // A worker killed from outside is replaced; the list follows.
    let victim = g.worker_pids()[1];
    unsafe { libc::kill(victim, libc::SIGKILL) };
    wait_for(T, "the victim replaced", || {
        let live = g.worker_pids();
        live.len() == 3 && !live.contains(&victim)
    });
    let w = show_workers(&ctl);
    assert_eq!(pids(&w), g.worker_pids());
    assert_eq!(w.iter().map(|w| w.age).max(), Some(4));
    let client = ControlClient::connect_to(&ctl, g.master_pid() as u32, &opts()).unwrap();
    assert_eq!(client.peer_pid(), Some(g.master_pid() as u32));
}

#[test]
fn a_stopped_workers_heartbeat_climbs_until_its_timeout() {
    let dir = TempDir::new("ctl-heartbeat");
    // An idle worker beats every --timeout/2 = 4 s.
    let (g, ctl, log) = gunicorn(&dir, 2, &["--timeout", "8"]);
    let victim = g.worker_pids()[0];
    let killed_before = stats(&ctl).workers_killed;
    unsafe { libc::kill(victim, libc::SIGSTOP) };
    let mut seen = Vec::new();
    let start = Instant::now();
    loop {
        let w = show_workers(&ctl);
        let Some(v) = w.iter().find(|w| w.pid as i32 == victim) else {
            break; // killed
        };
        seen.push(v.last_heartbeat.unwrap());
        for other in w.iter().filter(|w| w.pid as i32 != victim) {
            let hb = other.last_heartbeat.unwrap();
            assert!(hb < 5.5, "a running worker beats every 4 s: {other:?}");
        }
        assert!(start.elapsed() < T, "never killed: {seen:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        seen.windows(2).all(|p| p[1] >= p[0]),
        "heartbeat age went down: {seen:?}"
    );
    let top = seen.iter().cloned().fold(0.0, f64::max);
    assert!(top > 6.0 && top < 12.0, "climbed to {top}: {seen:?}");
    // WORKER TIMEOUT, then the SIGKILL "Perhaps out of memory?".
    wait_for(T, "the kill in the log", || {
        count(
            &log,
            |e| matches!(e, Event::WorkerSignaled { pid, signal: 9 } if *pid as i32 == victim),
        ) == 1
    });
    assert_eq!(
        count(
            &log,
            |e| matches!(e, Event::WorkerTimeout { pid } if *pid as i32 == victim)
        ),
        1
    );
    g.wait_workers(2, T);
    // The SIGABRT does not count as a kill, the SIGKILL does.
    assert_eq!(stats(&ctl).workers_killed, killed_before + 1);
}

#[test]
fn stats_count_recycling_spawns_and_a_reload() {
    let dir = TempDir::new("ctl-stats");
    let (g, ctl, log) = gunicorn(&dir, 2, &["--max-requests", "3"]);
    let s = stats(&ctl);
    assert_eq!(s.pid, g.master_pid() as u32);
    assert_eq!((s.workers_spawned, s.reloads, s.workers_target), (2, 0, 2));
    for _ in 0..12 {
        let (status, _) = http_get(&g.bind, "/", Duration::from_secs(10)).unwrap();
        assert_eq!(status, 200);
    }
    // Every recycle spawns one worker; the log tells how many there were.
    let recycled = || count(&log, |e| *e == Event::Autorestarting) as u64;
    wait_for(T, "the recycled workers replaced", || {
        let r = recycled();
        r >= 2 && stats(&ctl).workers_spawned == 2 + r && g.worker_pids().len() == 2
    });
    let before = stats(&ctl);
    assert_eq!(before.reloads, 0);
    wait_for(T, "a boot line per spawn", || {
        before.workers_spawned as usize == count(&log, |e| matches!(e, Event::BootingWorker { .. }))
    });
    g.proc.signal(libc::SIGHUP);
    wait_for(T, "the reload", || {
        let s = stats(&ctl);
        s.reloads == 1 && s.workers_spawned == before.workers_spawned + 2
    });
    assert_eq!(
        count(&log, |e| *e
            == Event::HandlingSignal {
                signal: badgateway_exporter::gunicorn::log::MasterSignal::Hup
            }),
        1
    );
}

#[test]
fn a_non_root_client_gets_permission_denied() {
    // Run as nobody, this very test probes the socket its parent started.
    if let Ok(path) = std::env::var("BGW_CONTROL_PROBE") {
        assert_ne!(unsafe { libc::geteuid() }, 0);
        let e = ControlClient::connect(Path::new(&path), &opts()).unwrap_err();
        assert!(matches!(e, ControlError::PermissionDenied { .. }), "{e}");
        assert!(e.to_string().contains(&path), "{e}");
        println!("PROBE: permission denied");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = TempDir::new("ctl-perm");
    let (_g, ctl, _) = gunicorn(&dir, 1, &[]);
    assert_eq!(
        std::fs::metadata(&ctl).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The directory lets anyone reach the socket; the socket's mode stops them.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_non_root_client_gets_permission_denied",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BGW_CONTROL_PROBE", &ctl)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("PROBE: permission denied"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Root gets in.
    assert!(ControlClient::connect(&ctl, &opts())
        .unwrap()
        .show_stats()
        .is_ok());
}

/// Socket inodes among the fds of `pid`.
fn socket_inodes(pid: i32) -> HashSet<u64> {
    procfs::process::Process::new(pid)
        .unwrap()
        .fd()
        .unwrap()
        .flatten()
        .filter_map(|fd| match fd.target {
            procfs::process::FDTarget::Socket(i) => Some(i),
            _ => None,
        })
        .collect()
}

/// The master's listening unix sockets with a path, as the pool source reads
/// them (pools::listen): its fds against its own /proc/PID/net/unix.
fn unix_listeners(master: i32) -> Vec<(u64, PathBuf)> {
    let fds = socket_inodes(master);
    procfs::process::Process::new(master)
        .unwrap()
        .unix()
        .unwrap()
        .into_iter()
        .filter(|u| {
            u.state == procfs::net::UnixState::UNCONNECTED
                && u.socket_type == libc::SOCK_STREAM as u16
                && fds.contains(&u.inode)
        })
        .filter_map(|u| Some((u.inode, u.path?)))
        .collect()
}

fn search(g: &Gunicorn) -> Option<PathBuf> {
    let listeners = unix_listeners(g.master_pid());
    let held: HashSet<u64> = g
        .worker_pids()
        .into_iter()
        .flat_map(socket_inodes)
        .collect();
    let l: Vec<Listener> = listeners
        .iter()
        .map(|(inode, path)| Listener {
            inode: *inode,
            path,
        })
        .collect();
    match find_control_socket(&l, |i| held.contains(&i)) {
        ControlSocketSearch::Found(p) => Some(p.to_owned()),
        other => panic!("{other:?} among {listeners:?}"),
    }
}

#[test]
fn the_control_socket_is_the_masters_listener_no_worker_holds() {
    let dir = TempDir::new("ctl-find");
    let app = dir.path().join("app.sock");
    let (g, ctl, _) = gunicorn(&dir, 2, &["--bind", &format!("unix:{}", app.display())]);
    let listeners = unix_listeners(g.master_pid());
    let paths: BTreeSet<&Path> = listeners.iter().map(|(_, p)| p.as_path()).collect();
    assert_eq!(paths, BTreeSet::from([app.as_path(), ctl.as_path()]));
    // Not the default name: the fds alone decide.
    assert_eq!(search(&g).as_deref(), Some(ctl.as_path()));
    let mut c = ControlClient::connect_to(&ctl, g.master_pid() as u32, &opts()).unwrap();
    assert_eq!(pids(&c.show_workers().unwrap()), g.worker_pids());
}

#[test]
fn masters_sharing_the_default_path_take_it_from_each_other() {
    let dir = TempDir::new("ctl-shared");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let start = |n: &str| {
        Gunicorn::start(GunicornOpts {
            workers: 1,
            bind: format!("127.0.0.1:{}", free_port()),
            pidfile: dir.path().join(format!("{n}.pid")),
            extra: &[],
            // The default path: $XDG_RUNTIME_DIR, else $HOME/.gunicorn.
            pre_exec: Some(format!(
                "export HOME='{}'; unset XDG_RUNTIME_DIR",
                home.display()
            )),
            venv: None,
        })
    };
    let shared = home.join(".gunicorn/gunicorn.ctl");
    let a = start("a");
    wait_for(T, "a's control socket", || {
        unix_listeners(a.master_pid()).len() == 1
    });
    let b = start("b");
    wait_for(T, "b's control socket", || {
        unix_listeners(b.master_pid()).len() == 1
    });
    // Each holds its own socket under the same path...
    assert_eq!(search(&a).as_deref(), Some(shared.as_path()));
    assert_eq!(search(&b).as_deref(), Some(shared.as_path()));
    assert_ne!(
        unix_listeners(a.master_pid())[0].0,
        unix_listeners(b.master_pid())[0].0
    );
    // ...but the path reaches the master that bound it last.
    let (a_pid, b_pid) = (a.master_pid() as u32, b.master_pid() as u32);
    let e = ControlClient::connect_to(&shared, a_pid, &opts()).unwrap_err();
    assert!(
        matches!(e, ControlError::OtherMaster { expected, found, .. } if expected == a_pid && found == b_pid),
        "{e}"
    );
    let mut c = ControlClient::connect_to(&shared, b_pid, &opts()).unwrap();
    assert_eq!(c.show_stats().unwrap().pid, b_pid);
    // A fork in A binds the path again, and it flips back.
    unsafe { libc::kill(a.worker_pids()[0], libc::SIGKILL) };
    wait_for(T, "the path back with A", || {
        ControlClient::connect_to(&shared, a_pid, &opts()).is_ok()
    });
    assert!(matches!(
        ControlClient::connect_to(&shared, b_pid, &opts()),
        Err(ControlError::OtherMaster { .. })
    ));
}

#[test]
fn a_control_request_to_the_app_socket_times_out_without_hanging() {
    // Why the control socket is found from /proc, not by probing: a sync
    // worker takes the request for the start of an HTTP request line and
    // waits for the rest until its own --timeout.
    let dir = TempDir::new("ctl-app");
    let app = dir.path().join("app.sock");
    let (_g, _, _) = gunicorn(
        &dir,
        1,
        &[
            "--bind",
            &format!("unix:{}", app.display()),
            "--timeout",
            "30",
        ],
    );
    let o = ControlOptions {
        timeout: Duration::from_millis(500),
        ..opts()
    };
    let mut c = ControlClient::connect(&app, &o).unwrap();
    let start = Instant::now();
    let e = c.show_workers().unwrap_err();
    assert!(matches!(e, ControlError::Timeout { .. }), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}
