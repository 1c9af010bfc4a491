//! The exporter's own families: build, collector loops, source health and
//! the timeline.

use std::collections::BTreeMap;
use std::fmt;

use super::Encoder;

use super::{define_metrics, family};
use crate::state::health::SourceStatus;
use crate::state::CollectorStats;

define_metrics! { METRICS;
    BUILD_INFO: Gauge, "badgateway_exporter_build_info", ["version", "revision", "branch", "rustversion"], "Build of the exporter: version, git revision and branch, and the Rust compiler's version; always 1.";
    COLLECTOR_DURATION: Gauge, "badgateway_collector_duration_seconds", ["collector"], "Wall time of the collector's last cycle.";
    COLLECTOR_CPU: Counter, "badgateway_collector_cpu_seconds", ["collector"], "CPU time the collector has used.";
    COLLECTOR_CYCLES: Counter, "badgateway_collector_cycles", ["collector"], "Cycles the collector has run.";
    COLLECTOR_ERRORS: Counter, "badgateway_collector_errors", ["collector"], "Values the collector could not read; each is skipped, never fatal.";
    SOURCE_UP: Gauge, "badgateway_source_up", ["source"], "1 if the source could be read on its last try, 0 if not: kernel files (kmsg, vmstat, meminfo, pressure, cgroup), the process events (proc_connector), the listen queues (listen_queue), each nginx log (nginx/NAME/access, nginx/NAME/error), and per pool its /proc reads (pool/NAME), its smaps_rollup reads (smaps/NAME), its log (app_log/NAME) and its control socket (control/NAME).";
    SOURCE_EVER_UP: Gauge, "badgateway_source_ever_up", ["source"], "1 once the source has been read since the exporter started, 0 while it never has: a source up once and down now has broken, one never up is not available on this host.";
    SOURCE_ERRORS: Counter, "badgateway_source_errors", ["source"], "Tries that failed to read the source, by the same `source` values as badgateway_source_up.";
    RESIDENT: Gauge, "badgateway_exporter_resident_memory_bytes", [], "The exporter's own resident memory (VmRSS).";
    CPU: Counter, "badgateway_exporter_cpu_seconds", [], "CPU time the exporter has used, user plus system.";
    TIMELINE_DROPPED: Counter, "badgateway_timeline_events_dropped", [], "Events dropped from the bounded timeline of worker exits, OOM kills and upstream failures because it was full.";
}

/// The build, as build.rs found it: what `--version` prints and
/// `badgateway_exporter_build_info` says.
#[derive(Debug, Clone, Copy)]
pub struct Build {
    pub version: &'static str,
    pub revision: &'static str,
    pub branch: &'static str,
    pub date: &'static str,
    pub rustc: &'static str,
}

pub const BUILD: Build = Build {
    version: env!("CARGO_PKG_VERSION"),
    revision: env!("BADGATEWAY_BUILD_REVISION"),
    branch: env!("BADGATEWAY_BUILD_BRANCH"),
    date: env!("BADGATEWAY_BUILD_DATE"),
    rustc: env!("BADGATEWAY_BUILD_RUSTC"),
};

impl Build {
    /// `--version`, laid out as Prometheus' Go exporters print theirs.
    pub fn version_text(&self) -> String {
        format!(
            "badgateway_exporter, version {} (branch: {}, revision: {})\n  build date:       {}\n  rust version:     {}\n  platform:         {}/{}\n",
            self.version,
            self.branch,
            self.revision,
            self.date,
            self.rustc,
            std::env::consts::OS,
            std::env::consts::ARCH,
        )
    }
}

/// What the exporter knows of itself.
pub struct SelfState<'a> {
    pub collectors: &'a BTreeMap<&'static str, CollectorStats>,
    pub sources: &'a BTreeMap<String, SourceStatus>,
    pub timeline_dropped: u64,
    pub resident_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
}

pub fn encode(s: &SelfState<'_>, enc: &mut Encoder) -> fmt::Result {
    family(enc, &BUILD_INFO, |f| {
        f.gauge(
            &[BUILD.version, BUILD.revision, BUILD.branch, BUILD.rustc],
            1,
        )
    })?;
    if let Some(v) = s.resident_bytes {
        family(enc, &RESIDENT, |f| f.gauge(&[], v))?;
    }
    if let Some(v) = s.cpu_seconds {
        family(enc, &CPU, |f| f.counter(&[], v))?;
    }
    let c = s.collectors;
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
    })?;
    family(enc, &SOURCE_UP, |f| {
        s.sources
            .iter()
            .try_for_each(|(k, st)| f.gauge(&[k], st.up as i64))
    })?;
    family(enc, &SOURCE_EVER_UP, |f| {
        s.sources
            .iter()
            .try_for_each(|(k, st)| f.gauge(&[k], st.ever_up as i64))
    })?;
    family(enc, &SOURCE_ERRORS, |f| {
        s.sources
            .iter()
            .try_for_each(|(k, st)| f.counter(&[k], st.errors))
    })?;
    family(enc, &TIMELINE_DROPPED, |f| {
        f.counter(&[], s.timeline_dropped)
    })
}
