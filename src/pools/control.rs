//! Gunicorn's control socket, from the pool source's side: which socket is
//! the master's own, and what `show workers` and `show stats` add to the
//! pool: each worker's heartbeat age, and Gunicorn's own counts of spawned
//! and killed workers and of reloads. A reload seen here goes on the
//! timeline, where the exit-reason rules find it when the pool has no log
//! file.
//!
//! The socket is found, never probed: a control request sent to an app
//! socket hangs a sync worker until its timeout (see
//! `gunicorn::control`). It is the master's listening unix socket that its
//! workers do not hold, read when the pool source re-reads the master's
//! listeners; once found it is kept for that master, since Gunicorn 25.2+
//! binds it again (same path, new inode) around every fork, and a re-read
//! can fall in that gap. A `control_socket:` key replaces the search.
//!
//! Costs: one connection and two requests a cycle, and a `show stats` after
//! a fork of the master (a recycled worker, a reload) so that a reload is
//! on the timeline before the old workers' exits are judged.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::gunicorn::control::{
    find_control_socket, heartbeat_age, ControlClient, ControlError, ControlOptions,
    ControlSocketSearch, Listener, Stats, Worker,
};

use super::listen::{self, ListenAddr, ListenSocket};
use super::proc::{ProcId, ProcRoot};
use super::view::{GunicornStats, PoolState};

/// Workers whose fds are read to tell the app's sockets from the control
/// socket. Every worker inherits the same listeners from the master (the
/// app's are bound before the first fork; 25.1 lets them inherit the
/// control socket too, 25.2+ never), so a few tell as much as all.
const WORKERS_CHECKED: usize = 4;

/// Gunicorn binds its control socket once its first workers are up: a
/// master younger than this without one is not reported yet.
const BIND_GRACE: Duration = Duration::from_secs(10);

/// How long after a fork of the master `show stats` is tried between
/// cycles: the control socket is back within milliseconds of a fork.
pub const AFTER_FORK: Duration = Duration::from_secs(1);

/// Before the one retry of a call that met the socket closed or missing
/// around a fork.
const RETRY_AFTER: Duration = Duration::from_millis(10);

/// The control side of one Gunicorn pool.
#[derive(Debug)]
pub struct Control {
    configured: Option<PathBuf>,
    /// The master the fields below are about.
    master: Option<ProcId>,
    /// The master's control socket: configured, or found.
    socket: Option<PathBuf>,
    /// Why there is none, once that is worth reporting.
    missing: Option<String>,
    /// `reloads` in the master's last answer.
    reloads: Option<u64>,
    /// Its counts at the last answer: kept while the socket fails, since
    /// they can only have grown.
    stats: Option<GunicornStats>,
    /// Until when `show stats` is tried between cycles (after a fork).
    check_until: Option<Instant>,
    /// The master's `--timeout` (`show config`), None where it has none
    /// (0) or did not say.
    timeout: Option<u64>,
    /// `reloads` when `show config` was last answered: a reload can change
    /// the timeout, so it is asked again after one.
    settings_at: Option<u64>,
}

/// What one poll of the control socket gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Poll {
    /// No master, or one too young to have bound its socket: nothing to
    /// report.
    Nothing,
    /// The socket is not known or did not answer; why.
    Failed(String),
    /// It answered; `reload` when its reload count went up since the last
    /// answer.
    Answered { reload: bool },
}

impl Control {
    pub fn new(configured: Option<PathBuf>) -> Control {
        Control {
            socket: configured.clone(),
            configured,
            master: None,
            missing: None,
            reloads: None,
            stats: None,
            check_until: None,
            timeout: None,
            settings_at: None,
        }
    }

    /// The socket in use, if known.
    pub fn socket(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    /// About `master` from now on: forget what was learned about another.
    fn follow(&mut self, master: Option<ProcId>) {
        if self.master != master {
            *self = Control {
                master,
                ..Control::new(self.configured.take())
            };
        }
    }

    /// Whether `l` is the control socket (to be left out of the pool's
    /// listeners).
    pub fn is_control(&self, l: &ListenSocket) -> bool {
        matches!((&l.addr, &self.socket), (ListenAddr::Unix(p), Some(s)) if p == s)
    }

    /// With the master's listeners just read: find the control socket
    /// among them if it is not known yet. `workers` are the master's
    /// workers, whose fds tell the app's sockets; `master_age` is how long
    /// the master has run. Returns whether to read the listeners again at
    /// the next cycle (a young master, or no worker to tell by).
    pub fn locate(
        &mut self,
        root: &ProcRoot,
        master: ProcId,
        listeners: &Result<Vec<ListenSocket>, String>,
        workers: impl Iterator<Item = ProcId>,
        master_age: Duration,
    ) -> bool {
        self.follow(Some(master));
        if self.socket.is_some() {
            return false;
        }
        let young = master_age < BIND_GRACE;
        let listeners = match listeners {
            Ok(l) => l,
            Err(e) => {
                self.missing = Some(format!(
                    "cannot read the master's sockets to find its control socket: {e}"
                ));
                return false;
            }
        };
        let unix: Vec<Listener> = listeners
            .iter()
            .filter_map(|l| match &l.addr {
                ListenAddr::Unix(path) => Some(Listener {
                    inode: l.inode,
                    path,
                }),
                ListenAddr::Tcp(_) => None,
            })
            .collect();
        let candidates: Vec<u64> = unix.iter().map(|l| l.inode).collect();
        let Some(held) = held_by_workers(root, workers, &candidates) else {
            // With no worker to compare with, an app socket would look
            // like the control socket: wait for one.
            self.missing = (!young).then(|| {
                "no worker's sockets could be read to tell the app's sockets from the control socket".to_string()
            });
            return true;
        };
        match find_control_socket(&unix, |inode| held.contains(&inode)) {
            ControlSocketSearch::Found(p) => {
                self.socket = Some(p.to_owned());
                self.missing = None;
                false
            }
            ControlSocketSearch::NotFound => {
                self.missing = (!young).then(|| {
                    "no Gunicorn control socket among the master's listening unix sockets (Gunicorn before 25.1, or --no-control-socket)".to_string()
                });
                young
            }
            ControlSocketSearch::Ambiguous(paths) => {
                let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                self.missing = Some(format!(
                    "several of the master's unix sockets could be its control socket ({}); name it with control_socket: in the pool's config",
                    paths.join(", ")
                ));
                false
            }
        }
    }

    /// A fork of the master was seen: check for a reload soon.
    pub fn forked(&mut self, now: Instant) {
        if self.socket.is_some() {
            self.check_until = Some(now + AFTER_FORK);
        }
    }

    /// Whether a between-cycles check is due at `now`.
    pub fn check_due(&mut self, now: Instant) -> bool {
        match self.check_until {
            Some(until) if now <= until => true,
            Some(_) => {
                self.check_until = None;
                false
            }
            None => false,
        }
    }

    /// Ask the master. With `workers`, `show workers` too, whose heartbeat
    /// ages go to the workers of `state` (by pid; a worker without a slot
    /// gets none); `show stats` always. `retry`: once more after a
    /// transient failure (the cycle; between cycles the next check is the
    /// retry). `procfs` is where the master's /proc is: the socket is
    /// reached through it when the master is in another mount namespace
    /// (see [`reachable_path`]).
    pub fn poll(
        &mut self,
        procfs: &Path,
        state: &mut PoolState,
        opts: &ControlOptions,
        workers: bool,
        retry: bool,
    ) -> Poll {
        self.follow(state.master);
        state.gunicorn = self.stats;
        let Some(master) = state.master else {
            return Poll::Nothing;
        };
        let Some(path) = self.socket.clone() else {
            if workers {
                clear_heartbeats(state);
            }
            return match &self.missing {
                Some(why) => Poll::Failed(why.clone()),
                None => Poll::Nothing,
            };
        };
        let pid = master.pid as u32;
        let path = reachable_path(procfs, master.pid, &path);
        let mut answer = ask(&path, pid, opts, workers, self.settings_at);
        if retry && matches!(&answer, Err(e) if e.is_transient()) {
            std::thread::sleep(RETRY_AFTER);
            answer = ask(&path, pid, opts, workers, self.settings_at);
        }
        match answer {
            Ok((listed, stats, settings)) => {
                if let Some(timeout) = settings {
                    self.timeout = timeout;
                    self.settings_at = Some(stats.reloads);
                }
                if workers {
                    set_heartbeats(state, &listed);
                }
                let reload = self.reloads.is_some_and(|r| stats.reloads > r);
                self.reloads = Some(stats.reloads);
                self.check_until = None;
                self.stats = Some(GunicornStats {
                    workers_spawned: stats.workers_spawned,
                    workers_killed: stats.workers_killed,
                    reloads: stats.reloads,
                    worker_timeout: self.timeout,
                });
                state.gunicorn = self.stats;
                Poll::Answered { reload }
            }
            Err(e) => {
                if workers {
                    clear_heartbeats(state);
                }
                Poll::Failed(e.to_string())
            }
        }
    }
}

/// Where the exporter finds `path`, a path as `master` sees it: the path
/// itself when both are in one mount namespace, else the same path under
/// the master's root, PROCFS/MASTER/root/PATH. A container with the host's
/// /proc at `--path.procfs` thus reaches the socket of a master on the host
/// or in another container, with no mount of its directory (opening
/// /proc/PID/root takes the ptrace access the exporter already has for
/// smaps). When either namespace cannot be read, the path is taken as is.
pub fn reachable_path(procfs: &Path, master: i32, path: &Path) -> PathBuf {
    let master_dir = procfs.join(master.to_string());
    let ours = std::fs::read_link("/proc/self/ns/mnt");
    let theirs = std::fs::read_link(master_dir.join("ns/mnt"));
    match (ours, theirs) {
        (Ok(ours), Ok(theirs)) if ours != theirs => master_dir
            .join("root")
            .join(path.strip_prefix("/").unwrap_or(path)),
        _ => path.to_owned(),
    }
}

/// The timeout a `show config` answer gives, when it was asked: `None`
/// when it was not (or failed on the way; asked again next time),
/// `Some(None)` when the master has no timeout (0) or no `show config`.
type SettingsRead = Option<Option<u64>>;

/// One connection: `show workers` (when asked), `show stats`, and `show
/// config` when it was not answered since the master's last reload
/// (`settings_at` is the reload count it was answered at).
fn ask(
    path: &Path,
    master: u32,
    opts: &ControlOptions,
    workers: bool,
    settings_at: Option<u64>,
) -> Result<(Vec<Worker>, Stats, SettingsRead), ControlError> {
    let mut c = ControlClient::connect_to(path, master, opts)?;
    let listed = if workers {
        c.show_workers()?
    } else {
        Vec::new()
    };
    let stats = c.show_stats()?;
    let settings = if settings_at == Some(stats.reloads) {
        None
    } else {
        match c.show_config() {
            Ok(s) => Some(s.timeout.filter(|t| *t > 0.0).map(|t| t.ceil() as u64)),
            // A Gunicorn without the command: no timeout to tell.
            Err(ControlError::Command { .. }) => Some(None),
            Err(_) => None,
        }
    };
    Ok((listed, stats, settings))
}

fn set_heartbeats(state: &mut PoolState, listed: &[Worker]) {
    let epoch = crate::state::boot_time()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let by_pid: HashMap<i32, Option<f64>> = listed
        .iter()
        .map(|w| (w.pid as i32, heartbeat_age(w.last_heartbeat, epoch)))
        .collect();
    for w in &mut state.workers {
        w.heartbeat_age = by_pid.get(&w.id.pid).copied().flatten();
    }
}

fn clear_heartbeats(state: &mut PoolState) {
    for w in &mut state.workers {
        w.heartbeat_age = None;
    }
}

/// Which of `candidates` the workers hold among their fds, from the first
/// [`WORKERS_CHECKED`] workers whose fds can be read; `None` when none
/// could be.
fn held_by_workers(
    root: &ProcRoot,
    workers: impl Iterator<Item = ProcId>,
    candidates: &[u64],
) -> Option<HashSet<u64>> {
    let mut held = HashSet::new();
    let mut read = 0;
    for id in workers {
        let Ok(fds) = root.process(id.pid).and_then(|p| listen::socket_inodes(&p)) else {
            continue;
        };
        held.extend(candidates.iter().filter(|c| fds.contains(c)));
        read += 1;
        if read == WORKERS_CHECKED || held.len() == candidates.len() {
            break;
        }
    }
    (read > 0).then_some(held)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Server;
    use crate::pools::view::{Memory, WorkerState};
    use std::os::unix::net::UnixListener;

    fn sock(name: &str, inode: u64) -> ListenSocket {
        let addr = match name.strip_prefix("unix:") {
            Some(p) => ListenAddr::Unix(PathBuf::from(p)),
            None => ListenAddr::Tcp(name.parse().unwrap()),
        };
        ListenSocket {
            name: name.to_string(),
            inode,
            addr,
        }
    }

    fn fixture_root() -> ProcRoot {
        ProcRoot::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/proc/gunicorn_plain"
        ))
    }

    const MASTER: fn() -> ProcId = || ProcId {
        pid: std::process::id() as i32,
        starttime: 1,
    };

    fn pool_with_workers(pids: &[i32]) -> PoolState {
        let mut s = PoolState::new("api", Server::Gunicorn);
        s.master = Some(MASTER());
        s.workers = pids
            .iter()
            .enumerate()
            .map(|(slot, &pid)| WorkerState {
                id: ProcId { pid, starttime: 2 },
                slot,
                start_time: 0.0,
                memory: Memory::default(),
                open_fds: None,
                max_fds: None,
                cpu_seconds: None,
                heartbeat_age: Some(1.0),
            })
            .collect();
        s
    }

    #[test]
    fn a_master_in_another_mount_namespace_is_reached_through_its_root() {
        let sock = Path::new("/run/app/gunicorn.ctl");
        // This process: one namespace, the path as is.
        let me = std::process::id() as i32;
        assert_eq!(reachable_path(Path::new("/proc"), me, sock), sock);
        // A master whose ns/mnt link names another namespace.
        let procfs = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(procfs.path().join("4242/ns")).unwrap();
        std::os::unix::fs::symlink("mnt:[1]", procfs.path().join("4242/ns/mnt")).unwrap();
        assert_eq!(
            reachable_path(procfs.path(), 4242, sock),
            procfs.path().join("4242/root/run/app/gunicorn.ctl")
        );
        // Its namespace unreadable (gone, or no access): as is.
        assert_eq!(reachable_path(procfs.path(), 4243, sock), sock);
    }

    #[test]
    fn a_configured_socket_needs_no_search_and_is_not_a_listener() {
        let mut c = Control::new(Some(PathBuf::from("/run/api/ctl.sock")));
        let ls = vec![
            sock("unix:/run/api/ctl.sock", 7),
            sock("unix:/run/api.sock", 8),
        ];
        assert!(!c.locate(
            &fixture_root(),
            MASTER(),
            &Ok(ls.clone()),
            std::iter::empty(),
            BIND_GRACE
        ));
        assert_eq!(c.socket(), Some(Path::new("/run/api/ctl.sock")));
        assert!(c.is_control(&ls[0]) && !c.is_control(&ls[1]));
        assert!(!c.is_control(&sock("127.0.0.1:8000", 9)));
    }

    #[test]
    fn without_a_readable_worker_an_app_socket_is_never_taken_for_it() {
        let mut c = Control::new(None);
        // The only listener no (readable) worker holds would be "found".
        let ls = Ok(vec![sock("unix:/run/api.sock", 8)]);
        let none = ProcId {
            pid: i32::MAX,
            starttime: 0,
        };
        assert!(c.locate(
            &fixture_root(),
            MASTER(),
            &ls,
            [none].into_iter(),
            BIND_GRACE * 2
        ));
        assert_eq!(c.socket(), None);
        let mut state = pool_with_workers(&[]);
        assert!(
            matches!(c.poll(Path::new("/proc"), &mut state, &ControlOptions::default(), true, true), Poll::Failed(w) if w.contains("no worker's sockets"))
        );
    }

    #[test]
    fn a_young_master_is_given_time_to_bind_it() {
        let root = fixture_root();
        // Fixture workers hold no sockets: every unix listener is a
        // candidate; with none, nothing is found.
        let worker = ProcId {
            pid: 17591,
            starttime: 0,
        };
        let ls = Ok(vec![sock("127.0.0.1:8000", 9)]);
        let mut c = Control::new(None);
        assert!(c.locate(
            &root,
            MASTER(),
            &ls,
            [worker].into_iter(),
            Duration::from_secs(1)
        ));
        let mut state = pool_with_workers(&[]);
        let opts = ControlOptions::default();
        assert_eq!(
            c.poll(Path::new("/proc"), &mut state, &opts, true, true),
            Poll::Nothing
        );
        assert!(!c.locate(&root, MASTER(), &ls, [worker].into_iter(), BIND_GRACE));
        assert!(
            matches!(c.poll(Path::new("/proc"), &mut state, &opts, true, true), Poll::Failed(w) if w.contains("before 25.1")),
        );
        // Two candidates no worker holds, neither with the default name.
        let mut c = Control::new(None);
        let ls = Ok(vec![sock("unix:/a/x.sock", 1), sock("unix:/b/y.sock", 2)]);
        c.locate(&root, MASTER(), &ls, [worker].into_iter(), BIND_GRACE);
        assert!(
            matches!(c.poll(Path::new("/proc"), &mut state, &opts, true, true), Poll::Failed(w) if w.contains("/a/x.sock, /b/y.sock") && w.contains("control_socket:")),
        );
    }

    #[test]
    fn answers_go_to_the_slots_and_a_reload_is_seen_once() {
        // A peer that answers like Gunicorn: one worker listed with a
        // heartbeat, stats with a reload count given per connection.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let l = UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let mut configs = Vec::new();
            for reloads in [0, 0, 1, 1] {
                let (mut s, _) = l.accept().unwrap();
                // Requests until the client closes: `show config` comes
                // only when the settings are not known for this reload.
                while let Ok(req) = crate::gunicorn::control::read_frame(&mut s, 1 << 20) {
                    let v: serde_json::Value = serde_json::from_slice(&req).unwrap();
                    let data = match v["command"].as_str().unwrap() {
                        "show config" => {
                            configs.push(reloads);
                            serde_json::json!({"workers": 2, "timeout": 30 - 10 * reloads})
                        }
                        "show workers" => serde_json::json!({"workers": [
                            {"pid": 41, "age": 1, "booted": false, "last_heartbeat": 2.5},
                            {"pid": 99, "age": 2, "booted": false, "last_heartbeat": 0.5}]}),
                        _ => serde_json::json!({"pid": std::process::id(), "uptime": 3.0,
                            "workers_current": 2, "workers_target": 2, "workers_spawned": 5,
                            "workers_killed": 1, "reloads": reloads}),
                    };
                    let a = serde_json::to_vec(
                        &serde_json::json!({"id": v["id"], "status": "ok", "data": data}),
                    )
                    .unwrap();
                    use std::io::Write;
                    s.write_all(&(a.len() as u32).to_be_bytes()).unwrap();
                    s.write_all(&a).unwrap();
                }
            }
            configs
        });
        let mut c = Control::new(Some(path));
        let mut state = pool_with_workers(&[41, 42]);
        let opts = ControlOptions::default();
        assert_eq!(
            c.poll(Path::new("/proc"), &mut state, &opts, true, true),
            Poll::Answered { reload: false }
        );
        let hb: Vec<Option<f64>> = state.workers.iter().map(|w| w.heartbeat_age).collect();
        // Pid 42 is not listed; pid 99 has no slot.
        assert_eq!(hb, [Some(2.5), None]);
        assert_eq!(
            state.gunicorn,
            Some(GunicornStats {
                workers_spawned: 5,
                workers_killed: 1,
                reloads: 0,
                worker_timeout: Some(30),
            })
        );
        assert_eq!(
            c.poll(Path::new("/proc"), &mut state, &opts, true, true),
            Poll::Answered { reload: false }
        );
        assert_eq!(
            c.poll(Path::new("/proc"), &mut state, &opts, true, true),
            Poll::Answered { reload: true }
        );
        assert_eq!(state.gunicorn.unwrap().worker_timeout, Some(20));
        assert_eq!(
            c.poll(Path::new("/proc"), &mut state, &opts, true, true),
            Poll::Answered { reload: false }
        );
        // Asked once for the first master's settings, once after the
        // reload.
        assert_eq!(t.join().unwrap(), [0, 1]);
        // Gone: heartbeats go, the counts stay for this master.
        assert!(matches!(
            c.poll(Path::new("/proc"), &mut state, &opts, true, true),
            Poll::Failed(_)
        ));
        assert!(state.workers.iter().all(|w| w.heartbeat_age.is_none()));
        assert!(state.gunicorn.is_some());
        state.master = None;
        assert_eq!(
            c.poll(Path::new("/proc"), &mut state, &opts, true, true),
            Poll::Nothing
        );
        assert!(state.gunicorn.is_none());
    }

    #[test]
    fn a_fork_makes_a_check_due_for_a_while() {
        let mut c = Control::new(None);
        let t0 = Instant::now();
        c.forked(t0);
        assert!(!c.check_due(t0), "no socket known: nothing to check");
        let mut c = Control::new(Some(PathBuf::from("/x")));
        c.forked(t0);
        assert!(c.check_due(t0 + AFTER_FORK / 2));
        assert!(!c.check_due(t0 + AFTER_FORK * 2));
        assert!(!c.check_due(t0));
    }
}
