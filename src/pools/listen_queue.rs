//! The listen queues of the pools' sockets: how many connections wait for
//! a worker to accept them, against the socket's backlog. A full queue is
//! what nginx meets as `Resource temporarily unavailable` (unix) or a
//! refused or timed-out connect (TCP): the `backlog_full` 502s.
//!
//! A queue fills and drains within a second, so a scrape every 15 s would
//! miss it: the sampler asks the kernel for every pool socket's queue every
//! `interval` (100 ms by default) in one sock_diag batch, by inode or
//! address, never by dumping the host's sockets (see
//! `netlink::sock_diag`), and keeps the peak. The sockets are the ones the
//! pool source publishes in its [`PoolIndex`], Gunicorn's control socket
//! left out.
//!
//! The peak of a socket is the highest length among the samples taken in
//! the last `peak_window` (`--collector.listen-queue.peak-window`): a
//! sliding window,
//! kept as a queue of samples whose lengths decrease from the oldest, so
//! that it holds at most one entry per distinct length.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::netlink::sock_diag::{ListenQueue, Listener, QueueSample, SockDiag};
use crate::state::pool_index::PoolListener;
use crate::state::source::pace;
use crate::state::{PoolIndex, Published, Sinks, Source, Stepped};

/// The health `source` label of the sampler.
pub const SOURCE: &str = "listen_queue";

/// The shipped scrape interval (deploy/prometheus/scrape*.yml,
/// deploy/kubernetes/servicemonitor.yaml: 15 s) and a second more, the
/// most a snapshot lags the last sample: then every burst is in the window
/// of some scrape.
pub const DEFAULT_PEAK_WINDOW: Duration = Duration::from_secs(16);

#[derive(Debug, Clone)]
pub struct ListenQueueOptions {
    /// How often every socket is sampled.
    pub interval: Duration,
    /// How far back the peak reaches.
    pub peak_window: Duration,
    /// procfs mount point: the masters' network namespaces are compared
    /// with the exporter's own there.
    pub procfs: PathBuf,
}

impl Default for ListenQueueOptions {
    fn default() -> Self {
        ListenQueueOptions {
            interval: Duration::from_millis(100),
            peak_window: DEFAULT_PEAK_WINDOW,
            procfs: PathBuf::from("/proc"),
        }
    }
}

/// One listening socket of a pool, as last sampled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueState {
    pub pool: Arc<str>,
    /// `unix:/path` or `host:port`, as nginx names the upstream.
    pub listener: Arc<str>,
    pub length: u32,
    pub limit: u32,
    /// The highest length sampled in the last peak window.
    pub peak: u32,
}

/// What the sampler publishes: every socket it could sample, by pool and
/// listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenQueues {
    pub queues: Vec<QueueState>,
}

/// The highest value pushed within the last `window`: a queue of (time,
/// value) whose values decrease from front to back; the front is the peak.
#[derive(Debug, Clone, Default)]
pub struct PeakWindow {
    samples: VecDeque<(Instant, u32)>,
}

impl PeakWindow {
    /// Add a sample taken at `at` and return the peak over `(at - window,
    /// at]`.
    pub fn push(&mut self, at: Instant, value: u32, window: Duration) -> u32 {
        while self.samples.back().is_some_and(|&(_, v)| v <= value) {
            self.samples.pop_back();
        }
        self.samples.push_back((at, value));
        while self
            .samples
            .front()
            .is_some_and(|&(t, _)| at.duration_since(t) >= window)
        {
            self.samples.pop_front();
        }
        self.samples.front().map_or(value, |&(_, v)| v)
    }
}

/// A pool as the targets were built from it: its name, its master's pid
/// and its sockets.
type BuiltFrom = (Arc<str>, Option<i32>, Vec<PoolListener>);

/// One socket to sample.
#[derive(Debug)]
struct Target {
    pool: Arc<str>,
    name: Arc<str>,
    listener: Listener,
    window: PeakWindow,
}

pub struct ListenQueueSampler {
    opts: ListenQueueOptions,
    sinks: Sinks,
    index: Arc<Published<PoolIndex>>,
    diag: Option<SockDiag>,
    /// The index version the targets were last checked against, and the
    /// pools, masters and sockets they were built from.
    index_version: u64,
    built_from: Vec<BuiltFrom>,
    targets: Vec<Target>,
    /// Pools whose master is in another network namespace, which
    /// sock_diag cannot see into.
    elsewhere: Vec<Arc<str>>,
    query: Vec<Listener>,
    samples: Vec<QueueSample>,
    last: ListenQueues,
    out: Arc<Published<ListenQueues>>,
}

impl ListenQueueSampler {
    pub fn new(
        opts: ListenQueueOptions,
        sinks: Sinks,
        index: Arc<Published<PoolIndex>>,
    ) -> ListenQueueSampler {
        ListenQueueSampler {
            opts,
            sinks,
            index,
            diag: None,
            index_version: 0,
            built_from: Vec::new(),
            targets: Vec::new(),
            elsewhere: Vec::new(),
            query: Vec::new(),
            samples: Vec::new(),
            last: ListenQueues::default(),
            out: Published::new(ListenQueues::default()),
        }
    }

    pub fn published(&self) -> Arc<Published<ListenQueues>> {
        self.out.clone()
    }

    /// Sample every pool socket once. Returns (errors, whether what is
    /// published changed).
    pub fn sample(&mut self, now: Instant) -> (u64, bool) {
        self.retarget();
        if self.targets.is_empty() && self.elsewhere.is_empty() {
            return (0, self.publish(Vec::new()));
        }
        let diag = match self.diag.as_mut() {
            Some(d) => d,
            None => match SockDiag::open() {
                Ok(d) => self.diag.insert(d),
                Err(e) => {
                    self.sinks
                        .health
                        .report(SOURCE, Err(format!("{e}; listen queues are not exported")));
                    return (1, self.publish(Vec::new()));
                }
            },
        };
        self.samples.clear();
        if let Err(e) = diag.sample(&self.query, &mut self.samples) {
            // A reply out of step would confuse the next batch: start over
            // with a new socket.
            self.diag = None;
            self.sinks.health.report(SOURCE, Err(e.to_string()));
            return (1, self.publish(Vec::new()));
        }
        let window = self.opts.peak_window;
        let mut queues = Vec::with_capacity(self.targets.len());
        for (t, s) in self.targets.iter_mut().zip(&self.samples) {
            match *s {
                QueueSample::Listening(ListenQueue { length, limit }) => {
                    let peak = t.window.push(now, length, window);
                    queues.push(QueueState {
                        pool: t.pool.clone(),
                        listener: t.name.clone(),
                        length,
                        limit,
                        peak,
                    });
                }
                // Closed since the pool source read it: it will drop it at
                // its next read of the master's sockets.
                QueueSample::NotListening | QueueSample::Gone => t.window = PeakWindow::default(),
            }
        }
        let health = match self.elsewhere.as_slice() {
            [] => Ok(()),
            pools => Err(format!(
                "the master of pool {} is in another network namespace, whose sockets sock_diag cannot see; {}",
                pools.iter().map(|p| &**p).collect::<Vec<_>>().join(", "),
                crate::netlink::NEEDS_HOST_NETWORK
            )),
        };
        self.sinks.health.report(SOURCE, health);
        (0, self.publish(queues))
    }

    fn publish(&mut self, queues: Vec<QueueState>) -> bool {
        if queues == self.last.queues && self.out.version() > 0 {
            return false;
        }
        self.last.queues = queues;
        self.out.publish(self.last.clone());
        true
    }

    /// Rebuild the targets when the pools' masters or sockets changed,
    /// keeping the peak of each socket that stays.
    fn retarget(&mut self) {
        // The pool source publishes every cycle, and its sockets change
        // far less often.
        let version = self.index.version();
        if version == self.index_version {
            return;
        }
        self.index_version = version;
        let index = self.index.get();
        let from: Vec<BuiltFrom> = index
            .pools
            .iter()
            .map(|p| (p.name.clone(), p.master.map(|m| m.pid), p.listeners.clone()))
            .collect();
        if from == self.built_from {
            return;
        }
        let mut old = std::mem::take(&mut self.targets);
        self.elsewhere.clear();
        let own_ns = std::fs::read_link(self.opts.procfs.join("self/ns/net")).ok();
        for p in &index.pools {
            let Some(master) = p.master else { continue };
            if p.listeners.is_empty() {
                continue;
            }
            let ns = std::fs::read_link(self.opts.procfs.join(format!("{}/ns/net", master.pid)));
            if let (Some(own), Ok(theirs)) = (&own_ns, ns) {
                if *own != theirs {
                    self.elsewhere.push(p.name.clone());
                    continue;
                }
            }
            for l in &p.listeners {
                let listener = match l.tcp {
                    Some(local) => Listener::Tcp {
                        local,
                        inode: l.inode,
                    },
                    None => Listener::Unix { inode: l.inode },
                };
                let window = old
                    .iter_mut()
                    .find(|t| t.pool == p.name && *t.name == *l.name && t.listener == listener)
                    .map(|t| std::mem::take(&mut t.window))
                    .unwrap_or_default();
                self.targets.push(Target {
                    pool: p.name.clone(),
                    name: Arc::from(l.name.as_str()),
                    listener,
                    window,
                });
            }
        }
        old.clear();
        self.query = self.targets.iter().map(|t| t.listener).collect();
        self.built_from = from;
    }
}

impl Source for ListenQueueSampler {
    fn collector(&self) -> &'static str {
        "listen_queue"
    }

    fn step(&mut self, now: Instant) -> Stepped {
        let (errors, changed) = self.sample(now);
        Stepped::cycle(errors, changed)
    }

    fn wait(&mut self, started: Instant) {
        pace(self.opts.interval, started);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::pool_index::{PoolListener, PoolMembers};
    use crate::state::timeline::Process;
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn the_peak_is_the_highest_sample_of_the_window() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let w = Duration::from_millis(500);
        let mut p = PeakWindow::default();
        assert_eq!(p.push(ms(0), 3, w), 3);
        assert_eq!(p.push(ms(100), 7, w), 7);
        assert_eq!(p.push(ms(200), 2, w), 7);
        assert_eq!(p.push(ms(300), 5, w), 7);
        assert_eq!(p.push(ms(599), 0, w), 7, "7 was sampled 499 ms ago");
        assert_eq!(p.push(ms(600), 0, w), 5, "7 is 500 ms old: out");
        assert_eq!(p.push(ms(799), 1, w), 5);
        assert_eq!(p.push(ms(801), 0, w), 1, "5 is 501 ms old");
        assert_eq!(p.push(ms(5000), 0, w), 0);
        assert_eq!(p.samples.len(), 1);
    }

    #[test]
    fn the_peak_window_agrees_with_a_scan_of_every_sample() {
        // A model check: random lengths at random times against the max
        // over all samples in the window.
        let t0 = Instant::now();
        let w = Duration::from_millis(300);
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut p = PeakWindow::default();
        let mut all = Vec::new();
        let mut at = t0;
        for _ in 0..5000 {
            at += Duration::from_millis(rand() % 120);
            let v = (rand() % 20) as u32;
            all.push((at, v));
            let want = all
                .iter()
                .filter(|(t, _)| at.duration_since(*t) < w)
                .map(|(_, v)| *v)
                .max()
                .unwrap();
            assert_eq!(p.push(at, v, w), want);
            assert!(p.samples.len() <= 21);
        }
    }

    /// How many one-sample bursts, one at each sampling tick of a scrape
    /// interval, no scrape sees: the sampler every `interval` with the
    /// default options' tick, a scrape every `scrape` reading the peak as
    /// published up to `lag` ticks earlier (the snapshot catching up),
    /// the lag varying from scrape to scrape.
    fn missed_bursts(window: Duration, scrape: Duration, max_lag: u32) -> usize {
        let tick = ListenQueueOptions::default().interval;
        let per_scrape = (scrape.as_millis() / tick.as_millis()) as u32;
        let t0 = Instant::now();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut lag = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % (max_lag as u64 + 1)) as u32
        };
        let mut missed = 0;
        // The burst lies between the scrapes at 2 and 3 intervals, after
        // the window filled; each position is tried with 8 draws of the
        // four scrapes' lags.
        for burst in 2 * per_scrape + 1..=3 * per_scrape {
            for _ in 0..8 {
                let mut w = PeakWindow::default();
                let mut peaks = Vec::with_capacity(5 * per_scrape as usize);
                for i in 0..5 * per_scrape {
                    let v = u32::from(i == burst);
                    peaks.push(w.push(t0 + tick * i, v, window));
                }
                let seen = (1..5)
                    .map(|k| k * per_scrape - lag())
                    .any(|read| peaks[read as usize] == 1);
                missed += usize::from(!seen);
            }
        }
        missed
    }

    #[test]
    fn a_burst_anywhere_between_two_scrapes_is_seen() {
        let scrape = Duration::from_secs(15);
        // The default window: every burst seen, even with the snapshot a
        // second behind the last sample.
        assert_eq!(
            missed_bursts(ListenQueueOptions::default().peak_window, scrape, 10),
            0
        );
        // The window the scrape interval exactly: seen when the snapshot
        // keeps pace.
        assert_eq!(missed_bursts(scrape, scrape, 0), 0);
        // The old 5 s window missed two bursts of every three (8 draws for
        // each of the 150 positions).
        assert_eq!(missed_bursts(Duration::from_secs(5), scrape, 0), 100 * 8);
    }

    fn index(listeners: Vec<PoolListener>) -> Arc<Published<PoolIndex>> {
        let idx = Published::new(PoolIndex::default());
        idx.publish(PoolIndex {
            pools: vec![PoolMembers {
                name: Arc::from("api"),
                master: Some(Process {
                    pid: std::process::id() as i32,
                    started: std::time::SystemTime::now(),
                    slot: None,
                }),
                workers: Vec::new(),
                listeners,
            }],
        });
        idx
    }

    #[test]
    fn a_filling_unix_socket_is_sampled_by_inode() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sock");
        // Backlog 4, never accepted.
        let sock =
            socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
        sock.bind(&socket2::SockAddr::unix(&path).unwrap()).unwrap();
        sock.listen(4).unwrap();
        let inode = {
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            assert_eq!(unsafe { libc::fstat(sock.as_raw_fd(), &mut st) }, 0);
            st.st_ino
        };
        let name = format!("unix:{}", path.display());
        let sinks = Sinks::new(16);
        let idx = index(vec![PoolListener {
            name: name.clone(),
            inode,
            tcp: None,
        }]);
        let mut s =
            ListenQueueSampler::new(ListenQueueOptions::default(), sinks.clone(), idx.clone());
        let t0 = Instant::now();
        assert_eq!(s.sample(t0), (0, true));
        let q = s.published().get();
        assert_eq!(
            q.queues,
            [QueueState {
                pool: Arc::from("api"),
                listener: Arc::from(name.as_str()),
                length: 0,
                limit: 4,
                peak: 0
            }]
        );
        let clients: Vec<UnixStream> = (0..3)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        s.sample(t0 + Duration::from_millis(100));
        assert_eq!(
            (
                s.published().get().queues[0].length,
                s.published().get().queues[0].peak
            ),
            (3, 3)
        );
        drop(clients);
        // Closed client connections stay queued until accepted: accept them.
        let _listener = UnixListener::from(std::os::fd::OwnedFd::from(sock));
        _listener.set_nonblocking(true).unwrap();
        while _listener.accept().is_ok() {}
        s.sample(t0 + Duration::from_millis(200));
        let q = &s.published().get().queues[0];
        assert_eq!((q.length, q.peak), (0, 3), "the peak outlives the burst");
        s.sample(t0 + Duration::from_secs(15));
        assert_eq!(s.published().get().queues[0].peak, 3, "15 s on: still in");
        s.sample(t0 + Duration::from_secs(17));
        assert_eq!(s.published().get().queues[0].peak, 0, "past the window");
        assert_eq!(sinks.health.get(SOURCE).map(|h| h.up), Some(true));
        // Nothing changes, nothing is published.
        assert_eq!(s.sample(t0 + Duration::from_secs(18)), (0, false));
        // The socket closes: no series for it.
        drop(_listener);
        s.sample(t0 + Duration::from_secs(19));
        assert!(s.published().get().queues.is_empty());
    }
}
