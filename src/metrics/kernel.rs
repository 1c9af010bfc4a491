//! The kernel source's families: OOM kills by pool, and the memory
//! counters (vmstat, meminfo, PSI, the pools' cgroups).

use std::fmt;

use super::Encoder;

use super::{define_metrics, family};
use crate::kernel::counter_files::Limit;
use crate::kernel::{epoch_seconds, CgroupVersion, KillCounts, MemoryCounters, NO_POOL};

define_metrics! { METRICS;
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

/// `pools`: every known pool, so that each has a kill count from the start.
pub fn encode<'p>(
    kills: &KillCounts,
    counters: &MemoryCounters,
    pools: impl Iterator<Item = &'p str>,
    enc: &mut Encoder,
) -> fmt::Result {
    let MemoryCounters {
        vmstat_oom_kills: vmstat,
        host,
        pressure,
        cgroups,
    } = counters;
    if kills.replayed {
        let lost = kills.records_lost;
        let mut kills_by_pool = kills.kills.clone();
        // Every known pool and "-" from the start, so rate() sees the 0.
        kills_by_pool.entry(NO_POOL.to_string()).or_default();
        for p in pools {
            kills_by_pool.entry(p.to_string()).or_default();
        }
        let kills = &kills_by_pool;
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
    if let Some(v) = *vmstat {
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
