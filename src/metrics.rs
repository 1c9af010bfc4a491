//! Rendering the world's state into OpenMetrics text.
//!
//! Every exported family is declared once in [`METRICS`]; the renderer can
//! only write families declared there, and a test checks that docs/metrics.md
//! documents each of them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, MetricEncoder,
};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::state::{lock, World};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
}

/// One metric family: the product's API.
#[derive(Debug)]
pub struct MetricDef {
    /// The name without the `_total` suffix that OpenMetrics adds to counters.
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

impl MetricDef {
    /// The sample name a user queries.
    pub fn exposed_name(&self) -> String {
        match self.kind {
            Kind::Counter => format!("{}_total", self.name),
            _ => self.name.to_string(),
        }
    }
}

/// Declare metric families and a table of them, one line each:
/// `IDENT: Kind, "name", ["label", ...], "help";`
macro_rules! define_metrics {
    ($table:ident; $( $id:ident : $kind:ident, $name:literal, [$($label:literal),*], $help:literal; )*) => {
        $( pub static $id: $crate::metrics::MetricDef = $crate::metrics::MetricDef {
            name: $name, kind: $crate::metrics::Kind::$kind, help: $help, labels: &[$($label),*],
        }; )*
        pub static $table: &[&$crate::metrics::MetricDef] = &[$(&$id),*];
    };
}
pub(crate) use define_metrics;

/// Every family the exporter can write, from every source.
pub fn all() -> impl Iterator<Item = &'static MetricDef> {
    CORE_METRICS
        .iter()
        .chain(crate::kernel::METRICS.iter())
        .chain(crate::nginx::METRICS.iter())
        .copied()
}

define_metrics! { CORE_METRICS;
    BUILD_INFO: Gauge, "badgateway_exporter_build_info", ["version"], "Build of the exporter; always 1.";
    COLLECTOR_DURATION: Gauge, "badgateway_collector_duration_seconds", ["collector"], "Wall time of the collector's last cycle.";
    COLLECTOR_CPU: Counter, "badgateway_collector_cpu_seconds", ["collector"], "CPU time the collector has used.";
    COLLECTOR_CYCLES: Counter, "badgateway_collector_cycles", ["collector"], "Cycles the collector has run.";
    COLLECTOR_ERRORS: Counter, "badgateway_collector_errors", ["collector"], "Values the collector could not read; each is skipped, never fatal.";
    POOL_UP: Gauge, "badgateway_pool_up", ["pool", "server"], "1 while the pool's master process is found, 0 while it is not.";
    POOL_WORKERS: Gauge, "badgateway_pool_workers", ["pool"], "Live worker processes of the pool.";
    POOL_MEMORY: Gauge, "badgateway_pool_memory_bytes", ["pool", "type"], "Memory of the master plus all workers, by type (rss, pss, uss, swap).";
    WORKER_MEMORY: Gauge, "badgateway_worker_memory_bytes", ["pool", "slot", "type"], "Memory of one worker, by type: rss, pss, uss (Private_Clean + Private_Dirty) and swap.";
    WORKER_START: Gauge, "badgateway_worker_start_time_seconds", ["pool", "slot"], "Start time of the worker in the slot, in seconds since the epoch.";
    WORKER_OPEN_FDS: Gauge, "badgateway_worker_open_fds", ["pool", "slot"], "Open file descriptors of the worker.";
    WORKER_MAX_FDS: Gauge, "badgateway_worker_max_fds", ["pool", "slot"], "Soft limit on open file descriptors of the worker.";
    WORKER_SPAWNS: Counter, "badgateway_worker_spawns", ["pool"], "Workers that appeared under the pool's master since the exporter started.";
    WORKER_EXITS: Counter, "badgateway_worker_exits", ["pool"], "Workers that left the pool since the exporter started.";
    MASTER_RESTARTS: Counter, "badgateway_master_restarts", ["pool"], "Times the pool's master was replaced by a new process.";
    SMAPS_SKIPPED: Counter, "badgateway_smaps_skipped", ["pool"], "smaps_rollup reads skipped by the size guard (RSS above --collector.smaps.max-rss).";
    READ_ERRORS: Counter, "badgateway_pool_read_errors", ["pool", "kind"], "Per-process values of the pool that could not be read, by kind (permission_denied, other).";
    UNSLOTTED: Gauge, "badgateway_pool_unslotted_workers", ["pool"], "Live workers beyond max_slots, counted without per-slot series.";
}

/// Writes samples of one family, pairing values with the declared labels.
pub struct Family<'a> {
    enc: MetricEncoder<'a>,
    def: &'static MetricDef,
}

impl Family<'_> {
    fn labels<'v>(&self, values: &[&'v str]) -> Vec<(&'static str, &'v str)> {
        debug_assert_eq!(values.len(), self.def.labels.len(), "{}", self.def.name);
        self.def
            .labels
            .iter()
            .copied()
            .zip(values.iter().copied())
            .collect()
    }

    pub fn gauge(&mut self, labels: &[&str], v: impl EncodeGaugeValue) -> fmt::Result {
        let l = self.labels(labels);
        self.enc.encode_family(&l)?.encode_gauge(&v)
    }

    pub fn counter(&mut self, labels: &[&str], v: impl EncodeCounterValue) -> fmt::Result {
        let l = self.labels(labels);
        self.enc
            .encode_family(&l)?
            .encode_counter::<Vec<(String, String)>, _, f64>(&v, None)
    }

    /// `buckets` are (upper bound, cumulative count), ending with +Inf.
    pub fn histogram(
        &mut self,
        labels: &[&str],
        sum: f64,
        count: u64,
        buckets: &[(f64, u64)],
    ) -> fmt::Result {
        let l = self.labels(labels);
        self.enc.encode_family(&l)?.encode_histogram(
            sum,
            count,
            buckets,
            None::<&HashMap<usize, Exemplar<Vec<(String, String)>, f64>>>,
        )
    }
}

/// Write one family: its descriptor, then whatever samples `f` writes.
pub fn family(
    enc: &mut DescriptorEncoder,
    def: &'static MetricDef,
    f: impl FnOnce(&mut Family<'_>) -> fmt::Result,
) -> fmt::Result {
    let ty = match def.kind {
        Kind::Gauge => MetricType::Gauge,
        Kind::Counter => MetricType::Counter,
        Kind::Histogram => MetricType::Histogram,
    };
    let enc = enc.encode_descriptor(def.name, def.help, None, ty)?;
    f(&mut Family { enc, def })
}

/// Encodes the world on demand; registered once in the registry.
#[derive(Debug)]
struct WorldCollector(Arc<World>);

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("World")
    }
}

impl Collector for WorldCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        encode_self(&self.0, &mut enc)?;
        encode_pools(&self.0, &mut enc)?;
        crate::kernel::encode(&self.0, &mut enc)?;
        crate::nginx::encode(&self.0, &mut enc)?;
        Ok(())
    }
}

pub fn registry(world: Arc<World>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(WorldCollector(world)));
    r
}

pub fn render(registry: &Registry) -> String {
    let mut s = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail; an encoder error would be a bug in
    // a label value, and a partial scrape is better than none.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut s, registry) {
        tracing::error!(error = %e, "encoding metrics");
    }
    s
}

fn encode_self(world: &World, enc: &mut DescriptorEncoder) -> fmt::Result {
    family(enc, &BUILD_INFO, |f| {
        f.gauge(&[env!("CARGO_PKG_VERSION")], 1)
    })?;
    let c = lock(&world.collectors).clone();
    family(enc, &COLLECTOR_DURATION, |f| {
        c.iter()
            .try_for_each(|(k, s)| f.gauge(&[k], s.last_duration.as_secs_f64()))
    })?;
    family(enc, &COLLECTOR_CPU, |f| {
        c.iter()
            .try_for_each(|(k, s)| f.counter(&[k], s.cpu_seconds))
    })?;
    family(enc, &COLLECTOR_CYCLES, |f| {
        c.iter().try_for_each(|(k, s)| f.counter(&[k], s.cycles))
    })?;
    family(enc, &COLLECTOR_ERRORS, |f| {
        c.iter().try_for_each(|(k, s)| f.counter(&[k], s.errors))
    })
}

fn encode_pools(world: &World, enc: &mut DescriptorEncoder) -> fmt::Result {
    let pools = lock(&world.pools).clone();
    let slot_names: Vec<String> = (0..pools
        .values()
        .flat_map(|p| p.workers.iter().map(|w| w.slot + 1))
        .max()
        .unwrap_or(0))
        .map(|s| s.to_string())
        .collect();
    family(enc, &POOL_UP, |f| {
        pools
            .values()
            .try_for_each(|p| f.gauge(&[&p.name, p.server.as_str()], p.up as i64))
    })?;
    family(enc, &POOL_WORKERS, |f| {
        pools
            .values()
            .try_for_each(|p| f.gauge(&[&p.name], p.live_workers() as i64))
    })?;
    family(enc, &POOL_MEMORY, |f| {
        pools.values().filter(|p| p.up).try_for_each(|p| {
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
    let workers = || {
        pools
            .values()
            .flat_map(|p| p.workers.iter().map(move |w| (p.name.as_str(), w)))
    };
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
    family(enc, &WORKER_SPAWNS, |f| {
        pools
            .values()
            .try_for_each(|p| f.counter(&[&p.name], p.spawns))
    })?;
    family(enc, &WORKER_EXITS, |f| {
        pools
            .values()
            .try_for_each(|p| f.counter(&[&p.name], p.exits))
    })?;
    family(enc, &MASTER_RESTARTS, |f| {
        pools
            .values()
            .try_for_each(|p| f.counter(&[&p.name], p.master_restarts))
    })?;
    family(enc, &SMAPS_SKIPPED, |f| {
        pools
            .values()
            .try_for_each(|p| f.counter(&[&p.name], p.smaps_skipped))
    })?;
    family(enc, &READ_ERRORS, |f| {
        pools.values().try_for_each(|p| {
            f.counter(
                &[&p.name, "permission_denied"],
                p.read_errors.permission_denied,
            )?;
            f.counter(&[&p.name, "other"], p.read_errors.other)
        })
    })?;
    family(enc, &UNSLOTTED, |f| {
        pools
            .values()
            .try_for_each(|p| f.gauge(&[&p.name], p.unslotted_workers as i64))
    })
}
