//! Layer 4: the rules, pure tables over a window of the timeline, and the
//! judge that applies them as events arrive.
//!
//! - [`exit_reason`]: why each worker ended.
//!
//! The judge reads what arrived on the timeline since it last looked. An
//! exit waits [`JudgeOptions::settle`] for its late evidence (the master's
//! reap line, the master's own exit), is given its reason, counted, and put
//! back on the timeline as a [`WorkerEnd`].

pub mod exit_reason;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::state::timeline::{EventKind, ExitReason, WorkerEnd, WorkerExit};
use crate::state::{Published, Sinks};

/// Exits judged, by pool and reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExitCounts {
    pub by_pool: BTreeMap<String, BTreeMap<ExitReason, u64>>,
}

#[derive(Debug, Clone, Copy)]
pub struct JudgeOptions {
    /// How long an exit waits for its late evidence before it is judged.
    pub settle: Duration,
    pub windows: exit_reason::Windows,
    /// Exits waiting at most; past it the oldest is judged at once.
    pub max_pending: usize,
    pub interval: Duration,
}

impl Default for JudgeOptions {
    fn default() -> Self {
        JudgeOptions {
            settle: Duration::from_millis(1500),
            windows: exit_reason::Windows::default(),
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

pub struct Judge {
    opts: JudgeOptions,
    sinks: Sinks,
    /// The last timeline event read.
    cursor: u64,
    pending: VecDeque<Pending>,
    exits: ExitCounts,
    out: Arc<Published<ExitCounts>>,
}

impl Judge {
    pub fn new(opts: JudgeOptions, sinks: Sinks) -> Judge {
        Judge {
            opts,
            sinks,
            cursor: 0,
            pending: VecDeque::new(),
            exits: ExitCounts::default(),
            out: Published::new(ExitCounts::default()),
        }
    }

    pub fn exits(&self) -> Arc<Published<ExitCounts>> {
        self.out.clone()
    }

    /// Read the new events, and judge the exits that have settled by
    /// `now`. Returns whether anything was counted.
    pub fn step(&mut self, now: Instant) -> bool {
        let mut new = Vec::new();
        self.cursor = self.sinks.timeline.read(|tl| {
            for e in tl.since(self.cursor) {
                if let (EventKind::WorkerExit(x), Some(pool)) = (&e.kind, &e.pool) {
                    new.push(Pending {
                        arrived: now,
                        at: e.at,
                        pool: pool.clone(),
                        exit: x.clone(),
                    });
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
        changed
    }

    /// Judge every exit still waiting, without waiting: for a one-shot run
    /// over evidence that is all there already.
    pub fn finish(&mut self) {
        self.step(Instant::now() + self.opts.settle);
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
        let (sinks, interval) = (self.sinks.clone(), self.opts.interval);
        sinks.run_loop("rules", interval, || (0, self.step(Instant::now())))
    }
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
        let mut j = Judge::new(JudgeOptions::default(), sinks.clone());
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
        let mut j = Judge::new(opts, sinks.clone());
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
