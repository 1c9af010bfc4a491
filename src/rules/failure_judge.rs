//! The failure judge: each 502 or 504 waits [`JudgeOptions::failure_wait`]
//! from its line's own time when that is exact (its evidence is nearly
//! always there before nginx writes the access line, and the lag of
//! reading it counts toward the wait), is given its cause by the
//! [`failure_cause`] table, counted, and put back on the timeline as a
//! [`FailedRequest`]. A cause that would have been another with evidence
//! that came later is logged, not counted again.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::{failure_cause, FailureCounts, JudgeOptions, FAILED_STATUSES};
use crate::kernel::NO_POOL;
use crate::state::timeline::{
    DeadWorker, Event, EventKind, FailedRequest, FailureCause, ServerError, SharedTimeline,
    Timeline,
};
use crate::state::{PoolIndex, Published};

/// Error lines joined by upstream and time, kept so that each explains one
/// request.
const CLAIMED_CAP: usize = 4096;
/// Requests judged `other`, kept to look at again.
const RECHECK_CAP: usize = 256;

/// A 502 or 504 read from the timeline, waiting to be judged.
pub(super) struct Pending {
    /// When it is judged: [`JudgeOptions::failure_wait`] after the line's
    /// own time where that time is exact (`$msec`), as nginx's log is read
    /// with a lag that already gave the evidence time to come; else that
    /// long after it was read.
    ready: Instant,
    at: SystemTime,
    pool: Option<Arc<str>>,
    error: ServerError,
}

impl Pending {
    /// The failed request `e` is, if it is one, read at `now` (`wall` by
    /// the wall clock).
    pub(super) fn of(
        e: &Event,
        opts: &JudgeOptions,
        now: Instant,
        wall: SystemTime,
    ) -> Option<Pending> {
        let EventKind::ServerError(err) = &e.kind else {
            return None;
        };
        if !FAILED_STATUSES.contains(&err.status) {
            return None;
        }
        let wait = opts.failure_wait;
        let ready = now
            + if failure_cause::at_whole_second(e.at) {
                wait
            } else {
                (e.at + wait)
                    .duration_since(wall)
                    .unwrap_or_default()
                    .min(wait)
            };
        Some(Pending {
            ready,
            at: e.at,
            pool: e.pool.clone(),
            error: err.clone(),
        })
    }
}

pub(super) struct FailureJudge {
    opts: JudgeOptions,
    pools: Arc<Published<PoolIndex>>,
    pending: VecDeque<Pending>,
    /// The error lines joined by upstream and time so far.
    claimed: BTreeSet<u64>,
    /// Requests judged `other`, with when they were.
    recheck: VecDeque<(Instant, Pending)>,
    counts: FailureCounts,
    out: Arc<Published<FailureCounts>>,
}

impl FailureJudge {
    pub(super) fn new(opts: JudgeOptions, pools: Arc<Published<PoolIndex>>) -> FailureJudge {
        FailureJudge {
            opts,
            pools,
            pending: VecDeque::new(),
            claimed: BTreeSet::new(),
            recheck: VecDeque::new(),
            counts: FailureCounts::default(),
            out: Published::new(FailureCounts::default()),
        }
    }

    pub(super) fn opts(&self) -> &JudgeOptions {
        &self.opts
    }

    pub(super) fn out(&self) -> Arc<Published<FailureCounts>> {
        self.out.clone()
    }

    /// Queue the failures just read, judge those due by `now` (and the
    /// oldest at once, past [`JudgeOptions::max_pending`]), and look again
    /// at those judged `other` a while ago. Returns whether anything was
    /// counted.
    pub(super) fn step(&mut self, tl: &SharedTimeline, new: Vec<Pending>, now: Instant) -> bool {
        let mut due = Vec::new();
        for f in new {
            if self.pending.len() == self.opts.max_pending {
                due.push(self.pending.pop_front().expect("full"));
            }
            self.pending.push_back(f);
        }
        while self.pending.front().is_some_and(|f| now >= f.ready) {
            due.push(self.pending.pop_front().expect("just seen"));
        }
        let failed = !due.is_empty();
        if failed {
            self.judge(tl, due, now);
            self.out.publish(self.counts.clone());
        }
        self.recheck_late(tl, now);
        failed
    }

    /// Judge failures in order, under one read of the timeline.
    fn judge(&mut self, tl: &SharedTimeline, fs: Vec<Pending>, now: Instant) {
        let pools = self.pools.get();
        let (claimed, windows) = (&mut self.claimed, self.opts.failure_windows);
        let judged: Vec<_> = tl.read(|tl| {
            fs.iter()
                .map(|f| cause_of(tl, &pools, f, claimed, windows))
                .collect()
        });
        // The oldest lines go first: sequence numbers only grow.
        while self.claimed.len() > CLAIMED_CAP {
            self.claimed.pop_first();
        }
        let mut failed = Vec::with_capacity(fs.len());
        for (f, (cause, worker)) in fs.into_iter().zip(judged) {
            let pool = f.pool.as_deref().unwrap_or(NO_POOL);
            let by_cause = match self.counts.by_pool.get_mut(pool) {
                Some(c) => c,
                None => self.counts.by_pool.entry(pool.to_string()).or_default(),
            };
            *by_cause.entry((f.error.status, cause)).or_default() += 1;
            failed.push((
                f.at,
                f.pool.clone(),
                EventKind::FailedRequest(FailedRequest {
                    error: f.error.clone(),
                    cause,
                    worker,
                }),
            ));
            if cause == FailureCause::Other {
                if self.recheck.len() == RECHECK_CAP {
                    self.recheck.pop_front();
                }
                self.recheck.push_back((now, f));
            }
        }
        tl.push_all(failed);
    }

    /// Requests judged `other` are looked at once more after
    /// [`JudgeOptions::recheck_after`]: evidence that came too late is
    /// logged.
    fn recheck_late(&mut self, tl: &SharedTimeline, now: Instant) {
        let mut due = Vec::new();
        while self
            .recheck
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= self.opts.recheck_after)
        {
            due.push(self.recheck.pop_front().expect("just seen").1);
        }
        if due.is_empty() {
            return;
        }
        let pools = self.pools.get();
        let windows = self.opts.failure_windows;
        // Each on the claims as they stand: a recheck claims nothing.
        let causes: Vec<FailureCause> = tl.read(|tl| {
            due.iter()
                .map(|f| cause_of(tl, &pools, f, &mut self.claimed.clone(), windows).0)
                .collect()
        });
        for (f, cause) in due.iter().zip(causes) {
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
}

/// The cause of one failure on the evidence there is now, and the worker
/// that ended under it; the error line joined by upstream and time goes
/// into `claimed`.
fn cause_of(
    tl: &Timeline,
    pools: &PoolIndex,
    f: &Pending,
    claimed: &mut BTreeSet<u64>,
    windows: failure_cause::Windows,
) -> (FailureCause, Option<DeadWorker>) {
    let master_down_now = f
        .pool
        .as_deref()
        .is_some_and(|p| pools.get(p).is_some_and(|m| m.master.is_none()));
    let (evidence, worker) = failure_cause::gather(
        tl,
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
