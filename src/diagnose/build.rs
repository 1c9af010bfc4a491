//! Building the report: each section from what the sources published and
//! what the timeline holds in the window, then the findings and the
//! recovery options from the sections.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::kernel::counter_files::Limit;
use crate::kernel::{MemoryCounters, NO_POOL};
use crate::rules::failure_cause::kill_pool;
use crate::state::timeline::{Event, EventKind, FailureCause, KillRule, OomKill, Timeline};

use super::recovery::recovery;
use super::{
    rfc3339, CauseRow, CgroupRow, Evidence, FailureSection, Finding, KillRow, MemorySection,
    OomSection, PoolSection, Report, RequestRow, Severity, Unreadable, Window, WorkerRow, MIB,
};

/// How many of the requests in flight on dead workers the report lists.
const IN_FLIGHT_ROWS: usize = 20;

pub fn build(ev: &Evidence<'_>, w: Window) -> Report {
    let mut report = Report {
        generated_at: rfc3339(w.to),
        since: rfc3339(w.from),
        severity: Severity::Ok,
        unreadable: unreadable(ev),
        oom_kills: oom_section(ev, w),
        memory: memory_section(ev.memory),
        pools: pool_sections(ev, w),
        failures: failure_section(ev.timeline, w),
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

impl Window {
    fn holds(&self, at: SystemTime) -> bool {
        at >= self.from && at <= self.to
    }

    /// The timeline's events in the window, in the timeline's order.
    fn events<'t>(&self, tl: &'t Timeline) -> impl Iterator<Item = &'t Event> + 't {
        let w = *self;
        tl.iter().filter(move |e| w.holds(e.at))
    }
}

/// The sources that could not be read, and why.
fn unreadable(ev: &Evidence<'_>) -> Vec<Unreadable> {
    ev.sources
        .iter()
        .filter(|(_, s)| !s.up)
        .map(|(name, s)| Unreadable {
            source: name.clone(),
            error: s.last_error.clone().unwrap_or_default(),
        })
        .collect()
}

fn oom_section(ev: &Evidence<'_>, w: Window) -> OomSection {
    let tl = ev.timeline;
    let kills = w
        .events(tl)
        .filter_map(|e| match &e.kind {
            EventKind::OomKill(k) => Some(kill_row(tl, e, k)),
            _ => None,
        })
        .collect();
    OomSection {
        replaces: "dmesg | grep -i oom; journalctl -k | grep -i kill",
        kernel_log_read: ev.kills.replayed,
        since_boot: ev.memory.vmstat_oom_kills,
        kills,
    }
}

fn kill_row(tl: &Timeline, e: &Event, k: &OomKill) -> KillRow {
    let pool = kill_pool(tl, e);
    KillRow {
        at: rfc3339(e.at),
        pid: k.pid,
        comm: k.comm.to_string(),
        pool: pool.unwrap_or(NO_POOL).to_string(),
        slot: k.slot,
        anon_bytes: k.anon_bytes,
        file_bytes: k.file_bytes,
        shmem_bytes: k.shmem_bytes,
        cgroup: k.cgroup.as_deref().map(str::to_string),
        attributed_by: attributed_by(k.rule, pool.is_some()),
    }
}

/// In words, how a kill was tied to its pool: by the kernel source's rule,
/// or, when that found no pool, by the pool's own log of the victim's boot.
fn attributed_by(rule: KillRule, has_pool: bool) -> &'static str {
    match rule {
        KillRule::Unknown if has_pool => "the pool's own log, which logged the victim's boot",
        KillRule::Live => "a live worker of the pool",
        KillRule::Exited => "a worker of the pool that just exited",
        KillRule::Cgroup => "the pool's memory cgroup",
        KillRule::Unknown => "no pool",
    }
}

fn memory_section(m: &MemoryCounters) -> MemorySection {
    MemorySection {
        replaces: "free -h",
        total_bytes: m.host.total,
        available_bytes: m.host.available,
        swap_free_bytes: m.host.swap_free,
        pressure_some_seconds: m.pressure.some_usec.map(|u| u as f64 / 1e6),
        pressure_full_seconds: m.pressure.full_usec.map(|u| u as f64 / 1e6),
        cgroups: m
            .cgroups
            .iter()
            .map(|(pool, c)| CgroupRow {
                pool: pool.clone(),
                path: c.path.clone(),
                usage_bytes: c.usage,
                limit_bytes: limit_bytes(c.limit),
                oom_kills: c.events.oom_kill,
            })
            .collect(),
    }
}

/// A cgroup's memory limit in bytes; `None` when it has none.
pub(super) fn limit_bytes(limit: Option<Limit>) -> Option<u64> {
    match limit {
        Some(Limit::Bytes(b)) => Some(b),
        _ => None,
    }
}

fn pool_sections(ev: &Evidence<'_>, w: Window) -> Vec<PoolSection> {
    let mut window_exits = exits_by_pool(ev.timeline, w);
    ev.pools
        .pools
        .iter()
        .map(|p| PoolSection {
            replaces: "systemctl status gunicorn",
            name: p.name.clone(),
            server: p.server.as_str(),
            up: p.up,
            master_pid: p.master.map(|m| m.pid),
            workers: p.workers.iter().map(|wk| worker_row(wk, w.to)).collect(),
            exits: window_exits.remove(&p.name).unwrap_or_default(),
            exits_total: ev
                .exits
                .by_pool
                .get(&p.name)
                .map(|m| m.iter().map(|(r, n)| (r.as_str(), *n)).collect())
                .unwrap_or_default(),
        })
        .collect()
}

/// The worker ends in the window, by pool and reason.
fn exits_by_pool(tl: &Timeline, w: Window) -> BTreeMap<String, BTreeMap<&'static str, u64>> {
    let mut out: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
    for e in w.events(tl) {
        if let (EventKind::WorkerEnd(end), Some(pool)) = (&e.kind, &e.pool) {
            *out.entry(pool.to_string())
                .or_default()
                .entry(end.reason.as_str())
                .or_default() += 1;
        }
    }
    out
}

fn worker_row(wk: &crate::pools::WorkerState, now: SystemTime) -> WorkerRow {
    WorkerRow {
        slot: wk.slot,
        pid: wk.id.pid,
        age_seconds: (epoch(now) - wk.start_time).max(0.0),
        rss_bytes: wk.memory.rss,
        pss_bytes: wk.memory.pss,
        uss_bytes: wk.memory.uss,
        cpu_seconds: wk.cpu_seconds,
        open_fds: wk.open_fds,
        max_fds: wk.max_fds,
    }
}

/// Failed requests in the window, and the requests the dead workers were
/// serving.
fn failure_section(tl: &Timeline, w: Window) -> FailureSection {
    let mut by_cause: BTreeMap<(String, u16, FailureCause), u64> = BTreeMap::new();
    let mut in_flight: BTreeMap<(String, String, String), (u64, Option<u64>)> = BTreeMap::new();
    for e in w.events(tl) {
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
    in_flight.truncate(IN_FLIGHT_ROWS);
    FailureSection {
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
    }
}

/// The failed requests in the report of any of `causes`.
pub(super) fn count_causes(r: &Report, causes: &[FailureCause]) -> u64 {
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
    if let Some(f) = failed_requests(r) {
        add(f.severity, f.text);
    }
    if let (Some(t), Some(a)) = (r.memory.total_bytes, r.memory.available_bytes) {
        if a.saturating_mul(10) < t {
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

/// The failed requests in the window by cause: critical when a worker's
/// OOM kill or a pool that went down explains any.
fn failed_requests(r: &Report) -> Option<Finding> {
    let total: u64 = r.failures.by_cause.iter().map(|c| c.count).sum();
    if total == 0 {
        return None;
    }
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
    Some(Finding {
        severity: if critical {
            Severity::Critical
        } else {
            Severity::Warning
        },
        text: format!("{total} failed request(s) (502/504): {}", list.join(", ")),
    })
}

fn epoch(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{t, Inputs, MB};
    use super::*;
    use crate::state::timeline::AppLog;

    #[test]
    fn a_kill_is_tied_by_its_rule_or_by_the_pool_log_of_its_boot() {
        assert_eq!(
            attributed_by(KillRule::Live, true),
            "a live worker of the pool"
        );
        assert_eq!(
            attributed_by(KillRule::Cgroup, true),
            "the pool's memory cgroup"
        );
        assert_eq!(attributed_by(KillRule::Unknown, false), "no pool");
        // No rule found its pool, but the pool's log had logged its boot.
        let mut i = Inputs::new();
        i.timeline.push(
            t(10),
            Some("api".into()),
            EventKind::AppLog(AppLog::WorkerBooted { pid: 999 }),
        );
        i.oom_kill(None, 300);
        let k = &i.report().oom_kills.kills[0];
        assert_eq!(
            (k.pool.as_str(), k.attributed_by),
            ("api", "the pool's own log, which logged the victim's boot")
        );
    }

    #[test]
    fn only_the_window_is_reported() {
        let mut i = Inputs::new();
        i.pool("api", &[50]);
        i.oom_kill(Some("api"), 300);
        i.timeline.push(
            t(3601),
            Some("api".into()),
            EventKind::FailedRequest(crate::state::timeline::FailedRequest {
                error: crate::state::timeline::ServerError {
                    log: "edge".into(),
                    status: 502,
                    upstream: None,
                    conn: None,
                    request: None,
                    backend_sent: false,
                },
                cause: FailureCause::WorkerOomKilled,
                worker: None,
            }),
        );
        let r = i.report();
        assert_eq!(r.oom_kills.kills.len(), 1);
        assert!(r.failures.by_cause.is_empty(), "{:?}", r.failures);
        assert_eq!(r.pools[0].workers[0].rss_bytes, 50 * MB);
    }

    #[test]
    fn the_requests_on_dead_workers_most_frequent_first_and_bounded() {
        let mut i = Inputs::new();
        for k in 0..30 {
            i.failed(
                "api",
                FailureCause::WorkerOomKilled,
                Some(&format!("/r{k:02}")),
            );
        }
        i.failed("api", FailureCause::WorkerOomKilled, Some("/r29"));
        let rows = i.report().failures.in_flight_on_dead_workers;
        assert_eq!(rows.len(), IN_FLIGHT_ROWS);
        let first: Vec<(&str, u64)> = rows[..3]
            .iter()
            .map(|q| (q.path.as_str(), q.count))
            .collect();
        assert_eq!(first, [("/r29", 2), ("/r00", 1), ("/r01", 1)]);
    }

    #[test]
    fn failed_requests_are_critical_only_for_an_oom_kill_or_a_pool_down() {
        let severity = |causes: &[FailureCause]| {
            let mut i = Inputs::new();
            for c in causes {
                i.failed("api", *c, None);
            }
            i.report().severity
        };
        assert_eq!(severity(&[]), Severity::Ok);
        assert_eq!(
            severity(&[FailureCause::BacklogFull, FailureCause::UpstreamTimeout]),
            Severity::Warning
        );
        for c in [
            FailureCause::WorkerOomKilled,
            FailureCause::PoolDown,
            FailureCause::PoolStoppedAfterOom,
        ] {
            assert_eq!(
                severity(&[FailureCause::BacklogFull, c]),
                Severity::Critical
            );
        }
        let mut i = Inputs::new();
        i.failed("api", FailureCause::BacklogFull, None);
        i.failed("web", FailureCause::BacklogFull, None);
        i.failed("web", FailureCause::Other, None);
        assert_eq!(
            i.report().findings[0].text,
            "3 failed request(s) (502/504): backlog_full 2, other 1"
        );
    }

    #[test]
    fn little_memory_available_is_a_warning_at_any_size() {
        let finding = |total: u64, available: u64| {
            let mut i = Inputs::new();
            i.memory.host.total = Some(total);
            i.memory.host.available = Some(available);
            i.report().findings
        };
        assert_eq!(
            finding(4096 * MB, 300 * MB)[0].text,
            "MemAvailable is 300 MiB, under 10% of 4096 MiB"
        );
        assert!(finding(4096 * MB, 410 * MB).is_empty());
        // Sizes whose tenfold overflows.
        assert!(finding(u64::MAX, u64::MAX / 2).is_empty());
        assert_eq!(finding(u64::MAX, u64::MAX / 20).len(), 1);
    }
}
