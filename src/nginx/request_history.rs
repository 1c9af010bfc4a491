//! A pool's bounded history of request times: what a one-shot diagnosis
//! reads to count the requests a pool got over each worker's life.

use std::time::{Duration, SystemTime};

/// Requests whose lines carry a time in `first_ms..=last_ms`
/// (milliseconds since the epoch), all in one slot of the history's
/// resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPoint {
    pub first_ms: u64,
    pub last_ms: u64,
    pub requests: u64,
}

/// The times of one pool's requests, by each access line's own time, as a
/// run-length list in time order: one point per slot of
/// [`RequestHistory::resolution`] that holds a request. Lines come nearly
/// in time order, so a line almost always falls in the last point or
/// starts one after it; a line out of order (nginx's workers share a log,
/// each stamping its lines with its own cached time) is found from the
/// back, and counted all the same.
///
/// Bounded: at most [`RequestHistory::CAP`] points. Reaching the cap
/// doubles the resolution and merges the neighbours that then share a
/// slot, until at most half the cap is left ([`RequestHistory::merges`]
/// counts the doublings). [`RequestHistory::count`] is:
/// - exact while `merges` is 0 (each point is one millisecond);
/// - after that, exact but for the one point at each end of the window
///   (its slot holds that end), shared out by how much of its span lies
///   inside the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHistory {
    points: Vec<RequestPoint>,
    cap: usize,
    merges: u32,
}

impl Default for RequestHistory {
    fn default() -> RequestHistory {
        RequestHistory::with_cap(RequestHistory::CAP)
    }
}

impl RequestHistory {
    /// Points kept per pool: counts exact over 4,096 distinct milliseconds
    /// of requests; over three days, slots of 131 s at most.
    pub const CAP: usize = 4096;

    /// A history of at most `cap` points (at least 2).
    pub fn with_cap(cap: usize) -> RequestHistory {
        RequestHistory {
            points: Vec::new(),
            cap: cap.max(2),
            merges: 0,
        }
    }

    /// Times the resolution doubled since the history began.
    pub fn merges(&self) -> u32 {
        self.merges
    }

    /// The span of the slots lines are gathered in: 1 ms until the first
    /// merge, doubled at each.
    pub fn resolution(&self) -> Duration {
        Duration::from_millis(1u64.checked_shl(self.merges).unwrap_or(u64::MAX))
    }

    pub fn points(&self) -> &[RequestPoint] {
        &self.points
    }

    /// Requests recorded so far.
    pub fn total(&self) -> u64 {
        self.points.iter().map(|p| p.requests).sum()
    }

    /// Record one request whose line was written `at`.
    pub fn push(&mut self, at: SystemTime) {
        let ms = millis(at);
        let (m, line) = (self.merges, slot(ms, self.merges));
        // The last point not after the line's slot: the last one, but for
        // a line out of order.
        let before = self
            .points
            .iter()
            .rposition(|p| slot(p.first_ms, m) <= line);
        if let Some(p) = before.map(|i| &mut self.points[i]) {
            if slot(p.first_ms, m) == line {
                p.first_ms = p.first_ms.min(ms);
                p.last_ms = p.last_ms.max(ms);
                p.requests += 1;
                return;
            }
        }
        if self.points.len() == self.cap {
            self.coarsen();
            return self.push(at);
        }
        let point = RequestPoint {
            first_ms: ms,
            last_ms: ms,
            requests: 1,
        };
        self.points.insert(before.map_or(0, |i| i + 1), point);
    }

    /// The requests whose lines' times are in `[from, to]`, both ends in.
    pub fn count(&self, from: SystemTime, to: SystemTime) -> u64 {
        if to < from {
            return 0;
        }
        let mut whole = 0;
        let mut shared = 0.0;
        for p in &self.points {
            let (a, b) = (time(p.first_ms), time(p.last_ms));
            if from <= a && b <= to {
                whole += p.requests;
            } else if a < b && a <= to && from <= b {
                // The merged point across an end of the window.
                let inside = to.min(b).duration_since(from.max(a)).unwrap_or_default();
                let span = b.duration_since(a).unwrap_or_default();
                shared += p.requests as f64 * inside.as_secs_f64() / span.as_secs_f64();
            }
        }
        whole + shared.round() as u64
    }

    /// Double the resolution and merge the neighbours that share a slot,
    /// until at most half the cap is left.
    fn coarsen(&mut self) {
        while self.points.len() > self.cap / 2 {
            self.merges += 1;
            let m = self.merges;
            let mut kept: Vec<RequestPoint> = Vec::with_capacity(self.points.len());
            for p in self.points.drain(..) {
                match kept.last_mut() {
                    Some(last) if slot(last.first_ms, m) == slot(p.first_ms, m) => {
                        last.first_ms = last.first_ms.min(p.first_ms);
                        last.last_ms = last.last_ms.max(p.last_ms);
                        last.requests += p.requests;
                    }
                    _ => kept.push(p),
                }
            }
            self.points = kept;
        }
    }
}

/// The slot of `ms` once the resolution doubled `merges` times.
fn slot(ms: u64, merges: u32) -> u64 {
    ms.checked_shr(merges).unwrap_or(0)
}

fn millis(at: SystemTime) -> u64 {
    let d = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn time(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> SystemTime {
        time(ms)
    }

    /// Uncapped, a window's count is exact to the millisecond, both ends
    /// in, lines at the same time in one point.
    #[test]
    fn exact_while_uncapped() {
        let mut h = RequestHistory::default();
        for ms in [1000, 1000, 1001, 1005, 2000, 2000, 2000] {
            h.push(t(ms));
        }
        assert_eq!(h.points().len(), 4);
        assert_eq!(h.merges(), 0);
        assert_eq!(h.count(t(1000), t(1000)), 2);
        assert_eq!(h.count(t(1001), t(1999)), 2);
        assert_eq!(h.count(t(1002), t(2000)), 4);
        assert_eq!(h.count(t(0), t(u32::MAX as u64)), 7);
        assert_eq!(h.count(t(2001), t(9000)), 0);
        assert_eq!(h.count(t(2000), t(1000)), 0);
        // Sub-millisecond window ends, as a worker's start time has.
        let after = t(1000) + Duration::from_micros(1);
        assert_eq!(h.count(after, t(1001)), 1);
    }

    /// A line stamped before lines already read is put in its place and
    /// counted in the windows its time is in.
    #[test]
    fn lines_out_of_time_order_are_counted() {
        let mut h = RequestHistory::default();
        for ms in [5000, 5001, 1200, 5002, 5001, 900] {
            h.push(t(ms));
        }
        assert_eq!(h.total(), 6);
        let times: Vec<(u64, u64)> = h
            .points()
            .iter()
            .map(|p| (p.first_ms, p.requests))
            .collect();
        assert_eq!(
            times,
            [(900, 1), (1200, 1), (5000, 1), (5001, 2), (5002, 1)]
        );
        assert_eq!(h.count(t(1000), t(2000)), 1);
        assert_eq!(h.count(t(5000), t(5002)), 4);
        assert_eq!(h.count(t(1200), t(5001)), 4);
    }

    /// At the cap the history stays bounded, the merges are counted, every
    /// request is kept, and a window's count is off by no more than the
    /// requests in the slot of each of its ends, out-of-order lines too.
    #[test]
    fn bounded_and_merge_counted_at_the_cap() {
        let cap = 64;
        let mut h = RequestHistory::with_cap(cap);
        // One line every 10 ms for 100 s, every 50th stamped 3 s earlier.
        let n = 10_000u64;
        let line = |i: u64| {
            if i % 50 == 49 && i >= 300 {
                i * 10 - 3000
            } else {
                i * 10
            }
        };
        for i in 0..n {
            h.push(t(line(i)));
            assert!(h.points().len() <= cap);
        }
        assert!(h.merges() > 0);
        assert_eq!(h.total(), n);
        let slot = h.resolution().as_millis() as u64;
        // 100 s in 32 slots at most.
        assert!(slot <= 4096, "{slot} ms");
        let exact = |from: u64, to: u64| (0..n).filter(|&i| (from..=to).contains(&line(i))).count();
        let slot_of = |ms: u64| exact(ms / slot * slot, ms / slot * slot + slot - 1);
        for (from, to) in [(0, 99_990), (12_345, 67_890), (30_000, 30_500), (1, 2)] {
            let got = h.count(t(from), t(to)) as i64;
            let want = exact(from, to) as i64;
            let bound = (slot_of(from) + slot_of(to)) as i64;
            assert!(
                (got - want).abs() <= bound,
                "[{from}, {to}]: {got} for {want}, slot {slot} ms"
            );
        }
        // Whole slots: exact.
        assert_eq!(
            h.count(t(slot), t(3 * slot - 1)),
            exact(slot, 3 * slot - 1) as u64
        );
        assert_eq!(h.count(t(0), t(n * 10)), n);
    }

    /// Lines a day apart, alternating: merging ends, and the history holds
    /// at most the cap.
    #[test]
    fn merging_ends_even_for_lines_far_apart() {
        let mut h = RequestHistory::with_cap(8);
        let day = 86_400_000;
        for i in 0..100u64 {
            h.push(t(if i % 2 == 0 { i * 1000 } else { day + i * 1000 }));
        }
        assert!(h.points().len() <= 8);
        assert_eq!(h.total(), 100);
        assert_eq!(h.count(t(0), t(2 * day)), 100);
        assert_eq!(h.count(t(0), t(day / 2)), 50);
    }
}
