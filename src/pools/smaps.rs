//! PSS and USS of the pools' processes, from /proc/PID/smaps_rollup, on a
//! thread of their own.
//!
//! Reading smaps_rollup walks the process's page tables under its mmap lock:
//! about 0.4-1.5 ms of kernel time for a 20 MB Gunicorn worker, 30 ms or more
//! for a pool of 64. So it is done apart from the pool cycle, every
//! `--collector.smaps.interval`, behind a size guard, and as soon as a new
//! process appears; the pool cycle takes the last figures from here.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::proc::{ProcId, ProcRoot, ReadFailure};
use super::view::{PoolsView, ReadErrors};
use crate::state::health::SourceLabel;
use crate::state::{Counted, Published, Sinks, Source, Stepped};

/// PSS and USS by process, and what could not be read, by pool.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SmapsView {
    /// (PSS, USS, swap) in bytes.
    pub memory: HashMap<ProcId, (u64, u64, u64)>,
    /// Reads skipped by the size guard, by pool.
    pub skipped: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, ReadErrors>,
}

#[derive(Debug, Clone)]
pub struct SmapsOptions {
    pub procfs: PathBuf,
    pub interval: Duration,
    /// Skip a process whose RSS is above this: the page walk is
    /// proportional to RSS and holds the mmap lock meanwhile.
    pub max_rss: u64,
}

/// The health `source` label of a pool's smaps reads: `smaps/NAME`.
pub const HEALTH: SourceLabel = SourceLabel("smaps");

/// How often new processes are looked for between full passes.
const NEW_PROCESS_CHECK: Duration = Duration::from_secs(1);

pub struct SmapsSampler {
    root: ProcRoot,
    opts: SmapsOptions,
    sinks: Sinks,
    pools: Arc<Published<PoolsView>>,
    view: SmapsView,
    out: Arc<Published<SmapsView>>,
    /// When the last full pass started.
    last_full: Option<Instant>,
}

impl SmapsSampler {
    /// `out` is where the pool source reads the figures.
    pub fn new(
        opts: SmapsOptions,
        sinks: Sinks,
        pools: Arc<Published<PoolsView>>,
        out: Arc<Published<SmapsView>>,
    ) -> SmapsSampler {
        SmapsSampler {
            root: ProcRoot::new(&opts.procfs),
            opts,
            sinks,
            pools,
            view: SmapsView::default(),
            out,
            last_full: None,
        }
    }

    /// Read the pools' processes: all of them (`full`), or those not read
    /// yet. Returns the number that could not be read.
    pub fn sample(&mut self, full: bool) -> u64 {
        let pools = self.pools.get();
        let mut errors = 0;
        let mut read_any = false;
        let mut live = Vec::new();
        for p in &pools.pools {
            let master = p.master.map(|m| (m, p.master_memory.rss));
            let procs = master
                .into_iter()
                .chain(p.workers.iter().map(|w| (w.id, w.memory.rss)));
            let mut failed = None;
            for (id, rss) in procs {
                live.push(id);
                if !full && self.view.memory.contains_key(&id) {
                    continue;
                }
                read_any = true;
                if rss > self.opts.max_rss {
                    *self.view.skipped.entry(p.name.clone()).or_default() += 1;
                    self.view.memory.remove(&id);
                    continue;
                }
                match self.root.smaps_memory(id.pid) {
                    Ok(s) => {
                        self.view
                            .memory
                            .insert(id, (s.pss_bytes, s.uss_bytes, s.swap_bytes));
                    }
                    Err(f) => {
                        // Unreadable (not root, not the same user): no PSS
                        // rather than a stale or zero one.
                        self.view.memory.remove(&id);
                        let e = self.view.errors.entry(p.name.clone()).or_default();
                        match f {
                            ReadFailure::Gone => continue,
                            ReadFailure::PermissionDenied => e.permission_denied += 1,
                            ReadFailure::Other => e.other += 1,
                        }
                        errors += 1;
                        failed.get_or_insert(f);
                    }
                }
            }
            if full || failed.is_some() {
                let r = match failed {
                    None => Ok(()),
                    Some(f) => Err(format!(
                        "smaps_rollup of the pool's processes: {}",
                        match f {
                            ReadFailure::PermissionDenied =>
                                "permission denied (needs CAP_SYS_PTRACE, or the pool's user)",
                            _ => "read error",
                        }
                    )),
                };
                self.sinks.health.report(&HEALTH.of(&p.name), r);
            }
        }
        if full {
            self.view.memory.retain(|id, _| live.contains(id));
        }
        if read_any || full {
            self.out.publish(self.view.clone());
        }
        errors
    }
}

/// A full pass every interval, counted as the `smaps` collector's cycle;
/// a quick pass for new processes every second, its CPU counted alone.
impl Source for SmapsSampler {
    fn collector(&self) -> &'static str {
        "smaps"
    }

    fn start(&mut self) {
        self.pools.wait_first(Duration::from_secs(30));
    }

    fn step(&mut self, now: Instant) -> Stepped {
        let full = self
            .last_full
            .is_none_or(|t| now.duration_since(t) >= self.opts.interval);
        let errors = self.sample(full);
        if full {
            self.last_full = Some(now);
        }
        Stepped {
            errors,
            changed: false,
            counted: if full {
                Counted::Cycle
            } else {
                Counted::CpuOnly
            },
        }
    }

    fn wait(&mut self, _started: Instant) {
        std::thread::sleep(NEW_PROCESS_CHECK.min(self.opts.interval));
    }
}
