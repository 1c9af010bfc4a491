//! Layer 4: the rules, pure tables over a window of the timeline, and the
//! judge that applies them as events arrive.
//!
//! - [`exit_reason`]: why each worker ended;
//! - [`failure_cause`]: why each client got a 502 or 504.
//!
//! The judge reads what arrived on the timeline since it last looked. An
//! exit waits [`JudgeOptions::settle`] for its late evidence (the master's
//! reap line, the master's own exit), is given its reason, counted, and put
//! back on the timeline as a [`WorkerEnd`]. A 502 or 504 waits
//! [`JudgeOptions::failure_wait`] from its line's own time when that is
//! exact (its evidence is nearly always there before nginx writes the
//! access line, and the lag of reading it counts toward the wait), is
//! given its cause, counted, and put back as a [`FailedRequest`]. A cause
//! that would have been another with evidence that came later is logged,
//! not counted again.

pub mod exit_reason;
pub mod failure_cause;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::kernel::NO_POOL;
use crate::state::source::pace;
use crate::state::timeline::{
    DeadWorker, EventKind, ExitReason, FailedRequest, FailureCause, ServerError, WorkerEnd,
    WorkerExit,
};
use crate::state::{PoolIndex, Published, Sinks, Source, Stepped};

/// Exits judged, by pool and reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExitCounts {
    pub by_pool: BTreeMap<String, BTreeMap<ExitReason, u64>>,
}

/// Failed requests judged, by pool (or `-`), status and cause.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailureCounts {
    pub by_pool: BTreeMap<String, BTreeMap<(u16, FailureCause), u64>>,
}

/// The statuses whose causes are looked for.
pub const FAILED_STATUSES: [u16; 2] = [502, 504];

#[derive(Debug, Clone, Copy)]
pub struct JudgeOptions {
    /// How long an exit waits for its late evidence before it is judged.
    pub settle: Duration,
    pub windows: exit_reason::Windows,
    /// How long a 502 or 504 waits for late evidence before it is judged.
    pub failure_wait: Duration,
    pub failure_windows: failure_cause::Windows,
    /// When a request judged `other` is looked at again for evidence that
    /// came late (which is logged, never counted).
    pub recheck_after: Duration,
    /// Exits waiting at most; past it the oldest is judged at once.
    pub max_pending: usize,
    pub interval: Duration,
}

impl Default for JudgeOptions {
    fn default() -> Self {
        JudgeOptions {
            settle: Duration::from_millis(1500),
            windows: exit_reason::Windows::default(),
            failure_wait: Duration::from_millis(300),
            failure_windows: failure_cause::Windows::default(),
            recheck_after: Duration::from_secs(5),
            max_pending: 4096,
            interval: Duration::from_millis(100),
        }
    }
}

struct Pending {
    arrived: Instant,
    at: SystemTime,
    pool: Arc<str>,
    exit: WorkerExit,
}

struct PendingFailure {
    /// When it is judged: [`JudgeOptions::failure_wait`] after the line's
    /// own time where that time is exact (`$msec`), as nginx's log is read
    /// with a lag that already gave the evidence time to come; else that
    /// long after it was read.
    ready: Instant,
    at: SystemTime,
    pool: Option<Arc<str>>,
    error: ServerError,
}

/// Error lines joined by upstream and time, kept so that each explains one
/// request.
const CLAIMED_CAP: usize = 4096;
/// Requests judged `other`, kept to look at again.
const RECHECK_CAP: usize = 256;

pub struct Judge {
    opts: JudgeOptions,
    sinks: Sinks,
    pools: Arc<Published<PoolIndex>>,
    /// The last timeline event read.
    cursor: u64,
    pending: VecDeque<Pending>,
    exits: ExitCounts,
    out: Arc<Published<ExitCounts>>,
    pending_failures: VecDeque<PendingFailure>,
    claimed: BTreeSet<u64>,
    recheck: VecDeque<(Instant, PendingFailure)>,
    failures: FailureCounts,
    failures_out: Arc<Published<FailureCounts>>,
}

impl Judge {
    pub fn new(opts: JudgeOptions, sinks: Sinks, pools: Arc<Published<PoolIndex>>) -> Judge {
        Judge {
            opts,
            sinks,
            pools,
            cursor: 0,
            pending: VecDeque::new(),
            exits: ExitCounts::default(),
            out: Published::new(ExitCounts::default()),
            pending_failures: VecDeque::new(),
            claimed: BTreeSet::new(),
            recheck: VecDeque::new(),
            failures: FailureCounts::default(),
            failures_out: Published::new(FailureCounts::default()),
        }
    }

    pub fn exits(&self) -> Arc<Published<ExitCounts>> {
        self.out.clone()
    }

    pub fn failures(&self) -> Arc<Published<FailureCounts>> {
        self.failures_out.clone()
    }

    /// Read the new events, and judge the exits that have settled by
    /// `now`. Returns whether anything was counted.
    pub fn step(&mut self, now: Instant) -> bool {
        let wall = SystemTime::now();
        let wait = self.opts.failure_wait;
        let ready = |at: SystemTime| {
            now + if failure_cause::at_whole_second(at) {
                wait
            } else {
                (at + wait)
                    .duration_since(wall)
                    .unwrap_or_default()
                    .min(wait)
            }
        };
        let mut new = Vec::new();
        let mut new_failures = Vec::new();
        self.cursor = self.sinks.timeline.read(|tl| {
            for e in tl.since(self.cursor) {
                match (&e.kind, &e.pool) {
                    (EventKind::WorkerExit(x), Some(pool)) => new.push(Pending {
                        arrived: now,
                        at: e.at,
                        pool: pool.clone(),
                        exit: x.clone(),
                    }),
                    (EventKind::ServerError(err), pool)
                        if FAILED_STATUSES.contains(&err.status) =>
                    {
                        new_failures.push(PendingFailure {
                            ready: ready(e.at),
                            at: e.at,
                            pool: pool.clone(),
                            error: err.clone(),
                        })
                    }
                    _ => {}
                }
            }
            tl.next_seq() - 1
        });
        let mut changed = false;
        for p in new {
            if self.pending.len() == self.opts.max_pending {
                let oldest = self.pending.pop_front().expect("full");
                self.judge(oldest);
                changed = true;
            }
            self.pending.push_back(p);
        }
        while self
            .pending
            .front()
            .is_some_and(|p| now.duration_since(p.arrived) >= self.opts.settle)
        {
            let p = self.pending.pop_front().expect("just seen");
            self.judge(p);
            changed = true;
        }
        if changed {
            self.out.publish(self.exits.clone());
        }
        let mut failed = false;
        let mut due = Vec::new();
        for f in new_failures {
            if self.pending_failures.len() == self.opts.max_pending {
                due.push(self.pending_failures.pop_front().expect("full"));
            }
            self.pending_failures.push_back(f);
        }
        while self
            .pending_failures
            .front()
            .is_some_and(|f| now >= f.ready)
        {
            due.push(self.pending_failures.pop_front().expect("just seen"));
        }
        if !due.is_empty() {
            self.judge_failures(due, now);
            failed = true;
        }
        if failed {
            self.failures_out.publish(self.failures.clone());
        }
        self.recheck_late(now);
        changed || failed
    }

    /// Judge failures in order, on one time-ordered view of the timeline.
    fn judge_failures(&mut self, fs: Vec<PendingFailure>, now: Instant) {
        let pools = self.pools.get();
        let (claimed, windows) = (&mut self.claimed, self.opts.failure_windows);
        let judged: Vec<_> = self.sinks.timeline.read(|tl| {
            let by_time = failure_cause::ByTime::new(tl);
            fs.iter()
                .map(|f| cause_of(&by_time, &pools, f, claimed, windows))
                .collect()
        });
        // The oldest lines go first: sequence numbers only grow.
        while self.claimed.len() > CLAIMED_CAP {
            self.claimed.pop_first();
        }
        for (f, (cause, worker)) in fs.into_iter().zip(judged) {
            let pool = f.pool.as_deref().unwrap_or(NO_POOL).to_string();
            *self
                .failures
                .by_pool
                .entry(pool)
                .or_default()
                .entry((f.error.status, cause))
                .or_default() += 1;
            self.sinks.timeline.push(
                f.at,
                f.pool.clone(),
                EventKind::FailedRequest(FailedRequest {
                    error: f.error.clone(),
                    cause,
                    worker,
                }),
            );
            if cause == FailureCause::Other {
                if self.recheck.len() == RECHECK_CAP {
                    self.recheck.pop_front();
                }
                self.recheck.push_back((now, f));
            }
        }
    }

    /// Requests judged `other` are looked at once more after
    /// `recheck_after`: evidence that came too late is logged.
    fn recheck_late(&mut self, now: Instant) {
        while self
            .recheck
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= self.opts.recheck_after)
        {
            let (_, f) = self.recheck.pop_front().expect("just seen");
            let pools = self.pools.get();
            let mut scratch = self.claimed.clone();
            let windows = self.opts.failure_windows;
            let (cause, _) = self.sinks.timeline.read(|tl| {
                cause_of(
                    &failure_cause::ByTime::new(tl),
                    &pools,
                    &f,
                    &mut scratch,
                    windows,
                )
            });
            if cause != FailureCause::Other {
                tracing::info!(
                    pool = f.pool.as_deref().unwrap_or(NO_POOL),
                    status = f.error.status,
                    late_cause = cause.as_str(),
                    "evidence for a failed request came after it was counted as other; not counted again"
                );
            }
        }
    }

    /// Judge everything still waiting, without waiting: for a one-shot run
    /// over evidence that is all there already.
    pub fn finish(&mut self) {
        let now = Instant::now();
        self.step(now);
        self.step(now + self.opts.settle.max(self.opts.failure_wait));
    }

    fn judge(&mut self, p: Pending) {
        let evidence = self
            .sinks
            .timeline
            .read(|tl| exit_reason::gather(tl, &p.pool, p.at, &p.exit, self.opts.windows));
        let reason = exit_reason::exit_reason(&evidence);
        *self
            .exits
            .by_pool
            .entry(p.pool.to_string())
            .or_default()
            .entry(reason)
            .or_default() += 1;
        tracing::debug!(pool = %p.pool, pid = p.exit.process.pid, reason = reason.as_str(), "worker exit");
        let lifetime =
            p.at.duration_since(p.exit.process.started)
                .unwrap_or_default();
        self.sinks.timeline.push(
            p.at,
            Some(p.pool),
            EventKind::WorkerEnd(WorkerEnd {
                exit: p.exit,
                reason,
                lifetime,
            }),
        );
    }

    /// Run forever on the calling thread.
    pub fn run(mut self) -> ! {
        let sinks = self.sinks.clone();
        crate::state::source::drive(&sinks, &mut self)
    }
}

/// The judge runs as a source does: a step over the new evidence every
/// interval.
impl Source for Judge {
    fn collector(&self) -> &'static str {
        "rules"
    }

    fn step(&mut self, now: Instant) -> Stepped {
        Stepped::cycle(0, self.step(now))
    }

    fn wait(&mut self, started: Instant) {
        pace(self.opts.interval, started);
    }
}

/// The cause of one failure on the evidence there is now, and the worker
/// that ended under it; the error line joined by upstream and time goes
/// into `claimed`.
fn cause_of(
    by_time: &failure_cause::ByTime<'_>,
    pools: &PoolIndex,
    f: &PendingFailure,
    claimed: &mut BTreeSet<u64>,
    windows: failure_cause::Windows,
) -> (FailureCause, Option<DeadWorker>) {
    let master_down_now = f
        .pool
        .as_deref()
        .is_some_and(|p| pools.get(p).is_some_and(|m| m.master.is_none()));
    let (evidence, worker) = failure_cause::gather_in(
        by_time,
        &f.error,
        f.at,
        f.pool.as_deref(),
        master_down_now,
        claimed,
        windows,
    );
    let cause = failure_cause::failure_cause(&evidence);
    let worker = worker.filter(|_| {
        matches!(
            cause,
            FailureCause::WorkerOomKilled
                | FailureCause::WorkerTimeout
                | FailureCause::WorkerCrashed
                | FailureCause::WorkerRecycled
        )
    });
    (cause, worker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::timeline::{AppLog, ExitStatus, Process};

    fn exit(pid: i32, status: Option<ExitStatus>) -> EventKind {
        EventKind::WorkerExit(WorkerExit {
            process: Process {
                pid,
                started: SystemTime::now() - Duration::from_secs(60),
                slot: Some(0),
            },
            status,
            rss_bytes: Some(10 << 20),
            pss_bytes: Some(8 << 20),
        })
    }

    #[test]
    fn exits_wait_for_late_evidence_then_count_once() {
        let sinks = Sinks::new(64);
        let mut j = Judge::new(
            JudgeOptions::default(),
            sinks.clone(),
            Published::new(PoolIndex::default()),
        );
        let api: Option<Arc<str>> = Some(Arc::from("api"));
        let now = SystemTime::now();
        let t0 = Instant::now();
        sinks
            .timeline
            .push(now, api.clone(), exit(7, Some(ExitStatus::Signaled(9))));
        assert!(!j.step(t0), "not settled yet");
        // The master's timeout line arrives after the exit.
        sinks.timeline.push(
            now - Duration::from_secs(1),
            api.clone(),
            EventKind::AppLog(AppLog::WorkerTimeout { pid: 7 }),
        );
        assert!(j.step(t0 + Duration::from_secs(2)));
        assert!(!j.step(t0 + Duration::from_secs(3)), "counted once");
        let counts = j.exits().get();
        assert_eq!(counts.by_pool["api"][&ExitReason::Timeout], 1);
        assert_eq!(counts.by_pool["api"].values().sum::<u64>(), 1);
        let end = sinks.timeline.read(|t| t.iter().last().cloned()).unwrap();
        let EventKind::WorkerEnd(end) = end.kind else {
            panic!("{end:?}")
        };
        assert_eq!(end.reason, ExitReason::Timeout);
        assert_eq!(end.exit.rss_bytes, Some(10 << 20));
        assert!(end.lifetime >= Duration::from_secs(59));
    }

    #[test]
    fn a_full_queue_judges_the_oldest_at_once() {
        let sinks = Sinks::new(64);
        let opts = JudgeOptions {
            max_pending: 2,
            ..JudgeOptions::default()
        };
        let mut j = Judge::new(opts, sinks.clone(), Published::new(PoolIndex::default()));
        let api: Option<Arc<str>> = Some(Arc::from("api"));
        for pid in 1..=3 {
            sinks.timeline.push(
                SystemTime::now(),
                api.clone(),
                exit(pid, Some(ExitStatus::Exited(0))),
            );
        }
        j.step(Instant::now());
        assert_eq!(j.pending.len(), 2);
        j.finish();
        assert_eq!(
            j.exits.by_pool["api"][&ExitReason::MaxRequests],
            3,
            "{:?}",
            j.exits
        );
    }
}

#[cfg(test)]
mod failure_tests {
    use super::*;
    use crate::state::timeline::{
        ExitStatus, KillRule, OomKill, Process, Request, UpstreamFailure,
    };
    use crate::upstream_failure::{Phase, Reason};

    #[test]
    fn a_502_next_to_an_oom_kill_is_counted_once_with_the_dead_worker() {
        let sinks = Sinks::new(64);
        let mut j = Judge::new(
            JudgeOptions::default(),
            sinks.clone(),
            Published::new(PoolIndex::default()),
        );
        let api: Option<Arc<str>> = Some(Arc::from("api"));
        let now = SystemTime::now();
        let t0 = Instant::now();
        let tl = &sinks.timeline;
        tl.push(
            now,
            api.clone(),
            EventKind::OomKill(OomKill {
                seq: 1,
                pid: 42,
                comm: "gunicorn".into(),
                slot: Some(3),
                cgroup: None,
                memcg: true,
                rule: KillRule::Live,
                anon_bytes: 480 << 20,
                file_bytes: 20 << 20,
                shmem_bytes: None,
            }),
        );
        tl.push(
            now,
            api.clone(),
            EventKind::WorkerExit(WorkerExit {
                process: Process {
                    pid: 42,
                    started: now - Duration::from_secs(30),
                    slot: Some(3),
                },
                status: Some(ExitStatus::Signaled(9)),
                rss_bytes: Some(400 << 20),
                pss_bytes: None,
            }),
        );
        let request = Some(Request::new(b"GET", b"/report"));
        tl.push(
            now,
            api.clone(),
            EventKind::UpstreamFailure(UpstreamFailure {
                log: Arc::from("edge"),
                reason: Reason::PrematureClose,
                phase: Phase::ReadHeader,
                status: Some(502),
                upstream: Some("unix:/run/api.sock".into()),
                conn: Some(9),
                request: request.clone(),
                errno: None,
            }),
        );
        tl.push(
            now,
            api.clone(),
            EventKind::ServerError(ServerError {
                log: Arc::from("edge"),
                status: 502,
                upstream: Some("unix:/run/api.sock".into()),
                conn: Some(9),
                request,
                backend_sent: false,
            }),
        );
        assert!(!j.step(t0), "nothing judged before its wait");
        assert!(
            j.failures().get().by_pool.is_empty(),
            "waiting for late evidence"
        );
        j.step(t0 + Duration::from_millis(400));
        j.step(t0 + Duration::from_secs(10));
        let f = j.failures().get();
        assert_eq!(f.by_pool["api"][&(502, FailureCause::WorkerOomKilled)], 1);
        assert_eq!(f.by_pool["api"].values().sum::<u64>(), 1);
        let judged: Vec<FailedRequest> = tl.read(|t| {
            t.iter()
                .filter_map(|e| match &e.kind {
                    EventKind::FailedRequest(r) => Some(r.clone()),
                    _ => None,
                })
                .collect()
        });
        assert_eq!(judged.len(), 1);
        let w = judged[0].worker.unwrap();
        assert_eq!((w.pid, w.slot, w.rss_bytes), (42, Some(3), Some(500 << 20)));
        assert_eq!(
            judged[0].error.request.as_ref().unwrap().path.as_ref(),
            "/report"
        );
    }

    /// A line with `$msec`, read 250 ms after nginx wrote it (the nginx
    /// source's interval): its wait counts from its own time, so it is
    /// judged 50 ms later, not 300. A whole-second line waits the whole
    /// wait after it was read.
    #[test]
    fn the_wait_counts_from_an_exact_line_time() {
        let sinks = Sinks::new(64);
        let mut j = Judge::new(
            JudgeOptions::default(),
            sinks.clone(),
            Published::new(PoolIndex::default()),
        );
        let error = |at| {
            (
                at,
                EventKind::ServerError(ServerError {
                    log: Arc::from("edge"),
                    status: 502,
                    upstream: None,
                    conn: None,
                    request: None,
                    backend_sent: false,
                }),
            )
        };
        let now = SystemTime::now();
        let exact = now - Duration::from_millis(250);
        let exact = if failure_cause::at_whole_second(exact) {
            exact - Duration::from_millis(1)
        } else {
            exact
        };
        let whole = SystemTime::UNIX_EPOCH
            + Duration::from_secs(
                now.duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_secs(),
            );
        let t0 = Instant::now();
        for (at, e) in [error(exact), error(whole)] {
            sinks.timeline.push(at, None, e);
        }
        j.step(t0);
        let counted = |j: &Judge| {
            j.failures()
                .get()
                .by_pool
                .values()
                .flat_map(|m| m.values())
                .sum::<u64>()
        };
        assert_eq!(counted(&j), 0);
        // The exact line is due by 50 ms; the whole-second one is behind it
        // in the queue and due at 300 ms.
        j.step(t0 + Duration::from_millis(100));
        assert_eq!(counted(&j), 1, "the exact line, 100 ms after it was read");
        j.step(t0 + Duration::from_millis(200));
        assert_eq!(counted(&j), 1, "the whole-second line waits");
        j.step(t0 + Duration::from_millis(300));
        assert_eq!(counted(&j), 2);
    }

    #[test]
    fn a_404_or_a_503_is_not_a_failed_request() {
        let sinks = Sinks::new(64);
        let mut j = Judge::new(
            JudgeOptions::default(),
            sinks.clone(),
            Published::new(PoolIndex::default()),
        );
        for status in [404, 500, 503] {
            sinks.timeline.push(
                SystemTime::now(),
                None,
                EventKind::ServerError(ServerError {
                    log: Arc::from("edge"),
                    status,
                    upstream: None,
                    conn: None,
                    request: None,
                    backend_sent: false,
                }),
            );
        }
        j.finish();
        assert!(j.failures().get().by_pool.is_empty());
    }
}
