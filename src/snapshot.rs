//! The snapshot: the /metrics body and the landing page's data, built in
//! one place from what the sources published. HTTP serves the latest one
//! and never reads a source.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::app_log::AppLogCounts;
use crate::diagnose::{self, GrowthHistory};
use crate::kernel::{KillCounts, MemoryCounters};
use crate::metrics;
use crate::nginx::NginxView;
use crate::pools::listen_queue::ListenQueues;
use crate::pools::self_usage::ProcessUsage;
use crate::pools::server_status::{self, ServerStatuses};
use crate::pools::PoolsView;
use crate::rules::{ExitCounts, FailureCounts};
use crate::state::history::History;
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
    pub failures: Arc<Published<FailureCounts>>,
    pub app_log: Arc<Published<AppLogCounts>>,
    /// The exporter's own process.
    pub process: Arc<Published<ProcessUsage>>,
    pub server_status: Arc<Published<ServerStatuses>>,
}

impl fmt::Debug for Inputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Inputs")
    }
}

impl Inputs {
    /// The pools as published, with the check-in ages the app servers'
    /// status interfaces give (Puma's) as their workers' heartbeat ages:
    /// the one view /metrics, the status page and the diagnosis read.
    pub fn pools_view(&self) -> Arc<PoolsView> {
        let pools = self.pools.get();
        match server_status::with_heartbeats(&pools, &self.server_status.get()) {
            Some(with) => Arc::new(with),
            None => pools,
        }
    }

    /// The diagnosis of `window` over what the sources published now.
    pub fn diagnose(
        &self,
        growth: Option<&GrowthHistory>,
        window: diagnose::Window,
    ) -> diagnose::Report {
        let (pools, kills, memory, nginx) = (
            self.pools_view(),
            self.kills.get(),
            self.memory.get(),
            self.nginx.get(),
        );
        let (exits, failures, sources) = (
            self.exits.get(),
            self.failures.get(),
            self.sinks.health.all(),
        );
        self.sinks.timeline.read(|timeline| {
            diagnose::build(
                &diagnose::Evidence {
                    pools: &pools,
                    kills: &kills,
                    memory: &memory,
                    nginx: &nginx,
                    exits: &exits,
                    failures: &failures,
                    sources: &sources,
                    timeline,
                    growth,
                },
                window,
            )
        })
    }

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
            failures: Published::new(FailureCounts::default()),
            app_log: Published::new(AppLogCounts::default()),
            process: Published::new(ProcessUsage::default()),
            server_status: Published::new(ServerStatuses::default()),
        }
    }
}

/// One encoded exposition, and its gzip, made at most once per snapshot
/// and only when a scraper asks for it.
#[derive(Debug, Clone)]
pub struct Body {
    pub plain: bytes::Bytes,
    gzip: std::sync::OnceLock<bytes::Bytes>,
}

impl Body {
    pub fn new(plain: impl Into<bytes::Bytes>) -> Body {
        Body {
            plain: plain.into(),
            gzip: std::sync::OnceLock::new(),
        }
    }

    pub fn gzip(&self) -> bytes::Bytes {
        self.gzip
            .get_or_init(|| {
                use std::io::Write;
                let mut z = flate2::write::GzEncoder::new(
                    Vec::with_capacity(self.plain.len() / 4),
                    flate2::Compression::fast(),
                );
                // Writing to a Vec cannot fail.
                let _ = z.write_all(&self.plain);
                bytes::Bytes::from(z.finish().unwrap_or_default())
            })
            .clone()
    }
}

/// An encoded scrape and the landing page's data, built off the request
/// path.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Prometheus' text format 0.0.4.
    pub text: Body,
    /// OpenMetrics 1.0.
    pub openmetrics: Body,
    /// `UNIX_EPOCH` until the first render.
    pub built_at: SystemTime,
    pub config_origin: String,
    pub pools: Vec<PoolSummary>,
    /// Each source and a word on its state.
    pub sources: Vec<(String, String)>,
    /// The diagnosis of the last [`LIVE_DIAGNOSIS_WINDOW`], as text and
    /// as JSON.
    pub diagnosis_text: bytes::Bytes,
    pub diagnosis_json: bytes::Bytes,
    /// The status page at `/` and its hour as JSON at `/api/v1/timeline`,
    /// rebuilt with the diagnosis.
    pub status_html: Body,
    pub timeline_json: bytes::Bytes,
}

/// What the running exporter's /diagnose looks back over.
pub const LIVE_DIAGNOSIS_WINDOW: Duration = Duration::from_secs(3600);

impl Snapshot {
    /// What is served before the first render.
    pub fn empty(config_origin: &str) -> Snapshot {
        Snapshot {
            text: Body::new(bytes::Bytes::new()),
            openmetrics: Body::new(bytes::Bytes::from_static(b"# EOF\n")),
            built_at: SystemTime::UNIX_EPOCH,
            config_origin: config_origin.to_string(),
            pools: Vec::new(),
            sources: Vec::new(),
            diagnosis_text: bytes::Bytes::from_static(b"starting\n"),
            diagnosis_json: bytes::Bytes::from_static(b"{}"),
            status_html: Body::new(bytes::Bytes::from_static(
                b"<!doctype html><html><head><meta http-equiv=\"refresh\" content=\"1\"><title>badgateway_exporter</title></head><body><p>starting</p></body></html>\n",
            )),
            timeline_json: bytes::Bytes::from_static(b"{}"),
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

impl Inputs {
    /// Every source's families, in both formats.
    fn encode(&self) -> (String, String) {
        let mut enc = metrics::Encoder::with_capacity(32 * 1024);
        // Writing to a String cannot fail.
        let _ = self.encode_into(&mut enc);
        enc.finish()
    }

    fn encode_into(&self, enc: &mut metrics::Encoder) -> fmt::Result {
        let me = self.process.get();
        let (collectors, sources) = (self.sinks.collectors.all(), self.sinks.health.all());
        let timeline_dropped = self.sinks.timeline.read(|t| t.dropped());
        metrics::exporter::encode(
            &metrics::exporter::SelfState {
                collectors: &collectors,
                sources: &sources,
                timeline_dropped,
                resident_bytes: me.resident_bytes,
                cpu_seconds: me.cpu_seconds,
            },
            enc,
        )?;
        let pools = self.pools_view();
        metrics::pools::encode(&pools, enc)?;
        metrics::pools::encode_listen_queues(&self.listen_queues.get(), enc)?;
        metrics::rules::encode(
            &self.exits.get(),
            &self.failures.get(),
            pools.pools.iter().map(|p| p.name.as_str()),
            enc,
        )?;
        metrics::kernel::encode(
            &self.kills.get(),
            &self.memory.get(),
            pools.pools.iter().map(|p| p.name.as_str()),
            enc,
        )?;
        metrics::nginx::encode(&self.nginx.get(), enc)?;
        metrics::app_log::encode(&self.app_log.get(), enc)?;
        metrics::process::encode(&me, enc)?;
        metrics::server_status::encode(&self.server_status.get(), enc)
    }
}

/// What is rebuilt with the diagnosis: its text and JSON, the status page
/// and its timeline JSON.
#[derive(Clone)]
struct Rendered {
    at: std::time::Instant,
    text: bytes::Bytes,
    json: bytes::Bytes,
    html: bytes::Bytes,
    timeline: bytes::Bytes,
}

/// Builds snapshots; keeps the history the diagnosis measures memory
/// growth from, and the status page's hour.
pub struct Renderer {
    inputs: Inputs,
    growth: GrowthHistory,
    /// The status page's last hour.
    history: History,
    /// Where /metrics is served, for the page's link.
    telemetry_path: String,
    /// The pool view's version at the last growth sample.
    sampled: u64,
    /// The last diagnosis and when it was made: it is rebuilt at most once
    /// a second.
    diagnosis: Option<Rendered>,
}

impl Renderer {
    pub fn new(inputs: Inputs) -> Renderer {
        Renderer {
            inputs,
            growth: GrowthHistory::default(),
            history: History::new(),
            telemetry_path: "/metrics".into(),
            sampled: 0,
            diagnosis: None,
        }
    }

    /// Where /metrics is served, for the status page's link.
    pub fn telemetry_path(mut self, path: &str) -> Renderer {
        self.telemetry_path = path.to_string();
        self
    }

    /// Take what the timeline got since the last look, and this pool
    /// cycle's memory, into the hour.
    fn fill_history(&mut self, now: SystemTime, new_cycle: bool) {
        let h = &mut self.history;
        h.advance(now);
        self.inputs
            .sinks
            .timeline
            .read(|t| h.read_timeline(t.since(h.last_seq()), t.next_seq()));
        if new_cycle {
            let pools = self.inputs.pools.get();
            for p in &pools.pools {
                for w in &p.workers {
                    h.sample(&p.name, w.slot, w.memory.pss.unwrap_or(w.memory.rss), now);
                }
            }
            h.retain_pools(|name| pools.pools.iter().any(|p| p.name == name));
        }
    }

    /// The status page and its JSON over `report`.
    fn status(&self, report: &diagnose::Report, now: SystemTime) -> (String, String) {
        let (pools, listen_queues, memory) = (
            self.inputs.pools_view(),
            self.inputs.listen_queues.get(),
            self.inputs.memory.get(),
        );
        let sources = self.inputs.sinks.health.all();
        let page = crate::status::Page {
            report,
            history: &self.history,
            pools: &pools,
            listen_queues: &listen_queues,
            memory: &memory,
            sources: &sources,
            telemetry_path: &self.telemetry_path,
            config_origin: &self.inputs.config_origin,
            now,
        };
        (page.html(), page.json())
    }

    /// What the history holds, in bytes (bench/status_page.sh).
    pub fn history_size_bytes(&self) -> usize {
        self.history.size_bytes()
    }

    /// Sample the growth history once per pool cycle, and rebuild the
    /// diagnosis and the status page after a pool cycle or when they are a
    /// second old.
    fn diagnosis(&mut self) -> Rendered {
        let version = self.inputs.pools.version();
        let new_cycle = version != self.sampled;
        if new_cycle {
            self.sampled = version;
            self.growth.observe(
                &self.inputs.pools.get(),
                &self.inputs.nginx.get(),
                &self.inputs.server_status.get(),
                SystemTime::now(),
            );
        }
        self.fill_history(SystemTime::now(), new_cycle);
        // A new pool cycle shows at once on the page; otherwise once a
        // second is enough.
        if let Some(r) = &self.diagnosis {
            if !new_cycle && r.at.elapsed() < Duration::from_secs(1) {
                return r.clone();
            }
        }
        let now = SystemTime::now();
        let report = self.inputs.diagnose(
            Some(&self.growth),
            diagnose::Window {
                from: now
                    .checked_sub(LIVE_DIAGNOSIS_WINDOW)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
                to: now,
            },
        );
        let (html, timeline) = self.status(&report, now);
        let r = Rendered {
            at: std::time::Instant::now(),
            text: bytes::Bytes::from(report.text()),
            json: bytes::Bytes::from(report.json()),
            html: bytes::Bytes::from(html),
            timeline: bytes::Bytes::from(timeline),
        };
        self.diagnosis = Some(r.clone());
        r
    }

    pub fn render(&mut self) -> Snapshot {
        let d = self.diagnosis();
        let (text, openmetrics) = self.inputs.encode();
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
            text: Body::new(text),
            openmetrics: Body::new(openmetrics),
            built_at: SystemTime::now(),
            config_origin: self.inputs.config_origin.clone(),
            pools,
            sources,
            diagnosis_text: d.text,
            diagnosis_json: d.json,
            status_html: Body::new(d.html),
            timeline_json: d.timeline,
        }
    }

    /// Re-render whenever a source signals a change, at most every
    /// `min_gap` and at least every second; forever, on the calling thread.
    pub fn run(mut self, out: Arc<Published<Snapshot>>, min_gap: Duration) -> ! {
        loop {
            self.inputs.sinks.changed.wait(Duration::from_secs(1));
            out.publish(self.render());
            std::thread::sleep(min_gap);
        }
    }
}
