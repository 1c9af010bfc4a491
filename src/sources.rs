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
use crate::pools::server_status::{ServerStatusOptions, ServerStatusSource};
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
    /// The pools' status interfaces (not reloaded).
    pub status: ServerStatusOptions,
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
    pub status: ServerStatusSource,
    /// What the outputs read of them.
    pub inputs: Inputs,
}

/// One source as the server runs it, on a thread named as its collector.
pub struct Entry {
    /// Whether the options give it something to read: one without waits
    /// idle, unstarted, until a reloaded config does.
    pub runs: fn(&Options) -> bool,
    pub source: Box<dyn Source + Send>,
}

impl Entry {
    fn new(runs: fn(&Options) -> bool, source: impl Source + Send + 'static) -> Entry {
        Entry {
            runs,
            source: Box::new(source),
        }
    }

    /// Its collector's name, which its thread has too.
    pub fn name(&self) -> &'static str {
        self.source.collector()
    }
}

fn always(_: &Options) -> bool {
    true
}

fn never(_: &Options) -> bool {
    false
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
        let app_logs = AppLogSource::new(o.app_logs.clone(), sinks.clone());
        // A pool found down still owns the socket its log says it
        // listened at: nginx's 502s for that socket are the pool's.
        let listening = app_logs.published();
        let nginx = NginxSource::new(o.nginx.clone(), sinks.clone(), pools.index())?
            .with_app_listeners(move || listening.get().listening.clone());
        let process = SelfUsageSource::new(&o.procfs, o.process_interval);
        let judge = Judge::new(o.judge, sinks.clone(), pools.index());
        let status = ServerStatusSource::new(o.status.clone(), sinks.clone(), pools.view());
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
            server_status: status.published(),
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
            status,
            inputs,
        })
    }

    /// Every source as the driver runs it, in the order they start, and
    /// what the outputs read.
    pub fn table(self) -> (Vec<Entry>, Inputs) {
        // Its options are not reloaded: it starts now or never.
        let status = if self.status.has_work() {
            always
        } else {
            never
        };
        let table = vec![
            Entry::new(always, self.pools),
            Entry::new(always, self.smaps),
            Entry::new(always, self.listen_queues),
            Entry::new(always, self.counters),
            Entry::new(always, self.process),
            Entry::new(status, self.status),
            Entry::new(|o| o.read_kmsg, self.kmsg),
            Entry::new(|o| !o.nginx.logs.is_empty(), self.nginx),
            Entry::new(|o| !o.app_logs.logs.is_empty(), self.app_logs),
            Entry::new(always, self.judge),
        ];
        (table, self.inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NginxConfig;
    use crate::follow::StartAt;
    use crate::pools::listen_queue::ListenQueueOptions;

    /// Options with nothing to read but the host itself.
    fn options() -> Options {
        let procfs = PathBuf::from("/proc");
        Options {
            pools: PoolOptions::default(),
            listen_queues: ListenQueueOptions::default(),
            counters: CounterOptions {
                procfs: procfs.clone(),
                sysfs: PathBuf::from("/sys"),
                interval: Duration::from_secs(5),
            },
            kmsg: KmsgOptions {
                path: PathBuf::from("/dev/kmsg"),
                exit_window: Duration::from_secs(60),
                boot_time: None,
            },
            read_kmsg: false,
            nginx: NginxOptions {
                logs: Vec::new(),
                max_upstreams: 64,
                start: StartAt::End,
                interval: Duration::from_millis(250),
                request_history: false,
            },
            app_logs: AppLogOptions {
                logs: Vec::new(),
                start: StartAt::End,
                interval: Duration::from_millis(250),
            },
            procfs,
            process_interval: Duration::from_secs(1),
            judge: JudgeOptions::default(),
            status: ServerStatusOptions::new(&[], Duration::from_secs(5)),
        }
    }

    #[test]
    fn the_table_lists_every_source_once_and_the_config_starts_the_idle_ones() {
        let mut o = options();
        let (table, _) = Sources::build(&o, 16, "test").unwrap().table();
        let threads: Vec<&str> = table.iter().map(Entry::name).collect();
        assert_eq!(
            threads,
            [
                "pools",
                "smaps",
                "listen_queue",
                "kernel",
                "process",
                "server_status",
                "kmsg",
                "nginx",
                "app_log",
                "rules"
            ]
        );
        let running = |o: &Options| -> Vec<&str> {
            table
                .iter()
                .filter(|e| (e.runs)(o))
                .map(Entry::name)
                .collect()
        };
        assert_eq!(
            running(&o),
            [
                "pools",
                "smaps",
                "listen_queue",
                "kernel",
                "process",
                "rules"
            ]
        );
        o.read_kmsg = true;
        o.nginx.logs.push(NginxConfig {
            name: "main".into(),
            access_log: Some(PathBuf::from("/var/log/nginx/access.log")),
            log_format: "combined".into(),
            escape: None,
            error_log: None,
        });
        assert_eq!(running(&o).len(), 8);
        assert!(!running(&o).contains(&"app_log"));
    }
}
