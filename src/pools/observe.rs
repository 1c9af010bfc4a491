//! One pool: its master and workers, kept up to date by a cycle that reads
//! /proc and, between cycles, by the process events of the proc connector
//! (a fork of the master, an exit of a worker), and each process's memory,
//! CPU and file descriptors.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::{PoolConfig, Server};
use crate::state::timeline::ExitStatus;

use super::control::Control;
use super::listen;
use super::proc::{ProcId, ProcRoot, ReadFailure, StatBrief};
use super::process_table::{Finder, Lookup};
use super::servers::{self, ChildRole, Preset};
use super::slots::Slots;
use super::smaps::SmapsView;
use super::view::{Memory, PoolState, ReadErrors, WorkerState};

/// Sockets rarely change while a master lives; re-read them now and then
/// (and at once when the master changes). Reading them walks the host's
/// TCP sockets, so not often.
const LISTEN_REFRESH_CYCLES: u32 = 60;

/// What happened to one of the pool's processes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    WorkerSpawn,
    /// With the worker's memory at its last sample, and how it ended when
    /// the proc connector said.
    WorkerExit(Option<Memory>, Option<ExitStatus>),
    MasterStart,
    MasterExit,
}

/// One change, when it happened, to which process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolChange {
    pub change: Change,
    pub id: ProcId,
    pub slot: Option<usize>,
    pub at: SystemTime,
}

/// Per-pool bookkeeping that outlives one cycle.
#[derive(Debug)]
pub struct Tracker {
    pub name: Arc<str>,
    pub finder: Finder,
    slots: Slots,
    /// The last master seen, kept across down periods so that a comeback
    /// under a new pid counts as a restart.
    last_master: Option<ProcId>,
    /// The first observation sets the baseline: workers that existed
    /// before the exporter started are not counted as spawns.
    baseline_taken: bool,
    max_fds: HashMap<ProcId, Option<u64>>,
    /// Cycles until listening addresses are read again.
    listen_refresh: u32,
    /// Gunicorn's control socket, for a Gunicorn pool.
    pub control: Option<Control>,
    /// The server's rules over its children's titles; `None`: every child
    /// is a worker.
    preset: Option<&'static Preset>,
    /// Children whose title does not say yet what they are, with when they
    /// were first seen.
    pending: HashMap<ProcId, SystemTime>,
    /// Children that are not workers (mules, a spooler, a new master).
    others: HashSet<ProcId>,
    /// For a php-fpm master with several pools: the one counted.
    php_fpm_pool: Option<String>,
    /// Gunicorn workers whose title was checked once they were old enough
    /// to have set it.
    titled: HashSet<ProcId>,
    pub state: PoolState,
}

impl Tracker {
    pub fn new(name: &str, server: Server, finder: Finder, max_slots: usize) -> Tracker {
        Tracker::with_control(name, server, finder, max_slots, None)
    }

    /// A pool whose Gunicorn control socket is `control_socket` rather than
    /// the one found among its master's sockets.
    pub fn with_control(
        name: &str,
        server: Server,
        finder: Finder,
        max_slots: usize,
        control_socket: Option<std::path::PathBuf>,
    ) -> Tracker {
        Tracker {
            name: Arc::from(name),
            finder,
            slots: Slots::new(max_slots),
            last_master: None,
            baseline_taken: false,
            max_fds: HashMap::new(),
            listen_refresh: 0,
            control: (server == Server::Gunicorn).then(|| Control::new(control_socket)),
            preset: servers::preset(server),
            pending: HashMap::new(),
            others: HashSet::new(),
            php_fpm_pool: None,
            titled: HashSet::new(),
            state: PoolState::new(name, server),
        }
    }

    pub fn from_config(p: &PoolConfig) -> Tracker {
        let mut t = Tracker::with_control(
            &p.name,
            p.server,
            Finder::Config(p.matcher.clone()),
            p.max_slots,
            p.control_socket.clone(),
        );
        t.php_fpm_pool = p.php_fpm_pool.clone();
        t
    }

    /// Live workers and their slots (`None` past `max_slots`).
    pub fn workers(&self) -> impl Iterator<Item = (ProcId, Option<usize>)> + '_ {
        self.slots.all()
    }

    /// The master forked `id`, seen by the proc connector at `at`. With
    /// the child's stat (`born`, one read at the event), the worker is in
    /// the pool's state at once, with its slot, start time, RSS and CPU;
    /// PSS and USS follow from the smaps sampler. Without it (the child is
    /// gone already, its exit on its way), it is only on the timeline.
    pub fn forked(
        &mut self,
        id: ProcId,
        born: Option<&StatBrief>,
        units: &ProcRoot,
        at: SystemTime,
        changes: &mut Vec<PoolChange>,
    ) {
        if self.slots.contains(&id) {
            return;
        }
        // A child of a server with title rules has not set its title at
        // its fork: the next cycle decides what it is.
        if self.preset.is_some() {
            self.pending.entry(id).or_insert(at);
            return;
        }
        let slot = self.slots.add(id);
        self.state.spawns += 1;
        self.state.unslotted_workers = self.slots.unslotted_count();
        if let (Some(slot), Some(stat)) = (slot, born) {
            let w = WorkerState {
                id,
                slot,
                start_time: units.start_time_seconds(id.starttime),
                memory: Memory {
                    rss: units.pages_to_bytes(stat.rss_pages),
                    ..Memory::default()
                },
                open_fds: None,
                max_fds: None,
                cpu_seconds: Some(units.ticks_to_seconds(stat.utime + stat.stime)),
                heartbeat_age: None,
            };
            let at = self.state.workers.partition_point(|o| o.slot < slot);
            self.state.workers.insert(at, w);
        }
        changes.push(PoolChange {
            change: Change::WorkerSpawn,
            id,
            slot,
            at,
        });
    }

    /// A worker exited, seen by the proc connector at `at`. Returns false
    /// when `pid` is not a worker of this pool.
    pub fn exited(
        &mut self,
        pid: i32,
        status: Option<ExitStatus>,
        at: SystemTime,
        changes: &mut Vec<PoolChange>,
    ) -> bool {
        let Some(id) = self.slots.find_pid(pid) else {
            self.pending.retain(|id, _| id.pid != pid);
            self.others.retain(|id| id.pid != pid);
            return false;
        };
        let slot = self.slots.remove(&id);
        self.worker_gone(id, slot, status, at, changes);
        self.state.workers.retain(|w| w.id != id);
        self.state.unslotted_workers = self.slots.unslotted_count();
        true
    }

    fn worker_gone(
        &mut self,
        id: ProcId,
        slot: Option<usize>,
        status: Option<ExitStatus>,
        at: SystemTime,
        changes: &mut Vec<PoolChange>,
    ) {
        self.state.exits += 1;
        self.max_fds.remove(&id);
        let last = self.state.workers.iter().find(|w| w.id == id);
        changes.push(PoolChange {
            change: Change::WorkerExit(last.map(|w| w.memory), status),
            id,
            slot,
            at,
        });
    }

    /// One cycle. With `trust_events`, the worker set kept by the proc
    /// connector's events stands, and only its members are checked; else
    /// the master's children are looked up. Changes go to `changes`;
    /// returns the number of values that could not be read.
    pub fn observe(
        &mut self,
        lookup: &mut Lookup<'_>,
        smaps: &SmapsView,
        wall: SystemTime,
        trust_events: bool,
        changes: &mut Vec<PoolChange>,
    ) -> u64 {
        let master = lookup.find_master(&self.finder, &self.name, self.state.master);
        let baseline = !self.baseline_taken;
        self.baseline_taken = true;
        let master_changed = self.note_master(master, wall, changes);
        let root = lookup.root;
        let mut stats = HashMap::new();
        let live = match master {
            Some(_) if trust_events && !master_changed => self.members_alive(root, &mut stats),
            Some(m) => lookup.children(m),
            None => Vec::new(),
        };
        let mut numbers = HashMap::new();
        let live = match (self.preset, master) {
            (Some(p), Some(m)) => self.workers_among(p, m, live, lookup, wall, &mut numbers),
            _ if self.state.server == Server::Gunicorn => {
                self.without_new_masters(live, lookup, wall)
            }
            _ => live,
        };
        self.assign_slots(&live, &numbers, baseline, wall, changes);
        // After the workers are known: their fds tell the app's sockets
        // from Gunicorn's control socket.
        match master {
            Some(m) if self.listen_refresh == 0 => self.read_listeners(root, m, wall),
            Some(_) => self.listen_refresh -= 1,
            None => self.state.listen.clear(),
        }
        let errors = self.read_master(root, master, smaps);
        errors + self.read_workers(root, smaps, stats)
    }

    /// Take the master found this cycle: its start, the old one's exit, a
    /// restart. Returns whether it changed.
    fn note_master(
        &mut self,
        master: Option<ProcId>,
        wall: SystemTime,
        changes: &mut Vec<PoolChange>,
    ) -> bool {
        self.state.up = master.is_some();
        if self.state.master == master {
            return false;
        }
        let change = |change, id| PoolChange {
            change,
            id,
            slot: None,
            at: wall,
        };
        if let Some(old) = self.state.master {
            changes.push(change(Change::MasterExit, old));
        }
        if let Some(new) = master {
            if self.last_master.is_some_and(|l| l != new) {
                self.state.master_restarts += 1;
            }
            self.last_master = Some(new);
            changes.push(change(Change::MasterStart, new));
        }
        self.state.master = master;
        self.listen_refresh = 0;
        true
    }

    /// The workers and undecided children the events kept that still live
    /// (an exit event may have been lost), with the stat read to check
    /// each, which the CPU figure needs anyway, in `stats`.
    fn members_alive(
        &self,
        root: &ProcRoot,
        stats: &mut HashMap<ProcId, StatBrief>,
    ) -> Vec<ProcId> {
        let members: Vec<ProcId> = self
            .slots
            .all()
            .map(|(id, _)| id)
            .chain(self.pending.keys().copied())
            .collect();
        members
            .into_iter()
            .filter_map(|id| {
                let s = root.stat(id.pid).ok()?;
                (s.identity(id.pid) == Some(id)).then(|| {
                    stats.insert(id, s);
                    id
                })
            })
            .collect()
    }

    /// Give the live workers their slots; the workers gone and new go to
    /// `changes` (a new one is not a spawn on the first cycle, the
    /// baseline).
    fn assign_slots(
        &mut self,
        live: &[ProcId],
        numbers: &HashMap<ProcId, usize>,
        baseline: bool,
        wall: SystemTime,
        changes: &mut Vec<PoolChange>,
    ) {
        let slot_changes = self.slots.observe_numbered(live, numbers);
        for (id, slot) in &slot_changes.exited {
            self.worker_gone(*id, *slot, None, wall, changes);
        }
        for (id, slot) in &slot_changes.spawned {
            if !baseline {
                self.state.spawns += 1;
            }
            changes.push(PoolChange {
                change: Change::WorkerSpawn,
                id: *id,
                slot: *slot,
                at: wall,
            });
        }
    }

    /// The master's memory. Returns the number of values that could not
    /// be read.
    fn read_master(&mut self, root: &ProcRoot, master: Option<ProcId>, smaps: &SmapsView) -> u64 {
        let Some(m) = master else {
            self.state.master_memory = Memory::default();
            return 0;
        };
        match root
            .stat(m.pid)
            .and_then(|s| read_memory(root, m, &s, smaps))
        {
            Ok(mem) => {
                self.state.master_memory = mem;
                0
            }
            Err(f) => count_failure(&mut self.state.read_errors, f),
        }
    }

    /// Each slotted worker's memory, CPU and fds, with the stats read
    /// already (`stats`) used again. Returns the number of values that
    /// could not be read.
    fn read_workers(
        &mut self,
        root: &ProcRoot,
        smaps: &SmapsView,
        mut stats: HashMap<ProcId, StatBrief>,
    ) -> u64 {
        let mut errors = 0;
        self.state.workers.clear();
        let assigned = self.slots.assigned();
        let mut workers = Vec::with_capacity(assigned.len());
        for (id, slot) in assigned {
            // One stat read gives both RSS and CPU time.
            let stat = match stats.remove(&id) {
                Some(s) => Ok(s),
                None => root.stat(id.pid),
            };
            let read = stat.and_then(|s| Ok((read_memory(root, id, &s, smaps)?, s)));
            let (memory, stat) = match read {
                Ok(m) => m,
                Err(f) => {
                    errors += count_failure(&mut self.state.read_errors, f);
                    continue;
                }
            };
            let cpu_seconds = Some(root.ticks_to_seconds(stat.utime + stat.stime));
            let (open_fds, max_fds, e) = self.read_fds(root, id);
            errors += e;
            workers.push(WorkerState {
                id,
                slot,
                start_time: root.start_time_seconds(id.starttime),
                memory,
                open_fds,
                max_fds,
                cpu_seconds,
                heartbeat_age: None,
            });
        }
        self.state.workers = workers;
        self.state.unslotted_workers = self.slots.unslotted_count();
        errors
    }

    /// The workers among the master's children `live`, by the server's
    /// title rules; `numbers` gets the number the server gives each new
    /// one. Children not yet titled wait up to [`servers::UNDECIDED_GRACE`].
    fn workers_among(
        &mut self,
        p: &'static Preset,
        master: ProcId,
        live: Vec<ProcId>,
        lookup: &mut Lookup<'_>,
        wall: SystemTime,
        numbers: &mut HashMap<ProcId, usize>,
    ) -> Vec<ProcId> {
        // Read only when a child needs deciding: most cycles none does.
        let mut master_cmdline: Option<Option<String>> = None;
        let mut workers = Vec::with_capacity(live.len());
        for id in &live {
            if self.slots.contains(id) {
                workers.push(*id);
                continue;
            }
            if self.others.contains(id) {
                continue;
            }
            let cmdline = lookup.cmdline(id.pid);
            let master_cmdline = master_cmdline.get_or_insert_with(|| lookup.cmdline(master.pid));
            let mut role = cmdline.as_deref().map_or(ChildRole::Undecided, |c| {
                servers::child_role(p, c, master_cmdline.as_deref())
            });
            // A child of another pool of the same php-fpm master.
            if let (Some(want), Some(c), ChildRole::Worker(_)) =
                (&self.php_fpm_pool, cmdline.as_deref(), role)
            {
                if servers::php_fpm_pool(c) != Some(want.as_str()) {
                    role = ChildRole::Other;
                }
            }
            match role {
                ChildRole::Worker(n) => {
                    self.pending.remove(id);
                    if let Some(n) = n {
                        numbers.insert(*id, n);
                    }
                    workers.push(*id);
                }
                ChildRole::Other => {
                    self.pending.remove(id);
                    self.others.insert(*id);
                }
                ChildRole::Undecided => {
                    let first = *self.pending.entry(*id).or_insert(wall);
                    if wall.duration_since(first).unwrap_or_default() >= servers::UNDECIDED_GRACE {
                        self.pending.remove(id);
                        workers.push(*id);
                    }
                }
            }
        }
        self.pending.retain(|id, _| live.contains(id));
        self.others.retain(|id| live.contains(id));
        workers
    }

    /// Gunicorn's children without a new master forked by a USR2 hot
    /// restart: with setproctitle, a child still titled `gunicorn: master`
    /// [`servers::UNDECIDED_GRACE`] after its start is one (a worker
    /// retitles itself as it boots). It leaves the pool without counting
    /// as an exit. Without setproctitle the titles are the same, and it
    /// stays counted as a worker.
    fn without_new_masters(
        &mut self,
        live: Vec<ProcId>,
        lookup: &mut Lookup<'_>,
        wall: SystemTime,
    ) -> Vec<ProcId> {
        let root = lookup.root;
        let mut kept = Vec::with_capacity(live.len());
        for id in &live {
            if self.titled.contains(id) {
                kept.push(*id);
                continue;
            }
            if self.others.contains(id) {
                continue;
            }
            let age = wall
                .duration_since(root.start_time(id.starttime))
                .unwrap_or_default();
            if age < servers::UNDECIDED_GRACE {
                kept.push(*id);
                continue;
            }
            match lookup.cmdline(id.pid) {
                Some(c) if c.starts_with("gunicorn: master") => {
                    self.others.insert(*id);
                    self.slots.remove(id);
                    self.state.workers.retain(|w| w.id != *id);
                }
                Some(_) => {
                    self.titled.insert(*id);
                    kept.push(*id);
                }
                // Gone, or unreadable: as before.
                None => kept.push(*id),
            }
        }
        self.titled.retain(|id| live.contains(id));
        self.others.retain(|id| live.contains(id));
        kept
    }

    /// The master's listening sockets, without its control socket.
    fn read_listeners(&mut self, root: &ProcRoot, master: ProcId, wall: SystemTime) {
        self.listen_refresh = LISTEN_REFRESH_CYCLES;
        let sockets = root
            .process(master.pid)
            .and_then(|p| listen::listen_sockets(&p))
            .map_err(|e| e.to_string());
        if let Some(c) = &mut self.control {
            let age = wall
                .duration_since(root.start_time(master.starttime))
                .unwrap_or_default();
            let workers = self.slots.all().map(|(id, _)| id);
            if c.locate(root, master, &sockets, workers, age) {
                self.listen_refresh = 0;
            }
        }
        let mut sockets = sockets.unwrap_or_default();
        if let Some(c) = &self.control {
            sockets.retain(|l| !c.is_control(l));
        }
        self.state.listen = sockets;
    }

    fn read_fds(&mut self, root: &ProcRoot, id: ProcId) -> (Option<u64>, Option<u64>, u64) {
        let mut errors = 0;
        let open = match root.open_fds(id.pid) {
            Ok(n) => Some(n),
            Err(f) => {
                errors += count_failure(&mut self.state.read_errors, f);
                None
            }
        };
        // The limit rarely changes in a worker's life; read it once.
        let max = match self.max_fds.get(&id) {
            Some(m) => *m,
            None => match root.max_fds(id.pid) {
                Ok(m) => {
                    self.max_fds.insert(id, m);
                    m
                }
                Err(f) => {
                    errors += count_failure(&mut self.state.read_errors, f);
                    None
                }
            },
        };
        (open, max, errors)
    }
}

/// RSS from this cycle's stat; PSS, USS and swap as the smaps sampler
/// last read them (PSS and USS capped at RSS: they are older, and can
/// exceed it at no instant). Where smaps cannot be read (another user's
/// process), swap comes from status, which anyone may read.
fn read_memory(
    root: &ProcRoot,
    id: ProcId,
    stat: &StatBrief,
    smaps: &SmapsView,
) -> Result<Memory, ReadFailure> {
    let rss = root.pages_to_bytes(stat.rss_pages);
    Ok(match smaps.memory.get(&id) {
        Some(&figures) => Memory::with_smaps(rss, figures),
        None => Memory {
            rss,
            swap: root.status_memory(id.pid)?.swap_bytes,
            pss: None,
            uss: None,
        },
    })
}

/// Count a read failure; `Gone` is churn, not an error.
fn count_failure(errors: &mut ReadErrors, f: ReadFailure) -> u64 {
    match f {
        ReadFailure::Gone => 0,
        ReadFailure::PermissionDenied => {
            errors.permission_denied += 1;
            1
        }
        ReadFailure::Other => {
            errors.other += 1;
            1
        }
    }
}
