//! Follows /dev/kmsg (or replays a capture of it) and records each OOM
//! kill: counted by pool, and put on the timeline.
//!
//! One `read()` returns one record. A fresh open starts at the oldest
//! record still in the ring buffer, so kills since boot (those not yet
//! overwritten) are counted at startup. Records are keyed on `seq`, so a
//! reopen never counts one twice. See Documentation/ABI/testing/dev-kmsg.
//!
//! When it cannot be opened or read (no CAP_SYSLOG, no device in a
//! container), it tries again after [`RETRY_FIRST`], doubling the wait
//! after each failure up to [`RETRY_MAX`]; a try that reaches the end of
//! the ring buffer starts the waits again from the first. Health logs the
//! first failure only.
//!
//! The time of a kill is the record's `ts_usec` (the kernel's monotonic
//! clock, not counting suspend) plus the wall-clock time at which that
//! clock was 0, measured when the record is read. This is right for a
//! replayed record too, unless the machine was suspended since it was
//! logged (then it is early by the suspended time).

use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::kills::{self, Assembler, Known, Victim};
use super::kmsg::{self, Record};
use super::oom::parse_oom_line;
use super::{epoch_seconds, KillCounts, LastKill, MemoryCounters, NO_POOL};
use crate::state::timeline::{EventKind, KillRule, OomKill};
use crate::state::{Counted, PoolIndex, Published, Sinks, Source, Stepped};

/// Large enough for any record (the kernel's limit is 8 KiB of text plus
/// the header and dictionary); `read()` fails with EINVAL if it is not.
const BUF_SIZE: usize = 16 * 1024;
const MAX_BUF_SIZE: usize = 1 << 20;
/// The wait before the first retry of a device that failed.
pub const RETRY_FIRST: Duration = Duration::from_secs(10);
/// The longest wait between two retries.
pub const RETRY_MAX: Duration = Duration::from_secs(320);
/// How often a wait (between retries, or for new records) looks for new
/// options.
const OPTIONS_CHECK: Duration = Duration::from_secs(1);
const STARTUP_WAIT: Duration = Duration::from_secs(15);
/// How long a live kill of no known process waits for a pool to claim it:
/// a few of the pool source's event reads.
const ATTRIBUTION_WAIT: Duration = Duration::from_millis(200);

/// A kill read from the log, not yet counted.
struct PendingKill {
    seen: Instant,
    at: SystemTime,
    seq: u64,
    victim: Victim,
}

/// The waits between the tries of a source that keeps failing: `first`,
/// doubled after each failure up to `max`; a success starts again from
/// `first`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// A try failed: how long to wait before the next.
    pub fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    pub fn succeeded(&mut self) {
        self.next = self.first;
    }
}

/// The health `source` label of the kernel log.
pub const SOURCE: &str = "kmsg";

#[derive(Debug, Clone)]
pub struct KmsgOptions {
    /// /dev/kmsg, or a capture file in its record format.
    pub path: PathBuf,
    /// How long after a kill an exit seen by the pool source may be the
    /// victim's.
    pub exit_window: Duration,
    /// The wall-clock time at which the kernel's log clock read 0. `None`:
    /// measured from CLOCK_MONOTONIC when each record is read (right for
    /// this host's own log); a capture from elsewhere gives its own.
    pub boot_time: Option<SystemTime>,
}

pub struct KmsgReader {
    opts: KmsgOptions,
    sinks: Sinks,
    pools: Arc<Published<PoolIndex>>,
    /// The pools' memory cgroups, for attributing a kill by its cgroup.
    memory: Arc<Published<MemoryCounters>>,
    last_seq: Option<u64>,
    /// `read()` said records were lost (EPIPE); the next record's `seq`
    /// tells how many.
    lost_pending: bool,
    assembler: Assembler,
    counts: KillCounts,
    out: Arc<Published<KillCounts>>,
    /// New options (a reloaded config; `None`: stop reading), taken before
    /// each open and noticed while following.
    updates: Option<(Arc<Published<Option<KmsgOptions>>>, u64)>,
    enabled: bool,
    backoff: Backoff,
    /// The current open reached the end of the ring buffer.
    followed: bool,
    /// Past the ring buffer's replay: new kills are live.
    following: bool,
    pending: std::collections::VecDeque<PendingKill>,
    /// How long to wait before the next try, as the last one said.
    next_try: Duration,
}

impl KmsgReader {
    pub fn new(
        opts: KmsgOptions,
        sinks: Sinks,
        pools: Arc<Published<PoolIndex>>,
        memory: Arc<Published<MemoryCounters>>,
    ) -> KmsgReader {
        KmsgReader {
            opts,
            sinks,
            pools,
            memory,
            last_seq: None,
            lost_pending: false,
            assembler: Assembler::default(),
            counts: KillCounts::default(),
            out: Published::new(KillCounts::default()),
            updates: None,
            enabled: true,
            backoff: Backoff::new(RETRY_FIRST, RETRY_MAX),
            followed: false,
            following: false,
            pending: std::collections::VecDeque::new(),
            next_try: Duration::ZERO,
        }
    }

    /// Take new options from `updates` before each open; while following,
    /// a new publication closes the device so that it applies at once.
    pub fn follow_options(&mut self, updates: Arc<Published<Option<KmsgOptions>>>) {
        let seen = updates.version();
        self.updates = Some((updates, seen));
    }

    fn options_changed(&self) -> bool {
        self.updates
            .as_ref()
            .is_some_and(|(u, seen)| u.version() != *seen)
    }

    fn take_new_options(&mut self) {
        let Some(new) = self.updates.as_mut().and_then(|(u, seen)| u.newer(seen)) else {
            return;
        };
        match &*new {
            Some(o) => {
                self.enabled = true;
                self.opts = o.clone();
            }
            None => {
                self.enabled = false;
                self.sinks.health.forget(SOURCE);
            }
        }
        // New options are a new start: try them at once.
        self.backoff.succeeded();
    }

    pub fn published(&self) -> Arc<Published<KillCounts>> {
        self.out.clone()
    }

    /// Read every record there is and return: the device until it has no
    /// more (EAGAIN), or a capture file to its end. After it the kill
    /// counts are complete and exported.
    pub fn replay(&mut self) -> Result<(), String> {
        let r = self.open().and_then(|mut f| {
            let is_file = f.metadata().map(|m| m.is_file()).unwrap_or(false);
            if is_file {
                let mut text = Vec::new();
                f.read_to_end(&mut text)
                    .map_err(|e| format!("reading {}: {e}", self.opts.path.display()))?;
                for rec in kmsg::capture_records(&text) {
                    self.record(rec);
                }
                Ok(())
            } else {
                self.read(&mut f, false).map(|_| ())
            }
        });
        self.sinks
            .health
            .report(SOURCE, r.clone().map_err(|e| e.to_string()));
        if r.is_ok() {
            self.set_replayed();
        }
        r
    }

    /// One try: take new options, open the device and follow it until an
    /// error (or new options). Returns how long to wait before the next.
    pub fn attempt(&mut self) -> Duration {
        self.take_new_options();
        if !self.enabled {
            return Duration::MAX;
        }
        self.followed = false;
        let r = self.open().and_then(|mut f| {
            self.sinks.health.report(SOURCE, Ok(()));
            self.read(&mut f, true)
        });
        if self.followed {
            self.backoff.succeeded();
        }
        match r {
            // New options: reopen with them at once.
            Ok(()) => Duration::ZERO,
            Err(e) => {
                self.sinks.health.report(SOURCE, Err(e));
                self.backoff.failed()
            }
        }
    }

    fn sleep_unless_new_options(&self, wait: Duration) {
        let until = std::time::Instant::now().checked_add(wait);
        loop {
            let left = until.map_or(OPTIONS_CHECK, |u| {
                u.saturating_duration_since(std::time::Instant::now())
            });
            if left.is_zero() || self.options_changed() {
                return;
            }
            std::thread::sleep(left.min(OPTIONS_CHECK));
        }
    }

    fn open(&self) -> Result<std::fs::File, String> {
        // Non-blocking, so that the end of the replayed ring buffer shows
        // as EAGAIN; later records are waited for with poll(2).
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.opts.path)
            .map_err(|e| {
                let hint = match e.kind() {
                    ErrorKind::PermissionDenied => {
                        " (needs CAP_SYSLOG when kernel.dmesg_restrict=1)"
                    }
                    ErrorKind::NotFound => {
                        " (no /dev/kmsg: in a container, mount it from the host)"
                    }
                    _ => "",
                };
                format!("opening {}: {e}{hint}", self.opts.path.display())
            })
    }

    fn set_replayed(&mut self) {
        if !self.counts.replayed {
            self.counts.replayed = true;
            self.publish();
        }
    }

    fn publish(&self) {
        self.out.publish(self.counts.clone());
        self.sinks.changed.notify();
    }

    /// Read records until the device has no more (`follow` false: return
    /// then), until new options are published (returns `Ok` too), or until
    /// an error that needs a reopen (returned).
    fn read(&mut self, f: &mut std::fs::File, follow: bool) -> Result<(), String> {
        let mut buf = vec![0u8; BUF_SIZE];
        loop {
            match f.read(&mut buf) {
                Ok(0) => {
                    return Err(format!(
                        "{}: end of file (not a kmsg device?)",
                        self.opts.path.display()
                    ))
                }
                Ok(n) => self.record(&buf[..n]),
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => self.lost_pending = true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    // The ring buffer is replayed: from now on the kill
                    // counters are complete, so export them.
                    self.set_replayed();
                    self.followed = true;
                    if !follow || self.options_changed() {
                        return Ok(());
                    }
                    self.following = true;
                    self.settle_pending();
                    let wait = if self.pending.is_empty() {
                        OPTIONS_CHECK
                    } else {
                        Duration::from_millis(20)
                    };
                    wait_readable(f, wait);
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && buf.len() < MAX_BUF_SIZE => {
                    let len = buf.len() * 2;
                    buf.resize(len, 0);
                }
                Err(e) => return Err(format!("reading {}: {e}", self.opts.path.display())),
            }
        }
    }

    fn record(&mut self, buf: &[u8]) {
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
            self.counts.records_lost += lost;
            self.publish();
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
            self.kill(&rec, v);
        }
    }

    fn kill(&mut self, rec: &Record<'_>, v: Victim) {
        let kill = PendingKill {
            seen: Instant::now(),
            at: self.kill_time(rec.ts_usec),
            seq: rec.seq,
            victim: v,
        };
        // While following the live log, a victim no pool claims yet may be
        // a worker forked and killed within the pool source's last few
        // milliseconds: wait a moment for its fork to be published.
        if self.following && self.attribution(&kill).rule == KillRule::Unknown {
            self.pending.push_back(kill);
            return;
        }
        self.count(kill);
    }

    /// Count the kills that waited, once a pool claims them or the wait
    /// is over.
    fn settle_pending(&mut self) {
        while let Some(k) = self.pending.front() {
            let claimed = self.attribution(k).rule != KillRule::Unknown;
            if !claimed && k.seen.elapsed() < ATTRIBUTION_WAIT {
                // Later kills wait behind it, so they stay in order.
                return;
            }
            let k = self.pending.pop_front().expect("just seen");
            self.count(k);
        }
    }

    fn attribution(&self, k: &PendingKill) -> kills::Attribution {
        let cgroups: Vec<(String, String)> = self
            .memory
            .get()
            .cgroups
            .iter()
            .map(|(p, c)| (p.clone(), c.path.clone()))
            .collect();
        kills::attribute(
            k.victim.pid,
            epoch_seconds(k.at),
            k.victim.task_memcg.as_deref(),
            &self.known(),
            &cgroups,
            self.opts.exit_window.as_secs_f64(),
        )
    }

    fn count(&mut self, kill: PendingKill) {
        let a = self.attribution(&kill);
        let (at, v) = (kill.at, kill.victim);
        let k = OomKill {
            seq: kill.seq,
            pid: v.pid as i32,
            comm: v.comm.into(),
            slot: a.slot,
            cgroup: v.task_memcg.map(Into::into),
            memcg: v.memcg,
            rule: a.rule,
            anon_bytes: v.anon_rss_kb.saturating_mul(1024),
            file_bytes: v.file_rss_kb.saturating_mul(1024),
            shmem_bytes: v.shmem_rss_kb.map(|k| k.saturating_mul(1024)),
        };
        let pool = a.pool.as_deref().unwrap_or(NO_POOL);
        tracing::info!(pid = k.pid, comm = %k.comm, pool, seq = k.seq, "OOM kill");
        let e = self.counts.kills.entry(pool.to_string()).or_default();
        e.kills += 1;
        e.last = Some(LastKill {
            at,
            anon_bytes: k.anon_bytes,
            file_bytes: k.file_bytes,
            shmem_bytes: k.shmem_bytes,
        });
        self.sinks
            .timeline
            .push(at, a.pool.map(Arc::from), EventKind::OomKill(k));
        self.publish();
    }

    /// Wall-clock time of a kmsg timestamp: the wall-clock time at which
    /// the log clock read 0, plus `ts_usec`.
    fn kill_time(&self, ts_usec: u64) -> SystemTime {
        self.opts.boot_time.unwrap_or_else(crate::state::boot_time) + Duration::from_micros(ts_usec)
    }

    /// Live pool processes and the recent exits, for attribution.
    fn known(&self) -> Vec<Known> {
        let mut out = Vec::new();
        for p in &self.pools.get().pools {
            for proc in p.master.iter().chain(&p.workers) {
                out.push(Known {
                    pool: p.name.to_string(),
                    pid: proc.pid,
                    slot: proc.slot,
                    started: epoch_seconds(proc.started),
                    exited: None,
                });
            }
        }
        let now = SystemTime::now();
        let since = now
            .checked_sub(self.opts.exit_window * 2)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        self.sinks.timeline.read(|tl| {
            for e in tl.window(since, now + Duration::from_secs(1)) {
                let p = match &e.kind {
                    EventKind::WorkerExit(w) => &w.process,
                    EventKind::MasterExit(p) => p,
                    _ => continue,
                };
                let Some(pool) = &e.pool else { continue };
                out.push(Known {
                    pool: pool.to_string(),
                    pid: p.pid,
                    slot: p.slot,
                    started: epoch_seconds(p.started),
                    exited: Some(epoch_seconds(e.at)),
                });
            }
        });
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

/// A step is one try ([`KmsgReader::attempt`]): it follows the device
/// until an error or new options, so it is not a cycle and is not counted
/// as one; the wait is the backoff's, cut short by new options.
impl Source for KmsgReader {
    fn collector(&self) -> &'static str {
        SOURCE
    }

    fn start(&mut self) {
        // The replay at startup attributes past kills by the pools'
        // cgroups, which the counter reader reads after the pools' first
        // cycle.
        self.memory.wait_first(STARTUP_WAIT);
    }

    fn step(&mut self, _now: Instant) -> Stepped {
        self.next_try = self.attempt();
        Stepped {
            errors: 0,
            changed: true,
            counted: Counted::Uncounted,
        }
    }

    fn wait(&mut self, _started: Instant) {
        self.sleep_unless_new_options(self.next_try);
    }

    /// The replay: every record there is, and no follow. An unreadable
    /// kernel log is in the health a report shows, not an error here.
    fn catch_up(&mut self, _sinks: &Sinks) -> Stepped {
        let replayed = self.replay();
        Stepped {
            errors: replayed.is_err() as u64,
            changed: true,
            counted: Counted::Uncounted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::kmsg::tests::CAPTURED;
    use super::*;
    use crate::state::pool_index::PoolMembers;
    use crate::state::timeline::{Process, WorkerExit};

    fn reader(pools: PoolIndex) -> KmsgReader {
        let index = Published::new(PoolIndex::default());
        index.publish(pools);
        KmsgReader::new(
            KmsgOptions {
                path: PathBuf::from("/nonexistent"),
                exit_window: Duration::from_secs(60),
                boot_time: None,
            },
            Sinks::new(64),
            index,
            Published::new(MemoryCounters::default()),
        )
    }

    fn kills(r: &KmsgReader) -> Vec<(String, u64)> {
        r.counts
            .kills
            .iter()
            .map(|(p, k)| (p.clone(), k.kills))
            .collect()
    }

    #[test]
    fn a_reopen_replays_nothing_twice() {
        let mut r = reader(PoolIndex::default());
        let recs: Vec<&[u8]> = kmsg::capture_records(CAPTURED.as_bytes()).collect();
        for rec in &recs {
            r.record(rec);
        }
        // A reopen starts again from the oldest record in the ring buffer.
        for rec in &recs {
            r.record(rec);
        }
        assert_eq!(kills(&r), [("-".to_string(), 3)]);
        assert_eq!(r.counts.records_lost, 0);
        let last = r.counts.kills["-"].last.clone().unwrap();
        assert_eq!(last.anon_bytes, 65152 * 1024);
        assert_eq!(last.shmem_bytes, Some(0));
        let events: Vec<(i32, u64)> = r.sinks.timeline.read(|t| {
            t.iter()
                .filter_map(|e| match &e.kind {
                    EventKind::OomKill(k) => Some((k.pid, k.seq)),
                    _ => None,
                })
                .collect()
        });
        assert_eq!(events.len(), 3);
        assert_eq!(events[2], (7420, 582));
        assert_eq!(*r.published().get(), r.counts);
    }

    #[test]
    fn a_capture_file_replays_like_the_device() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kmsg.txt");
        std::fs::write(&path, CAPTURED).unwrap();
        let mut r = reader(PoolIndex::default());
        r.opts.path = path;
        r.opts.boot_time = Some(SystemTime::UNIX_EPOCH);
        assert!(!r.published().get().replayed);
        r.replay().unwrap();
        let c = r.published().get();
        assert!(c.replayed);
        assert_eq!(c.kills["-"].kills, 3);
        // ts_usec of the last kill's record, from the given boot time.
        let at = c.kills["-"].last.as_ref().unwrap().at;
        assert_eq!(
            at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            185
        );
        r.opts.path = PathBuf::from("/nonexistent/kmsg");
        let e = r.replay().unwrap_err();
        assert!(
            e.contains("/nonexistent/kmsg") && e.contains("mount it"),
            "{e}"
        );
        assert!(!r.sinks.health.get(SOURCE).unwrap().up);
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_a_success_resets_it() {
        let mut b = Backoff::new(RETRY_FIRST, RETRY_MAX);
        let waits: Vec<u64> = (0..7).map(|_| b.failed().as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 320]);
        b.succeeded();
        assert_eq!(b.failed(), RETRY_FIRST);
    }

    #[test]
    fn a_failing_device_is_retried_with_backoff() {
        let mut r = reader(PoolIndex::default());
        let waits: Vec<Duration> = (0..4).map(|_| r.attempt()).collect();
        assert_eq!(
            waits,
            [10, 20, 40, 80].map(Duration::from_secs),
            "waits between tries of a missing device"
        );
        let h = r.sinks.health.get(SOURCE).unwrap();
        assert!(!h.up && h.errors == 4, "{h:?}");
    }

    /// Needs root (the test command's user): /dev/kmsg is read with
    /// kernel.dmesg_restrict=1.
    #[test]
    fn following_the_device_resets_the_backoff_and_new_options_apply_at_once() {
        let mut r = reader(PoolIndex::default());
        r.attempt();
        r.attempt();
        let updates = Published::new(None);
        r.follow_options(updates.clone());
        let o = |path: &str| KmsgOptions {
            path: PathBuf::from(path),
            ..r.opts.clone()
        };
        updates.publish(Some(o("/dev/kmsg")));
        let (kmsg, gone) = (o("/dev/kmsg"), o("/nonexistent/kmsg2"));
        let u = updates.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            u.publish(Some(gone));
        });
        // Follows /dev/kmsg until the new path is published, then returns
        // to reopen at once.
        assert_eq!(r.attempt(), Duration::ZERO);
        t.join().unwrap();
        assert_eq!(r.opts.path, kmsg.path);
        assert!(r.published().get().replayed, "the ring buffer was read");
        // The new path fails; the backoff starts again from the first wait.
        assert_eq!(r.attempt(), RETRY_FIRST);
        assert_eq!(r.opts.path, PathBuf::from("/nonexistent/kmsg2"));
        // Turned off: no tries, no source.
        updates.publish(None);
        assert_eq!(r.attempt(), Duration::MAX);
        assert!(r.sinks.health.get(SOURCE).is_none());
    }

    #[test]
    fn lost_records_are_counted_by_the_seq_gap() {
        let mut r = reader(PoolIndex::default());
        r.record(b"6,10,1,-;a\n");
        r.record(b"6,11,2,-;b\n");
        r.lost_pending = true;
        r.record(b"6,15,3,-;c\n");
        r.lost_pending = true;
        r.record(b"6,16,4,-;d\n");
        assert_eq!(r.counts.records_lost, 3 + 1);
    }

    #[test]
    fn userspace_cannot_fake_a_kill() {
        let mut r = reader(PoolIndex::default());
        // Facility 1 (user): what `echo ... > /dev/kmsg` produces.
        let fake = "11,7,1,-;Out of memory: Killed process 1 (x) total-vm:1kB, anon-rss:2kB, file-rss:3kB\n";
        r.record(fake.as_bytes());
        assert!(kills(&r).is_empty());
    }

    fn monotonic_usec() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
    }

    #[test]
    fn a_just_exited_worker_victim_carries_its_pool_and_slot() {
        let mut r = reader(PoolIndex::default());
        let exited = Process {
            pid: 4321,
            started: SystemTime::now() - Duration::from_secs(30),
            slot: Some(2),
        };
        r.sinks.timeline.push(
            SystemTime::now(),
            Some(Arc::from("api")),
            EventKind::WorkerExit(WorkerExit {
                process: exited,
                status: None,
                rss_bytes: None,
                pss_bytes: None,
            }),
        );
        let line = format!("3,9,{},-;Memory cgroup out of memory: Killed process 4321 (gunicorn) total-vm:1kB, anon-rss:2kB, file-rss:3kB, shmem-rss:4kB, UID:0 pgtables:5kB oom_score_adj:0\n", monotonic_usec());
        r.record(line.as_bytes());
        assert_eq!(kills(&r), [("api".to_string(), 1)]);
        let ev = r.sinks.timeline.read(|t| t.iter().last().cloned()).unwrap();
        assert_eq!(ev.pool.as_deref(), Some("api"));
        let EventKind::OomKill(k) = ev.kind else {
            panic!("{ev:?}")
        };
        assert_eq!(
            (k.pid, k.slot, k.rule),
            (4321, Some(2), kills::Rule::Exited)
        );
        assert_eq!(
            (k.anon_bytes, k.file_bytes, k.shmem_bytes),
            (2048, 3072, Some(4096))
        );
        let age = SystemTime::now().duration_since(ev.at).unwrap();
        assert!(
            age < Duration::from_secs(2),
            "kill time from ts_usec: {age:?} ago"
        );
    }

    #[test]
    fn a_live_worker_victim_is_found_in_the_pool_index() {
        let mut r = reader(PoolIndex {
            pools: vec![PoolMembers {
                name: Arc::from("web"),
                master: None,
                workers: vec![Process {
                    pid: 555,
                    started: SystemTime::now() - Duration::from_secs(60),
                    slot: Some(1),
                }],
                listeners: Vec::new(),
            }],
        });
        let line = format!("3,9,{},-;Out of memory: Killed process 555 (gunicorn) total-vm:1kB, anon-rss:2kB, file-rss:3kB, shmem-rss:4kB, UID:0 pgtables:5kB oom_score_adj:0\n", monotonic_usec());
        r.record(line.as_bytes());
        assert_eq!(kills(&r), [("web".to_string(), 1)]);
    }

    #[test]
    fn a_live_kill_of_an_unknown_pid_waits_for_its_pool_to_claim_it() {
        let mut r = reader(PoolIndex::default());
        r.following = true;
        let line = |pid: i32| {
            format!("3,{pid},{},-;Memory cgroup out of memory: Killed process {pid} (gunicorn) total-vm:1kB, anon-rss:2kB, file-rss:3kB, shmem-rss:4kB, UID:0 pgtables:5kB oom_score_adj:0\n", monotonic_usec())
        };
        r.record(line(777).as_bytes());
        assert!(kills(&r).is_empty(), "waiting");
        // The pool source publishes the worker forked just before.
        r.pools.publish(PoolIndex {
            pools: vec![PoolMembers {
                name: Arc::from("api"),
                master: None,
                workers: vec![Process {
                    pid: 777,
                    started: SystemTime::now() - Duration::from_millis(50),
                    slot: Some(0),
                }],
                listeners: Vec::new(),
            }],
        });
        r.settle_pending();
        assert_eq!(kills(&r), [("api".to_string(), 1)]);
        // One no pool ever claims is counted under "-" after the wait.
        r.record(line(778).as_bytes());
        r.pending.front_mut().unwrap().seen -= ATTRIBUTION_WAIT;
        r.settle_pending();
        assert_eq!(kills(&r), [("-".to_string(), 1), ("api".to_string(), 1)]);
        assert!(r.pending.is_empty());
    }
}
