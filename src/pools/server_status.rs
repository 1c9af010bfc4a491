//! The servers' own status interfaces, read for the pools whose config
//! names one (`status:`): uWSGI's stats server, php-fpm's status page and
//! Puma's control app. They add what /proc cannot tell: the requests each
//! worker served, Puma's worker check-ins, php-fpm's max-children and slow
//! request counts, uWSGI's harakiris, and which workers are busy.
//!
//! Each interface is read once per pools interval on this source's own
//! thread, within a short timeout and a size cap (see [`status_client`]),
//! and its health reported as `status/POOL`. A pool whose master is not
//! found is not asked. Workers are matched to slots by pid through the
//! pool source's view; where the pids do not match (the server in another
//! pid namespace), uWSGI's worker id and Puma's index are the slot, as the
//! pool source numbers those workers.
//!
//! What is not read again: uWSGI's `rss` (0 without `--memory-report`;
//! the slot's memory comes from /proc), its `respawn_count`
//! (`badgateway_worker_spawns_total`) and its listen queue (sock_diag reads
//! the master's sockets, `badgateway_pool_listen_queue_length`).
//!
//! [`status_client`]: super::status_client

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{PoolConfig, Server, StatusEndpoint};
use crate::state::health::SourceLabel;
use crate::state::source::pace;
use crate::state::{Published, Sinks, Source, Stepped};

use super::status_client;
use super::status_json::{self, StatusError};
use super::view::PoolsView;

/// The collector's name in the exporter's own metrics.
pub const COLLECTOR: &str = "server_status";

/// The most an answer may weigh: php-fpm's full page is about 500 bytes a
/// child, uWSGI's stats about 1 KiB a worker.
pub const MAX_ANSWER: usize = 4 << 20;

/// How long one read may take, connect included.
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// The health `source` label of a pool's status interface: `status/NAME`.
pub const HEALTH: SourceLabel = SourceLabel("status");

/// One pool's status interface.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusTarget {
    pub pool: String,
    pub server: Server,
    pub endpoint: StatusEndpoint,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerStatusOptions {
    pub targets: Vec<StatusTarget>,
    pub interval: Duration,
    pub timeout: Duration,
    pub max_answer: usize,
}

impl ServerStatusOptions {
    /// The pools of the config that name a status interface.
    pub fn new(pools: &[PoolConfig], interval: Duration) -> ServerStatusOptions {
        ServerStatusOptions {
            targets: pools
                .iter()
                .filter_map(|p| {
                    Some(StatusTarget {
                        pool: p.name.clone(),
                        server: p.server,
                        endpoint: p.status.clone()?,
                    })
                })
                .collect(),
            interval,
            timeout: TIMEOUT,
            max_answer: MAX_ANSWER,
        }
    }
}

/// What the interface said of one slot's worker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlotStatus {
    pub slot: usize,
    /// The worker's pid as the server gave it (its own pid namespace's).
    pub pid: i32,
    /// Requests served by the worker now in the slot.
    pub requests: u64,
    /// Seconds since its last check-in with the master (Puma).
    pub heartbeat_age: Option<f64>,
    /// Requests it accepted that wait for a thread (Puma's backlog).
    pub queued: Option<u64>,
}

/// What the interface said of one pool, at its last answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PoolStatus {
    pub pool: String,
    pub slots: Vec<SlotStatus>,
    /// Workers handling a request (php-fpm's own status request left
    /// out).
    pub busy: Option<u64>,
    pub max_children_reached: Option<u64>,
    pub slow_requests: Option<u64>,
    pub harakiris: Option<u64>,
}

/// What this source publishes: every pool whose interface answered at
/// its last read. `configured` is whether any pool names one: the
/// families are written only then.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerStatuses {
    pub configured: bool,
    pub pools: Vec<PoolStatus>,
}

/// pid and the server's own number of a worker, to find its slot.
fn slot_of(
    slots: &HashMap<i32, usize>,
    numbered: &[usize],
    pid: i32,
    number: Option<u64>,
) -> Option<usize> {
    slots.get(&pid).copied().or_else(|| {
        let n = usize::try_from(number?).ok()?;
        numbered.contains(&n).then_some(n)
    })
}

/// A pool's status from one answer. `slots` maps the pool's workers'
/// pids to their slots, `numbered` lists the slots in use; `now` is
/// seconds since the epoch.
pub fn pool_status(
    pool: &str,
    server: Server,
    answer: &[u8],
    slots: &HashMap<i32, usize>,
    numbered: &[usize],
    now: f64,
) -> Result<PoolStatus, StatusError> {
    let mut s = PoolStatus {
        pool: pool.to_string(),
        ..PoolStatus::default()
    };
    match server {
        Server::Uwsgi => {
            let workers = status_json::parse_uwsgi(answer)?;
            s.harakiris = Some(workers.iter().map(|w| w.harakiri_count).sum());
            s.busy = Some(workers.iter().filter(|w| w.busy).count() as u64);
            s.slots = workers
                .iter()
                .filter_map(|w| {
                    Some(SlotStatus {
                        slot: slot_of(slots, numbered, w.pid, Some(w.id))?,
                        pid: w.pid,
                        requests: w.requests,
                        heartbeat_age: None,
                        queued: None,
                    })
                })
                .collect();
        }
        Server::PhpFpm => {
            let st = status_json::parse_php_fpm(answer)?;
            // One child is busy answering this very request.
            s.busy = Some(st.active.saturating_sub(1));
            s.max_children_reached = Some(st.max_children_reached);
            s.slow_requests = Some(st.slow_requests);
            s.slots = st
                .processes
                .iter()
                .filter_map(|p| {
                    Some(SlotStatus {
                        slot: slot_of(slots, numbered, p.pid, None)?,
                        pid: p.pid,
                        requests: p.requests,
                        heartbeat_age: None,
                        queued: None,
                    })
                })
                .collect();
        }
        Server::Puma => {
            let workers = status_json::parse_puma(status_json::cgi_body(answer))?;
            s.slots = workers
                .iter()
                .filter_map(|w| {
                    Some(SlotStatus {
                        slot: slot_of(slots, numbered, w.pid, Some(w.index))?,
                        pid: w.pid,
                        requests: w.requests,
                        heartbeat_age: Some((now - w.last_checkin as f64).max(0.0)),
                        queued: Some(w.backlog),
                    })
                })
                .collect();
        }
        Server::Gunicorn | Server::Unicorn | Server::Generic => {}
    }
    s.slots.sort_by_key(|w| w.slot);
    s.slots.dedup_by_key(|w| w.slot);
    Ok(s)
}

/// The source: reads every configured interface, publishes
/// [`ServerStatuses`].
pub struct ServerStatusSource {
    opts: ServerStatusOptions,
    sinks: Sinks,
    pools: Arc<Published<PoolsView>>,
    published: Arc<Published<ServerStatuses>>,
}

impl ServerStatusSource {
    pub fn new(
        opts: ServerStatusOptions,
        sinks: Sinks,
        pools: Arc<Published<PoolsView>>,
    ) -> ServerStatusSource {
        let published = Published::new(ServerStatuses {
            configured: !opts.targets.is_empty(),
            pools: Vec::new(),
        });
        ServerStatusSource {
            opts,
            sinks,
            pools,
            published,
        }
    }

    pub fn published(&self) -> Arc<Published<ServerStatuses>> {
        self.published.clone()
    }

    /// Whether any pool names a status interface (else the loop is not
    /// worth a thread).
    pub fn has_work(&self) -> bool {
        !self.opts.targets.is_empty()
    }

    /// Ask one pool's interface.
    fn fetch(&self, t: &StatusTarget) -> Result<Vec<u8>, String> {
        let (ep, timeout, max) = (&t.endpoint, self.opts.timeout, self.opts.max_answer);
        match t.server {
            Server::Uwsgi => status_client::uwsgi(ep, timeout, max),
            Server::PhpFpm => status_client::php_fpm(ep, timeout, max),
            Server::Puma => status_client::http_get(ep, timeout, max),
            _ => Err("no status interface for this server".to_string()),
        }
    }

    /// One read of every interface. Returns (errors, changed).
    pub fn step(&mut self) -> (u64, bool) {
        let view = self.pools.get();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut errors = 0;
        let mut pools = Vec::with_capacity(self.opts.targets.len());
        for t in &self.opts.targets {
            let Some(p) = view.pools.iter().find(|p| p.name == t.pool && p.up) else {
                continue;
            };
            let slots: HashMap<i32, usize> = p.workers.iter().map(|w| (w.id.pid, w.slot)).collect();
            let numbered: Vec<usize> = p.workers.iter().map(|w| w.slot).collect();
            let r = self.fetch(t).and_then(|answer| {
                pool_status(&t.pool, t.server, &answer, &slots, &numbered, now)
                    .map_err(|e| e.to_string())
            });
            match r {
                Ok(s) => {
                    pools.push(s);
                    self.sinks.health.report(&HEALTH.of(&t.pool), Ok(()));
                }
                Err(e) => {
                    errors += 1;
                    self.sinks.health.report(&HEALTH.of(&t.pool), Err(e));
                }
            }
        }
        let next = ServerStatuses {
            configured: self.has_work(),
            pools,
        };
        let changed = *self.published.get() != next;
        if changed {
            self.published.publish(next);
        }
        (errors, changed)
    }
}

impl Source for ServerStatusSource {
    fn collector(&self) -> &'static str {
        COLLECTOR
    }

    fn step(&mut self, _now: Instant) -> Stepped {
        let (errors, changed) = ServerStatusSource::step(self);
        Stepped::cycle(errors, changed)
    }

    fn wait(&mut self, started: Instant) {
        pace(self.opts.interval, started);
    }
}

/// `view` with the check-in ages of `statuses` as its workers' heartbeat
/// ages (Puma's check-in is the same thing as Gunicorn's heartbeat), or
/// `None` when there are none to add.
pub fn with_heartbeats(view: &PoolsView, statuses: &ServerStatuses) -> Option<PoolsView> {
    let ages: HashMap<(&str, usize), f64> = statuses
        .pools
        .iter()
        .flat_map(|p| {
            p.slots
                .iter()
                .filter_map(move |s| Some(((p.pool.as_str(), s.slot), s.heartbeat_age?)))
        })
        .collect();
    if ages.is_empty() {
        return None;
    }
    let mut view = view.clone();
    for p in &mut view.pools {
        for w in &mut p.workers {
            if let Some(age) = ages.get(&(p.name.as_str(), w.slot)) {
                w.heartbeat_age = Some(*age);
            }
        }
    }
    Some(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn uwsgi_workers_by_pid_and_by_id_where_pids_differ() {
        let answer = fixture("uwsgi/2.0.21/stats.json");
        // Workers 1 and 2 by pid; worker 3's pid unknown (another pid
        // namespace), its id a slot in use.
        let slots = HashMap::from([(15274, 1), (15090, 2)]);
        let s = pool_status("uw", Server::Uwsgi, &answer, &slots, &[1, 2, 3], 0.0).unwrap();
        let got: Vec<(usize, u64)> = s.slots.iter().map(|s| (s.slot, s.requests)).collect();
        assert_eq!(got, [(1, 0), (2, 2), (3, 1)]);
        assert_eq!((s.harakiris, s.busy), (Some(1), Some(0)));
        // A worker in no slot is left out.
        let s = pool_status("uw", Server::Uwsgi, &answer, &slots, &[1, 2], 0.0).unwrap();
        assert_eq!(s.slots.len(), 2);
    }

    #[test]
    fn php_fpm_children_by_pid_only_and_its_own_request_not_busy() {
        let answer = fixture("php-fpm/8.2/status_full.fcgi");
        let slots = HashMap::from([(17051, 0)]);
        let s = pool_status("fpm", Server::PhpFpm, &answer, &slots, &[0, 1], 0.0).unwrap();
        assert_eq!(s.slots.len(), 1);
        assert_eq!((s.slots[0].slot, s.slots[0].requests), (0, 3));
        assert_eq!(s.busy, Some(0));
        assert_eq!(
            (s.max_children_reached, s.slow_requests),
            (Some(1), Some(6))
        );
    }

    #[test]
    fn puma_check_in_ages_become_heartbeats() {
        let answer = fixture("puma/5.6.5/stats.http");
        let slots = HashMap::from([(17519, 0), (17521, 1), (17522, 2)]);
        // 3.5 s after the check-ins at 16:47:15.
        let now = 1_796_662_038.5;
        let s = pool_status("pu", Server::Puma, &answer, &slots, &[0, 1, 2], now).unwrap();
        assert!(s.slots.iter().all(|s| s.heartbeat_age == Some(3.5)));
        assert_eq!(s.slots[0].queued, Some(0));
        assert_eq!(s.slots[0].requests, 4);

        use crate::pools::view::{PoolState, WorkerState};
        let mut pool = PoolState::new("pu", Server::Puma);
        pool.workers = (0..2)
            .map(|slot| WorkerState {
                id: crate::pools::proc::ProcId {
                    pid: 10 + slot as i32,
                    starttime: 1,
                },
                slot,
                start_time: 0.0,
                memory: Default::default(),
                open_fds: None,
                max_fds: None,
                cpu_seconds: None,
                heartbeat_age: None,
            })
            .collect();
        let view = PoolsView {
            pools: vec![pool],
            children_files: None,
        };
        let statuses = ServerStatuses {
            configured: true,
            pools: vec![s],
        };
        let with = with_heartbeats(&view, &statuses).unwrap();
        let ages: Vec<_> = with.pools[0]
            .workers
            .iter()
            .map(|w| w.heartbeat_age)
            .collect();
        assert_eq!(ages, [Some(3.5), Some(3.5)]);
        assert!(with_heartbeats(&view, &ServerStatuses::default()).is_none());
    }
}
