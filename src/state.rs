//! The shared state between sources and outputs.
//!
//! Sources write their typed state here; the renderer turns it into a
//! snapshot; HTTP serves the snapshot. Nothing here knows /proc or HTTP.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

use crate::kernel::KernelState;
use crate::nginx::NginxState;
use crate::pools::PoolState;

/// Lock a mutex even if a panicking thread poisoned it: every state here is
/// plain data that stays consistent between statements.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one collector has done so far, for self-observation.
#[derive(Debug, Clone, Default)]
pub struct CollectorStats {
    pub cycles: u64,
    pub errors: u64,
    pub last_duration: Duration,
    pub cpu_seconds: f64,
}

/// Something that happened to a pool's process, kept for joins (OOM kill
/// attribution, 502 causes).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolEvent {
    pub at: SystemTime,
    pub pool: Arc<str>,
    pub pid: i32,
    pub starttime: u64,
    pub slot: Option<usize>,
    pub kind: PoolEventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolEventKind {
    WorkerSpawn,
    WorkerExit,
    MasterStart,
    MasterExit,
}

/// A bounded, time-ordered list of events.
#[derive(Debug)]
pub struct Timeline<T> {
    events: VecDeque<T>,
    cap: usize,
    dropped: u64,
}

impl<T> Timeline<T> {
    pub fn new(cap: usize) -> Self {
        Timeline {
            events: VecDeque::with_capacity(cap.min(1024)),
            cap,
            dropped: 0,
        }
    }

    pub fn push(&mut self, e: T) {
        if self.events.len() == self.cap {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(e);
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.events.iter()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

pub const TIMELINE_CAP: usize = 4096;

/// An encoded scrape, built off the request path.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub body: bytes::Bytes,
    pub built_at: SystemTime,
    pub pools: Vec<PoolSummary>,
    /// Each source and a word on its state, for the landing page.
    pub sources: Vec<(String, String)>,
}

/// What the landing page shows of a pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSummary {
    pub name: String,
    pub server: &'static str,
    pub up: bool,
    pub master_pid: Option<i32>,
    pub workers: usize,
}

pub struct World {
    pub pools: Mutex<BTreeMap<String, PoolState>>,
    pub pool_events: Mutex<Timeline<PoolEvent>>,
    pub kernel: Mutex<KernelState>,
    pub nginx: Mutex<NginxState>,
    pub collectors: Mutex<BTreeMap<&'static str, CollectorStats>>,
    pub config_origin: String,
    snapshot: RwLock<Arc<Snapshot>>,
    dirty: Mutex<bool>,
    wake: Condvar,
}

impl World {
    pub fn new(config_origin: String) -> Arc<World> {
        Arc::new(World {
            pools: Mutex::new(BTreeMap::new()),
            pool_events: Mutex::new(Timeline::new(TIMELINE_CAP)),
            kernel: Mutex::new(KernelState::default()),
            nginx: Mutex::new(NginxState::default()),
            collectors: Mutex::new(BTreeMap::new()),
            config_origin,
            snapshot: RwLock::new(Arc::new(Snapshot {
                body: bytes::Bytes::from_static(b"# EOF\n"),
                built_at: SystemTime::UNIX_EPOCH,
                pools: Vec::new(),
                sources: Vec::new(),
            })),
            dirty: Mutex::new(true),
            wake: Condvar::new(),
        })
    }

    /// The latest snapshot. Cheap: a read lock and a reference count.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn publish(&self, snap: Snapshot) {
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snap);
    }

    /// A source changed something: wake the renderer.
    pub fn mark_dirty(&self) {
        *lock(&self.dirty) = true;
        self.wake.notify_one();
    }

    /// Wait until something is dirty or `timeout` passes; returns whether
    /// anything was dirty, and clears the flag.
    pub fn wait_dirty(&self, timeout: Duration) -> bool {
        let mut d = lock(&self.dirty);
        if !*d {
            d = self
                .wake
                .wait_timeout(d, timeout)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        std::mem::replace(&mut *d, false)
    }

    /// Run `cycle` every `interval`, forever, on the calling thread: time
    /// it, count its CPU and errors under `collector`, and wake the
    /// renderer when it reports a change. `cycle` returns (errors, changed).
    pub fn run_collector(
        &self,
        collector: &'static str,
        interval: Duration,
        mut cycle: impl FnMut() -> (u64, bool),
    ) -> ! {
        loop {
            let started = std::time::Instant::now();
            let cpu0 = thread_cpu_seconds();
            let (errors, changed) = cycle();
            let cpu = thread_cpu_seconds() - cpu0;
            self.record_cycle(collector, started.elapsed(), cpu, errors);
            if changed {
                self.mark_dirty();
            }
            std::thread::sleep(interval.saturating_sub(started.elapsed()));
        }
    }

    /// Wait (up to `timeout`) until `collector` has finished a cycle.
    pub fn wait_for_cycle(&self, collector: &str, timeout: Duration) {
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if lock(&self.collectors)
                .get(collector)
                .is_some_and(|s| s.cycles > 0)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn record_cycle(&self, collector: &'static str, duration: Duration, cpu: f64, errors: u64) {
        let mut c = lock(&self.collectors);
        let s = c.entry(collector).or_default();
        s.cycles += 1;
        s.errors += errors;
        s.last_duration = duration;
        s.cpu_seconds += cpu;
    }
}

/// CPU time used by the calling thread, in seconds.
pub fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_is_bounded() {
        let mut t = Timeline::new(3);
        for i in 0..10 {
            t.push(i);
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.dropped(), 7);
        assert_eq!(t.iter().copied().collect::<Vec<_>>(), vec![7, 8, 9]);
    }
}
