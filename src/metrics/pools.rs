//! The pool source's families: pools, their workers' memory and fds, spawns
//! and exits, what Gunicorn's control socket says, and the listen queues of
//! the pools' sockets.

use std::fmt;

use super::Encoder;

use super::{define_metrics, family};
use crate::pools::listen_queue::ListenQueues;
use crate::pools::{PoolState, PoolsView};

define_metrics! { METRICS;
    POOL_UP: Gauge, "badgateway_pool_up", ["pool", "server"], "1 while the pool's master process is found, 0 while it is not.";
    POOL_WORKERS: Gauge, "badgateway_pool_workers", ["pool"], "Live worker processes of the pool.";
    POOL_MEMORY: Gauge, "badgateway_pool_memory_bytes", ["pool", "type"], "Memory of the master plus all workers, by type (rss, pss, uss, swap).";
    WORKER_MEMORY: Gauge, "badgateway_worker_memory_bytes", ["pool", "slot", "type"], "Memory of one worker, by type: rss, pss, uss (Private_Clean + Private_Dirty) and swap.";
    WORKER_START: Gauge, "badgateway_worker_start_time_seconds", ["pool", "slot"], "Start time of the worker in the slot, in seconds since the epoch.";
    WORKER_OPEN_FDS: Gauge, "badgateway_worker_open_fds", ["pool", "slot"], "Open file descriptors of the worker.";
    WORKER_MAX_FDS: Gauge, "badgateway_worker_max_fds", ["pool", "slot"], "Soft limit on open file descriptors of the worker.";
    WORKER_CPU: Counter, "badgateway_worker_cpu_seconds", ["pool", "slot"], "User plus system CPU time of the worker in the slot; starts again from the new worker's own time when the slot's worker is replaced.";
    WORKER_SPAWNS: Counter, "badgateway_worker_spawns", ["pool"], "Workers that appeared under the pool's master since the exporter started.";
    MASTER_RESTARTS: Counter, "badgateway_master_restarts", ["pool"], "Times the pool's master was replaced by a new process.";
    SMAPS_SKIPPED: Counter, "badgateway_smaps_skipped", ["pool"], "smaps_rollup reads skipped by the size guard (RSS above --collector.smaps.max-rss).";
    READ_ERRORS: Counter, "badgateway_pool_read_errors", ["pool", "kind"], "Per-process values of the pool that could not be read, by kind (permission_denied, other).";
    UNSLOTTED: Gauge, "badgateway_pool_unslotted_workers", ["pool"], "Live workers beyond max_slots, counted without per-slot series.";
    WORKER_HEARTBEAT: Gauge, "badgateway_worker_heartbeat_age_seconds", ["pool", "slot"], "Seconds since the worker in the slot last sent its master a heartbeat: Gunicorn's control socket (show workers), or Puma's control app (last_checkin).";
    WORKER_TIMEOUT: Gauge, "badgateway_pool_worker_timeout_seconds", ["pool"], "Gunicorn's timeout for the pool (show config): the master kills a worker whose heartbeat is this old. Absent where it cannot be known or is 0 (off).";
    GUNICORN_SPAWNED: Counter, "badgateway_gunicorn_workers_spawned", ["pool"], "Workers Gunicorn's master forked since it started (show stats).";
    GUNICORN_KILLED: Counter, "badgateway_gunicorn_workers_killed", ["pool"], "SIGTERMs and SIGKILLs Gunicorn's master sent its workers since it started (show stats).";
    GUNICORN_RELOADS: Counter, "badgateway_gunicorn_reloads", ["pool"], "Reloads (SIGHUP) of Gunicorn's master since it started (show stats).";
    LISTEN_QUEUE_LENGTH: Gauge, "badgateway_pool_listen_queue_length", ["pool", "listener"], "Connections waiting in the listening socket's accept queue at the last sample.";
    LISTEN_QUEUE_LIMIT: Gauge, "badgateway_pool_listen_queue_limit", ["pool", "listener"], "The listening socket's backlog: the queue length past which connections are refused.";
    LISTEN_QUEUE_PEAK: Gauge, "badgateway_pool_listen_queue_peak", ["pool", "listener"], "The highest accept-queue length sampled over the last --collector.listen-queue.peak-window.";
}

pub fn encode(view: &PoolsView, enc: &mut Encoder) -> fmt::Result {
    let pools = &view.pools;
    let slot_names: Vec<String> = (0..pools
        .iter()
        .flat_map(|p| p.workers.iter().map(|w| w.slot + 1))
        .max()
        .unwrap_or(0))
        .map(|s| s.to_string())
        .collect();
    encode_pool_state(pools, enc)?;
    encode_workers(pools, &slot_names, enc)?;
    encode_pool_counters(pools, enc)?;
    encode_control(pools, &slot_names, enc)
}

/// Every pool's workers, with the pool's name.
fn workers_of(pools: &[PoolState]) -> impl Iterator<Item = (&str, &crate::pools::WorkerState)> {
    pools
        .iter()
        .flat_map(|p| p.workers.iter().map(move |w| (p.name.as_str(), w)))
}

/// Whether each pool is up, its workers and its memory.
fn encode_pool_state(pools: &[PoolState], enc: &mut Encoder) -> fmt::Result {
    family(enc, &POOL_UP, |f| {
        pools
            .iter()
            .try_for_each(|p| f.gauge(&[&p.name, p.server.as_str()], p.up as i64))
    })?;
    family(enc, &POOL_WORKERS, |f| {
        pools
            .iter()
            .try_for_each(|p| f.gauge(&[&p.name], p.live_workers() as i64))
    })?;
    family(enc, &POOL_MEMORY, |f| {
        pools.iter().filter(|p| p.up).try_for_each(|p| {
            let m = p.total_memory();
            f.gauge(&[&p.name, "rss"], m.rss)?;
            if let Some(v) = m.pss {
                f.gauge(&[&p.name, "pss"], v)?;
            }
            if let Some(v) = m.uss {
                f.gauge(&[&p.name, "uss"], v)?;
            }
            f.gauge(&[&p.name, "swap"], m.swap)
        })
    })?;
    Ok(())
}

/// Each worker by slot: memory, start, fds and CPU.
fn encode_workers(pools: &[PoolState], slot_names: &[String], enc: &mut Encoder) -> fmt::Result {
    let workers = || workers_of(pools);
    family(enc, &WORKER_MEMORY, |f| {
        workers().try_for_each(|(pool, w)| {
            let slot = slot_names[w.slot].as_str();
            f.gauge(&[pool, slot, "rss"], w.memory.rss)?;
            if let Some(v) = w.memory.pss {
                f.gauge(&[pool, slot, "pss"], v)?;
            }
            if let Some(v) = w.memory.uss {
                f.gauge(&[pool, slot, "uss"], v)?;
            }
            f.gauge(&[pool, slot, "swap"], w.memory.swap)
        })
    })?;
    family(enc, &WORKER_START, |f| {
        workers().try_for_each(|(pool, w)| f.gauge(&[pool, &slot_names[w.slot]], w.start_time))
    })?;
    family(enc, &WORKER_OPEN_FDS, |f| {
        workers().try_for_each(|(pool, w)| match w.open_fds {
            Some(n) => f.gauge(&[pool, &slot_names[w.slot]], n),
            None => Ok(()),
        })
    })?;
    family(enc, &WORKER_MAX_FDS, |f| {
        workers().try_for_each(|(pool, w)| match w.max_fds {
            Some(n) => f.gauge(&[pool, &slot_names[w.slot]], n),
            None => Ok(()),
        })
    })?;
    family(enc, &WORKER_CPU, |f| {
        workers().try_for_each(|(pool, w)| match w.cpu_seconds {
            Some(s) => f.counter(&[pool, &slot_names[w.slot]], s),
            None => Ok(()),
        })
    })
}

/// Each pool's spawns, restarts, skipped and failed reads.
fn encode_pool_counters(pools: &[PoolState], enc: &mut Encoder) -> fmt::Result {
    family(enc, &WORKER_SPAWNS, |f| {
        pools
            .iter()
            .try_for_each(|p| f.counter(&[&p.name], p.spawns))
    })?;
    family(enc, &MASTER_RESTARTS, |f| {
        pools
            .iter()
            .try_for_each(|p| f.counter(&[&p.name], p.master_restarts))
    })?;
    family(enc, &SMAPS_SKIPPED, |f| {
        pools
            .iter()
            .try_for_each(|p| f.counter(&[&p.name], p.smaps_skipped))
    })?;
    family(enc, &READ_ERRORS, |f| {
        pools.iter().try_for_each(|p| {
            f.counter(
                &[&p.name, "permission_denied"],
                p.read_errors.permission_denied,
            )?;
            f.counter(&[&p.name, "other"], p.read_errors.other)
        })
    })?;
    family(enc, &UNSLOTTED, |f| {
        pools
            .iter()
            .try_for_each(|p| f.gauge(&[&p.name], p.unslotted_workers as i64))
    })
}

/// What the app server's control interface says: heartbeats, and
/// Gunicorn's timeout and counts.
fn encode_control(pools: &[PoolState], slot_names: &[String], enc: &mut Encoder) -> fmt::Result {
    let workers = || workers_of(pools);
    family(enc, &WORKER_HEARTBEAT, |f| {
        workers().try_for_each(|(pool, w)| match w.heartbeat_age {
            Some(s) => f.gauge(&[pool, &slot_names[w.slot]], s),
            None => Ok(()),
        })
    })?;
    let gunicorn = || {
        pools
            .iter()
            .filter_map(|p| p.gunicorn.map(|g| (p.name.as_str(), g)))
    };
    family(enc, &WORKER_TIMEOUT, |f| {
        gunicorn().try_for_each(|(pool, g)| match g.worker_timeout {
            Some(t) => f.gauge(&[pool], t as i64),
            None => Ok(()),
        })
    })?;
    family(enc, &GUNICORN_SPAWNED, |f| {
        gunicorn().try_for_each(|(pool, g)| f.counter(&[pool], g.workers_spawned))
    })?;
    family(enc, &GUNICORN_KILLED, |f| {
        gunicorn().try_for_each(|(pool, g)| f.counter(&[pool], g.workers_killed))
    })?;
    family(enc, &GUNICORN_RELOADS, |f| {
        gunicorn().try_for_each(|(pool, g)| f.counter(&[pool], g.reloads))
    })
}

/// The listen-queue sampler's families.
pub fn encode_listen_queues(q: &ListenQueues, enc: &mut Encoder) -> fmt::Result {
    let each = |f: &mut super::Family<'_>, value: fn(&_) -> u32| {
        q.queues
            .iter()
            .try_for_each(|s| f.gauge(&[&s.pool, &s.listener], value(s) as i64))
    };
    family(enc, &LISTEN_QUEUE_LENGTH, |f| each(f, |s| s.length))?;
    family(enc, &LISTEN_QUEUE_LIMIT, |f| each(f, |s| s.limit))?;
    family(enc, &LISTEN_QUEUE_PEAK, |f| each(f, |s| s.peak))
}
