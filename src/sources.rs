//! Every source, built from its options and registered in one table.
//!
//! [`Sources::build`] makes each source (and the judge) and registers it
//! in the [`Table`] with [`Table::add`], which hands the source back for
//! the handles others read of it (its published state, for the outputs'
//! [`Inputs`] or for another source). The table lists the sources in the
//! order the server starts them, each with its thread, named as its
//! collector, and whether the options give it anything to read; the
//! loop driver ([`crate::state::source::drive`]) runs each. A one-shot
//! diagnosis steps the same entries by collector name
//! (`one_shot.rs`).
//!
//! Adding a source: its module (a [`Source`]) and one `t.add(...)` line in
//! [`Sources::build`]. If the outputs show its state, that is the outputs'
//! side: its handle in [`Inputs`]. If a reload gives it new options, it
//! follows them from [`Reloads::follow`] before it is added.

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::app_log::{AppLogOptions, AppLogSource};
use crate::kernel::counter_reader::{CounterOptions, CounterReader};
use crate::kernel::kmsg_reader::{KmsgOptions, KmsgReader};
use crate::nginx::{NginxOptions, NginxSource};
use crate::pools::listen_queue::{ListenQueueOptions, ListenQueueSampler};
use crate::pools::self_usage::SelfUsageSource;
use crate::pools::server_status::{ServerStatusOptions, ServerStatusSource};
use crate::pools::{PoolOptions, PoolSource};
use crate::rules::{Judge, JudgeOptions};
use crate::snapshot::Inputs;
use crate::state::{Published, Sinks, Source, Stepped};

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

/// Every source, and the judge, built and registered.
pub struct Sources {
    /// The sources, in the order they start.
    pub table: Table,
    /// What the outputs read of them.
    pub inputs: Inputs,
    /// Where a reload hands them new options.
    pub reloads: Reloads,
}

/// A source as the table holds it: any [`Source`] a thread can take, and
/// `Any`, so that [`Table::add`] can hand it back as its own type.
pub trait Registered: Source + Send + Any {}

impl<S: Source + Send + Any> Registered for S {}

/// One source as the server runs it, on a thread named as its collector.
pub struct Entry {
    /// Whether the options give it something to read: one without waits
    /// idle, unstarted, until a reloaded config does.
    pub runs: fn(&Options) -> bool,
    pub source: Box<dyn Registered>,
}

impl Entry {
    /// Its collector's name, which its thread has too.
    pub fn name(&self) -> &'static str {
        self.source.collector()
    }

    /// Read what there is to its end, as a one-shot run does
    /// ([`Source::catch_up`]).
    pub fn catch_up(&mut self, sinks: &Sinks) -> Stepped {
        self.source.catch_up(sinks)
    }

    /// The source as its own type; `None` if it is not an `S`.
    fn source_mut<S: Source + 'static>(&mut self) -> Option<&mut S> {
        (&mut *self.source as &mut dyn Any).downcast_mut()
    }
}

/// Every source, in the order the server starts them.
#[derive(Default)]
pub struct Table {
    entries: Vec<Entry>,
}

impl Table {
    /// Register `source`, run when `runs` says the options give it work;
    /// returns it, to take what the outputs or other sources read of it.
    pub fn add<S: Source + Send + 'static>(
        &mut self,
        runs: fn(&Options) -> bool,
        source: S,
    ) -> &mut S {
        self.entries.push(Entry {
            runs,
            source: Box::new(source),
        });
        let added = self.entries.last_mut().expect("just pushed");
        added.source_mut().expect("just pushed as an S")
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Entry> {
        self.entries.iter()
    }

    /// The entry whose collector is `name`. Panics if there is none: the
    /// names are the code's own.
    pub fn get(&mut self, name: &str) -> &mut Entry {
        self.entries
            .iter_mut()
            .find(|e| e.name() == name)
            .unwrap_or_else(|| panic!("no source {name:?} in the table"))
    }

    pub fn into_entries(self) -> Vec<Entry> {
        self.entries
    }
}

/// How a reload (SIGHUP) hands the sources that take new options their
/// part of the new [`Options`]: each such source follows one
/// [`Published`] of its part, and [`Reloads::publish`] publishes them all.
/// A source takes its new options at the start of its next step.
#[derive(Default)]
pub struct Reloads {
    publishers: Vec<Publish>,
}

/// Publishes one source's part of new options.
type Publish = Box<dyn Fn(&Options) + Send>;

impl Reloads {
    /// Where a source follows its `part` of the options, as `o` gives it
    /// now and as each reload will.
    pub fn follow<T: Send + Sync + 'static>(
        &mut self,
        o: &Options,
        part: fn(&Options) -> T,
    ) -> Arc<Published<T>> {
        let out = Published::new(part(o));
        let to = out.clone();
        self.publishers.push(Box::new(move |o| to.publish(part(o))));
        out
    }

    /// Publish each follower's part of `o`.
    pub fn publish(&self, o: &Options) {
        for publish in &self.publishers {
            publish(o);
        }
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
    /// `timeline_cap` events, and register each in the order they start.
    /// `config_origin` is shown on the landing page.
    pub fn build(o: &Options, timeline_cap: usize, config_origin: &str) -> Result<Sources, String> {
        let sinks = Sinks::new(timeline_cap);
        let (mut t, mut r) = (Table::default(), Reloads::default());
        let mut pools = PoolSource::new(o.pools.clone(), sinks.clone());
        pools.follow_options(r.follow(o, |o| o.pools.clone()));
        let (index, smaps) = (pools.index(), pools.smaps_sampler());
        let pools = t.add(always, pools).view();
        t.add(always, smaps);
        let listen_queues = t
            .add(
                always,
                ListenQueueSampler::new(o.listen_queues.clone(), sinks.clone(), index.clone()),
            )
            .published();
        let memory = t
            .add(
                always,
                CounterReader::new(o.counters.clone(), sinks.clone(), index.clone()),
            )
            .published();
        let process = t
            .add(always, SelfUsageSource::new(&o.procfs, o.process_interval))
            .published();
        let status = ServerStatusSource::new(o.status.clone(), sinks.clone(), pools.clone());
        // Its options are not reloaded: it starts now or never.
        let status_runs = if status.has_work() { always } else { never };
        let server_status = t.add(status_runs, status).published();
        let mut kmsg =
            KmsgReader::new(o.kmsg.clone(), sinks.clone(), index.clone(), memory.clone());
        kmsg.follow_options(r.follow(o, |o| o.read_kmsg.then(|| o.kmsg.clone())));
        let kills = t.add(|o| o.read_kmsg, kmsg).published();
        let mut app_logs = AppLogSource::new(o.app_logs.clone(), sinks.clone());
        app_logs.follow_options(r.follow(o, |o| o.app_logs.clone()));
        // A pool found down still owns the socket its log says it
        // listened at: nginx's 502s for that socket are the pool's.
        let listening = app_logs.published();
        let mut nginx = NginxSource::new(o.nginx.clone(), sinks.clone(), index.clone())?
            .with_app_listeners(move || listening.get().listening.clone());
        nginx.follow_options(r.follow(o, |o| o.nginx.clone()));
        let nginx = t.add(|o| !o.nginx.logs.is_empty(), nginx).published();
        let app_log = t.add(|o| !o.app_logs.logs.is_empty(), app_logs).published();
        let judge = t.add(always, Judge::new(o.judge, sinks.clone(), index));
        let (exits, failures) = (judge.exits(), judge.failures());
        let inputs = Inputs {
            sinks,
            config_origin: config_origin.to_string(),
            pools,
            listen_queues,
            kills,
            memory,
            nginx,
            exits,
            failures,
            app_log,
            process,
            server_status,
        };
        Ok(Sources {
            table: t,
            inputs,
            reloads: r,
        })
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
        let table = Sources::build(&o, 16, "test").unwrap().table;
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
