//! How a pool's workers grow: the running exporter's history of worker
//! memory and requests, and a one-shot run's fit and ledger.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use crate::nginx::NginxView;
use crate::pools::proc::ProcId;
use crate::pools::server_status::ServerStatuses;
use crate::pools::PoolsView;
use crate::rules::failure_cause::kill_pool;
use crate::state::timeline::{AppLog, EventKind, Timeline};

/// How a pool's workers grow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Growth {
    pub per_request_bytes: f64,
    pub per_worker_hour_bytes: f64,
    /// A fresh worker's memory.
    pub baseline_bytes: f64,
    pub from: &'static str,
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

/// A pool and a span of time, both ends in, whose requests a one-shot run
/// counts by each access line's own time, from the histories the nginx
/// source keeps for it ([`crate::nginx::LogState::request_history`]): the
/// requests a pool got while a worker lived.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestWindow {
    pub pool: Arc<str>,
    pub from: SystemTime,
    pub to: SystemTime,
}

impl RequestWindow {
    /// The requests every nginx sent the pool in the window.
    pub fn requests(&self, nginx: &NginxView) -> u64 {
        nginx
            .logs
            .values()
            .filter_map(|l| l.request_history.get(&*self.pool))
            .map(|h| h.count(self.from, self.to))
            .sum()
    }
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
        let pool: Arc<str> = p.name.as_str().into();
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

    /// The growth evidence, with the requests nginx sent each pool in the
    /// lives' and the ledgers' windows, from the histories it published.
    pub fn history(&self, nginx: &NginxView) -> GrowthHistory {
        let lives: Vec<u64> = self
            .lives
            .iter()
            .map(|l| l.window.requests(nginx))
            .collect();
        let mut h = GrowthHistory::from_lives(&self.lives, &lives);
        for l in &self.ledgers {
            let n = l.window.requests(nginx);
            let kept = l.memory_bytes as f64 - (l.boots as u64 * l.fresh_bytes) as f64;
            if n == 0 || kept <= 0.0 {
                continue;
            }
            h.ledgers.insert(
                l.window.pool.to_string(),
                Growth {
                    per_request_bytes: kept / n as f64,
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
    /// Requests nginx sent the pool so far, when its logs name the pool.
    requests: Option<u64>,
    /// The pool's worker spawns plus exits so far: unchanged across an
    /// interval when no worker came or went.
    churn: u64,
    workers: Vec<SampledWorker>,
}

#[derive(Debug, Clone)]
struct SampledWorker {
    id: ProcId,
    memory: u64,
    /// What the app server's status interface said of the worker in its
    /// slot: its pid there, and the requests it served.
    served: Option<(i32, u64)>,
}

/// The requests the workers in both samples served between them, by the
/// server's own counts: only when every one of them was counted in both,
/// by the same process (a slot's answer can lag a respawn).
fn served_between(a: &Sample, b: &Sample) -> Option<u64> {
    a.workers.iter().try_fold(0u64, |n, wa| {
        let wb = b.workers.iter().find(|w| w.id == wa.id)?;
        match (wa.served, wb.served) {
            (Some((pa, ra)), Some((pb, rb))) if pa == pb => Some(n + rb.saturating_sub(ra)),
            _ => None,
        }
    })
}

impl GrowthHistory {
    /// An hour of 5 s cycles.
    pub const CAP: usize = 720;

    /// One sample per pool: its workers' memory, the requests nginx sent
    /// it, and what its app server's status interface counted for each
    /// worker. A pool with neither count is not sampled.
    pub fn observe(
        &mut self,
        pools: &PoolsView,
        nginx: &NginxView,
        status: &ServerStatuses,
        at: SystemTime,
    ) {
        for p in &pools.pools {
            let requests = pool_requests(nginx, &p.name);
            let slots = status.pools.iter().find(|s| s.pool == p.name);
            if requests.is_none() && slots.is_none() {
                continue;
            }
            let served = |slot: usize| {
                let s = slots?.slots.iter().find(|s| s.slot == slot)?;
                Some((s.pid, s.requests))
            };
            self.record(
                &p.name,
                Sample {
                    at,
                    requests,
                    churn: p.spawns + p.exits,
                    workers: p
                        .workers
                        .iter()
                        .map(|w| SampledWorker {
                            id: w.id,
                            memory: w.memory.rss,
                            served: served(w.slot),
                        })
                        .collect(),
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
        let mut by_server = true;
        let mut baseline: Option<u64> = None;
        for pair in h.iter().collect::<Vec<_>>().windows(2) {
            let (a, b) = (pair[0], pair[1]);
            // A new worker's first sample is what a fresh worker weighs.
            for w in &b.workers {
                if !a.workers.iter().any(|x| x.id == w.id) {
                    baseline = Some(baseline.map_or(w.memory, |b| b.min(w.memory)));
                }
            }
            // Both: a worker forked between cycles is counted at once but
            // listed only from the next cycle, having served requests.
            let same_workers = a.workers.len() == b.workers.len()
                && a.workers
                    .iter()
                    .all(|x| b.workers.iter().any(|y| y.id == x.id));
            if a.churn != b.churn || !same_workers {
                continue;
            }
            // The server's own count of each worker's requests where it has
            // one, else what nginx sent the pool.
            let served = match served_between(a, b) {
                Some(n) => n,
                None => match (a.requests, b.requests) {
                    (Some(ra), Some(rb)) => {
                        by_server = false;
                        rb.saturating_sub(ra)
                    }
                    _ => continue,
                },
            };
            let dt = b.at.duration_since(a.at).unwrap_or_default().as_secs_f64();
            grown += a
                .workers
                .iter()
                .filter_map(|x| {
                    let y = b.workers.iter().find(|y| y.id == x.id)?;
                    Some(y.memory as f64 - x.memory as f64)
                })
                .sum::<f64>();
            worker_seconds += dt * b.workers.len() as f64;
            requests += served;
        }
        if requests == 0 || worker_seconds <= 0.0 {
            return None;
        }
        let baseline = baseline
            .or_else(|| h.back()?.workers.iter().map(|w| w.memory).min())
            .unwrap_or(0) as f64;
        Some(Growth {
            per_request_bytes: (grown / requests as f64).max(0.0),
            per_worker_hour_bytes: (grown / worker_seconds * 3600.0).max(0.0),
            baseline_bytes: baseline,
            from: if by_server {
                "the exporter's history of worker memory and the app server's own count of each worker's requests"
            } else {
                "the exporter's history of worker memory and nginx requests"
            },
        })
    }
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
            requests: Some(10 * i),
            churn,
            workers: workers
                .iter()
                .map(|(p, m)| SampledWorker {
                    id: id(*p),
                    memory: m << 20,
                    served: None,
                })
                .collect(),
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

    /// A pool no nginx log names, whose server counts each worker's
    /// requests: worker 1 keeps 1 MiB a request over 10 a cycle, worker 2
    /// 4 MiB over 5; the growth per request is what both grew over what
    /// both served. An interval where a slot's answer still came from the
    /// worker it replaced (another pid) is left out, and so is one a
    /// worker was not answered for.
    #[test]
    fn growth_per_request_from_the_servers_own_counts() {
        let id = |pid| ProcId { pid, starttime: 1 };
        let mut h = GrowthHistory::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let worker = |pid: i32, mib: u64, served: Option<(i32, u64)>| SampledWorker {
            id: id(pid),
            memory: mib << 20,
            served,
        };
        let sample = |i: u64, workers: Vec<SampledWorker>| Sample {
            at: t0 + Duration::from_secs(5 * i),
            requests: None,
            churn: 2,
            workers,
        };
        h.record(
            "api",
            sample(
                0,
                vec![worker(1, 20, Some((1, 0))), worker(2, 20, Some((9, 70)))],
            ),
        );
        // Slot of worker 2 still answered by the process it replaced (pid 9).
        h.record(
            "api",
            sample(
                1,
                vec![worker(1, 30, Some((1, 10))), worker(2, 40, Some((2, 5)))],
            ),
        );
        h.record(
            "api",
            sample(
                2,
                vec![worker(1, 40, Some((1, 20))), worker(2, 60, Some((2, 10)))],
            ),
        );
        // No answer for worker 2.
        h.record(
            "api",
            sample(3, vec![worker(1, 55, Some((1, 35))), worker(2, 99, None)]),
        );
        h.record(
            "api",
            sample(
                4,
                vec![worker(1, 65, Some((1, 45))), worker(2, 119, Some((2, 20)))],
            ),
        );
        let g = h.estimate("api").unwrap();
        // Only the interval 1 -> 2 counts: 10 + 20 MiB over 10 + 5 requests.
        assert_eq!(g.per_request_bytes, (30 << 20) as f64 / 15.0, "{g:?}");
        assert!(g.from.contains("app server's own count"), "{}", g.from);
        // Without any count, no estimate.
        let mut none = GrowthHistory::default();
        none.record("api", sample(0, vec![worker(1, 20, None)]));
        none.record("api", sample(1, vec![worker(1, 30, None)]));
        assert_eq!(none.estimate("api"), None);
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
        // 100 requests since the workers booted: (280 - 4 x 20) / 100, at
        // the first boot, in no worker's life (a victim's counts from the
        // end of its boot's second).
        let mut history = crate::nginx::RequestHistory::default();
        (0..100).for_each(|_| history.push(t(100)));
        let mut nginx = NginxView::default();
        nginx.logs.insert(
            "edge".into(),
            crate::nginx::LogState {
                counters: crate::nginx::log_counters::LogCounters::new(8),
                rotations: 0,
                lag_bytes: 0,
                read_errors: 0,
                has_access: true,
                has_error: false,
                upstream_pools: Vec::new(),
                request_history: [("api".into(), history)].into(),
            },
        );
        assert!(e.lives.iter().all(|l| l.window.requests(&nginx) == 0));
        assert_eq!(l.window.requests(&nginx), 100);
        let g = e.history(&nginx).estimate("api").unwrap();
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
}
