//! A value one source publishes and any number of readers take: the
//! writer swaps in a new `Arc`, a reader clones the current one. Neither
//! waits on the other for longer than a pointer copy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Published<T> {
    value: RwLock<Arc<T>>,
    /// How many times a value was published; 0 until the first.
    version: AtomicU64,
    first: (Mutex<bool>, Condvar),
}

impl<T> Published<T> {
    /// A handle holding `initial` until the source first publishes.
    pub fn new(initial: T) -> Arc<Published<T>> {
        Arc::new(Published {
            value: RwLock::new(Arc::new(initial)),
            version: AtomicU64::new(0),
            first: (Mutex::new(false), Condvar::new()),
        })
    }

    pub fn publish(&self, v: T) {
        *self.value.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(v);
        if self.version.fetch_add(1, Ordering::AcqRel) == 0 {
            *super::lock(&self.first.0) = true;
            self.first.1.notify_all();
        }
    }

    /// The latest value.
    pub fn get(&self) -> Arc<T> {
        self.value.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The latest value if it was published after the version in `seen`,
    /// which is moved on: how a source takes new options at the start of
    /// a step.
    pub fn newer(&self, seen: &mut u64) -> Option<Arc<T>> {
        let v = self.version();
        (v != *seen).then(|| {
            *seen = v;
            self.get()
        })
    }

    /// Wait up to `timeout` for the first publication; returns whether it
    /// came.
    pub fn wait_first(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut done = super::lock(&self.first.0);
        while !*done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            done = self
                .first
                .1
                .wait_timeout(done, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_gives_each_publication_once() {
        let p = Published::new("a");
        let mut seen = 0;
        assert_eq!(p.newer(&mut seen), None);
        p.publish("b");
        p.publish("c");
        assert_eq!(p.newer(&mut seen).as_deref(), Some(&"c"));
        assert_eq!(p.newer(&mut seen), None);
    }

    #[test]
    fn readers_see_the_latest_and_can_wait_for_the_first() {
        let p = Published::new(0u32);
        assert_eq!((*p.get(), p.version()), (0, 0));
        assert!(!p.wait_first(Duration::from_millis(10)));
        let w = p.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            w.publish(7);
        });
        assert!(p.wait_first(Duration::from_secs(5)));
        assert_eq!((*p.get(), p.version()), (7, 1));
        t.join().unwrap();
        p.publish(8);
        assert_eq!((*p.get(), p.version()), (8, 2));
    }
}
