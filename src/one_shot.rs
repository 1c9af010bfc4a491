//! The one-shot run of `diagnose`: the sources stepped through the same
//! steps the server's driver runs, once or until they have read their
//! logs to the end, from the start of the logs and the kernel's ring
//! buffer; then the judge over all of it, and the report over what they
//! published.

use std::time::{Duration, SystemTime};

use crate::diagnose::{OneShotGrowth, Report, Window};
use crate::sources::Sources;
use crate::state::source::step_once;

/// Events a one-shot diagnosis keeps: every 5xx of a large log, not only
/// the last seconds of a storm.
pub const TIMELINE_CAP: usize = 65_536;

/// Polls of a log a one-shot run makes at most, 32 MiB each: a writer
/// faster than the reading cannot keep it going.
const MAX_POLLS: usize = 4096;

/// Step every source in `s` (built with [`TIMELINE_CAP`], the logs read
/// from their start), judge what they found, and report on the `since`
/// before now. `read_kmsg`: whether the config reads the kernel log.
pub fn run(s: &mut Sources, read_kmsg: bool, since: Duration) -> Report {
    let sinks = s.inputs.sinks.clone();
    // PSS comes from the smaps sampler (its first step is a full pass):
    // read it, then the pools again.
    step_once(&sinks, &mut s.pools);
    step_once(&sinks, &mut s.smaps);
    step_once(&sinks, &mut s.pools);
    step_once(&sinks, &mut s.counters);
    if read_kmsg {
        // An unreadable kernel log is in the report, not an error.
        let _ = s.kmsg.replay();
    }
    // Each poll reads at most 32 MiB of a file: read on to the end.
    for _ in 0..MAX_POLLS {
        if !step_once(&sinks, &mut s.app_logs).1.changed {
            break;
        }
    }
    // How fast the workers grow, without a history: the pools' workers
    // and OOM victims, with the requests nginx sent each pool meanwhile.
    let now = SystemTime::now();
    let evidence = sinks
        .timeline
        .read(|tl| OneShotGrowth::gather(&s.inputs.pools.get(), tl, now));
    for _ in 0..MAX_POLLS {
        let read = step_once(&sinks, &mut s.nginx).1.changed;
        let lag: u64 = s
            .inputs
            .nginx
            .get()
            .logs
            .values()
            .map(|l| l.lag_bytes)
            .sum();
        if !read || lag == 0 {
            break;
        }
    }
    s.judge.finish();
    let growth = evidence.history(&s.inputs.nginx.get());
    let window = Window {
        from: now.checked_sub(since).unwrap_or(SystemTime::UNIX_EPOCH),
        to: now,
    };
    s.inputs.diagnose(Some(&growth), window)
}
