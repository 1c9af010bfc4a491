//! Every source, built from its options and listed in one table.
//!
//! [`Sources::build`] makes each source (and the judge) and wires what
//! one reads of another's; [`Sources::table`] lists them as the loop
//! driver runs them ([`crate::state::source::drive`]), each with its
//! thread and whether the config gives it anything to read. The server
//! starts the table; a one-shot diagnosis steps the sources by name.
//! Adding a source: its module, a field and a line in `build`, a line in
//! `table`.

use std::path::PathBuf;
use std::time::Duration;

use crate::app_log::{AppLogOptions, AppLogSource};
use crate::kernel::counter_reader::{CounterOptions, CounterReader};
use crate::kernel::kmsg_reader::{KmsgOptions, KmsgReader};
use crate::nginx::{NginxOptions, NginxSource};
use crate::pools::listen_queue::{ListenQueueOptions, ListenQueueSampler};
use crate::pools::self_usage::SelfUsageSource;
use crate::pools::smaps::SmapsSampler;
use crate::pools::{PoolOptions, PoolSource};
use crate::rules::{Judge, JudgeOptions};
use crate::snapshot::Inputs;
use crate::state::{Sinks, Source};

/// Every source's options, as the flags and the config give them.
#[derive(Debug, Clone)]
pub struct Options {
    pub pools: PoolOptions,
    pub listen_queues: ListenQueueOptions,
    pub counters: CounterOptions,
    pub kmsg: KmsgOptions,
    /// Whether the config reads the kernel log.
    pub read_kmsg: bool,
    pub nginx: NginxOptions,
    pub app_logs: AppLogOptions,
    /// Where the exporter reads its own process, and how often.
    pub procfs: PathBuf,
    pub process_interval: Duration,
    pub judge: JudgeOptions,
}

/// Every source, and the judge, built and wired.
pub struct Sources {
    pub pools: PoolSource,
    pub smaps: SmapsSampler,
    pub listen_queues: ListenQueueSampler,
    pub counters: CounterReader,
    pub kmsg: KmsgReader,
    pub nginx: NginxSource,
    pub app_logs: AppLogSource,
    pub process: SelfUsageSource,
    pub judge: Judge,
    /// What the outputs read of them.
    pub inputs: Inputs,
}

/// One source as the server runs it.
pub struct Entry {
    /// Its thread's name.
    pub thread: &'static str,
    /// Whether the options give it something to read: one without waits
    /// idle, unstarted, until a reloaded config does.
    pub runs: fn(&Options) -> bool,
    pub source: Box<dyn Source + Send>,
}

impl Entry {
    fn new(
        thread: &'static str,
        runs: fn(&Options) -> bool,
        source: impl Source + Send + 'static,
    ) -> Entry {
        Entry {
            thread,
            runs,
            source: Box::new(source),
        }
    }
}

fn always(_: &Options) -> bool {
    true
}

impl Sources {
    /// Build every source from `o`, writing to sinks that keep
    /// `timeline_cap` events. `config_origin` is shown on the landing page.
    pub fn build(o: &Options, timeline_cap: usize, config_origin: &str) -> Result<Sources, String> {
        let sinks = Sinks::new(timeline_cap);
        let pools = PoolSource::new(o.pools.clone(), sinks.clone());
        let smaps = pools.smaps_sampler();
        let listen_queues =
            ListenQueueSampler::new(o.listen_queues.clone(), sinks.clone(), pools.index());
        let counters = CounterReader::new(o.counters.clone(), sinks.clone(), pools.index());
        let memory = counters.published();
        let kmsg = KmsgReader::new(o.kmsg.clone(), sinks.clone(), pools.index(), memory);
        let nginx = NginxSource::new(o.nginx.clone(), sinks.clone(), pools.index())?;
        let app_logs = AppLogSource::new(o.app_logs.clone(), sinks.clone());
        let process = SelfUsageSource::new(&o.procfs, o.process_interval, sinks.clone());
        let judge = Judge::new(o.judge, sinks.clone(), pools.index());
        let inputs = Inputs {
            sinks,
            config_origin: config_origin.to_string(),
            pools: pools.view(),
            listen_queues: listen_queues.published(),
            kills: kmsg.published(),
            memory: counters.published(),
            nginx: nginx.published(),
            exits: judge.exits(),
            failures: judge.failures(),
            app_log: app_logs.published(),
            process: process.published(),
        };
        Ok(Sources {
            pools,
            smaps,
            listen_queues,
            counters,
            kmsg,
            nginx,
            app_logs,
            process,
            judge,
            inputs,
        })
    }

    /// Every source as the driver runs it, in the order they start, and
    /// what the outputs read.
    pub fn table(self) -> (Vec<Entry>, Inputs) {
        let table = vec![
            Entry::new("pools", always, self.pools),
            Entry::new("smaps", always, self.smaps),
            Entry::new("listen_queue", always, self.listen_queues),
            Entry::new("kernel", always, self.counters),
            Entry::new("process", always, self.process),
            Entry::new("kmsg", |o| o.read_kmsg, self.kmsg),
            Entry::new("nginx", |o| !o.nginx.logs.is_empty(), self.nginx),
            Entry::new("app_log", |o| !o.app_logs.logs.is_empty(), self.app_logs),
            Entry::new("rules", always, self.judge),
        ];
        (table, self.inputs)
    }
}
