//! The diagnosis: the checklist of docs/runbook.md for a 502 from an
//! OOM-killed worker, run over what the sources published and what the
//! timeline holds, ending in a verdict that names the runbook's recovery
//! options in order, each with the numbers behind it. `badgateway_exporter diagnose` builds it from the
//! sources' one-shot steps; the running exporter serves it at /diagnose
//! from its live state.
//!
//! Each section names the command it replaces:
//! 1. the OOM kills (`dmesg | grep -i oom`, `journalctl -k | grep -i kill`);
//! 2. memory (`free -h`): the host, each pool's cgroup, pressure;
//! 3. each pool's master and workers (`systemctl status gunicorn`);
//! 4. nginx's 502s and 504s by cause, with the requests that were in
//!    flight on the workers that died.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use serde::Serialize;

use crate::kernel::counter_files::Limit;
use crate::kernel::{KillCounts, MemoryCounters, NO_POOL};
use crate::nginx::NginxView;
use crate::pools::PoolsView;
use crate::rules::failure_cause::kill_pool;
use crate::rules::{ExitCounts, FailureCounts};
use crate::state::health::SourceStatus;
use crate::state::timeline::{EventKind, ExitReason, FailureCause, Timeline};

mod growth;

pub use growth::{worker_lives, Growth, GrowthHistory, OneShotGrowth, PoolLedger, WorkerLife};

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

pub fn build(ev: &Evidence<'_>, w: Window) -> Report {
    let tl = ev.timeline;
    let in_window = |at: SystemTime| at >= w.from && at <= w.to;

    let unreadable: Vec<Unreadable> = ev
        .sources
        .iter()
        .filter(|(_, s)| !s.up)
        .map(|(name, s)| Unreadable {
            source: name.clone(),
            error: s.last_error.clone().unwrap_or_default(),
        })
        .collect();

    let kills: Vec<KillRow> = tl
        .iter()
        .filter(|e| in_window(e.at))
        .filter_map(|e| match &e.kind {
            EventKind::OomKill(k) => Some(KillRow {
                at: rfc3339(e.at),
                pid: k.pid,
                comm: k.comm.to_string(),
                pool: kill_pool(tl, e).unwrap_or(NO_POOL).to_string(),
                slot: k.slot,
                anon_bytes: k.anon_bytes,
                file_bytes: k.file_bytes,
                shmem_bytes: k.shmem_bytes,
                cgroup: k.cgroup.as_deref().map(str::to_string),
                attributed_by: match k.rule {
                    crate::state::timeline::KillRule::Unknown if kill_pool(tl, e).is_some() => {
                        "the pool's own log, which logged the victim's boot"
                    }
                    crate::state::timeline::KillRule::Live => "a live worker of the pool",
                    crate::state::timeline::KillRule::Exited => {
                        "a worker of the pool that just exited"
                    }
                    crate::state::timeline::KillRule::Cgroup => "the pool's memory cgroup",
                    crate::state::timeline::KillRule::Unknown => "no pool",
                },
            }),
            _ => None,
        })
        .collect();
    let oom_kills = OomSection {
        replaces: "dmesg | grep -i oom; journalctl -k | grep -i kill",
        kernel_log_read: ev.kills.replayed,
        since_boot: ev.memory.vmstat_oom_kills,
        kills,
    };

    let memory = MemorySection {
        replaces: "free -h",
        total_bytes: ev.memory.host.total,
        available_bytes: ev.memory.host.available,
        swap_free_bytes: ev.memory.host.swap_free,
        pressure_some_seconds: ev.memory.pressure.some_usec.map(|u| u as f64 / 1e6),
        pressure_full_seconds: ev.memory.pressure.full_usec.map(|u| u as f64 / 1e6),
        cgroups: ev
            .memory
            .cgroups
            .iter()
            .map(|(pool, c)| CgroupRow {
                pool: pool.clone(),
                path: c.path.clone(),
                usage_bytes: c.usage,
                limit_bytes: match c.limit {
                    Some(Limit::Bytes(b)) => Some(b),
                    _ => None,
                },
                oom_kills: c.events.oom_kill,
            })
            .collect(),
    };

    let now = w.to;
    let mut window_exits: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
    for e in tl.iter().filter(|e| in_window(e.at)) {
        if let (EventKind::WorkerEnd(end), Some(pool)) = (&e.kind, &e.pool) {
            *window_exits
                .entry(pool.to_string())
                .or_default()
                .entry(end.reason.as_str())
                .or_default() += 1;
        }
    }
    let pools: Vec<PoolSection> = ev
        .pools
        .pools
        .iter()
        .map(|p| PoolSection {
            replaces: "systemctl status gunicorn",
            name: p.name.clone(),
            server: p.server.as_str(),
            up: p.up,
            master_pid: p.master.map(|m| m.pid),
            workers: p
                .workers
                .iter()
                .map(|wk| WorkerRow {
                    slot: wk.slot,
                    pid: wk.id.pid,
                    age_seconds: (epoch(now) - wk.start_time).max(0.0),
                    rss_bytes: wk.memory.rss,
                    pss_bytes: wk.memory.pss,
                    uss_bytes: wk.memory.uss,
                    cpu_seconds: wk.cpu_seconds,
                    open_fds: wk.open_fds,
                    max_fds: wk.max_fds,
                })
                .collect(),
            exits: window_exits.remove(&p.name).unwrap_or_default(),
            exits_total: ev
                .exits
                .by_pool
                .get(&p.name)
                .map(|m| m.iter().map(|(r, n)| (r.as_str(), *n)).collect())
                .unwrap_or_default(),
        })
        .collect();

    // Failed requests in the window, and the requests the dead workers
    // were serving.
    let mut by_cause: BTreeMap<(String, u16, FailureCause), u64> = BTreeMap::new();
    let mut in_flight: BTreeMap<(String, String, String), (u64, Option<u64>)> = BTreeMap::new();
    for e in tl.iter().filter(|e| in_window(e.at)) {
        let EventKind::FailedRequest(f) = &e.kind else {
            continue;
        };
        let pool = e.pool.as_deref().unwrap_or(NO_POOL).to_string();
        *by_cause
            .entry((pool.clone(), f.error.status, f.cause))
            .or_default() += 1;
        if let (Some(worker), Some(req)) = (&f.worker, &f.error.request) {
            let row = in_flight
                .entry((pool, req.method.to_string(), req.path.to_string()))
                .or_default();
            row.0 += 1;
            row.1 = row.1.max(worker.rss_bytes);
        }
    }
    let mut in_flight: Vec<RequestRow> = in_flight
        .into_iter()
        .map(|((pool, method, path), (count, rss))| RequestRow {
            pool,
            method,
            path,
            count,
            worker_rss_bytes: rss,
        })
        .collect();
    in_flight.sort_by(|a, b| b.count.cmp(&a.count).then(a.path.cmp(&b.path)));
    in_flight.truncate(20);
    let failures = FailureSection {
        replaces: "reading nginx's error.log and matching its times by hand",
        by_cause: by_cause
            .iter()
            .map(|((pool, status, cause), count)| CauseRow {
                pool: pool.clone(),
                status: *status,
                cause: cause.as_str(),
                count: *count,
            })
            .collect(),
        in_flight_on_dead_workers: in_flight,
    };

    let mut report = Report {
        generated_at: rfc3339(w.to),
        since: rfc3339(w.from),
        severity: Severity::Ok,
        unreadable,
        oom_kills,
        memory,
        pools,
        failures,
        findings: Vec::new(),
        recovery: Vec::new(),
    };
    report.findings = findings(&report);
    report.severity = report
        .findings
        .iter()
        .map(|f| f.severity)
        .max()
        .unwrap_or(Severity::Ok);
    report.recovery = recovery(&report, ev);
    report
}

fn count_causes(r: &Report, causes: &[FailureCause]) -> u64 {
    r.failures
        .by_cause
        .iter()
        .filter(|c| causes.iter().any(|k| k.as_str() == c.cause))
        .map(|c| c.count)
        .sum()
}

fn findings(r: &Report) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut add = |severity, text: String| out.push(Finding { severity, text });
    let pool_kills = r
        .oom_kills
        .kills
        .iter()
        .filter(|k| k.pool != NO_POOL)
        .count();
    let other_kills = r.oom_kills.kills.len() - pool_kills;
    if pool_kills > 0 {
        add(
            Severity::Critical,
            format!("{pool_kills} worker(s) of the pools were OOM-killed by the kernel"),
        );
    }
    if other_kills > 0 {
        add(
            Severity::Warning,
            format!("{other_kills} OOM kill(s) of processes of no pool"),
        );
    }
    for p in r.pools.iter().filter(|p| !p.up) {
        add(
            Severity::Critical,
            format!("pool {} is down: its master is not running", p.name),
        );
    }
    let total: u64 = r.failures.by_cause.iter().map(|c| c.count).sum();
    if total > 0 {
        let mut causes: BTreeMap<&str, u64> = BTreeMap::new();
        for c in &r.failures.by_cause {
            *causes.entry(c.cause).or_default() += c.count;
        }
        let list: Vec<String> = causes.iter().map(|(c, n)| format!("{c} {n}")).collect();
        let critical = count_causes(
            r,
            &[
                FailureCause::WorkerOomKilled,
                FailureCause::PoolDown,
                FailureCause::PoolStoppedAfterOom,
            ],
        ) > 0;
        add(
            if critical {
                Severity::Critical
            } else {
                Severity::Warning
            },
            format!("{total} failed request(s) (502/504): {}", list.join(", ")),
        );
    }
    if let (Some(t), Some(a)) = (r.memory.total_bytes, r.memory.available_bytes) {
        if a * 10 < t {
            add(
                Severity::Warning,
                format!(
                    "MemAvailable is {:.0} MiB, under 10% of {:.0} MiB",
                    a as f64 / MIB,
                    t as f64 / MIB
                ),
            );
        }
    }
    for u in &r.unreadable {
        add(
            Severity::Warning,
            format!("could not read {}: {}", u.source, u.error),
        );
    }
    out
}

/// The recovery options of docs/runbook.md, in its order, each with its
/// numbers.
fn recovery(r: &Report, ev: &Evidence<'_>) -> Vec<RecoveryOption> {
    let pool_kills: Vec<&KillRow> = r
        .oom_kills
        .kills
        .iter()
        .filter(|k| k.pool != NO_POOL)
        .collect();
    let oom = !pool_kills.is_empty()
        || count_causes(
            r,
            &[
                FailureCause::WorkerOomKilled,
                FailureCause::PoolStoppedAfterOom,
            ],
        ) > 0;
    let mut out = Vec::new();

    // 1. Reduce the request scope.
    let mut numbers = Vec::new();
    for q in r.failures.in_flight_on_dead_workers.iter().take(5) {
        numbers.push((
            format!("in flight on a dying worker of {}", q.pool),
            format!(
                "{} {} ({} time(s){})",
                q.method,
                q.path,
                q.count,
                q.worker_rss_bytes
                    .map(|b| format!(", worker at {:.0} MiB", b as f64 / MIB))
                    .unwrap_or_default()
            ),
        ));
    }
    out.push(RecoveryOption {
        name: "reduce_request_scope",
        title: "Reduce the request scope",
        applies: oom,
        advice: if numbers.is_empty() {
            "Stricter filters, shorter date ranges, fewer entities per request, pagination: no request was seen in flight on a dying worker (is nginx's access log configured?).".into()
        } else {
            "Stricter filters, shorter date ranges, fewer entities per request, pagination: start with the requests that were in flight when workers died.".into()
        },
        numbers,
    });

    // 2. Add RAM.
    let mut numbers = Vec::new();
    let mut advice = String::from(
        "Give the pool more memory, restart it, and check it holds under the same load.",
    );
    for p in ev
        .pools
        .pools
        .iter()
        .filter(|p| p.up || pool_kills.iter().any(|k| k.pool == p.name))
    {
        let limit = ev.memory.cgroups.get(&p.name).and_then(|c| match c.limit {
            Some(Limit::Bytes(b)) => Some(b),
            _ => None,
        });
        let pss = p.total_memory().pss.unwrap_or(p.total_memory().rss);
        let largest_victim = pool_kills
            .iter()
            .filter(|k| k.pool == p.name)
            .map(|k| k.anon_bytes + k.file_bytes + k.shmem_bytes.unwrap_or(0))
            .max();
        let workers = p.live_workers().max(1) as u64;
        numbers.push((format!("{} memory now (PSS)", p.name), mib(pss)));
        match limit {
            Some(l) => numbers.push((format!("{} cgroup limit", p.name), mib(l))),
            None => {
                if let Some(t) = ev.memory.host.total {
                    numbers.push((
                        format!("{} limit (no cgroup limit: the host's RAM)", p.name),
                        mib(t),
                    ));
                }
            }
        }
        if let Some(v) = largest_victim {
            let master = p.master_memory.pss.unwrap_or(p.master_memory.rss);
            let needed = master + workers * v;
            numbers.push((format!("{} largest OOM victim", p.name), mib(v)));
            numbers.push((
                format!("{} needed for {workers} workers that large", p.name),
                mib(needed),
            ));
            if let Some(l) = limit.or(ev.memory.host.total) {
                if needed > l {
                    advice = format!(
                        "Give pool {} at least {} more (the master plus {workers} workers the size of the largest victim), restart it, and check it holds.",
                        p.name,
                        mib(needed - l)
                    );
                }
            }
        }
    }
    out.push(RecoveryOption {
        name: "add_ram",
        title: "Add RAM",
        applies: oom,
        advice,
        numbers,
    });

    // 3. Recycle workers: --max-requests and --max-requests-jitter.
    let mut numbers = Vec::new();
    let mut advice = String::from(
        "Recycle each worker before it grows to its share of the memory limit. These are estimates from the memory growth observed; check them under real load.",
    );
    let mut growth_seen = false;
    // (pool, --max-requests, --max-requests-jitter, its workers were
    // OOM-killed).
    let mut suggested: Vec<(&str, f64, f64, bool)> = Vec::new();
    for p in ev.pools.pools.iter().filter(|p| p.up) {
        let Some(g) = estimate_growth(ev, p) else {
            continue;
        };
        growth_seen |= g.per_request_bytes > 0.0;
        let workers = p.live_workers().max(1) as f64;
        let budget = ev
            .memory
            .cgroups
            .get(&p.name)
            .and_then(|c| match c.limit {
                Some(Limit::Bytes(b)) => Some(b as f64),
                _ => None,
            })
            .or_else(|| {
                let t = p.total_memory();
                let now = t.pss.unwrap_or(t.rss) as f64;
                ev.memory.host.available.map(|a| a as f64 + now)
            });
        let master = p.master_memory.pss.unwrap_or(p.master_memory.rss) as f64;
        numbers.push((
            format!("{} growth measured from", p.name),
            g.from.to_string(),
        ));
        numbers.push((
            format!("{} growth per worker per hour", p.name),
            format!("{:.1} MiB", g.per_worker_hour_bytes / MIB),
        ));
        numbers.push((
            format!("{} growth per request", p.name),
            format!("{:.2} MiB", g.per_request_bytes / MIB),
        ));
        numbers.push((
            format!("{} fresh worker", p.name),
            format!("{:.0} MiB", g.baseline_bytes / MIB),
        ));
        if let Some(budget) = budget {
            let share = (budget - master) / workers;
            numbers.push((
                format!("{} share of the limit per worker", p.name),
                format!("{:.0} MiB", share / MIB),
            ));
            if g.per_request_bytes > 0.0 && share > g.baseline_bytes {
                // Recycle at 80% of the share, jitter included.
                let room = (share * 0.8 - g.baseline_bytes).max(0.0);
                let total = (room / g.per_request_bytes).floor();
                let jitter = (total / 10.0).floor().max(1.0);
                let max_requests = (total - jitter).max(1.0);
                numbers.push((
                    format!("{} suggested --max-requests", p.name),
                    format!("{max_requests:.0}"),
                ));
                numbers.push((
                    format!("{} suggested --max-requests-jitter", p.name),
                    format!("{jitter:.0}"),
                ));
                let killed = pool_kills.iter().any(|k| k.pool == p.name);
                suggested.push((&p.name, max_requests, jitter, killed));
            }
        }
    }
    // The advice names the pools whose workers were OOM-killed, when
    // there are such; a pool that merely grows a little is in the numbers.
    let any_killed = suggested.iter().any(|s| s.3);
    let named: Vec<String> = suggested
        .iter()
        .filter(|s| s.3 || !any_killed)
        .map(|(pool, max_requests, jitter, _)| {
            format!("for pool {pool}, --max-requests {max_requests:.0} --max-requests-jitter {jitter:.0}")
        })
        .collect();
    if !named.is_empty() {
        advice = format!(
            "Recycle each worker before it grows to its share of the memory limit: {} keeps a worker under 80% of its share. An estimate from the growth observed; check it under real load.",
            named.join("; ")
        );
    }
    out.push(RecoveryOption {
        name: "recycle_workers",
        title: "Recycle workers (max-requests with jitter)",
        applies: oom || growth_seen,
        advice,
        numbers,
    });

    // 4. The backlog or the timeout.
    let backlog = count_causes(r, &[FailureCause::BacklogFull]);
    let timeouts = count_causes(
        r,
        &[FailureCause::WorkerTimeout, FailureCause::UpstreamTimeout],
    );
    let fds = count_causes(r, &[FailureCause::FdExhausted]);
    let mut numbers = vec![
        ("failed: listen queue full".to_string(), backlog.to_string()),
        ("failed: timeouts".to_string(), timeouts.to_string()),
        (
            "failed: out of file descriptors".to_string(),
            fds.to_string(),
        ),
    ];
    for p in &r.pools {
        if let Some(n) = p.exits.get(ExitReason::Timeout.as_str()) {
            numbers.push((
                format!("{} workers killed for their timeout", p.name),
                n.to_string(),
            ));
        }
    }
    out.push(RecoveryOption {
        name: "tune_backlog_or_timeout",
        title: "Fix the backlog or the timeout",
        applies: backlog + timeouts + fds > 0,
        advice: "A full listen queue: raise --backlog (and net.core.somaxconn) or add workers. Timeouts: find the slow requests; raise --timeout and proxy_read_timeout only for work that needs it. File descriptors: raise LimitNOFILE or close what leaks.".into(),
        numbers,
    });

    // 5. Otherwise: unknown.
    let other = count_causes(r, &[FailureCause::Other]);
    let explained = out.iter().any(|o| o.applies);
    out.push(RecoveryOption {
        name: "escalate",
        title: "Escalate as unknown",
        applies: other > 0 || (r.severity > Severity::Ok && !explained),
        advice: "If the failures persist after the options above, or none applies, this is an unknown issue: profile the app, review its design and capacity.".into(),
        numbers: vec![("failed requests of no known cause".into(), other.to_string())],
    });
    out
}

/// The memory growth of a pool's workers, from the growth evidence there
/// is: the running exporter's history, or a one-shot run's fit of each
/// worker's memory against the requests its pool served while it lived.
fn estimate_growth(ev: &Evidence<'_>, p: &crate::pools::PoolState) -> Option<Growth> {
    ev.growth.and_then(|h| h.estimate(&p.name))
}

impl Report {
    /// 0 when nothing was found, 1 for warnings, 2 for a critical finding.
    pub fn exit_code(&self) -> i32 {
        match self.severity {
            Severity::Ok => 0,
            Severity::Warning => 1,
            Severity::Critical => 2,
        }
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "badgateway_exporter diagnose, {} (since {})",
            self.generated_at, self.since
        );
        if !self.unreadable.is_empty() {
            let _ = writeln!(s, "\nCould not read (this diagnosis lacks them):");
            for u in &self.unreadable {
                let _ = writeln!(s, "  {}: {}", u.source, u.error);
            }
        }
        let o = &self.oom_kills;
        let _ = writeln!(s, "\n== 1. OOM kills   (instead of: {})", o.replaces);
        if !o.kernel_log_read {
            let _ = writeln!(s, "  the kernel log could not be read");
        }
        if let Some(n) = o.since_boot {
            let _ = writeln!(s, "  since boot (/proc/vmstat): {n}");
        }
        if o.kills.is_empty() {
            let _ = writeln!(s, "  none in the window");
        }
        for k in &o.kills {
            let _ = writeln!(
                s,
                "  {} pid {} ({}) pool {} slot {}: anon {}, file {}, shmem {}; cgroup {}; tied by {}",
                k.at,
                k.pid,
                k.comm,
                k.pool,
                k.slot.map_or("-".into(), |x| x.to_string()),
                mib(k.anon_bytes),
                mib(k.file_bytes),
                k.shmem_bytes.map_or("-".into(), mib),
                k.cgroup.as_deref().unwrap_or("-"),
                k.attributed_by
            );
        }
        let m = &self.memory;
        let _ = writeln!(s, "\n== 2. Memory   (instead of: {})", m.replaces);
        let _ = writeln!(
            s,
            "  host: total {}, available {}, swap free {}",
            opt_mib(m.total_bytes),
            opt_mib(m.available_bytes),
            opt_mib(m.swap_free_bytes)
        );
        if let Some(some) = m.pressure_some_seconds {
            let _ = writeln!(
                s,
                "  pressure (PSI): some {:.3} s, full {:.3} s stalled since boot",
                some,
                m.pressure_full_seconds.unwrap_or(0.0)
            );
        }
        for c in &m.cgroups {
            let _ = writeln!(
                s,
                "  pool {} cgroup {}: usage {}, limit {}, OOM kills {}",
                c.pool,
                c.path,
                opt_mib(c.usage_bytes),
                c.limit_bytes.map_or("none".into(), mib),
                c.oom_kills.map_or("-".into(), |n| n.to_string())
            );
        }
        for p in &self.pools {
            let _ = writeln!(s, "\n== 3. Pool {}   (instead of: {})", p.name, p.replaces);
            let _ = writeln!(
                s,
                "  {} master {}: {}, {} workers",
                p.server,
                p.master_pid.map_or("-".into(), |x| x.to_string()),
                if p.up { "running" } else { "DOWN" },
                p.workers.len()
            );
            for wk in &p.workers {
                let _ = writeln!(
                    s,
                    "  slot {} pid {}: up {:.0} s, rss {}, pss {}, uss {}, cpu {}, fds {}/{}",
                    wk.slot,
                    wk.pid,
                    wk.age_seconds,
                    mib(wk.rss_bytes),
                    opt_mib(wk.pss_bytes),
                    opt_mib(wk.uss_bytes),
                    wk.cpu_seconds.map_or("-".into(), |c| format!("{c:.1} s")),
                    wk.open_fds.map_or("-".into(), |n| n.to_string()),
                    wk.max_fds.map_or("-".into(), |n| n.to_string()),
                );
            }
            let exits: Vec<String> = p.exits.iter().map(|(r, n)| format!("{r} {n}")).collect();
            let _ = writeln!(
                s,
                "  exits in the window: {}",
                if exits.is_empty() {
                    "none".into()
                } else {
                    exits.join(", ")
                }
            );
        }
        let f = &self.failures;
        let _ = writeln!(
            s,
            "\n== 4. nginx 502s and 504s   (instead of: {})",
            f.replaces
        );
        if f.by_cause.is_empty() {
            let _ = writeln!(s, "  none in the window");
        }
        for c in &f.by_cause {
            let _ = writeln!(s, "  pool {} {} {}: {}", c.pool, c.status, c.cause, c.count);
        }
        if !f.in_flight_on_dead_workers.is_empty() {
            let _ = writeln!(s, "  requests in flight on workers that died:");
            for q in &f.in_flight_on_dead_workers {
                let _ = writeln!(
                    s,
                    "    {} {} {} x{}{}",
                    q.pool,
                    q.method,
                    q.path,
                    q.count,
                    q.worker_rss_bytes
                        .map(|b| format!(" (worker at {})", mib(b)))
                        .unwrap_or_default()
                );
            }
        }
        let _ = writeln!(
            s,
            "\n== Verdict: {}",
            match self.severity {
                Severity::Ok => "OK, nothing found",
                Severity::Warning => "WARNING",
                Severity::Critical => "CRITICAL",
            }
        );
        for fi in &self.findings {
            let _ = writeln!(s, "  [{:?}] {}", fi.severity, fi.text);
        }
        let _ = writeln!(s, "\nRecovery options, in order:");
        for (i, o) in self.recovery.iter().enumerate() {
            let _ = writeln!(
                s,
                "{}. {}{}",
                i + 1,
                o.title,
                if o.applies { "" } else { " (not indicated)" }
            );
            let _ = writeln!(s, "   {}", o.advice);
            for (k, v) in &o.numbers {
                let _ = writeln!(s, "   - {k}: {v}");
            }
        }
        s
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / MIB)
}

fn opt_mib(b: Option<u64>) -> String {
    b.map_or("-".into(), mib)
}

fn epoch(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `2026-11-23T04:20:01Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(t(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(t(1_795_407_601)), "2026-11-23T04:20:01Z");
        assert_eq!(rfc3339(t(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(t(4_102_444_799)), "2099-12-31T23:59:59Z");
    }
}
