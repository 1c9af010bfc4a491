//! The pool source: app-server masters, their workers and their memory,
//! read from /proc.
//!
//! Each cycle finds each pool's master and its children (from the
//! master's `children` files where the kernel has them, else from one scan
//! of the process table), reconciles slots, and reads per-worker figures. PSS/USS
//! come from smaps_rollup on a slower interval, since reading it takes the
//! worker's mmap lock.

pub mod discover;
pub mod listen;
pub mod proc;
pub mod slots;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{Config, Discover, Matcher, PoolConfig, Server};
use crate::state::{lock, PoolEvent, PoolEventKind, World};
use discover::GunicornRole;
use proc::{ProcEntry, ProcId, ProcRoot, ReadFailure};
use procfs::process::Process;
use slots::Slots;

/// Memory of one process, by the `type` label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub rss: u64,
    /// `None` until smaps_rollup has been read (or when it cannot be).
    pub pss: Option<u64>,
    pub uss: Option<u64>,
    pub swap: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkerState {
    pub id: ProcId,
    pub slot: usize,
    pub start_time: f64,
    pub memory: Memory,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// Error counts by what could not be read; exported, never fatal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadErrors {
    pub permission_denied: u64,
    pub other: u64,
}

/// What the rest of the exporter sees of a pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolState {
    pub name: String,
    pub server: Server,
    pub up: bool,
    pub master: Option<ProcId>,
    pub master_memory: Memory,
    pub workers: Vec<WorkerState>,
    /// Live workers beyond `max_slots`: counted, but without slot series.
    pub unslotted_workers: usize,
    pub spawns: u64,
    pub exits: u64,
    pub master_restarts: u64,
    pub smaps_skipped: u64,
    pub read_errors: ReadErrors,
    /// Where the master listens (`unix:/path`, `host:port`), to tie nginx
    /// upstreams to this pool.
    pub listen: Vec<String>,
}

impl PoolState {
    fn new(name: &str, server: Server) -> PoolState {
        PoolState {
            name: name.to_string(),
            server,
            up: false,
            master: None,
            master_memory: Memory::default(),
            workers: Vec::new(),
            unslotted_workers: 0,
            spawns: 0,
            exits: 0,
            master_restarts: 0,
            smaps_skipped: 0,
            read_errors: ReadErrors::default(),
            listen: Vec::new(),
        }
    }

    pub fn live_workers(&self) -> usize {
        self.workers.len() + self.unslotted_workers
    }

    /// Master plus workers, by memory type. PSS/USS sum only what was read.
    pub fn total_memory(&self) -> Memory {
        let mut t = if self.up {
            self.master_memory
        } else {
            Memory::default()
        };
        for w in &self.workers {
            t.rss += w.memory.rss;
            t.swap += w.memory.swap;
            t.pss = add_opt(t.pss, w.memory.pss);
            t.uss = add_opt(t.uss, w.memory.uss);
        }
        t
    }
}

fn add_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

/// How often and how hard the pool source works.
#[derive(Debug, Clone)]
pub struct PoolOptions {
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
            interval: Duration::from_secs(5),
            smaps_interval: Duration::from_secs(15),
            smaps_max_rss: 16 << 30,
            discover_interval: Duration::from_secs(30),
            max_discovered: 32,
        }
    }
}

/// How a tracked pool finds its master.
#[derive(Debug, Clone)]
enum Finder {
    Config(Matcher),
    /// A discovered Gunicorn pool, found again by its derived name.
    Gunicorn,
}

/// Per-pool bookkeeping that outlives one cycle.
#[derive(Debug)]
struct Tracker {
    name: Arc<str>,
    finder: Finder,
    slots: Slots,
    /// The last master seen, kept across down periods so that a comeback
    /// under a new pid counts as a restart.
    last_master: Option<ProcId>,
    /// The first observation sets the baseline: workers that existed
    /// before the exporter started are not counted as spawns.
    baseline_taken: bool,
    /// When smaps_rollup was last read, per process.
    smaps_at: HashMap<ProcId, Instant>,
    max_fds: HashMap<ProcId, Option<u64>>,
    /// Cycles until listening addresses are read again.
    listen_refresh: u32,
    state: PoolState,
}

/// Sockets rarely change while a master lives; re-read them now and then
/// (and at once when the master changes).
const LISTEN_REFRESH_CYCLES: u32 = 12;

impl Tracker {
    fn new(name: &str, server: Server, finder: Finder, max_slots: usize) -> Tracker {
        Tracker {
            name: Arc::from(name),
            finder,
            slots: Slots::new(max_slots),
            last_master: None,
            baseline_taken: false,
            smaps_at: HashMap::new(),
            max_fds: HashMap::new(),
            listen_refresh: 0,
            state: PoolState::new(name, server),
        }
    }

    fn from_config(p: &PoolConfig) -> Tracker {
        Tracker::new(
            &p.name,
            p.server,
            Finder::Config(p.matcher.clone()),
            p.max_slots,
        )
    }
}

/// The whole process table, indexed. Reading it costs one /proc/PID/stat
/// per process on the host (about 30 ms for 2,000 processes), so a cycle
/// builds it only when it must.
struct Table {
    entries: Vec<ProcEntry>,
    by_pid: HashMap<i32, usize>,
    children: HashMap<i32, Vec<ProcId>>,
}

impl Table {
    fn new(entries: Vec<ProcEntry>) -> Table {
        let mut by_pid = HashMap::with_capacity(entries.len());
        let mut children: HashMap<i32, Vec<ProcId>> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            by_pid.insert(e.id.pid, i);
            children.entry(e.ppid).or_default().push(e.id);
        }
        Table {
            entries,
            by_pid,
            children,
        }
    }

    fn get(&self, pid: i32) -> Option<&ProcEntry> {
        self.by_pid.get(&pid).map(|i| &self.entries[*i])
    }
}

/// Everything one cycle needs to look processes up.
struct Cycle<'a> {
    root: &'a ProcRoot,
    table: Option<Table>,
    /// Whether the kernel has /proc/PID/task/TID/children; when it has,
    /// a pool with a known master costs O(its workers), not O(host).
    children_files: &'a mut Option<bool>,
    scan_errors: u64,
    own_pid: i32,
    cmdlines: HashMap<i32, Option<String>>,
    /// Whether a scan for Gunicorn masters may run this cycle; it reads
    /// every candidate's cmdline, so it is rate-limited.
    discovery_due: bool,
    gunicorn: Option<Vec<(String, ProcId)>>,
}

impl<'a> Cycle<'a> {
    fn new(root: &'a ProcRoot, children_files: &'a mut Option<bool>) -> Cycle<'a> {
        Cycle {
            root,
            table: None,
            children_files,
            scan_errors: 0,
            own_pid: std::process::id() as i32,
            cmdlines: HashMap::new(),
            discovery_due: false,
            gunicorn: None,
        }
    }

    fn table(&mut self) -> &Table {
        if self.table.is_none() {
            let entries = match self.root.scan() {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(path = %self.root.path().display(), error = %e, "cannot list processes");
                    self.scan_errors += 1;
                    Vec::new()
                }
            };
            self.table = Some(Table::new(entries));
        }
        self.table.as_ref().expect("just built")
    }

    fn cmdline(&mut self, pid: i32) -> Option<String> {
        let root = self.root;
        self.cmdlines
            .entry(pid)
            .or_insert_with(|| root.cmdline(pid))
            .clone()
    }

    /// The identity of a live (not zombie) process.
    fn identity(&self, pid: i32) -> Option<ProcId> {
        match &self.table {
            Some(t) => t.get(pid).map(|e| e.id),
            None => self.root.identity(pid),
        }
    }

    fn alive(&self, id: ProcId) -> bool {
        self.identity(id.pid) == Some(id)
    }

    /// The master's children that started after it (an older "child" is a
    /// reused pid).
    fn children(&mut self, m: ProcId) -> Vec<ProcId> {
        if self.table.is_none() && *self.children_files != Some(false) {
            match self.root.children(m.pid) {
                Some(pids) => {
                    *self.children_files = Some(true);
                    return pids
                        .into_iter()
                        .filter_map(|p| self.root.identity(p))
                        .filter(|c| c.starttime >= m.starttime)
                        .collect();
                }
                // Only a kernel without the files is remembered; a master
                // that died meanwhile says nothing about the kernel.
                None if self.alive(m) => *self.children_files = Some(false),
                None => return Vec::new(),
            }
        }
        self.table()
            .children
            .get(&m.pid)
            .map(|c| {
                c.iter()
                    .filter(|c| c.starttime >= m.starttime)
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Gunicorn masters on the host, keyed by derived pool name; computed
    /// at most once a cycle.
    fn gunicorn_masters(&mut self) -> Vec<(String, ProcId)> {
        if let Some(g) = &self.gunicorn {
            return g.clone();
        }
        let g = self.scan_gunicorn();
        self.gunicorn = Some(g.clone());
        g
    }

    fn scan_gunicorn(&mut self) -> Vec<(String, ProcId)> {
        let own = self.own_pid;
        // The comm prefilter spares reading the cmdline of every process.
        let candidates: Vec<(ProcId, i32)> = self
            .table()
            .entries
            .iter()
            .filter(|e| e.id.pid != own && discover::may_be_gunicorn(e.comm()))
            .map(|e| (e.id, e.ppid))
            .collect();
        let mut roles: HashMap<i32, GunicornRole> = HashMap::new();
        for (id, _) in &candidates {
            if let Some(role) = self
                .cmdline(id.pid)
                .and_then(|c| discover::gunicorn_role(&c))
            {
                roles.insert(id.pid, role);
            }
        }
        let mut masters: Vec<ProcId> = candidates
            .iter()
            .filter(|(id, ppid)| match roles.get(&id.pid) {
                Some(GunicornRole::Master) => true,
                // A plain command line is the master only when its parent
                // is not Gunicorn too.
                Some(GunicornRole::Plain) => !roles.contains_key(ppid),
                _ => false,
            })
            .map(|(id, _)| *id)
            .collect();
        masters.sort_by_key(|id| (id.starttime, id.pid));
        let mut out: Vec<(String, ProcId)> = Vec::new();
        for id in masters {
            let Some(cmd) = self.cmdline(id.pid) else {
                continue;
            };
            let base = discover::gunicorn_pool_name(&cmd);
            let mut name = base.clone();
            let mut n = 2;
            while out.iter().any(|(o, _)| *o == name) {
                name = format!("{base}#{n}");
                n += 1;
            }
            out.push((name, id));
        }
        out
    }

    fn find_master(&mut self, t: &Tracker) -> Option<ProcId> {
        // Keep a live master without re-matching: cheap, and stable.
        if let Some(m) = t.state.master {
            if self.alive(m) && !matches!(t.finder, Finder::Config(Matcher::Pidfile(_))) {
                return Some(m);
            }
        }
        match &t.finder {
            Finder::Config(Matcher::Pidfile(path)) => {
                let text = std::fs::read_to_string(path).ok()?;
                let pid = discover::parse_pidfile(&text)?;
                self.identity(pid)
            }
            Finder::Config(Matcher::Cmdline(re)) => {
                let re = re.clone();
                let own = self.own_pid;
                self.table();
                let table = self.table.take().expect("built above");
                let matches =
                    discover::match_cmdlines(&table.entries, &re, own, |pid| self.cmdline(pid));
                let m = discover::topmost_matching(&table.entries, &matches)
                    .into_iter()
                    .next();
                self.table = Some(table);
                m
            }
            Finder::Gunicorn => {
                if !self.discovery_due {
                    return None;
                }
                let name = t.name.clone();
                self.gunicorn_masters()
                    .into_iter()
                    .find(|(n, _)| **n == *name)
                    .map(|(_, id)| id)
            }
        }
    }
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

/// The pool source. Owns its trackers; publishes `PoolState`s to the world.
pub struct PoolSource {
    root: ProcRoot,
    opts: PoolOptions,
    trackers: Vec<Tracker>,
    discover_gunicorn: bool,
    last_discovery: Option<Instant>,
    /// Whether /proc/PID/task/TID/children exists; `None` until known.
    children_files: Option<bool>,
    /// Events of the last cycle, handed to the world's timeline.
    events: Vec<PoolEvent>,
}

impl PoolSource {
    pub fn new(cfg: &Config, root: ProcRoot, opts: PoolOptions) -> PoolSource {
        PoolSource {
            root,
            opts,
            trackers: cfg.pools.iter().map(Tracker::from_config).collect(),
            discover_gunicorn: cfg.discover.contains(&Discover::Gunicorn),
            last_discovery: None,
            children_files: None,
            events: Vec::new(),
        }
    }

    /// One collection cycle. Returns the number of errors counted.
    pub fn collect(&mut self, now: Instant) -> u64 {
        let cap = self.opts.max_discovered + self.configured();
        let mut cycle = Cycle::new(&self.root, &mut self.children_files);
        cycle.discovery_due = self.discover_gunicorn
            && self
                .last_discovery
                .is_none_or(|at| now.duration_since(at) >= self.opts.discover_interval);
        if cycle.discovery_due {
            self.last_discovery = Some(now);
            for (name, _) in cycle.gunicorn_masters() {
                let known = self.trackers.iter().any(|t| *t.name == *name);
                if !known && self.trackers.len() < cap {
                    tracing::info!(pool = %name, "discovered gunicorn master");
                    self.trackers.push(Tracker::new(
                        &name,
                        Server::Gunicorn,
                        Finder::Gunicorn,
                        crate::config::DEFAULT_MAX_SLOTS,
                    ));
                }
            }
        }
        let mut errors = 0;
        let wall = SystemTime::now();
        for t in &mut self.trackers {
            errors += observe(t, &mut cycle, &self.opts, now, wall, &mut self.events);
        }
        errors + cycle.scan_errors
    }

    fn configured(&self) -> usize {
        self.trackers
            .iter()
            .filter(|t| matches!(t.finder, Finder::Config(_)))
            .count()
    }

    /// Whether the kernel's children files are in use (`None`: not known
    /// yet).
    pub fn uses_children_files(&self) -> Option<bool> {
        self.children_files
    }

    pub fn states(&self) -> impl Iterator<Item = &PoolState> {
        self.trackers.iter().map(|t| &t.state)
    }

    pub fn take_events(&mut self) -> Vec<PoolEvent> {
        std::mem::take(&mut self.events)
    }

    /// Run forever on the calling thread, publishing to `world`.
    pub fn run(mut self, world: Arc<World>) {
        let interval = self.opts.interval;
        world.run_collector("pools", interval, || {
            let errors = self.collect(Instant::now());
            {
                let mut pools = lock(&world.pools);
                for s in self.states() {
                    pools.insert(s.name.clone(), s.clone());
                }
            }
            {
                let mut tl = lock(&world.pool_events);
                for e in self.take_events() {
                    tl.push(e);
                }
            }
            (errors, true)
        })
    }
}

fn event(
    t: &Tracker,
    at: SystemTime,
    id: ProcId,
    slot: Option<usize>,
    kind: PoolEventKind,
) -> PoolEvent {
    PoolEvent {
        at,
        pool: t.name.clone(),
        pid: id.pid,
        starttime: id.starttime,
        slot,
        kind,
    }
}

/// One pool, one cycle.
fn observe(
    t: &mut Tracker,
    cycle: &mut Cycle<'_>,
    opts: &PoolOptions,
    now: Instant,
    wall: SystemTime,
    events: &mut Vec<PoolEvent>,
) -> u64 {
    let master = cycle.find_master(t);
    let baseline = !t.baseline_taken;
    t.baseline_taken = true;

    if t.state.master != master {
        if let Some(old) = t.state.master {
            events.push(event(t, wall, old, None, PoolEventKind::MasterExit));
            t.smaps_at.remove(&old);
        }
        if let Some(new) = master {
            if t.last_master.is_some_and(|l| l != new) {
                t.state.master_restarts += 1;
            }
            t.last_master = Some(new);
            events.push(event(t, wall, new, None, PoolEventKind::MasterStart));
        }
        t.state.master = master;
        t.listen_refresh = 0;
    }
    t.state.up = master.is_some();
    match master {
        Some(m) if t.listen_refresh == 0 => {
            t.state.listen = cycle
                .root
                .process(m.pid)
                .map(|p| listen::listen_addresses(&p))
                .unwrap_or_default();
            t.listen_refresh = LISTEN_REFRESH_CYCLES;
        }
        Some(_) => t.listen_refresh -= 1,
        None => t.state.listen.clear(),
    }

    let live: Vec<ProcId> = match master {
        Some(m) => cycle.children(m),
        None => Vec::new(),
    };
    let changes = t.slots.observe(&live);
    for (id, slot) in &changes.exited {
        t.state.exits += 1;
        t.smaps_at.remove(id);
        t.max_fds.remove(id);
        events.push(event(t, wall, *id, *slot, PoolEventKind::WorkerExit));
    }
    for (id, slot) in &changes.spawned {
        if !baseline {
            t.state.spawns += 1;
        }
        events.push(event(t, wall, *id, *slot, PoolEventKind::WorkerSpawn));
    }

    let mut errors = 0;
    let root = cycle.root;
    if let Some(m) = master {
        let prev = t.state.master_memory;
        let read = root
            .process(m.pid)
            .map_err(|e| ReadFailure::from(&e))
            .and_then(|p| read_memory(root, &p, t, m, prev, opts, now));
        match read {
            Ok((mem, e)) => {
                t.state.master_memory = mem;
                errors += e;
            }
            Err(f) => errors += count_failure(&mut t.state.read_errors, f),
        }
    } else {
        t.state.master_memory = Memory::default();
    }

    let prev: HashMap<ProcId, WorkerState> = t.state.workers.drain(..).map(|w| (w.id, w)).collect();
    let mut workers = Vec::with_capacity(live.len());
    for (id, slot) in t.slots.assigned() {
        let old = prev.get(&id);
        let prev_mem = old.map(|w| w.memory).unwrap_or_default();
        // One handle on /proc/PID for every value of this worker.
        let read = root
            .process(id.pid)
            .map_err(|e| ReadFailure::from(&e))
            .and_then(|p| Ok((read_memory(root, &p, t, id, prev_mem, opts, now)?, p)));
        let ((memory, e), p) = match read {
            Ok(r) => r,
            Err(f) => {
                errors += count_failure(&mut t.state.read_errors, f);
                continue;
            }
        };
        errors += e;
        let (open_fds, max_fds, e) = read_fds(root, &p, t, id);
        errors += e;
        workers.push(WorkerState {
            id,
            slot,
            start_time: root.start_time_seconds(id.starttime),
            memory,
            open_fds,
            max_fds,
        });
    }
    t.state.workers = workers;
    t.state.unslotted_workers = t.slots.unslotted_count();
    errors
}

/// RSS and swap every cycle; PSS and USS when due and under the size guard.
fn read_memory(
    root: &ProcRoot,
    p: &Process,
    t: &mut Tracker,
    id: ProcId,
    prev: Memory,
    opts: &PoolOptions,
    now: Instant,
) -> Result<(Memory, u64), ReadFailure> {
    let status = root.status_memory(p)?;
    let mut mem = Memory {
        rss: status.rss_bytes,
        swap: status.swap_bytes,
        pss: prev.pss,
        uss: prev.uss,
    };
    let mut errors = 0;
    let due = t
        .smaps_at
        .get(&id)
        .is_none_or(|at| now.duration_since(*at) >= opts.smaps_interval);
    if due {
        t.smaps_at.insert(id, now);
        if status.rss_bytes > opts.smaps_max_rss {
            t.state.smaps_skipped += 1;
        } else {
            match root.smaps_memory(p) {
                Ok(s) => {
                    mem.pss = Some(s.pss_bytes);
                    mem.uss = Some(s.uss_bytes);
                }
                Err(f) => {
                    // Unreadable (not root, not the same user): export no
                    // PSS/USS rather than a stale or zero value.
                    mem.pss = None;
                    mem.uss = None;
                    errors += count_failure(&mut t.state.read_errors, f);
                }
            }
        }
    }
    // Between smaps reads PSS/USS are older than RSS; neither can exceed
    // RSS at any instant, so cap them rather than report the impossible.
    mem.pss = mem.pss.map(|v| v.min(mem.rss));
    mem.uss = mem.uss.map(|v| v.min(mem.rss));
    Ok((mem, errors))
}

fn read_fds(
    root: &ProcRoot,
    p: &Process,
    t: &mut Tracker,
    id: ProcId,
) -> (Option<u64>, Option<u64>, u64) {
    let mut errors = 0;
    let open = match root.open_fds(p) {
        Ok(n) => Some(n),
        Err(f) => {
            errors += count_failure(&mut t.state.read_errors, f);
            None
        }
    };
    // The limit rarely changes in a worker's life; read it once.
    let max = match t.max_fds.get(&id) {
        Some(m) => *m,
        None => match root.max_fds(p) {
            Ok(m) => {
                t.max_fds.insert(id, m);
                m
            }
            Err(f) => {
                errors += count_failure(&mut t.state.read_errors, f);
                None
            }
        },
    };
    (open, max, errors)
}
