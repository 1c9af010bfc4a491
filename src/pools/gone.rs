//! How long a discovered pool stays known after its master is gone.
//!
//! A configured pool whose master is gone is exported as down for as long
//! as it is configured. A discovered one has no config to say it still
//! matters: it stays known, as down (`badgateway_pool_up` 0, which the
//! pool-down alert reads), for [`KEEP_GONE`], and is then forgotten, so
//! that a pool taken away on purpose stops paging and frees its place
//! among `max_discovered`. A master that comes back within that time finds
//! its pool where it left it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a discovered pool whose master is gone stays exported as down.
pub const KEEP_GONE: Duration = Duration::from_secs(15 * 60);

/// Since when each discovered pool has been down. Bounded by the
/// discovered pools (`max_discovered`).
#[derive(Debug, Default)]
pub struct GoneSince {
    down: BTreeMap<Arc<str>, Instant>,
}

impl GoneSince {
    /// With the discovered pools and whether each is up at `now`: those
    /// down for longer than `keep`, to be forgotten. A pool not listed is
    /// forgotten here too.
    pub fn expired<'a>(
        &mut self,
        pools: impl Iterator<Item = (&'a Arc<str>, bool)>,
        now: Instant,
        keep: Duration,
    ) -> Vec<Arc<str>> {
        let mut seen = BTreeMap::new();
        let mut out = Vec::new();
        for (name, up) in pools {
            if up {
                continue;
            }
            let since = *self.down.get(name).unwrap_or(&now);
            if now.duration_since(since) > keep {
                out.push(name.clone());
            } else {
                seen.insert(name.clone(), since);
            }
        }
        self.down = seen;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gone_pool_is_kept_as_down_for_a_while_then_forgotten() {
        let (api, web): (Arc<str>, Arc<str>) = ("api".into(), "web".into());
        let keep = Duration::from_secs(900);
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut g = GoneSince::default();
        // Both up: nothing to forget.
        assert!(g
            .expired([(&api, true), (&web, true)].into_iter(), at(0), keep)
            .is_empty());
        // api goes at 10 s and stays gone.
        assert!(g
            .expired([(&api, false), (&web, true)].into_iter(), at(10), keep)
            .is_empty());
        assert!(g
            .expired([(&api, false), (&web, true)].into_iter(), at(910), keep)
            .is_empty());
        assert_eq!(
            g.expired([(&api, false), (&web, true)].into_iter(), at(911), keep),
            vec![api.clone()]
        );
        // web goes, comes back before the time is up, goes again: its time
        // starts again.
        g.expired([(&web, false)].into_iter(), at(1000), keep);
        g.expired([(&web, true)].into_iter(), at(1800), keep);
        assert!(g
            .expired([(&web, false)].into_iter(), at(1900), keep)
            .is_empty());
        assert!(g
            .expired([(&web, false)].into_iter(), at(2700), keep)
            .is_empty());
        assert_eq!(
            g.expired([(&web, false)].into_iter(), at(2801), keep),
            vec![web.clone()]
        );
        assert!(g.down.is_empty());
    }
}
