//! The nginx source: access-log status counts and error-log failure
//! causes, from one or more configured nginx instances.
//!
//! Each poll reads everything new from every log through a rotation-safe
//! follower; lines are parsed in place and counted into bounded tables
//! ([`log_counters`]). Each 5xx answered to a client and each upstream
//! failure also goes on the timeline, tied to the pool that serves its
//! upstream.
//!
//! - [`access`]: the `log_format` compiler and line parser;
//! - [`error_log`]: the error-line parser and the failure reason table;
//! - [`log_counters`]: the bounded tables one nginx's lines are counted in;
//! - [`request_history`]: a pool's bounded history of request times, kept
//!   when [`NginxOptions::request_history`] asks for it.

pub mod access;
pub mod error_log;
pub mod log_counters;
pub mod request_history;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::NginxConfig;
use crate::follow::{FollowConfig, Follower, StartAt};
use crate::state::health::SourceLabel;
use crate::state::pool_index::serves;
use crate::state::source::pace;
use crate::state::timeline::{EventKind, Request, ServerError, UpstreamFailure};
use crate::state::{PoolIndex, Published, Sinks, Source, Stepped};
use access::{AccessFormat, Escape};
use log_counters::LogCounters;
pub use request_history::RequestHistory;

/// How many 5xx a log's poll holds before it puts them on the timeline.
const ERRORS_PER_PUSH: usize = 64;

/// Access lines can be long (query strings); error lines nginx cuts at 2048.
pub const ACCESS_MAX_LINE: usize = 16 * 1024;
pub const ERROR_MAX_LINE: usize = 4 * 1024;

/// What one configured nginx has produced so far.
#[derive(Debug, Clone)]
pub struct LogState {
    pub counters: LogCounters,
    pub rotations: u64,
    pub lag_bytes: u64,
    pub read_errors: u64,
    pub has_access: bool,
    pub has_error: bool,
    /// (upstream, pool) for each upstream label value a pool serves.
    pub upstream_pools: Vec<(String, String)>,
    /// Per pool of the pool index, the times of the requests this nginx
    /// sent it, by each line's own time; empty unless
    /// [`NginxOptions::request_history`].
    pub request_history: BTreeMap<Arc<str>, RequestHistory>,
}

/// What the nginx source publishes, by configured name.
#[derive(Debug, Default, Clone)]
pub struct NginxView {
    pub logs: BTreeMap<String, LogState>,
}

#[derive(Debug, Clone)]
pub struct NginxOptions {
    pub logs: Vec<NginxConfig>,
    /// Upper bound on distinct `upstream` label values per log.
    pub max_upstreams: usize,
    /// Where to start in the files that exist at startup.
    pub start: StartAt,
    pub interval: Duration,
    /// Keep each log's [`LogState::request_history`]: every access line's
    /// time is then read, not one in 256. For a one-shot diagnosis, which
    /// weighs each worker's memory against the requests its pool got
    /// while it lived.
    pub request_history: bool,
}

/// The health `source` label of one of a configured nginx's files:
/// `nginx/NAME/access` or `nginx/NAME/error`.
pub const HEALTH: SourceLabel = SourceLabel("nginx");

/// Compile an entry's `log_format`: a built-in name, a full
/// `log_format NAME [escape=..] '...';` directive, or the bare format.
pub fn compile_format(n: &NginxConfig) -> Result<AccessFormat, String> {
    let escape = match n.escape.as_deref() {
        None | Some("default") => None,
        Some("json") => Some(Escape::Json),
        Some("none") => Some(Escape::None),
        Some(o) => return Err(format!("escape {o:?}: expected default, json or none")),
    };
    let f = n.log_format.trim();
    let r = if f == "combined" || f == "main" {
        AccessFormat::builtin(f)
    } else if f.starts_with("log_format") {
        access::parse_log_format_directive(f)
            .and_then(|(_, e, body)| AccessFormat::compile(&body, escape.unwrap_or(e)))
    } else {
        AccessFormat::compile(f, escape.unwrap_or(Escape::Default))
    };
    let fmt = r.map_err(|e| format!("log_format: {e}"))?;
    if !fmt.has_field("status") {
        return Err("log_format has no $status: nothing to count".to_string());
    }
    Ok(fmt)
}

struct LogSource {
    name: Arc<str>,
    format: Option<AccessFormat>,
    access: Option<Follower>,
    error: Option<Follower>,
    state: LogState,
}

impl LogSource {
    fn new(n: &NginxConfig, max_upstreams: usize, start: StartAt) -> Result<LogSource, String> {
        let format = match n.access_log {
            Some(_) => Some(compile_format(n)?),
            None => None,
        };
        let follow = |p: &std::path::PathBuf, max| {
            Follower::new(
                p.clone(),
                FollowConfig {
                    max_line_bytes: max,
                    start,
                    rotate_grace: Duration::from_secs(5),
                },
            )
        };
        Ok(LogSource {
            name: Arc::from(n.name.as_str()),
            format,
            access: n.access_log.as_ref().map(|p| follow(p, ACCESS_MAX_LINE)),
            error: n.error_log.as_ref().map(|p| follow(p, ERROR_MAX_LINE)),
            state: LogState {
                counters: LogCounters::new(max_upstreams),
                rotations: 0,
                lag_bytes: 0,
                read_errors: 0,
                has_access: n.access_log.is_some(),
                has_error: n.error_log.is_some(),
                upstream_pools: Vec::new(),
                request_history: BTreeMap::new(),
            },
        })
    }

    /// Read everything new from both logs. Returns the number of files
    /// that could not be read, and whether anything changed.
    fn poll(
        &mut self,
        sinks: &Sinks,
        pools: &PoolIndex,
        last: &LastListeners,
        request_history: bool,
    ) -> (u64, bool) {
        let before = (
            self.state.counters.access_lines,
            self.state.counters.error_lines,
        );
        let counters = &mut self.state.counters;
        let mut history = request_history.then_some(&mut self.state.request_history);
        let log = &self.name;
        let pool_of = |upstream: Option<&str>| upstream.and_then(|u| last.pool_of(pools, u));
        let mut rotations = 0;
        let mut lag = 0;
        let mut errors = 0;
        if let (Some(f), Some(fmt)) = (self.access.as_mut(), self.format.as_ref()) {
            let read_at = SystemTime::now();
            // The 5xx of a poll go onto the timeline a few at a time, each
            // few under one lock.
            let mut errors_read = Vec::with_capacity(ERRORS_PER_PUSH);
            let r = f.poll(&mut |l| {
                let mut fields = access::AccessFields::default();
                let Some(c) = counters.access_line(fmt, l.bytes, l.truncated, &mut fields) else {
                    return;
                };
                if let Some(h) = history.as_deref_mut() {
                    record_request(h, &c, &fields, |u| last.pool_of(pools, u));
                }
                // The line's own time is read for the span of the counts
                // (now and then) and for each 5xx; else the time it was read.
                let first = counters.first_time.is_none();
                let sampled = first || c.status >= 500 || counters.access_lines % 256 == 0;
                if !sampled {
                    return;
                }
                let at = line_time(&fields).unwrap_or(read_at);
                if first {
                    counters.first_time = Some(at);
                }
                counters.last_time = Some(at);
                if c.status < 500 {
                    return;
                }
                let upstream = c
                    .upstream
                    .map(|(u, id)| counters.upstreams.shared_name(id, u));
                let pool = pool_of(upstream.as_deref());
                let e = server_error(log, &c, &fields, upstream);
                errors_read.push((at, pool, EventKind::ServerError(e)));
                if errors_read.len() == ERRORS_PER_PUSH {
                    sinks.timeline.push_all(errors_read.drain(..));
                }
            });
            sinks.timeline.push_all(errors_read);
            errors += report(sinks, log, "access", f.path(), r.map(|_| ()));
            rotations += f.totals().rotations + f.totals().truncations;
            lag += f.lag_bytes();
        }
        let counters = &mut self.state.counters;
        if let Some(f) = self.error.as_mut() {
            let r = f.poll(&mut |l| {
                let text = String::from_utf8_lossy(l.bytes);
                let Some((line, failure)) = counters.error_line(&text, l.truncated) else {
                    return;
                };
                let upstream = line.upstream.map(error_log::upstream_server);
                let e = UpstreamFailure {
                    log: log.clone(),
                    reason: failure.reason,
                    phase: failure.phase,
                    status: failure.status,
                    upstream: upstream.map(Into::into),
                    conn: line.conn,
                    request: line
                        .request
                        .and_then(|r| access::parse_request(r.as_bytes()))
                        .map(|(m, p)| Request::new(m, p)),
                    errno: line.errno,
                };
                let at = local_time(line.time).unwrap_or_else(SystemTime::now);
                sinks
                    .timeline
                    .push(at, pool_of(upstream), EventKind::UpstreamFailure(e));
            });
            errors += report(sinks, log, "error", f.path(), r.map(|_| ()));
            rotations += f.totals().rotations + f.totals().truncations;
            lag += f.lag_bytes();
        }
        // Bounded by the pool index: a pool gone from it is forgotten, and
        // every pool once the options no longer ask for the history.
        self.state
            .request_history
            .retain(|pool, _| request_history && pools.get(pool).is_some());
        self.state.rotations = rotations;
        self.state.lag_bytes = lag;
        self.state.read_errors += errors;
        self.state.upstream_pools = self
            .state
            .counters
            .upstreams
            .names()
            .flat_map(|(_, up)| {
                pools
                    .serving(up)
                    .map(move |p| (up.to_string(), p.to_string()))
            })
            .collect();
        let changed = before
            != (
                self.state.counters.access_lines,
                self.state.counters.error_lines,
            );
        (errors, changed)
    }
}

/// Record one access line's request in the history of its pool, at the
/// line's own time.
fn record_request(
    history: &mut BTreeMap<Arc<str>, RequestHistory>,
    c: &log_counters::Counted<'_>,
    fields: &access::AccessFields<'_>,
    pool_of: impl Fn(&str) -> Option<Arc<str>>,
) {
    let (Some(at), Some((upstream, _))) = (line_time(fields), c.upstream) else {
        return;
    };
    let Some(pool) = std::str::from_utf8(upstream).ok().and_then(pool_of) else {
        return;
    };
    history.entry(pool).or_default().push(at);
}

/// Report one poll of a log file; returns 1 if it failed.
fn report(sinks: &Sinks, log: &str, file: &str, path: &Path, r: std::io::Result<()>) -> u64 {
    let r = r.map_err(|e| format!("reading {}: {e}", path.display()));
    let failed = r.is_err() as u64;
    sinks
        .health
        .report(&HEALTH.of(format_args!("{log}/{file}")), r);
    failed
}

/// The timeline event of a 5xx access line of log `log`: its status, its
/// request and connection when the format has them, and the upstream of
/// its last attempt.
fn server_error(
    log: &Arc<str>,
    c: &log_counters::Counted<'_>,
    fields: &access::AccessFields<'_>,
    upstream: Option<Arc<str>>,
) -> ServerError {
    ServerError {
        log: log.clone(),
        status: c.status,
        upstream,
        conn: fields.connection().and_then(access::parse_connection),
        request: fields
            .request()
            .and_then(access::parse_request)
            .map(|(m, p)| Request::new(m, p)),
        backend_sent: c.backend_sent,
    }
}

/// When an access line was written, from the best time field its format
/// has: `$msec` (milliseconds), `$time_iso8601` or `$time_local` (seconds).
fn line_time(f: &access::AccessFields<'_>) -> Option<SystemTime> {
    if let Some(ms) = f.msec().and_then(access::parse_msec) {
        return Some(SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
    }
    let secs = f
        .time_iso8601()
        .and_then(access::parse_time_iso8601)
        .or_else(|| f.time_local().and_then(access::parse_time_local))?;
    u64::try_from(secs)
        .ok()
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

/// A time as nginx's error log writes it (`2026/11/23 04:20:01`, the
/// host's local time, without an offset), as a wall-clock time.
fn local_time(t: &str) -> Option<SystemTime> {
    let (date, time) = t.split_once(' ')?;
    let mut d = date.split('/').map(|x| x.parse::<i32>().ok());
    let mut h = time.split(':').map(|x| x.parse::<i32>().ok());
    // SAFETY: an all-zero tm is a valid value to fill in.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = d.next()?? - 1900;
    tm.tm_mon = d.next()?? - 1;
    tm.tm_mday = d.next()??;
    tm.tm_hour = h.next()??;
    tm.tm_min = h.next()??;
    tm.tm_sec = h.next()??;
    tm.tm_isdst = -1;
    // SAFETY: mktime reads and normalises the tm we own; it consults the
    // process's time zone like nginx did when it wrote the line.
    let secs = unsafe { libc::mktime(&mut tm) };
    (secs >= 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64))
}

/// Where each pool last listened. The master of a pool that is down
/// listens nowhere, yet the 502s nginx writes for its socket are that
/// pool's: an upstream no live master serves keeps the pool that last
/// listened there. Bounded by the pools and their listeners.
#[derive(Debug, Default)]
struct LastListeners {
    pools: Vec<(Arc<str>, Vec<String>)>,
}

impl LastListeners {
    /// Remember where each pool of the index listens now; a pool that
    /// listens nowhere keeps its last listeners, a pool gone from the index
    /// is forgotten.
    fn update(&mut self, index: &PoolIndex) {
        self.pools
            .retain(|(name, _)| index.pools.iter().any(|p| p.name == *name));
        for p in index.pools.iter().filter(|p| !p.listeners.is_empty()) {
            let names = p.listeners.iter().map(|l| l.name.clone()).collect();
            match self.pools.iter_mut().find(|(name, _)| *name == p.name) {
                Some((_, l)) => *l = names,
                None => self.pools.push((p.name.clone(), names)),
            }
        }
    }

    /// Where `pool` listened, by another's word (its app server's log),
    /// unless the pool source has seen it listen.
    fn remember(&mut self, pool: &str, listeners: &[String]) {
        if listeners.is_empty() || self.pools.iter().any(|(name, _)| &**name == pool) {
            return;
        }
        self.pools.push((Arc::from(pool), listeners.to_vec()));
    }

    /// The pool serving `upstream` now, else the one that last listened
    /// there.
    fn pool_of(&self, index: &PoolIndex, upstream: &str) -> Option<Arc<str>> {
        index.serving(upstream).next().cloned().or_else(|| {
            self.pools
                .iter()
                .find(|(_, ls)| ls.iter().any(|l| serves(l, upstream)))
                .map(|(name, _)| name.clone())
        })
    }
}

/// Pool -> the upstreams its app server's log says it listened at.
type AppListeners = dyn Fn() -> BTreeMap<String, Vec<String>> + Send;

pub struct NginxSource {
    logs: Vec<LogSource>,
    last_listeners: LastListeners,
    /// Where the app servers' logs say the pools listened.
    app_listeners: Option<Box<AppListeners>>,
    opts: NginxOptions,
    sinks: Sinks,
    pools: Arc<Published<PoolIndex>>,
    out: Arc<Published<NginxView>>,
    /// New options (a reloaded config), taken at the start of a poll.
    updates: Option<(Arc<Published<NginxOptions>>, u64)>,
}

impl NginxSource {
    /// Fails when a log format does not compile; the error names the entry.
    pub fn new(
        opts: NginxOptions,
        sinks: Sinks,
        pools: Arc<Published<PoolIndex>>,
    ) -> Result<NginxSource, String> {
        let mut logs = Vec::new();
        for n in &opts.logs {
            logs.push(
                LogSource::new(n, opts.max_upstreams, opts.start)
                    .map_err(|e| format!("nginx {:?}: {e}", n.name))?,
            );
        }
        Ok(NginxSource {
            logs,
            last_listeners: LastListeners::default(),
            app_listeners: None,
            opts,
            sinks,
            pools,
            out: Published::new(NginxView::default()),
            updates: None,
        })
    }

    /// Take new options from `updates` at the start of each poll.
    pub fn follow_options(&mut self, updates: Arc<Published<NginxOptions>>) {
        let seen = updates.version();
        self.updates = Some((updates, seen));
    }

    /// Apply new options (a reloaded config). An nginx whose entry did not
    /// change keeps its followers, offsets and counters; a new or changed
    /// one starts at `opts.start`; one no longer configured stops being
    /// exported. A new `max_upstreams` applies to the logs started now.
    /// Fails, changing nothing, when a new entry's format does not compile.
    pub fn reconfigure(&mut self, opts: NginxOptions) -> Result<(), String> {
        let mut fresh = Vec::new();
        for n in opts.logs.iter().filter(|n| !self.opts.logs.contains(n)) {
            fresh.push(
                LogSource::new(n, opts.max_upstreams, opts.start)
                    .map_err(|e| format!("nginx {:?}: {e}", n.name))?,
            );
        }
        let mut fresh = fresh.into_iter();
        // Built from `opts.logs` in order, so the i-th log is the i-th entry.
        let mut old: Vec<Option<LogSource>> = self.logs.drain(..).map(Some).collect();
        for n in &opts.logs {
            let kept = self.opts.logs.iter().position(|o| o == n);
            let log = kept.and_then(|i| old[i].take()).or_else(|| fresh.next());
            self.logs.extend(log);
        }
        for gone in old.into_iter().flatten() {
            for file in ["access", "error"] {
                self.sinks
                    .health
                    .forget(&HEALTH.of(format_args!("{}/{file}", gone.name)));
            }
            if !opts.logs.iter().any(|n| *n.name == *gone.name) {
                tracing::info!(nginx = %gone.name, "nginx no longer configured: not exported any more");
            }
        }
        self.opts = opts;
        Ok(())
    }

    pub fn published(&self) -> Arc<Published<NginxView>> {
        self.out.clone()
    }

    /// Read where the app servers' logs say each pool listened, as
    /// published by the app-log source: a pool found down still owns the
    /// socket its log says it listened at, which the pool source never saw.
    /// `listening` gives pool -> upstreams; it is asked at each poll.
    pub fn with_app_listeners(
        mut self,
        listening: impl Fn() -> BTreeMap<String, Vec<String>> + Send + 'static,
    ) -> NginxSource {
        self.app_listeners = Some(Box::new(listening));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.logs.is_empty()
    }

    /// Read everything new from every log, and publish. Returns the number
    /// of files that could not be read, and whether anything changed.
    pub fn poll(&mut self) -> (u64, bool) {
        if let Some(opts) = self.updates.as_mut().and_then(|(u, seen)| u.newer(seen)) {
            // The CLI checked the config before publishing it.
            if let Err(e) = self.reconfigure((*opts).clone()) {
                tracing::warn!(error = %e, "new nginx options refused; keeping the previous ones");
            }
        }
        let pools = self.pools.get();
        self.last_listeners.update(&pools);
        if let Some(listening) = &self.app_listeners {
            for (pool, listeners) in &listening() {
                if pools.get(pool).is_some() {
                    self.last_listeners.remember(pool, listeners);
                }
            }
        }
        let mut errors = 0;
        let mut changed = false;
        for l in &mut self.logs {
            let (e, c) = l.poll(
                &self.sinks,
                &pools,
                &self.last_listeners,
                self.opts.request_history,
            );
            errors += e;
            changed |= c;
        }
        self.out.publish(NginxView {
            logs: self
                .logs
                .iter()
                .map(|l| (l.name.to_string(), l.state.clone()))
                .collect(),
        });
        (errors, changed)
    }
}

impl Source for NginxSource {
    fn collector(&self) -> &'static str {
        "nginx"
    }

    fn step(&mut self, _now: Instant) -> Stepped {
        let (errors, changed) = self.poll();
        Stepped::cycle(errors, changed)
    }

    fn wait(&mut self, started: Instant) {
        pace(self.opts.interval, started);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn entry(log_format: &str, escape: Option<&str>) -> NginxConfig {
        NginxConfig {
            name: "edge".into(),
            access_log: Some("/x".into()),
            log_format: log_format.into(),
            escape: escape.map(str::to_string),
            error_log: None,
        }
    }

    #[test]
    fn formats_as_written_in_nginx_conf() {
        // The README's example, through the YAML parser.
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let yaml = readme
            .split("```yaml\n")
            .nth(1)
            .and_then(|s| s.split("```").next())
            .unwrap();
        let cfg = crate::config::Config::parse(yaml, Path::new("README.md")).unwrap();
        let fmt = compile_format(&cfg.nginx[0]).unwrap();
        assert!(fmt.has_field("upstream_addr") && fmt.has_field("upstream_header_time"));
        let line = br#"127.0.0.1 - - [23/Nov/2026:04:20:01 +0000] "GET / HTTP/1.1" 502 5 "-" "curl" rt=0.001 uht="-" urt="0.000" ua="unix:/run/a.sock" us="502""#;
        let mut f = access::AccessFields::default();
        fmt.parse(line, &mut f).unwrap();
        assert_eq!(f.upstream_addr(), Some(&b"unix:/run/a.sock"[..]));

        assert!(compile_format(&entry("combined", None)).is_ok());
        assert!(compile_format(&entry("main", None)).is_ok());
        assert!(compile_format(&entry(r#"{"s":"$status"}"#, Some("json"))).is_ok());
        assert!(compile_format(&entry(
            r#"log_format j escape=json '{"s":"$status"}';"#,
            None
        ))
        .is_ok());
    }

    #[test]
    fn a_pool_that_went_down_keeps_its_upstream() {
        use crate::state::pool_index::{PoolListener, PoolMembers};
        let index = |pools: &[(&str, &[&str])]| PoolIndex {
            pools: pools
                .iter()
                .map(|(name, listeners)| PoolMembers {
                    name: Arc::from(*name),
                    master: None,
                    workers: Vec::new(),
                    listeners: listeners
                        .iter()
                        .enumerate()
                        .map(|(i, l)| PoolListener {
                            name: l.to_string(),
                            inode: i as u64 + 1,
                            tcp: l.parse().ok(),
                        })
                        .collect(),
                })
                .collect(),
        };
        let mut last = LastListeners::default();
        let pool =
            |last: &LastListeners, idx: &PoolIndex, u| last.pool_of(idx, u).map(|p| p.to_string());
        let up = index(&[("api", &["unix:/run/api.sock"]), ("web", &["0.0.0.0:8000"])]);
        last.update(&up);
        assert_eq!(
            pool(&last, &up, "unix:/run/api.sock").as_deref(),
            Some("api")
        );
        // Both masters gone: their sockets are still theirs.
        let down = index(&[("api", &[]), ("web", &[])]);
        last.update(&down);
        assert_eq!(
            pool(&last, &down, "unix:/run/api.sock").as_deref(),
            Some("api")
        );
        assert_eq!(pool(&last, &down, "127.0.0.1:8000").as_deref(), Some("web"));
        assert_eq!(pool(&last, &down, "127.0.0.1:9000"), None);
        // Another pool listens there now; a pool no longer configured or
        // discovered is forgotten.
        let moved = index(&[
            ("api", &["unix:/run/api2.sock"]),
            ("new", &["unix:/run/api.sock"]),
        ]);
        last.update(&moved);
        assert_eq!(
            pool(&last, &moved, "unix:/run/api.sock").as_deref(),
            Some("new")
        );
        let gone = index(&[("api", &[])]);
        last.update(&gone);
        assert_eq!(pool(&last, &gone, "127.0.0.1:8000"), None);
        assert_eq!(pool(&last, &gone, "unix:/run/api.sock"), None);
        assert_eq!(
            pool(&last, &gone, "unix:/run/api2.sock").as_deref(),
            Some("api")
        );
        // A one-shot run that finds a pool down: its log says where it
        // listened; what the pool source saw wins.
        let mut last = LastListeners::default();
        let down = index(&[("api", &[]), ("web", &["unix:/run/web.sock"])]);
        last.update(&down);
        last.remember("api", &["unix:/run/api.sock".into()]);
        last.remember("web", &["unix:/run/old.sock".into()]);
        assert_eq!(
            pool(&last, &down, "unix:/run/api.sock").as_deref(),
            Some("api")
        );
        assert_eq!(pool(&last, &down, "unix:/run/old.sock"), None);
    }

    /// A one-shot diagnosis counts each pool's requests over each worker's
    /// life, by every line's own time, from the history the source keeps
    /// when asked; a pool's socket keeps counting once its master is gone.
    #[test]
    fn requests_counted_in_windows_by_each_lines_time() {
        use crate::state::pool_index::{PoolListener, PoolMembers};
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let mut text = String::new();
        // One line every 100 ms from 1000.000 s, alternating two sockets,
        // one no pool's.
        for i in 0..40u64 {
            let sock = if i % 2 == 0 {
                "/run/api.sock"
            } else {
                "/run/x.sock"
            };
            text.push_str(&format!(
                "{}.{:03} 200 unix:{sock}\n",
                1000 + i / 10,
                i % 10 * 100
            ));
        }
        std::fs::write(&log, "").unwrap();
        let api = |listeners: Vec<PoolListener>| PoolIndex {
            pools: vec![PoolMembers {
                name: Arc::from("api"),
                master: None,
                workers: Vec::new(),
                listeners,
            }],
        };
        let index = Published::new(api(vec![PoolListener {
            name: "unix:/run/api.sock".into(),
            inode: 1,
            tcp: None,
        }]));
        let source = |request_history| {
            NginxSource::new(
                NginxOptions {
                    logs: vec![NginxConfig {
                        name: "edge".into(),
                        access_log: Some(log.clone()),
                        log_format: "$msec $status $upstream_addr".into(),
                        escape: None,
                        error_log: None,
                    }],
                    max_upstreams: 8,
                    start: StartAt::Beginning,
                    interval: Duration::from_millis(100),
                    request_history,
                },
                Sinks::new(64),
                index.clone(),
            )
            .unwrap()
        };
        let (mut src, mut off) = (source(true), source(false));
        src.poll();
        // The master is gone by the time the lines are read.
        index.publish(api(Vec::new()));
        std::fs::write(&log, text).unwrap();
        src.poll();
        off.poll();
        let t = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        let view = src.published().get();
        let count = |pool: &str, from, to| -> u64 {
            view.logs
                .values()
                .filter_map(|l| l.request_history.get(pool))
                .map(|h| h.count(t(from), t(to)))
                .sum()
        };
        // api's lines: 1000.0, .2, .4, .6, .8, 1001.0, ... 1003.8; both
        // ends of a window are in it.
        let counts = [
            count("api", 1_000_000, 1_001_000),
            count("api", 1_000_950, 1_003_000),
            count("web", 1_000_000, 1_004_000),
        ];
        assert_eq!(counts, [6, 11, 0]);
        assert_eq!(view.logs["edge"].request_history["api"].total(), 20);
        // Not asked: nothing kept, though the lines were read.
        let off = off.published().get();
        assert_eq!(off.logs["edge"].counters.access_lines, 40);
        assert!(off.logs["edge"].request_history.is_empty());
    }

    #[test]
    fn bad_formats_say_why() {
        let e = compile_format(&entry("$remote_addr $request", None)).unwrap_err();
        assert!(e.contains("$status"), "{e}");
        let e = compile_format(&entry("combined", Some("yaml"))).unwrap_err();
        assert!(e.contains("escape"), "{e}");
        assert!(compile_format(&entry("${status", None)).is_err());
    }
}
