//! The pool source: app-server masters, their workers and their memory,
//! read from /proc and followed between reads by the kernel's process
//! events.
//!
//! - [`view`]: what it publishes;
//! - [`process_table`]: finding masters and workers for one cycle;
//! - [`observe`]: one pool: its cycle, and the forks and exits between;
//! - [`control`]: Gunicorn's control socket: heartbeats, Gunicorn's own
//!   counts, and its reloads on the timeline;
//! - [`listen_queue`]: the listen queues of the pools' sockets, sampled on
//!   a loop of their own between cycles;
//! - [`self_usage`]: the exporter's own process, for the `process_*`
//!   families, on a loop of its own;
//! - [`proc`], [`discover`], [`listen`], [`slots`]: the readers and pure
//!   rules underneath.
//!
//! With the proc connector (`crate::netlink::proc_connector`) a fork of a
//! master is a new worker at once and a worker's exit comes with its wait
//! status, so a worker spawned and OOM-killed between two cycles is still
//! attributed to its pool, and a cycle need not read the whole process
//! table: it checks the workers it knows. Every
//! [`RECONCILE_EVERY`] cycles, after a lost event, or without the
//! connector, the cycle looks the master's children up instead.
//!
//! Each cycle publishes a [`PoolsView`] for the outputs, a [`PoolIndex`]
//! for the other sources, and puts spawns and exits on the timeline.

pub mod control;
pub mod discover;
pub mod events;
pub mod gone;
pub mod listen;
pub mod listen_queue;
pub mod observe;
pub mod proc;
pub mod process_table;
pub mod self_usage;
pub mod server_status;
pub mod servers;
pub mod slots;
pub mod smaps;
pub mod status_client;
pub mod status_json;
pub mod view;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{PoolConfig, Server, DEFAULT_MAX_SLOTS};
use crate::gunicorn::control::ControlOptions;
use crate::netlink::proc_connector::{ProcConnector, ProcConnectorOptions, ProcEvent};
use crate::state::health::SourceLabel;
use crate::state::pool_index::{PoolListener, PoolMembers};
use crate::state::timeline::{AppLog, EventKind, Process, WorkerExit};
use crate::state::{thread_cpu_seconds, PoolIndex, Published, Sinks, Source, Stepped};
use control::Poll;
use listen::ListenAddr;
use observe::{Change, PoolChange, Tracker};
use proc::{ProcId, ProcRoot};
use process_table::{Finder, Lookup};
use smaps::{SmapsOptions, SmapsSampler, SmapsView};
pub use view::{GunicornStats, Memory, PoolState, PoolsView, ReadErrors, WorkerState};

/// What the pool source reads, and how often and how hard it works.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// procfs mount point (or a fixture tree).
    pub procfs: PathBuf,
    /// Pools by name, from the config file.
    pub pools: Vec<PoolConfig>,
    /// Also pick up Gunicorn masters not configured by name.
    pub discover_gunicorn: bool,
    /// Also pick up masters of these servers (uWSGI, php-fpm, Puma,
    /// Unicorn) by their process titles ([`servers::PRESETS`]).
    pub discover_presets: Vec<Server>,
    pub interval: Duration,
    pub smaps_interval: Duration,
    /// Skip smaps_rollup for a process whose RSS is above this; its page
    /// walk is proportional to RSS and holds the mmap lock meanwhile.
    pub smaps_max_rss: u64,
    /// How often to look for new Gunicorn masters when discovery is on.
    pub discover_interval: Duration,
    pub max_discovered: usize,
    /// Follow forks and exits with the proc connector.
    pub proc_events: bool,
    /// How long events gather, once one has come, before they are read:
    /// a busy host's forks and exits cost one wakeup per batch.
    pub events_interval: Duration,
    /// Calls to Gunicorn's control socket.
    pub control: ControlOptions,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            procfs: PathBuf::from("/proc"),
            pools: Vec::new(),
            discover_gunicorn: false,
            discover_presets: Vec::new(),
            interval: Duration::from_secs(5),
            smaps_interval: Duration::from_secs(15),
            smaps_max_rss: 16 << 30,
            discover_interval: Duration::from_secs(30),
            max_discovered: 32,
            proc_events: false,
            events_interval: Duration::from_millis(100),
            control: ControlOptions::default(),
        }
    }
}

/// The health `source` label of a pool's /proc reads: `pool/NAME`.
pub const HEALTH: SourceLabel = SourceLabel("pool");

/// The health `source` label of a Gunicorn pool's control socket:
/// `control/NAME`.
pub const CONTROL_HEALTH: SourceLabel = SourceLabel("control");

/// The health `source` label of the process events.
pub const PROC_EVENTS_SOURCE: &str = "proc_connector";

/// Cycles between two lookups of every master's children while the events
/// keep the worker sets: a safety net, not the way workers are found.
pub const RECONCILE_EVERY: u32 = 60;

/// How long an exit waits for the fork that replaces it before the view
/// is published without it.
const REPLACEMENT_WAIT: Duration = Duration::from_millis(50);

/// How often, while a new worker has no PSS yet, the smaps sampler's
/// figures are looked for between events (it reads new processes every
/// second)...
const SMAPS_CHECK: Duration = Duration::from_millis(250);

/// ...and for how long: a process whose smaps cannot be read (another
/// user's, without CAP_SYS_PTRACE) has none to wait for.
const PSS_WAIT: Duration = Duration::from_secs(3);

/// The proc connector's receive buffer: about 2,000 events between two
/// reads.
const EVENTS_BUFFER_BYTES: usize = 2 << 20;

pub struct PoolSource {
    root: ProcRoot,
    opts: PoolOptions,
    sinks: Sinks,
    trackers: Vec<Tracker>,
    last_discovery: Option<Instant>,
    /// Since when each discovered pool has been down.
    gone: gone::GoneSince,
    /// Whether /proc/PID/task/TID/children exists; `None` until known.
    children_files: Option<bool>,
    events: Option<ProcConnector>,
    event_buf: Vec<ProcEvent>,
    /// Cycles since the master's children were last looked up.
    since_reconcile: u32,
    /// The wall-clock time at which the events' monotonic clock read 0.
    boot: SystemTime,
    view: Arc<Published<PoolsView>>,
    index: Arc<Published<PoolIndex>>,
    /// PSS and USS, read on the smaps sampler's thread.
    smaps: Arc<Published<SmapsView>>,
    /// The version of `smaps` whose figures the workers have.
    smaps_seen: u64,
    /// Until when a worker without PSS (new, or first seen by a cycle)
    /// has it looked for between events, in the smaps sampler's figures.
    pss_wanted_until: Option<Instant>,
    /// New options (a reloaded config), taken at the start of a cycle.
    updates: Option<(Arc<Published<PoolOptions>>, u64)>,
}

impl PoolSource {
    pub fn new(opts: PoolOptions, sinks: Sinks) -> PoolSource {
        let events = if opts.proc_events {
            let o = ProcConnectorOptions {
                recv_buffer_bytes: EVENTS_BUFFER_BYTES,
                ..ProcConnectorOptions::default()
            };
            match ProcConnector::open(&o) {
                Ok(c) => {
                    sinks.health.report(PROC_EVENTS_SOURCE, Ok(()));
                    Some(c)
                }
                Err(e) => {
                    let why = format!("{e}; following workers by /proc polling alone");
                    sinks.health.report(PROC_EVENTS_SOURCE, Err(why));
                    None
                }
            }
        } else {
            None
        };
        PoolSource {
            root: ProcRoot::new(&opts.procfs),
            trackers: opts.pools.iter().map(Tracker::from_config).collect(),
            opts,
            sinks,
            last_discovery: None,
            gone: gone::GoneSince::default(),
            children_files: None,
            events,
            event_buf: Vec::new(),
            since_reconcile: RECONCILE_EVERY,
            boot: crate::state::boot_time(),
            view: Published::new(PoolsView::default()),
            index: Published::new(PoolIndex::default()),
            smaps: Published::new(SmapsView::default()),
            smaps_seen: 0,
            pss_wanted_until: None,
            updates: None,
        }
    }

    /// The sampler of the pools' PSS and USS, which this source reads: it
    /// runs on a thread of its own (see [`smaps`]).
    pub fn smaps_sampler(&self) -> SmapsSampler {
        SmapsSampler::new(
            SmapsOptions {
                procfs: self.opts.procfs.clone(),
                interval: self.opts.smaps_interval,
                max_rss: self.opts.smaps_max_rss,
            },
            self.sinks.clone(),
            self.view.clone(),
            self.smaps.clone(),
        )
    }

    /// Take new options from `updates` at the start of each cycle.
    pub fn follow_options(&mut self, updates: Arc<Published<PoolOptions>>) {
        let seen = updates.version();
        self.updates = Some((updates, seen));
    }

    /// Apply new options (a reloaded config). A pool whose config did not
    /// change keeps its tracker: its workers' slots, its counters, its
    /// master. A new or changed pool starts afresh; a pool no longer
    /// configured stops being exported. Discovered pools stay while
    /// discovery is on. The proc connector, opened at start, stays as it
    /// is.
    pub fn reconfigure(&mut self, opts: PoolOptions) {
        let mut old = std::mem::take(&mut self.trackers);
        let mut trackers = Vec::with_capacity(opts.pools.len());
        for p in &opts.pools {
            let unchanged = self.opts.pools.contains(p);
            let kept = old.iter().position(|t| {
                unchanged && *t.name == *p.name && matches!(t.finder, Finder::Config(_))
            });
            trackers.push(match kept {
                Some(i) => old.swap_remove(i),
                None => Tracker::from_config(p),
            });
        }
        for t in old {
            let named = trackers.iter().any(|k| k.name == t.name);
            let still_discovered = match t.finder {
                Finder::Gunicorn => opts.discover_gunicorn,
                Finder::Preset(s) => opts.discover_presets.contains(&s),
                Finder::Config(_) => false,
            };
            if still_discovered && !named {
                trackers.push(t);
            } else if !named {
                tracing::info!(pool = %t.name, "pool no longer configured: not exported any more");
                self.sinks.health.forget(&HEALTH.of(&t.name));
                self.sinks.health.forget(&CONTROL_HEALTH.of(&t.name));
                self.sinks.health.forget(&smaps::HEALTH.of(&t.name));
            }
        }
        self.trackers = trackers;
        self.opts = PoolOptions {
            proc_events: self.opts.proc_events,
            ..opts
        };
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
        if let Some(opts) = self.updates.as_mut().and_then(|(u, seen)| u.newer(seen)) {
            self.reconfigure((*opts).clone());
        }
        // Events that came before this cycle are applied first, so that
        // the cycle agrees with them.
        self.drain_events();
        let cap = self.opts.max_discovered + self.configured();
        let mut lookup = Lookup::new(&self.root, &mut self.children_files);
        lookup.discovery_due = (self.opts.discover_gunicorn
            || !self.opts.discover_presets.is_empty())
            && self
                .last_discovery
                .is_none_or(|at| now.duration_since(at) >= self.opts.discover_interval);
        if lookup.discovery_due {
            self.last_discovery = Some(now);
            let mut found = Vec::new();
            if self.opts.discover_gunicorn {
                for (name, _) in lookup.gunicorn_masters() {
                    found.push((name, Server::Gunicorn, Finder::Gunicorn));
                }
            }
            for server in &self.opts.discover_presets {
                for (name, _) in lookup.preset_masters(*server) {
                    found.push((name, *server, Finder::Preset(*server)));
                }
            }
            for (name, server, finder) in found {
                let known = self.trackers.iter().any(|t| *t.name == *name);
                if !known && self.trackers.len() < cap {
                    tracing::info!(pool = %name, server = server.as_str(), "discovered master");
                    self.trackers
                        .push(Tracker::new(&name, server, finder, DEFAULT_MAX_SLOTS));
                }
            }
        }
        let trust_events = self.events.is_some() && self.since_reconcile < RECONCILE_EVERY;
        self.since_reconcile = if trust_events {
            self.since_reconcile + 1
        } else {
            0
        };
        let mut errors = 0;
        let wall = SystemTime::now();
        let mut changes = Vec::new();
        let smaps = self.smaps.get();
        for t in &mut self.trackers {
            let before = t.state.read_errors.clone();
            let e = t.observe(&mut lookup, &smaps, wall, trust_events, &mut changes);
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
            self.sinks.health.report(&HEALTH.of(&t.name), result);
            put_on_timeline(&self.sinks, &self.root, &t.name, &mut changes);
            poll_control(&self.sinks, self.root.path(), &self.opts.control, t, true);
        }
        errors += lookup.scan_errors;
        self.forget_gone_discovered(now);
        if self.a_worker_lacks_pss() {
            self.pss_wanted_until = Some(Instant::now() + PSS_WAIT);
        }
        self.publish();
        errors
    }

    /// Forget the discovered pools whose master has been gone for
    /// [`gone::KEEP_GONE`]; until then they are exported as down.
    fn forget_gone_discovered(&mut self, now: Instant) {
        let discovered = self
            .trackers
            .iter()
            .filter(|t| matches!(t.finder, Finder::Gunicorn | Finder::Preset(_)))
            .map(|t| (&t.name, t.state.up));
        for name in self.gone.expired(discovered, now, gone::KEEP_GONE) {
            tracing::info!(pool = %name, "discovered pool gone for {:?}: not exported any more", gone::KEEP_GONE);
            self.trackers.retain(|t| t.name != name);
            self.sinks.health.forget(&HEALTH.of(&name));
            self.sinks.health.forget(&CONTROL_HEALTH.of(&name));
            self.sinks.health.forget(&smaps::HEALTH.of(&name));
        }
    }

    /// Apply the process events that are waiting: a fork of a master is a
    /// new worker, the exit of a worker or a master is that. Returns
    /// whether a master exited (the caller runs a cycle at once).
    pub fn drain_events(&mut self) -> bool {
        if !self.read_events() {
            return false;
        }
        // The changes go on the timeline and into the index at once: the
        // kernel source attributes an OOM kill of a worker forked a moment
        // ago by them.
        let mut applied = self.apply_batch();
        self.record(&applied);
        // An exit whose replacement has not come yet: wait a moment for
        // its fork, so that a scrape sees the exit with the fork that
        // replaces it, never a pool emptier than the host (Gunicorn forks
        // the replacement within milliseconds).
        let deadline = Instant::now() + REPLACEMENT_WAIT;
        while self.awaits_replacement(&applied) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(conn) = self.events.as_mut() else {
                break;
            };
            if left.is_zero() || !conn.wait(left).unwrap_or(false) || !self.read_events() {
                break;
            }
            let more = self.apply_batch();
            self.record(&more);
            applied.master_gone |= more.master_gone;
            applied.changes.extend(more.changes);
        }
        let master_gone = applied.master_gone;
        let now = Instant::now();
        for i in applied.forked() {
            self.pss_wanted_until = Some(now + PSS_WAIT);
            if let Some(c) = &mut self.trackers[i].control {
                c.forked(now);
            }
        }
        if !applied.changes.is_empty() {
            self.publish();
            self.sinks.changed.notify();
        }
        // After a fork: a reload is on the timeline before the old
        // workers' exits are judged. The control socket may take its time
        // to answer; the index is out already.
        let now = Instant::now();
        let mut asked = false;
        for t in &mut self.trackers {
            if t.control.as_mut().is_some_and(|c| c.check_due(now)) {
                asked |= poll_control(&self.sinks, self.root.path(), &self.opts.control, t, false);
            }
        }
        if asked {
            self.publish();
            self.sinks.changed.notify();
        }
        master_gone
    }

    /// Read the events that are waiting into `event_buf`. Returns false
    /// without the connector, or when it failed: the pool is then followed
    /// by /proc polling alone, and its health says so.
    fn read_events(&mut self) -> bool {
        let Some(conn) = self.events.as_mut() else {
            return false;
        };
        self.event_buf.clear();
        match conn.read(Duration::ZERO, &mut self.event_buf) {
            Ok(r) if r.lost > 0 || r.overruns > 0 => {
                // Something may have been missed: look the children up.
                tracing::debug!(lost = r.lost, overruns = r.overruns, "process events lost");
                self.since_reconcile = RECONCILE_EVERY;
            }
            Ok(_) => {}
            Err(e) => {
                self.sinks.health.report(
                    PROC_EVENTS_SOURCE,
                    Err(format!("{e}; following workers by /proc polling alone")),
                );
                self.events = None;
                return false;
            }
        }
        true
    }

    /// Apply the events in `event_buf` to the trackers.
    fn apply_batch(&mut self) -> events::Applied {
        let root = &self.root;
        events::apply(
            &mut self.trackers,
            &self.event_buf,
            root,
            self.boot,
            |pid| root.stat(pid).ok(),
        )
    }

    /// Put a batch's changes on the timeline, and publish the index.
    fn record(&self, applied: &events::Applied) {
        for (i, c) in &applied.changes {
            put_change_on_timeline(&self.sinks, &self.root, &self.trackers[*i].name, *c);
        }
        if !applied.changes.is_empty() {
            self.publish_index();
        }
    }

    /// Whether a worker new since a moment has no PSS yet.
    fn awaits_smaps(&self) -> bool {
        self.pss_wanted_until.is_some_and(|t| Instant::now() < t) && self.a_worker_lacks_pss()
    }

    fn a_worker_lacks_pss(&self) -> bool {
        self.trackers
            .iter()
            .any(|t| t.state.workers.iter().any(|w| w.memory.pss.is_none()))
    }

    /// Give the workers without PSS and USS the smaps sampler's figures,
    /// when it has new ones (capped at RSS, as in a cycle). Returns
    /// whether any worker got them.
    fn take_smaps(&mut self) -> bool {
        let Some(smaps) = self.smaps.newer(&mut self.smaps_seen) else {
            return false;
        };
        let mut took = false;
        for w in self
            .trackers
            .iter_mut()
            .flat_map(|t| t.state.workers.iter_mut())
        {
            if let (None, Some(&figures)) = (w.memory.pss, smaps.memory.get(&w.id)) {
                w.memory = Memory::with_smaps(w.memory.rss, figures);
                took = true;
            }
        }
        took
    }

    /// Whether a pool whose master lives lost more workers than it gained
    /// in `applied`.
    fn awaits_replacement(&self, applied: &events::Applied) -> bool {
        !applied.master_gone
            && (0..self.trackers.len())
                .any(|i| self.trackers[i].state.master.is_some() && applied.net_workers(i) < 0)
    }

    fn configured(&self) -> usize {
        self.trackers
            .iter()
            .filter(|t| matches!(t.finder, Finder::Config(_)))
            .count()
    }

    fn publish(&self) {
        let smaps = self.smaps.get();
        let mut pools: Vec<PoolState> = self
            .trackers
            .iter()
            .map(|t| {
                // The smaps sampler's counts are the pool's too.
                let mut st = t.state.clone();
                st.smaps_skipped = smaps.skipped.get(&st.name).copied().unwrap_or(0);
                if let Some(e) = smaps.errors.get(&st.name) {
                    st.read_errors.permission_denied += e.permission_denied;
                    st.read_errors.other += e.other;
                }
                st
            })
            .collect();
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        self.view.publish(PoolsView {
            pools,
            children_files: self.children_files,
        });
        self.publish_index();
    }

    /// What the other sources read: each pool's members and listeners.
    fn publish_index(&self) {
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
                    workers: t.workers().map(|(id, slot)| process(id, slot)).collect(),
                    listeners: t
                        .state
                        .listen
                        .iter()
                        .map(|l| PoolListener {
                            name: l.name.clone(),
                            inode: l.inode,
                            tcp: match l.addr {
                                ListenAddr::Tcp(a) => Some(a),
                                ListenAddr::Unix(_) => None,
                            },
                        })
                        .collect(),
                })
                .collect(),
        };
        self.index.publish(index);
    }

    /// Between cycles: wait for process events, let a batch gather for
    /// `events_interval`, read it; an idle host costs no wakeup. A master
    /// that exits cuts the wait short.
    fn wait_for_events(&mut self, next: Instant) {
        loop {
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let ready = match &self.events {
                None => {
                    std::thread::sleep(left);
                    return;
                }
                // A worker forked since the cycle waits for its PSS:
                // look for the sampler's figures now and then.
                Some(c) if self.awaits_smaps() => c.wait(left.min(SMAPS_CHECK)).unwrap_or(true),
                Some(c) => c.wait(left).unwrap_or(true),
            };
            // On a busy host events come all the time: the sampler's
            // figures are looked for after any wakeup.
            if self.awaits_smaps() && self.take_smaps() {
                self.publish();
                self.sinks.changed.notify();
            }
            if !ready {
                continue;
            }
            let left = next.saturating_duration_since(Instant::now());
            std::thread::sleep(left.min(self.opts.events_interval));
            let cpu0 = thread_cpu_seconds();
            let master_gone = self.drain_events();
            self.sinks.collectors.record(
                PROC_EVENTS_SOURCE,
                Duration::ZERO,
                thread_cpu_seconds() - cpu0,
                0,
            );
            if master_gone {
                return;
            }
        }
    }
}

/// A cycle every interval; the wait between cycles reads the process
/// events.
impl Source for PoolSource {
    fn collector(&self) -> &'static str {
        "pools"
    }

    fn step(&mut self, now: Instant) -> Stepped {
        Stepped::cycle(self.collect(now), true)
    }

    fn wait(&mut self, started: Instant) {
        self.wait_for_events(started + self.opts.interval);
    }
}

/// Ask a Gunicorn pool's control socket: in a cycle (`cycle`) for the
/// heartbeats and stats, with its health reported and one retry; between
/// cycles for the stats alone. A reload goes on the timeline. Returns
/// whether it answered.
fn poll_control(
    sinks: &Sinks,
    procfs: &Path,
    opts: &ControlOptions,
    t: &mut Tracker,
    cycle: bool,
) -> bool {
    let Some(c) = t.control.as_mut() else {
        return false;
    };
    match c.poll(procfs, &mut t.state, opts, cycle, cycle) {
        Poll::Nothing => false,
        Poll::Failed(why) => {
            if cycle {
                sinks.health.report(&CONTROL_HEALTH.of(&t.name), Err(why));
            }
            false
        }
        Poll::Answered { reload } => {
            sinks.health.report(&CONTROL_HEALTH.of(&t.name), Ok(()));
            if reload {
                tracing::debug!(pool = %t.name, "gunicorn reload seen on its control socket");
                sinks.timeline.push(
                    SystemTime::now(),
                    Some(t.name.clone()),
                    EventKind::AppLog(AppLog::Reload),
                );
            }
            true
        }
    }
}

/// Put a pool's changes on the timeline, in order, and clear them.
fn put_on_timeline(sinks: &Sinks, root: &ProcRoot, pool: &Arc<str>, changes: &mut Vec<PoolChange>) {
    for c in changes.drain(..) {
        put_change_on_timeline(sinks, root, pool, c);
    }
}

fn put_change_on_timeline(sinks: &Sinks, root: &ProcRoot, pool: &Arc<str>, c: PoolChange) {
    let p = Process {
        pid: c.id.pid,
        started: root.start_time(c.id.starttime),
        slot: c.slot,
    };
    let kind = match c.change {
        Change::WorkerSpawn => EventKind::WorkerSpawn(p),
        Change::WorkerExit(memory, status) => EventKind::WorkerExit(WorkerExit {
            process: p,
            status,
            rss_bytes: memory.map(|m| m.rss),
            pss_bytes: memory.and_then(|m| m.pss),
        }),
        Change::MasterStart => EventKind::MasterStart(p),
        Change::MasterExit => EventKind::MasterExit(p),
    };
    sinks.timeline.push(c.at, Some(pool.clone()), kind);
}
