//! What the rules decided: why workers ended, why clients got 502s and
//! 504s.

use std::fmt;

use super::Encoder;

use super::{define_metrics, family};
use crate::rules::{ExitCounts, FailureCounts, FAILED_STATUSES};
use crate::state::timeline::{ExitReason, FailureCause};

define_metrics! { METRICS;
    FAILED_REQUESTS: Counter, "badgateway_failed_requests", ["pool", "status", "cause"], "Client-facing 502s and 504s, each counted once with its cause: worker_oom_killed, worker_timeout, worker_crashed, worker_recycled, pool_down, pool_stopped_after_oom, backlog_full, fd_exhausted, upstream_timeout, upstream_closed, upstream_sent_5xx or other; pool is - when the upstream maps to no pool.";
    WORKER_EXITS: Counter, "badgateway_worker_exits", ["pool", "reason"], "Workers that left the pool since the exporter started, by why: max_requests, oom_killed, timeout, signal, exit_error, reload, shutdown or unknown.";
}

/// `pools`: every known pool, so that each has every reason and cause
/// from the start.
pub fn encode<'p>(
    exits: &'p ExitCounts,
    failures: &'p FailureCounts,
    pools: impl Iterator<Item = &'p str>,
    enc: &mut Encoder,
) -> fmt::Result {
    let mut names: Vec<&str> = pools.collect();
    let mut failing = names.clone();
    names.extend(exits.by_pool.keys().map(String::as_str));
    names.sort_unstable();
    names.dedup();
    failing.extend(failures.by_pool.keys().map(String::as_str));
    failing.sort_unstable();
    failing.dedup();
    family(enc, &FAILED_REQUESTS, |f| {
        failing.iter().try_for_each(|pool| {
            let counts = failures.by_pool.get(*pool);
            FAILED_STATUSES.iter().try_for_each(|status| {
                let s = status.to_string();
                FailureCause::ALL.iter().try_for_each(|c| {
                    let n = counts
                        .and_then(|m| m.get(&(*status, *c)))
                        .copied()
                        .unwrap_or(0);
                    f.counter(&[pool, &s, c.as_str()], n)
                })
            })
        })
    })?;
    family(enc, &WORKER_EXITS, |f| {
        names.iter().try_for_each(|pool| {
            let counts = exits.by_pool.get(*pool);
            ExitReason::ALL.iter().try_for_each(|r| {
                let n = counts.and_then(|c| c.get(r)).copied().unwrap_or(0);
                f.counter(&[pool, r.as_str()], n)
            })
        })
    })
}
