//! The snapshot: the /metrics body and the landing page's data, built in
//! one place from what the sources published. HTTP serves the latest one
//! and never reads a source.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use crate::kernel::{KillCounts, MemoryCounters};
use crate::metrics;
use crate::nginx::NginxView;
use crate::pools::listen_queue::ListenQueues;
use crate::pools::PoolsView;
use crate::rules::ExitCounts;
use crate::state::{Published, Sinks};

/// Every published state the outputs read.
#[derive(Clone)]
pub struct Inputs {
    pub sinks: Sinks,
    /// Where the config came from, for the landing page.
    pub config_origin: String,
    pub pools: Arc<Published<PoolsView>>,
    pub listen_queues: Arc<Published<ListenQueues>>,
    pub kills: Arc<Published<KillCounts>>,
    pub memory: Arc<Published<MemoryCounters>>,
    pub nginx: Arc<Published<NginxView>>,
    pub exits: Arc<Published<ExitCounts>>,
}

impl fmt::Debug for Inputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Inputs")
    }
}

impl Inputs {
    /// Inputs with nothing published yet, for sources that are not run.
    pub fn empty(sinks: Sinks, config_origin: &str) -> Inputs {
        Inputs {
            sinks,
            config_origin: config_origin.to_string(),
            pools: Published::new(PoolsView::default()),
            listen_queues: Published::new(ListenQueues::default()),
            kills: Published::new(KillCounts::default()),
            memory: Published::new(MemoryCounters::default()),
            nginx: Published::new(NginxView::default()),
            exits: Published::new(ExitCounts::default()),
        }
    }
}

/// An encoded scrape and the landing page's data, built off the request
/// path.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub body: bytes::Bytes,
    /// `UNIX_EPOCH` until the first render.
    pub built_at: SystemTime,
    pub config_origin: String,
    pub pools: Vec<PoolSummary>,
    /// Each source and a word on its state.
    pub sources: Vec<(String, String)>,
}

impl Snapshot {
    /// What is served before the first render.
    pub fn empty(config_origin: &str) -> Snapshot {
        Snapshot {
            body: bytes::Bytes::from_static(b"# EOF\n"),
            built_at: SystemTime::UNIX_EPOCH,
            config_origin: config_origin.to_string(),
            pools: Vec::new(),
            sources: Vec::new(),
        }
    }
}

/// What the landing page shows of a pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSummary {
    pub name: String,
    pub server: &'static str,
    pub up: bool,
    pub master_pid: Option<i32>,
    pub workers: usize,
}

/// Encodes every source's families; registered once in the registry.
#[derive(Debug)]
struct Families(Inputs);

impl Collector for Families {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let i = &self.0;
        let (collectors, sources) = (i.sinks.collectors.all(), i.sinks.health.all());
        let timeline_dropped = i.sinks.timeline.read(|t| t.dropped());
        metrics::exporter::encode(
            &metrics::exporter::SelfState {
                collectors: &collectors,
                sources: &sources,
                timeline_dropped,
            },
            &mut enc,
        )?;
        let pools = i.pools.get();
        metrics::pools::encode(&pools, &mut enc)?;
        metrics::pools::encode_listen_queues(&i.listen_queues.get(), &mut enc)?;
        metrics::rules::encode(
            &i.exits.get(),
            pools.pools.iter().map(|p| p.name.as_str()),
            &mut enc,
        )?;
        metrics::kernel::encode(
            &i.kills.get(),
            &i.memory.get(),
            pools.pools.iter().map(|p| p.name.as_str()),
            &mut enc,
        )?;
        metrics::nginx::encode(&i.nginx.get(), &mut enc)
    }
}

/// Builds snapshots; keeps its registry between renders.
pub struct Renderer {
    inputs: Inputs,
    registry: Registry,
}

impl Renderer {
    pub fn new(inputs: Inputs) -> Renderer {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Families(inputs.clone())));
        Renderer { inputs, registry }
    }

    pub fn render(&self) -> Snapshot {
        let mut body = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail; an encoder error would be a bug
        // in a label value, and a partial scrape is better than none.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &self.registry) {
            tracing::error!(error = %e, "encoding metrics");
        }
        let pools = self
            .inputs
            .pools
            .get()
            .pools
            .iter()
            .map(|p| PoolSummary {
                name: p.name.clone(),
                server: p.server.as_str(),
                up: p.up,
                master_pid: p.master.map(|m| m.pid),
                workers: p.live_workers(),
            })
            .collect();
        let sources = self
            .inputs
            .sinks
            .health
            .all()
            .into_iter()
            .map(|(name, s)| {
                let state = match (s.up, &s.last_error) {
                    (true, _) => format!("readable ({} errors so far)", s.errors),
                    (false, Some(e)) => format!("NOT READABLE: {e}"),
                    (false, None) => "NOT READABLE".to_string(),
                };
                (name, state)
            })
            .collect();
        Snapshot {
            body: bytes::Bytes::from(body),
            built_at: SystemTime::now(),
            config_origin: self.inputs.config_origin.clone(),
            pools,
            sources,
        }
    }

    /// Re-render whenever a source signals a change, at most every
    /// `min_gap` and at least every second; forever, on the calling thread.
    pub fn run(self, out: Arc<Published<Snapshot>>, min_gap: Duration) -> ! {
        loop {
            self.inputs.sinks.changed.wait(Duration::from_secs(1));
            out.publish(self.render());
            std::thread::sleep(min_gap);
        }
    }
}
