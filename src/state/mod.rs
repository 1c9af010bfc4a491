//! Layer 2: what the sources hand to everything above them, knowing no
//! source.
//!
//! - [`timeline`]: the one bounded timeline of events;
//! - [`published`]: the value a source publishes after each step;
//! - [`health`]: whether each source could be read;
//! - [`history`]: the last hour, by minute, for the status page;
//! - [`pool_index`]: the pool source's members and listeners, for the
//!   other sources;
//! - [`source`]: the one shape of a source's step and the loop that
//!   drives every source;
//! - [`Sinks`]: where every source writes: the timeline, health, collector
//!   stats and the change signal that wakes the renderer.

pub mod health;
pub mod history;
pub mod pool_index;
pub mod published;
pub mod source;
pub mod timeline;

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

pub use health::Health;
pub use pool_index::PoolIndex;
pub use published::Published;
pub use source::{Counted, Source, Stepped};
pub use timeline::{Event, EventKind, SharedTimeline, Timeline};

/// Lock a mutex even if a panicking thread poisoned it: every state here is
/// plain data that stays consistent between statements.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one collector loop has done so far, for self-observation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectorStats {
    pub cycles: u64,
    pub errors: u64,
    pub last_duration: Duration,
    pub cpu_seconds: f64,
}

/// Collector stats by collector name.
#[derive(Debug, Default)]
pub struct Collectors(Mutex<BTreeMap<&'static str, CollectorStats>>);

impl Collectors {
    pub fn record(&self, collector: &'static str, duration: Duration, cpu: f64, errors: u64) {
        let mut c = lock(&self.0);
        let s = c.entry(collector).or_default();
        s.cycles += 1;
        s.errors += errors;
        s.last_duration = duration;
        s.cpu_seconds += cpu;
    }

    /// CPU a collector spent outside its cycles (e.g. reading events).
    pub fn add_cpu(&self, collector: &'static str, cpu: f64) {
        lock(&self.0).entry(collector).or_default().cpu_seconds += cpu;
    }

    pub fn all(&self) -> BTreeMap<&'static str, CollectorStats> {
        lock(&self.0).clone()
    }
}

/// Set by a source when it published something new; the renderer waits on
/// it, so that a burst of log lines costs one render.
#[derive(Debug, Default)]
pub struct ChangeSignal {
    dirty: Mutex<bool>,
    wake: Condvar,
}

impl ChangeSignal {
    pub fn notify(&self) {
        *lock(&self.dirty) = true;
        self.wake.notify_one();
    }

    /// Wait until something changed or `timeout` passes; returns whether
    /// anything changed, and clears the flag.
    pub fn wait(&self, timeout: Duration) -> bool {
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
}

/// Where every source writes.
#[derive(Debug, Clone)]
pub struct Sinks {
    pub timeline: Arc<SharedTimeline>,
    pub health: Arc<Health>,
    pub collectors: Arc<Collectors>,
    pub changed: Arc<ChangeSignal>,
}

impl Sinks {
    pub fn new(timeline_cap: usize) -> Sinks {
        Sinks {
            timeline: Arc::new(SharedTimeline::new(timeline_cap)),
            health: Arc::new(Health::new()),
            collectors: Arc::new(Collectors::default()),
            changed: Arc::new(ChangeSignal::default()),
        }
    }
}

/// The wall-clock time at which CLOCK_MONOTONIC read 0: now, less the
/// monotonic clock. The kernel's log and process events are stamped with
/// that clock, which does not count suspend, so an event from before a
/// suspend comes out early by the suspended time.
pub fn boot_time() -> std::time::SystemTime {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let now = std::time::SystemTime::now();
    if rc != 0 {
        return now;
    }
    let mono = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
    now.checked_sub(mono)
        .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
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
