//! What the pool source publishes after each cycle.

use crate::config::Server;

use super::listen::ListenSocket;
use super::proc::ProcId;

/// Memory of one process, by the `type` label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub rss: u64,
    /// `None` until smaps_rollup has been read (or when it cannot be).
    pub pss: Option<u64>,
    pub uss: Option<u64>,
    pub swap: u64,
}

impl Memory {
    /// RSS now, with the smaps sampler's (PSS, USS, swap) of the process:
    /// PSS and USS capped at RSS, since they are older and can exceed it at
    /// no instant.
    pub fn with_smaps(rss: u64, (pss, uss, swap): (u64, u64, u64)) -> Memory {
        Memory {
            rss,
            swap,
            pss: Some(pss.min(rss)),
            uss: Some(uss.min(rss)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkerState {
    pub id: ProcId,
    pub slot: usize,
    /// Seconds since the epoch.
    pub start_time: f64,
    pub memory: Memory,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Seconds since its last heartbeat to the master, as Gunicorn's
    /// control socket said this cycle.
    pub heartbeat_age: Option<f64>,
}

/// Gunicorn's own counts since its master started (`show stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GunicornStats {
    pub workers_spawned: u64,
    /// Each SIGTERM and SIGKILL the master sent a worker.
    pub workers_killed: u64,
    pub reloads: u64,
    /// The master's `--timeout` in seconds (`show config`): a worker
    /// without a heartbeat for this long is killed. None where unknown or
    /// off.
    pub worker_timeout: Option<u64>,
}

/// Error counts by what could not be read; exported, never fatal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadErrors {
    pub permission_denied: u64,
    pub other: u64,
}

/// One pool, as the rest of the exporter sees it.
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
    /// Where the master listens for the app; Gunicorn's control socket
    /// is not among them.
    pub listen: Vec<ListenSocket>,
    /// From Gunicorn's control socket, while it answers.
    pub gunicorn: Option<GunicornStats>,
}

impl PoolState {
    pub fn new(name: &str, server: Server) -> PoolState {
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
            gunicorn: None,
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

/// Every pool, in the order they were configured or discovered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolsView {
    pub pools: Vec<PoolState>,
    /// Whether the kernel's children files are in use (`None`: not known
    /// yet).
    pub children_files: Option<bool>,
}
