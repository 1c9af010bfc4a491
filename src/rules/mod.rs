//! Layer 4: the rules, pure tables over a window of the timeline, and the
//! judge that applies them as events arrive.
//!
//! - [`exit_reason`]: why each worker ended;
//! - [`failure_cause`]: why each client got a 502 or 504.
//!
//! The [`Judge`] reads what arrived on the timeline since it last looked
//! and hands it to two judges that apply the tables: the exit judge
//! (`exit_judge`) gives each worker exit its reason once it has settled,
//! and the failure judge (`failure_judge`) each 502 or 504 its cause,
//! reading the exit judge's verdicts from the timeline.

mod exit_judge;
pub mod exit_reason;
pub mod failure_cause;
mod failure_judge;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::state::source::pace;
use crate::state::timeline::{ExitReason, FailureCause};
use crate::state::{Counted, PoolIndex, Published, Sinks, Source, Stepped};
use exit_judge::ExitJudge;
use failure_judge::FailureJudge;

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

/// Two judges over one timeline, each with its own queue, counts and
/// published counts: exits (`exit_judge`) and failed requests
/// (`failure_judge`). They share only the cursor: what arrived since
/// they last looked is read once and handed to both. The exit judge goes
/// first in a step, so that a failure judged in the same step reads the
/// verdicts it has just put on the timeline.
pub struct Judge {
    sinks: Sinks,
    interval: Duration,
    /// The last timeline event read.
    cursor: u64,
    exit_judge: ExitJudge,
    failure_judge: FailureJudge,
    /// For [`Judge::finish`]: how long the slower judge waits.
    longest_wait: Duration,
}

impl Judge {
    pub fn new(opts: JudgeOptions, sinks: Sinks, pools: Arc<Published<PoolIndex>>) -> Judge {
        Judge {
            sinks,
            interval: opts.interval,
            cursor: 0,
            exit_judge: ExitJudge::new(opts),
            failure_judge: FailureJudge::new(opts, pools),
            longest_wait: opts.settle.max(opts.failure_wait),
        }
    }

    pub fn exits(&self) -> Arc<Published<ExitCounts>> {
        self.exit_judge.out()
    }

    pub fn failures(&self) -> Arc<Published<FailureCounts>> {
        self.failure_judge.out()
    }

    /// Read the new events, and judge the exits and failures that are due
    /// by `now`. Returns whether anything was counted.
    pub fn step(&mut self, now: Instant) -> bool {
        let wall = SystemTime::now();
        let (mut exits, mut failures) = (Vec::new(), Vec::new());
        let opts = self.failure_judge.opts();
        self.cursor = self.sinks.timeline.read(|tl| {
            for e in tl.since(self.cursor) {
                if let Some(p) = exit_judge::Pending::of(e, now) {
                    exits.push(p);
                } else if let Some(f) = failure_judge::Pending::of(e, opts, now, wall) {
                    failures.push(f);
                }
            }
            tl.next_seq() - 1
        });
        let tl = &self.sinks.timeline;
        let exited = self.exit_judge.step(tl, exits, now);
        let failed = self.failure_judge.step(tl, failures, now);
        exited || failed
    }

    /// Judge everything still waiting, without waiting: for a one-shot run
    /// over evidence that is all there already.
    pub fn finish(&mut self) {
        let now = Instant::now();
        self.step(now);
        self.step(now + self.longest_wait);
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
        pace(self.interval, started);
    }

    /// [`Judge::finish`]: everything still waiting judged now, uncounted.
    fn catch_up(&mut self, _sinks: &Sinks) -> Stepped {
        self.finish();
        Stepped {
            errors: 0,
            changed: true,
            counted: Counted::Uncounted,
        }
    }
}

/// A request nginx answered with `status`, with nothing else known.
#[cfg(test)]
fn bare_error(status: u16) -> crate::state::timeline::EventKind {
    crate::state::timeline::EventKind::ServerError(crate::state::timeline::ServerError {
        log: Arc::from("edge"),
        status,
        upstream: None,
        conn: None,
        request: None,
        backend_sent: false,
    })
}

/// A judge with default options over a timeline of 64 events, and its sinks.
#[cfg(test)]
fn judge() -> (Sinks, Judge) {
    let sinks = Sinks::new(64);
    let j = Judge::new(
        JudgeOptions::default(),
        sinks.clone(),
        Published::new(PoolIndex::default()),
    );
    (sinks, j)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::timeline::{AppLog, EventKind, ExitStatus, Process, WorkerExit};

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
        let (sinks, mut j) = judge();
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
        assert_eq!(j.exit_judge.pending.len(), 2);
        j.finish();
        assert_eq!(
            j.exit_judge.counts.by_pool["api"][&ExitReason::MaxRequests],
            3,
            "{:?}",
            j.exit_judge.counts
        );
    }
}

#[cfg(test)]
mod failure_tests {
    use super::*;
    use crate::state::timeline::{
        EventKind, ExitStatus, FailedRequest, KillRule, OomKill, Process, Request, ServerError,
        UpstreamFailure, WorkerExit,
    };
    use crate::upstream_failure::{Phase, Reason};

    #[test]
    fn a_502_next_to_an_oom_kill_is_counted_once_with_the_dead_worker() {
        let (sinks, mut j) = judge();
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
        let (sinks, mut j) = judge();
        let error = |at| (at, bare_error(502));
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
        let (sinks, mut j) = judge();
        for status in [404, 500, 503] {
            sinks
                .timeline
                .push(SystemTime::now(), None, bare_error(status));
        }
        j.finish();
        assert!(j.failures().get().by_pool.is_empty());
    }

    /// A failure judged after the exit near it reads the exit judge's
    /// verdict, not the table again on what came later: a reload line read
    /// after the exit was counted `max_requests` does not make the request
    /// it cut ambiguous.
    #[test]
    fn a_failure_takes_the_reason_the_exit_judge_counted() {
        let (sinks, mut j) = judge();
        let api: Option<Arc<str>> = Some(Arc::from("api"));
        let now = SystemTime::now();
        let t0 = Instant::now();
        let tl = &sinks.timeline;
        tl.push(
            now,
            api.clone(),
            EventKind::WorkerExit(WorkerExit {
                process: Process {
                    pid: 42,
                    started: now - Duration::from_secs(60),
                    slot: Some(0),
                },
                status: Some(ExitStatus::Exited(0)),
                rss_bytes: Some(100 << 20),
                pss_bytes: None,
            }),
        );
        j.step(t0);
        j.step(t0 + Duration::from_secs(2));
        assert_eq!(j.exits().get().by_pool["api"][&ExitReason::MaxRequests], 1);
        tl.push(
            now - Duration::from_secs(1),
            api.clone(),
            EventKind::AppLog(crate::state::timeline::AppLog::Reload),
        );
        tl.push(now, api.clone(), bare_error(502));
        j.step(t0 + Duration::from_secs(3));
        j.step(t0 + Duration::from_secs(4));
        let f = j.failures().get();
        assert_eq!(f.by_pool["api"][&(502, FailureCause::WorkerRecycled)], 1);
        // The table on today's evidence would say otherwise.
        let again = tl.read(|tl| {
            let exit = tl
                .iter()
                .find_map(|e| match &e.kind {
                    EventKind::WorkerExit(x) => Some(x.clone()),
                    _ => None,
                })
                .unwrap();
            exit_reason::of(tl, "api", now, &exit, exit_reason::Windows::default())
        });
        assert_eq!(again, ExitReason::Reload);
    }
}
