//! What a report is built from in the unit tests: every input owned, empty
//! until a test fills it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::kernel::counter_files::Limit;
use crate::kernel::{CgroupVersion, KillCounts, MemoryCounters, PoolCgroup};
use crate::nginx::NginxView;
use crate::pools::proc::ProcId;
use crate::pools::{Memory, PoolState, PoolsView, WorkerState};
use crate::rules::{ExitCounts, FailureCounts};
use crate::state::health::SourceStatus;
use crate::state::timeline::{
    DeadWorker, EventKind, FailedRequest, FailureCause, KillRule, OomKill, Request, ServerError,
    Timeline,
};

use super::{build, Evidence, GrowthHistory, Report, RequestWindow, Window, WorkerLife};

pub const MB: u64 = 1 << 20;

/// `s` seconds into the window the report looks at.
pub fn t(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_400_000 + s)
}

pub struct Inputs {
    pub pools: PoolsView,
    pub kills: KillCounts,
    pub memory: MemoryCounters,
    pub exits: ExitCounts,
    pub sources: BTreeMap<String, SourceStatus>,
    pub timeline: Timeline,
    pub growth: Option<GrowthHistory>,
}

impl Inputs {
    pub fn new() -> Inputs {
        Inputs {
            pools: PoolsView::default(),
            kills: KillCounts::default(),
            memory: MemoryCounters::default(),
            exits: ExitCounts::default(),
            sources: BTreeMap::new(),
            timeline: Timeline::new(256),
            growth: None,
        }
    }

    /// The report over the hour from `t(0)`.
    pub fn report(&self) -> Report {
        build(
            &Evidence {
                pools: &self.pools,
                kills: &self.kills,
                memory: &self.memory,
                nginx: &NginxView::default(),
                exits: &self.exits,
                failures: &FailureCounts::default(),
                sources: &self.sources,
                timeline: &self.timeline,
                growth: self.growth.as_ref(),
            },
            Window {
                from: t(0),
                to: t(3600),
            },
        )
    }

    /// Pool `name`, up with a 40 MiB master and a worker of each of
    /// `workers` MiB.
    pub fn pool(&mut self, name: &str, workers: &[u64]) {
        let mut p = PoolState::new(name, crate::config::Server::Gunicorn);
        p.up = true;
        p.master = Some(ProcId {
            pid: 100,
            starttime: 1,
        });
        p.master_memory = Memory {
            rss: 40 * MB,
            ..Default::default()
        };
        for (slot, mib) in workers.iter().enumerate() {
            p.workers.push(WorkerState {
                id: ProcId {
                    pid: 101 + slot as i32,
                    starttime: 1,
                },
                slot,
                start_time: 0.0,
                memory: Memory {
                    rss: mib * MB,
                    ..Default::default()
                },
                open_fds: None,
                max_fds: None,
                cpu_seconds: None,
                heartbeat_age: None,
            });
        }
        self.pools.pools.push(p);
    }

    /// A memory cgroup for `pool` limited to `limit_mib`.
    pub fn cgroup_limit(&mut self, pool: &str, limit_mib: u64) {
        self.memory.cgroups.insert(
            pool.to_string(),
            PoolCgroup {
                path: format!("/system.slice/{pool}.service"),
                version: CgroupVersion::V2,
                usage: None,
                limit: Some(Limit::Bytes(limit_mib * MB)),
                events: Default::default(),
            },
        );
    }

    /// The kernel OOM-killed a worker of `pool` (or of no pool) at
    /// `mib` MiB.
    pub fn oom_kill(&mut self, pool: Option<&str>, mib: u64) {
        let (pool, rule) = match pool {
            Some(p) => (Some(Arc::from(p)), KillRule::Cgroup),
            None => (None, KillRule::Unknown),
        };
        self.timeline.push(
            t(60),
            pool,
            EventKind::OomKill(OomKill {
                seq: 1,
                pid: 999,
                comm: "gunicorn".into(),
                slot: None,
                cgroup: None,
                memcg: true,
                rule,
                anon_bytes: mib * MB,
                file_bytes: 0,
                shmem_bytes: None,
            }),
        );
    }

    /// A 502 of `pool` for `cause`, with a dead worker's request when
    /// `path` is given.
    pub fn failed(&mut self, pool: &str, cause: FailureCause, path: Option<&str>) {
        self.timeline.push(
            t(61),
            Some(Arc::from(pool)),
            EventKind::FailedRequest(FailedRequest {
                error: ServerError {
                    log: Arc::from("edge"),
                    status: 502,
                    upstream: None,
                    conn: None,
                    request: path.map(|p| Request::new(b"GET", p.as_bytes())),
                    backend_sent: false,
                },
                cause,
                worker: path.map(|_| DeadWorker {
                    pid: 999,
                    slot: None,
                    rss_bytes: Some(300 * MB),
                    pss_bytes: None,
                }),
            }),
        );
    }

    /// A one-shot run's growth: in each pool of `pools`, workers that
    /// start at 20 MiB and keep 1 MiB of each request they serve.
    pub fn growth(&mut self, pools: &[&str]) {
        let mut lives = Vec::new();
        let mut requests = Vec::new();
        for pool in pools {
            for served in [10, 50] {
                lives.push(WorkerLife {
                    window: RequestWindow {
                        pool: Arc::from(*pool),
                        from: t(0),
                        to: t(3600),
                    },
                    memory_bytes: (20 + served) * MB,
                    workers: 1,
                });
                requests.push(served);
            }
        }
        self.growth = Some(GrowthHistory::from_lives(&lives, &requests));
    }
}
