//! The one bounded timeline every source writes its events to, and the
//! rules and outputs read: a worker's exit, an OOM kill and an nginx 502
//! that happened within a second of each other sit side by side here.
//!
//! Events are kept in arrival order, each with a sequence number, so a
//! reader can ask for what arrived since it last looked. Their times come
//! from several clocks (a kmsg timestamp, a log line's whole second, a
//! pool cycle), so arrival order is only roughly time order: a window
//! lookup goes through an index by (time, sequence number), so it costs a
//! logarithm of the events held plus the events it returns, not a pass over
//! all of them. Smaller indexes serve the rules' own questions: the events
//! around a moment leaving out the requests, a master's last change, a
//! worker's boot.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::upstream_failure::{Phase, Reason};

/// Events kept: at a storm of 1,000 failed requests a second, the last
/// eight seconds, which is what a join of a 502 with its cause needs.
pub const TIMELINE_CAP: usize = 8192;

/// A request as nginx logged it, cut down to what may be shown to an
/// operator: the method and the path, without the query string, the path
/// cut at 128 bytes (`nginx::access::parse_request` does the cutting).
/// Never a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Arc<str>,
    pub path: Arc<str>,
}

impl Request {
    pub fn new(method: &[u8], path: &[u8]) -> Request {
        Request {
            method: String::from_utf8_lossy(method).into(),
            path: String::from_utf8_lossy(path).into(),
        }
    }
}

/// Which rule tied an OOM victim to its pool (see `kernel::kills`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillRule {
    /// The pid is a live process of the pool that started before the kill.
    Live,
    /// The pid is a process of the pool that exited just after the kill.
    Exited,
    /// The victim's memory cgroup is the pool's, and no other pool's.
    Cgroup,
    /// None of the above: counted under `pool="-"`.
    Unknown,
}

/// A process of a pool, as the pool source saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    /// Wall-clock start time: with the pid, the process's identity.
    pub started: SystemTime,
    /// `None` for a master, or a worker beyond `max_slots`.
    pub slot: Option<usize>,
}

/// How a process ended: from the proc connector's wait status, or from
/// the app server's log when the master logged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(u8),
    /// Killed by this signal.
    Signaled(i32),
}

/// A worker that left its pool, as the pool source saw it go.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerExit {
    pub process: Process,
    /// `None` when only /proc polling saw it go.
    pub status: Option<ExitStatus>,
    /// Its memory at the last sample before it went.
    pub rss_bytes: Option<u64>,
    pub pss_bytes: Option<u64>,
}

/// Why a worker ended: the `reason` label of
/// `badgateway_worker_exits_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExitReason {
    MaxRequests,
    OomKilled,
    Timeout,
    Signal,
    ExitError,
    Reload,
    Shutdown,
    Unknown,
}

impl ExitReason {
    pub const ALL: &'static [ExitReason] = &[
        ExitReason::MaxRequests,
        ExitReason::OomKilled,
        ExitReason::Timeout,
        ExitReason::Signal,
        ExitReason::ExitError,
        ExitReason::Reload,
        ExitReason::Shutdown,
        ExitReason::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::MaxRequests => "max_requests",
            ExitReason::OomKilled => "oom_killed",
            ExitReason::Timeout => "timeout",
            ExitReason::Signal => "signal",
            ExitReason::ExitError => "exit_error",
            ExitReason::Reload => "reload",
            ExitReason::Shutdown => "shutdown",
            ExitReason::Unknown => "unknown",
        }
    }
}

/// A worker exit with the reason the rules gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerEnd {
    pub exit: WorkerExit,
    pub reason: ExitReason,
    /// From its start to its exit.
    pub lifetime: std::time::Duration,
}

/// What an app server's own log (or its control socket) said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppLog {
    /// A worker booted.
    WorkerBooted { pid: i32 },
    /// The master found the worker silent past its timeout and is killing
    /// it.
    WorkerTimeout { pid: i32 },
    /// The master reaped a worker killed by this signal.
    WorkerSignaled { pid: i32, signal: i32 },
    /// The master reaped a worker that exited with this code.
    WorkerExited { pid: i32, code: u8 },
    /// The worker reached its request limit and leaves after this request.
    Autorestarting { pid: i32 },
    /// The server caught a fatal signal in the worker and is ending it
    /// (uWSGI's `got Segmentation Fault`, after which the worker exits
    /// with code 1, not by the signal).
    WorkerCrashed { pid: i32, signal: i32 },
    /// The master was told to reload (SIGHUP): new workers, old ones
    /// stopped.
    Reload,
    /// The master is shutting down with its workers.
    Shutdown,
}

/// An OOM kill, as the kernel logged it and as it was attributed.
#[derive(Debug, Clone, PartialEq)]
pub struct OomKill {
    /// The kmsg record's sequence number.
    pub seq: u64,
    pub pid: i32,
    pub comm: Box<str>,
    pub slot: Option<usize>,
    /// The victim's memory cgroup (5.0+ kernels log it).
    pub cgroup: Option<Box<str>>,
    /// A memory-cgroup OOM rather than a global one.
    pub memcg: bool,
    pub rule: KillRule,
    pub anon_bytes: u64,
    pub file_bytes: u64,
    /// Absent from kernels before 4.7's format.
    pub shmem_bytes: Option<u64>,
}

/// An upstream failure from nginx's error log.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamFailure {
    /// The configured nginx it came from.
    pub log: Arc<str>,
    pub reason: Reason,
    pub phase: Phase,
    /// The status nginx records for the attempt (502, 504), or `None` for
    /// a failure after the header was sent.
    pub status: Option<u16>,
    /// The upstream server, spelled as `$upstream_addr` spells it.
    pub upstream: Option<Box<str>>,
    /// nginx's connection number (`*56`).
    pub conn: Option<u64>,
    pub request: Option<Request>,
    /// The errno nginx logged with it (`(24: Too many open files)`).
    pub errno: Option<i32>,
}

/// A 5xx that nginx answered a client with, from the access log.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerError {
    pub log: Arc<str>,
    pub status: u16,
    /// The upstream of the last attempt; `None` when nginx answered
    /// without one.
    pub upstream: Option<Arc<str>>,
    /// `$connection`, when the format has it.
    pub conn: Option<u64>,
    pub request: Option<Request>,
    /// The last attempt's 5xx came from the backend itself (a response
    /// header arrived, per `$upstream_header_time`), not from nginx.
    pub backend_sent: bool,
}

/// Why a client got a 502 or 504: the `cause` label of
/// `badgateway_failed_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureCause {
    WorkerOomKilled,
    WorkerTimeout,
    WorkerCrashed,
    WorkerRecycled,
    PoolDown,
    PoolStoppedAfterOom,
    BacklogFull,
    FdExhausted,
    UpstreamTimeout,
    UpstreamClosed,
    UpstreamSent5xx,
    Other,
}

impl FailureCause {
    pub const ALL: &'static [FailureCause] = &[
        FailureCause::WorkerOomKilled,
        FailureCause::WorkerTimeout,
        FailureCause::WorkerCrashed,
        FailureCause::WorkerRecycled,
        FailureCause::PoolDown,
        FailureCause::PoolStoppedAfterOom,
        FailureCause::BacklogFull,
        FailureCause::FdExhausted,
        FailureCause::UpstreamTimeout,
        FailureCause::UpstreamClosed,
        FailureCause::UpstreamSent5xx,
        FailureCause::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureCause::WorkerOomKilled => "worker_oom_killed",
            FailureCause::WorkerTimeout => "worker_timeout",
            FailureCause::WorkerCrashed => "worker_crashed",
            FailureCause::WorkerRecycled => "worker_recycled",
            FailureCause::PoolDown => "pool_down",
            FailureCause::PoolStoppedAfterOom => "pool_stopped_after_oom",
            FailureCause::BacklogFull => "backlog_full",
            FailureCause::FdExhausted => "fd_exhausted",
            FailureCause::UpstreamTimeout => "upstream_timeout",
            FailureCause::UpstreamClosed => "upstream_closed",
            FailureCause::UpstreamSent5xx => "upstream_sent_5xx",
            FailureCause::Other => "other",
        }
    }
}

/// The worker whose end caused a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadWorker {
    pub pid: i32,
    pub slot: Option<usize>,
    pub rss_bytes: Option<u64>,
    pub pss_bytes: Option<u64>,
}

/// A client-facing 502 or 504 with the cause the rules gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedRequest {
    pub error: ServerError,
    pub cause: FailureCause,
    pub worker: Option<DeadWorker>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    WorkerSpawn(Process),
    WorkerExit(WorkerExit),
    WorkerEnd(WorkerEnd),
    AppLog(AppLog),
    MasterStart(Process),
    MasterExit(Process),
    OomKill(OomKill),
    UpstreamFailure(UpstreamFailure),
    ServerError(ServerError),
    FailedRequest(FailedRequest),
}

impl EventKind {
    /// A short name for logs and pages.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::WorkerSpawn(_) => "worker_spawn",
            EventKind::WorkerExit(_) => "worker_exit",
            EventKind::WorkerEnd(_) => "worker_end",
            EventKind::AppLog(_) => "app_log",
            EventKind::MasterStart(_) => "master_start",
            EventKind::MasterExit(_) => "master_exit",
            EventKind::OomKill(_) => "oom_kill",
            EventKind::UpstreamFailure(_) => "upstream_failure",
            EventKind::ServerError(_) => "server_error",
            EventKind::FailedRequest(_) => "failed_request",
        }
    }
}

impl EventKind {
    /// A request nginx answered: its access line, or the cause judged for
    /// it. A storm of 502s fills the timeline with these; the rules look
    /// around a request for everything else.
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            EventKind::ServerError(_) | EventKind::FailedRequest(_)
        )
    }

    /// A master started or exited, or its log said it is shutting down.
    pub fn is_master_change(&self) -> bool {
        matches!(
            self,
            EventKind::MasterExit(_)
                | EventKind::MasterStart(_)
                | EventKind::AppLog(AppLog::Shutdown)
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Assigned on push: later arrivals have higher numbers.
    pub seq: u64,
    /// When it happened, by the clock of the evidence (see each source).
    pub at: SystemTime,
    /// The pool it belongs to, when known.
    pub pool: Option<Arc<str>>,
    pub kind: EventKind,
}

/// A bounded list of events in arrival order, indexed by time: the rules
/// ask for the events around a moment thousands of times a second in a
/// burst of 502s, and the sources deliver out of time order (a kernel log
/// read after an nginx line, a whole log replayed after another).
#[derive(Debug)]
pub struct Timeline {
    events: VecDeque<Event>,
    /// (time, seq) of every event held.
    by_time: BTreeSet<(SystemTime, u64)>,
    /// (time, seq) of the events that change a master's state (its start,
    /// its exit, its log saying it shuts down): the rules ask for the last
    /// one before a failure, which a walk of the whole timeline would find
    /// only after every worker's and request's event.
    master_changes: BTreeSet<(SystemTime, u64)>,
    /// (time, seq) of the events that are not requests (see
    /// [`EventKind::is_request`]).
    evidence: BTreeSet<(SystemTime, u64)>,
    /// (pid, seq) of the app servers' worker-boot lines.
    boots: BTreeSet<(i32, u64)>,
    cap: usize,
    next_seq: u64,
    dropped: u64,
}

impl Timeline {
    pub fn new(cap: usize) -> Timeline {
        Timeline {
            events: VecDeque::with_capacity(cap.min(1024)),
            by_time: BTreeSet::new(),
            master_changes: BTreeSet::new(),
            evidence: BTreeSet::new(),
            boots: BTreeSet::new(),
            cap: cap.max(1),
            next_seq: 1,
            dropped: 0,
        }
    }

    /// Add an event; the oldest arrival is dropped (and counted) when full.
    pub fn push(&mut self, at: SystemTime, pool: Option<Arc<str>>, kind: EventKind) -> u64 {
        if self.events.len() == self.cap {
            if let Some(old) = self.events.pop_front() {
                let key = (old.at, old.seq);
                self.by_time.remove(&key);
                if old.kind.is_master_change() {
                    self.master_changes.remove(&key);
                }
                if !old.kind.is_request() {
                    self.evidence.remove(&key);
                }
                if let Some(pid) = booted_pid(&old.kind) {
                    self.boots.remove(&(pid, old.seq));
                }
            }
            self.dropped += 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_time.insert((at, seq));
        if kind.is_master_change() {
            self.master_changes.insert((at, seq));
        }
        if !kind.is_request() {
            self.evidence.insert((at, seq));
        }
        if let Some(pid) = booted_pid(&kind) {
            self.boots.insert((pid, seq));
        }
        self.events.push_back(Event {
            seq,
            at,
            pool,
            kind,
        });
        seq
    }

    /// Events whose time lies in `[from, to]`, in time order (arrival
    /// order among equal times).
    pub fn window(
        &self,
        from: SystemTime,
        to: SystemTime,
    ) -> impl DoubleEndedIterator<Item = &Event> {
        let range = (from <= to).then(|| self.by_time.range((from, 0)..=(to, u64::MAX)));
        range.into_iter().flatten().map(|(_, seq)| self.get(*seq))
    }

    /// Events at or before `to`, latest first.
    pub fn until_rev(&self, to: SystemTime) -> impl Iterator<Item = &Event> {
        self.by_time
            .range(..=(to, u64::MAX))
            .rev()
            .map(|(_, seq)| self.get(*seq))
    }

    /// The events that change a master's state (see
    /// [`EventKind::is_master_change`]) at or before `to`, latest first.
    pub fn master_changes_until_rev(&self, to: SystemTime) -> impl Iterator<Item = &Event> {
        self.master_changes
            .range(..=(to, u64::MAX))
            .rev()
            .map(|(_, seq)| self.get(*seq))
    }

    /// The events whose time lies in `[from, to]` that are not requests
    /// (see [`EventKind::is_request`]), in time order.
    pub fn evidence(
        &self,
        from: SystemTime,
        to: SystemTime,
    ) -> impl DoubleEndedIterator<Item = &Event> {
        let range = (from <= to).then(|| self.evidence.range((from, 0)..=(to, u64::MAX)));
        range.into_iter().flatten().map(|(_, seq)| self.get(*seq))
    }

    /// The app servers' lines saying worker `pid` booted, in arrival order
    /// (of any pool: a pid may have been reused).
    pub fn boots(&self, pid: i32) -> impl DoubleEndedIterator<Item = &Event> {
        self.boots
            .range((pid, 0)..=(pid, u64::MAX))
            .map(|(_, seq)| self.get(*seq))
    }

    /// The event numbered `seq`, which the index says is held.
    fn get(&self, seq: u64) -> &Event {
        let first = self.events.front().map_or(0, |e| e.seq);
        &self.events[(seq - first) as usize]
    }

    /// Events of `pool` whose time lies in `[from, to]`.
    pub fn window_pool<'a>(
        &'a self,
        pool: &'a str,
        from: SystemTime,
        to: SystemTime,
    ) -> impl Iterator<Item = &'a Event> {
        self.window(from, to)
            .filter(move |e| e.pool.as_deref() == Some(pool))
    }

    /// Events that arrived after the one numbered `seq`.
    pub fn since(&self, seq: u64) -> impl Iterator<Item = &Event> {
        let first = self.events.front().map_or(self.next_seq, |e| e.seq);
        let skip = (seq.saturating_add(1).saturating_sub(first) as usize).min(self.events.len());
        self.events.range(skip..)
    }

    /// The number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Event> {
        self.events.iter()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Events dropped because the timeline was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// The worker a boot line is about.
fn booted_pid(kind: &EventKind) -> Option<i32> {
    match kind {
        EventKind::AppLog(AppLog::WorkerBooted { pid }) => Some(*pid),
        _ => None,
    }
}

/// The timeline shared by every source's thread.
#[derive(Debug)]
pub struct SharedTimeline(Mutex<Timeline>);

impl SharedTimeline {
    pub fn new(cap: usize) -> SharedTimeline {
        SharedTimeline(Mutex::new(Timeline::new(cap)))
    }

    pub fn push(&self, at: SystemTime, pool: Option<Arc<str>>, kind: EventKind) -> u64 {
        super::lock(&self.0).push(at, pool, kind)
    }

    /// Push each event, in order, under one lock: for a source or rule that
    /// has several at once.
    pub fn push_all(
        &self,
        events: impl IntoIterator<Item = (SystemTime, Option<Arc<str>>, EventKind)>,
    ) {
        let mut tl = super::lock(&self.0);
        for (at, pool, kind) in events {
            tl.push(at, pool, kind);
        }
    }

    /// Read the timeline under its lock.
    pub fn read<R>(&self, f: impl FnOnce(&Timeline) -> R) -> R {
        f(&super::lock(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn spawn(pid: i32) -> EventKind {
        EventKind::WorkerSpawn(Process {
            pid,
            started: t(0),
            slot: Some(0),
        })
    }

    /// Pushed together, events keep their order, and the cap holds.
    #[test]
    fn push_all_is_pushes_in_order() {
        let shared = SharedTimeline::new(3);
        shared.push_all((0..5).map(|i| (t(10 - i), None, spawn(i as i32))));
        shared.read(|tl| {
            let pids: Vec<i32> = tl
                .iter()
                .map(|e| match &e.kind {
                    EventKind::WorkerSpawn(p) => p.pid,
                    _ => unreachable!(),
                })
                .collect();
            assert_eq!(pids, [2, 3, 4]);
            assert_eq!(tl.dropped(), 2);
        });
    }

    #[test]
    fn bounded_with_drops_counted() {
        let mut tl = Timeline::new(3);
        for i in 0..10 {
            tl.push(t(i), None, spawn(i as i32));
        }
        assert_eq!(tl.len(), 3);
        assert_eq!(tl.dropped(), 7);
        let seqs: Vec<u64> = tl.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [8, 9, 10]);
    }

    #[test]
    fn window_checks_times_not_arrival_order() {
        let mut tl = Timeline::new(16);
        let api: Arc<str> = Arc::from("api");
        // A kmsg kill read after a later nginx line.
        tl.push(t(105), Some(api.clone()), spawn(1));
        tl.push(t(101), Some(api.clone()), spawn(2));
        tl.push(t(103), None, spawn(3));
        tl.push(t(110), Some(api), spawn(4));
        let pids = |it: &mut dyn Iterator<Item = &Event>| -> Vec<i32> {
            it.map(|e| match &e.kind {
                EventKind::WorkerSpawn(p) => p.pid,
                _ => unreachable!(),
            })
            .collect()
        };
        assert_eq!(pids(&mut tl.window(t(101), t(105))), [2, 3, 1]);
        assert_eq!(pids(&mut tl.window(t(105), t(101))), Vec::<i32>::new());
        assert_eq!(pids(&mut tl.until_rev(t(104))), [3, 2]);
        assert_eq!(pids(&mut tl.window_pool("api", t(100), t(104))), [2]);
        assert_eq!(
            pids(&mut tl.window_pool("web", t(0), t(999))),
            Vec::<i32>::new()
        );
    }

    #[test]
    fn since_a_sequence_number_survives_drops() {
        let mut tl = Timeline::new(4);
        for i in 0..6 {
            tl.push(t(i), None, spawn(i as i32));
        }
        // Held: 3..=6.
        assert_eq!(tl.since(4).map(|e| e.seq).collect::<Vec<_>>(), [5, 6]);
        assert_eq!(tl.since(0).map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5, 6]);
        assert_eq!(tl.since(6).count(), 0);
        assert_eq!(tl.next_seq(), 7);
        // The time index forgets what was dropped.
        assert_eq!(
            tl.window(t(0), t(9)).map(|e| e.seq).collect::<Vec<_>>(),
            [3, 4, 5, 6]
        );
    }

    #[test]
    fn evidence_leaves_out_requests_and_boots_are_found_by_pid() {
        let mut tl = Timeline::new(4);
        let request = || {
            EventKind::ServerError(ServerError {
                log: Arc::from("edge"),
                status: 502,
                upstream: None,
                conn: None,
                request: None,
                backend_sent: false,
            })
        };
        let boot = |pid| EventKind::AppLog(AppLog::WorkerBooted { pid });
        tl.push(t(1), None, boot(7));
        tl.push(t(2), None, request());
        tl.push(t(3), None, spawn(1));
        tl.push(t(4), None, boot(8));
        let at = |it: &mut dyn Iterator<Item = &Event>| it.map(|e| e.at).collect::<Vec<_>>();
        assert_eq!(at(&mut tl.evidence(t(0), t(9))), [t(1), t(3), t(4)]);
        assert_eq!(at(&mut tl.boots(7)), [t(1)]);
        assert_eq!(at(&mut tl.boots(8)), [t(4)]);
        // Dropped: the indexes forget it.
        tl.push(t(5), None, request());
        assert_eq!(at(&mut tl.evidence(t(0), t(9))), [t(3), t(4)]);
        assert_eq!(tl.boots(7).count(), 0);
        assert_eq!(tl.window(t(0), t(9)).count(), 4);
    }
}
