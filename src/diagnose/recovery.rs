//! The recovery options of docs/runbook.md, in its order, as one table:
//! each row says when its option applies, what it advises and the numbers
//! behind it, from figures gathered once from the report and the evidence.
//! The arithmetic behind the advice (the memory a pool needs, a
//! `--max-requests` that keeps a worker under its share) is in pure
//! functions below the table.

use crate::kernel::NO_POOL;
use crate::pools::PoolState;
use crate::state::timeline::{ExitReason, FailureCause};

use super::build::{count_causes, limit_bytes};
use super::render::mib;
use super::{Evidence, Growth, KillRow, RecoveryOption, Report, RequestRow, Severity, MIB};

/// One row of [`OPTIONS`].
pub(super) struct Row {
    pub name: &'static str,
    pub title: &'static str,
    /// Whether the evidence points at the option; the flag says whether an
    /// option above it does.
    pub applies: fn(&Figures<'_>, bool) -> bool,
    pub advice: fn(&Figures<'_>) -> String,
    /// The inputs and results, as (what, value) pairs.
    pub numbers: fn(&Figures<'_>) -> Vec<(String, String)>,
}

/// The table, in the runbook's order.
pub(super) static OPTIONS: &[Row] = &[
    Row {
        name: "reduce_request_scope",
        title: "Reduce the request scope",
        applies: |f, _| f.oom,
        advice: |f| {
            if f.in_flight.is_empty() {
                "Stricter filters, shorter date ranges, fewer entities per request, pagination: no request was seen in flight on a dying worker (is nginx's access log configured?).".into()
            } else {
                "Stricter filters, shorter date ranges, fewer entities per request, pagination: start with the requests that were in flight when workers died.".into()
            }
        },
        numbers: in_flight_numbers,
    },
    Row {
        name: "add_ram",
        title: "Add RAM",
        applies: |f, _| f.oom,
        advice: ram_advice,
        numbers: ram_numbers,
    },
    Row {
        name: "recycle_workers",
        title: "Recycle workers (max-requests with jitter)",
        applies: |f, _| f.oom || f.growth_seen(),
        advice: recycle_advice,
        numbers: recycle_numbers,
    },
    Row {
        name: "tune_backlog_or_timeout",
        title: "Fix the backlog or the timeout",
        applies: |f, _| f.backlog + f.timeouts + f.fds > 0,
        advice: |_| {
            "A full listen queue: raise --backlog (and net.core.somaxconn) or add workers. Timeouts: find the slow requests; raise --timeout and proxy_read_timeout only for work that needs it. File descriptors: raise LimitNOFILE or close what leaks.".into()
        },
        numbers: backlog_numbers,
    },
    Row {
        name: "escalate",
        title: "Escalate as unknown",
        applies: |f, explained| f.unknown > 0 || (f.severity > Severity::Ok && !explained),
        advice: |_| {
            "If the failures persist after the options above, or none applies, this is an unknown issue: profile the app, review its design and capacity.".into()
        },
        numbers: |f| {
            vec![(
                "failed requests of no known cause".into(),
                f.unknown.to_string(),
            )]
        },
    },
];

/// The recovery options, each weighed on the report and the evidence.
pub(super) fn recovery(r: &Report, ev: &Evidence<'_>) -> Vec<RecoveryOption> {
    let figures = Figures::gather(r, ev);
    let mut out: Vec<RecoveryOption> = Vec::with_capacity(OPTIONS.len());
    for row in OPTIONS {
        let explained = out.iter().any(|o| o.applies);
        out.push(RecoveryOption {
            name: row.name,
            title: row.title,
            applies: (row.applies)(&figures, explained),
            advice: (row.advice)(&figures),
            numbers: (row.numbers)(&figures),
        });
    }
    out
}

/// What the options are weighed on.
pub(super) struct Figures<'a> {
    severity: Severity,
    /// Workers of a pool were OOM-killed, or requests failed for it.
    oom: bool,
    /// The requests most often in flight on workers that died.
    in_flight: &'a [RequestRow],
    /// Each pool that is up or lost a worker to the OOM killer.
    ram: Vec<PoolRam<'a>>,
    /// Each pool that is up and whose growth is known.
    recycle: Vec<PoolRecycle<'a>>,
    /// Failed requests: the listen queue full, timeouts, out of file
    /// descriptors, of no known cause.
    backlog: u64,
    timeouts: u64,
    fds: u64,
    unknown: u64,
    /// Workers killed for their timeout in the window, by pool.
    timeout_kills: Vec<(&'a str, u64)>,
}

/// How many of the requests in flight on dead workers the first option
/// names.
const IN_FLIGHT_NAMED: usize = 5;

impl<'a> Figures<'a> {
    fn gather(r: &'a Report, ev: &'a Evidence<'_>) -> Figures<'a> {
        let of_pools: Vec<&KillRow> = r
            .oom_kills
            .kills
            .iter()
            .filter(|k| k.pool != NO_POOL)
            .collect();
        let killed = |pool: &str| of_pools.iter().any(|k| k.pool == pool);
        let oom = !of_pools.is_empty()
            || count_causes(
                r,
                &[
                    FailureCause::WorkerOomKilled,
                    FailureCause::PoolStoppedAfterOom,
                ],
            ) > 0;
        let in_flight = &r.failures.in_flight_on_dead_workers;
        Figures {
            severity: r.severity,
            oom,
            in_flight: &in_flight[..in_flight.len().min(IN_FLIGHT_NAMED)],
            ram: ev
                .pools
                .pools
                .iter()
                .filter(|p| p.up || killed(&p.name))
                .map(|p| PoolRam::of(p, &of_pools, ev))
                .collect(),
            recycle: ev
                .pools
                .pools
                .iter()
                .filter(|p| p.up)
                .filter_map(|p| PoolRecycle::of(p, ev, killed(&p.name)))
                .collect(),
            backlog: count_causes(r, &[FailureCause::BacklogFull]),
            timeouts: count_causes(
                r,
                &[FailureCause::WorkerTimeout, FailureCause::UpstreamTimeout],
            ),
            fds: count_causes(r, &[FailureCause::FdExhausted]),
            unknown: count_causes(r, &[FailureCause::Other]),
            timeout_kills: r
                .pools
                .iter()
                .filter_map(|p| {
                    Some((p.name.as_str(), *p.exits.get(ExitReason::Timeout.as_str())?))
                })
                .collect(),
        }
    }

    fn growth_seen(&self) -> bool {
        self.recycle
            .iter()
            .any(|p| p.growth.per_request_bytes > 0.0)
    }
}

/// A pool's memory against its limit.
struct PoolRam<'a> {
    pool: &'a str,
    /// Master and workers now: PSS, or RSS where PSS was not read.
    now: u64,
    cgroup_limit: Option<u64>,
    host_total: Option<u64>,
    /// Its largest OOM victim in the window: anon, file and shmem.
    largest_victim: Option<u64>,
    /// Its live workers, at least one.
    workers: u64,
    master: u64,
}

impl<'a> PoolRam<'a> {
    /// `kills`: the OOM kills of the pools' workers in the window.
    fn of(p: &'a PoolState, kills: &[&KillRow], ev: &Evidence<'_>) -> PoolRam<'a> {
        let total = p.total_memory();
        PoolRam {
            pool: &p.name,
            now: total.pss.unwrap_or(total.rss),
            cgroup_limit: ev
                .memory
                .cgroups
                .get(&p.name)
                .and_then(|c| limit_bytes(c.limit)),
            host_total: ev.memory.host.total,
            largest_victim: kills
                .iter()
                .filter(|k| k.pool == p.name)
                .map(|k| k.anon_bytes + k.file_bytes + k.shmem_bytes.unwrap_or(0))
                .max(),
            workers: p.live_workers().max(1) as u64,
            master: p.master_memory.pss.unwrap_or(p.master_memory.rss),
        }
    }

    fn needed(&self) -> Option<u64> {
        Some(ram_needed(self.master, self.workers, self.largest_victim?))
    }

    /// How much more it needs than its cgroup's limit, or the host's RAM.
    fn short_by(&self) -> Option<u64> {
        ram_short_by(self.needed()?, self.cgroup_limit.or(self.host_total)?)
    }
}

/// A pool's growth against its workers' share of its memory.
struct PoolRecycle<'a> {
    pool: &'a str,
    growth: Growth,
    /// Each worker's share of the pool's budget, when a budget is known.
    share: Option<f64>,
    /// Its workers were OOM-killed in the window.
    killed: bool,
}

impl<'a> PoolRecycle<'a> {
    /// `None` when the pool's growth is not known: a one-shot run without
    /// the growth evidence, or a history too short.
    fn of(p: &'a PoolState, ev: &Evidence<'_>, killed: bool) -> Option<PoolRecycle<'a>> {
        let growth = ev.growth.and_then(|h| h.estimate(&p.name))?;
        let total = p.total_memory();
        let budget = recycle_budget(
            ev.memory
                .cgroups
                .get(&p.name)
                .and_then(|c| limit_bytes(c.limit)),
            ev.memory.host.available,
            total.pss.unwrap_or(total.rss),
        );
        let master = p.master_memory.pss.unwrap_or(p.master_memory.rss) as f64;
        Some(PoolRecycle {
            pool: &p.name,
            growth,
            share: budget.map(|b| worker_share(b, master, p.live_workers())),
            killed,
        })
    }

    fn suggested(&self) -> Option<MaxRequests> {
        max_requests(
            self.share?,
            self.growth.baseline_bytes,
            self.growth.per_request_bytes,
        )
    }
}

fn in_flight_numbers(f: &Figures<'_>) -> Vec<(String, String)> {
    f.in_flight
        .iter()
        .map(|q| {
            (
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
            )
        })
        .collect()
}

fn ram_numbers(f: &Figures<'_>) -> Vec<(String, String)> {
    let mut numbers = Vec::new();
    for p in &f.ram {
        numbers.push((format!("{} memory now (PSS)", p.pool), mib(p.now)));
        match (p.cgroup_limit, p.host_total) {
            (Some(l), _) => numbers.push((format!("{} cgroup limit", p.pool), mib(l))),
            (None, Some(t)) => numbers.push((
                format!("{} limit (no cgroup limit: the host's RAM)", p.pool),
                mib(t),
            )),
            (None, None) => {}
        }
        if let (Some(v), Some(needed)) = (p.largest_victim, p.needed()) {
            numbers.push((format!("{} largest OOM victim", p.pool), mib(v)));
            numbers.push((
                format!("{} needed for {} workers that large", p.pool, p.workers),
                mib(needed),
            ));
        }
    }
    numbers
}

/// The last pool short of memory is named, with how much it lacks.
fn ram_advice(f: &Figures<'_>) -> String {
    match f.ram.iter().rev().find_map(|p| Some((p, p.short_by()?))) {
        Some((p, short)) => format!(
            "Give pool {} at least {} more (the master plus {} workers the size of the largest victim), restart it, and check it holds.",
            p.pool,
            mib(short),
            p.workers
        ),
        None => "Give the pool more memory, restart it, and check it holds under the same load.".into(),
    }
}

fn recycle_numbers(f: &Figures<'_>) -> Vec<(String, String)> {
    let mut numbers = Vec::new();
    for p in &f.recycle {
        let (pool, g) = (p.pool, &p.growth);
        numbers.push((format!("{pool} growth measured from"), g.from.to_string()));
        numbers.push((
            format!("{pool} growth per worker per hour"),
            format!("{:.1} MiB", g.per_worker_hour_bytes / MIB),
        ));
        numbers.push((
            format!("{pool} growth per request"),
            format!("{:.2} MiB", g.per_request_bytes / MIB),
        ));
        numbers.push((
            format!("{pool} fresh worker"),
            format!("{:.0} MiB", g.baseline_bytes / MIB),
        ));
        if let Some(share) = p.share {
            numbers.push((
                format!("{pool} share of the limit per worker"),
                format!("{:.0} MiB", share / MIB),
            ));
        }
        if let Some(s) = p.suggested() {
            numbers.push((
                format!("{pool} suggested --max-requests"),
                format!("{:.0}", s.max_requests),
            ));
            numbers.push((
                format!("{pool} suggested --max-requests-jitter"),
                format!("{:.0}", s.jitter),
            ));
        }
    }
    numbers
}

/// The advice names the pools whose workers were OOM-killed, when there
/// are such; a pool that merely grows a little is in the numbers.
fn recycle_advice(f: &Figures<'_>) -> String {
    let suggested: Vec<(&PoolRecycle<'_>, MaxRequests)> = f
        .recycle
        .iter()
        .filter_map(|p| Some((p, p.suggested()?)))
        .collect();
    let any_killed = suggested.iter().any(|(p, _)| p.killed);
    let named: Vec<String> = suggested
        .iter()
        .filter(|(p, _)| p.killed || !any_killed)
        .map(|(p, s)| {
            format!(
                "for pool {}, --max-requests {:.0} --max-requests-jitter {:.0}",
                p.pool, s.max_requests, s.jitter
            )
        })
        .collect();
    if named.is_empty() {
        "Recycle each worker before it grows to its share of the memory limit. These are estimates from the memory growth observed; check them under real load.".into()
    } else {
        format!(
            "Recycle each worker before it grows to its share of the memory limit: {} keeps a worker under 80% of its share. An estimate from the growth observed; check it under real load.",
            named.join("; ")
        )
    }
}

fn backlog_numbers(f: &Figures<'_>) -> Vec<(String, String)> {
    let mut numbers = vec![
        (
            "failed: listen queue full".to_string(),
            f.backlog.to_string(),
        ),
        ("failed: timeouts".to_string(), f.timeouts.to_string()),
        (
            "failed: out of file descriptors".to_string(),
            f.fds.to_string(),
        ),
    ];
    for (pool, n) in &f.timeout_kills {
        numbers.push((
            format!("{pool} workers killed for their timeout"),
            n.to_string(),
        ));
    }
    numbers
}

/// What a pool needs for each of its `workers` to grow as large as its
/// largest OOM victim, beside its master.
pub(super) fn ram_needed(master: u64, workers: u64, largest_victim: u64) -> u64 {
    master.saturating_add(workers.saturating_mul(largest_victim))
}

/// How much `needed` exceeds `limit`; `None` when it fits.
pub(super) fn ram_short_by(needed: u64, limit: u64) -> Option<u64> {
    needed.checked_sub(limit).filter(|d| *d > 0)
}

/// The memory a pool's workers may grow into: its cgroup's limit, else the
/// host's available memory plus what the pool uses now (`pool_now`).
pub(super) fn recycle_budget(
    cgroup_limit: Option<u64>,
    host_available: Option<u64>,
    pool_now: u64,
) -> Option<f64> {
    cgroup_limit
        .map(|b| b as f64)
        .or_else(|| host_available.map(|a| a as f64 + pool_now as f64))
}

/// Each worker's share of `budget` once the master has its own; a pool
/// with no live worker counts as one.
pub(super) fn worker_share(budget: f64, master: f64, workers: usize) -> f64 {
    (budget - master) / workers.max(1) as f64
}

/// The part of its share a worker is recycled at, jitter included.
const RECYCLE_AT: f64 = 0.8;

/// Gunicorn's `--max-requests` and `--max-requests-jitter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct MaxRequests {
    pub max_requests: f64,
    pub jitter: f64,
}

/// The `--max-requests` and its jitter (a tenth of the requests, at least
/// one) that recycle a worker starting at `baseline` bytes and keeping
/// `per_request` bytes of each request before it reaches [`RECYCLE_AT`] of
/// its `share`. `None` when it keeps nothing, or starts at its share or
/// above; at least one request each when a fresh worker is already past
/// [`RECYCLE_AT`] of its share.
pub(super) fn max_requests(share: f64, baseline: f64, per_request: f64) -> Option<MaxRequests> {
    if per_request > 0.0 && share > baseline {
        let room = (share * RECYCLE_AT - baseline).max(0.0);
        let total = (room / per_request).floor();
        let jitter = (total / 10.0).floor().max(1.0);
        Some(MaxRequests {
            max_requests: (total - jitter).max(1.0),
            jitter,
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{Inputs, MB};
    use super::*;
    use crate::state::health::SourceStatus;

    fn option<'r>(r: &'r Report, name: &str) -> &'r RecoveryOption {
        r.recovery.iter().find(|o| o.name == name).unwrap()
    }

    fn applying(r: &Report) -> Vec<&'static str> {
        r.recovery
            .iter()
            .filter(|o| o.applies)
            .map(|o| o.name)
            .collect()
    }

    fn number<'r>(o: &'r RecoveryOption, what: &str) -> Option<&'r str> {
        o.numbers
            .iter()
            .find(|(k, _)| k == what)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn every_option_in_the_runbook_order_and_none_applies_to_nothing() {
        let r = Inputs::new().report();
        let names: Vec<&str> = r.recovery.iter().map(|o| o.name).collect();
        assert_eq!(
            names,
            [
                "reduce_request_scope",
                "add_ram",
                "recycle_workers",
                "tune_backlog_or_timeout",
                "escalate"
            ]
        );
        assert_eq!(applying(&r), Vec::<&str>::new());
    }

    #[test]
    fn escalate_when_no_option_explains_a_finding_or_a_cause_is_unknown() {
        // Only a source that could not be read: a warning no option
        // explains.
        let mut i = Inputs::new();
        i.sources.insert(
            "kernel/kmsg".into(),
            SourceStatus {
                up: false,
                ever_up: false,
                errors: 1,
                last_error: Some("permission denied".into()),
            },
        );
        assert_eq!(applying(&i.report()), ["escalate"]);
        // A worker's OOM kill is explained by the first three.
        let mut i = Inputs::new();
        i.pool("api", &[50]);
        i.oom_kill(Some("api"), 300);
        assert_eq!(
            applying(&i.report()),
            ["reduce_request_scope", "add_ram", "recycle_workers"]
        );
        // A failure of no known cause escalates beside them.
        i.failed("api", FailureCause::Other, None);
        let r = i.report();
        assert!(option(&r, "escalate").applies);
        assert_eq!(
            number(option(&r, "escalate"), "failed requests of no known cause"),
            Some("1")
        );
        // A kill of a process of no pool is a warning the options leave.
        let mut i = Inputs::new();
        i.oom_kill(None, 300);
        assert_eq!(applying(&i.report()), ["escalate"]);
    }

    #[test]
    fn the_first_option_names_the_requests_in_flight_on_dying_workers() {
        let mut i = Inputs::new();
        i.pool("api", &[50]);
        i.oom_kill(Some("api"), 300);
        i.failed("api", FailureCause::WorkerOomKilled, None);
        let o = option(&i.report(), "reduce_request_scope").clone();
        assert!(o.advice.contains("no request was seen in flight"), "{o:?}");
        assert!(o.numbers.is_empty());
        for k in 0..7 {
            i.failed(
                "api",
                FailureCause::WorkerOomKilled,
                Some(&format!("/r{k}")),
            );
        }
        let o = option(&i.report(), "reduce_request_scope").clone();
        assert!(o.advice.contains("start with the requests"), "{o:?}");
        assert_eq!(o.numbers.len(), IN_FLIGHT_NAMED);
        assert_eq!(
            o.numbers[0],
            (
                "in flight on a dying worker of api".to_string(),
                "GET /r0 (1 time(s), worker at 300 MiB)".to_string()
            )
        );
    }

    #[test]
    fn add_ram_names_the_pool_short_of_memory() {
        let mut i = Inputs::new();
        i.pool("api", &[100, 100]);
        i.cgroup_limit("api", 256);
        i.oom_kill(Some("api"), 300);
        // The 40 MiB master and 2 workers of 300 MiB: 640 MiB, 384 over.
        let r = i.report();
        let o = option(&r, "add_ram");
        assert_eq!(
            o.advice,
            "Give pool api at least 384.0 MiB more (the master plus 2 workers the size of the largest victim), restart it, and check it holds."
        );
        assert_eq!(
            number(o, "api needed for 2 workers that large"),
            Some("640.0 MiB")
        );
        assert_eq!(number(o, "api cgroup limit"), Some("256.0 MiB"));
        // A limit that holds them: the general advice.
        i.cgroup_limit("api", 1024);
        let r = i.report();
        assert!(option(&r, "add_ram")
            .advice
            .starts_with("Give the pool more memory"));
        // No cgroup limit: the host's RAM is the limit.
        i.memory.cgroups.clear();
        i.memory.host.total = Some(512 * MB);
        let r = i.report();
        let o = option(&r, "add_ram");
        assert_eq!(
            number(o, "api limit (no cgroup limit: the host's RAM)"),
            Some("512.0 MiB")
        );
        assert!(o.advice.contains("at least 128.0 MiB more"), "{o:?}");
    }

    #[test]
    fn recycling_names_the_pools_whose_workers_were_killed() {
        let mut i = Inputs::new();
        for pool in ["api", "bg"] {
            i.pool(pool, &[30, 70]);
            i.cgroup_limit(pool, 256);
        }
        i.growth(&["api", "bg"]);
        // Each worker's share: (256 - 40) / 2 = 108 MiB; 80% of it is 86.4
        // MiB, 66 requests of 1 MiB from a fresh 20 MiB; 6 of them jitter.
        let both = "for pool api, --max-requests 60 --max-requests-jitter 6; for pool bg, --max-requests 60 --max-requests-jitter 6 keeps";
        let r = i.report();
        let o = option(&r, "recycle_workers");
        assert!(o.applies, "growth alone");
        assert!(o.advice.contains(both), "{o:?}");
        assert_eq!(
            number(o, "api share of the limit per worker"),
            Some("108 MiB")
        );
        // Once bg's workers are killed, the advice names bg alone; api's
        // figures stay in the numbers.
        i.oom_kill(Some("bg"), 200);
        let r = i.report();
        let o = option(&r, "recycle_workers");
        assert!(
            o.advice
                .contains(": for pool bg, --max-requests 60 --max-requests-jitter 6 keeps"),
            "{o:?}"
        );
        assert_eq!(number(o, "api suggested --max-requests"), Some("60"));
        // A limit below what the master uses: a share below nothing, and
        // no suggestion.
        i.cgroup_limit("bg", 30);
        let r = i.report();
        let o = option(&r, "recycle_workers");
        assert_eq!(
            number(o, "bg share of the limit per worker"),
            Some("-5 MiB")
        );
        assert_eq!(number(o, "bg suggested --max-requests"), None);
        assert!(o.advice.contains("for pool api,"), "{o:?}");
    }

    #[test]
    fn recycling_without_growth_evidence_gives_no_numbers() {
        let mut i = Inputs::new();
        i.pool("api", &[30, 70]);
        i.oom_kill(Some("api"), 200);
        let r = i.report();
        let o = option(&r, "recycle_workers");
        assert!(o.applies);
        assert!(o.numbers.is_empty());
        assert!(o.advice.contains("These are estimates"), "{o:?}");
    }

    #[test]
    fn ram_needed_is_the_master_and_every_worker_as_large_as_the_victim() {
        assert_eq!(ram_needed(30 * MB, 4, 300 * MB), 1230 * MB);
        // One worker; a master not read.
        assert_eq!(ram_needed(0, 1, 300 * MB), 300 * MB);
        // Huge numbers saturate instead of wrapping to a small need.
        assert_eq!(ram_needed(1, u64::MAX / 2, 3), u64::MAX);
        assert_eq!(ram_needed(u64::MAX, 1, 1), u64::MAX);
    }

    #[test]
    fn ram_short_by_only_when_the_need_exceeds_the_limit() {
        assert_eq!(ram_short_by(632 * MB, 256 * MB), Some(376 * MB));
        assert_eq!(ram_short_by(256 * MB, 256 * MB), None);
        // A limit above the need, even one far above it.
        assert_eq!(ram_short_by(100 * MB, 256 * MB), None);
        assert_eq!(ram_short_by(0, u64::MAX), None);
        assert_eq!(ram_short_by(u64::MAX, 0), Some(u64::MAX));
    }

    #[test]
    fn the_budget_is_the_cgroup_limit_else_what_the_host_has_left() {
        assert_eq!(recycle_budget(Some(512), Some(4096), 100), Some(512.0));
        assert_eq!(recycle_budget(None, Some(4096), 100), Some(4196.0));
        assert_eq!(recycle_budget(None, None, 100), None);
        let huge = recycle_budget(None, Some(u64::MAX), u64::MAX).unwrap();
        assert!(huge.is_finite() && huge > u64::MAX as f64);
    }

    #[test]
    fn a_worker_share_is_the_budget_less_the_master_over_the_workers() {
        let mib = MB as f64;
        assert_eq!(worker_share(256.0 * mib, 30.0 * mib, 2), 113.0 * mib);
        // One worker, or none alive: the whole rest.
        assert_eq!(worker_share(256.0 * mib, 30.0 * mib, 1), 226.0 * mib);
        assert_eq!(worker_share(256.0 * mib, 30.0 * mib, 0), 226.0 * mib);
        // A limit below what the master uses leaves no share.
        assert!(worker_share(20.0 * mib, 30.0 * mib, 2) < 0.0);
    }

    #[test]
    fn max_requests_recycles_at_four_fifths_of_the_share() {
        let mib = MB as f64;
        // 167 MiB share, 40 MiB fresh, 1 MiB a request: 93 requests to
        // 80%, a tenth of them the jitter.
        let s = max_requests(167.0 * mib, 40.0 * mib, mib).unwrap();
        assert_eq!(
            s,
            MaxRequests {
                max_requests: 84.0,
                jitter: 9.0
            }
        );
        // With the jitter at its most, a worker stays under 80%.
        let most = 40.0 * mib + (s.max_requests + s.jitter) * mib;
        assert!(most <= 0.8 * 167.0 * mib);
    }

    #[test]
    fn max_requests_when_nothing_grows_or_the_share_is_used_up() {
        let mib = MB as f64;
        // No growth per request: nothing to suggest.
        assert_eq!(max_requests(167.0 * mib, 40.0 * mib, 0.0), None);
        // A fresh worker already at or over its share (a limit below the
        // usage, or below the master's own): nothing to suggest.
        assert_eq!(max_requests(40.0 * mib, 40.0 * mib, mib), None);
        assert_eq!(max_requests(-10.0 * mib, 40.0 * mib, mib), None);
        // Past 80% of its share at birth: recycle at every request.
        assert_eq!(
            max_requests(45.0 * mib, 40.0 * mib, mib),
            Some(MaxRequests {
                max_requests: 1.0,
                jitter: 1.0
            })
        );
        // Fewer than ten requests to go: a jitter of one.
        assert_eq!(
            max_requests(100.0 * mib, 75.0 * mib, mib),
            Some(MaxRequests {
                max_requests: 4.0,
                jitter: 1.0
            })
        );
    }

    #[test]
    fn max_requests_with_huge_numbers_stays_finite_and_whole() {
        // A terabyte's share, a byte a request.
        let s = max_requests((1u64 << 40) as f64, 0.0, 1.0).unwrap();
        let total = ((1u64 << 40) as f64 * 0.8).floor();
        assert_eq!(s.jitter, (total / 10.0).floor());
        assert_eq!(s.max_requests, total - s.jitter);
        assert!(s.max_requests.is_finite() && s.max_requests.fract() == 0.0);
    }
}
