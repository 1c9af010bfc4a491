//! The kernel source: OOM kills from /dev/kmsg, attributed to pools, and
//! the memory counters the kernel keeps without a log (vmstat, meminfo,
//! PSI, the pools' memory cgroups).
//!
//! Two threads: `stream` follows /dev/kmsg and records each kill as it is
//! logged; `poller` reads the counters every `--collector.kernel.interval`.

pub mod counters;
pub mod kills;
pub mod kmsg;
pub mod oom;
pub mod poller;
pub mod stream;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::encoding::DescriptorEncoder;

use crate::config::Config;
use crate::metrics::{define_metrics, family};
use crate::state::{lock, Timeline, World};
use counters::{HostMemory, Limit, MemoryEvents, Pressure};
use kills::Rule;

/// The `pool` label of kills that belong to no known pool.
pub const NO_POOL: &str = "-";

/// Kills kept for joins (502 attribution): about a day of a bad day.
pub const KILL_TIMELINE_CAP: usize = 1024;

/// One OOM kill, as recorded for joins with other events.
#[derive(Debug, Clone, PartialEq)]
pub struct KillEvent {
    /// Wall-clock time of the kill (see [`stream`] for how it is derived).
    pub at: SystemTime,
    pub seq: u64,
    pub pid: i32,
    pub comm: String,
    /// `None` when the victim belongs to no known pool.
    pub pool: Option<Arc<str>>,
    pub slot: Option<usize>,
    pub rule: Rule,
    pub memcg: bool,
    pub anon_bytes: u64,
    pub file_bytes: u64,
    /// Absent from kernels before 4.7's format.
    pub shmem_bytes: Option<u64>,
}

/// Kills of one pool (or of [`NO_POOL`]).
#[derive(Debug, Clone, Default)]
pub struct PoolKills {
    pub kills: u64,
    pub last: Option<KillEvent>,
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

/// What the kernel source has seen.
#[derive(Debug)]
pub struct KernelState {
    /// Whether each source could be read, by `source` label. A source not
    /// yet tried is absent.
    pub sources: BTreeMap<&'static str, bool>,
    /// /dev/kmsg's ring buffer has been replayed once: until then the kill
    /// counts are incomplete and not exported (`badgateway_source_up`
    /// says whether kmsg can be read).
    pub kmsg_read: bool,
    pub kmsg_records_lost: u64,
    /// By pool name, or [`NO_POOL`]. Bounded by the pool table.
    pub kills: BTreeMap<String, PoolKills>,
    pub kill_events: Timeline<KillEvent>,
    pub vmstat_oom_kills: Option<u64>,
    pub host: HostMemory,
    pub pressure: Pressure,
    /// By pool name; only pools whose cgroup was read this cycle.
    pub cgroups: BTreeMap<String, PoolCgroup>,
}

impl Default for KernelState {
    fn default() -> Self {
        KernelState {
            sources: BTreeMap::new(),
            kmsg_read: false,
            kmsg_records_lost: 0,
            kills: BTreeMap::new(),
            kill_events: Timeline::new(KILL_TIMELINE_CAP),
            vmstat_oom_kills: None,
            host: HostMemory::default(),
            pressure: Pressure::default(),
            cgroups: BTreeMap::new(),
        }
    }
}

impl KernelState {
    /// Record a kill; the caller marks the world dirty.
    pub fn record_kill(&mut self, k: KillEvent) {
        let key = k.pool.as_deref().unwrap_or(NO_POOL).to_string();
        let e = self.kills.entry(key).or_default();
        e.kills += 1;
        e.last = Some(k.clone());
        self.kill_events.push(k);
    }
}

/// Logs a source's health on changes only: one warning when it goes
/// down, one line when it comes back, nothing per cycle.
#[derive(Debug, Default)]
pub struct SourceHealth {
    last: BTreeMap<&'static str, bool>,
}

impl SourceHealth {
    pub fn report(&mut self, world: &World, source: &'static str, result: Result<(), String>) {
        let up = result.is_ok();
        let prev = self.last.insert(source, up);
        match (&result, prev) {
            (Err(e), None | Some(true)) => {
                tracing::warn!(source, error = %e, "kernel source cannot be read; exporting badgateway_source_up 0")
            }
            (Ok(()), Some(false)) => tracing::info!(source, "kernel source readable again"),
            _ => {}
        }
        lock(&world.kernel).sources.insert(source, up);
    }
}

pub fn start(cfg: &Config, args: &crate::cli::Args, world: Arc<World>) -> anyhow::Result<()> {
    let poller = poller::Poller::new(&args.procfs, &args.sysfs);
    let (w, interval) = (world.clone(), args.kernel_interval);
    crate::cli::spawn("kernel", move || poller.run(w, interval))?;
    if cfg.kernel.kmsg {
        let reader =
            stream::KmsgReader::new(&cfg.kernel.kmsg_path, &args.procfs, args.pools_interval);
        crate::cli::spawn("kmsg", move || reader.run(world))?;
    }
    Ok(())
}

define_metrics! { METRICS;
    SOURCE_UP: Gauge, "badgateway_source_up", ["source"], "1 if the kernel source (kmsg, vmstat, meminfo, pressure, cgroup) could be read on its last try, 0 if not.";
    KMSG_LOST: Counter, "badgateway_kmsg_records_lost", [], "Kernel log records overwritten in the ring buffer before the exporter read them.";
    OOM_KILLS: Counter, "badgateway_oom_kills", ["pool"], "OOM kills logged by the kernel since boot, by the victim's pool; pool=\"-\" for victims of no known pool.";
    VICTIM_MEMORY: Gauge, "badgateway_oom_kill_victim_memory_bytes", ["pool", "type"], "Resident memory of the pool's last OOM victim when it was killed, by type (anon, file, shmem).";
    LAST_KILL: Gauge, "badgateway_last_oom_kill_timestamp_seconds", ["pool"], "Wall-clock time of the pool's last OOM kill, seconds since the epoch.";
    KERNEL_OOM_KILLS: Counter, "badgateway_kernel_oom_kills", [], "OOM kills since boot, from /proc/vmstat oom_kill, including victims the log skipped.";
    CGROUP_MEMORY: Gauge, "badgateway_pool_cgroup_memory_bytes", ["pool"], "Memory charged to the pool's memory cgroup.";
    CGROUP_LIMIT: Gauge, "badgateway_pool_cgroup_memory_limit_bytes", ["pool"], "Memory limit of the pool's memory cgroup; absent when unlimited.";
    CGROUP_OOM_KILLS: Counter, "badgateway_pool_cgroup_oom_kills", ["pool"], "OOM kills in the pool's memory cgroup, from memory.events (v2) or memory.oom_control (v1).";
    CGROUP_EVENTS: Counter, "badgateway_pool_cgroup_memory_events", ["pool", "event"], "cgroup v2 memory.events counters of the pool's cgroup (high, max, oom, oom_kill, oom_group_kill).";
    HOST_TOTAL: Gauge, "badgateway_host_memory_total_bytes", [], "MemTotal from /proc/meminfo.";
    HOST_AVAILABLE: Gauge, "badgateway_host_memory_available_bytes", [], "MemAvailable from /proc/meminfo.";
    HOST_SWAP_FREE: Gauge, "badgateway_host_swap_free_bytes", [], "SwapFree from /proc/meminfo.";
    PRESSURE: Counter, "badgateway_memory_pressure_stalled_seconds", ["kind"], "Time tasks stalled on memory (PSI /proc/pressure/memory), kind some or full.";
}

pub fn encode(world: &World, enc: &mut DescriptorEncoder) -> std::fmt::Result {
    let pools: Vec<String> = lock(&world.pools).keys().cloned().collect();
    let (sources, kmsg_read, lost, mut kills, vmstat, host, pressure, cgroups) = {
        let k = lock(&world.kernel);
        (
            k.sources.clone(),
            k.kmsg_read,
            k.kmsg_records_lost,
            k.kills.clone(),
            k.vmstat_oom_kills,
            k.host,
            k.pressure,
            k.cgroups.clone(),
        )
    };
    family(enc, &SOURCE_UP, |f| {
        sources
            .iter()
            .try_for_each(|(s, up)| f.gauge(&[s], *up as i64))
    })?;
    if kmsg_read {
        // Every known pool and "-" from the start, so rate() sees the 0.
        kills.entry(NO_POOL.to_string()).or_default();
        for p in &pools {
            kills.entry(p.clone()).or_default();
        }
        family(enc, &KMSG_LOST, |f| f.counter(&[], lost))?;
        family(enc, &OOM_KILLS, |f| {
            kills.iter().try_for_each(|(p, k)| f.counter(&[p], k.kills))
        })?;
        let last = || {
            kills
                .iter()
                .filter_map(|(p, k)| Some((p, k.last.as_ref()?)))
        };
        family(enc, &VICTIM_MEMORY, |f| {
            last().try_for_each(|(p, k)| {
                f.gauge(&[p, "anon"], k.anon_bytes)?;
                f.gauge(&[p, "file"], k.file_bytes)?;
                match k.shmem_bytes {
                    Some(v) => f.gauge(&[p, "shmem"], v),
                    None => Ok(()),
                }
            })
        })?;
        family(enc, &LAST_KILL, |f| {
            last().try_for_each(|(p, k)| f.gauge(&[p], epoch_seconds(k.at)))
        })?;
    }
    // Families without samples are left out: a scrape of a host without
    // PSI or pools shows no empty headers (and source_up says why).
    if let Some(v) = vmstat {
        family(enc, &KERNEL_OOM_KILLS, |f| f.counter(&[], v))?;
    }
    if !cgroups.is_empty() {
        family(enc, &CGROUP_MEMORY, |f| {
            cgroups
                .iter()
                .filter_map(|(p, c)| Some((p, c.usage?)))
                .try_for_each(|(p, v)| f.gauge(&[p], v))
        })?;
        family(enc, &CGROUP_LIMIT, |f| {
            cgroups.iter().try_for_each(|(p, c)| match c.limit {
                Some(Limit::Bytes(v)) => f.gauge(&[p], v),
                _ => Ok(()),
            })
        })?;
        family(enc, &CGROUP_OOM_KILLS, |f| {
            cgroups
                .iter()
                .filter_map(|(p, c)| Some((p, c.events.oom_kill?)))
                .try_for_each(|(p, v)| f.counter(&[p], v))
        })?;
    }
    let v2 = || {
        cgroups
            .iter()
            .filter(|(_, c)| c.version == CgroupVersion::V2)
    };
    if v2().next().is_some() {
        family(enc, &CGROUP_EVENTS, |f| {
            v2().try_for_each(|(p, c)| {
                c.events
                    .by_name()
                    .try_for_each(|(event, v)| f.counter(&[p, event], v))
            })
        })?;
    }
    for (def, v) in [
        (&HOST_TOTAL, host.total),
        (&HOST_AVAILABLE, host.available),
        (&HOST_SWAP_FREE, host.swap_free),
    ] {
        if let Some(v) = v {
            family(enc, def, |f| f.gauge(&[], v))?;
        }
    }
    let kinds = [("some", pressure.some_usec), ("full", pressure.full_usec)];
    if kinds.iter().any(|(_, v)| v.is_some()) {
        family(enc, &PRESSURE, |f| {
            kinds
                .iter()
                .filter_map(|(k, v)| Some((k, (*v)?)))
                .try_for_each(|(k, v)| f.counter(&[k], v as f64 / 1e6))
        })?;
    }
    Ok(())
}

fn epoch_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
