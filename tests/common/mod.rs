//! Shared harness for the integration tests: real Gunicorn, the real
//! exporter binary, and scrapes parsed from its real /metrics output.
#![allow(dead_code)]

pub mod cgroup;
pub mod kernel_policy;
pub mod kmsg;
pub mod nginx;
pub mod shipped;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The venv the test command (scripts/test.sh) installs Gunicorn into.
pub fn venv() -> PathBuf {
    let v = std::env::var_os("BADGATEWAY_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv"));
    let g = v.join("bin/gunicorn");
    assert!(
        g.exists(),
        "Gunicorn is not installed at {}: run scripts/test.sh, which installs it",
        g.display()
    );
    v
}

/// A venv with setproctitle too, so Gunicorn retitles its processes.
pub fn venv_setproctitle() -> PathBuf {
    let v = std::env::var_os("BADGATEWAY_TEST_VENV_SETPROCTITLE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv-spt"));
    assert!(
        v.join("bin/gunicorn").exists(),
        "Gunicorn with setproctitle is not installed at {}: run scripts/test.sh",
        v.display()
    );
    v
}

pub fn apps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "bgw-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (with its process group) on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        unsafe {
            libc::kill(-self.pid(), libc::SIGKILL);
            libc::kill(self.pid(), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Start a command in its own process group so that drop kills it whole.
pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name}: {e}"));
    Proc {
        child,
        name: name.to_string(),
    }
}

pub struct Gunicorn {
    pub proc: Proc,
    pub pidfile: PathBuf,
    pub bind: String,
}

pub struct GunicornOpts<'a> {
    pub workers: usize,
    pub bind: String,
    pub pidfile: PathBuf,
    pub extra: &'a [&'a str],
    /// Shell snippet run before exec (e.g. to enter a cgroup).
    pub pre_exec: Option<String>,
    /// The venv to run Gunicorn from; `venv()` when None.
    pub venv: Option<PathBuf>,
}

impl Gunicorn {
    pub fn start(o: GunicornOpts<'_>) -> Gunicorn {
        let v = o.venv.clone().unwrap_or_else(venv);
        let mut args = vec![
            v.join("bin/gunicorn").display().to_string(),
            "--workers".into(),
            o.workers.to_string(),
            "--bind".into(),
            o.bind.clone(),
            "--pid".into(),
            o.pidfile.display().to_string(),
            "--chdir".into(),
            apps_dir().display().to_string(),
            "--graceful-timeout".into(),
            "1".into(),
        ];
        args.extend(o.extra.iter().map(|s| s.to_string()));
        args.push("app:app".into());
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        let script = format!(
            "{} exec {}",
            o.pre_exec.map(|p| format!("{p};")).unwrap_or_default(),
            quoted.join(" ")
        );
        // Gunicorn's default control socket is $XDG_RUNTIME_DIR/gunicorn.ctl,
        // else ~/.gunicorn/gunicorn.ctl: one path for every master of a
        // user, which two tests running at once would take from each other.
        // Each test master gets a runtime dir of its own beside its pidfile
        // (a test about the shared path sets HOME and unsets this).
        let mut runtime = o.pidfile.clone().into_os_string();
        runtime.push(".run");
        std::fs::create_dir_all(&runtime).unwrap();
        let proc = spawn(
            "gunicorn",
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .env("XDG_RUNTIME_DIR", &runtime)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let g = Gunicorn {
            proc,
            pidfile: o.pidfile,
            bind: o.bind,
        };
        g.wait_workers(o.workers, Duration::from_secs(30));
        g
    }

    pub fn master_pid(&self) -> i32 {
        self.proc.pid()
    }

    pub fn worker_pids(&self) -> Vec<i32> {
        children_of(self.master_pid())
    }

    pub fn wait_workers(&self, n: usize, timeout: Duration) {
        wait_for(timeout, &format!("{n} gunicorn workers"), || {
            self.worker_pids().len() == n && self.pidfile.exists()
        });
    }
}

/// Children of `pid`, from /proc.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for d in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = d.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(d.path().join("stat")) else {
            continue;
        };
        let Some(rest) = stat.rsplit_once(") ").map(|x| x.1) else {
            continue;
        };
        let ppid: i32 = rest
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if ppid == pid {
            out.push(p);
        }
    }
    out.sort();
    out
}

pub fn wait_for(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A plain HTTP/1.0 GET on loopback; returns (status, body).
pub fn http_get(addr: &str, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let r = http_request(addr, path, &[], timeout)?;
    Ok((r.status, String::from_utf8_lossy(&r.body).into_owned()))
}

/// One HTTP/1.0 response, its headers lower-cased.
pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// GET `path` with extra request headers; the body as bytes (it may be
/// gzipped).
pub fn http_request(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = buf.get(split + 4..).unwrap_or_default().to_vec();
    Ok(Response {
        status,
        headers,
        body,
    })
}

pub struct Exporter {
    pub proc: Proc,
    pub addr: String,
    pub dir: TempDir,
}

impl Exporter {
    /// Start the real binary with `config` (YAML, or None for the embedded
    /// default) and fast intervals.
    pub fn start(config: Option<&str>, extra: &[&str]) -> Exporter {
        Exporter::start_as(config, extra, None)
    }

    /// Start as another user (`uid`), to test what a non-root exporter sees.
    pub fn start_as(config: Option<&str>, extra: &[&str], uid: Option<u32>) -> Exporter {
        Exporter::start_wrapped(config, extra, uid, &[])
    }

    /// Start under `wrapper` (a command that execs the rest of its
    /// arguments, e.g. setpriv dropping capabilities), as `uid`.
    pub fn start_wrapped(
        config: Option<&str>,
        extra: &[&str],
        uid: Option<u32>,
        wrapper: &[&str],
    ) -> Exporter {
        use std::os::unix::process::CommandExt;
        let dir = TempDir::new("exporter");
        let addr = format!("127.0.0.1:{}", free_port());
        let bin = env!("CARGO_BIN_EXE_badgateway_exporter");
        let mut cmd = match wrapper.split_first() {
            Some((w, args)) => {
                let mut c = Command::new(w);
                c.args(args).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg(format!("--web.listen-address={addr}"));
        // Fast intervals, unless `extra` gives its own.
        for flag in [
            "--collector.pools.interval=300ms",
            "--collector.smaps.interval=300ms",
            "--collector.discover.interval=300ms",
            "--collector.kernel.interval=300ms",
            "--collector.nginx.interval=100ms",
        ] {
            let name = flag.split('=').next().unwrap();
            if !extra.iter().any(|e| e.split('=').next() == Some(name)) {
                cmd.arg(flag);
            }
        }
        cmd.args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("exporter.log")).unwrap());
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        if let Some(c) = config {
            let p = dir.path().join("config.yml");
            std::fs::write(&p, c).unwrap();
            cmd.arg(format!("--config.file={}", p.display()));
        }
        let proc = spawn("exporter", &mut cmd);
        let e = Exporter { proc, addr, dir };
        wait_for(Duration::from_secs(20), "the exporter's /healthz", || {
            matches!(
                http_get(&e.addr, "/healthz", Duration::from_secs(2)),
                Ok((200, _))
            )
        });
        e
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("exporter.log")).unwrap_or_default()
    }

    pub fn scrape(&self) -> Scrape {
        let (status, body) = http_get(&self.addr, "/metrics", Duration::from_secs(5))
            .expect("scraping the exporter");
        assert_eq!(status, 200, "scrape failed: {body}");
        Scrape::parse(&body)
    }

    /// Scrape until `f` holds, or panic with the last scrape and the log.
    pub fn wait_scrape(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(&Scrape) -> bool,
    ) -> Scrape {
        let start = Instant::now();
        loop {
            let s = self.scrape();
            if f(&s) {
                return s;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n--- last scrape ---\n{}\n--- exporter log ---\n{}",
                    s.text,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub type Labels = BTreeMap<String, String>;

/// A parsed scrape: sample name -> list of (labels, value).
pub struct Scrape {
    pub text: String,
    pub samples: BTreeMap<String, Vec<(Labels, f64)>>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut samples: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (head, value) = line.rsplit_once(' ').expect("sample line has a value");
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
                None => (head, BTreeMap::new()),
            };
            let v: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            samples
                .entry(name.to_string())
                .or_default()
                .push((labels, v));
        }
        Scrape {
            text: text.to_string(),
            samples,
        }
    }

    /// Samples of `name` whose labels include all of `want`.
    pub fn find(&self, name: &str, want: &[(&str, &str)]) -> Vec<(Labels, f64)> {
        self.samples
            .get(name)
            .map(|v| {
                v.iter()
                    .filter(|(l, _)| {
                        want.iter()
                            .all(|(k, w)| l.get(*k).map(|x| x == w).unwrap_or(false))
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The single value of `name` with exactly matching `want` labels.
    pub fn get(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        let f = self.find(name, want);
        match f.len() {
            0 => None,
            1 => Some(f[0].1),
            _ => panic!("{name}{want:?} matches {} series", f.len()),
        }
    }

    /// Sum over the samples of `name` that include `want`.
    pub fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.find(name, want).iter().map(|(_, v)| v).sum()
    }
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].trim_start_matches(',').to_string();
        let mut val = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = 0;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        val.push(match n {
                            'n' => '\n',
                            o => o,
                        });
                    }
                }
                '"' => {
                    end = eq + 2 + i + 1;
                    break;
                }
                c => val.push(c),
            }
        }
        out.insert(key, val);
        rest = &rest[end..];
    }
    out
}

/// `systemd-analyze verify` on a unit file: it must pass, and say nothing
/// about our own unit (it may about the host's other units).
pub fn systemd_analyze_verify(unit: &Path) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .expect("systemd-analyze is not installed: run scripts/test.sh, which installs systemd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("badgateway_exporter"))
        .collect();
    assert!(
        ours.is_empty(),
        "systemd-analyze complains:\n{}",
        ours.join("\n")
    );
}
