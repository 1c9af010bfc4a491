//! The exit judge: each worker exit waits [`JudgeOptions::settle`] for its
//! late evidence (the master's reap line, the master's own exit), is given
//! its reason by the [`exit_reason`] table, counted, and put back on the
//! timeline as a [`WorkerEnd`] beside the exit, where the failure rules
//! read the verdict.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::{exit_reason, ExitCounts, JudgeOptions};
use crate::state::timeline::{Event, EventKind, SharedTimeline, WorkerEnd, WorkerExit};
use crate::state::Published;

/// An exit read from the timeline, waiting to be judged.
pub(super) struct Pending {
    arrived: Instant,
    at: SystemTime,
    pool: Arc<str>,
    exit: WorkerExit,
}

impl Pending {
    /// The exit `e` is, if it is a worker exit of a known pool, read at
    /// `now`.
    pub(super) fn of(e: &Event, now: Instant) -> Option<Pending> {
        match (&e.kind, &e.pool) {
            (EventKind::WorkerExit(x), Some(pool)) => Some(Pending {
                arrived: now,
                at: e.at,
                pool: pool.clone(),
                exit: x.clone(),
            }),
            _ => None,
        }
    }
}

pub(super) struct ExitJudge {
    opts: JudgeOptions,
    /// In arrival order, which is the order they settle in.
    pub(super) pending: VecDeque<Pending>,
    pub(super) counts: ExitCounts,
    out: Arc<Published<ExitCounts>>,
}

impl ExitJudge {
    pub(super) fn new(opts: JudgeOptions) -> ExitJudge {
        ExitJudge {
            opts,
            pending: VecDeque::new(),
            counts: ExitCounts::default(),
            out: Published::new(ExitCounts::default()),
        }
    }

    pub(super) fn out(&self) -> Arc<Published<ExitCounts>> {
        self.out.clone()
    }

    /// Queue the exits just read, and judge those that have settled by
    /// `now` (and the oldest at once, past [`JudgeOptions::max_pending`]).
    /// Returns whether anything was counted.
    pub(super) fn step(&mut self, tl: &SharedTimeline, new: Vec<Pending>, now: Instant) -> bool {
        let mut changed = false;
        for p in new {
            if self.pending.len() == self.opts.max_pending {
                let oldest = self.pending.pop_front().expect("full");
                self.judge(tl, oldest);
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
            self.judge(tl, p);
            changed = true;
        }
        if changed {
            self.out.publish(self.counts.clone());
        }
        changed
    }

    fn judge(&mut self, tl: &SharedTimeline, p: Pending) {
        let reason = tl.read(|tl| exit_reason::of(tl, &p.pool, p.at, &p.exit, self.opts.windows));
        *self
            .counts
            .by_pool
            .entry(p.pool.to_string())
            .or_default()
            .entry(reason)
            .or_default() += 1;
        tracing::debug!(pool = %p.pool, pid = p.exit.process.pid, reason = reason.as_str(), "worker exit");
        let lifetime =
            p.at.duration_since(p.exit.process.started)
                .unwrap_or_default();
        tl.push(
            p.at,
            Some(p.pool),
            EventKind::WorkerEnd(WorkerEnd {
                exit: p.exit,
                reason,
                lifetime,
            }),
        );
    }
}
