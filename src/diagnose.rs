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

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::time::SystemTime;

use serde::Serialize;

use crate::kernel::counter_files::Limit;
use crate::kernel::{KillCounts, MemoryCounters, NO_POOL};
use crate::nginx::{NginxView, RequestWindow};
use crate::pools::proc::ProcId;
use crate::pools::PoolsView;
use crate::rules::failure_cause::kill_pool;
use crate::rules::{ExitCounts, FailureCounts};
use crate::state::health::SourceStatus;
use crate::state::timeline::{AppLog, EventKind, ExitReason, FailureCause, Timeline};

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

/// How a pool's workers grow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Growth {
    pub per_request_bytes: f64,
    pub per_worker_hour_bytes: f64,
    /// A fresh worker's memory.
    pub baseline_bytes: f64,
    pub from: &'static str,
}

/// The memory growth of a pool's workers, from the growth evidence there
/// is: the running exporter's history, or a one-shot run's fit of each
/// worker's memory against the requests its pool served while it lived.
fn estimate_growth(ev: &Evidence<'_>, p: &crate::pools::PoolState) -> Option<Growth> {
    ev.growth.and_then(|h| h.estimate(&p.name))
}

/// Requests nginx sent to a pool's upstreams; `None` when no upstream of
/// the logs is the pool's.
fn pool_requests(nginx: &NginxView, pool: &str) -> Option<u64> {
    let mut total = 0;
    let mut found = false;
    for l in nginx.logs.values() {
        let ups: Vec<&str> = l
            .upstream_pools
            .iter()
            .filter(|(_, p)| p == pool)
            .map(|(u, _)| u.as_str())
            .collect();
        if ups.is_empty() {
            continue;
        }
        found = true;
        let c = &l.counters;
        for (id, name) in c.upstreams.names() {
            if ups.contains(&name) {
                total += c
                    .responses
                    .iter()
                    .filter(|((u, _), _)| *u == id)
                    .map(|(_, n)| n)
                    .sum::<u64>();
            }
        }
    }
    found.then_some(total)
}

/// The running exporter's memory and request history per pool: at each
/// pool cycle, the memory of each worker and the pool's request count. The
/// growth per request is what the workers grew over the requests the pool
/// served, counted only over the intervals in which no worker came or
/// went: a request served by a worker that died in the interval (an OOM
/// kill, a recycle) counts, but its growth is lost with it, which would
/// make the leak look smaller than it is and the suggested
/// `--max-requests` too high. Bounded: the last [`GrowthHistory::CAP`]
/// samples per pool.
///
/// A one-shot run has no history: [`OneShotGrowth`] balances a pool's
/// ledger since its workers booted where it can, and else fits each
/// worker's memory against the requests its pool served over its life.
#[derive(Debug, Default)]
pub struct GrowthHistory {
    pools: BTreeMap<String, VecDeque<Sample>>,
    /// Per pool: (requests a worker served, its memory, seconds it lived).
    lives: BTreeMap<String, Vec<(f64, f64, f64)>>,
    /// Per pool: the growth its balanced ledger gives.
    ledgers: BTreeMap<String, Growth>,
}

/// A worker's life, for a one-shot run's growth fit: its memory (a live
/// worker's now, an OOM victim's at its kill) and the span over which its
/// pool's requests are counted.
#[derive(Debug, Clone)]
pub struct WorkerLife {
    pub window: RequestWindow,
    pub memory_bytes: u64,
    /// The pool's workers: a worker served about its pool's requests over
    /// its life divided by them.
    pub workers: usize,
}

/// The lives a one-shot run weighs: each live worker of each pool that is
/// up, until `now`; and each OOM victim of a pool from the boot its app
/// server logged to its kill.
pub fn worker_lives(pools: &PoolsView, tl: &Timeline, now: SystemTime) -> Vec<WorkerLife> {
    let mut out = Vec::new();
    for p in pools.pools.iter().filter(|p| p.up) {
        let pool: std::sync::Arc<str> = p.name.as_str().into();
        let workers = p.live_workers().max(1);
        for w in &p.workers {
            out.push(WorkerLife {
                window: RequestWindow {
                    pool: pool.clone(),
                    from: SystemTime::UNIX_EPOCH
                        + std::time::Duration::from_secs_f64(w.start_time.max(0.0)),
                    to: now,
                },
                memory_bytes: w.memory.rss,
                workers,
            });
        }
        for e in tl.iter() {
            let EventKind::OomKill(k) = &e.kind else {
                continue;
            };
            if kill_pool(tl, e) != Some(p.name.as_str()) {
                continue;
            }
            // Its last boot before the kill, in the pool's own log. The log
            // gives whole seconds: the worker booted within that second, so
            // its pool's requests are counted from the second's end (never
            // those of the worker it replaced), and only a life long enough
            // for that second to be a tenth of it at most is weighed.
            let boot = tl
                .iter()
                .filter(|b| b.pool.as_deref() == Some(p.name.as_str()) && b.at <= e.at)
                .filter(|b| {
                    matches!(b.kind, EventKind::AppLog(AppLog::WorkerBooted { pid }) if pid == k.pid)
                })
                .map(|b| b.at + std::time::Duration::from_secs(1))
                .max();
            let long_enough = |from: SystemTime| {
                e.at.duration_since(from)
                    .is_ok_and(|d| d >= std::time::Duration::from_secs(10))
            };
            if let Some(from) = boot.filter(|f| long_enough(*f)) {
                out.push(WorkerLife {
                    window: RequestWindow {
                        pool: pool.clone(),
                        from,
                        to: e.at,
                    },
                    memory_bytes: k.anon_bytes + k.file_bytes + k.shmem_bytes.unwrap_or(0),
                    workers,
                });
            }
        }
    }
    out
}

/// A pool's whole ledger since its master booted its workers, when every
/// worker booted since is alive or was OOM-killed (the case this exporter
/// was built for: no --max-requests yet, workers killed one after
/// another): what the workers weigh now and weighed at their kills, less
/// what each weighed fresh, is what they kept of every request nginx sent
/// the pool meanwhile. Unlike a fit per worker, it needs no guess of how the
/// requests were spread over the workers (Gunicorn's sync workers take
/// them unevenly).
#[derive(Debug, Clone)]
pub struct PoolLedger {
    pub window: RequestWindow,
    /// The live workers' memory now plus the victims' at their kills.
    pub memory_bytes: u64,
    /// Workers booted in the window: each started fresh.
    pub boots: usize,
    /// What a fresh worker weighs: the smallest live worker.
    pub fresh_bytes: u64,
    /// The workers' lives summed, in seconds.
    pub worker_seconds: f64,
}

/// A one-shot run's evidence of growth: each worker's life, and each
/// pool's ledger where it balances.
#[derive(Debug, Clone, Default)]
pub struct OneShotGrowth {
    pub lives: Vec<WorkerLife>,
    pub ledgers: Vec<PoolLedger>,
}

impl OneShotGrowth {
    pub fn gather(pools: &PoolsView, tl: &Timeline, now: SystemTime) -> OneShotGrowth {
        OneShotGrowth {
            lives: worker_lives(pools, tl, now),
            ledgers: pools
                .pools
                .iter()
                .filter_map(|p| pool_ledger(p, tl, now))
                .collect(),
        }
    }

    /// The windows whose requests nginx is to count: the lives', then the
    /// ledgers'.
    pub fn windows(&self) -> Vec<RequestWindow> {
        self.lives
            .iter()
            .map(|l| l.window.clone())
            .chain(self.ledgers.iter().map(|l| l.window.clone()))
            .collect()
    }

    /// The growth evidence, with the requests counted in [`Self::windows`].
    pub fn history(&self, requests: &[u64]) -> GrowthHistory {
        let (lives, ledgers) = requests.split_at(self.lives.len().min(requests.len()));
        let mut h = GrowthHistory::from_lives(&self.lives, lives);
        for (l, n) in self.ledgers.iter().zip(ledgers) {
            let kept = l.memory_bytes as f64 - (l.boots as u64 * l.fresh_bytes) as f64;
            if *n == 0 || kept <= 0.0 {
                continue;
            }
            h.ledgers.insert(
                l.window.pool.to_string(),
                Growth {
                    per_request_bytes: kept / *n as f64,
                    per_worker_hour_bytes: if l.worker_seconds > 0.0 {
                        kept / l.worker_seconds * 3600.0
                    } else {
                        0.0
                    },
                    baseline_bytes: l.fresh_bytes as f64,
                    from: "the pool's workers now and at their OOM kills, since their master booted them, against every request nginx sent it",
                },
            );
        }
        h
    }
}

/// The ledger of pool `p`, when its log gives its workers' boots since its
/// master last started (or reloaded) and each of them is alive or was
/// OOM-killed.
fn pool_ledger(p: &crate::pools::PoolState, tl: &Timeline, now: SystemTime) -> Option<PoolLedger> {
    if !p.up || p.workers.is_empty() {
        return None;
    }
    let ours = |e: &crate::state::timeline::Event| e.pool.as_deref() == Some(p.name.as_str());
    let restarted = tl
        .iter()
        .filter(|e| ours(e))
        .filter(|e| matches!(e.kind, EventKind::AppLog(AppLog::Shutdown | AppLog::Reload)))
        .map(|e| e.at)
        .max();
    let boots: Vec<(i32, SystemTime)> = tl
        .iter()
        .filter(|e| ours(e) && restarted.is_none_or(|r| e.at > r))
        .filter_map(|e| match e.kind {
            EventKind::AppLog(AppLog::WorkerBooted { pid }) => Some((pid, e.at)),
            _ => None,
        })
        .collect();
    let from = boots.iter().map(|b| b.1).min()?;
    let victims: Vec<(i32, SystemTime, u64)> = tl
        .window(from, now)
        .filter(|e| kill_pool(tl, e) == Some(p.name.as_str()))
        .filter_map(|e| match &e.kind {
            EventKind::OomKill(k) => Some((
                k.pid,
                e.at,
                k.anon_bytes + k.file_bytes + k.shmem_bytes.unwrap_or(0),
            )),
            _ => None,
        })
        .collect();
    // It balances when each worker booted is alive or was killed, once.
    let live = |pid| p.workers.iter().any(|w| w.id.pid == pid);
    let killed = |pid| victims.iter().filter(|v| v.0 == pid).count();
    let balanced = boots.len() == p.workers.len() + victims.len()
        && boots
            .iter()
            .all(|(pid, _)| live(*pid) as usize + killed(*pid) == 1)
        && p.workers
            .iter()
            .all(|w| boots.iter().any(|b| b.0 == w.id.pid));
    if !balanced {
        return None;
    }
    let secs = |a: SystemTime, b: SystemTime| b.duration_since(a).unwrap_or_default().as_secs_f64();
    let worker_seconds = boots
        .iter()
        .map(|(pid, at)| {
            let end = victims.iter().find(|v| v.0 == *pid).map_or(now, |v| v.1);
            secs(*at, end)
        })
        .sum();
    Some(PoolLedger {
        window: RequestWindow {
            pool: p.name.as_str().into(),
            from,
            to: now,
        },
        memory_bytes: p.workers.iter().map(|w| w.memory.rss).sum::<u64>()
            + victims.iter().map(|v| v.2).sum::<u64>(),
        boots: boots.len(),
        fresh_bytes: p.workers.iter().map(|w| w.memory.rss).min()?,
        worker_seconds,
    })
}

#[derive(Debug, Clone)]
struct Sample {
    at: SystemTime,
    requests: u64,
    /// The pool's worker spawns plus exits so far: unchanged across an
    /// interval when no worker came or went.
    churn: u64,
    workers: Vec<(ProcId, u64)>,
}

impl GrowthHistory {
    /// An hour of 5 s cycles.
    pub const CAP: usize = 720;

    pub fn observe(&mut self, pools: &PoolsView, nginx: &NginxView, at: SystemTime) {
        for p in &pools.pools {
            let Some(requests) = pool_requests(nginx, &p.name) else {
                continue;
            };
            self.record(
                &p.name,
                Sample {
                    at,
                    requests,
                    churn: p.spawns + p.exits,
                    workers: p.workers.iter().map(|w| (w.id, w.memory.rss)).collect(),
                },
            );
        }
        self.pools
            .retain(|name, _| pools.pools.iter().any(|p| &p.name == name));
    }

    /// A one-shot run's evidence: `lives`, and the requests nginx served
    /// in each one's window, in order.
    pub fn from_lives(lives: &[WorkerLife], requests: &[u64]) -> GrowthHistory {
        let mut h = GrowthHistory::default();
        for (l, n) in lives.iter().zip(requests) {
            let secs = l
                .window
                .to
                .duration_since(l.window.from)
                .unwrap_or_default()
                .as_secs_f64();
            h.lives.entry(l.window.pool.to_string()).or_default().push((
                *n as f64 / l.workers as f64,
                l.memory_bytes as f64,
                secs,
            ));
        }
        h
    }

    /// The least-squares line through each worker's (requests served,
    /// memory): its slope is the growth per request, where it starts a
    /// fresh worker's size. Needs two workers that served different
    /// numbers of requests.
    fn fit(&self, pool: &str) -> Option<Growth> {
        let pts = self.lives.get(pool)?;
        let n = pts.len() as f64;
        let (mx, my) = (
            pts.iter().map(|p| p.0).sum::<f64>() / n,
            pts.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let var: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
        if var <= 0.0 {
            return None;
        }
        let slope = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / var;
        let smallest = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let per_request = slope.max(0.0);
        let (served, lived): (f64, f64) =
            pts.iter().fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.2));
        Some(Growth {
            per_request_bytes: per_request,
            per_worker_hour_bytes: if lived > 0.0 {
                per_request * served / lived * 3600.0
            } else {
                0.0
            },
            baseline_bytes: (my - per_request * mx).clamp(0.0, smallest),
            from: "each worker's memory against the requests nginx sent its pool while it lived",
        })
    }

    fn record(&mut self, pool: &str, s: Sample) {
        let h = self.pools.entry(pool.to_string()).or_default();
        if h.len() == Self::CAP {
            h.pop_front();
        }
        h.push_back(s);
    }

    pub fn estimate(&self, pool: &str) -> Option<Growth> {
        let Some(h) = self.pools.get(pool) else {
            return self.ledgers.get(pool).copied().or_else(|| self.fit(pool));
        };
        let (mut grown, mut requests, mut worker_seconds) = (0.0, 0u64, 0.0);
        let mut baseline: Option<u64> = None;
        for pair in h.iter().collect::<Vec<_>>().windows(2) {
            let (a, b) = (pair[0], pair[1]);
            // A new worker's first sample is what a fresh worker weighs.
            for (id, m) in &b.workers {
                if !a.workers.iter().any(|(i, _)| i == id) {
                    baseline = Some(baseline.map_or(*m, |b| b.min(*m)));
                }
            }
            // Both: a worker forked between cycles is counted at once but
            // listed only from the next cycle, having served requests.
            let same_workers = a.workers.len() == b.workers.len()
                && a.workers
                    .iter()
                    .all(|(id, _)| b.workers.iter().any(|(i, _)| i == id));
            if a.churn != b.churn || !same_workers {
                continue;
            }
            let dt = b.at.duration_since(a.at).unwrap_or_default().as_secs_f64();
            grown += a
                .workers
                .iter()
                .filter_map(|(id, m0)| {
                    let (_, m1) = b.workers.iter().find(|(i, _)| i == id)?;
                    Some(*m1 as f64 - *m0 as f64)
                })
                .sum::<f64>();
            worker_seconds += dt * b.workers.len() as f64;
            requests += b.requests.saturating_sub(a.requests);
        }
        if requests == 0 || worker_seconds <= 0.0 {
            return None;
        }
        let baseline = baseline
            .or_else(|| h.back()?.workers.iter().map(|(_, m)| *m).min())
            .unwrap_or(0) as f64;
        Some(Growth {
            per_request_bytes: (grown / requests as f64).max(0.0),
            per_worker_hour_bytes: (grown / worker_seconds * 3600.0).max(0.0),
            baseline_bytes: baseline,
            from: "the exporter's history of worker memory and nginx requests",
        })
    }
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
    use crate::state::timeline::{KillRule, OomKill};
    use std::time::Duration;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    /// A live worker started at `start` (epoch seconds) of `mib` MiB.
    fn worker(pid: i32, start: f64, mib: u64) -> crate::pools::WorkerState {
        crate::pools::WorkerState {
            id: ProcId { pid, starttime: 1 },
            slot: 0,
            start_time: start,
            memory: crate::pools::Memory {
                rss: mib << 20,
                ..Default::default()
            },
            open_fds: None,
            max_fds: None,
            cpu_seconds: None,
            heartbeat_age: None,
        }
    }

    /// Pool `api`, up, with `workers`.
    fn pool_of(workers: Vec<crate::pools::WorkerState>) -> PoolsView {
        let mut pool = crate::pools::PoolState::new("api", crate::config::Server::Gunicorn);
        pool.up = true;
        pool.workers = workers;
        PoolsView {
            pools: vec![pool],
            children_files: None,
        }
    }

    /// The kernel's kill of `pid` at 100 MiB (95 anon, 5 file).
    fn kill(pid: i32, rule: KillRule) -> EventKind {
        EventKind::OomKill(OomKill {
            seq: 1,
            pid,
            comm: "gunicorn".into(),
            slot: None,
            cgroup: None,
            memcg: true,
            rule,
            anon_bytes: 95 << 20,
            file_bytes: 5 << 20,
            shmem_bytes: None,
        })
    }

    /// Two workers that keep 2 MiB a request, the pool serving 10
    /// requests a cycle; one of them OOM-killed and replaced in the third
    /// interval, after it served its share of that interval's requests
    /// (found end to end: counted, those requests made the leak look half
    /// its size, and the suggested --max-requests let workers reach their
    /// share).
    #[test]
    fn growth_per_request_leaves_out_the_intervals_with_a_worker_lost() {
        let id = |pid| ProcId { pid, starttime: 1 };
        let mut h = GrowthHistory::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let sample = |i: u64, churn, workers: &[(i32, u64)]| Sample {
            at: t0 + Duration::from_secs(5 * i),
            requests: 10 * i,
            churn,
            workers: workers.iter().map(|(p, m)| (id(*p), m << 20)).collect(),
        };
        h.record("api", sample(0, 2, &[(1, 20), (2, 20)]));
        h.record("api", sample(1, 2, &[(1, 30), (2, 30)]));
        h.record("api", sample(2, 2, &[(1, 40), (2, 40)]));
        // Worker 2 served 5 requests, reached 50 MiB and was killed; 3 is
        // new and served none yet.
        h.record("api", sample(3, 4, &[(1, 50), (3, 21)]));
        h.record("api", sample(4, 4, &[(1, 60), (3, 31)]));
        // A third worker forked: counted at once, listed a cycle later,
        // when it has served requests of its own.
        h.record("api", sample(5, 5, &[(1, 70), (3, 41)]));
        h.record("api", sample(6, 5, &[(1, 76), (3, 45), (4, 22)]));
        let g = h.estimate("api").unwrap();
        assert_eq!(g.per_request_bytes, (2 << 20) as f64, "{g:?}");
        assert_eq!(g.baseline_bytes, (21 << 20) as f64);
        assert_eq!(g.per_worker_hour_bytes, (10u64 << 20) as f64 / 5.0 * 3600.0);
    }

    /// A one-shot run: workers that keep 2 MiB a request from 20 MiB, two
    /// of them in a pool of two, a third killed at 80 MiB; the requests
    /// are the pool's over each life, twice what each worker served.
    #[test]
    fn a_one_shot_fit_of_memory_against_requests() {
        let life = |from, to, mib: u64| WorkerLife {
            window: RequestWindow {
                pool: "api".into(),
                from: t(from),
                to: t(to),
            },
            memory_bytes: mib << 20,
            workers: 2,
        };
        let lives = [life(100, 200, 40), life(150, 200, 30), life(0, 100, 80)];
        let g = GrowthHistory::from_lives(&lives, &[20, 10, 60])
            .estimate("api")
            .unwrap();
        assert!(
            (g.per_request_bytes - (2u64 << 20) as f64).abs() < 1.0,
            "{g:?}"
        );
        assert!(
            (g.baseline_bytes - (20u64 << 20) as f64).abs() < 1.0,
            "{g:?}"
        );
        // 45 requests a worker over 250 worker-seconds, 2 MiB each.
        let hour = 2.0 * 45.0 / 250.0 * 3600.0;
        assert!((g.per_worker_hour_bytes / (1u64 << 20) as f64 - hour).abs() < 1e-6);
        // One worker, or workers that all served as many: no fit.
        assert!(GrowthHistory::from_lives(&lives[..1], &[20])
            .estimate("api")
            .is_none());
        assert!(GrowthHistory::from_lives(&lives[..2], &[20, 20])
            .estimate("api")
            .is_none());
    }

    /// The lives a one-shot run weighs: live workers until now; OOM
    /// victims of the pool from the end of their boot line's second, when
    /// they lived long enough for that second not to matter.
    #[test]
    fn worker_lives_from_the_pool_and_its_kills() {
        let pools = pool_of(vec![worker(9, 250.0, 30)]);
        let mut tl = Timeline::new(64);
        let api: Option<std::sync::Arc<str>> = Some("api".into());
        let kill = |pid| kill(pid, KillRule::Unknown);
        let booted = |pid| EventKind::AppLog(AppLog::WorkerBooted { pid });
        // 5 lived 5 s: too short. 6 lived 100 s. 7 was another pool's.
        tl.push(t(100), api.clone(), booted(5));
        tl.push(t(105), None, kill(5));
        tl.push(t(200), api.clone(), booted(6));
        tl.push(t(300), None, kill(6));
        tl.push(t(200), Some("web".into()), booted(7));
        tl.push(t(300), None, kill(7));
        let lives = worker_lives(&pools, &tl, t(400));
        let got: Vec<(u64, u64, u64)> = lives
            .iter()
            .map(|l| {
                let s = |x: SystemTime| x.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
                (s(l.window.from), s(l.window.to), l.memory_bytes >> 20)
            })
            .collect();
        assert_eq!(got, [(250, 400, 30), (201, 300, 100)]);
        assert!(lives
            .iter()
            .all(|l| l.workers == 1 && &*l.window.pool == "api"));
    }

    /// Two workers booted at the master's start, both OOM-killed, their
    /// replacements alive: the pool's ledger balances, and what the workers
    /// kept over the pool's requests is the growth, however unevenly the
    /// requests were spread. A worker that ended otherwise (recycled) leaves
    /// the ledger open, and the fit per worker is left.
    #[test]
    fn a_balanced_ledger_gives_the_growth_per_request() {
        let pools = pool_of(vec![worker(3, 200.0, 60), worker(4, 350.0, 20)]);
        let api: Option<std::sync::Arc<str>> = Some("api".into());
        let kill = |pid| kill(pid, KillRule::Cgroup);
        let booted = |pid| EventKind::AppLog(AppLog::WorkerBooted { pid });
        let mut tl = Timeline::new(64);
        tl.push(t(10), api.clone(), EventKind::AppLog(AppLog::Shutdown));
        tl.push(t(100), api.clone(), booted(1));
        tl.push(t(100), api.clone(), booted(2));
        tl.push(t(200), api.clone(), kill(1));
        tl.push(t(200), api.clone(), booted(3));
        tl.push(t(350), api.clone(), kill(2));
        tl.push(t(350), api.clone(), booted(4));
        let e = OneShotGrowth::gather(&pools, &tl, t(400));
        assert_eq!(e.ledgers.len(), 1);
        let l = &e.ledgers[0];
        assert_eq!(
            (l.boots, l.memory_bytes >> 20, l.fresh_bytes >> 20),
            (4, 280, 20)
        );
        assert_eq!(l.window.from, t(100));
        // 100 requests since the workers booted: (280 - 4 x 20) / 100.
        let mut requests = vec![0; e.lives.len()];
        requests.push(100);
        let g = e.history(&requests).estimate("api").unwrap();
        assert_eq!(g.per_request_bytes, (2u64 << 20) as f64);
        assert_eq!(g.baseline_bytes, (20u64 << 20) as f64);
        // A worker recycled: its memory at the end is not known.
        tl.push(t(360), api.clone(), booted(5));
        tl.push(
            t(370),
            api.clone(),
            EventKind::AppLog(AppLog::WorkerExited { pid: 5, code: 0 }),
        );
        assert!(OneShotGrowth::gather(&pools, &tl, t(400))
            .ledgers
            .is_empty());
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(t(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(t(1_795_407_601)), "2026-11-23T04:20:01Z");
        assert_eq!(rfc3339(t(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(t(4_102_444_799)), "2099-12-31T23:59:59Z");
    }
}
