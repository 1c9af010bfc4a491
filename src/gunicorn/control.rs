//! Client for Gunicorn's control socket (25.1.0 and later; `gunicornc`
//! speaks the same protocol), and how to tell that socket among the
//! master's listening unix sockets.
//!
//! The protocol (gunicorn/ctl/protocol.py, server.py): every message is a
//! 4-byte big-endian length, then that many bytes of UTF-8 JSON. A request is
//! `{"id": 1, "command": "show workers", "args": []}`; the answer is
//! `{"id": 1, "status": "ok", "data": {...}}` or
//! `{"id": 1, "status": "error", "error": "..."}`. One connection carries
//! any number of requests in turn; the server closes it after 5 idle
//! minutes or on a malformed message, and refuses messages over 16 MiB.
//!
//! The master serves it from an asyncio thread. From 25.2 it closes the
//! socket before each fork and binds it again after (one `Control socket
//! listening at` log line per spawned worker), so while a worker is being
//! spawned a call can find the path missing or refused, or its connection
//! closed unanswered ([`ControlError::is_transient`]), and the inode changes
//! at every spawn.
//!
//! Every call is bounded by [`ControlOptions::timeout`]: connecting (a full
//! listen backlog would otherwise block `connect`), and each command from
//! its request to the last byte of its answer.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The file name of the default control socket in every version:
/// `gunicorn.ctl` in the working directory (25.1), in `$XDG_RUNTIME_DIR` or
/// else `$HOME/.gunicorn/` (25.2 and later).
pub const DEFAULT_FILE_NAME: &str = "gunicorn.ctl";

#[derive(Clone, Debug)]
pub struct ControlOptions {
    /// Bound on connecting, and on each command from request to answer.
    pub timeout: Duration,
    /// Answers announcing a longer payload are refused unread.
    pub max_response_bytes: u32,
}

impl Default for ControlOptions {
    fn default() -> Self {
        ControlOptions {
            timeout: Duration::from_secs(1),
            // `show workers` takes about 110 bytes a worker.
            max_response_bytes: 1 << 20,
        }
    }
}

/// One worker as `show workers` describes it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Worker {
    pub pid: u32,
    /// Spawn order: 1 for the first worker the master forked.
    pub age: u64,
    /// Always false as of 27.0.1: the flag is set in the worker process and
    /// never seen by the master's copy that answers.
    pub booted: bool,
    /// The master has sent it SIGABRT after a `WORKER TIMEOUT`.
    #[serde(default)]
    pub aborted: bool,
    /// Seconds since the worker's last heartbeat (the mtime of its tmp
    /// file); `None` when the master could not read it. An idle sync worker
    /// beats every `--timeout`/2 seconds, so a value above that means a busy
    /// or stuck worker, killed once it passes `--timeout`.
    pub last_heartbeat: Option<f64>,
}

/// Seconds since a worker's last heartbeat, from `show workers`'
/// `last_heartbeat`, never negative; `None` when unknown.
///
/// The master answers with its monotonic clock minus the mtime of the
/// worker's tmp file. Each heartbeat sets that mtime from the worker's
/// monotonic clock (`WorkerTmp.notify`), but until the first one, while the
/// worker still imports its app, the mtime is the wall-clock time at which
/// the master created the file: the answer is then about minus the time
/// from 1970 to the boot. `monotonic_epoch` (seconds since 1970 at which
/// CLOCK_MONOTONIC read 0) turns that back into the time since the file was
/// made, which is the worker's age without a heartbeat. A value a hair
/// below 0 (a heartbeat between the master's two clock reads, the
/// rounding) is 0.
pub fn heartbeat_age(last_heartbeat: Option<f64>, monotonic_epoch: f64) -> Option<f64> {
    /// Below this, a negative value is not a race but the two clocks mixed.
    const RACE: f64 = -1.0;
    let v = last_heartbeat.filter(|v| v.is_finite())?;
    if v >= RACE {
        return Some(v.max(0.0));
    }
    // The mixed clocks put it near minus the epoch; anything else negative
    // is no age at all.
    let since_created = v + monotonic_epoch;
    let mixed = v < -monotonic_epoch / 2.0 && since_created >= RACE;
    mixed.then_some(since_created.max(0.0))
}

#[derive(Deserialize)]
struct WorkerList {
    workers: Vec<Worker>,
}

/// `show stats`. Counters start at 0 when the master starts.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Stats {
    /// The master's pid.
    pub pid: u32,
    /// Seconds since the master started.
    pub uptime: Option<f64>,
    pub workers_current: u64,
    /// The worker count asked for (`--workers`, TTIN/TTOU).
    pub workers_target: u64,
    /// Workers forked.
    pub workers_spawned: u64,
    /// SIGTERMs and SIGKILLs the master sent to workers (each signal counts,
    /// not each worker; its SIGABRT on a timeout does not).
    pub workers_killed: u64,
    /// HUP reloads.
    pub reloads: u64,
    #[serde(default)]
    pub dirty_arbiter_pid: Option<u32>,
}

/// The part of `show config` the exporter uses.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Settings {
    /// `--timeout`: seconds a worker may go without a heartbeat before the
    /// master kills it; 0 turns the timeout off.
    #[serde(default)]
    pub timeout: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("Gunicorn control socket {path}: permission denied (it is mode 0600 by default, for the master's user)")]
    PermissionDenied { path: PathBuf },
    #[error("Gunicorn control socket {path}: connection refused (nothing listens there)")]
    Refused { path: PathBuf },
    #[error("Gunicorn control socket {path}: no such socket")]
    NotFound { path: PathBuf },
    #[error("Gunicorn control socket {path}: no answer within {timeout:?} while {during}")]
    Timeout {
        path: PathBuf,
        timeout: Duration,
        during: &'static str,
    },
    #[error("Gunicorn control socket {path} belongs to master {found}, not {expected} (masters that share a path take it from each other)")]
    OtherMaster {
        path: PathBuf,
        expected: u32,
        found: u32,
    },
    #[error("Gunicorn control socket {path}: closed without answering (the master closes it around each fork)")]
    Closed { path: PathBuf },
    #[error("{path} is not a Gunicorn control socket: {why}")]
    NotControlSocket { path: PathBuf, why: String },
    #[error("Gunicorn control socket {path}: answer of {len} bytes is over the {max}-byte limit")]
    TooLarge { path: PathBuf, len: u32, max: u32 },
    #[error("Gunicorn control socket {path}: bad JSON in the answer to `{command}`: {source}")]
    BadJson {
        path: PathBuf,
        command: String,
        source: serde_json::Error,
    },
    #[error("Gunicorn control socket {path}: `{command}` failed: {message}")]
    Command {
        path: PathBuf,
        command: String,
        message: String,
    },
    #[error("Gunicorn control socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl ControlError {
    /// What a call during the master's fork of a worker meets: the socket
    /// closed (connection reset, or closed unanswered), not yet bound again
    /// (refused) or not yet there (not found). Worth one retry; also what a
    /// master that is gone leaves behind.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ControlError::NotFound { .. }
                | ControlError::Refused { .. }
                | ControlError::Closed { .. }
        )
    }
}

/// The longest path a unix socket address holds (sun_path less its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A path to connect to, with the directory it goes through kept open.
enum ShortPath<'a> {
    AsIs(&'a Path),
    Through { path: PathBuf, _dir: std::fs::File },
}

impl ShortPath<'_> {
    fn path(&self) -> &Path {
        match self {
            ShortPath::AsIs(p) => p,
            ShortPath::Through { path, .. } => path,
        }
    }
}

/// `path`, or when it is too long for a socket address, the same socket
/// as /proc/self/fd/N/NAME through an O_PATH descriptor N of its directory.
fn short_path(path: &Path) -> io::Result<ShortPath<'_>> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    if path.as_os_str().as_bytes().len() <= MAX_SOCKET_PATH {
        return Ok(ShortPath::AsIs(path));
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(ShortPath::AsIs(path));
    };
    let dir_fd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?;
    let path = Path::new("/proc/self/fd")
        .join(dir_fd.as_raw_fd().to_string())
        .join(name);
    Ok(ShortPath::Through { path, _dir: dir_fd })
}

/// A connection to one master's control socket.
#[derive(Debug)]
pub struct ControlClient {
    stream: UnixStream,
    path: PathBuf,
    opts: ControlOptions,
    peer_pid: Option<u32>,
    next_id: u64,
}

impl ControlClient {
    /// Connects to the socket at `path`, within `opts.timeout`.
    pub fn connect(path: &Path, opts: &ControlOptions) -> Result<ControlClient, ControlError> {
        let io_err = |e: io::Error| connect_error(path, opts.timeout, e);
        let sock = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)
            .map_err(io_err)?;
        // A unix connect waits while the listener's backlog is full, for as
        // long as the send timeout allows.
        sock.set_write_timeout(Some(opts.timeout)).map_err(io_err)?;
        // A path longer than sun_path (108 bytes; /host/proc/PID/root/...
        // can be) is reached through an O_PATH descriptor of its directory.
        let short = short_path(path).map_err(io_err)?;
        let addr = socket2::SockAddr::unix(short.path()).map_err(io_err)?;
        sock.connect(&addr).map_err(io_err)?;
        let stream = UnixStream::from(std::os::fd::OwnedFd::from(sock));
        let peer_pid = peer_pid(&stream);
        Ok(ControlClient {
            stream,
            path: path.to_owned(),
            opts: opts.clone(),
            peer_pid,
            next_id: 1,
        })
    }

    /// Connects, and checks that the socket is `master`'s own: the process
    /// that created a listening socket is its peer (SO_PEERCRED), and
    /// masters sharing the default path take it over from each other.
    pub fn connect_to(
        path: &Path,
        master: u32,
        opts: &ControlOptions,
    ) -> Result<ControlClient, ControlError> {
        let c = ControlClient::connect(path, opts)?;
        match c.peer_pid {
            Some(found) if found != master => Err(ControlError::OtherMaster {
                path: path.to_owned(),
                expected: master,
                found,
            }),
            _ => Ok(c),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pid of the process that listens on the socket, as the kernel
    /// recorded it (`None` if it could not tell).
    pub fn peer_pid(&self) -> Option<u32> {
        self.peer_pid
    }

    /// `show workers`, oldest first.
    pub fn show_workers(&mut self) -> Result<Vec<Worker>, ControlError> {
        self.command::<WorkerList>("show workers")
            .map(|l| l.workers)
    }

    /// `show stats`.
    pub fn show_stats(&mut self) -> Result<Stats, ControlError> {
        self.command("show stats")
    }

    /// `show config`: the master's effective settings (config file,
    /// `GUNICORN_CMD_ARGS` and command line together).
    pub fn show_config(&mut self) -> Result<Settings, ControlError> {
        self.command("show config")
    }

    /// Sends `command` and decodes the `data` of the answer as `T`.
    pub fn command<T: DeserializeOwned>(&mut self, command: &str) -> Result<T, ControlError> {
        let deadline = Instant::now() + self.opts.timeout;
        let id = self.next_id;
        self.next_id += 1;
        let request = serde_json::to_vec(&Request {
            id,
            command,
            args: [],
        })
        .expect("a request always serializes");
        let mut frame = Vec::with_capacity(4 + request.len());
        frame.extend_from_slice(&(request.len() as u32).to_be_bytes());
        frame.extend_from_slice(&request);

        let mut io = Deadlined {
            stream: &self.stream,
            deadline,
        };
        io.write_all(&frame)
            .map_err(|e| self.io_error(e, "sending the request"))?;
        let payload = match read_frame(&mut io, self.opts.max_response_bytes) {
            Ok(p) => p,
            Err(e) => return Err(self.frame_error(e)),
        };
        decode_answer(&payload, id, &self.path, command)
    }

    fn io_error(&self, e: io::Error, during: &'static str) -> ControlError {
        let path = self.path.clone();
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ControlError::Timeout {
                path,
                timeout: self.opts.timeout,
                during,
            },
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                ControlError::Closed { path }
            }
            _ => ControlError::Io { path, source: e },
        }
    }

    fn frame_error(&self, e: FrameError) -> ControlError {
        let path = self.path.clone();
        match e {
            FrameError::Io(e) => self.io_error(e, "reading the answer"),
            FrameError::TooLarge(len) => ControlError::TooLarge {
                path,
                len,
                max: self.opts.max_response_bytes,
            },
            FrameError::Closed => ControlError::Closed { path },
            FrameError::Truncated { got, want } => ControlError::NotControlSocket {
                path,
                why: format!("the answer ended after {got} of its {want} bytes"),
            },
            FrameError::Http => ControlError::NotControlSocket {
                path,
                why: "an HTTP server answered".into(),
            },
        }
    }
}

#[derive(Serialize)]
struct Request<'a> {
    id: u64,
    command: &'a str,
    args: [u8; 0],
}

#[derive(Deserialize)]
struct Answer {
    id: Option<u64>,
    status: String,
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<String>,
}

/// Decodes one answer payload (the JSON after the length) to the `data` of
/// request `id`.
pub fn decode_answer<T: DeserializeOwned>(
    payload: &[u8],
    id: u64,
    path: &Path,
    command: &str,
) -> Result<T, ControlError> {
    let bad_json = |source| ControlError::BadJson {
        path: path.to_owned(),
        command: command.to_owned(),
        source,
    };
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(bad_json)?;
    let not_control = |why: String| ControlError::NotControlSocket {
        path: path.to_owned(),
        why,
    };
    let answer: Answer = serde_json::from_value(value)
        .map_err(|e| not_control(format!("the answer has no control envelope: {e}")))?;
    if answer.id != Some(id) {
        return Err(not_control(format!(
            "the answer is for request {:?}, not {id}",
            answer.id
        )));
    }
    match answer.status.as_str() {
        "ok" => serde_json::from_value(answer.data.unwrap_or_default()).map_err(bad_json),
        "error" => Err(ControlError::Command {
            path: path.to_owned(),
            command: command.to_owned(),
            message: answer.error.unwrap_or_default(),
        }),
        other => Err(not_control(format!("unknown status {other:?}"))),
    }
}

#[derive(Debug)]
pub enum FrameError {
    Io(io::Error),
    /// The announced length is over the limit.
    TooLarge(u32),
    /// Closed before the first byte of the length.
    Closed,
    /// Closed inside the length or the payload.
    Truncated {
        got: usize,
        want: usize,
    },
    /// The first bytes read `HTTP`: an app socket, not the control socket.
    Http,
}

/// Reads one length-prefixed message, refusing lengths over `max` before
/// reading (or allocating) their payload.
pub fn read_frame(r: &mut impl Read, max: u32) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    let got = read_full(r, &mut len).map_err(FrameError::Io)?;
    if got == 0 {
        return Err(FrameError::Closed);
    }
    if len[..got] == b"HTTP"[..got] {
        return Err(FrameError::Http);
    }
    if got < 4 {
        return Err(FrameError::Truncated { got, want: 4 });
    }
    let n = u32::from_be_bytes(len);
    if n > max {
        return Err(FrameError::TooLarge(n));
    }
    let mut payload = vec![0u8; n as usize];
    let got = read_full(r, &mut payload).map_err(FrameError::Io)?;
    if got < payload.len() {
        return Err(FrameError::Truncated {
            got: 4 + got,
            want: 4 + payload.len(),
        });
    }
    Ok(payload)
}

/// Fills `buf` unless the reader ends first; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut at = 0;
    while at < buf.len() {
        match r.read(&mut buf[at..]) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(at)
}

/// The stream with every read and write bounded by one deadline.
struct Deadlined<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl Deadlined<'_> {
    fn remaining(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::ErrorKind::TimedOut.into())
        } else {
            Ok(left)
        }
    }
}

impl Read for Deadlined<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.remaining()?))?;
        (&mut &*self.stream).read(buf)
    }
}

impl Write for Deadlined<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.remaining()?))?;
        (&mut &*self.stream).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn connect_error(path: &Path, timeout: Duration, e: io::Error) -> ControlError {
    let path = path.to_owned();
    match e.kind() {
        io::ErrorKind::PermissionDenied => ControlError::PermissionDenied { path },
        io::ErrorKind::ConnectionRefused => ControlError::Refused { path },
        io::ErrorKind::NotFound => ControlError::NotFound { path },
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ControlError::Timeout {
            path,
            timeout,
            during: "connecting",
        },
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => ControlError::Closed { path },
        _ => ControlError::Io { path, source: e },
    }
}

fn peer_pid(stream: &UnixStream) -> Option<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes and `len` holds the size
    // of `cred`; the fd is open for the lifetime of `stream`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0 && cred.pid > 0).then_some(cred.pid as u32)
}

/// A listening unix socket of a Gunicorn master: an inode of
/// `/proc/MASTER/fd` found listening in `/proc/MASTER/net/unix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener<'a> {
    pub inode: u64,
    pub path: &'a Path,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlSocketSearch<'a> {
    Found(&'a Path),
    /// No listener fits: the control socket is off (`--no-control-socket`),
    /// could not be bound, or Gunicorn is older than 25.1.
    NotFound,
    /// Several listeners fit; the pool needs a `control_socket:` key.
    Ambiguous(Vec<&'a Path>),
}

/// Tells the control socket among a master's listening unix sockets.
///
/// The app's sockets (`--bind unix:...`) are bound before the first fork and
/// every worker holds them, since the workers accept on them. From 25.2 the
/// master closes its control socket before each fork and binds it again
/// after, so no worker ever holds it: the control socket is the master's
/// listener that no worker holds. In 25.1 the workers inherit it too; then,
/// and if several listeners are left, the default file name decides.
///
/// `held_by_workers` says whether any worker of the master has the inode
/// among its fds. A path found here can still lead to another master (see
/// [`ControlClient::connect_to`]).
pub fn find_control_socket<'a>(
    listeners: &[Listener<'a>],
    held_by_workers: impl Fn(u64) -> bool,
) -> ControlSocketSearch<'a> {
    let default_named = |l: &Listener| l.path.file_name() == Some(DEFAULT_FILE_NAME.as_ref());
    let own: Vec<&Listener<'a>> = listeners
        .iter()
        .filter(|l| !held_by_workers(l.inode))
        .collect();
    let pick = |from: &[&Listener<'a>]| -> Option<&'a Path> {
        let mut named = from.iter().filter(|l| default_named(l));
        match (named.next(), named.next()) {
            (Some(l), None) => Some(l.path),
            _ => None,
        }
    };
    match own.len() {
        1 => ControlSocketSearch::Found(own[0].path),
        0 => {
            let all: Vec<&Listener<'a>> = listeners.iter().collect();
            pick(&all).map_or(ControlSocketSearch::NotFound, ControlSocketSearch::Found)
        }
        _ => pick(&own).map_or_else(
            || ControlSocketSearch::Ambiguous(own.iter().map(|l| l.path).collect()),
            ControlSocketSearch::Found,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    macro_rules! fixture {
        ($f:literal) => {
            &include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fixtures/gunicorn/27.0.1/",
                $f
            ))[..]
        };
    }

    fn frame(mut bytes: &[u8]) -> Result<Vec<u8>, FrameError> {
        read_frame(&mut bytes, 1 << 20)
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8], command: &str) -> Result<T, ControlError> {
        decode_answer(&frame(bytes).unwrap(), 1, Path::new("/x"), command)
    }

    #[test]
    fn a_socket_path_longer_than_an_address_holds_is_reached() {
        // As /host/proc/PID/root/... can be: deeper than sun_path's 108.
        let dir = tempfile::tempdir().unwrap();
        let mut deep = dir.path().to_path_buf();
        while deep.as_os_str().len() <= MAX_SOCKET_PATH {
            deep.push("a-directory-of-thirty-characters");
        }
        std::fs::create_dir_all(&deep).unwrap();
        let path = deep.join("gunicorn.ctl");
        assert!(
            socket2::SockAddr::unix(&path).is_err(),
            "too long to bind as is"
        );
        let bound = short_path(&path).unwrap();
        let _l = UnixListener::bind(bound.path()).unwrap();
        let c = ControlClient::connect(&path, &ControlOptions::default()).unwrap();
        assert_eq!(c.path(), path);
        assert_eq!(c.peer_pid(), Some(std::process::id()));
    }

    #[test]
    fn captured_show_workers() {
        let w: WorkerList = decode(fixture!("control_show_workers.frame"), "show workers").unwrap();
        assert_eq!(w.workers.len(), 2);
        assert_eq!(w.workers.iter().map(|w| w.age).collect::<Vec<_>>(), [1, 2]);
        assert!(w.workers.iter().all(|w| !w.booted && !w.aborted));
        // --timeout 6: an idle worker beats every 3 s.
        assert!(
            w.workers.iter().all(|w| w.last_heartbeat.unwrap() < 3.5),
            "{:?}",
            w.workers
        );

        let s: WorkerList = decode(
            fixture!("control_show_workers_stopped.frame"),
            "show workers",
        )
        .unwrap();
        let hb: Vec<f64> = s
            .workers
            .iter()
            .map(|w| w.last_heartbeat.unwrap())
            .collect();
        // The first worker was SIGSTOPped for 4.5 s.
        assert!(hb[0] > 4.5 && hb[1] < 3.5, "{hb:?}");
        assert_eq!(
            s.workers.iter().map(|w| w.pid).collect::<Vec<_>>(),
            w.workers.iter().map(|w| w.pid).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_worker_before_its_first_heartbeat_has_its_age_since_the_fork() {
        // Captured while the worker imported tests/apps/slow_boot.py.
        let w: WorkerList = decode(
            fixture!("control_show_workers_booting.frame"),
            "show workers",
        )
        .unwrap();
        let raw = w.workers[0].last_heartbeat.unwrap();
        assert!(raw < -1.0e9, "the master mixed its clocks: {raw}");
        let clocks = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/gunicorn/27.0.1/control_show_workers_booting.clocks"
        ));
        let (wall, mono) = clocks.trim().split_once(' ').unwrap();
        let epoch = wall.parse::<f64>().unwrap() - mono.parse::<f64>().unwrap();
        let age = heartbeat_age(Some(raw), epoch).unwrap();
        // Asked once the boot line and the control socket were there.
        assert!((0.0..2.0).contains(&age), "{age}");

        // The same worker's value with a host booted at another time
        // cannot be placed: no age rather than a wrong one.
        assert_eq!(heartbeat_age(Some(raw), epoch - 3600.0), None);
        let later = heartbeat_age(Some(raw), epoch + 3600.0).unwrap();
        assert!((later - 3600.0 - age).abs() < 1e-3, "{later}");
    }

    #[test]
    fn heartbeat_ages_are_never_negative() {
        let epoch = 1.796e9;
        assert_eq!(heartbeat_age(Some(2.5), epoch), Some(2.5));
        assert_eq!(heartbeat_age(Some(-0.01), epoch), Some(0.0));
        assert_eq!(heartbeat_age(None, epoch), None);
        assert_eq!(heartbeat_age(Some(f64::NAN), epoch), None);
        assert_eq!(heartbeat_age(Some(-50.0), epoch), None);
        for v in [-1.0e12, -epoch - 5.0, -epoch + 0.5, -3.0, 0.0, 1e6] {
            assert!(
                heartbeat_age(Some(v), epoch).is_none_or(|a| a >= 0.0),
                "{v}"
            );
        }
    }

    #[test]
    fn captured_show_stats() {
        let s: Stats = decode(fixture!("control_show_stats.frame"), "show stats").unwrap();
        assert_eq!((s.workers_current, s.workers_target), (2, 2));
        assert_eq!(s.reloads, 1);
        // Two first workers, at least one recycled (--max-requests 2, four
        // requests), two more for the HUP.
        assert!(s.workers_spawned >= 5, "{s:?}");
        assert!(s.workers_killed >= 1 && s.uptime.unwrap() > 0.0 && s.pid > 0);
        assert_eq!(s.dirty_arbiter_pid, None);
    }

    #[test]
    fn captured_error_answer() {
        let e = decode::<Stats>(fixture!("control_unknown_command.frame"), "show nonsense")
            .unwrap_err();
        assert!(
            matches!(&e, ControlError::Command { message, .. } if message == "Invalid argument: Unknown show target: nonsense"),
            "{e}"
        );
    }

    #[test]
    fn captured_app_socket_answer() {
        // A sync worker reads the request as an HTTP request line, waits for
        // its end until its --timeout kills it, and answers 500.
        assert!(matches!(
            frame(fixture!("app_socket_answer.bin")),
            Err(FrameError::Http)
        ));
    }

    #[test]
    fn frames() {
        assert!(matches!(frame(b""), Err(FrameError::Closed)));
        assert!(matches!(
            frame(b"\0\0"),
            Err(FrameError::Truncated { got: 2, want: 4 })
        ));
        assert!(matches!(frame(b"HT"), Err(FrameError::Http)));
        assert!(matches!(
            frame(b"\0\0\0\x05{}"),
            Err(FrameError::Truncated { got: 6, want: 9 })
        ));
        assert!(matches!(
            frame(b"\xff\xff\xff\xff"),
            Err(FrameError::TooLarge(u32::MAX))
        ));
        assert!(matches!(
            frame(b"\0\x10\0\x01"),
            Err(FrameError::TooLarge(0x10_0001))
        ));
        assert_eq!(frame(b"\0\0\0\x02{}").unwrap(), b"{}");
        assert_eq!(frame(b"\0\0\0\0").unwrap(), b"");
    }

    #[test]
    fn answers() {
        let p = Path::new("/x");
        let d = |s: &str| decode_answer::<Stats>(s.as_bytes(), 1, p, "show stats");
        assert!(matches!(d(""), Err(ControlError::BadJson { .. })));
        assert!(matches!(
            d("{\"id\": 1, \"status\""),
            Err(ControlError::BadJson { .. })
        ));
        assert!(matches!(
            d("[1, 2]"),
            Err(ControlError::NotControlSocket { .. })
        ));
        assert!(matches!(
            d("{\"id\": 2, \"status\": \"ok\", \"data\": {}}"),
            Err(ControlError::NotControlSocket { .. })
        ));
        assert!(matches!(
            d("{\"id\": 1, \"status\": \"maybe\"}"),
            Err(ControlError::NotControlSocket { .. })
        ));
        // Well framed, but not stats.
        assert!(matches!(
            d("{\"id\": 1, \"status\": \"ok\", \"data\": {\"workers\": []}}"),
            Err(ControlError::BadJson { .. })
        ));
    }

    #[test]
    fn search_rules() {
        let l = |inode, path: &'static str| Listener {
            inode,
            path: Path::new(path),
        };
        let app = l(1, "/run/app.sock");
        let ctl = l(2, "/run/ctl/custom.sock");
        let dflt = l(3, "/root/.gunicorn/gunicorn.ctl");
        let workers_hold = |i: u64| i == 1;
        use ControlSocketSearch::*;
        assert_eq!(
            find_control_socket(&[app, ctl], workers_hold),
            Found(ctl.path)
        );
        assert_eq!(find_control_socket(&[app], workers_hold), NotFound);
        assert_eq!(find_control_socket(&[], workers_hold), NotFound);
        // No worker alive at the moment: the default name decides.
        assert_eq!(
            find_control_socket(&[app, dflt], |_| false),
            Found(dflt.path)
        );
        assert_eq!(
            find_control_socket(&[app, ctl], |_| false),
            Ambiguous(vec![app.path, ctl.path])
        );
        // 25.1: the workers inherit the control socket as well.
        assert_eq!(
            find_control_socket(&[app, dflt], |_| true),
            Found(dflt.path)
        );
        assert_eq!(find_control_socket(&[app, ctl], |_| true), NotFound);
    }

    /// A listener we control, to play a peer that misbehaves.
    fn fake(tag: &str) -> (tempfile::TempDir, PathBuf, UnixListener) {
        let dir = tempfile::Builder::new().prefix(tag).tempdir().unwrap();
        let path = dir.path().join("s");
        let l = UnixListener::bind(&path).unwrap();
        (dir, path, l)
    }

    fn opts(ms: u64) -> ControlOptions {
        ControlOptions {
            timeout: Duration::from_millis(ms),
            ..ControlOptions::default()
        }
    }

    #[test]
    fn a_silent_peer_times_out() {
        let (_d, path, l) = fake("bgw-ctl-silent");
        let mut c = ControlClient::connect(&path, &opts(300)).unwrap();
        assert_eq!(c.peer_pid(), Some(std::process::id()));
        let start = Instant::now();
        let e = c.show_workers().unwrap_err();
        assert!(
            matches!(
                e,
                ControlError::Timeout {
                    during: "reading the answer",
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        drop(l);
    }

    #[test]
    fn a_trickling_peer_is_bounded_by_one_deadline() {
        // A byte every 100 ms: each read succeeds, the whole answer does not.
        let (_d, path, l) = fake("bgw-ctl-trickle");
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(&100u32.to_be_bytes()).unwrap();
            for _ in 0..30 {
                std::thread::sleep(Duration::from_millis(100));
                if s.write_all(b" ").is_err() {
                    break;
                }
            }
        });
        let mut c = ControlClient::connect(&path, &opts(500)).unwrap();
        let start = Instant::now();
        let e = c.show_stats().unwrap_err();
        assert!(matches!(e, ControlError::Timeout { .. }), "{e}");
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "{:?}",
            start.elapsed()
        );
        drop(c);
        t.join().unwrap();
    }

    #[test]
    fn a_full_backlog_does_not_block_connect() {
        let (_d, path, l) = fake("bgw-ctl-backlog");
        // Never accepted: once the backlog is full, connect would wait.
        let mut held = Vec::new();
        let start = Instant::now();
        let e = loop {
            match ControlClient::connect(&path, &opts(200)) {
                Ok(c) => held.push(c),
                Err(e) => break e,
            }
            assert!(held.len() < 10_000, "the backlog never filled");
        };
        assert!(
            matches!(
                e,
                ControlError::Timeout {
                    during: "connecting",
                    ..
                }
            ),
            "{e}"
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        drop(l);
    }

    #[test]
    fn connect_errors_are_typed() {
        let (_d, path, l) = fake("bgw-ctl-errors");
        drop(l); // the file stays, nothing listens
        assert!(matches!(
            ControlClient::connect(&path, &opts(200)),
            Err(ControlError::Refused { .. })
        ));
        let gone = path.with_file_name("missing");
        assert!(matches!(
            ControlClient::connect(&gone, &opts(200)),
            Err(ControlError::NotFound { .. })
        ));
    }

    #[test]
    fn a_peer_closing_unanswered_is_transient() {
        let (_d, path, l) = fake("bgw-ctl-closed");
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = [0u8; 64];
            let _ = s.read(&mut req);
        });
        let mut c = ControlClient::connect(&path, &opts(1000)).unwrap();
        let e = c.show_workers().unwrap_err();
        assert!(
            matches!(e, ControlError::Closed { .. }) && e.is_transient(),
            "{e}"
        );
        t.join().unwrap();
    }

    #[test]
    fn oversized_answers_are_refused_unread() {
        let (_d, path, l) = fake("bgw-ctl-large");
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = [0u8; 64];
            let _ = s.read(&mut req);
            let _ = s.write_all(&(64u32 << 20).to_be_bytes());
        });
        let mut c = ControlClient::connect(&path, &opts(1000)).unwrap();
        let e = c.show_workers().unwrap_err();
        assert!(
            matches!(e, ControlError::TooLarge { len, max, .. } if len == 64 << 20 && max == 1 << 20),
            "{e}"
        );
        t.join().unwrap();
    }

    #[test]
    fn the_request_is_what_gunicorn_reads() {
        let (_d, path, l) = fake("bgw-ctl-request");
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let req = read_frame(&mut s, 1 << 20).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&req).unwrap();
            let answer = br#"{"id": 1, "status": "ok", "data": {"workers": [], "count": 0}}"#;
            s.write_all(&(answer.len() as u32).to_be_bytes()).unwrap();
            s.write_all(answer).unwrap();
            v
        });
        let mut c = ControlClient::connect(&path, &opts(1000)).unwrap();
        assert_eq!(c.show_workers().unwrap(), []);
        assert_eq!(
            t.join().unwrap(),
            serde_json::json!({"id": 1, "command": "show workers", "args": []})
        );
    }
}
