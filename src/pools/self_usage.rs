//! The exporter's own process: memory, CPU, start time and file
//! descriptors, read from `PROCFS/self` (so `--path.procfs` holds here as
//! everywhere) on a tick of its own and published, so that neither a
//! scrape nor a snapshot reads /proc for them. The values are those of
//! Prometheus' process collector in client_golang and client_rust, which
//! the `process_*` families repeat.
//!
//! A value that cannot be read is left out of what is published (and
//! counted as an error of the `process` collector); the others still are.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::proc::ProcRoot;
use crate::state::source::pace;
use crate::state::{Published, Source, Stepped};

/// The collector name of the loop.
pub const COLLECTOR: &str = "process";

/// How often the exporter reads itself unless told otherwise: the
/// renderer builds a snapshot at least once a second.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// What the exporter last read of itself; `None` where a read failed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessUsage {
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    /// User plus system CPU time of all threads.
    pub cpu_seconds: Option<f64>,
    /// Seconds since the epoch at which the process started.
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    /// The soft limit on open files; `u64::MAX` when unlimited, as the Go
    /// collector reports it.
    pub max_fds: Option<u64>,
}

pub struct SelfUsageSource {
    root: ProcRoot,
    /// The exporter's pid as the procfs mount numbers it (its `self` link):
    /// a host's /proc mounted into a container numbers it from the host.
    pid: i32,
    interval: Duration,
    out: Arc<Published<ProcessUsage>>,
    /// Whether a failed read was logged already: once is enough.
    warned: bool,
}

impl SelfUsageSource {
    pub fn new(procfs: &Path, interval: Duration) -> SelfUsageSource {
        let pid = std::fs::read_link(procfs.join("self"))
            .ok()
            .and_then(|l| l.to_str()?.parse().ok())
            .unwrap_or(std::process::id() as i32);
        SelfUsageSource {
            root: ProcRoot::new(procfs),
            pid,
            interval,
            out: Published::new(ProcessUsage::default()),
            warned: false,
        }
    }

    pub fn published(&self) -> Arc<Published<ProcessUsage>> {
        self.out.clone()
    }

    /// Read every value once and publish them. Returns the number of values
    /// that could not be read.
    pub fn collect(&mut self) -> u64 {
        let (root, pid) = (&self.root, self.pid);
        let mut failed: Vec<&str> = Vec::new();
        let mut keep = |what: &'static str, ok: bool| {
            if !ok {
                failed.push(what);
            }
        };
        let stat = root.stat(pid).ok();
        keep("stat", stat.is_some());
        let open_fds = root.open_fds(pid).ok();
        keep("fd", open_fds.is_some());
        let max_fds = root.max_fds(pid).ok().map(|l| l.unwrap_or(u64::MAX));
        keep("limits", max_fds.is_some());
        let usage = ProcessUsage {
            resident_bytes: stat.map(|s| root.pages_to_bytes(s.rss_pages)),
            virtual_bytes: stat.map(|s| s.vsize_bytes),
            cpu_seconds: stat.map(|s| root.ticks_to_seconds(s.utime + s.stime)),
            start_time_seconds: stat.map(|s| root.start_time_seconds(s.starttime)),
            open_fds,
            max_fds,
        };
        if !failed.is_empty() && !self.warned {
            self.warned = true;
            tracing::warn!(
                path = %root.path().join(pid.to_string()).display(),
                files = failed.join(", "),
                "cannot read the exporter's own process files: those process_* values are left out"
            );
        }
        self.out.publish(usage);
        failed.len() as u64
    }
}

/// The values change every tick: a step never signals a change, and the
/// renderer takes them at its own pace rather than being woken.
impl Source for SelfUsageSource {
    fn collector(&self) -> &'static str {
        COLLECTOR
    }

    fn step(&mut self, _now: Instant) -> Stepped {
        Stepped::cycle(self.collect(), false)
    }

    fn wait(&mut self, started: Instant) {
        pace(self.interval, started);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_exporter_itself() {
        let mut s = SelfUsageSource::new(Path::new("/proc"), DEFAULT_INTERVAL);
        assert_eq!(s.pid, std::process::id() as i32);
        let out = s.published();
        assert_eq!(out.version(), 0);
        let held = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(s.collect(), 0);
        drop(held);
        let u = *out.get();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = u.start_time_seconds.unwrap();
        assert!(started > now - 3600.0 && started <= now + 1.0, "{started}");
        let (rss, vsz) = (u.resident_bytes.unwrap(), u.virtual_bytes.unwrap());
        assert!(rss > 0 && vsz >= rss, "rss {rss} vsize {vsz}");
        assert!(u.open_fds.unwrap() >= 1, "{u:?}");
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(u.max_fds, Some(lim.rlim_cur));
        assert!(u.cpu_seconds.unwrap() >= 0.0);
    }

    /// `--path.procfs` is honoured: `self` there names the process.
    #[test]
    fn reads_self_under_the_procfs_given() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("stat"), "cpu 1 2 3\nbtime 1700000000\n").unwrap();
        std::os::unix::fs::symlink("4242", root.join("self")).unwrap();
        let p = root.join("4242");
        std::fs::create_dir_all(p.join("fd")).unwrap();
        for fd in ["0", "1", "2", "7"] {
            std::os::unix::fs::symlink("/dev/null", p.join("fd").join(fd)).unwrap();
        }
        // utime 300 and stime 100 ticks, started 500 ticks after boot,
        // vsize 100 MiB, 2560 resident pages.
        std::fs::write(
            p.join("stat"),
            "4242 (badgateway_expo) S 1 4242 4242 0 -1 4194560 1 0 0 0 300 100 0 0 20 0 9 0 500 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n",
        )
        .unwrap();
        // A captured limits file: 20000 open files, soft.
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fixtures/proc/gunicorn_children/17591/limits"
            ),
            p.join("limits"),
        )
        .unwrap();
        let mut s = SelfUsageSource::new(root, DEFAULT_INTERVAL);
        assert_eq!(s.pid, 4242);
        assert_eq!(s.collect(), 0);
        let tick = procfs::ticks_per_second() as f64;
        let page = procfs::page_size();
        assert_eq!(
            *s.published().get(),
            ProcessUsage {
                resident_bytes: Some(2560 * page),
                virtual_bytes: Some(104_857_600),
                cpu_seconds: Some(400.0 / tick),
                start_time_seconds: Some(1_700_000_000.0 + 500.0 / tick),
                open_fds: Some(4),
                max_fds: Some(20000),
            }
        );
    }

    #[test]
    fn a_procfs_without_the_process_leaves_the_values_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SelfUsageSource::new(dir.path(), DEFAULT_INTERVAL);
        assert_eq!(s.collect(), 3);
        assert_eq!(*s.published().get(), ProcessUsage::default());
        assert_eq!(s.published().version(), 1);
    }
}
