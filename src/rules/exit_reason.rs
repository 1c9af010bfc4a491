//! Why a worker ended: one table over the evidence the timeline holds
//! around its exit.
//!
//! Evidence, best first: the kernel's OOM kill of the pid; the app
//! server's own log (a timeout, an autorestart, a reload or shutdown of
//! its master, the signal or code the master reaped); the proc
//! connector's wait status; the master's own exit. With /proc polling
//! alone an exit is `unknown`.

use std::time::{Duration, SystemTime};

use crate::state::timeline::{AppLog, EventKind, ExitReason, ExitStatus, Timeline, WorkerExit};

/// What the timeline says about one exit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitEvidence {
    /// The kernel logged an OOM kill of the pid.
    pub oom_killed: bool,
    /// The master logged `WORKER TIMEOUT` for the pid.
    pub timed_out: bool,
    /// The worker logged that it reached its request limit.
    pub autorestart: bool,
    /// The master was shutting down (its log said so, or it exited) after
    /// the worker started.
    pub master_shutdown: bool,
    /// The master reloaded (SIGHUP) after the worker started.
    pub master_reload: bool,
    /// The server logged a fatal signal caught in the worker (uWSGI's
    /// `got Segmentation Fault`; the worker then exits with code 1).
    pub crashed: Option<i32>,
    /// How it ended: the proc connector's wait status, else what the
    /// master logged when it reaped it.
    pub status: Option<ExitStatus>,
}

/// One row: when `applies`, the reason is `reason`. Rows are tried in
/// order; the first that applies decides.
pub struct Rule {
    pub name: &'static str,
    pub applies: fn(&ExitEvidence) -> bool,
    pub reason: ExitReason,
}

/// The table. Its order is the precedence:
/// - an OOM kill of the pid wins over the bare SIGKILL that carried it
///   (Gunicorn logs every SIGKILL as "Perhaps out of memory?", its own
///   timeout kills too, so that line alone proves nothing);
/// - a timeout wins over the SIGABRT and SIGKILL the master sends after it;
/// - the worker's own autorestart line wins over anything around it;
/// - an exit while its master shuts down, or reloads, is that;
/// - a fatal signal the server logged for the worker (uWSGI catches
///   SIGSEGV and exits with code 1) is a signal, not the code;
/// - then the status: killed by a signal, or a non-zero code;
/// - a clean exit (code 0) of a worker whose master neither reloads nor
///   shuts down is one that left on its own, which a Gunicorn worker does
///   only at `--max-requests`.
pub static RULES: &[Rule] = &[
    Rule {
        name: "the kernel OOM-killed the pid",
        applies: |e| e.oom_killed,
        reason: ExitReason::OomKilled,
    },
    Rule {
        name: "the master logged a timeout for the pid",
        applies: |e| e.timed_out,
        reason: ExitReason::Timeout,
    },
    Rule {
        name: "the worker logged its autorestart",
        applies: |e| e.autorestart,
        reason: ExitReason::MaxRequests,
    },
    Rule {
        name: "its master was shutting down",
        applies: |e| e.master_shutdown,
        reason: ExitReason::Shutdown,
    },
    Rule {
        name: "its master was reloading",
        applies: |e| e.master_reload,
        reason: ExitReason::Reload,
    },
    Rule {
        name: "the server logged a fatal signal in it",
        applies: |e| e.crashed.is_some(),
        reason: ExitReason::Signal,
    },
    Rule {
        name: "a signal killed it",
        applies: |e| matches!(e.status, Some(ExitStatus::Signaled(_))),
        reason: ExitReason::Signal,
    },
    Rule {
        name: "it exited with a non-zero code",
        applies: |e| matches!(e.status, Some(ExitStatus::Exited(c)) if c != 0),
        reason: ExitReason::ExitError,
    },
    Rule {
        name: "it left on its own with code 0",
        applies: |e| e.status == Some(ExitStatus::Exited(0)),
        reason: ExitReason::MaxRequests,
    },
];

pub fn exit_reason(e: &ExitEvidence) -> ExitReason {
    RULES
        .iter()
        .find(|r| (r.applies)(e))
        .map_or(ExitReason::Unknown, |r| r.reason)
}

/// The reason for `exit` of `pool`, seen at `at`, on the evidence the
/// timeline holds now: what the exit judge counts.
pub fn of(tl: &Timeline, pool: &str, at: SystemTime, exit: &WorkerExit, w: Windows) -> ExitReason {
    exit_reason(&gather(tl, pool, at, exit, w))
}

/// How far around an exit the evidence is looked for.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    /// After the exit was seen: evidence that arrives later (the master's
    /// reap line, its own exit).
    pub after: Duration,
    /// Before the exit, for a reload or shutdown of the master: how long
    /// the master may take to stop its old workers (Gunicorn's
    /// `graceful_timeout` is 30 s by default).
    pub graceful: Duration,
}

impl Default for Windows {
    fn default() -> Self {
        Windows {
            after: Duration::from_secs(2),
            graceful: Duration::from_secs(35),
        }
    }
}

/// Gather the evidence about `exit` of `pool`, seen at `at`.
pub fn gather(
    tl: &Timeline,
    pool: &str,
    at: SystemTime,
    exit: &WorkerExit,
    w: Windows,
) -> ExitEvidence {
    let p = &exit.process;
    let mut e = ExitEvidence {
        status: exit.status,
        ..ExitEvidence::default()
    };
    let from = p
        .started
        .min(at.checked_sub(w.graceful).unwrap_or(SystemTime::UNIX_EPOCH));
    let to = at + w.after;
    // Evidence about this very process lies between its start and now.
    let own = |t: SystemTime| t + Duration::from_secs(1) >= p.started;
    // A master-wide event touches the workers that were there before it.
    let master_wide =
        |t: SystemTime| t + Duration::from_secs(1) >= p.started && t + w.graceful >= at;
    let mut log_status = None;
    for ev in tl.evidence(from, to) {
        match &ev.kind {
            // An OOM victim may have been counted under no pool (killed
            // before the pool source knew it): the pid and time decide.
            EventKind::OomKill(k) if k.pid == p.pid && own(ev.at) => e.oom_killed = true,
            EventKind::AppLog(l) if ev.pool.as_deref() == Some(pool) => match *l {
                AppLog::WorkerTimeout { pid } if pid == p.pid && own(ev.at) => e.timed_out = true,
                AppLog::Autorestarting { pid } if pid == p.pid && own(ev.at) => {
                    e.autorestart = true
                }
                AppLog::WorkerSignaled { pid, signal } if pid == p.pid && own(ev.at) => {
                    log_status = Some(ExitStatus::Signaled(signal))
                }
                AppLog::WorkerExited { pid, code } if pid == p.pid && own(ev.at) => {
                    log_status = Some(ExitStatus::Exited(code))
                }
                AppLog::WorkerCrashed { pid, signal } if pid == p.pid && own(ev.at) => {
                    e.crashed = Some(signal)
                }
                AppLog::Reload if master_wide(ev.at) => e.master_reload = true,
                AppLog::Shutdown if master_wide(ev.at) => e.master_shutdown = true,
                _ => {}
            },
            EventKind::MasterExit(_) if ev.pool.as_deref() == Some(pool) && master_wide(ev.at) => {
                e.master_shutdown = true
            }
            _ => {}
        }
    }
    e.status = e.status.or(log_status);
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::timeline::{OomKill, Process};
    use std::sync::Arc;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    /// One row of the table, and the cases around it.
    #[test]
    fn the_table_row_by_row() {
        use ExitReason::*;
        use ExitStatus::*;
        let ev = |f: fn(&mut ExitEvidence)| {
            let mut e = ExitEvidence::default();
            f(&mut e);
            e
        };
        let cases: &[(&str, ExitEvidence, ExitReason)] = &[
            ("OOM kill alone", ev(|e| e.oom_killed = true), OomKilled),
            (
                "an OOM kill wins over the bare SIGKILL",
                ev(|e| {
                    e.oom_killed = true;
                    e.status = Some(Signaled(9))
                }),
                OomKilled,
            ),
            (
                "a timeout wins over the SIGKILL after it",
                ev(|e| {
                    e.timed_out = true;
                    e.status = Some(Signaled(9))
                }),
                Timeout,
            ),
            (
                "a timeout wins over the SIGABRT after it",
                ev(|e| {
                    e.timed_out = true;
                    e.status = Some(Signaled(6))
                }),
                Timeout,
            ),
            (
                "autorestart",
                ev(|e| {
                    e.autorestart = true;
                    e.status = Some(Exited(0))
                }),
                MaxRequests,
            ),
            (
                "an exit during a shutdown",
                ev(|e| {
                    e.master_shutdown = true;
                    e.status = Some(Exited(0))
                }),
                Shutdown,
            ),
            (
                "a shutdown wins over a reload",
                ev(|e| {
                    e.master_shutdown = true;
                    e.master_reload = true
                }),
                Shutdown,
            ),
            (
                "an exit during a reload",
                ev(|e| {
                    e.master_reload = true;
                    e.status = Some(Exited(0))
                }),
                Reload,
            ),
            ("SIGSEGV", ev(|e| e.status = Some(Signaled(11))), Signal),
            (
                "a fatal signal the server caught, then code 1",
                ev(|e| {
                    e.crashed = Some(11);
                    e.status = Some(Exited(1))
                }),
                Signal,
            ),
            (
                "SIGKILL from someone else, no OOM",
                ev(|e| e.status = Some(Signaled(9))),
                Signal,
            ),
            ("exit code 3", ev(|e| e.status = Some(Exited(3))), ExitError),
            (
                "a clean exit on its own",
                ev(|e| e.status = Some(Exited(0))),
                MaxRequests,
            ),
            (
                "nothing but /proc polling",
                ExitEvidence::default(),
                Unknown,
            ),
        ];
        for (name, e, want) in cases {
            assert_eq!(exit_reason(e), *want, "{name}: {e:?}");
        }
        // Every row decides at least one case.
        for r in RULES {
            assert!(
                cases
                    .iter()
                    .any(|(_, e, want)| (r.applies)(e) && *want == r.reason),
                "row {:?} has no case",
                r.name
            );
        }
    }

    fn exit(pid: i32, started: SystemTime, status: Option<ExitStatus>) -> WorkerExit {
        WorkerExit {
            process: Process {
                pid,
                started,
                slot: Some(0),
            },
            status,
            rss_bytes: Some(1),
            pss_bytes: None,
        }
    }

    fn kill(pid: i32) -> EventKind {
        EventKind::OomKill(OomKill {
            seq: 1,
            pid,
            comm: "gunicorn".into(),
            slot: None,
            cgroup: None,
            memcg: true,
            rule: crate::state::timeline::KillRule::Unknown,
            anon_bytes: 1,
            file_bytes: 1,
            shmem_bytes: None,
        })
    }

    #[test]
    fn evidence_is_gathered_by_pid_pool_and_time() {
        let api: Option<Arc<str>> = Some(Arc::from("api"));
        let web: Option<Arc<str>> = Some(Arc::from("web"));
        let mut tl = Timeline::new(64);
        let log = |pid| EventKind::AppLog(AppLog::WorkerTimeout { pid });
        // An OOM kill of pid 10 counted under no pool; a timeout of 11 in
        // another pool; a reload of api before worker 12 started.
        tl.push(t(100), None, kill(10));
        tl.push(t(100), web.clone(), log(11));
        tl.push(t(50), api.clone(), EventKind::AppLog(AppLog::Reload));
        tl.push(
            t(101),
            api.clone(),
            EventKind::AppLog(AppLog::WorkerSignaled { pid: 11, signal: 9 }),
        );
        let w = Windows::default();
        let e = gather(&tl, "api", t(101), &exit(10, t(60), None), w);
        assert!(e.oom_killed && !e.timed_out && !e.master_reload, "{e:?}");
        assert_eq!(exit_reason(&e), ExitReason::OomKilled);
        let e = gather(&tl, "api", t(101), &exit(11, t(60), None), w);
        assert!(!e.timed_out, "the timeout was in another pool");
        assert_eq!(
            e.status,
            Some(ExitStatus::Signaled(9)),
            "from the master's reap line"
        );
        // Worker 12 started after the reload: not one of the old workers.
        let e = gather(
            &tl,
            "api",
            t(70),
            &exit(12, t(55), Some(ExitStatus::Exited(0))),
            w,
        );
        assert!(!e.master_reload);
        assert_eq!(exit_reason(&e), ExitReason::MaxRequests);
        // Worker 13 was there at the reload and went 20 s later.
        let e = gather(
            &tl,
            "api",
            t(70),
            &exit(13, t(10), Some(ExitStatus::Exited(0))),
            w,
        );
        assert_eq!(exit_reason(&e), ExitReason::Reload);
        // An old pid's kill does not touch a new process with that pid.
        let e = gather(&tl, "api", t(300), &exit(10, t(200), None), w);
        assert!(!e.oom_killed);
        // The proc connector's status is kept over the log's.
        let e = gather(
            &tl,
            "api",
            t(101),
            &exit(11, t(60), Some(ExitStatus::Signaled(6))),
            w,
        );
        assert_eq!(e.status, Some(ExitStatus::Signaled(6)));
        // A master exit right after the worker's is a shutdown.
        tl.push(
            t(401),
            api.clone(),
            EventKind::MasterExit(Process {
                pid: 1,
                started: t(0),
                slot: None,
            }),
        );
        let e = gather(
            &tl,
            "api",
            t(400),
            &exit(20, t(300), Some(ExitStatus::Exited(0))),
            w,
        );
        assert_eq!(exit_reason(&e), ExitReason::Shutdown);
    }
}
