//! What the rules decided: why workers ended.

use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;

use super::{define_metrics, family};
use crate::rules::ExitCounts;
use crate::state::timeline::ExitReason;

define_metrics! { METRICS;
    WORKER_EXITS: Counter, "badgateway_worker_exits", ["pool", "reason"], "Workers that left the pool since the exporter started, by why: max_requests, oom_killed, timeout, signal, exit_error, reload, shutdown or unknown.";
}

/// `pools`: every known pool, so that each has every reason from the start.
pub fn encode<'p>(
    exits: &'p ExitCounts,
    pools: impl Iterator<Item = &'p str>,
    enc: &mut DescriptorEncoder,
) -> fmt::Result {
    let mut names: Vec<&str> = pools
        .chain(exits.by_pool.keys().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
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
