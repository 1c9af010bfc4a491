//! Follows /dev/kmsg on its own thread and records each OOM kill.
//!
//! One `read()` returns one record. A fresh open starts at the oldest
//! record still in the ring buffer, so kills since boot (those not yet
//! overwritten) are counted at startup. Records are keyed on `seq`, so a
//! reopen never counts one twice. See Documentation/ABI/testing/dev-kmsg.
//!
//! The time of a kill is the record's `ts_usec` (the kernel's monotonic
//! clock, not counting suspend) plus the wall-clock time at which that
//! clock was 0, measured when the record is read. This is right for a
//! replayed record too, unless the machine was suspended since it was
//! logged (then it is early by the suspended time).

use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::kills::{self, Assembler, Known, Victim};
use super::kmsg::{self, Record};
use super::oom::parse_oom_line;
use super::{KillEvent, SourceHealth};
use crate::pools::proc::ProcRoot;
use crate::state::{lock, PoolEventKind, World};

/// Large enough for any record (the kernel's limit is 8 KiB of text plus
/// the header and dictionary); `read()` fails with EINVAL if it is not.
const BUF_SIZE: usize = 16 * 1024;
const MAX_BUF_SIZE: usize = 1 << 20;
const REOPEN_AFTER: Duration = Duration::from_secs(10);
const STARTUP_WAIT: Duration = Duration::from_secs(15);

pub struct KmsgReader {
    path: PathBuf,
    /// For converting pool processes' start ticks to wall time.
    proc_root: ProcRoot,
    /// How long after a kill an exit seen by the pool source may be the
    /// victim's.
    exit_window: Duration,
    last_seq: Option<u64>,
    /// `read()` said records were lost (EPIPE); the next record's `seq`
    /// tells how many.
    lost_pending: bool,
    assembler: Assembler,
    health: SourceHealth,
}

impl KmsgReader {
    pub fn new(path: &Path, procfs: &Path, pools_interval: Duration) -> KmsgReader {
        KmsgReader {
            path: path.to_path_buf(),
            proc_root: ProcRoot::new(procfs),
            exit_window: (pools_interval * 3).max(Duration::from_secs(60)),
            last_seq: None,
            lost_pending: false,
            assembler: Assembler::default(),
            health: SourceHealth::default(),
        }
    }

    /// Run forever on the calling thread.
    pub fn run(mut self, world: Arc<World>) {
        // The replay at startup attributes past kills by the pools' cgroups,
        // which the kernel poller reads after the pools' first cycle.
        world.wait_for_cycle("kernel", STARTUP_WAIT);
        loop {
            // Non-blocking, so that the end of the replayed ring buffer shows
            // as EAGAIN; later records are waited for with poll(2).
            let opened = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.path);
            match opened {
                Ok(f) => {
                    self.health.report(&world, "kmsg", Ok(()));
                    let e = self.follow(f, &world);
                    self.health.report(&world, "kmsg", Err(e));
                }
                Err(e) => {
                    let hint = match e.kind() {
                        ErrorKind::PermissionDenied => {
                            " (needs CAP_SYSLOG when kernel.dmesg_restrict=1)"
                        }
                        ErrorKind::NotFound => {
                            " (no /dev/kmsg: in a container, mount it from the host)"
                        }
                        _ => "",
                    };
                    let msg = format!("opening {}: {e}{hint}", self.path.display());
                    self.health.report(&world, "kmsg", Err(msg));
                }
            }
            world.mark_dirty();
            std::thread::sleep(REOPEN_AFTER);
        }
    }

    /// Read records until an error that needs a reopen; returns it.
    fn follow(&mut self, mut f: std::fs::File, world: &World) -> String {
        let mut buf = vec![0u8; BUF_SIZE];
        let mut replayed = false;
        loop {
            match f.read(&mut buf) {
                Ok(0) => {
                    return format!("{}: end of file (not a kmsg device?)", self.path.display())
                }
                Ok(n) => self.record(&buf[..n], world),
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => self.lost_pending = true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    // The ring buffer is replayed: from now on the kill
                    // counters are complete, so export them.
                    if !replayed {
                        replayed = true;
                        lock(&world.kernel).kmsg_read = true;
                        world.mark_dirty();
                    }
                    wait_readable(&f, Duration::from_secs(1));
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && buf.len() < MAX_BUF_SIZE => {
                    let len = buf.len() * 2;
                    buf.resize(len, 0);
                }
                Err(e) => return format!("reading {}: {e}", self.path.display()),
            }
        }
    }

    fn record(&mut self, buf: &[u8], world: &World) {
        let rec = match kmsg::parse_record(buf) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "skipping kmsg record");
                return;
            }
        };
        if self.last_seq.is_some_and(|last| rec.seq <= last) {
            return;
        }
        let gap = self.last_seq.map_or(0, |last| rec.seq - last - 1);
        let lost = if self.lost_pending { gap.max(1) } else { gap };
        self.lost_pending = false;
        self.last_seq = Some(rec.seq);
        if lost > 0 {
            lock(&world.kernel).kmsg_records_lost += lost;
            world.mark_dirty();
        }
        // Facility 0 is the kernel's own: userspace writes to /dev/kmsg
        // carry another, so they cannot fake a kill.
        if rec.facility != 0 || rec.fragment {
            return;
        }
        let Some(line) = parse_oom_line(&rec.text) else {
            return;
        };
        if let Some(v) = self.assembler.feed(line) {
            let k = self.kill_event(&rec, v, world);
            tracing::info!(pid = k.pid, comm = %k.comm, pool = k.pool.as_deref().unwrap_or("-"), seq = k.seq, "OOM kill");
            lock(&world.kernel).record_kill(k);
            world.mark_dirty();
        }
    }

    fn kill_event(&self, rec: &Record<'_>, v: Victim, world: &World) -> KillEvent {
        let at = kill_time(rec.ts_usec);
        let at_secs = super::epoch_seconds(at);
        let known = self.known(world);
        let cgroups: Vec<(String, String)> = lock(&world.kernel)
            .cgroups
            .iter()
            .map(|(p, c)| (p.clone(), c.path.clone()))
            .collect();
        let a = kills::attribute(
            v.pid,
            at_secs,
            v.task_memcg.as_deref(),
            &known,
            &cgroups,
            self.exit_window.as_secs_f64(),
        );
        KillEvent {
            at,
            seq: rec.seq,
            pid: v.pid as i32,
            comm: v.comm,
            pool: a.pool.map(Arc::from),
            slot: a.slot,
            rule: a.rule,
            memcg: v.memcg,
            anon_bytes: v.anon_rss_kb.saturating_mul(1024),
            file_bytes: v.file_rss_kb.saturating_mul(1024),
            shmem_bytes: v.shmem_rss_kb.map(|k| k.saturating_mul(1024)),
        }
    }

    /// Live pool processes and the recent exits, for attribution.
    fn known(&self, world: &World) -> Vec<Known> {
        let mut out = Vec::new();
        for p in lock(&world.pools).values() {
            let live = p
                .master
                .map(|m| (m, None))
                .into_iter()
                .chain(p.workers.iter().map(|w| (w.id, Some(w.slot))));
            for (id, slot) in live {
                out.push(Known {
                    pool: p.name.clone(),
                    pid: id.pid,
                    slot,
                    started: self.proc_root.start_time_seconds(id.starttime),
                    exited: None,
                });
            }
        }
        let now = SystemTime::now();
        let events = lock(&world.pool_events);
        let recent = events.iter().rev().take_while(|e| {
            now.duration_since(e.at)
                .is_ok_and(|d| d <= self.exit_window * 2)
        });
        for e in recent {
            if matches!(
                e.kind,
                PoolEventKind::WorkerExit | PoolEventKind::MasterExit
            ) {
                out.push(Known {
                    pool: e.pool.to_string(),
                    pid: e.pid,
                    slot: e.slot,
                    started: self.proc_root.start_time_seconds(e.starttime),
                    exited: Some(super::epoch_seconds(e.at)),
                });
            }
        }
        out
    }
}

/// Block until `f` has data (or `timeout` passes).
fn wait_readable(f: &std::fs::File, timeout: Duration) {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: f.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd that we own, for the duration of the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
    if rc < 0 {
        // EINTR or the like: the caller reads again, which says what it is.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wall-clock time of a kmsg timestamp: the wall-clock time at which the
/// monotonic clock read 0, plus `ts_usec`.
fn kill_time(ts_usec: u64) -> SystemTime {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let now = SystemTime::now();
    if rc != 0 {
        return now;
    }
    let mono = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
    let boot = now.checked_sub(mono).unwrap_or(SystemTime::UNIX_EPOCH);
    boot + Duration::from_micros(ts_usec)
}

#[cfg(test)]
mod tests {
    use super::super::kmsg::tests::fixture_records;
    use super::*;
    use crate::state::PoolEvent;

    const CAPTURED: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/kernel/kmsg_memcg_oom_6.18.txt"
    ));

    fn reader() -> KmsgReader {
        KmsgReader::new(
            Path::new("/nonexistent"),
            Path::new("/proc"),
            Duration::from_secs(5),
        )
    }

    fn kills(world: &World) -> Vec<(String, u64)> {
        lock(&world.kernel)
            .kills
            .iter()
            .map(|(p, k)| (p.clone(), k.kills))
            .collect()
    }

    #[test]
    fn a_reopen_replays_nothing_twice() {
        let world = World::new("test".into());
        let mut r = reader();
        let recs = fixture_records(CAPTURED);
        for rec in &recs {
            r.record(rec.as_bytes(), &world);
        }
        // A reopen starts again from the oldest record in the ring buffer.
        for rec in &recs {
            r.record(rec.as_bytes(), &world);
        }
        assert_eq!(kills(&world), [("-".to_string(), 3)]);
        let k = lock(&world.kernel);
        assert_eq!(k.kmsg_records_lost, 0);
        let last = k.kills["-"].last.clone().unwrap();
        assert_eq!(
            (last.pid, last.seq, last.anon_bytes),
            (7420, 582, 65152 * 1024)
        );
        assert_eq!(last.shmem_bytes, Some(0));
        assert_eq!(k.kill_events.len(), 3);
    }

    #[test]
    fn lost_records_are_counted_by_the_seq_gap() {
        let world = World::new("test".into());
        let mut r = reader();
        r.record(b"6,10,1,-;a\n", &world);
        r.record(b"6,11,2,-;b\n", &world);
        r.lost_pending = true;
        r.record(b"6,15,3,-;c\n", &world);
        r.lost_pending = true;
        r.record(b"6,16,4,-;d\n", &world);
        assert_eq!(lock(&world.kernel).kmsg_records_lost, 3 + 1);
    }

    #[test]
    fn userspace_cannot_fake_a_kill() {
        let world = World::new("test".into());
        let mut r = reader();
        // Facility 1 (user): what `echo ... > /dev/kmsg` produces.
        let fake = "11,7,1,-;Out of memory: Killed process 1 (x) total-vm:1kB, anon-rss:2kB, file-rss:3kB\n";
        r.record(fake.as_bytes(), &world);
        assert!(kills(&world).is_empty());
    }

    #[test]
    fn a_just_exited_worker_victim_carries_its_pool_and_slot() {
        let world = World::new("test".into());
        lock(&world.pool_events).push(PoolEvent {
            at: SystemTime::now(),
            pool: Arc::from("api"),
            pid: 4321,
            starttime: 0,
            slot: Some(2),
            kind: PoolEventKind::WorkerExit,
        });
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000;
        let mut r = reader();
        let line = format!("3,9,{usec},-;Memory cgroup out of memory: Killed process 4321 (gunicorn) total-vm:1kB, anon-rss:2kB, file-rss:3kB, shmem-rss:4kB, UID:0 pgtables:5kB oom_score_adj:0\n");
        r.record(line.as_bytes(), &world);
        assert_eq!(kills(&world), [("api".to_string(), 1)]);
        let ev = lock(&world.kernel).kills["api"].last.clone().unwrap();
        assert_eq!(
            (ev.pid, ev.slot, ev.rule),
            (4321, Some(2), kills::Rule::Exited)
        );
        assert_eq!(
            (ev.anon_bytes, ev.file_bytes, ev.shmem_bytes),
            (2048, 3072, Some(4096))
        );
        let age = SystemTime::now().duration_since(ev.at).unwrap();
        assert!(
            age < Duration::from_secs(2),
            "kill time from ts_usec: {age:?} ago"
        );
    }
}
