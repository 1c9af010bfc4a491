//! The process events between two cycles, applied to the pools: a fork of a
//! master is a new worker, in the pool's state at once with its slot, start
//! time and RSS; the exit of a worker is that, with its wait status; the
//! exit of a master asks for a cycle. A pure step over the trackers and one
//! batch of events (the child's stat comes through `born`), tested on
//! captures of real events.

use std::time::{Duration, SystemTime};

use crate::netlink::proc_connector::{EventKind, ExitOutcome, ProcEvent};
use crate::state::timeline::ExitStatus;

use super::observe::{Change, PoolChange, Tracker};
use super::proc::{ProcId, ProcRoot, StatBrief};

/// What one batch of events did.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    /// The pools' changes, as (tracker index, change), in event order.
    pub changes: Vec<(usize, PoolChange)>,
    /// A master exited: the caller runs a cycle at once.
    pub master_gone: bool,
}

impl Applied {
    /// Workers forked minus workers ended, in tracker `i`.
    pub fn net_workers(&self, i: usize) -> i64 {
        self.changes
            .iter()
            .filter(|(t, _)| *t == i)
            .map(|(_, c)| match c.change {
                Change::WorkerSpawn => 1,
                Change::WorkerExit(..) => -1,
                _ => 0,
            })
            .sum()
    }

    /// Trackers that gained a worker.
    pub fn forked(&self) -> impl Iterator<Item = usize> + '_ {
        self.changes
            .iter()
            .filter(|(_, c)| c.change == Change::WorkerSpawn)
            .map(|(t, _)| *t)
    }
}

/// Apply `events`, in order, to `trackers`. `born(pid)` is a forked
/// child's stat, read once at its event (`None`: gone already, or
/// unreadable); `units` turns ticks and pages into seconds and bytes;
/// `boot` is the wall-clock time at which the events' clock read 0.
pub fn apply(
    trackers: &mut [Tracker],
    events: &[ProcEvent],
    units: &ProcRoot,
    boot: SystemTime,
    mut born: impl FnMut(i32) -> Option<StatBrief>,
) -> Applied {
    let mut out = Applied::default();
    let mut changes = Vec::new();
    for ev in events {
        let at = boot + Duration::from_nanos(ev.timestamp_ns);
        match ev.kind {
            EventKind::Fork { parent, child } if !child.is_thread() => {
                let Some(i) = trackers
                    .iter()
                    .position(|t| t.state.master.is_some_and(|m| m.pid == parent.tgid))
                else {
                    continue;
                };
                // The child's identity from its stat; if it is gone
                // already, from the event's clock.
                let stat = born(child.pid).filter(|s| s.identity(child.pid).is_some());
                let id = ProcId {
                    pid: child.pid,
                    starttime: stat
                        .map_or_else(|| units.ticks_since_boot(ev.timestamp_ns), |s| s.starttime),
                };
                trackers[i].forked(id, stat.as_ref(), units, at, &mut changes);
                out.changes.extend(changes.drain(..).map(|c| (i, c)));
            }
            EventKind::Exit { task, status, .. } if !task.is_thread() => {
                let status = match status.outcome() {
                    ExitOutcome::Exited(c) => ExitStatus::Exited(c),
                    ExitOutcome::Signaled { signal, .. } => ExitStatus::Signaled(signal),
                };
                for (i, t) in trackers.iter_mut().enumerate() {
                    if t.state.master.is_some_and(|m| m.pid == task.pid) {
                        out.master_gone = true;
                    } else if t.exited(task.pid, Some(status), at, &mut changes) {
                        out.changes.extend(changes.drain(..).map(|c| (i, c)));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::Server;
    use crate::netlink::fixture;
    use crate::netlink::proc_connector::{parse_messages, Message};
    use crate::pools::process_table::Finder;

    /// The captured events of tools/capture_pool_events.py, and the pids
    /// its MANIFEST names.
    fn captured(name: &str) -> (Vec<ProcEvent>, HashMap<String, String>) {
        let (bytes, facts) = fixture::load(name);
        let events = parse_messages(&bytes)
            .map(|m| match m.expect("a well-formed capture") {
                Message::Event(e) => e,
                other => panic!("not an event: {other:?}"),
            })
            .collect();
        (events, facts)
    }

    fn units() -> ProcRoot {
        ProcRoot::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/proc/gunicorn_plain"
        ))
    }

    /// A pool whose master is `master`, as a cycle would have found it.
    fn pool(master: i32) -> Tracker {
        let mut t = Tracker::new("app", Server::Gunicorn, Finder::Gunicorn, 4);
        t.state.master = Some(ProcId {
            pid: master,
            starttime: 1,
        });
        t.state.up = true;
        t
    }

    /// A live child's stat: 2,000 resident pages, started 5 ticks after
    /// the master.
    fn alive(_pid: i32) -> Option<StatBrief> {
        Some(StatBrief {
            state: b'S',
            ppid: 1,
            utime: 3,
            stime: 1,
            starttime: 6,
            rss_pages: 2_000,
            vsize_bytes: 64 << 20,
        })
    }

    /// The view a scrape would see: each worker's (slot, pid).
    fn slots(t: &Tracker) -> Vec<(usize, i32)> {
        t.state.workers.iter().map(|w| (w.slot, w.id.pid)).collect()
    }

    fn pid(facts: &HashMap<String, String>, k: &str) -> i32 {
        fixture::num(facts, k)
    }

    #[test]
    fn a_fork_is_a_worker_with_slot_rss_and_start_time_at_once() {
        let (events, f) = captured("proc_pool_exit_then_fork.bin");
        let mut ts = [pool(pid(&f, "master"))];
        let units = units();
        // The first two forks alone: both workers are in the view.
        let applied = apply(&mut ts, &events[..2], &units, SystemTime::UNIX_EPOCH, alive);
        assert_eq!(applied.net_workers(0), 2);
        assert_eq!(slots(&ts[0]), [(0, pid(&f, "a")), (1, pid(&f, "b"))]);
        let w = &ts[0].state.workers[0];
        assert_eq!(w.memory.rss, units.pages_to_bytes(2_000));
        assert_eq!(
            (w.memory.pss, w.memory.uss),
            (None, None),
            "PSS comes from smaps"
        );
        assert_eq!(w.start_time, units.start_time_seconds(6));
        assert_eq!(w.cpu_seconds, Some(units.ticks_to_seconds(4)));
        assert_eq!(w.heartbeat_age, None);
        assert_eq!(ts[0].state.live_workers(), 2);
        assert_eq!(ts[0].state.spawns, 2);
    }

    #[test]
    fn exit_then_fork_leaves_the_pool_as_full_as_before() {
        let (events, f) = captured("proc_pool_exit_then_fork.bin");
        let mut ts = [pool(pid(&f, "master"))];
        let units = units();
        apply(&mut ts, &events[..2], &units, SystemTime::UNIX_EPOCH, alive);
        // The exit and the fork that replaces it, in one batch.
        let applied = apply(&mut ts, &events[2..], &units, SystemTime::UNIX_EPOCH, alive);
        assert_eq!(applied.net_workers(0), 0);
        assert!(!applied.master_gone);
        // The replacement takes the freed slot.
        assert_eq!(slots(&ts[0]), [(0, pid(&f, "c")), (1, pid(&f, "b"))]);
        let kinds: Vec<_> = applied.changes.iter().map(|(_, c)| c.change).collect();
        assert!(
            matches!(
                kinds[..],
                [
                    Change::WorkerExit(_, Some(ExitStatus::Exited(0))),
                    Change::WorkerSpawn
                ]
            ),
            "{kinds:?}"
        );
        assert_eq!((ts[0].state.spawns, ts[0].state.exits), (3, 1));
    }

    #[test]
    fn fork_then_exit_never_shows_fewer_workers() {
        let (events, f) = captured("proc_pool_fork_then_exit.bin");
        let mut ts = [pool(pid(&f, "master"))];
        let units = units();
        let mut counts = Vec::new();
        for ev in events.chunks(1) {
            apply(&mut ts, ev, &units, SystemTime::UNIX_EPOCH, alive);
            counts.push(ts[0].state.live_workers());
        }
        assert_eq!(counts, [1, 2, 3, 2]);
        assert_eq!(slots(&ts[0]), [(1, pid(&f, "b")), (2, pid(&f, "c"))]);
        let exit = ts[0].state.exits;
        assert_eq!(exit, 1);
    }

    #[test]
    fn a_burst_of_recycles_keeps_the_count_and_the_slots() {
        let (events, f) = captured("proc_pool_recycle_burst.bin");
        let workers: usize = fixture::num(&f, "workers");
        let recycles: u64 = fixture::num(&f, "recycles");
        let mut ts = [pool(pid(&f, "master"))];
        let units = units();
        // Event by event, the view counts every fork and every exit at
        // once: forks so far minus exits so far. The master sometimes
        // reaps two workers before it forks their replacements, so a
        // single event may leave the pool two short, never more than it
        // has.
        let mut counts = Vec::new();
        let mut expected = Vec::new();
        let mut live = 0i64;
        for ev in events.chunks(1) {
            apply(&mut ts, ev, &units, SystemTime::UNIX_EPOCH, alive);
            counts.push(ts[0].state.live_workers() as i64);
            live += match ev[0].kind {
                EventKind::Fork { .. } => 1,
                EventKind::Exit { .. } => -1,
                _ => 0,
            };
            expected.push(live);
        }
        assert_eq!(counts, expected);
        assert!(counts.iter().all(|&n| n <= workers as i64), "{counts:?}");
        let counts: Vec<usize> = counts.iter().map(|&n| n as usize).collect();
        assert_eq!(*counts.last().unwrap(), workers);
        assert_eq!(
            (ts[0].state.spawns, ts[0].state.exits),
            (workers as u64 + recycles, recycles)
        );
        let mut slot_ids: Vec<usize> = ts[0].state.workers.iter().map(|w| w.slot).collect();
        slot_ids.sort();
        assert_eq!(slot_ids, (0..workers).collect::<Vec<_>>());

        // The whole burst as one batch ends the same way.
        let mut once = [pool(pid(&f, "master"))];
        let applied = apply(&mut once, &events, &units, SystemTime::UNIX_EPOCH, alive);
        assert_eq!(applied.net_workers(0), workers as i64);
        assert_eq!(slots(&once[0]), slots(&ts[0]));
    }

    #[test]
    fn a_master_that_execs_keeps_its_pool_and_its_workers() {
        let (events, f) = captured("proc_pool_master_reexec.bin");
        let master = pid(&f, "master");
        let mut ts = [pool(master)];
        let units = units();
        let applied = apply(&mut ts, &events, &units, SystemTime::UNIX_EPOCH, alive);
        assert!(events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Exec { task } if task.pid == master)));
        assert!(!applied.master_gone);
        // The two from before the exec, and the one forked after it.
        assert_eq!(ts[0].state.live_workers(), 3);
        let pids: Vec<i32> = slots(&ts[0]).iter().map(|(_, p)| *p).collect();
        assert_eq!(pids[..2], [pid(&f, "a"), pid(&f, "b")]);
    }

    #[test]
    fn a_child_gone_before_its_stat_is_read_is_on_the_timeline_only() {
        let (events, f) = captured("proc_pool_exit_then_fork.bin");
        let mut ts = [pool(pid(&f, "master"))];
        let units = units();
        let applied = apply(&mut ts, &events, &units, SystemTime::UNIX_EPOCH, |_| None);
        // Spawns and the exit are there for the rules; the view counts
        // only what it could read.
        assert_eq!(applied.changes.len(), 4);
        assert_eq!(ts[0].state.live_workers(), 0);
        // The next cycle reads them.
        let ids: Vec<i32> = ts[0].workers().map(|(id, _)| id.pid).collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
    }

    #[test]
    fn events_of_other_processes_change_nothing() {
        let (events, _) = captured("proc_pool_recycle_burst.bin");
        let mut ts = [pool(1)];
        let applied = apply(&mut ts, &events, &units(), SystemTime::UNIX_EPOCH, alive);
        assert_eq!(applied, Applied::default());
        assert_eq!(ts[0].state.live_workers(), 0);
    }
}
