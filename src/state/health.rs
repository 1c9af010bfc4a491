//! One way of degrading for every source: `badgateway_source_up{source}`,
//! `badgateway_source_ever_up{source}` (whether it has been up since the
//! exporter started, which tells a source this host does not offer from
//! one that broke), an error counter, a log line when a source goes down and one when it
//! comes back. A source that keeps failing logs nothing more; one that
//! flaps logs at most once per [`LOG_EVERY`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The least time between two warnings about the same source.
pub const LOG_EVERY: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStatus {
    /// Whether the last try read the source.
    pub up: bool,
    /// Whether any try has read it since the exporter started: a source
    /// that was never up is not available on this host (Gunicorn before
    /// 25.1 has no control socket, a kernel without PSI has no pressure
    /// file), one that was up and is down now has broken.
    pub ever_up: bool,
    /// Failed tries since the exporter started.
    pub errors: u64,
    /// The last failure, for the status page.
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct Entry {
    status: SourceStatus,
    last_warned: Option<Instant>,
    /// Whether the last down was logged, so its recovery is logged too.
    warned_down: bool,
}

/// The `source` label of a thing read per pool or per log: `KIND/NAME`,
/// as `pool/web`, `smaps/web`, `control/web`, `app_log/web` or
/// `nginx/main/access`. Each source names its kinds once, as constants;
/// the sources read once per host have a plain name (`kmsg`, `vmstat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLabel(pub &'static str);

impl SourceLabel {
    /// The label of `name`'s.
    pub fn of(self, name: impl std::fmt::Display) -> String {
        format!("{}/{name}", self.0)
    }
}

/// The health of every source, by `source` label value. Bounded by the
/// configuration: sources are the kernel files, each nginx log and each pool.
#[derive(Debug, Default)]
pub struct Health {
    sources: Mutex<BTreeMap<String, Entry>>,
}

impl Health {
    pub fn new() -> Health {
        Health::default()
    }

    /// Record one try of `source`.
    pub fn report(&self, source: &str, result: Result<(), String>) {
        let mut all = super::lock(&self.sources);
        let e = match all.get_mut(source) {
            Some(e) => e,
            None => all.entry(source.to_string()).or_insert(Entry {
                status: SourceStatus {
                    up: true,
                    ever_up: false,
                    errors: 0,
                    last_error: None,
                },
                last_warned: None,
                warned_down: false,
            }),
        };
        let was_up = e.status.up;
        match result {
            Ok(()) => {
                if !was_up && e.warned_down {
                    tracing::info!(source, "source readable again");
                }
                e.status.up = true;
                e.status.ever_up = true;
                e.warned_down = false;
            }
            Err(err) => {
                e.status.errors += 1;
                if was_up {
                    let quiet = e.last_warned.is_none_or(|t| t.elapsed() >= LOG_EVERY);
                    if quiet {
                        tracing::warn!(source, error = %err, "source cannot be read; exporting badgateway_source_up 0");
                        e.last_warned = Some(Instant::now());
                    }
                    e.warned_down = quiet;
                }
                e.status.up = false;
                e.status.last_error = Some(err);
            }
        }
    }

    /// Stop exporting `source`: it was removed from the configuration.
    pub fn forget(&self, source: &str) {
        super::lock(&self.sources).remove(source);
    }

    /// Every source tried so far.
    pub fn all(&self) -> BTreeMap<String, SourceStatus> {
        super::lock(&self.sources)
            .iter()
            .map(|(k, e)| (k.clone(), e.status.clone()))
            .collect()
    }

    pub fn get(&self, source: &str) -> Option<SourceStatus> {
        super::lock(&self.sources)
            .get(source)
            .map(|e| e.status.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_errors_and_tracks_the_last_try() {
        let h = Health::new();
        h.report("kmsg", Err("opening /dev/kmsg: denied".into()));
        h.report("kmsg", Err("opening /dev/kmsg: denied".into()));
        h.report("vmstat", Ok(()));
        let kmsg = h.get("kmsg").unwrap();
        assert!(!kmsg.up && !kmsg.ever_up);
        assert_eq!(kmsg.errors, 2);
        assert_eq!(
            kmsg.last_error.as_deref(),
            Some("opening /dev/kmsg: denied")
        );
        h.report("kmsg", Ok(()));
        let kmsg = h.get("kmsg").unwrap();
        assert!(kmsg.up && kmsg.ever_up && kmsg.errors == 2);
        // Down again: broken, not unavailable.
        h.report("kmsg", Err("read: EIO".into()));
        let kmsg = h.get("kmsg").unwrap();
        assert!(!kmsg.up && kmsg.ever_up);
        h.report("kmsg", Ok(()));
        assert_eq!(
            h.all().keys().cloned().collect::<Vec<_>>(),
            ["kmsg", "vmstat"]
        );
        h.forget("kmsg");
        assert_eq!(h.all().keys().cloned().collect::<Vec<_>>(), ["vmstat"]);
    }
}
