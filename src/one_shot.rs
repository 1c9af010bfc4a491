//! The one-shot run of `diagnose`: the sources' entries in the table,
//! stepped by collector name, each caught up once ([`Source::catch_up`]:
//! the server's own step, or steps until a log is read to its end, or the
//! kernel's ring buffer replayed), from the start of the logs; then the
//! judge over all of it, and the report over what they published.
//!
//! [`Source::catch_up`]: crate::state::Source::catch_up
use std::time::{Duration, SystemTime};

use crate::diagnose::{OneShotGrowth, Report, Window};
use crate::sources::Sources;
use crate::state::source::step_until;

/// Events a one-shot diagnosis keeps: every 5xx of a large log, not only
/// the last seconds of a storm.
pub const TIMELINE_CAP: usize = 65_536;

/// The sources a one-shot run catches up, by collector name, in this
/// order: PSS comes from the smaps sampler (its first step is a full
/// pass), so the pools are read again after it. The listen queues, the
/// exporter's own usage and the pools' status interfaces are not stepped:
/// the report has never read them, and a step of one could add its
/// health (and Puma's check-in ages) to the report.
const BEFORE_THE_LOGS: [&str; 4] = ["pools", "smaps", "pools", "kernel"];

/// Step every source in `s` (built with [`TIMELINE_CAP`], the logs read
/// from their start), judge what they found, and report on the `since`
/// before now. `read_kmsg`: whether the config reads the kernel log.
pub fn run(s: &mut Sources, read_kmsg: bool, since: Duration) -> Report {
    let sinks = s.inputs.sinks.clone();
    let t = &mut s.table;
    for name in BEFORE_THE_LOGS {
        t.get(name).catch_up(&sinks);
    }
    if read_kmsg {
        // Its replay: an unreadable kernel log is in the report.
        t.get("kmsg").catch_up(&sinks);
    }
    t.get("app_log").catch_up(&sinks);
    // How fast the workers grow, without a history: the pools' workers
    // and OOM victims, with the requests nginx sent each pool meanwhile.
    let now = SystemTime::now();
    let evidence = sinks
        .timeline
        .read(|tl| OneShotGrowth::gather(&s.inputs.pools.get(), tl, now));
    let nginx = t.get("nginx");
    // To the end of each log: until a poll reads nothing or nginx
    // publishes that it lags no more.
    let lag = || -> u64 {
        s.inputs
            .nginx
            .get()
            .logs
            .values()
            .map(|l| l.lag_bytes)
            .sum()
    };
    step_until(&sinks, &mut *nginx.source, |step| {
        !step.changed || lag() == 0
    });
    t.get("rules").catch_up(&sinks);
    let growth = evidence.history(&s.inputs.nginx.get());
    let window = Window {
        from: now.checked_sub(since).unwrap_or(SystemTime::UNIX_EPOCH),
        to: now,
    };
    s.inputs.diagnose(Some(&growth), window)
}
