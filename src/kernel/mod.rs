//! The kernel source: OOM kills from /dev/kmsg, attributed to pools, and
//! the memory counters the kernel keeps without a log (vmstat, meminfo,
//! PSI, the pools' memory cgroups).
//!
//! - [`kmsg_reader`]: follows /dev/kmsg (or replays a capture), records
//!   each kill on the timeline and publishes [`KillCounts`];
//! - [`counter_reader`]: reads the counter files each cycle and publishes
//!   [`MemoryCounters`];
//! - [`kmsg`], [`oom`], [`counter_files`]: the pure parsers underneath;
//! - [`kills`]: assembling a kill from its lines, and the attribution
//!   table.

pub mod counter_files;
pub mod counter_reader;
pub mod kills;
pub mod kmsg;
pub mod kmsg_reader;
pub mod oom;

use std::collections::BTreeMap;
use std::time::SystemTime;

use counter_files::{HostMemory, Limit, MemoryEvents, Pressure};

/// The `pool` label of kills that belong to no known pool.
pub const NO_POOL: &str = "-";

/// The last kill of a pool, as exported.
#[derive(Debug, Clone, PartialEq)]
pub struct LastKill {
    pub at: SystemTime,
    pub anon_bytes: u64,
    pub file_bytes: u64,
    pub shmem_bytes: Option<u64>,
}

/// Kills of one pool (or of [`NO_POOL`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolKills {
    pub kills: u64,
    pub last: Option<LastKill>,
}

/// What the kmsg reader publishes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KillCounts {
    /// /dev/kmsg's ring buffer has been replayed once: until then the kill
    /// counts are incomplete and not exported.
    pub replayed: bool,
    pub records_lost: u64,
    /// By pool name, or [`NO_POOL`]. Bounded by the pool table.
    pub kills: BTreeMap<String, PoolKills>,
}

/// A pool's memory cgroup, as last read.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolCgroup {
    /// The path inside its hierarchy, as the kernel prints it in
    /// `task_memcg=`.
    pub path: String,
    pub version: CgroupVersion,
    pub usage: Option<u64>,
    pub limit: Option<Limit>,
    pub events: MemoryEvents,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// What the counter reader publishes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryCounters {
    pub vmstat_oom_kills: Option<u64>,
    pub host: HostMemory,
    pub pressure: Pressure,
    /// By pool name; only pools whose cgroup was read this cycle.
    pub cgroups: BTreeMap<String, PoolCgroup>,
}

pub fn epoch_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
