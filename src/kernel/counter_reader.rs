//! Reads the kernel's memory counters every `--collector.kernel.interval`:
//! /proc/vmstat, /proc/meminfo, /proc/pressure/memory, and each pool's
//! memory cgroup (found from its master's /proc/PID/cgroup).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::counter_files::{self, ProcCgroups};
use super::{CgroupVersion, MemoryCounters, PoolCgroup};
use crate::state::source::pace;
use crate::state::{PoolIndex, Published, Sinks, Source, Stepped};

/// Where the counter files are.
#[derive(Debug, Clone)]
pub struct CounterOptions {
    pub procfs: PathBuf,
    pub sysfs: PathBuf,
    pub interval: Duration,
}

pub struct CounterReader {
    opts: CounterOptions,
    sinks: Sinks,
    pools: Arc<Published<PoolIndex>>,
    out: Arc<Published<MemoryCounters>>,
}

impl CounterReader {
    pub fn new(opts: CounterOptions, sinks: Sinks, pools: Arc<Published<PoolIndex>>) -> Self {
        CounterReader {
            opts,
            sinks,
            pools,
            out: Published::new(MemoryCounters::default()),
        }
    }

    pub fn published(&self) -> Arc<Published<MemoryCounters>> {
        self.out.clone()
    }

    /// One cycle: read and publish every counter; returns the number of
    /// files that could not be read.
    pub fn collect(&mut self) -> u64 {
        let mut errors = 0;
        let health = self.sinks.health.clone();
        let mut report = |source: &str, r: Result<(), String>| {
            errors += r.is_err() as u64;
            health.report(source, r);
        };
        let procfs = &self.opts.procfs;

        let path = procfs.join("vmstat");
        let vmstat = read(&path).and_then(|t| {
            counter_files::vmstat_oom_kills(&t)
                .ok_or_else(|| format!("{}: no oom_kill line (kernel before 4.13)", path.display()))
        });
        report("vmstat", vmstat.as_ref().map(|_| ()).map_err(Clone::clone));

        let path = procfs.join("meminfo");
        let host = read(&path).and_then(|t| {
            let m = counter_files::parse_meminfo(&t);
            match m.total {
                Some(_) => Ok(m),
                None => Err(format!("{}: no MemTotal line", path.display())),
            }
        });
        report("meminfo", host.as_ref().map(|_| ()).map_err(Clone::clone));

        let path = procfs.join("pressure/memory");
        let pressure = read(&path)
            .map_err(|e| format!("{e} (no PSI: kernel before 4.20, or booted with psi=0)"))
            .and_then(|t| {
                let p = counter_files::parse_pressure(&t);
                match p.some_usec {
                    Some(_) => Ok(p),
                    None => Err(format!("{}: no some total=", path.display())),
                }
            });
        report(
            "pressure",
            pressure.as_ref().map(|_| ()).map_err(Clone::clone),
        );

        let (cgroups, r) = self.cgroups();
        report("cgroup", r);
        self.out.publish(MemoryCounters {
            vmstat_oom_kills: vmstat.ok(),
            host: host.unwrap_or_default(),
            pressure: pressure.unwrap_or_default(),
            cgroups,
        });
        errors
    }

    /// The memory cgroup of every pool whose master is live. The first
    /// failure is reported; the other pools are still read.
    fn cgroups(&self) -> (BTreeMap<String, PoolCgroup>, Result<(), String>) {
        let (procfs, sysfs) = (&self.opts.procfs, &self.opts.sysfs);
        let masters: Vec<(String, i32)> = self
            .pools
            .get()
            .pools
            .iter()
            .filter_map(|p| Some((p.name.to_string(), p.master?.pid)))
            .collect();
        let mut out = BTreeMap::new();
        let mut result = Ok(());
        let cgroup_root = sysfs.join("fs/cgroup");
        if !cgroup_root.is_dir() {
            result = Err(format!("{}: not a directory", cgroup_root.display()));
        }
        for (pool, pid) in masters {
            let path = procfs.join(pid.to_string()).join("cgroup");
            let Ok(text) = std::fs::read_to_string(&path) else {
                // The master just exited; the pool source will notice.
                continue;
            };
            let procs = counter_files::parse_proc_cgroup(&text);
            match memory_cgroup(sysfs, &procs, |p| p.exists()) {
                Some(Found::Dir(dir, version, path)) => {
                    let (cg, r) = read_cgroup(&dir, version, path);
                    if let Err(e) = r {
                        result = result.and(Err(format!("pool {pool}: {e}")));
                    }
                    out.insert(pool, cg);
                }
                Some(Found::Root) => {}
                None => {
                    let relative = [&procs.v2, &procs.v1_memory]
                        .into_iter()
                        .flatten()
                        .any(|p| p.starts_with("/.."));
                    result = result.and(Err(format!(
                        "pool {pool}: no memory cgroup directory for {} under {}{}",
                        path.display(),
                        cgroup_root.display(),
                        if relative {
                            "; its cgroup path is relative to the exporter's cgroup namespace: run in the host's (docker run --cgroupns=host)"
                        } else {
                            "; in a container, mount the host's /sys and pass its path as --path.sysfs"
                        }
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
    /// The root cgroup. v2's has no memory files; v1's has them, but they
    /// count every process on the host: neither is the pool's, so nothing
    /// is read.
    Root,
}

/// Where a process's memory cgroup is: the v2 hierarchy at SYSFS/fs/cgroup
/// or SYSFS/fs/cgroup/unified if it has the memory controller (its
/// directory has `memory.current`), else the v1 memory hierarchy. A
/// process in the root of the hierarchy it is charged to is [`Found::Root`].
pub fn memory_cgroup(
    sysfs: &Path,
    c: &ProcCgroups,
    exists: impl Fn(&Path) -> bool,
) -> Option<Found> {
    let base = sysfs.join("fs/cgroup");
    let c = &ProcCgroups {
        v2: c.v2.as_deref().map(host_view),
        v1_memory: c.v1_memory.as_deref().map(host_view),
    };
    if let Some(path) = &c.v2 {
        for root in [base.clone(), base.join("unified")] {
            let dir = root.join(path.trim_start_matches('/'));
            if exists(&dir.join("memory.current")) {
                return Some(Found::Dir(dir, CgroupVersion::V2, path.clone()));
            }
        }
    }
    if let Some(path) = &c.v1_memory {
        if path == "/" {
            return Some(Found::Root);
        }
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

/// A cgroup path of /proc/PID/cgroup as seen from the host's root cgroup.
/// The kernel writes it relative to the reader's cgroup namespace: an
/// exporter in a container with its own (Docker and Kubernetes on cgroup
/// v2) reads a host process's cgroup as `/../../system.slice/app.service`,
/// climbing from its namespace's root. The climb ends at the host's root,
/// which the host's /sys (at --path.sysfs) shows, so the `..` are dropped
/// there. That is exact when the process is outside the subtree of the
/// exporter's own ancestors (a host service); for one beside the exporter
/// in a shared parent it is not, and the directory is then not found: the
/// source says so and names --cgroupns=host.
pub fn host_view(path: &str) -> String {
    let mut rest = path.trim_start_matches('/');
    while let Some(r) = rest.strip_prefix("..") {
        if r.is_empty() || r.starts_with('/') {
            rest = r.trim_start_matches('/');
        } else {
            break;
        }
    }
    format!("/{rest}")
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
        usage: file(usage).and_then(|t| counter_files::parse_bytes(&t)),
        limit: file(limit).and_then(|t| counter_files::parse_limit(&t)),
        events: file(events)
            .map(|t| counter_files::parse_memory_events(&t))
            .unwrap_or_default(),
    };
    (cg, result)
}

impl Source for CounterReader {
    fn collector(&self) -> &'static str {
        "kernel"
    }

    fn start(&mut self) {
        // Pools' cgroups are found from their masters: let the pool
        // source find them first.
        self.pools.wait_first(Duration::from_secs(10));
    }

    fn step(&mut self, _now: Instant) -> Stepped {
        Stepped::cycle(self.collect(), true)
    }

    fn wait(&mut self, started: Instant) {
        pace(self.opts.interval, started);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::pool_index::PoolMembers;
    use crate::state::timeline::Process;
    use counter_files::ProcCgroups;

    #[test]
    fn a_master_in_the_root_memory_cgroup_exports_no_cgroup_figures() {
        let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kernel/root_cgroup");
        let master = |name: &str, pid| PoolMembers {
            name: Arc::from(name),
            master: Some(Process {
                pid,
                started: std::time::SystemTime::UNIX_EPOCH,
                slot: None,
            }),
            workers: Vec::new(),
            listeners: Vec::new(),
        };
        let pools = Published::new(PoolIndex::default());
        pools.publish(PoolIndex {
            pools: vec![master("in_root", 100), master("boxed", 200)],
        });
        let sinks = Sinks::new(16);
        let mut r = CounterReader::new(
            CounterOptions {
                procfs: tree.join("proc"),
                sysfs: tree.join("sys"),
                interval: Duration::from_secs(5),
            },
            sinks.clone(),
            pools,
        );
        assert_eq!(r.collect(), 0);
        let c = r.published().get();
        assert_eq!(c.cgroups.keys().collect::<Vec<_>>(), ["boxed"]);
        let boxed = &c.cgroups["boxed"];
        assert_eq!(
            (boxed.path.as_str(), boxed.version),
            ("/bgw", CgroupVersion::V1)
        );
        assert_eq!(boxed.usage, Some(3205263360));
        // The root is not an error: the source is up.
        assert!(sinks.health.get("cgroup").unwrap().up);
    }

    fn cg(v1: Option<&str>, v2: Option<&str>) -> ProcCgroups {
        ProcCgroups {
            v1_memory: v1.map(str::to_string),
            v2: v2.map(str::to_string),
        }
    }

    #[test]
    fn a_path_relative_to_a_cgroup_namespace_is_taken_from_the_host_root() {
        assert_eq!(
            host_view("/system.slice/app.service"),
            "/system.slice/app.service"
        );
        assert_eq!(
            host_view("/../../system.slice/app.service"),
            "/system.slice/app.service"
        );
        assert_eq!(host_view("/.."), "/");
        assert_eq!(host_view("/"), "/");
        assert_eq!(host_view("/..app/x"), "/..app/x");
        // Found under the host's /sys as a container mounts it.
        let here = |p: &Path| {
            p == Path::new("/host/sys/fs/cgroup/system.slice/app.service/memory.current")
        };
        assert_eq!(
            memory_cgroup(
                Path::new("/host/sys"),
                &cg(None, Some("/../../../system.slice/app.service")),
                here
            ),
            Some(Found::Dir(
                PathBuf::from("/host/sys/fs/cgroup/system.slice/app.service"),
                CgroupVersion::V2,
                "/system.slice/app.service".into()
            ))
        );
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
        let v1_root = |p: &Path| p == Path::new("/sys/fs/cgroup/memory/memory.usage_in_bytes");
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
            // A master left in v1's root: its usage_in_bytes is the host's.
            (cg(Some("/"), Some("/")), &v1_root, Some(Found::Root)),
            (cg(Some("/"), None), &v1_root, Some(Found::Root)),
            (cg(None, None), &v1_here, None),
        ];
        for (c, exists, want) in cases {
            assert_eq!(memory_cgroup(sys, &c, exists), want, "{c:?}");
        }
    }
}
