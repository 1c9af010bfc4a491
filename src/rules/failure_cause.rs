//! Why a client got a 502 or 504: one table ([`RULES`]) over the evidence
//! the timeline holds around the access line, gathered by [`gather`] in
//! phases, each a small function over the timeline or the events near the
//! line:
//! - [`error_line`]: nginx's error line for the request, on the connection
//!   number where the access format has `$connection` (the error line's
//!   `*CONN` is the same counter), else on the upstream and the time, each
//!   error line explaining one request at most;
//! - [`master_state`]: whether the pool's master was gone then, and
//!   whether an OOM kill in the pool came just before it went (systemd's
//!   default `OOMPolicy=stop` stops a whole service when the kernel kills
//!   one of its processes);
//! - [`worker_ends`]: the pool's workers that ended around it, each with
//!   its reason: the exit judge's verdict for an exit it judged, the
//!   exit-reason table for the others;
//! - [`tally`]: those ends counted by kind (an OOM kill, a timeout, a
//!   crash, a recycle), and the worker to show.
//!
//! nginx and Gunicorn log whole seconds: "around" is [`Windows::near`]
//! either side. Where both times are exact (an access line with `$msec`,
//! an exit timed by the process events), a worker that ended after the
//! line is not looked at: it cannot have cut the request.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use super::exit_reason;
use crate::state::timeline::{
    AppLog, DeadWorker, Event, EventKind, ExitReason, FailureCause, Process, ServerError, Timeline,
    WorkerExit,
};
use crate::upstream_failure::Reason;

/// The errnos of `Too many open files`: EMFILE (the process), ENFILE (the
/// host).
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// The pool's workers that ended around the failure, by what ended them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerEnds {
    pub oom_killed: u32,
    pub timed_out: u32,
    /// Killed by a signal or exited with an error.
    pub crashed: u32,
    pub recycled: u32,
    /// Ended for a reload, a shutdown or a reason not known.
    pub other: u32,
}

impl WorkerEnds {
    /// The one kind of end there was, if there was exactly one kind.
    fn only(&self) -> Option<FailureCause> {
        let kinds = [
            (self.oom_killed, FailureCause::WorkerOomKilled),
            (self.timed_out, FailureCause::WorkerTimeout),
            (self.crashed, FailureCause::WorkerCrashed),
            (self.recycled, FailureCause::WorkerRecycled),
        ];
        let mut present = kinds.iter().filter(|(n, _)| *n > 0);
        match (present.next(), present.next(), self.other) {
            (Some((_, c)), None, 0) => Some(*c),
            _ => None,
        }
    }

    fn any(&self) -> bool {
        self.oom_killed + self.timed_out + self.crashed + self.recycled + self.other > 0
    }
}

/// What the timeline says about one failed request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureEvidence {
    /// 502 or 504.
    pub status: u16,
    /// The backend sent the 5xx itself.
    pub backend_sent: bool,
    /// nginx's error line for the request: its reason and errno.
    pub reason: Option<Reason>,
    pub errno: Option<i32>,
    /// The pool's master was gone, or shutting down.
    pub master_down: bool,
    /// An OOM kill in the pool came shortly before the master went.
    pub oom_before_master_down: bool,
    pub ends: WorkerEnds,
}

impl FailureEvidence {
    /// The attempt failed with the connection closed or reset under it.
    fn closed(&self) -> bool {
        matches!(
            self.reason,
            Some(Reason::PrematureClose | Reason::ResetByPeer | Reason::BrokenPipe)
        ) || (self.reason.is_none() && self.status == 502)
    }

    fn timed_out(&self) -> bool {
        self.reason == Some(Reason::Timeout) || (self.reason.is_none() && self.status == 504)
    }

    /// Nothing was there to connect to.
    fn unreachable(&self) -> bool {
        matches!(
            self.reason,
            Some(Reason::SocketMissing | Reason::ConnectionRefused | Reason::NoLiveUpstreams)
                | None
        )
    }
}

/// One row of [`RULES`]: `decide` gives the cause when the evidence fits
/// the row, or `None` (it does not fit, or could mean two things) to leave
/// it to the next row; `name` says in words what the row looks for.
pub struct Rule {
    pub name: &'static str,
    pub decide: fn(&FailureEvidence) -> Option<FailureCause>,
}

/// The table; the first row that decides wins. Where the evidence could
/// mean two things, a row declines, and what no row decides is `other`.
pub static RULES: &[Rule] = &[
    Rule {
        name: "the backend sent the 5xx itself",
        decide: |e| e.backend_sent.then_some(FailureCause::UpstreamSent5xx),
    },
    Rule {
        name: "nginx could not open a socket: too many open files",
        decide: |e| matches!(e.errno, Some(EMFILE | ENFILE)).then_some(FailureCause::FdExhausted),
    },
    Rule {
        name: "the listen queue was full (EAGAIN on a unix socket)",
        decide: |e| (e.reason == Some(Reason::BacklogFull)).then_some(FailureCause::BacklogFull),
    },
    Rule {
        name: "nothing to connect to while the master was gone",
        decide: |e| {
            (e.master_down && e.unreachable()).then_some(if e.oom_before_master_down {
                FailureCause::PoolStoppedAfterOom
            } else {
                FailureCause::PoolDown
            })
        },
    },
    Rule {
        name: "the connection closed under a worker that ended then",
        decide: |e| if e.closed() { e.ends.only() } else { None },
    },
    Rule {
        name: "the connection closed, and no worker ended",
        decide: |e| {
            (e.closed() && e.reason.is_some() && !e.ends.any())
                .then_some(FailureCause::UpstreamClosed)
        },
    },
    Rule {
        name: "a timeout, and the worker was killed for its own timeout",
        decide: |e| {
            (e.timed_out() && e.ends.timed_out > 0 && e.ends.only().is_some())
                .then_some(FailureCause::WorkerTimeout)
        },
    },
    Rule {
        name: "a timeout, and the workers lived on",
        decide: |e| (e.timed_out() && !e.ends.any()).then_some(FailureCause::UpstreamTimeout),
    },
];

pub fn failure_cause(e: &FailureEvidence) -> FailureCause {
    RULES
        .iter()
        .find_map(|r| (r.decide)(e))
        .unwrap_or(FailureCause::Other)
}

/// How far around a failure its evidence is looked for.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    /// How far either side of the access line an error line or a worker's
    /// end is looked for, and how far after it the master's last change:
    /// the logs' whole seconds plus a second.
    pub near: Duration,
    /// How long before the master's exit an OOM kill in the pool means the
    /// master was stopped because of it.
    pub stop_after_oom: Duration,
    /// How much later than a `$msec` line an exit timed by the process
    /// events may be and still have cut its request: the two clocks'
    /// rounding.
    pub exact: Duration,
    /// For the reason of an end the exit judge has not judged (not yet, or
    /// never: a worker the pool source did not see go).
    pub exits: exit_reason::Windows,
}

impl Default for Windows {
    fn default() -> Self {
        Windows {
            near: Duration::from_secs(2),
            stop_after_oom: Duration::from_secs(30),
            exact: Duration::from_millis(100),
            exits: exit_reason::Windows::default(),
        }
    }
}

/// The evidence about one failed request, and the worker that ended under
/// it when one did: the phases below, joined. `claimed` holds the error
/// lines already joined to another request by upstream and time, so that
/// one line explains one request; the one this request takes is added.
/// `master_down_now` says whether the pool's master is gone when the
/// timeline does not say.
pub fn gather(
    tl: &Timeline,
    err: &ServerError,
    at: SystemTime,
    pool: Option<&str>,
    master_down_now: bool,
    claimed: &mut BTreeSet<u64>,
    w: Windows,
) -> (FailureEvidence, Option<DeadWorker>) {
    let mut e = FailureEvidence {
        status: err.status,
        backend_sent: err.backend_sent,
        ..FailureEvidence::default()
    };
    let near = near(tl, at, pool, w);
    if let Some(line) = error_line(&near, err, at, claimed) {
        e.reason = Some(line.reason);
        e.errno = line.errno;
        if err.conn.is_none() {
            claimed.insert(line.seq);
        }
    }
    let Some(pool) = pool else {
        return (e, None);
    };
    let master = master_state(tl, pool, at + w.near, master_down_now, w);
    e.master_down = master.down;
    e.oom_before_master_down = master.oom_before_down;
    let (ends, dead) = tally(&worker_ends(tl, &near, pool, at, w));
    e.ends = ends;
    (e, dead)
}

/// The events around the failure that may bear on it: the pool's, and the
/// error lines and OOM kills of any pool. The requests around it are not
/// (a storm puts thousands there).
fn near<'a>(tl: &'a Timeline, at: SystemTime, pool: Option<&str>, w: Windows) -> Vec<&'a Event> {
    let from = at.checked_sub(w.near).unwrap_or(SystemTime::UNIX_EPOCH);
    tl.evidence(from, at + w.near)
        .filter(|ev| {
            (pool.is_some() && ev.pool.as_deref() == pool)
                || matches!(
                    ev.kind,
                    EventKind::UpstreamFailure(_) | EventKind::OomKill(_)
                )
        })
        .collect()
}

/// nginx's error line joined to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorLine {
    /// Its place on the timeline, for `claimed`.
    pub seq: u64,
    pub reason: Reason,
    pub errno: Option<i32>,
}

/// Phase one: nginx's error line for the request among the events `near`
/// it (in time order), by connection where the access line has one, else
/// by upstream and time among the lines no other request has `claimed`.
/// By connection, the last attempt's line (the one that produced the
/// status) is the latest; by time, the nearest.
pub fn error_line(
    near: &[&Event],
    err: &ServerError,
    at: SystemTime,
    claimed: &BTreeSet<u64>,
) -> Option<ErrorLine> {
    let mut best: Option<(ErrorLine, Duration)> = None;
    for ev in near {
        let EventKind::UpstreamFailure(f) = &ev.kind else {
            continue;
        };
        if f.log != err.log || f.status.is_none() {
            continue;
        }
        let by_conn = matches!((err.conn, f.conn), (Some(a), Some(b)) if a == b);
        let by_upstream = err.conn.is_none()
            && f.upstream.is_some()
            && f.upstream.as_deref() == err.upstream.as_deref()
            && !claimed.contains(&ev.seq);
        if !(by_conn || by_upstream) {
            continue;
        }
        let gap = at.duration_since(ev.at).unwrap_or_else(|e| e.duration());
        let better = best.is_none_or(|(line, g)| if by_conn { ev.seq > line.seq } else { gap < g });
        if better {
            let line = ErrorLine {
                seq: ev.seq,
                reason: f.reason,
                errno: f.errno,
            };
            best = Some((line, gap));
        }
    }
    best.map(|(line, _)| line)
}

/// The pool's master around a failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MasterState {
    /// Gone, or shutting down.
    pub down: bool,
    /// An OOM kill in the pool came shortly before it went.
    pub oom_before_down: bool,
}

/// Phase two: the master's state by `to`, from its last start, exit or log
/// line that it is shutting down. A stopping master unlinks its socket (or
/// closes it) first, then waits up to its graceful timeout for its workers
/// before it exits: nginx finds nothing to connect to all that while. With
/// no such event on the timeline, `down_now` (what the pool index says
/// now) decides.
pub fn master_state(
    tl: &Timeline,
    pool: &str,
    to: SystemTime,
    down_now: bool,
    w: Windows,
) -> MasterState {
    let last = tl
        .master_changes_until_rev(to)
        .find(|ev| ev.pool.as_deref() == Some(pool));
    match last {
        None => MasterState {
            down: down_now,
            oom_before_down: false,
        },
        Some(ev) if matches!(ev.kind, EventKind::MasterStart(_)) => MasterState::default(),
        Some(ev) => {
            let since = ev
                .at
                .checked_sub(w.stop_after_oom)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            MasterState {
                down: true,
                oom_before_down: tl.evidence(since, ev.at + Duration::from_secs(1)).any(|k| {
                    matches!(k.kind, EventKind::OomKill(_)) && kill_pool(tl, k) == Some(pool)
                }),
            }
        }
    }
}

/// A worker that ended around a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    pub reason: ExitReason,
    pub at: SystemTime,
    pub dead: DeadWorker,
}

/// Phase three: the pool's workers that ended among the events `near` a
/// failure at `at`. An exit the pool source saw is one (see
/// [`seen_ends`]); so is, for a worker it never saw go (a one-shot
/// diagnosis after the fact, a missed exit), the kernel's OOM kill of it
/// or the master's log of its end (see [`unseen_ends`]).
pub fn worker_ends(
    tl: &Timeline,
    near: &[&Event],
    pool: &str,
    at: SystemTime,
    w: Windows,
) -> Vec<End> {
    let (mut ends, mut known) = seen_ends(tl, near, pool, latest_end(at, w), w.exits);
    known.extend(ends.iter().map(|x| x.dead.pid));
    ends.extend(unseen_ends(tl, near, pool, &known, w.exits));
    ends
}

/// The latest a worker may have ended and still have cut a request whose
/// access line says `at`. A worker that ended after nginx wrote the line
/// cannot have cut it: the workers a master stops after an OOM kill, say.
/// Only an exit the process events timed (it carries its wait status) is
/// known to the millisecond; one seen by polling may be a cycle late. The
/// line's own time is `$msec`'s, or a whole second that may be up to one
/// second early.
fn latest_end(at: SystemTime, w: Windows) -> SystemTime {
    at + if at_whole_second(at) {
        Duration::from_secs(1)
    } else {
        w.exact
    }
}

/// The exits of `pool` the pool source saw among `near`, each with the
/// reason the exit judge gave it; and the pids of those known to have
/// ended after `latest`, which did not cut the request.
///
/// The judge puts its verdict on the timeline beside the exit, as a
/// [`WorkerEnd`](crate::state::timeline::WorkerEnd) at the same time. An
/// exit still waiting for its late evidence when the failure is judged
/// has none yet: it is given the reason the judge's table gives it on the
/// evidence there is now.
pub fn seen_ends(
    tl: &Timeline,
    near: &[&Event],
    pool: &str,
    latest: SystemTime,
    w: exit_reason::Windows,
) -> (Vec<End>, Vec<i32>) {
    let (mut ends, mut after) = (Vec::new(), Vec::new());
    for ev in near.iter().filter(|ev| ev.pool.as_deref() == Some(pool)) {
        let EventKind::WorkerExit(x) = &ev.kind else {
            continue;
        };
        if x.status.is_some() && ev.at > latest {
            after.push(x.process.pid);
            continue;
        }
        let reason = verdict(near, ev, x).unwrap_or_else(|| exit_reason::of(tl, pool, ev.at, x, w));
        let kill = killed(near, x.process.pid);
        ends.push(End {
            reason,
            // A victim dies some milliseconds after its kill, as the
            // kernel frees its memory: the kill is when it ended.
            at: kill.map_or(ev.at, |(_, t)| t.min(ev.at)),
            dead: DeadWorker {
                pid: x.process.pid,
                slot: x.process.slot,
                rss_bytes: kill.map(|(b, _)| b).or(x.rss_bytes.filter(|b| *b > 0)),
                pss_bytes: x.pss_bytes.filter(|b| *b > 0),
            },
        });
    }
    (ends, after)
}

/// The reason the exit judge gave the exit `ev`, if it has judged it: its
/// `WorkerEnd` among `near`, at the same time, of the same pool and
/// process.
fn verdict(near: &[&Event], ev: &Event, x: &WorkerExit) -> Option<ExitReason> {
    near.iter().find_map(|e| match &e.kind {
        EventKind::WorkerEnd(end)
            if e.at == ev.at && e.pool == ev.pool && end.exit.process == x.process =>
        {
            Some(end.reason)
        }
        _ => None,
    })
}

/// The kernel's OOM kill of `pid` among `near`: the victim's memory, which
/// the kernel tells best at the kill (the pool source's last sample of it
/// may be older, or of the process already torn down, 0), and its time.
/// A kill the kernel source could not tie to a pool counts too: the pid and
/// the time decide, as for the exit's reason.
fn killed(near: &[&Event], pid: i32) -> Option<(u64, SystemTime)> {
    near.iter().find_map(|ev| match &ev.kind {
        EventKind::OomKill(k) if k.pid == pid => Some((victim_bytes(k), ev.at)),
        _ => None,
    })
}

/// The workers of `pool` the pool source never saw go (none of the `known`
/// pids), from the kernel's OOM kill of them or the master's log of their
/// end among `near`, first one first. The exit judge never sees these:
/// each is given the reason its table gives it on the evidence there is.
pub fn unseen_ends(
    tl: &Timeline,
    near: &[&Event],
    pool: &str,
    known: &[i32],
    w: exit_reason::Windows,
) -> Vec<End> {
    let mut ends: Vec<End> = Vec::new();
    for ev in near.iter().filter(|ev| ev.pool.as_deref() == Some(pool)) {
        let dead = match &ev.kind {
            EventKind::OomKill(k) => DeadWorker {
                pid: k.pid,
                slot: k.slot,
                rss_bytes: Some(victim_bytes(k)),
                pss_bytes: None,
            },
            EventKind::AppLog(
                AppLog::WorkerTimeout { pid }
                | AppLog::WorkerSignaled { pid, .. }
                | AppLog::WorkerExited { pid, .. }
                | AppLog::WorkerCrashed { pid, .. }
                | AppLog::Autorestarting { pid },
            ) => DeadWorker {
                pid: *pid,
                slot: None,
                rss_bytes: None,
                pss_bytes: None,
            },
            _ => continue,
        };
        if known.contains(&dead.pid) || ends.iter().any(|x| x.dead.pid == dead.pid) {
            continue;
        }
        let unseen = WorkerExit {
            process: Process {
                pid: dead.pid,
                started: booted(tl, pool, dead.pid).unwrap_or(SystemTime::UNIX_EPOCH),
                slot: dead.slot,
            },
            status: None,
            rss_bytes: dead.rss_bytes,
            pss_bytes: None,
        };
        ends.push(End {
            reason: exit_reason::of(tl, pool, ev.at, &unseen, w),
            at: ev.at,
            dead,
        });
    }
    ends
}

/// Phase four: the ends counted by kind, and the worker to show: the
/// first counted whose memory is known, else the last counted.
///
/// A master that reloads or stops after a worker was killed (systemd stops
/// the whole service after an OOM kill) lets its other workers finish
/// their requests: those graceful ends follow from the kill, and do not
/// make it ambiguous which end cut the request.
pub fn tally(ends: &[End]) -> (WorkerEnds, Option<DeadWorker>) {
    let violent = |r: ExitReason| {
        matches!(
            r,
            ExitReason::OomKilled
                | ExitReason::Timeout
                | ExitReason::Signal
                | ExitReason::ExitError
        )
    };
    let first_violent = ends
        .iter()
        .filter(|x| violent(x.reason))
        .map(|x| x.at)
        .min();
    let mut counts = WorkerEnds::default();
    let mut dead = None;
    for x in ends {
        let kind = match x.reason {
            ExitReason::OomKilled => &mut counts.oom_killed,
            ExitReason::Timeout => &mut counts.timed_out,
            ExitReason::Signal | ExitReason::ExitError => &mut counts.crashed,
            ExitReason::MaxRequests => &mut counts.recycled,
            ExitReason::Reload | ExitReason::Shutdown
                if first_violent.is_some_and(|v| v <= x.at) =>
            {
                continue
            }
            ExitReason::Reload | ExitReason::Shutdown | ExitReason::Unknown => &mut counts.other,
        };
        *kind += 1;
        if dead.is_none_or(|d: DeadWorker| d.rss_bytes.is_none()) {
            dead = Some(x.dead);
        }
    }
    (counts, dead)
}

/// An OOM victim's resident memory when the kernel killed it.
fn victim_bytes(k: &crate::state::timeline::OomKill) -> u64 {
    k.anon_bytes + k.file_bytes + k.shmem_bytes.unwrap_or(0)
}

/// Whether `t` is a whole second: a log time without a fraction (or, one
/// time in a thousand, a `$msec` that fell on one, which only widens the
/// window).
pub(crate) fn at_whole_second(t: SystemTime) -> bool {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .is_ok_and(|d| d.subsec_nanos() == 0)
}

/// The pool an OOM kill on the timeline belongs to: the one the kernel
/// source tied it to, else the one whose app server logged the victim's
/// boot before the kill. A one-shot run after systemd stopped the pool
/// cannot find its cgroup or its processes any more; its Gunicorn log
/// still names its workers.
pub fn kill_pool<'a>(tl: &'a Timeline, kill: &'a Event) -> Option<&'a str> {
    let EventKind::OomKill(k) = &kill.kind else {
        return None;
    };
    if let Some(p) = kill.pool.as_deref() {
        return Some(p);
    }
    tl.boots(k.pid)
        .filter(|b| b.at <= kill.at)
        .max_by_key(|b| b.at)
        .and_then(|b| b.pool.as_deref())
}

/// When the app server's log of `pool` says worker `pid` booted.
fn booted(tl: &Timeline, pool: &str, pid: i32) -> Option<SystemTime> {
    tl.boots(pid)
        .find(|e| e.pool.as_deref() == Some(pool))
        .map(|e| e.at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::state::timeline::{ExitStatus, KillRule, OomKill, UpstreamFailure};
    use crate::upstream_failure::Phase;
    use FailureCause::*;

    fn ev(f: impl FnOnce(&mut FailureEvidence)) -> FailureEvidence {
        let mut e = FailureEvidence {
            status: 502,
            ..FailureEvidence::default()
        };
        f(&mut e);
        e
    }

    #[test]
    fn the_table_row_by_row_and_the_ambiguous_cases() {
        let ends = |oom, timed_out, crashed, recycled, other| WorkerEnds {
            oom_killed: oom,
            timed_out,
            crashed,
            recycled,
            other,
        };
        let cases: &[(&str, FailureEvidence, FailureCause)] = &[
            (
                "a 502 the backend sent",
                ev(|e| e.backend_sent = true),
                UpstreamSent5xx,
            ),
            (
                "EMFILE in nginx",
                ev(|e| {
                    e.reason = Some(Reason::Other);
                    e.errno = Some(24)
                }),
                FdExhausted,
            ),
            (
                "ENFILE on the host",
                ev(|e| {
                    e.reason = Some(Reason::Other);
                    e.errno = Some(23)
                }),
                FdExhausted,
            ),
            (
                "EAGAIN on a unix socket",
                ev(|e| e.reason = Some(Reason::BacklogFull)),
                BacklogFull,
            ),
            (
                "a missing socket, master gone",
                ev(|e| {
                    e.reason = Some(Reason::SocketMissing);
                    e.master_down = true
                }),
                PoolDown,
            ),
            (
                "refused, master gone after an OOM kill",
                ev(|e| {
                    e.reason = Some(Reason::ConnectionRefused);
                    e.master_down = true;
                    e.oom_before_master_down = true
                }),
                PoolStoppedAfterOom,
            ),
            (
                "a premature close next to an OOM-killed worker",
                ev(|e| {
                    e.reason = Some(Reason::PrematureClose);
                    e.ends = ends(1, 0, 0, 0, 0)
                }),
                WorkerOomKilled,
            ),
            (
                "a reset next to a timed-out worker",
                ev(|e| {
                    e.reason = Some(Reason::ResetByPeer);
                    e.ends = ends(0, 1, 0, 0, 0)
                }),
                WorkerTimeout,
            ),
            (
                "a premature close next to a crashed worker",
                ev(|e| {
                    e.reason = Some(Reason::PrematureClose);
                    e.ends = ends(0, 0, 1, 0, 0)
                }),
                WorkerCrashed,
            ),
            (
                "a premature close next to a recycled worker",
                ev(|e| {
                    e.reason = Some(Reason::PrematureClose);
                    e.ends = ends(0, 0, 0, 1, 0)
                }),
                WorkerRecycled,
            ),
            (
                "a 502 with no error log, next to an OOM kill",
                ev(|e| e.ends = ends(2, 0, 0, 0, 0)),
                WorkerOomKilled,
            ),
            (
                "a premature close and no worker ended",
                ev(|e| e.reason = Some(Reason::PrematureClose)),
                UpstreamClosed,
            ),
            (
                "a 504, the worker timed out",
                ev(|e| {
                    e.status = 504;
                    e.reason = Some(Reason::Timeout);
                    e.ends = ends(0, 1, 0, 0, 0)
                }),
                WorkerTimeout,
            ),
            (
                "a 504, every worker lived",
                ev(|e| {
                    e.status = 504;
                    e.reason = Some(Reason::Timeout)
                }),
                UpstreamTimeout,
            ),
            // Ambiguous: two kinds of end at once, a refusal with the
            // master alive, a 502 with nothing to go by.
            (
                "an OOM kill and a timeout at once",
                ev(|e| {
                    e.reason = Some(Reason::PrematureClose);
                    e.ends = ends(1, 1, 0, 0, 0)
                }),
                Other,
            ),
            (
                "a close next to a worker ended for a reload",
                ev(|e| {
                    e.reason = Some(Reason::PrematureClose);
                    e.ends = ends(0, 0, 0, 0, 1)
                }),
                Other,
            ),
            (
                "refused while the master lives",
                ev(|e| e.reason = Some(Reason::ConnectionRefused)),
                Other,
            ),
            ("a bare 502, nothing else known", ev(|_| {}), Other),
            (
                "a 504 next to an OOM kill",
                ev(|e| {
                    e.status = 504;
                    e.reason = Some(Reason::Timeout);
                    e.ends = ends(1, 0, 0, 0, 0)
                }),
                Other,
            ),
            (
                "an invalid header from the backend",
                ev(|e| e.reason = Some(Reason::InvalidHeader)),
                Other,
            ),
        ];
        for (name, e, want) in cases {
            assert_eq!(failure_cause(e), *want, "{name}: {e:?}");
        }
        for r in RULES {
            assert!(
                cases
                    .iter()
                    .any(|(_, e, want)| (r.decide)(e) == Some(*want)),
                "row {:?} decides no case",
                r.name
            );
        }
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn error(conn: Option<u64>, upstream: &str) -> ServerError {
        ServerError {
            log: Arc::from("edge"),
            status: 502,
            upstream: Some(upstream.into()),
            conn,
            request: None,
            backend_sent: false,
        }
    }

    fn failure(conn: Option<u64>, upstream: &str, reason: Reason) -> EventKind {
        EventKind::UpstreamFailure(UpstreamFailure {
            log: Arc::from("edge"),
            reason,
            phase: Phase::ReadHeader,
            status: Some(502),
            upstream: Some(upstream.into()),
            conn,
            request: None,
            errno: None,
        })
    }

    #[test]
    fn error_lines_join_by_connection_or_once_by_upstream_and_time() {
        let mut tl = Timeline::new(64);
        let api: Option<Arc<str>> = Some(Arc::from("api"));
        tl.push(
            t(10),
            api.clone(),
            failure(Some(7), "unix:/a", Reason::SocketMissing),
        );
        tl.push(
            t(10),
            api.clone(),
            failure(Some(8), "unix:/a", Reason::PrematureClose),
        );
        tl.push(
            t(11),
            api.clone(),
            failure(None, "unix:/b", Reason::ResetByPeer),
        );
        let w = Windows::default();
        let mut claimed = BTreeSet::new();
        let (e, _) = gather(
            &tl,
            &error(Some(8), "unix:/a"),
            t(10),
            Some("api"),
            false,
            &mut claimed,
            w,
        );
        assert_eq!(e.reason, Some(Reason::PrematureClose));
        // Without $connection: the nearest line of the upstream, once.
        let (e, _) = gather(
            &tl,
            &error(None, "unix:/b"),
            t(11),
            Some("api"),
            false,
            &mut claimed,
            w,
        );
        assert_eq!(e.reason, Some(Reason::ResetByPeer));
        let (e, _) = gather(
            &tl,
            &error(None, "unix:/b"),
            t(11),
            Some("api"),
            false,
            &mut claimed,
            w,
        );
        assert_eq!(e.reason, None, "the line explained the first request");
        // Too far in time.
        let (e, _) = gather(
            &tl,
            &error(Some(7), "unix:/a"),
            t(20),
            Some("api"),
            false,
            &mut BTreeSet::new(),
            w,
        );
        assert_eq!(e.reason, None);
    }

    #[test]
    fn workers_and_the_master_around_the_failure() {
        let mut tl = Timeline::new(64);
        let api: Option<Arc<str>> = Some(Arc::from("api"));
        let p = |pid| Process {
            pid,
            started: t(0),
            slot: Some(1),
        };
        // Worker 5 is OOM-killed at 100; worker 6 times out at 200.
        tl.push(
            t(100),
            None,
            EventKind::OomKill(OomKill {
                seq: 1,
                pid: 5,
                comm: "gunicorn".into(),
                slot: None,
                cgroup: None,
                memcg: true,
                rule: KillRule::Unknown,
                anon_bytes: 290 << 20,
                file_bytes: 10 << 20,
                shmem_bytes: None,
            }),
        );
        // The pool source's last sample of a worker may be of it torn
        // down already: the kernel's numbers at the kill are the ones.
        let exit = |pid| {
            EventKind::WorkerExit(WorkerExit {
                process: p(pid),
                status: Some(ExitStatus::Signaled(9)),
                rss_bytes: Some(0),
                pss_bytes: Some(0),
            })
        };
        tl.push(t(100), api.clone(), exit(5));
        tl.push(
            t(199),
            api.clone(),
            EventKind::AppLog(AppLog::WorkerTimeout { pid: 6 }),
        );
        tl.push(t(200), api.clone(), exit(6));
        let w = Windows::default();
        let mut claimed = BTreeSet::new();
        let (e, dead) = gather(
            &tl,
            &error(None, "unix:/x"),
            t(101),
            Some("api"),
            false,
            &mut claimed,
            w,
        );
        assert_eq!(e.ends.oom_killed, 1);
        assert_eq!(failure_cause(&e), WorkerOomKilled);
        assert_eq!(
            dead.map(|d| (d.pid, d.rss_bytes)),
            Some((5, Some(300 << 20)))
        );
        let (e, _) = gather(
            &tl,
            &error(None, "unix:/x"),
            t(200),
            Some("api"),
            false,
            &mut claimed,
            w,
        );
        assert_eq!(failure_cause(&e), WorkerTimeout);

        // The master is stopped 3 s after an OOM kill in the pool.
        tl.push(
            t(300),
            api.clone(),
            EventKind::OomKill(OomKill {
                seq: 2,
                pid: 9,
                comm: "gunicorn".into(),
                slot: None,
                cgroup: None,
                memcg: true,
                rule: KillRule::Cgroup,
                anon_bytes: 1,
                file_bytes: 1,
                shmem_bytes: None,
            }),
        );
        tl.push(t(303), api.clone(), EventKind::MasterExit(p(1)));
        tl.push(
            t(305),
            api.clone(),
            failure(None, "unix:/x", Reason::SocketMissing),
        );
        let (e, _) = gather(
            &tl,
            &error(None, "unix:/x"),
            t(305),
            Some("api"),
            false,
            &mut claimed,
            w,
        );
        assert!(e.master_down && e.oom_before_master_down);
        assert_eq!(failure_cause(&e), PoolStoppedAfterOom);
        // Back up later: refusals then are not pool_down.
        tl.push(t(400), api.clone(), EventKind::MasterStart(p(2)));
        let (e, _) = gather(
            &tl,
            &error(None, "unix:/x"),
            t(405),
            Some("api"),
            false,
            &mut claimed,
            w,
        );
        assert!(!e.master_down);
        // No master event at all: what the pool index says now.
        let (e, _) = gather(
            &tl,
            &error(None, "unix:/x"),
            t(405),
            Some("web"),
            true,
            &mut claimed,
            w,
        );
        assert!(e.master_down);
    }

    /// A stopping master unlinks its socket at once and exits only after
    /// its graceful timeout: the refusals in between are the pool's stop,
    /// not `other` (found end to end: the first 502s after systemd's
    /// OOMPolicy=stop sent SIGTERM were judged before the master exited).
    #[test]
    fn a_master_shutting_down_is_down_before_it_exits() {
        let mut tl = Timeline::new(64);
        let api: Option<Arc<str>> = Some(Arc::from("api"));
        tl.push(
            t(10),
            api.clone(),
            EventKind::OomKill(OomKill {
                seq: 1,
                pid: 5,
                comm: "gunicorn".into(),
                slot: Some(0),
                cgroup: None,
                memcg: true,
                rule: KillRule::Cgroup,
                anon_bytes: 1,
                file_bytes: 1,
                shmem_bytes: None,
            }),
        );
        tl.push(t(10), api.clone(), EventKind::AppLog(AppLog::Shutdown));
        tl.push(
            t(10),
            api.clone(),
            failure(None, "unix:/x", Reason::SocketMissing),
        );
        let cause = |tl: &Timeline, at| {
            let (e, _) = gather(
                tl,
                &error(None, "unix:/x"),
                at,
                Some("api"),
                false,
                &mut BTreeSet::new(),
                Windows::default(),
            );
            failure_cause(&e)
        };
        assert_eq!(cause(&tl, t(10)), PoolStoppedAfterOom);
        // After the fact, the pool is gone and the kernel source tied the
        // kill to no pool: the pool's log says the victim was its worker.
        let mut after = Timeline::new(64);
        let kill = tl.iter().next().unwrap().kind.clone();
        after.push(
            t(5),
            api.clone(),
            EventKind::AppLog(AppLog::WorkerBooted { pid: 5 }),
        );
        after.push(t(10), None, kill);
        after.push(t(10), api.clone(), EventKind::AppLog(AppLog::Shutdown));
        after.push(
            t(10),
            api.clone(),
            failure(None, "unix:/x", Reason::SocketMissing),
        );
        assert_eq!(cause(&after, t(10)), PoolStoppedAfterOom);
        assert_eq!(kill_pool(&after, after.iter().nth(1).unwrap()), Some("api"));
        // Started again: a refusal then is not the stop's.
        let p = Process {
            pid: 2,
            started: t(20),
            slot: None,
        };
        tl.push(t(20), api.clone(), EventKind::MasterStart(p));
        tl.push(
            t(25),
            api.clone(),
            failure(None, "unix:/x", Reason::ConnectionRefused),
        );
        assert_eq!(cause(&tl, t(25)), Other);
    }

    /// systemd's OOMPolicy=stop: the kernel kills a worker serving a
    /// request, systemd stops the master at once, and the master stops its
    /// other workers, which may go before the victim has (found end to
    /// end: the request the kill cut was counted `other`). An end after
    /// the line did not cut the request; a graceful end after a kill is
    /// its consequence. A graceful end before the kill, or a second
    /// violent one, stays ambiguous.
    #[test]
    fn a_worker_that_ended_after_the_line_or_because_of_the_kill_did_not_cut_it() {
        let api: Option<Arc<str>> = Some(Arc::from("api"));
        let ms = |ms: u64| t(100) + Duration::from_millis(ms);
        let exit = |pid, status| {
            EventKind::WorkerExit(WorkerExit {
                process: Process {
                    pid,
                    started: t(0),
                    slot: Some(pid as usize),
                },
                status: Some(status),
                rss_bytes: Some(100 << 20),
                pss_bytes: None,
            })
        };
        // (the other worker's end: when, how; the line's time) -> cause.
        let cases: &[(&str, u64, ExitStatus, SystemTime, FailureCause)] = &[
            (
                "stopped after the line",
                700,
                ExitStatus::Exited(0),
                ms(432),
                WorkerOomKilled,
            ),
            (
                "stopped after the kill, before the victim went",
                415,
                ExitStatus::Exited(0),
                ms(432),
                WorkerOomKilled,
            ),
            (
                "stopped after the kill, a whole-second line",
                700,
                ExitStatus::Exited(0),
                t(100),
                WorkerOomKilled,
            ),
            (
                "stopped before the kill",
                300,
                ExitStatus::Exited(0),
                ms(432),
                Other,
            ),
            (
                "timed out after the kill",
                415,
                ExitStatus::Signaled(9),
                ms(432),
                Other,
            ),
        ];
        for (name, other_ms, status, line, want) in cases {
            let mut tl = Timeline::new(64);
            tl.push(
                ms(400),
                api.clone(),
                EventKind::OomKill(OomKill {
                    seq: 1,
                    pid: 5,
                    comm: "gunicorn".into(),
                    slot: Some(5),
                    cgroup: None,
                    memcg: true,
                    rule: KillRule::Live,
                    anon_bytes: 1,
                    file_bytes: 1,
                    shmem_bytes: None,
                }),
            );
            tl.push(ms(430), api.clone(), exit(5, ExitStatus::Signaled(9)));
            tl.push(t(100), api.clone(), EventKind::AppLog(AppLog::Shutdown));
            if *status == ExitStatus::Signaled(9) {
                tl.push(
                    t(100),
                    api.clone(),
                    EventKind::AppLog(AppLog::WorkerTimeout { pid: 6 }),
                );
            }
            tl.push(ms(*other_ms), api.clone(), exit(6, *status));
            tl.push(
                t(100),
                api.clone(),
                failure(Some(1), "unix:/x", Reason::PrematureClose),
            );
            let (e, dead) = gather(
                &tl,
                &error(Some(1), "unix:/x"),
                *line,
                Some("api"),
                false,
                &mut BTreeSet::new(),
                Windows::default(),
            );
            assert_eq!(failure_cause(&e), *want, "{name}: {e:?}");
            if *want == WorkerOomKilled {
                assert_eq!(dead.map(|d| d.pid), Some(5), "{name}");
            }
        }
    }

    /// Events arrive out of time order (a log read late, the kernel's ring
    /// replayed): the time index finds them by time, and the
    /// master's last word by time, not by arrival.
    #[test]
    fn the_time_ordered_view_of_a_timeline_that_arrived_out_of_order() {
        let mut tl = Timeline::new(64);
        let api: Option<Arc<str>> = Some(Arc::from("api"));
        let p = Process {
            pid: 1,
            started: t(0),
            slot: None,
        };
        tl.push(t(30), api.clone(), EventKind::MasterStart(p));
        tl.push(
            t(10),
            api.clone(),
            EventKind::AppLog(AppLog::WorkerBooted { pid: 3 }),
        );
        tl.push(t(20), api.clone(), EventKind::MasterExit(p));
        tl.push(
            t(5),
            api.clone(),
            EventKind::AppLog(AppLog::WorkerBooted { pid: 2 }),
        );
        let times: Vec<SystemTime> = tl.evidence(t(4), t(20)).map(|e| e.at).collect();
        assert_eq!(times, [t(5), t(10), t(20)]);
        assert!(tl.evidence(t(21), t(29)).next().is_none());
        // Down at 25 (its exit at 20 is its last word by then), up at 35.
        let down = |at| {
            gather(
                &tl,
                &error(None, "unix:/x"),
                at,
                Some("api"),
                false,
                &mut BTreeSet::new(),
                Windows {
                    near: Duration::from_secs(1),
                    ..Windows::default()
                },
            )
            .0
            .master_down
        };
        assert!(down(t(25)));
        assert!(!down(t(35)));
    }

    #[test]
    fn after_the_fact_a_kill_or_a_reap_line_is_a_worker_end() {
        let mut tl = Timeline::new(64);
        let api: Option<Arc<str>> = Some(Arc::from("api"));
        // No exit events: the pool source never saw these workers go.
        tl.push(
            t(50),
            api.clone(),
            EventKind::AppLog(AppLog::WorkerBooted { pid: 5 }),
        );
        tl.push(
            t(100),
            api.clone(),
            EventKind::OomKill(OomKill {
                seq: 1,
                pid: 5,
                comm: "gunicorn".into(),
                slot: Some(0),
                cgroup: None,
                memcg: true,
                rule: KillRule::Cgroup,
                anon_bytes: 300 << 20,
                file_bytes: 10 << 20,
                shmem_bytes: Some(0),
            }),
        );
        tl.push(
            t(199),
            api.clone(),
            EventKind::AppLog(AppLog::WorkerTimeout { pid: 6 }),
        );
        tl.push(
            t(200),
            api.clone(),
            EventKind::AppLog(AppLog::WorkerSignaled { pid: 6, signal: 9 }),
        );
        tl.push(
            t(300),
            api.clone(),
            EventKind::AppLog(AppLog::WorkerSignaled { pid: 7, signal: 11 }),
        );
        let w = Windows::default();
        let mut claimed = BTreeSet::new();
        let mut cause = |at| {
            let (e, dead) = gather(
                &tl,
                &error(None, "unix:/x"),
                at,
                Some("api"),
                false,
                &mut claimed,
                w,
            );
            (failure_cause(&e), dead.map(|d| (d.pid, d.rss_bytes)))
        };
        assert_eq!(cause(t(100)), (WorkerOomKilled, Some((5, Some(310 << 20)))));
        assert_eq!(cause(t(200)).0, WorkerTimeout);
        assert_eq!(cause(t(301)).0, WorkerCrashed);
        assert_eq!(cause(t(400)).0, Other);
    }

    /// An event as the timeline holds it, for the phases that read a slice.
    fn at(seq: u64, secs: u64, pool: Option<&str>, kind: EventKind) -> Event {
        Event {
            seq,
            at: t(secs),
            pool: pool.map(Arc::from),
            kind,
        }
    }

    fn kill(pid: i32, bytes: u64) -> EventKind {
        EventKind::OomKill(OomKill {
            seq: 1,
            pid,
            comm: "gunicorn".into(),
            slot: Some(2),
            cgroup: None,
            memcg: true,
            rule: KillRule::Cgroup,
            anon_bytes: bytes,
            file_bytes: 0,
            shmem_bytes: None,
        })
    }

    fn worker_exit(pid: i32, status: ExitStatus) -> WorkerExit {
        WorkerExit {
            process: Process {
                pid,
                started: t(0),
                slot: Some(1),
            },
            status: Some(status),
            rss_bytes: Some(100 << 20),
            pss_bytes: None,
        }
    }

    #[test]
    fn error_line_by_connection_is_the_last_attempt_and_by_upstream_the_nearest_unclaimed() {
        let mut no_status = failure(Some(7), "unix:/a", Reason::ResetByPeer);
        if let EventKind::UpstreamFailure(f) = &mut no_status {
            f.status = None;
        }
        let mut other_log = failure(None, "unix:/a", Reason::BacklogFull);
        if let EventKind::UpstreamFailure(f) = &mut other_log {
            f.log = Arc::from("other");
        }
        let events = [
            at(
                1,
                10,
                None,
                failure(Some(7), "unix:/a", Reason::ConnectionRefused),
            ),
            at(
                2,
                12,
                None,
                failure(Some(7), "unix:/a", Reason::PrematureClose),
            ),
            at(3, 11, None, no_status),
            at(4, 11, None, other_log),
            at(5, 9, None, failure(None, "unix:/a", Reason::Timeout)),
            at(6, 11, None, failure(None, "unix:/a", Reason::ResetByPeer)),
        ];
        let near: Vec<&Event> = events.iter().collect();
        let none = BTreeSet::new();
        let line = |err: &ServerError, claimed: &BTreeSet<u64>| {
            error_line(&near, err, t(11), claimed).map(|l| (l.seq, l.reason))
        };
        // By connection: the last attempt's line, though another is nearer.
        assert_eq!(
            line(&error(Some(7), "unix:/a"), &none),
            Some((2, Reason::PrematureClose))
        );
        // A connection number with no line of its own takes none by upstream.
        assert_eq!(line(&error(Some(8), "unix:/a"), &none), None);
        // By upstream and time: the nearest, then the next once it is claimed.
        assert_eq!(
            line(&error(None, "unix:/a"), &none),
            Some((6, Reason::ResetByPeer))
        );
        let claimed = BTreeSet::from([6]);
        // The nearest, the first of those equally near.
        assert_eq!(
            line(&error(None, "unix:/a"), &claimed),
            Some((1, Reason::ConnectionRefused))
        );
        assert_eq!(line(&error(None, "unix:/b"), &none), None);
    }

    #[test]
    fn master_state_from_its_last_change_and_a_kill_before_it_went() {
        let api: Option<Arc<str>> = Some(Arc::from("api"));
        let p = Process {
            pid: 1,
            started: t(0),
            slot: None,
        };
        let mut tl = Timeline::new(64);
        tl.push(t(10), api.clone(), EventKind::MasterStart(p));
        // The kernel source tied the kill to no pool; the pool's log says
        // the victim was its worker.
        tl.push(
            t(12),
            api.clone(),
            EventKind::AppLog(AppLog::WorkerBooted { pid: 5 }),
        );
        tl.push(t(25), None, kill(5, 1));
        tl.push(t(30), api.clone(), EventKind::AppLog(AppLog::Shutdown));
        let w = Windows::default();
        let state = |tl: &Timeline, to, down_now, w| master_state(tl, "api", to, down_now, w);
        assert_eq!(
            state(&tl, t(31), false, w),
            MasterState {
                down: true,
                oom_before_down: true
            }
        );
        let short = Windows {
            stop_after_oom: Duration::from_secs(2),
            ..w
        };
        assert_eq!(
            state(&tl, t(31), false, short),
            MasterState {
                down: true,
                oom_before_down: false
            }
        );
        // Up, and nothing known before its start but what the index says now.
        assert_eq!(state(&tl, t(20), true, w), MasterState::default());
        assert!(state(&tl, t(5), true, w).down);
        assert!(!state(&tl, t(5), false, w).down);
        tl.push(t(40), api.clone(), EventKind::MasterStart(p));
        assert_eq!(state(&tl, t(41), false, w), MasterState::default());
        assert_eq!(
            master_state(&tl, "web", t(41), false, w),
            MasterState::default()
        );
    }

    /// The exit judge's verdict, put beside the exit, is the reason; the
    /// table decides only for an exit not judged yet.
    #[test]
    fn a_seen_exit_has_the_reason_the_exit_judge_gave_it() {
        let x = worker_exit(5, ExitStatus::Exited(0));
        let end = |reason| {
            EventKind::WorkerEnd(crate::state::timeline::WorkerEnd {
                exit: x.clone(),
                reason,
                lifetime: Duration::from_secs(100),
            })
        };
        let exited = at(1, 100, Some("api"), EventKind::WorkerExit(x.clone()));
        let later = at(
            3,
            104,
            Some("api"),
            EventKind::WorkerExit(worker_exit(6, ExitStatus::Signaled(9))),
        );
        let judged = at(2, 100, Some("api"), end(ExitReason::Reload));
        let tl = Timeline::new(8);
        let w = exit_reason::Windows::default();
        let reasons = |near: &[&Event]| {
            let (ends, after) = seen_ends(&tl, near, "api", t(101), w);
            (ends.iter().map(|e| e.reason).collect::<Vec<_>>(), after)
        };
        assert_eq!(
            reasons(&[&exited, &judged, &later]),
            (vec![ExitReason::Reload], vec![6])
        );
        // Not judged yet: code 0 and nothing else is the table's max_requests.
        assert_eq!(
            reasons(&[&exited, &later]),
            (vec![ExitReason::MaxRequests], vec![6])
        );
        // A verdict on another process of the same pid is not this one's.
        let mut other = x.clone();
        other.process.started = t(50);
        let stale = at(
            2,
            100,
            Some("api"),
            EventKind::WorkerEnd(crate::state::timeline::WorkerEnd {
                exit: other,
                reason: ExitReason::Reload,
                lifetime: Duration::from_secs(50),
            }),
        );
        assert_eq!(reasons(&[&exited, &stale]).0, vec![ExitReason::MaxRequests]);
    }

    #[test]
    fn unseen_ends_from_kills_and_reap_lines_once_per_pid() {
        let mut tl = Timeline::new(16);
        let (api, web): (Option<Arc<str>>, _) = (Some(Arc::from("api")), Some(Arc::from("web")));
        tl.push(t(100), api.clone(), kill(5, 300 << 20));
        tl.push(
            t(100),
            api.clone(),
            EventKind::AppLog(AppLog::WorkerSignaled { pid: 5, signal: 9 }),
        );
        tl.push(
            t(101),
            api.clone(),
            EventKind::AppLog(AppLog::WorkerExited { pid: 6, code: 0 }),
        );
        tl.push(
            t(101),
            api.clone(),
            EventKind::AppLog(AppLog::WorkerSignaled { pid: 7, signal: 11 }),
        );
        tl.push(t(101), web, kill(8, 1));
        let near: Vec<&Event> = tl.evidence(t(99), t(102)).collect();
        let ends = unseen_ends(&tl, &near, "api", &[6], exit_reason::Windows::default());
        let got: Vec<_> = ends
            .iter()
            .map(|e| (e.dead.pid, e.reason, e.dead.rss_bytes))
            .collect();
        assert_eq!(
            got,
            [
                (5, ExitReason::OomKilled, Some(300 << 20)),
                (7, ExitReason::Signal, None)
            ]
        );
    }

    #[test]
    fn the_tally_counts_by_kind_and_leaves_out_graceful_ends_after_a_violent_one() {
        let end = |secs, reason, rss| End {
            reason,
            at: t(secs),
            dead: DeadWorker {
                pid: secs as i32,
                slot: None,
                rss_bytes: rss,
                pss_bytes: None,
            },
        };
        let (counts, dead) = tally(&[
            end(10, ExitReason::OomKilled, None),
            end(9, ExitReason::Reload, None),
            end(11, ExitReason::Shutdown, Some(1)),
            end(12, ExitReason::MaxRequests, Some(2)),
            end(13, ExitReason::Unknown, Some(3)),
        ]);
        assert_eq!(
            counts,
            WorkerEnds {
                oom_killed: 1,
                recycled: 1,
                other: 2,
                ..WorkerEnds::default()
            }
        );
        // The first counted whose memory is known.
        assert_eq!(dead.map(|d| d.pid), Some(12));
        assert_eq!(tally(&[]), (WorkerEnds::default(), None));
        let (counts, dead) = tally(&[end(5, ExitReason::Shutdown, None)]);
        assert_eq!((counts.other, dead.map(|d| d.pid)), (1, Some(5)));
    }

    #[test]
    fn a_kill_belongs_to_its_pool_or_to_the_pool_that_booted_the_victim() {
        let mut tl = Timeline::new(16);
        let boot = |pid| EventKind::AppLog(AppLog::WorkerBooted { pid });
        tl.push(t(5), Some(Arc::from("api")), boot(5));
        tl.push(t(8), Some(Arc::from("web")), boot(5));
        tl.push(t(30), Some(Arc::from("api")), boot(5));
        let seq = tl.push(t(10), None, kill(5, 1));
        let tied = tl.push(t(10), Some(Arc::from("db")), kill(6, 1));
        let event = |seq| tl.iter().find(|e| e.seq == seq).unwrap();
        // The latest boot of the pid before the kill, whatever came later.
        assert_eq!(kill_pool(&tl, event(seq)), Some("web"));
        assert_eq!(kill_pool(&tl, event(tied)), Some("db"));
        assert_eq!(kill_pool(&tl, event(1)), None, "not a kill");
        assert_eq!(booted(&tl, "api", 5), Some(t(5)));
        assert_eq!(booted(&tl, "db", 5), None);
    }
}
