//! The exporter as a container runs it: in a mount namespace of its own,
//! with the host's /proc and /sys bind-mounted at /host/proc and /host/sys
//! (--path.procfs, --path.sysfs), and the directory of the Gunicorn
//! master's sockets not mounted at all. Run with `unshare` against a real
//! Gunicorn in a memory cgroup, and scraped from a socket passed in from
//! the host (systemd-socket-activate), so that a run without the host
//! network namespace can be scraped too.
//!
//! With what a container needs (the host's network and PID namespaces, the
//! host's /proc and /sys), the four sources that depend on the namespaces
//! are up: proc_connector, listen_queue, cgroup and control/POOL (the
//! control socket reached through /host/proc/MASTER/root). Without the host
//! network, the first two are down; without the host's PID namespace, the
//! proc connector; without the host's /sys, the cgroup source: each with
//! one line naming the fix.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cgroup::Cgroup;
use common::*;

const T: Duration = Duration::from_secs(40);

/// What a run leaves out of a container's needs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Without {
    Nothing,
    HostNetwork,
    HostPid,
    HostSys,
}

struct Run {
    _proc: Proc,
    addr: String,
    log: std::path::PathBuf,
}

impl Run {
    /// `badgateway_source_up` and the reason of each down source, as the
    /// status page's sources section shows it.
    fn sources(&self) -> (Scrape, BTreeMap<String, String>) {
        let (st, body) = http_get(&self.addr, "/metrics", Duration::from_secs(5)).unwrap();
        assert_eq!(st, 200, "{body}");
        let scrape = Scrape::parse(&body);
        let (st, page) = http_get(&self.addr, "/", Duration::from_secs(5)).unwrap();
        assert_eq!(st, 200, "{page}");
        let mut states = BTreeMap::new();
        let sources = page
            .split("<section id=\"sources\">")
            .nth(1)
            .and_then(|s| s.split("</section>").next())
            .expect("the status page's sources section");
        for row in sources.split("<tr data-source=").skip(1) {
            let cells: Vec<&str> = row
                .split("<td>")
                .skip(1)
                .map(|c| c.split("</td>").next().unwrap())
                .collect();
            if let [name, state, ..] = cells[..] {
                states.insert(unescape(name), unescape(state));
            }
        }
        (scrape, states)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Starts the exporter in new namespaces, as a container would have it.
fn container(dir: &Path, hidden: &Path, config: &Path, without: Without) -> Run {
    let host = dir.join(format!("host-{without:?}"));
    let (proc_dir, sys_dir) = (host.join("proc"), host.join("sys"));
    std::fs::create_dir_all(&proc_dir).unwrap();
    std::fs::create_dir_all(&sys_dir).unwrap();
    let sysfs = if without == Without::HostSys {
        // The container's own /sys: no cgroup of the host's in it.
        "/sys".to_string()
    } else {
        sys_dir.display().to_string()
    };
    let mut script = format!(
        "set -e\n\
         mount --rbind /proc '{p}'\n\
         mount --rbind /sys '{s}'\n\
         mount -t tmpfs -o size=64k tmpfs '{hidden}'\n",
        p = proc_dir.display(),
        s = sys_dir.display(),
        hidden = hidden.display(),
    );
    if without == Without::HostSys {
        script.push_str("mount -t tmpfs -o size=64k tmpfs /sys/fs/cgroup\n");
    }
    if without == Without::HostPid {
        // The container's own /proc, of its own PID namespace; the host's
        // stays at host/proc, bound above.
        script.push_str("mount -t proc proc /proc\n");
    }
    // In a PID namespace of its own the exporter is pid 1 there, which is
    // the pid it compares LISTEN_PID with.
    script.push_str(&format!(
        "export LISTEN_PID=$$\n\
         exec '{bin}' --web.systemd-socket --path.procfs='{p}' --path.sysfs='{sysfs}' \
         --config.file='{config}' --collector.pools.interval=300ms \
         --collector.kernel.interval=300ms --collector.discover.interval=300ms \
         --collector.smaps.interval=300ms\n",
        bin = env!("CARGO_BIN_EXE_badgateway_exporter"),
        p = proc_dir.display(),
        config = config.display(),
    ));
    let addr = format!("127.0.0.1:{}", free_port());
    let log = dir.join(format!("exporter-{without:?}.log"));
    let mut unshare = vec!["unshare", "--mount"];
    if without == Without::HostNetwork {
        unshare.push("--net");
    }
    if without == Without::HostPid {
        unshare.extend(["--pid", "--fork"]);
    }
    // systemd-socket-activate, unshare and sh each exec the next (but for
    // unshare --fork), and sh sets LISTEN_PID to the pid it execs as.
    let proc = spawn(
        "exporter in namespaces",
        Command::new("systemd-socket-activate")
            .args(["--listen", &addr])
            .args(&unshare)
            .args(["--", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    let run = Run {
        _proc: proc,
        addr,
        log,
    };
    let start = Instant::now();
    while !matches!(
        http_get(&run.addr, "/healthz", Duration::from_secs(2)),
        Ok((200, _))
    ) {
        assert!(
            start.elapsed() < T,
            "the exporter in namespaces did not serve /healthz:\n{}",
            run.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    run
}

const SOURCES: [&str; 4] = ["proc_connector", "listen_queue", "cgroup", "control/api"];

/// Waits until every one of `SOURCES` has been tried and is up or down as
/// `want` says; returns the reasons of those down.
fn wait_sources(run: &Run, want: [bool; 4]) -> BTreeMap<String, String> {
    let start = Instant::now();
    loop {
        let (scrape, states) = run.sources();
        let got: Vec<Option<f64>> = SOURCES
            .iter()
            .map(|s| scrape.get("badgateway_source_up", &[("source", s)]))
            .collect();
        let expected: Vec<Option<f64>> = want
            .iter()
            .map(|&up| Some(if up { 1.0 } else { 0.0 }))
            .collect();
        if got == expected {
            return states;
        }
        assert!(
            start.elapsed() < T,
            "sources {SOURCES:?}: {got:?}, want {expected:?}\n{states:#?}\n--- log ---\n{}",
            run.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The reason shown for a down source: one line that says `fix`.
fn assert_reason(states: &BTreeMap<String, String>, source: &str, fix: &str) {
    let state = &states[source];
    assert!(state.starts_with("NOT READABLE: "), "{source}: {state}");
    assert!(!state.contains('\n'), "{source}: one line: {state}");
    assert!(state.contains(fix), "{source} should name {fix:?}: {state}");
}

#[test]
fn a_container_with_the_host_network_proc_and_sys_sees_every_source() {
    let dir = TempDir::new("namespaces");
    // The master's sockets are in a directory the container does not
    // mount; its pidfile is in one it does (the config names it).
    let hidden = dir.path().join("sockets");
    std::fs::create_dir_all(&hidden).unwrap();
    let cg = Cgroup::create("namespaces");
    let ctl = hidden.join("gunicorn.ctl");
    let ctl_arg = ctl.display().to_string();
    let g = Gunicorn::start(GunicornOpts {
        workers: 2,
        bind: format!("unix:{}/app.sock", hidden.display()),
        pidfile: dir.path().join("g.pid"),
        extra: &["--control-socket", &ctl_arg],
        pre_exec: Some(cg.enter_protected()),
        venv: None,
    });
    wait_for(T, "the control socket", || ctl.exists());
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "pools:\n  - name: api\n    server: gunicorn\n    pidfile: {}\n",
            g.pidfile.display()
        ),
    )
    .unwrap();

    // Everything a container needs: all four up, and the control socket
    // answered (Gunicorn's own counts), through /host/proc/MASTER/root.
    let run = container(dir.path(), &hidden, &config, Without::Nothing);
    wait_sources(&run, [true, true, true, true]);
    let start = Instant::now();
    loop {
        let (s, _) = run.sources();
        let spawned = s.get(
            "badgateway_gunicorn_workers_spawned_total",
            &[("pool", "api")],
        );
        let queue = s.find("badgateway_pool_listen_queue_limit", &[("pool", "api")]);
        let charged = s.find("badgateway_pool_cgroup_memory_bytes", &[("pool", "api")]);
        if spawned.is_some_and(|n| n >= 2.0) && !queue.is_empty() && !charged.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < T,
            "no control answers, listen queue or cgroup figures:\n{}",
            s.text
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = run.log();
    assert!(!log.contains("hostNetwork"), "{log}");
    drop(run);

    // Without the host network: the proc connector and the listen queues
    // are down, each saying so; the others need no network.
    let run = container(dir.path(), &hidden, &config, Without::HostNetwork);
    let states = wait_sources(&run, [false, false, true, true]);
    assert_reason(&states, "proc_connector", "hostNetwork: true");
    assert_reason(&states, "listen_queue", "hostNetwork: true");
    // Said once each in the log, with the fix.
    let start = Instant::now();
    while run.log().matches("hostNetwork: true").count() < 2 {
        assert!(start.elapsed() < T, "{}", run.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        run.log().matches("hostNetwork: true").count(),
        2,
        "{}",
        run.log()
    );
    drop(run);

    // Without the host's PID namespace (its /proc still at host/proc):
    // the kernel does not answer a subscription to the proc connector, which
    // says so; the rest reads the host's /proc as before.
    let run = container(dir.path(), &hidden, &config, Without::HostPid);
    let states = wait_sources(&run, [false, true, true, true]);
    assert_reason(&states, "proc_connector", "hostPID: true");
    drop(run);

    // Without the host's /sys: the pool's cgroup is not found, and the
    // source says where to get it.
    let run = container(dir.path(), &hidden, &config, Without::HostSys);
    let states = wait_sources(&run, [true, true, false, true]);
    assert_reason(&states, "cgroup", "--path.sysfs");
    drop(run);
    drop(g);
    drop(cg);
}
