//! The kernel's process events connector: fork, exec and exit of every task
//! on the host as they happen (NETLINK_CONNECTOR, group CN_IDX_PROC).
//!
//! Two parts: [`parse_messages`], a pure parser from received bytes to typed
//! [`Message`]s, and [`ProcConnector`], the socket that subscribes and reads
//! batches of [`ProcEvent`]s.
//!
//! The layouts, all in host byte order (include/uapi/linux/netlink.h,
//! connector.h and cn_proc.h):
//!
//! ```text
//! struct nlmsghdr   { u32 len; u16 type; u16 flags; u32 seq; u32 pid; }      16 bytes
//! struct cn_msg     { u32 idx; u32 val; u32 seq; u32 ack; u16 len; u16 flags; u8 data[]; }  20 bytes
//! struct proc_event { u32 what; u32 cpu; u64 timestamp_ns /* aligned(8) */; union event_data; }
//!   fork:     parent_pid, parent_tgid, child_pid, child_tgid     (i32 each, at data+16)
//!   exec:     process_pid, process_tgid
//!   coredump: process_pid, process_tgid, parent_pid, parent_tgid
//!   exit:     process_pid, process_tgid, u32 exit_code, u32 exit_signal, parent_pid, parent_tgid
//!   ack:      u32 err   (what == PROC_EVENT_NONE)
//! ```
//!
//! What this kernel (6.18) does, seen in the captures of fixtures/netlink/:
//! - `timestamp_ns` is `ktime_get_ns()`, CLOCK_MONOTONIC (see [`monotonic_ns`]).
//! - `cn_msg.seq` is a per-CPU counter over every message the connector sends
//!   (acks included), so a gap in it on one CPU is a lost message: that is how
//!   [`ProcConnector`] counts losses (see [`ReadStats::lost`]).
//! - The subscription ack carries the kernel's counter in `seq` and our `ack`
//!   plus one in `ack`: the request's `ack` field is the nonce to match.
//! - A thread's fork names the *process's* parent as parent (a new thread's
//!   `real_parent` is its group's parent), with `child.tgid` the process; a
//!   thread's exit has `exit_signal` -1 and no parent.
//! - When a threaded process is killed, the leader's exit (pid == tgid) can
//!   arrive before its threads' exits.
//! - A signal whose default action dumps core (SIGSEGV, SIGABRT) sends a
//!   `PROC_EVENT_COREDUMP` before the exit even when no core file is written;
//!   the exit's wait status says whether one was.
//! - Who may subscribe depends on the kernel's build: the 2023 cn_proc
//!   changes (Linux 6.6) let a `nobody` subscriber with no capabilities bind
//!   the group and get every event, while older kernels, and some later
//!   ones (6.18.44 here), refuse binding the group without CAP_NET_ADMIN
//!   with EPERM ([`ProcConnectorError::PermissionDenied`]). The tests probe
//!   which policy the running kernel has. Events carry pids of the initial
//!   pid namespace. The connector lives only in the initial network namespace (elsewhere the
//!   subscription is refused with ECONNREFUSED), and the kernel silently
//!   ignores a subscription from outside the initial user or pid namespace:
//!   no ack ever comes. Each is a [`ProcConnectorError`] variant.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use netlink_sys::{protocols::NETLINK_CONNECTOR, Socket, SocketAddr};

/// The connector's index and value for process events (connector.h).
pub const CN_IDX_PROC: u32 = 1;
pub const CN_VAL_PROC: u32 = 1;
/// `enum proc_cn_mcast_op` (cn_proc.h).
pub const PROC_CN_MCAST_LISTEN: u32 = 1;
pub const PROC_CN_MCAST_IGNORE: u32 = 2;

/// `enum proc_cn_event` (cn_proc.h): the `what` of a proc_event.
pub const PROC_EVENT_NONE: u32 = 0x0000_0000;
pub const PROC_EVENT_FORK: u32 = 0x0000_0001;
pub const PROC_EVENT_EXEC: u32 = 0x0000_0002;
pub const PROC_EVENT_UID: u32 = 0x0000_0004;
pub const PROC_EVENT_GID: u32 = 0x0000_0040;
pub const PROC_EVENT_SID: u32 = 0x0000_0080;
pub const PROC_EVENT_PTRACE: u32 = 0x0000_0100;
pub const PROC_EVENT_COMM: u32 = 0x0000_0200;
pub const PROC_EVENT_COREDUMP: u32 = 0x4000_0000;
pub const PROC_EVENT_EXIT: u32 = 0x8000_0000;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_DONE: u16 = 3;
const CN_MSG_LEN: usize = 20;
const PROC_EVENT_HEADER_LEN: usize = 16;

/// A task as the kernel names it: `pid` is the thread id, `tgid` the process
/// id. A process's main thread has `pid == tgid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Task {
    pub pid: i32,
    pub tgid: i32,
}

impl Task {
    /// A thread other than its process's main thread. Callers that track
    /// processes keep only events whose task is not a thread.
    pub fn is_thread(self) -> bool {
        self.pid != self.tgid
    }
}

/// The `exit_code` of an exit event, in wait(2) status encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WaitStatus(pub u32);

/// How a task ended, decoded from its [`WaitStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitOutcome {
    /// `exit(code)` or a return from main: `(status >> 8) & 0xff`.
    Exited(u8),
    /// Killed by `signal` (`status & 0x7f`); `core_dumped` is bit 0x80.
    Signaled { signal: i32, core_dumped: bool },
}

impl WaitStatus {
    pub fn outcome(self) -> ExitOutcome {
        let signal = (self.0 & 0x7f) as i32;
        if signal == 0 {
            ExitOutcome::Exited(((self.0 >> 8) & 0xff) as u8)
        } else {
            ExitOutcome::Signaled {
                signal,
                core_dumped: self.0 & 0x80 != 0,
            }
        }
    }
}

/// What happened to which task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Fork {
        parent: Task,
        child: Task,
    },
    Exec {
        task: Task,
    },
    Exit {
        task: Task,
        status: WaitStatus,
        /// The signal the parent is sent (SIGCHLD for a process, -1 for a
        /// thread), NOT the signal that killed the task: that one is in
        /// `status`.
        exit_signal: i32,
        /// The parent at the time of the exit; the kernel leaves it out
        /// (zero) for threads.
        parent: Option<Task>,
    },
    Coredump {
        task: Task,
        parent: Option<Task>,
    },
    /// uid, gid, sid, ptrace and comm changes, and types newer than this
    /// parser: `what` is the kernel's `PROC_EVENT_*` value.
    Other {
        what: u32,
        task: Task,
    },
}

impl EventKind {
    /// The task the event is about (the child, for a fork).
    pub fn task(&self) -> Task {
        match *self {
            EventKind::Fork { child, .. } => child,
            EventKind::Exec { task }
            | EventKind::Exit { task, .. }
            | EventKind::Coredump { task, .. }
            | EventKind::Other { task, .. } => task,
        }
    }
}

/// One process event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcEvent {
    /// CLOCK_MONOTONIC nanoseconds when the kernel sent it.
    pub timestamp_ns: u64,
    /// The CPU it was sent from; `seq` counts messages per CPU.
    pub cpu: u32,
    pub seq: u32,
    pub kind: EventKind,
}

/// A message of the process events connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    Event(ProcEvent),
    /// The answer to a PROC_CN_MCAST_LISTEN/IGNORE: `ack` is the request's
    /// `ack` plus one, `err` a positive errno or 0. Every subscriber sees
    /// every subscriber's acks.
    Ack {
        cpu: u32,
        seq: u32,
        ack: u32,
        err: u32,
    },
}

impl Message {
    fn cpu_seq(&self) -> (u32, u32) {
        match *self {
            Message::Event(e) => (e.cpu, e.seq),
            Message::Ack { cpu, seq, .. } => (cpu, seq),
        }
    }
}

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    #[error("netlink message at byte {offset}: length {len} is shorter than its header or runs past the {total}-byte buffer")]
    BadLength {
        offset: usize,
        len: usize,
        total: usize,
    },
    #[error("connector message at byte {offset}: {len}-byte proc_event (what {what:#x}) is shorter than the {need} bytes it needs")]
    Truncated {
        offset: usize,
        what: u32,
        len: usize,
        need: usize,
    },
}

/// The connector messages in one received buffer (a datagram, or several
/// concatenated). Netlink messages that are not process events are skipped.
/// After an error the iterator ends.
pub fn parse_messages(buf: &[u8]) -> Messages<'_> {
    Messages {
        buf,
        offset: 0,
        done: false,
    }
}

pub struct Messages<'a> {
    buf: &'a [u8],
    offset: usize,
    done: bool,
}

impl Iterator for Messages<'_> {
    type Item = Result<Message, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done && self.offset + NLMSG_HDRLEN <= self.buf.len() {
            let offset = self.offset;
            let msg = &self.buf[offset..];
            let len = u32_at(msg, 0) as usize;
            if len < NLMSG_HDRLEN || len > msg.len() {
                self.done = true;
                return Some(Err(ParseError::BadLength {
                    offset,
                    len,
                    total: self.buf.len(),
                }));
            }
            // NLMSG_ALIGN: the next message starts on a 4-byte boundary.
            self.offset += (len + 3) & !3;
            if u16::from_ne_bytes([msg[4], msg[5]]) != NLMSG_DONE {
                continue;
            }
            match parse_cn_msg(&msg[NLMSG_HDRLEN..len], offset) {
                Ok(Some(m)) => return Some(Ok(m)),
                Ok(None) => continue,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

impl std::iter::FusedIterator for Messages<'_> {}

fn parse_cn_msg(cn: &[u8], offset: usize) -> Result<Option<Message>, ParseError> {
    if cn.len() < CN_MSG_LEN || u32_at(cn, 0) != CN_IDX_PROC || u32_at(cn, 4) != CN_VAL_PROC {
        return Ok(None);
    }
    let seq = u32_at(cn, 8);
    let ack = u32_at(cn, 12);
    let data_len = usize::from(u16::from_ne_bytes([cn[16], cn[17]]));
    let data = &cn[CN_MSG_LEN..cn.len().min(CN_MSG_LEN + data_len)];
    let what = if data.len() >= 4 { u32_at(data, 0) } else { 0 };
    let need = PROC_EVENT_HEADER_LEN
        + match what {
            PROC_EVENT_NONE => 4,
            PROC_EVENT_FORK | PROC_EVENT_COREDUMP => 16,
            PROC_EVENT_EXIT => 24,
            _ => 8,
        };
    if data.len() < need {
        return Err(ParseError::Truncated {
            offset,
            what,
            len: data.len(),
            need,
        });
    }
    let cpu = u32_at(data, 4);
    let timestamp_ns = u64::from_ne_bytes(data[8..16].try_into().expect("8 bytes"));
    let f = |i: usize| i32_at(data, PROC_EVENT_HEADER_LEN + 4 * i);
    let task = |i: usize| Task {
        pid: f(i),
        tgid: f(i + 1),
    };
    let parent = |i: usize| Some(task(i)).filter(|t| t.pid != 0);
    let kind = match what {
        PROC_EVENT_NONE => {
            return Ok(Some(Message::Ack {
                cpu,
                seq,
                ack,
                err: f(0) as u32,
            }))
        }
        PROC_EVENT_FORK => EventKind::Fork {
            parent: task(0),
            child: task(2),
        },
        PROC_EVENT_EXEC => EventKind::Exec { task: task(0) },
        PROC_EVENT_EXIT => EventKind::Exit {
            task: task(0),
            status: WaitStatus(f(2) as u32),
            exit_signal: f(3),
            parent: parent(4),
        },
        PROC_EVENT_COREDUMP => EventKind::Coredump {
            task: task(0),
            parent: parent(2),
        },
        _ => EventKind::Other {
            what,
            task: task(0),
        },
    };
    Ok(Some(Message::Event(ProcEvent {
        timestamp_ns,
        cpu,
        seq,
        kind,
    })))
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_ne_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

fn i32_at(b: &[u8], i: usize) -> i32 {
    i32::from_ne_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

/// Builds a PROC_CN_MCAST_LISTEN or _IGNORE request; `nonce` goes in the
/// `ack` field, which the kernel's ack returns plus one.
pub fn subscription_request(op: u32, nonce: u32) -> [u8; NLMSG_HDRLEN + CN_MSG_LEN + 4] {
    let mut b = [0u8; NLMSG_HDRLEN + CN_MSG_LEN + 4];
    let len = b.len() as u32;
    b[0..4].copy_from_slice(&len.to_ne_bytes());
    b[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
    b[16..20].copy_from_slice(&CN_IDX_PROC.to_ne_bytes());
    b[20..24].copy_from_slice(&CN_VAL_PROC.to_ne_bytes());
    b[28..32].copy_from_slice(&nonce.to_ne_bytes());
    b[32..34].copy_from_slice(&4u16.to_ne_bytes());
    b[36..40].copy_from_slice(&op.to_ne_bytes());
    b
}

/// CLOCK_MONOTONIC now, in nanoseconds: the clock of `timestamp_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[derive(thiserror::Error, Debug)]
pub enum ProcConnectorError {
    #[error("proc connector: {op}: permission denied (this kernel wants CAP_NET_ADMIN)")]
    PermissionDenied { op: &'static str },
    #[error("proc connector: not reachable from this network namespace (it exists only in the initial one); {}", super::NEEDS_HOST_NETWORK)]
    OtherNetworkNamespace,
    #[error("proc connector: no acknowledgment of the subscription within {0:?} (the kernel ignores subscribers outside the initial user and pid namespaces); needs the host PID namespace: hostPID: true in Kubernetes, --pid host in Docker")]
    NoAck(Duration),
    #[error("proc connector: not in this kernel (CONFIG_PROC_EVENTS)")]
    Unsupported,
    #[error("proc connector: subscription refused: {0}")]
    Refused(io::Error),
    #[error("proc connector: {op}: {source}")]
    Io { op: &'static str, source: io::Error },
    #[error("proc connector: {0}")]
    Parse(#[from] ParseError),
}

fn io_error(op: &'static str, e: io::Error) -> ProcConnectorError {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => ProcConnectorError::PermissionDenied { op },
        Some(libc::ECONNREFUSED) => ProcConnectorError::OtherNetworkNamespace,
        Some(libc::EPROTONOSUPPORT) => ProcConnectorError::Unsupported,
        _ => ProcConnectorError::Io { op, source: e },
    }
}

#[derive(Debug, Clone)]
pub struct ProcConnectorOptions {
    /// The socket's receive buffer: the events that can wait between two
    /// reads (each takes about 1 KiB of it). Above net.core.rmem_max it
    /// needs CAP_NET_ADMIN; without, the kernel caps it there.
    pub recv_buffer_bytes: usize,
    /// At most this many events are appended by one [`ProcConnector::read`];
    /// the rest wait in the socket for the next.
    pub max_batch: usize,
    /// How long [`ProcConnector::open`] waits for the kernel's ack.
    pub ack_timeout: Duration,
}

impl Default for ProcConnectorOptions {
    fn default() -> Self {
        ProcConnectorOptions {
            recv_buffer_bytes: 4 << 20,
            max_batch: 4096,
            ack_timeout: Duration::from_secs(1),
        }
    }
}

/// What one [`ProcConnector::read`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Events appended to the caller's Vec.
    pub events: usize,
    /// Messages the kernel sent and this socket never got: gaps in the
    /// per-CPU sequence, counted when the next message from that CPU
    /// arrives. Exact once every CPU has been heard from since open (losses
    /// before a CPU's first message cannot be seen); `overruns` says at
    /// once that some were lost.
    pub lost: u64,
    /// ENOBUFS reports: how many times the buffer overflowed.
    pub overruns: u64,
}

/// A subscription to the process events connector. Dropping it sends
/// PROC_CN_MCAST_IGNORE and closes the socket.
pub struct ProcConnector {
    socket: Socket,
    buf: Vec<u8>,
    nonce: u32,
    max_batch: usize,
    losses: LossCounter,
    overruns: u64,
}

/// CPUs beyond this are not loss-accounted (the kernel's NR_CPUS is lower).
const MAX_TRACKED_CPUS: usize = 8192;

impl ProcConnector {
    /// Opens the socket, joins CN_IDX_PROC, subscribes to every event and
    /// waits for the kernel's ack. Events that arrive before the ack are
    /// not reported.
    pub fn open(opts: &ProcConnectorOptions) -> Result<Self, ProcConnectorError> {
        let mut socket = Socket::new(NETLINK_CONNECTOR).map_err(|e| io_error("socket", e))?;
        set_recv_buffer(&socket, opts.recv_buffer_bytes)
            .map_err(|e| io_error("set the receive buffer", e))?;
        socket
            .bind(&SocketAddr::new(0, CN_IDX_PROC))
            .map_err(|e| io_error("bind to group CN_IDX_PROC", e))?;
        static OPENED: AtomicU32 = AtomicU32::new(0);
        let nonce = std::process::id()
            .rotate_left(12)
            .wrapping_add(OPENED.fetch_add(1, Ordering::Relaxed));
        let mut conn = ProcConnector {
            socket,
            buf: vec![0; 64 << 10],
            nonce,
            max_batch: opts.max_batch.max(1),
            losses: LossCounter::default(),
            overruns: 0,
        };
        conn.socket
            .send(&subscription_request(PROC_CN_MCAST_LISTEN, nonce), 0)
            .map_err(|e| io_error("send PROC_CN_MCAST_LISTEN", e))?;
        conn.wait_ack(nonce, "PROC_CN_MCAST_LISTEN", opts.ack_timeout)?;
        Ok(conn)
    }

    /// Reads until the ack of the request sent with `nonce`; events read
    /// meanwhile are dropped.
    fn wait_ack(
        &mut self,
        nonce: u32,
        op: &'static str,
        timeout: Duration,
    ) -> Result<(), ProcConnectorError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.poll(left)? {
                return Err(ProcConnectorError::NoAck(timeout));
            }
            let Some(n) = self.recv()? else { continue };
            for m in parse_messages(&self.buf[..n]) {
                let m = m?;
                self.losses.account(&m);
                if let Message::Ack { ack, err, .. } = m {
                    if ack == nonce.wrapping_add(1) {
                        return match err {
                            0 => Ok(()),
                            e => Err(match io::Error::from_raw_os_error(e as i32) {
                                e if matches!(
                                    e.raw_os_error(),
                                    Some(libc::EPERM | libc::EACCES)
                                ) =>
                                {
                                    ProcConnectorError::PermissionDenied { op }
                                }
                                e => ProcConnectorError::Refused(e),
                            }),
                        };
                    }
                }
            }
        }
    }

    /// Appends the events that are waiting, at most `max_batch`; when none
    /// is, waits up to `timeout` for one. A zero timeout never blocks.
    pub fn read(
        &mut self,
        timeout: Duration,
        out: &mut Vec<ProcEvent>,
    ) -> Result<ReadStats, ProcConnectorError> {
        let (lost0, overruns0, start) = (self.losses.lost, self.overruns, out.len());
        let deadline = Instant::now() + timeout;
        loop {
            while out.len() - start < self.max_batch {
                let Some(n) = self.recv()? else { break };
                for m in parse_messages(&self.buf[..n]) {
                    let m = m?;
                    self.losses.account(&m);
                    if let Message::Event(e) = m {
                        out.push(e);
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if out.len() > start || left.is_zero() || !self.poll(left)? {
                return Ok(ReadStats {
                    events: out.len() - start,
                    lost: self.losses.lost - lost0,
                    overruns: self.overruns - overruns0,
                });
            }
        }
    }

    /// Wait up to `timeout` for a message to read; returns whether one is
    /// there. Nothing is read.
    pub fn wait(&self, timeout: Duration) -> Result<bool, ProcConnectorError> {
        self.poll(timeout)
    }

    /// Messages lost since open (see [`ReadStats::lost`]).
    pub fn lost_total(&self) -> u64 {
        self.losses.lost
    }

    /// ENOBUFS reports since open.
    pub fn overruns_total(&self) -> u64 {
        self.overruns
    }

    /// Changes the receive buffer, e.g. after overruns.
    pub fn set_recv_buffer_bytes(&self, bytes: usize) -> Result<(), ProcConnectorError> {
        set_recv_buffer(&self.socket, bytes).map_err(|e| io_error("set the receive buffer", e))
    }

    /// The receive buffer the kernel granted (it doubles the request for
    /// its bookkeeping and caps it at net.core.rmem_max without
    /// CAP_NET_ADMIN).
    pub fn recv_buffer_bytes(&self) -> io::Result<usize> {
        self.socket.get_rx_buf_sz()
    }

    /// One datagram into `self.buf` without blocking; `None` when there is
    /// none. ENOBUFS is counted and reading goes on: the kernel reports an
    /// overflow once, then hands out what it kept.
    fn recv(&mut self) -> Result<Option<usize>, ProcConnectorError> {
        loop {
            match self.socket.recv(&mut &mut self.buf[..], libc::MSG_DONTWAIT) {
                Ok(n) => return Ok(Some(n.min(self.buf.len()))),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(None),
                    Some(libc::EINTR) => continue,
                    Some(libc::ENOBUFS) => self.overruns += 1,
                    _ => return Err(io_error("recv", e)),
                },
            }
        }
    }

    /// Waits until the socket is readable or `timeout` passes.
    fn poll(&self, timeout: Duration) -> Result<bool, ProcConnectorError> {
        super::poll_readable(self.socket.as_raw_fd(), timeout).map_err(|e| io_error("poll", e))
    }
}

/// Counts lost messages from gaps in the kernel's per-CPU sequence.
#[derive(Debug, Default)]
struct LossCounter {
    /// Next expected `seq` per CPU, `None` until the first message.
    next_seq: Vec<Option<u32>>,
    lost: u64,
}

impl LossCounter {
    fn account(&mut self, m: &Message) {
        let (cpu, seq) = m.cpu_seq();
        let cpu = cpu as usize;
        if cpu >= MAX_TRACKED_CPUS {
            return;
        }
        if self.next_seq.len() <= cpu {
            self.next_seq.resize(cpu + 1, None);
        }
        if let Some(want) = self.next_seq[cpu] {
            let gap = seq.wrapping_sub(want);
            // A message older than the last one seen is not a loss.
            if gap < u32::MAX / 2 {
                self.lost += u64::from(gap);
            } else {
                return;
            }
        }
        self.next_seq[cpu] = Some(seq.wrapping_add(1));
    }
}

fn set_recv_buffer(socket: &Socket, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let set = |opt| {
        // SAFETY: a c_int option value of the right size.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    // SO_RCVBUFFORCE goes past rmem_max but needs CAP_NET_ADMIN.
    set(libc::SO_RCVBUFFORCE).or_else(|_| set(libc::SO_RCVBUF))
}

impl AsRawFd for ProcConnector {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsFd for ProcConnector {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl Drop for ProcConnector {
    fn drop(&mut self) {
        // Best effort, and unconfirmed: the kernel filters the ack of an
        // IGNORE out of the socket that sent it. The socket closes next.
        let _ = self.socket.send(
            &subscription_request(PROC_CN_MCAST_IGNORE, self.nonce.wrapping_add(2)),
            libc::MSG_DONTWAIT,
        );
    }
}

impl std::fmt::Debug for ProcConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcConnector")
            .field("fd", &self.socket.as_raw_fd())
            .field("lost", &self.losses.lost)
            .field("overruns", &self.overruns)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::fixture::{load, num};

    fn events(buf: &[u8]) -> Vec<Message> {
        parse_messages(buf)
            .collect::<Result<_, _>>()
            .expect("parses")
    }

    fn kinds(buf: &[u8]) -> Vec<EventKind> {
        events(buf)
            .into_iter()
            .map(|m| match m {
                Message::Event(e) => e.kind,
                other => panic!("not an event: {other:?}"),
            })
            .collect()
    }

    fn process(pid: i32) -> Task {
        Task { pid, tgid: pid }
    }

    /// Fork by `parent`, then the child's exit with `outcome`: the events
    /// of a child that ran no other program.
    fn assert_fork_exit(name: &str, outcome: ExitOutcome, coredump: bool) {
        let (buf, facts) = load(name);
        let (parent, child) = (
            process(num(&facts, "parent")),
            process(num(&facts, "child")),
        );
        let mut want = vec![EventKind::Fork { parent, child }];
        if coredump {
            want.push(EventKind::Coredump {
                task: child,
                parent: Some(parent),
            });
        }
        let got = kinds(&buf);
        assert_eq!(got[..want.len()], want[..], "{name}");
        let EventKind::Exit {
            task,
            status,
            exit_signal,
            parent: exit_parent,
        } = got[want.len()]
        else {
            panic!("{name}: no exit: {got:?}");
        };
        assert_eq!(task, child);
        assert_eq!(status.outcome(), outcome, "{name}: status {:#x}", status.0);
        assert_eq!(
            exit_signal,
            libc::SIGCHLD,
            "exit_signal is the parent's SIGCHLD"
        );
        assert_eq!(exit_parent, Some(parent));
        assert_eq!(got.len(), want.len() + 1);
    }

    #[test]
    fn exit_code() {
        assert_fork_exit("proc_exit_code3.bin", ExitOutcome::Exited(3), false);
    }

    #[test]
    fn killed_by_sigkill() {
        let outcome = ExitOutcome::Signaled {
            signal: libc::SIGKILL,
            core_dumped: false,
        };
        assert_fork_exit("proc_killed_sigkill.bin", outcome, false);
    }

    #[test]
    fn killed_by_sigsegv_sends_a_coredump_event_even_without_a_core() {
        let outcome = ExitOutcome::Signaled {
            signal: libc::SIGSEGV,
            core_dumped: false,
        };
        assert_fork_exit("proc_killed_sigsegv.bin", outcome, true);
    }

    #[test]
    fn killed_by_sigsegv_with_a_core_dump() {
        let outcome = ExitOutcome::Signaled {
            signal: libc::SIGSEGV,
            core_dumped: true,
        };
        assert_fork_exit("proc_killed_sigsegv_core.bin", outcome, true);
    }

    #[test]
    fn fork_exec_exit() {
        let (buf, facts) = load("proc_fork_exec_true.bin");
        let (parent, child) = (
            process(num(&facts, "parent")),
            process(num(&facts, "child")),
        );
        let got = kinds(&buf);
        assert_eq!(got[0], EventKind::Fork { parent, child });
        assert_eq!(got[1], EventKind::Exec { task: child });
        assert!(matches!(
            got[2],
            EventKind::Exit { task, status, .. } if task == child && status.outcome() == ExitOutcome::Exited(0)
        ));
    }

    #[test]
    fn thread_events_are_recognisable() {
        let (buf, facts) = load("proc_thread_start_end.bin");
        let (tgid, tid): (i32, i32) = (num(&facts, "tgid"), num(&facts, "thread"));
        let thread = Task { pid: tid, tgid };
        let got = kinds(&buf);
        let EventKind::Fork { parent, child } = got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(child, thread);
        assert!(child.is_thread());
        // A new thread's parent is its process's parent, not the process.
        assert_ne!(parent.tgid, tgid);
        assert!(!parent.is_thread());
        assert_eq!(
            got[1],
            EventKind::Exit {
                task: thread,
                status: WaitStatus(0),
                exit_signal: -1,
                parent: None,
            }
        );
    }

    #[test]
    fn killed_threaded_process_leader_exit_may_come_first() {
        let (buf, facts) = load("proc_threaded_killed_sigkill.bin");
        let pid: i32 = num(&facts, "child");
        let threads: usize = num(&facts, "threads");
        let got = kinds(&buf);
        let forks = got
            .iter()
            .filter(|k| matches!(k, EventKind::Fork { .. }))
            .count();
        assert_eq!(forks, threads, "the process and its threads");
        let exits: Vec<(Task, ExitOutcome)> = got
            .iter()
            .filter_map(|k| match *k {
                EventKind::Exit { task, status, .. } => Some((task, status.outcome())),
                _ => None,
            })
            .collect();
        assert_eq!(exits.len(), threads);
        let sigkill = ExitOutcome::Signaled {
            signal: libc::SIGKILL,
            core_dumped: false,
        };
        assert!(exits.iter().all(|&(t, o)| t.tgid == pid && o == sigkill));
        let leaders: Vec<_> = exits.iter().filter(|(t, _)| !t.is_thread()).collect();
        assert_eq!(leaders.len(), 1, "one process exit: {exits:?}");
        // As captured on 6.18: the leader's exit is reported first.
        assert_eq!(exits[0].0, process(pid));
    }

    #[test]
    fn subscription_ack() {
        let (buf, facts) = load("proc_subscribe_ack.bin");
        let got = events(&buf);
        assert!(
            matches!(got[..], [Message::Ack { ack, err: 0, .. }] if ack == num::<u32>(&facts, "ack")),
            "{got:?}"
        );
    }

    #[test]
    fn wait_status_decoding() {
        let table = [
            (0x0000, ExitOutcome::Exited(0)),
            (0x0300, ExitOutcome::Exited(3)),
            (0xff00, ExitOutcome::Exited(255)),
            (
                0x0009,
                ExitOutcome::Signaled {
                    signal: 9,
                    core_dumped: false,
                },
            ),
            (
                0x0006,
                ExitOutcome::Signaled {
                    signal: 6,
                    core_dumped: false,
                },
            ),
            (
                0x0086,
                ExitOutcome::Signaled {
                    signal: 6,
                    core_dumped: true,
                },
            ),
            (
                0x008b,
                ExitOutcome::Signaled {
                    signal: 11,
                    core_dumped: true,
                },
            ),
        ];
        for (raw, want) in table {
            assert_eq!(WaitStatus(raw).outcome(), want, "{raw:#x}");
        }
    }

    #[test]
    fn concatenated_datagrams_parse_in_order() {
        let (a, _) = load("proc_exit_code3.bin");
        let (b, _) = load("proc_killed_sigkill.bin");
        let both = [a.clone(), b.clone()].concat();
        assert_eq!(events(&both), [events(&a), events(&b)].concat());
    }

    #[test]
    fn other_messages_are_skipped() {
        let (real, _) = load("proc_exit_code3.bin");
        let one = &real[..76];
        // Another connector (idx 2), then an NLMSG_NOOP, then a real event.
        let mut other_idx = one.to_vec();
        other_idx[16..20].copy_from_slice(&2u32.to_ne_bytes());
        let mut noop = one.to_vec();
        noop[4..6].copy_from_slice(&1u16.to_ne_bytes());
        let buf = [other_idx, noop, one.to_vec()].concat();
        assert_eq!(events(&buf), events(one));
    }

    #[test]
    fn damaged_input_is_an_error_not_a_panic() {
        let (real, _) = load("proc_exit_code3.bin");
        let exit = &real[76..152];
        // The buffer ends inside the message.
        let err = parse_messages(&exit[..60]).next().unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                ParseError::BadLength {
                    offset: 0,
                    len: 76,
                    total: 60
                }
            ),
            "{err}"
        );
        // The message says its proc_event is 20 bytes: too short for an exit.
        let mut short = exit.to_vec();
        short[32..34].copy_from_slice(&20u16.to_ne_bytes());
        let err = parse_messages(&short).next().unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                ParseError::Truncated {
                    need: 40,
                    len: 20,
                    ..
                }
            ),
            "{err}"
        );
        // An error ends the iteration.
        let mut it = parse_messages(&short);
        it.next();
        assert!(it.next().is_none());
    }

    #[test]
    fn losses_are_gaps_in_the_per_cpu_sequence() {
        let ack = |cpu, seq| Message::Ack {
            cpu,
            seq,
            ack: 0,
            err: 0,
        };
        let mut c = LossCounter::default();
        for m in [ack(0, 10), ack(1, 500), ack(0, 11), ack(1, 501), ack(0, 12)] {
            c.account(&m);
        }
        assert_eq!(c.lost, 0, "contiguous per CPU, interleaved across CPUs");
        c.account(&ack(0, 20)); // 13..=19 missing
        assert_eq!(c.lost, 7);
        c.account(&ack(0, 15)); // older than the last seen: not a loss
        assert_eq!(c.lost, 7);
        c.account(&ack(0, 21));
        assert_eq!(c.lost, 7);
        c.account(&ack(2, u32::MAX));
        c.account(&ack(2, 1)); // wraps: 0 missing
        assert_eq!(c.lost, 8);
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(buf in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            for m in parse_messages(&buf) {
                let _ = m;
            }
        }

        #[test]
        fn parser_never_panics_on_damaged_real_messages(
            cut in 0usize..152,
            flip in 0usize..152,
            byte in proptest::prelude::any::<u8>(),
        ) {
            let (mut buf, _) = load("proc_exit_code3.bin");
            buf[flip] = byte;
            buf.truncate(cut);
            for m in parse_messages(&buf) {
                let _ = m;
            }
        }
    }
}
