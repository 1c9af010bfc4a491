//! The pool source: app-server masters, their workers and their memory,
//! read from /proc.
//!
//! - [`view`]: what it publishes;
//! - [`process_table`]: finding masters and workers for one cycle;
//! - [`observe`]: one pool, one cycle (slots, memory, fds);
//! - [`proc`], [`discover`], [`listen`], [`slots`]: the readers and pure
//!   rules underneath.
//!
//! Each cycle publishes a [`PoolsView`] for the outputs, a [`PoolIndex`]
//! for the other sources, and puts spawns and exits on the timeline.

pub mod discover;
pub mod listen;
pub mod observe;
pub mod proc;
pub mod process_table;
pub mod slots;
pub mod view;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{PoolConfig, Server, DEFAULT_MAX_SLOTS};
use crate::state::pool_index::PoolMembers;
use crate::state::timeline::{EventKind, Process, WorkerExit};
use crate::state::{PoolIndex, Published, Sinks};
use observe::{Change, Tracker};
use proc::{ProcId, ProcRoot};
use process_table::{Finder, Lookup};
pub use view::{Memory, PoolState, PoolsView, ReadErrors, WorkerState};

/// What the pool source reads, and how often and how hard it works.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// procfs mount point (or a fixture tree).
    pub procfs: PathBuf,
    /// Pools by name, from the config file.
    pub pools: Vec<PoolConfig>,
    /// Also pick up Gunicorn masters not configured by name.
    pub discover_gunicorn: bool,
    pub interval: Duration,
    pub smaps_interval: Duration,
    /// Skip smaps_rollup for a process whose RSS is above this; its page
    /// walk is proportional to RSS and holds the mmap lock meanwhile.
    pub smaps_max_rss: u64,
    /// How often to look for new Gunicorn masters when discovery is on.
    pub discover_interval: Duration,
    pub max_discovered: usize,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            procfs: PathBuf::from("/proc"),
            pools: Vec::new(),
            discover_gunicorn: false,
            interval: Duration::from_secs(5),
            smaps_interval: Duration::from_secs(15),
            smaps_max_rss: 16 << 30,
            discover_interval: Duration::from_secs(30),
            max_discovered: 32,
        }
    }
}

/// The health `source` label of a pool's /proc reads.
pub fn health_source(pool: &str) -> String {
    format!("pool/{pool}")
}

pub struct PoolSource {
    root: ProcRoot,
    opts: PoolOptions,
    sinks: Sinks,
    trackers: Vec<Tracker>,
    last_discovery: Option<Instant>,
    /// Whether /proc/PID/task/TID/children exists; `None` until known.
    children_files: Option<bool>,
    view: Arc<Published<PoolsView>>,
    index: Arc<Published<PoolIndex>>,
}

impl PoolSource {
    pub fn new(opts: PoolOptions, sinks: Sinks) -> PoolSource {
        PoolSource {
            root: ProcRoot::new(&opts.procfs),
            trackers: opts.pools.iter().map(Tracker::from_config).collect(),
            opts,
            sinks,
            last_discovery: None,
            children_files: None,
            view: Published::new(PoolsView::default()),
            index: Published::new(PoolIndex::default()),
        }
    }

    /// What the outputs read: every pool's state.
    pub fn view(&self) -> Arc<Published<PoolsView>> {
        self.view.clone()
    }

    /// What the other sources read: members and listeners of each pool.
    pub fn index(&self) -> Arc<Published<PoolIndex>> {
        self.index.clone()
    }

    /// One cycle: read every pool, put its changes on the timeline, and
    /// publish. Returns the number of values that could not be read.
    pub fn collect(&mut self, now: Instant) -> u64 {
        let cap = self.opts.max_discovered + self.configured();
        let mut lookup = Lookup::new(&self.root, &mut self.children_files);
        lookup.discovery_due = self.opts.discover_gunicorn
            && self
                .last_discovery
                .is_none_or(|at| now.duration_since(at) >= self.opts.discover_interval);
        if lookup.discovery_due {
            self.last_discovery = Some(now);
            for (name, _) in lookup.gunicorn_masters() {
                let known = self.trackers.iter().any(|t| *t.name == *name);
                if !known && self.trackers.len() < cap {
                    tracing::info!(pool = %name, "discovered gunicorn master");
                    self.trackers.push(Tracker::new(
                        &name,
                        Server::Gunicorn,
                        Finder::Gunicorn,
                        DEFAULT_MAX_SLOTS,
                    ));
                }
            }
        }
        let mut errors = 0;
        let wall = SystemTime::now();
        let mut changes = Vec::new();
        for t in &mut self.trackers {
            let before = t.state.read_errors.clone();
            let e = t.observe(&mut lookup, &self.opts, now, &mut changes);
            errors += e;
            let after = &t.state.read_errors;
            let result = match e {
                0 => Ok(()),
                n => Err(format!(
                    "{n} values of the pool's processes could not be read ({} permission denied, {} other)",
                    after.permission_denied - before.permission_denied,
                    after.other - before.other,
                )),
            };
            self.sinks.health.report(&health_source(&t.name), result);
            for (change, id, slot) in changes.drain(..) {
                let p = Process {
                    pid: id.pid,
                    started: self.root.start_time(id.starttime),
                    slot,
                };
                let kind = match change {
                    Change::WorkerSpawn => EventKind::WorkerSpawn(p),
                    Change::WorkerExit(memory) => EventKind::WorkerExit(WorkerExit {
                        process: p,
                        status: None,
                        rss_bytes: memory.map(|m| m.rss),
                        pss_bytes: memory.and_then(|m| m.pss),
                    }),
                    Change::MasterStart => EventKind::MasterStart(p),
                    Change::MasterExit => EventKind::MasterExit(p),
                };
                self.sinks.timeline.push(wall, Some(t.name.clone()), kind);
            }
        }
        errors += lookup.scan_errors;
        self.publish();
        errors
    }

    fn configured(&self) -> usize {
        self.trackers
            .iter()
            .filter(|t| matches!(t.finder, Finder::Config(_)))
            .count()
    }

    fn publish(&self) {
        let mut pools: Vec<PoolState> = self.trackers.iter().map(|t| t.state.clone()).collect();
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        self.view.publish(PoolsView {
            pools,
            children_files: self.children_files,
        });
        let process = |id: ProcId, slot| Process {
            pid: id.pid,
            started: self.root.start_time(id.starttime),
            slot,
        };
        let index = PoolIndex {
            pools: self
                .trackers
                .iter()
                .map(|t| PoolMembers {
                    name: t.name.clone(),
                    master: t.state.master.map(|m| process(m, None)),
                    workers: t
                        .state
                        .workers
                        .iter()
                        .map(|w| process(w.id, Some(w.slot)))
                        .collect(),
                    listeners: t.state.listen.clone(),
                })
                .collect(),
        };
        self.index.publish(index);
    }

    /// Run forever on the calling thread, one cycle every interval.
    pub fn run(mut self) -> ! {
        let (sinks, interval) = (self.sinks.clone(), self.opts.interval);
        sinks.run_loop("pools", interval, || (self.collect(Instant::now()), true))
    }
}
