//! Least privilege: as a user with no capabilities the exporter serves what
//! it can read and `badgateway_source_up` shows what it cannot; as root
//! with one capability dropped at a time, only that capability's feature
//! goes down. And it never runs a command.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::kernel_policy::{proc_connector_open_to, Asker};
use common::*;

const T: Duration = Duration::from_secs(30);
const NOBODY: u32 = 65534;

// Capability numbers (linux/capability.h).
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYSLOG: u32 = 34;
const CAP_PERFMON: u32 = 38;

fn setpriv() -> &'static str {
    let p = "/usr/bin/setpriv";
    assert!(
        Path::new(p).exists(),
        "setpriv (util-linux) is not installed at {p}"
    );
    p
}

/// The effective capabilities of a process.
fn cap_eff(pid: i32) -> u64 {
    common::kernel_policy::cap_eff_of(&format!("/proc/{pid}/status"))
}

fn readable_by_all(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn config(pidfile: &Path, logs: &[(&str, &Path)]) -> String {
    let mut c = format!(
        "pools:\n  - name: app\n    server: gunicorn\n    pidfile: {}\nnginx:\n",
        pidfile.display()
    );
    for (name, log) in logs {
        c.push_str(&format!(
            "  - name: {name}\n    access_log: {}\n",
            log.display()
        ));
    }
    c
}

fn up(s: &Scrape, source: &str) -> Option<f64> {
    s.get("badgateway_source_up", &[("source", source)])
}

/// Every source the tests look at has been tried.
fn all_tried(s: &Scrape, sources: &[&str]) -> bool {
    sources.iter().all(|src| up(s, src).is_some())
}

#[test]
fn as_nobody_it_serves_what_it_can_and_source_up_shows_the_rest() {
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/dmesg_restrict")
            .unwrap()
            .trim(),
        "1",
        "this test expects kernel.dmesg_restrict=1, as on the test host"
    );
    let dir = TempDir::new("nobody");
    readable_by_all(dir.path(), 0o755);
    // A control socket of its own: root masters share the default path.
    let ctl = dir.path().join("ctl.sock").display().to_string();
    let g = Gunicorn::start(GunicornOpts {
        workers: 2,
        bind: format!("127.0.0.1:{}", free_port()),
        pidfile: dir.path().join("app.pid"),
        extra: &["--control-socket", &ctl],
        pre_exec: None,
        venv: None,
    });
    readable_by_all(&g.pidfile, 0o644);
    let open_log = dir.path().join("open.log");
    let root_only_log = dir.path().join("root_only.log");
    std::fs::write(&open_log, "").unwrap();
    std::fs::write(&root_only_log, "").unwrap();
    readable_by_all(&open_log, 0o644);
    readable_by_all(&root_only_log, 0o600);
    let cfg = config(
        &g.pidfile,
        &[("open", &open_log), ("root_only", &root_only_log)],
    );
    let e = Exporter::start_as(Some(&cfg), &[], Some(NOBODY));
    assert_eq!(cap_eff(e.proc.pid()), 0, "nobody has no capabilities");
    let sources = [
        "kmsg",
        "pool/app",
        "smaps/app",
        "control/app",
        "proc_connector",
        "vmstat",
        "meminfo",
        "cgroup",
        "nginx/open/access",
        "nginx/root_only/access",
    ];
    let s = e.wait_scrape(T, "every source tried", |s| {
        all_tried(s, &sources) && s.get("badgateway_pool_workers", &[("pool", "app")]) == Some(2.0)
    });
    // What needs a capability or another user's files is down...
    assert_eq!(
        up(&s, "kmsg"),
        Some(0.0),
        "CAP_SYSLOG with dmesg_restrict=1"
    );
    assert_eq!(up(&s, "smaps/app"), Some(0.0), "root's smaps_rollup");
    assert_eq!(
        up(&s, "control/app"),
        Some(0.0),
        "the master's fds, to find its control socket"
    );
    assert_eq!(up(&s, "nginx/root_only/access"), Some(0.0));
    // ...and everything else is up and exported: the pool's processes,
    // RSS and CPU from /proc/PID/stat, which anyone may read.
    for src in [
        "pool/app",
        "vmstat",
        "meminfo",
        "cgroup",
        "nginx/open/access",
    ] {
        assert_eq!(up(&s, src), Some(1.0), "{src}\n{}", s.text);
    }
    // The process events follow the kernel's policy: open to every user
    // (6.6), or refused without CAP_NET_ADMIN, and then the pool is
    // followed by polling /proc alone (its workers were found above), and
    // the log says so once.
    if proc_connector_open_to(Asker::Nobody) {
        assert_eq!(up(&s, "proc_connector"), Some(1.0), "{}", s.text);
    } else {
        assert_eq!(up(&s, "proc_connector"), Some(0.0), "{}", s.text);
        let log = e.log();
        let said: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("source=proc_connector") && l.contains("polling alone"))
            .collect();
        assert_eq!(said.len(), 1, "{log}");
    }
    assert_eq!(
        s.get(
            "badgateway_pool_up",
            &[("pool", "app"), ("server", "gunicorn")]
        ),
        Some(1.0)
    );
    assert_eq!(
        s.find(
            "badgateway_worker_memory_bytes",
            &[("pool", "app"), ("type", "rss")]
        )
        .len(),
        2,
        "RSS comes from /proc/PID/stat, which anyone may read"
    );
    assert!(s
        .find(
            "badgateway_worker_memory_bytes",
            &[("pool", "app"), ("type", "pss")]
        )
        .is_empty());
    assert!(s.get("badgateway_host_memory_total_bytes", &[]).unwrap() > 0.0);
    // Each failing source said why, once, with the capability it lacks.
    let log = e.log();
    let kmsg_warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("source cannot be read") && l.contains("source=kmsg"))
        .collect();
    assert_eq!(kmsg_warnings.len(), 1, "{log}");
    assert!(kmsg_warnings[0].contains("CAP_SYSLOG"), "{log}");

    // A log made readable is picked up by the next poll (a failed open is
    // retried every poll: one stat and one open), and said once.
    readable_by_all(&root_only_log, 0o644);
    std::fs::write(
        &root_only_log,
        "127.0.0.1 - - [23/Nov/2026:04:20:01 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"curl\"\n",
    )
    .unwrap();
    e.wait_scrape(T, "the log read once readable", |s| {
        up(s, "nginx/root_only/access") == Some(1.0)
    });
    let log = e.log();
    let back: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("source readable again") && l.contains("root_only"))
        .collect();
    assert_eq!(back.len(), 1, "{log}");
}

/// The sources each capability case looks at.
const SOURCES: [&str; 7] = [
    "kmsg",
    "pool/app",
    "smaps/app",
    "control/app",
    "proc_connector",
    "cgroup",
    "vmstat",
];

/// One exporter run under setpriv with `setpriv_args`; returns the scrape
/// once every source was tried, and its effective capabilities.
fn scrape_under(cfg: &str, setpriv_args: &[&str]) -> (Scrape, u64) {
    let mut wrapper = vec![setpriv()];
    wrapper.extend_from_slice(setpriv_args);
    wrapper.push("--");
    let e = Exporter::start_wrapped(Some(cfg), &[], None, &wrapper);
    let caps = cap_eff(e.proc.pid());
    let s = e.wait_scrape(T, "every source tried", |s| {
        all_tried(s, &SOURCES)
            && s.get("badgateway_pool_workers", &[("pool", "app")]) == Some(2.0)
            // A cycle after the workers' smaps were first read.
            && s.get("badgateway_collector_cycles_total", &[("collector", "pools")]) >= Some(3.0)
    });
    (s, caps)
}

/// Root without `dropped` (setpriv names and capability numbers).
fn scrape_as_root_without(cfg: &str, dropped: &[(&str, u32)]) -> Scrape {
    let bounding = dropped
        .iter()
        .map(|(name, _)| format!("-{name}"))
        .collect::<Vec<_>>()
        .join(",");
    let bounding_arg = format!("--bounding-set={bounding}");
    let mut args = vec!["--inh-caps=-all"];
    if !dropped.is_empty() {
        args.push(&bounding_arg);
    }
    let (s, caps) = scrape_under(cfg, &args);
    assert_ne!(caps, 0);
    for (name, bit) in dropped {
        assert_eq!(caps & (1 << bit), 0, "{name} still effective: {caps:x}");
    }
    s
}

#[test]
fn each_dropped_capability_turns_off_only_its_own_feature() {
    let dir = TempDir::new("caps");
    readable_by_all(dir.path(), 0o755);
    // Workers of another user: reading their smaps needs a capability. A
    // control socket of its own (root masters share the default path),
    // mode 0600 for root, Gunicorn's default.
    let ctl = dir.path().join("ctl.sock").display().to_string();
    let g = Gunicorn::start(GunicornOpts {
        workers: 2,
        bind: format!("127.0.0.1:{}", free_port()),
        pidfile: dir.path().join("app.pid"),
        extra: &[
            "--user",
            "65534",
            "--group",
            "65534",
            "--control-socket",
            &ctl,
        ],
        pre_exec: None,
        venv: None,
    });
    readable_by_all(&g.pidfile, 0o644);
    let cfg = format!(
        "pools:\n  - name: app\n    server: gunicorn\n    pidfile: {}\n",
        g.pidfile.display()
    );
    let states = |s: &Scrape| SOURCES.map(|src| (src, up(s, src).unwrap()));
    let all_up = SOURCES.map(|src| (src, 1.0));
    let down =
        |which: &[&str]| SOURCES.map(|src| (src, if which.contains(&src) { 0.0 } else { 1.0 }));

    let s = scrape_as_root_without(&cfg, &[]);
    assert_eq!(states(&s), all_up, "root with every capability");

    let s = scrape_as_root_without(&cfg, &[("syslog", CAP_SYSLOG)]);
    assert_eq!(
        states(&s),
        down(&["kmsg"]),
        "without CAP_SYSLOG only kmsg is down"
    );

    // On 6.18 CAP_SYS_ADMIN and CAP_PERFMON open another user's
    // smaps_rollup too (the kernel checks them beside CAP_SYS_PTRACE):
    // root keeps the access until all of them are gone. The master's fds
    // (how its control socket is found) need CAP_SYS_PTRACE even for root:
    // the master holds capabilities the exporter then lacks.
    let s = scrape_as_root_without(
        &cfg,
        &[
            ("sys_ptrace", CAP_SYS_PTRACE),
            ("dac_read_search", CAP_DAC_READ_SEARCH),
            ("sys_admin", CAP_SYS_ADMIN),
            ("perfmon", CAP_PERFMON),
        ],
    );
    assert_eq!(
        states(&s),
        down(&["smaps/app", "control/app"]),
        "without CAP_SYS_PTRACE (and what stands in for it) only the reads of other processes' memory and fds fail"
    );
    assert!(
        s.get(
            "badgateway_pool_read_errors_total",
            &[("pool", "app"), ("kind", "permission_denied")]
        )
        .unwrap()
            > 0.0
    );
    // Their RSS is still there; their PSS is not.
    assert_eq!(
        s.find(
            "badgateway_worker_memory_bytes",
            &[("pool", "app"), ("type", "rss")]
        )
        .len(),
        2
    );
    assert!(s
        .find(
            "badgateway_worker_memory_bytes",
            &[("pool", "app"), ("type", "pss")]
        )
        .is_empty());

    // Without CAP_NET_ADMIN, the process events go down or stay up as the
    // kernel's policy says (6.6 opened them to every user; 6.18.44 does
    // not), and nothing else changes: the pool is polled instead.
    let s = scrape_as_root_without(&cfg, &[("net_admin", CAP_NET_ADMIN)]);
    if proc_connector_open_to(Asker::RootWithoutNetAdmin) {
        assert_eq!(
            states(&s),
            all_up,
            "without CAP_NET_ADMIN, on an open kernel"
        );
    } else {
        assert_eq!(
            states(&s),
            down(&["proc_connector"]),
            "without CAP_NET_ADMIN, on a kernel that asks for it"
        );
    }

    // The shipped unit's way: a user of its own with the four ambient
    // capabilities, and nothing else, reads every source.
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/systemd/badgateway_exporter.service"
    ))
    .unwrap();
    let ambient: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("the unit sets AmbientCapabilities")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    assert_eq!(ambient.len(), 4, "{ambient:?}");
    let caps = ambient.join(",");
    let (inh, amb) = (
        format!("--inh-caps=-all,{caps}"),
        format!("--ambient-caps={caps}"),
    );
    let (s, eff) = scrape_under(
        &cfg,
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &inh,
            &amb,
        ],
    );
    let want_caps = [
        CAP_SYSLOG,
        CAP_SYS_PTRACE,
        CAP_DAC_READ_SEARCH,
        CAP_NET_ADMIN,
    ]
    .iter()
    .fold(0u64, |m, b| m | 1 << b);
    assert_eq!(eff, want_caps, "the unit's capabilities and no others");
    // All but the control socket of a root master: Gunicorn makes it mode
    // 0600, and connecting needs write access (CAP_DAC_OVERRIDE, which the
    // unit does not give, or a --control-socket-mode and group that let
    // the exporter's user in).
    assert_eq!(
        states(&s),
        down(&["control/app"]),
        "nobody with the unit's capabilities"
    );
}

/// The exporter never runs a shell or another program: no process spawning
/// in the library or the binary outside their tests.
#[test]
fn the_exporter_never_runs_a_command() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![src];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                // Test modules in their own directory (src/follow/tests).
                if p.file_name().is_some_and(|n| n != "tests") {
                    dirs.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    assert!(files.len() > 30, "{files:?}");
    let forbidden = [
        "process::Command",
        "Command::new",
        "libc::exec",
        "libc::fork",
        "libc::system",
        "libc::popen",
        "posix_spawn",
        "/bin/sh",
    ];
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let code = match text.find("\n#[cfg(test)]") {
            Some(at) => &text[..at],
            None => &text[..],
        };
        for word in forbidden {
            assert!(
                !code.contains(word),
                "{} uses {word}: the exporter must not run commands",
                f.display()
            );
        }
    }
}
