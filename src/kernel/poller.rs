//! Reads the kernel's memory counters every `--collector.kernel.interval`:
//! /proc/vmstat, /proc/meminfo, /proc/pressure/memory, and each pool's
//! memory cgroup (found from its master's /proc/PID/cgroup).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::counters::{self, ProcCgroups};
use super::{CgroupVersion, PoolCgroup, SourceHealth};
use crate::state::{lock, World};

pub struct Poller {
    procfs: PathBuf,
    sysfs: PathBuf,
    health: SourceHealth,
}

impl Poller {
    pub fn new(procfs: &Path, sysfs: &Path) -> Poller {
        Poller {
            procfs: procfs.to_path_buf(),
            sysfs: sysfs.to_path_buf(),
            health: SourceHealth::default(),
        }
    }

    /// Run forever on the calling thread, publishing to `world`.
    pub fn run(mut self, world: Arc<World>, interval: Duration) {
        // Pools' cgroups are found from their masters: let the pool
        // collector find them first.
        world.wait_for_cycle("pools", Duration::from_secs(10));
        world.run_collector("kernel", interval, || (self.collect(&world), true))
    }

    /// One cycle; returns the number of values that could not be read.
    pub fn collect(&mut self, world: &World) -> u64 {
        let mut errors = 0;
        let mut report = |health: &mut SourceHealth, source, r: Result<(), String>| {
            errors += r.is_err() as u64;
            health.report(world, source, r);
        };

        let path = self.procfs.join("vmstat");
        let vmstat = read(&path).and_then(|t| {
            counters::vmstat_oom_kills(&t)
                .ok_or_else(|| format!("{}: no oom_kill line (kernel before 4.13)", path.display()))
        });
        let r = vmstat.as_ref().map(|_| ()).map_err(Clone::clone);
        lock(&world.kernel).vmstat_oom_kills = vmstat.ok();
        report(&mut self.health, "vmstat", r);

        let path = self.procfs.join("meminfo");
        let host = read(&path).and_then(|t| {
            let m = counters::parse_meminfo(&t);
            match m.total {
                Some(_) => Ok(m),
                None => Err(format!("{}: no MemTotal line", path.display())),
            }
        });
        let r = host.as_ref().map(|_| ()).map_err(Clone::clone);
        lock(&world.kernel).host = host.unwrap_or_default();
        report(&mut self.health, "meminfo", r);

        let path = self.procfs.join("pressure/memory");
        let pressure = read(&path)
            .map_err(|e| format!("{e} (no PSI: kernel before 4.20, or booted with psi=0)"))
            .and_then(|t| {
                let p = counters::parse_pressure(&t);
                match p.some_usec {
                    Some(_) => Ok(p),
                    None => Err(format!("{}: no some total=", path.display())),
                }
            });
        let r = pressure.as_ref().map(|_| ()).map_err(Clone::clone);
        lock(&world.kernel).pressure = pressure.unwrap_or_default();
        report(&mut self.health, "pressure", r);

        let (cgroups, r) = self.cgroups(world);
        lock(&world.kernel).cgroups = cgroups;
        report(&mut self.health, "cgroup", r);
        errors
    }

    /// The memory cgroup of every pool whose master is live. The first
    /// failure is reported; the other pools are still read.
    fn cgroups(&self, world: &World) -> (BTreeMap<String, PoolCgroup>, Result<(), String>) {
        let masters: Vec<(String, i32)> = lock(&world.pools)
            .values()
            .filter_map(|p| Some((p.name.clone(), p.master?.pid)))
            .collect();
        let mut out = BTreeMap::new();
        let mut result = Ok(());
        let cgroup_root = self.sysfs.join("fs/cgroup");
        if !cgroup_root.is_dir() {
            result = Err(format!("{}: not a directory", cgroup_root.display()));
        }
        for (pool, pid) in masters {
            let path = self.procfs.join(pid.to_string()).join("cgroup");
            let Ok(text) = std::fs::read_to_string(&path) else {
                // The master just exited; the pool source will notice.
                continue;
            };
            let procs = counters::parse_proc_cgroup(&text);
            match memory_cgroup(&self.sysfs, &procs, |p| p.exists()) {
                Some(Found::Dir(dir, version, path)) => {
                    let (cg, r) = read_cgroup(&dir, version, path);
                    if let Err(e) = r {
                        result = result.and(Err(format!("pool {pool}: {e}")));
                    }
                    out.insert(pool, cg);
                }
                Some(Found::Root) => {}
                None => {
                    result = result.and(Err(format!(
                        "pool {pool}: no memory cgroup directory for {} under {}",
                        path.display(),
                        cgroup_root.display()
                    )))
                }
            }
        }
        (out, result)
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

#[derive(Debug, PartialEq)]
pub enum Found {
    /// The cgroup's directory, version and path inside the hierarchy.
    Dir(PathBuf, CgroupVersion, String),
    /// The v2 root cgroup, which has no memory files: nothing to read.
    Root,
}

/// Where a process's memory cgroup is: the v2 hierarchy at SYSFS/fs/cgroup
/// or SYSFS/fs/cgroup/unified if it has the memory controller (its
/// directory has `memory.current`), else the v1 memory hierarchy.
pub fn memory_cgroup(
    sysfs: &Path,
    c: &ProcCgroups,
    exists: impl Fn(&Path) -> bool,
) -> Option<Found> {
    let base = sysfs.join("fs/cgroup");
    if let Some(path) = &c.v2 {
        for root in [base.clone(), base.join("unified")] {
            let dir = root.join(path.trim_start_matches('/'));
            if exists(&dir.join("memory.current")) {
                return Some(Found::Dir(dir, CgroupVersion::V2, path.clone()));
            }
        }
    }
    if let Some(path) = &c.v1_memory {
        let dir = base.join("memory").join(path.trim_start_matches('/'));
        if exists(&dir.join("memory.usage_in_bytes")) {
            return Some(Found::Dir(dir, CgroupVersion::V1, path.clone()));
        }
    }
    match (&c.v2, &c.v1_memory) {
        (Some(p), None) if p == "/" && exists(&base.join("cgroup.controllers")) => {
            Some(Found::Root)
        }
        _ => None,
    }
}

/// Reads what it can; the first file that fails is the error.
fn read_cgroup(
    dir: &Path,
    version: CgroupVersion,
    path: String,
) -> (PoolCgroup, Result<(), String>) {
    let (usage, limit, events) = match version {
        CgroupVersion::V2 => ("memory.current", "memory.max", "memory.events"),
        CgroupVersion::V1 => (
            "memory.usage_in_bytes",
            "memory.limit_in_bytes",
            "memory.oom_control",
        ),
    };
    let mut result = Ok(());
    let mut file = |name: &str| match read(&dir.join(name)) {
        Ok(t) => Some(t),
        Err(e) => {
            result = result.clone().and(Err(e));
            None
        }
    };
    let cg = PoolCgroup {
        path,
        version,
        usage: file(usage).and_then(|t| counters::parse_bytes(&t)),
        limit: file(limit).and_then(|t| counters::parse_limit(&t)),
        events: file(events)
            .map(|t| counters::parse_memory_events(&t))
            .unwrap_or_default(),
    };
    (cg, result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use counters::ProcCgroups;

    fn cg(v1: Option<&str>, v2: Option<&str>) -> ProcCgroups {
        ProcCgroups {
            v1_memory: v1.map(str::to_string),
            v2: v2.map(str::to_string),
        }
    }

    #[test]
    fn memory_cgroup_resolution() {
        let sys = Path::new("/sys");
        let v1_here = |p: &Path| {
            p == Path::new("/sys/fs/cgroup/memory/bgw/memory.usage_in_bytes")
                || p == Path::new("/sys/fs/cgroup/unified/cgroup.controllers")
        };
        let v2_here = |p: &Path| {
            p == Path::new("/sys/fs/cgroup/app.slice/a.service/memory.current")
                || p == Path::new("/sys/fs/cgroup/cgroup.controllers")
        };
        let hybrid_v2 = |p: &Path| p == Path::new("/sys/fs/cgroup/unified/x/memory.current");
        let dir = |d: &str, v, p: &str| Some(Found::Dir(PathBuf::from(d), v, p.to_string()));
        let cases = [
            // This machine: v1 memory, the unified hierarchy without it.
            (
                cg(Some("/bgw"), Some("/")),
                &v1_here as &dyn Fn(&Path) -> bool,
                dir("/sys/fs/cgroup/memory/bgw", CgroupVersion::V1, "/bgw"),
            ),
            (
                cg(None, Some("/app.slice/a.service")),
                &v2_here,
                dir(
                    "/sys/fs/cgroup/app.slice/a.service",
                    CgroupVersion::V2,
                    "/app.slice/a.service",
                ),
            ),
            (cg(None, Some("/")), &v2_here, Some(Found::Root)),
            (
                cg(Some("/y"), Some("/x")),
                &hybrid_v2,
                dir("/sys/fs/cgroup/unified/x", CgroupVersion::V2, "/x"),
            ),
            (cg(Some("/gone"), Some("/")), &v1_here, None),
            (cg(None, None), &v1_here, None),
        ];
        for (c, exists, want) in cases {
            assert_eq!(memory_cgroup(sys, &c, exists), want, "{c:?}");
        }
    }
}
