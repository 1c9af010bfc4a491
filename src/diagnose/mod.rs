//! The diagnosis: the checklist of docs/runbook.md for a 502 from an
//! OOM-killed worker, run over what the sources published and what the
//! timeline holds, ending in a verdict that names the runbook's recovery
//! options in order, each with the numbers behind it.
//! `badgateway_exporter diagnose` builds it from the sources' one-shot
//! steps; the running exporter serves it at /diagnose from its live state.
//!
//! Here are the report's types; `build` makes it from the evidence,
//! `recovery` holds the table of recovery options and their arithmetic,
//! `growth` measures how a pool's workers grow, and `render` writes the
//! report as text or JSON.
//!
//! Each section names the command it replaces:
//! 1. the OOM kills (`dmesg | grep -i oom`, `journalctl -k | grep -i kill`);
//! 2. memory (`free -h`): the host, each pool's cgroup, pressure;
//! 3. each pool's master and workers (`systemctl status gunicorn`);
//! 4. nginx's 502s and 504s by cause, with the requests that were in
//!    flight on the workers that died.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use crate::kernel::{KillCounts, MemoryCounters};
use crate::nginx::NginxView;
use crate::pools::PoolsView;
use crate::rules::{ExitCounts, FailureCounts};
use crate::state::health::SourceStatus;
use crate::state::timeline::Timeline;

mod build;
#[cfg(test)]
mod fixture;
mod growth;
mod recovery;
mod render;

pub use build::build;
pub use growth::{
    worker_lives, Growth, GrowthHistory, OneShotGrowth, PoolLedger, RequestWindow, WorkerLife,
};
pub use render::rfc3339;

/// What the diagnosis reads.
pub struct Evidence<'a> {
    pub pools: &'a PoolsView,
    pub kills: &'a KillCounts,
    pub memory: &'a MemoryCounters,
    pub nginx: &'a NginxView,
    pub exits: &'a ExitCounts,
    pub failures: &'a FailureCounts,
    pub sources: &'a BTreeMap<String, SourceStatus>,
    pub timeline: &'a Timeline,
    /// Memory growth measured over time by the running exporter; `None`
    /// for a one-shot run.
    pub growth: Option<&'a GrowthHistory>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warning,
    Critical,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub generated_at: String,
    pub since: String,
    pub severity: Severity,
    /// Sources that could not be read, and why: what this diagnosis lacks.
    pub unreadable: Vec<Unreadable>,
    pub oom_kills: OomSection,
    pub memory: MemorySection,
    pub pools: Vec<PoolSection>,
    pub failures: FailureSection,
    pub findings: Vec<Finding>,
    pub recovery: Vec<RecoveryOption>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unreadable {
    pub source: String,
    pub error: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OomSection {
    pub replaces: &'static str,
    /// Whether the kernel log could be read at all.
    pub kernel_log_read: bool,
    /// OOM kills since boot by /proc/vmstat, including victims the log
    /// lost.
    pub since_boot: Option<u64>,
    pub kills: Vec<KillRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KillRow {
    pub at: String,
    pub pid: i32,
    pub comm: String,
    pub pool: String,
    pub slot: Option<usize>,
    pub anon_bytes: u64,
    pub file_bytes: u64,
    pub shmem_bytes: Option<u64>,
    pub cgroup: Option<String>,
    pub attributed_by: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemorySection {
    pub replaces: &'static str,
    pub total_bytes: Option<u64>,
    pub available_bytes: Option<u64>,
    pub swap_free_bytes: Option<u64>,
    pub pressure_some_seconds: Option<f64>,
    pub pressure_full_seconds: Option<f64>,
    pub cgroups: Vec<CgroupRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CgroupRow {
    pub pool: String,
    pub path: String,
    pub usage_bytes: Option<u64>,
    pub limit_bytes: Option<u64>,
    pub oom_kills: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PoolSection {
    pub replaces: &'static str,
    pub name: String,
    pub server: &'static str,
    pub up: bool,
    pub master_pid: Option<i32>,
    pub workers: Vec<WorkerRow>,
    /// Exits in the window, by reason.
    pub exits: BTreeMap<&'static str, u64>,
    /// Exits since the exporter started (or in this run), by reason.
    pub exits_total: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerRow {
    pub slot: usize,
    pub pid: i32,
    pub age_seconds: f64,
    pub rss_bytes: u64,
    pub pss_bytes: Option<u64>,
    pub uss_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailureSection {
    pub replaces: &'static str,
    /// In the window, by pool, status and cause.
    pub by_cause: Vec<CauseRow>,
    /// The requests in flight on workers that died, most frequent first.
    pub in_flight_on_dead_workers: Vec<RequestRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CauseRow {
    pub pool: String,
    pub status: u16,
    pub cause: &'static str,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestRow {
    pub pool: String,
    pub method: String,
    pub path: String,
    pub count: u64,
    /// The largest memory of a worker that died serving it.
    pub worker_rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecoveryOption {
    pub name: &'static str,
    pub title: &'static str,
    /// Whether the evidence points at it.
    pub applies: bool,
    pub advice: String,
    /// The inputs and results, as (what, value) pairs.
    pub numbers: Vec<(String, String)>,
}

/// The window a diagnosis looks at.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from: SystemTime,
    pub to: SystemTime,
}

const MIB: f64 = 1024.0 * 1024.0;

impl Report {
    /// 0 when nothing was found, 1 for warnings, 2 for a critical finding.
    pub fn exit_code(&self) -> i32 {
        match self.severity {
            Severity::Ok => 0,
            Severity::Warning => 1,
            Severity::Critical => 2,
        }
    }
}
