//! The last hour, kept for the status page and `/api/v1/timeline`: one
//! bucket a minute for sixty minutes (502s and 504s by cause, each slot's
//! largest PSS), and the marks the page draws on the same time axis (OOM
//! kills, worker exits by reason, master restarts) with their evidence.
//!
//! Everything is fixed in size: the buckets are a ring of [`MINUTES`], the
//! marks a ring of [`MARKS_CAP`], the memory series at most [`MAX_POOLS`]
//! pools of [`MAX_SLOTS`] slots. What does not fit is counted in
//! [`Dropped`]. The renderer fills it from the timeline and the pool view;
//! this module knows no source.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::timeline::{Event, EventKind, ExitReason, FailureCause, Request};

/// Minutes kept: one hour.
pub const MINUTES: usize = 60;
/// Marks kept: at a worker killed every ten seconds, the whole hour.
pub const MARKS_CAP: usize = 512;
/// Pools with a memory series; more are counted in `Dropped::pools`.
pub const MAX_POOLS: usize = 32;
/// Slots with a memory series per pool.
pub const MAX_SLOTS: usize = 128;
/// A request's path is cut to this many bytes on a mark (nginx's own
/// source cuts it already; this keeps the history bounded whatever feeds
/// it).
pub const PATH_MAX: usize = 128;
/// The statuses a bucket counts, in this order.
pub const STATUSES: [u16; 2] = [502, 504];

const NCAUSES: usize = FailureCause::ALL.len();

/// What a mark on the time axis stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    OomKill,
    WorkerExit(ExitReason),
    /// A pool's master started again after one had been seen.
    MasterRestart,
    /// A pool's master went away.
    MasterExit,
}

impl MarkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MarkKind::OomKill => "oom_kill",
            MarkKind::WorkerExit(_) => "worker_exit",
            MarkKind::MasterRestart => "master_restart",
            MarkKind::MasterExit => "master_exit",
        }
    }

    /// The exit reason, for worker exits.
    pub fn reason(self) -> Option<ExitReason> {
        match self {
            MarkKind::WorkerExit(r) => Some(r),
            _ => None,
        }
    }
}

/// One mark and its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub at: SystemTime,
    pub kind: MarkKind,
    pub pool: Option<Arc<str>>,
    pub pid: i32,
    pub slot: Option<usize>,
    /// The victim's memory: anon + file + shmem as the kernel logged it
    /// for a kill, the last PSS (or RSS) for an exit.
    pub memory_bytes: Option<u64>,
    /// A request nginx lost on this worker (cut down to method and path).
    pub request: Option<Request>,
}

/// One minute's failed requests by status and cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Minutes since the epoch; `u64::MAX` for a minute not yet reached.
    pub minute: u64,
    failed: [[u32; NCAUSES]; STATUSES.len()],
}

impl Bucket {
    const EMPTY: Bucket = Bucket {
        minute: u64::MAX,
        failed: [[0; NCAUSES]; STATUSES.len()],
    };

    pub fn start(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.minute.saturating_mul(60))
    }

    /// (status, cause, count) for every non-zero count.
    pub fn failed(&self) -> impl Iterator<Item = (u16, FailureCause, u32)> + '_ {
        STATUSES.iter().enumerate().flat_map(move |(s, status)| {
            FailureCause::ALL
                .iter()
                .enumerate()
                .filter(move |(c, _)| self.failed[s][*c] > 0)
                .map(move |(c, cause)| (*status, *cause, self.failed[s][c]))
        })
    }

    pub fn total(&self) -> u32 {
        self.failed.iter().flatten().sum()
    }
}

/// One pool's per-slot memory, minute by minute, on the same ring as the
/// buckets.
#[derive(Debug, Clone)]
pub struct PoolSeries {
    pub pool: Arc<str>,
    /// Per slot, per ring position: the largest PSS seen that minute, in
    /// KiB; 0 for no sample.
    slots: Vec<[u32; MINUTES]>,
}

impl PoolSeries {
    pub fn slots(&self) -> usize {
        self.slots.len()
    }
}

/// What did not fit, or came too late or too early for the hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Marks pushed out of the ring by newer ones.
    pub marks: u64,
    /// Events older than the hour, or ahead of the clock by a minute.
    pub out_of_window: u64,
    /// Events the timeline dropped before the history read them.
    pub timeline: u64,
    /// Samples of a pool beyond `MAX_POOLS` or a slot beyond `MAX_SLOTS`.
    pub series: u64,
}

#[derive(Debug, Clone)]
pub struct History {
    buckets: [Bucket; MINUTES],
    /// The newest minute the ring has reached.
    now_minute: u64,
    marks: VecDeque<Mark>,
    series: Vec<PoolSeries>,
    /// Pools whose master was seen start: the next start is a restart.
    masters_seen: Vec<Arc<str>>,
    /// The timeline's next sequence number at the last read.
    next_seq: u64,
    dropped: Dropped,
}

impl Default for History {
    fn default() -> History {
        History::new()
    }
}

/// `req` with its path cut to [`PATH_MAX`] bytes, on a char boundary.
fn cut(req: &Request) -> Request {
    if req.path.len() <= PATH_MAX && req.method.len() <= 16 {
        return req.clone();
    }
    let end = (0..=PATH_MAX.min(req.path.len()))
        .rev()
        .find(|i| req.path.is_char_boundary(*i))
        .unwrap_or(0);
    let m_end = (0..=16.min(req.method.len()))
        .rev()
        .find(|i| req.method.is_char_boundary(*i))
        .unwrap_or(0);
    Request {
        method: req.method[..m_end].into(),
        path: req.path[..end].into(),
    }
}

fn minute_of(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

impl History {
    pub fn new() -> History {
        History {
            buckets: [Bucket::EMPTY; MINUTES],
            now_minute: 0,
            marks: VecDeque::with_capacity(MARKS_CAP),
            series: Vec::new(),
            masters_seen: Vec::new(),
            next_seq: 1,
            dropped: Dropped::default(),
        }
    }

    /// Move the ring on to `now`'s minute, emptying the minutes it enters,
    /// and forget marks older than the hour.
    pub fn advance(&mut self, now: SystemTime) {
        let m = minute_of(now);
        if m <= self.now_minute && self.now_minute != 0 {
            return;
        }
        let from = if self.now_minute == 0 || m - self.now_minute >= MINUTES as u64 {
            m + 1 - MINUTES as u64
        } else {
            self.now_minute + 1
        };
        for minute in from..=m {
            let i = (minute % MINUTES as u64) as usize;
            self.buckets[i] = Bucket {
                minute,
                ..Bucket::EMPTY
            };
            for s in &mut self.series {
                for slot in &mut s.slots {
                    slot[i] = 0;
                }
            }
        }
        self.now_minute = m;
        let oldest = self.oldest_minute();
        while self.marks.front().is_some_and(|k| minute_of(k.at) < oldest) {
            self.marks.pop_front();
        }
    }

    fn oldest_minute(&self) -> u64 {
        self.now_minute + 1 - MINUTES as u64
    }

    /// The ring position of `t`'s minute, if it lies in the hour.
    fn index(&mut self, t: SystemTime) -> Option<usize> {
        let m = minute_of(t);
        if self.now_minute == 0 || m < self.oldest_minute() || m > self.now_minute {
            self.dropped.out_of_window += 1;
            return None;
        }
        Some((m % MINUTES as u64) as usize)
    }

    /// Read the events the timeline got since the last call. `next_seq` is
    /// the timeline's own next number, to count what it dropped unread.
    pub fn read_timeline<'a>(
        &mut self,
        events: impl IntoIterator<Item = &'a Event>,
        next_seq: u64,
    ) {
        let mut expect = self.next_seq;
        for e in events {
            if e.seq > expect {
                self.dropped.timeline += e.seq - expect;
            }
            expect = e.seq + 1;
            self.record(e);
        }
        if next_seq > expect {
            self.dropped.timeline += next_seq - expect;
        }
        self.next_seq = next_seq;
    }

    /// Where the next [`History::read_timeline`] starts: the last sequence
    /// number read.
    pub fn last_seq(&self) -> u64 {
        self.next_seq.saturating_sub(1)
    }

    /// Take one event into the hour, if it is one the page shows.
    pub fn record(&mut self, e: &Event) {
        match &e.kind {
            EventKind::FailedRequest(f) => {
                let Some(s) = STATUSES.iter().position(|s| *s == f.error.status) else {
                    return;
                };
                let Some(i) = self.index(e.at) else {
                    return;
                };
                let c = FailureCause::ALL
                    .iter()
                    .position(|c| *c == f.cause)
                    .unwrap_or(NCAUSES - 1);
                let n = &mut self.buckets[i].failed[s][c];
                *n = n.saturating_add(1);
                if let (Some(w), Some(req)) = (&f.worker, &f.error.request) {
                    // The request in flight on the worker that died: on the
                    // marks of its end (its kill and its exit) near the
                    // failure. A mark made later, from evidence that came
                    // after the 502, takes it from these (see `mark`).
                    let req = cut(req);
                    for m in self.marks.iter_mut().filter(|m| {
                        m.pid == w.pid
                            && m.pool == e.pool
                            && ends_near(m, e.at)
                            && m.request.is_none()
                    }) {
                        m.request = Some(req.clone());
                    }
                }
            }
            EventKind::OomKill(k) => {
                let memory = k.anon_bytes + k.file_bytes + k.shmem_bytes.unwrap_or(0);
                self.mark(e, MarkKind::OomKill, k.pid, k.slot, Some(memory));
            }
            EventKind::WorkerEnd(w) => {
                let p = w.exit.process;
                // A zero is a sample taken as the process went, not its size.
                let memory = w
                    .exit
                    .pss_bytes
                    .filter(|b| *b > 0)
                    .or(w.exit.rss_bytes.filter(|b| *b > 0));
                self.mark(e, MarkKind::WorkerExit(w.reason), p.pid, p.slot, memory);
            }
            EventKind::MasterStart(p) => {
                let Some(pool) = &e.pool else { return };
                if self.masters_seen.iter().any(|s| s == pool) {
                    self.mark(e, MarkKind::MasterRestart, p.pid, None, None);
                } else if self.masters_seen.len() < MAX_POOLS * 4 {
                    self.masters_seen.push(pool.clone());
                }
            }
            EventKind::MasterExit(p) => self.mark(e, MarkKind::MasterExit, p.pid, None, None),
            _ => {}
        }
    }

    fn mark(
        &mut self,
        e: &Event,
        kind: MarkKind,
        pid: i32,
        slot: Option<usize>,
        memory_bytes: Option<u64>,
    ) {
        if self.index(e.at).is_none() {
            return;
        }
        if self.marks.len() == MARKS_CAP {
            self.marks.pop_front();
            self.dropped.marks += 1;
        }
        // The request in flight, when the 502 that names this worker came
        // first and left it on the other mark of the same end.
        let request = self
            .marks
            .iter()
            .filter(|m| m.pid == pid && m.pool == e.pool && ends_near(m, e.at))
            .find_map(|m| m.request.clone())
            .filter(|_| matches!(kind, MarkKind::OomKill | MarkKind::WorkerExit(_)));
        let mark = Mark {
            at: e.at,
            kind,
            pool: e.pool.clone(),
            pid,
            slot,
            memory_bytes,
            request,
        };
        // Kept in time order: sources deliver a little out of order.
        let at = self.marks.partition_point(|m| m.at <= mark.at);
        self.marks.insert(at, mark);
    }

    /// One slot's PSS at `at`: the minute keeps the largest.
    pub fn sample(&mut self, pool: &str, slot: usize, pss_bytes: u64, at: SystemTime) {
        let Some(i) = self.index(at) else { return };
        let p = match self.series.iter().position(|s| &*s.pool == pool) {
            Some(p) => p,
            None if self.series.len() < MAX_POOLS => {
                self.series.push(PoolSeries {
                    pool: Arc::from(pool),
                    slots: Vec::new(),
                });
                self.series.len() - 1
            }
            None => {
                self.dropped.series += 1;
                return;
            }
        };
        let s = &mut self.series[p];
        if slot >= MAX_SLOTS {
            self.dropped.series += 1;
            return;
        }
        if s.slots.len() <= slot {
            s.slots.resize(slot + 1, [0; MINUTES]);
        }
        let kib = (pss_bytes / 1024).min(u32::MAX as u64) as u32;
        let v = &mut s.slots[slot][i];
        *v = (*v).max(kib.max(1));
    }

    /// Forget the series of pools no longer configured.
    pub fn retain_pools(&mut self, keep: impl Fn(&str) -> bool) {
        self.series.retain(|s| keep(&s.pool));
    }

    /// The hour's minutes, oldest first (all sixty once advanced).
    pub fn minutes(&self) -> impl Iterator<Item = &Bucket> {
        let start = if self.now_minute == 0 {
            0
        } else {
            (self.oldest_minute() % MINUTES as u64) as usize
        };
        (0..MINUTES)
            .map(move |k| &self.buckets[(start + k) % MINUTES])
            .filter(|b| b.minute != u64::MAX)
    }

    /// Marks in time order.
    pub fn marks(&self) -> impl DoubleEndedIterator<Item = &Mark> {
        self.marks.iter()
    }

    pub fn series(&self) -> &[PoolSeries] {
        &self.series
    }

    /// One slot's PSS by minute, oldest first, aligned with
    /// [`History::minutes`]; `None` for a minute with no sample.
    pub fn slot_pss(&self, s: &PoolSeries, slot: usize) -> Vec<Option<u64>> {
        self.minutes()
            .map(|b| {
                let v = s.slots[slot][(b.minute % MINUTES as u64) as usize];
                (v > 0).then_some(v as u64 * 1024)
            })
            .collect()
    }

    pub fn dropped(&self) -> Dropped {
        self.dropped
    }

    /// The start of the newest minute.
    pub fn now_minute_start(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.now_minute * 60)
    }

    /// What the history holds in memory, its own struct included: counted
    /// in the exporter's RSS, measured by bench/status_page.sh.
    pub fn size_bytes(&self) -> usize {
        let mark_strings: usize = self
            .marks
            .iter()
            .map(|m| {
                m.request
                    .as_ref()
                    .map_or(0, |r| r.method.len() + r.path.len())
            })
            .sum();
        std::mem::size_of::<History>()
            + self.marks.capacity() * std::mem::size_of::<Mark>()
            + mark_strings
            + self.series.capacity() * std::mem::size_of::<PoolSeries>()
            + self
                .series
                .iter()
                .map(|s| s.pool.len() + s.slots.capacity() * std::mem::size_of::<[u32; MINUTES]>())
                .sum::<usize>()
            + self
                .masters_seen
                .iter()
                .map(|p| p.len() + 16)
                .sum::<usize>()
    }
}

/// Whether `m` marks a worker's end (its kill or its exit) within a
/// minute of `at`: a pid is not reused that fast.
fn ends_near(m: &Mark, at: SystemTime) -> bool {
    let gap =
        m.at.duration_since(at)
            .or_else(|_| at.duration_since(m.at))
            .unwrap_or_default();
    matches!(m.kind, MarkKind::OomKill | MarkKind::WorkerExit(_)) && gap <= Duration::from_secs(60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::timeline::{
        DeadWorker, FailedRequest, KillRule, OomKill, Process, ServerError, Timeline, WorkerEnd,
        WorkerExit,
    };

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn kill(pid: i32) -> EventKind {
        EventKind::OomKill(OomKill {
            seq: 1,
            pid,
            comm: "gunicorn".into(),
            slot: Some(1),
            cgroup: None,
            memcg: true,
            rule: KillRule::Live,
            anon_bytes: 100 << 20,
            file_bytes: 1 << 20,
            shmem_bytes: Some(0),
        })
    }

    fn failed(pid: i32, status: u16, cause: FailureCause) -> EventKind {
        EventKind::FailedRequest(FailedRequest {
            error: ServerError {
                log: Arc::from("edge"),
                status,
                upstream: None,
                conn: None,
                request: Some(Request::new(b"GET", b"/leak")),
                backend_sent: false,
            },
            cause,
            worker: Some(DeadWorker {
                pid,
                slot: Some(1),
                rss_bytes: None,
                pss_bytes: None,
            }),
        })
    }

    /// The 502 that names a dead worker may be judged, and land on the
    /// timeline, before the kernel's kill of it is read: the kill's mark
    /// still gets the request, from the exit's mark that took it.
    #[test]
    fn the_request_in_flight_reaches_a_kill_read_after_its_502() {
        let mut tl = Timeline::new(64);
        let api: Option<Arc<str>> = Some(Arc::from("api"));
        let end = |pid| {
            EventKind::WorkerEnd(WorkerEnd {
                exit: WorkerExit {
                    process: Process {
                        pid,
                        started: t(0),
                        slot: Some(1),
                    },
                    status: None,
                    rss_bytes: Some(90 << 20),
                    pss_bytes: None,
                },
                reason: ExitReason::OomKilled,
                lifetime: Duration::from_secs(30),
            })
        };
        tl.push(t(120), api.clone(), end(42));
        tl.push(
            t(121),
            api.clone(),
            failed(42, 502, FailureCause::WorkerOomKilled),
        );
        tl.push(t(120), api.clone(), kill(42));
        // Another worker with the same pid, much later: not its request.
        tl.push(t(400), api.clone(), kill(42));
        let mut h = History::new();
        h.advance(t(420));
        h.read_timeline(tl.since(h.last_seq()), tl.next_seq());
        let marks: Vec<(MarkKind, SystemTime, Option<Request>)> = h
            .marks()
            .map(|m| (m.kind, m.at, m.request.clone()))
            .collect();
        let leak = Some(Request::new(b"GET", b"/leak"));
        assert_eq!(
            marks,
            [
                (
                    MarkKind::WorkerExit(ExitReason::OomKilled),
                    t(120),
                    leak.clone()
                ),
                (MarkKind::OomKill, t(120), leak),
                (MarkKind::OomKill, t(400), None),
            ]
        );
    }

    #[test]
    fn buckets_by_minute_marks_with_evidence() {
        let mut tl = Timeline::new(64);
        let api: Option<Arc<str>> = Some(Arc::from("api"));
        tl.push(t(120), api.clone(), kill(42));
        tl.push(
            t(121),
            api.clone(),
            failed(42, 502, FailureCause::WorkerOomKilled),
        );
        tl.push(
            t(125),
            api.clone(),
            failed(7, 504, FailureCause::UpstreamTimeout),
        );
        tl.push(
            t(185),
            api.clone(),
            failed(8, 502, FailureCause::WorkerOomKilled),
        );
        tl.push(
            t(186),
            api.clone(),
            EventKind::WorkerEnd(WorkerEnd {
                exit: WorkerExit {
                    process: Process {
                        pid: 9,
                        started: t(0),
                        slot: Some(0),
                    },
                    status: None,
                    rss_bytes: Some(50 << 20),
                    pss_bytes: None,
                },
                reason: ExitReason::MaxRequests,
                lifetime: Duration::from_secs(60),
            }),
        );
        // From before the hour.
        tl.push(t(0) - Duration::from_secs(7200), api.clone(), kill(1));
        let mut h = History::new();
        h.advance(t(200));
        h.read_timeline(tl.since(h.last_seq()), tl.next_seq());
        let minutes: Vec<&Bucket> = h.minutes().collect();
        assert_eq!(minutes.len(), MINUTES);
        assert_eq!(minutes.last().unwrap().start(), t(180));
        let counts: Vec<(SystemTime, u16, &str, u32)> = h
            .minutes()
            .flat_map(|b| {
                b.failed()
                    .map(move |(s, c, n)| (b.start(), s, c.as_str(), n))
            })
            .collect();
        assert_eq!(
            counts,
            [
                (t(120), 502, "worker_oom_killed", 1),
                (t(120), 504, "upstream_timeout", 1),
                (t(180), 502, "worker_oom_killed", 1),
            ]
        );
        let marks: Vec<&Mark> = h.marks().collect();
        assert_eq!(marks.len(), 2);
        assert_eq!(marks[0].kind, MarkKind::OomKill);
        assert_eq!(marks[0].memory_bytes, Some(101 << 20));
        assert_eq!(marks[0].request, Some(Request::new(b"GET", b"/leak")));
        assert_eq!(marks[1].kind, MarkKind::WorkerExit(ExitReason::MaxRequests));
        assert_eq!(marks[1].memory_bytes, Some(50 << 20));
        assert_eq!(h.dropped().out_of_window, 1);
        // Nothing read twice.
        h.read_timeline(tl.since(h.last_seq()), tl.next_seq());
        assert_eq!(h.marks().count(), 2);
        // An hour on, all of it has rolled out.
        h.advance(t(200 + 3600));
        assert_eq!(h.marks().count(), 0);
        assert!(h.minutes().all(|b| b.total() == 0));
    }

    #[test]
    fn bounded_with_drops_counted() {
        let mut h = History::new();
        h.advance(t(3599));
        let mut tl = Timeline::new(10_000);
        for i in 0..(MARKS_CAP as u64 + 10) {
            tl.push(t(i), None, kill(i as i32));
        }
        h.read_timeline(tl.since(0), tl.next_seq());
        assert_eq!(h.marks().count(), MARKS_CAP);
        assert_eq!(h.dropped().marks, 10);
        // The timeline dropped some before they were read.
        let mut small = Timeline::new(4);
        for i in 0..10 {
            small.push(t(i), None, kill(1));
        }
        let mut h = History::new();
        h.advance(t(3599));
        h.read_timeline(small.since(h.last_seq()), small.next_seq());
        assert_eq!(h.dropped().timeline, 6);
        // Series: pools and slots beyond their caps are counted, not kept.
        for p in 0..MAX_POOLS + 2 {
            h.sample(&format!("p{p}"), 0, 1 << 20, t(3000));
        }
        h.sample("p0", MAX_SLOTS, 1 << 20, t(3000));
        assert_eq!(h.series().len(), MAX_POOLS);
        assert_eq!(h.dropped().series, 3);
    }

    #[test]
    fn a_slot_keeps_its_largest_pss_per_minute() {
        let mut h = History::new();
        h.advance(t(179));
        h.sample("api", 2, 10 << 20, t(120));
        h.sample("api", 2, 30 << 20, t(130));
        h.sample("api", 2, 20 << 20, t(170));
        let s = h.series()[0].clone();
        assert_eq!(s.slots(), 3);
        let pss = h.slot_pss(&s, 2);
        assert_eq!(pss.len(), MINUTES);
        assert_eq!(pss[MINUTES - 1], Some(30 << 20));
        assert_eq!(pss[MINUTES - 2], None);
        assert_eq!(h.slot_pss(&s, 0)[MINUTES - 1], None);
        // The minute rolls out with the ring.
        h.advance(t(179 + 3600));
        let s = h.series()[0].clone();
        assert!(h.slot_pss(&s, 2).iter().all(Option::is_none));
    }

    #[test]
    fn a_second_master_start_is_a_restart() {
        let mut h = History::new();
        h.advance(t(100));
        let api: Option<Arc<str>> = Some(Arc::from("api"));
        let p = |pid| Process {
            pid,
            started: t(0),
            slot: None,
        };
        let mut tl = Timeline::new(8);
        tl.push(t(10), api.clone(), EventKind::MasterStart(p(1)));
        tl.push(t(20), api.clone(), EventKind::MasterExit(p(1)));
        tl.push(t(30), api.clone(), EventKind::MasterStart(p(2)));
        h.read_timeline(tl.since(0), tl.next_seq());
        let kinds: Vec<&str> = h.marks().map(|m| m.kind.as_str()).collect();
        assert_eq!(kinds, ["master_exit", "master_restart"]);
    }
}
