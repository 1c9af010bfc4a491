//! The app servers' own logs: each pool's `log_file`, followed across
//! rotation like nginx's logs, its lines parsed by the server's parser
//! (`gunicorn::log`, [`uwsgi`], [`php_fpm`], [`unicorn`], [`puma`]) and the ones about workers
//! and the master put on the timeline (a timeout, an autorestart, the
//! signal or code a worker was reaped with, a reload, a shutdown): the
//! evidence of why a worker ended, one vocabulary for every server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::Server;
use crate::follow::{FollowConfig, Follower, StartAt};
use crate::gunicorn::log::{self, Event, MasterSignal};
use crate::state::health::SourceLabel;
use crate::state::source::{pace, step_until};
use crate::state::timeline::{AppLog, EventKind};
use crate::state::{Published, Sinks, Source, Stepped};

pub mod php_fpm;
pub mod puma;
pub mod unicorn;
pub mod uwsgi;

/// The bytes after the first `needle` in `hay`.
fn after<'a>(hay: &'a [u8], needle: &[u8]) -> Option<&'a [u8]> {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .map(|i| &hay[i + needle.len()..])
}

/// The decimal number that `b` starts with, up to `end` (or the end).
fn number_until<T: std::str::FromStr>(b: &[u8], end: u8) -> Option<T> {
    let n = b.iter().position(|&c| c == end).unwrap_or(b.len());
    std::str::from_utf8(&b[..n]).ok()?.trim().parse().ok()
}

/// Gunicorn's lines are short; a traceback line longer than this is cut.
pub const MAX_LINE: usize = 8 * 1024;

#[derive(Debug, Clone)]
pub struct AppLogOptions {
    /// (pool, its log file, the server that writes it, and for php-fpm the
    /// php-fpm pool whose lines are read, `None`: all).
    pub logs: Vec<(String, PathBuf, Server, Option<String>)>,
    /// Where to start in the files that exist at startup.
    pub start: StartAt,
    pub interval: Duration,
}

/// Lines read, by pool; and where each pool's master last said it listens.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppLogCounts {
    pub lines: std::collections::BTreeMap<String, u64>,
    /// From Gunicorn's `Listening at:` line, spelled as nginx spells an
    /// upstream (`unix:/path`, `host:port`): where a pool that is down now
    /// listened, for a one-shot diagnosis that never saw it up.
    pub listening: std::collections::BTreeMap<String, Vec<String>>,
}

/// Gunicorn's spelling of an address (`http://127.0.0.1:8000`,
/// `unix:/run/app.sock`) as nginx's `$upstream_addr` spells it.
pub fn upstream_spelling(address: &str) -> Option<String> {
    let a = address.trim();
    if a.starts_with("unix:") {
        return Some(a.to_string());
    }
    let hostport = a
        .strip_prefix("http://")
        .or_else(|| a.strip_prefix("https://"))?;
    (!hostport.is_empty()).then(|| hostport.trim_end_matches('/').to_string())
}

/// The health `source` label of a pool's log: `app_log/NAME`.
pub const HEALTH: SourceLabel = SourceLabel("app_log");

struct PoolLog {
    pool: Arc<str>,
    server: Server,
    php_fpm_pool: Option<String>,
    follower: Follower,
    lines: u64,
    listening: Vec<String>,
}

pub struct AppLogSource {
    logs: Vec<PoolLog>,
    interval: Duration,
    sinks: Sinks,
    out: Arc<Published<AppLogCounts>>,
    /// New options (a reloaded config), taken at the start of a poll.
    updates: Option<(Arc<Published<AppLogOptions>>, u64)>,
}

fn pool_log(
    pool: &str,
    path: &std::path::Path,
    server: Server,
    php_fpm_pool: Option<String>,
    start: StartAt,
) -> PoolLog {
    PoolLog {
        pool: Arc::from(pool),
        server,
        php_fpm_pool,
        follower: Follower::new(
            path.to_path_buf(),
            FollowConfig {
                max_line_bytes: MAX_LINE,
                start,
                rotate_grace: Duration::from_secs(5),
            },
        ),
        lines: 0,
        listening: Vec::new(),
    }
}

impl AppLogSource {
    pub fn new(opts: AppLogOptions, sinks: Sinks) -> AppLogSource {
        let logs = opts
            .logs
            .iter()
            .map(|(pool, path, server, fpm)| pool_log(pool, path, *server, fpm.clone(), opts.start))
            .collect();
        AppLogSource {
            logs,
            interval: opts.interval,
            sinks,
            out: Published::new(AppLogCounts::default()),
            updates: None,
        }
    }

    /// Take new options from `updates` at the start of each poll.
    pub fn follow_options(&mut self, updates: Arc<Published<AppLogOptions>>) {
        let seen = updates.version();
        self.updates = Some((updates, seen));
    }

    /// Apply new options (a reloaded config): a pool's log that is still
    /// configured at the same path keeps its follower and count; a new one
    /// starts at `opts.start`; one no longer configured stops being
    /// exported.
    pub fn reconfigure(&mut self, opts: AppLogOptions) {
        let mut old: Vec<Option<PoolLog>> = self.logs.drain(..).map(Some).collect();
        for (pool, path, server, fpm) in &opts.logs {
            let kept = old.iter_mut().find(|l| {
                l.as_ref().is_some_and(|l| {
                    *l.pool == **pool
                        && l.follower.path() == path.as_path()
                        && l.server == *server
                        && l.php_fpm_pool == *fpm
                })
            });
            let log = kept.and_then(Option::take);
            self.logs.push(
                log.unwrap_or_else(|| pool_log(pool, path, *server, fpm.clone(), opts.start)),
            );
        }
        for gone in old.into_iter().flatten() {
            if !self.logs.iter().any(|l| l.pool == gone.pool) {
                self.sinks.health.forget(&HEALTH.of(&gone.pool));
            }
        }
        self.interval = opts.interval;
        self.publish();
    }

    fn publish(&self) {
        self.out.publish(AppLogCounts {
            lines: self
                .logs
                .iter()
                .map(|l| (l.pool.to_string(), l.lines))
                .collect(),
            listening: self
                .logs
                .iter()
                .filter(|l| !l.listening.is_empty())
                .map(|l| (l.pool.to_string(), l.listening.clone()))
                .collect(),
        });
    }

    pub fn published(&self) -> Arc<Published<AppLogCounts>> {
        self.out.clone()
    }

    pub fn is_empty(&self) -> bool {
        self.logs.is_empty()
    }

    /// Read everything new from every log. Returns the number of files
    /// that could not be read, and whether anything was read.
    pub fn poll(&mut self) -> (u64, bool) {
        if let Some(opts) = self.updates.as_mut().and_then(|(u, seen)| u.newer(seen)) {
            self.reconfigure((*opts).clone());
        }
        let mut errors = 0;
        let mut changed = false;
        for l in &mut self.logs {
            let before = l.lines;
            let (pool, sinks, lines) = (&l.pool, &self.sinks, &mut l.lines);
            let listening = &mut l.listening;
            let (server, fpm) = (l.server, l.php_fpm_pool.as_deref());
            let r = l.follower.poll(&mut |line| {
                *lines += 1;
                if server != Server::Gunicorn {
                    // These servers' lines carry no time, or one without a
                    // zone: a line's time is when it was read.
                    if let Some(what) = other_server_evidence(server, fpm, line.bytes) {
                        sinks.timeline.push(
                            SystemTime::now(),
                            Some(pool.clone()),
                            EventKind::AppLog(what),
                        );
                    }
                    return;
                }
                let Some(parsed) = log::parse_line(line.bytes) else {
                    return;
                };
                if let Event::Listening { addresses, .. } = parsed.event {
                    *listening = addresses.split(',').filter_map(upstream_spelling).collect();
                }
                let Some(what) = evidence(&parsed) else {
                    return;
                };
                let at = SystemTime::UNIX_EPOCH + Duration::from_secs(parsed.time.max(0) as u64);
                sinks
                    .timeline
                    .push(at, Some(pool.clone()), EventKind::AppLog(what));
            });
            let r = r
                .map(|_| ())
                .map_err(|e| format!("reading {}: {e}", l.follower.path().display()));
            errors += r.is_err() as u64;
            self.sinks.health.report(&HEALTH.of(&l.pool), r);
            changed |= l.lines != before;
        }
        if changed {
            self.publish();
        }
        (errors, changed)
    }
}

impl Source for AppLogSource {
    fn collector(&self) -> &'static str {
        "app_log"
    }

    fn step(&mut self, _now: Instant) -> Stepped {
        let (errors, changed) = self.poll();
        Stepped::cycle(errors, changed)
    }

    fn wait(&mut self, started: Instant) {
        pace(self.interval, started);
    }

    /// Poll until a poll reads nothing: each reads at most 32 MiB a file.
    fn catch_up(&mut self, sinks: &Sinks) -> Stepped {
        step_until(sinks, self, |s| !s.changed)
    }
}

/// What a line of another server's log says, by the server's parser.
/// `php_fpm_pool` keeps a php-fpm log's lines to that pool's children.
pub fn other_server_evidence(
    server: Server,
    php_fpm_pool: Option<&str>,
    line: &[u8],
) -> Option<AppLog> {
    match server {
        Server::Uwsgi => uwsgi::parse_line(line),
        Server::PhpFpm => php_fpm::parse_line(line, php_fpm_pool),
        Server::Unicorn => unicorn::parse_line(line),
        Server::Puma => puma::parse_line(line),
        Server::Gunicorn | Server::Generic => None,
    }
}

/// What a Gunicorn line says about a worker's end, if anything.
pub fn evidence(line: &log::LogLine<'_>) -> Option<AppLog> {
    let pid = |p: u32| p as i32;
    Some(match line.event {
        Event::BootingWorker { pid: p } => AppLog::WorkerBooted { pid: pid(p) },
        Event::WorkerTimeout { pid: p } => AppLog::WorkerTimeout { pid: pid(p) },
        Event::WorkerSignaled { pid: p, signal } => AppLog::WorkerSignaled {
            pid: pid(p),
            signal,
        },
        Event::WorkerExited { pid: p, code } => AppLog::WorkerExited { pid: pid(p), code },
        // Logged by the worker itself, under its own pid.
        Event::Autorestarting => AppLog::Autorestarting { pid: pid(line.pid) },
        Event::HandlingSignal {
            signal: MasterSignal::Hup,
        } => AppLog::Reload,
        Event::HandlingSignal {
            signal: MasterSignal::Term | MasterSignal::Int | MasterSignal::Quit,
        }
        | Event::ShuttingDown { .. } => AppLog::Shutdown,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/gunicorn/27.0.1")
            .join(name)
    }

    fn replay(name: &str) -> Vec<AppLog> {
        let sinks = Sinks::new(1024);
        let mut s = AppLogSource::new(
            AppLogOptions {
                logs: vec![("api".into(), fixture(name), Server::Gunicorn, None)],
                start: StartAt::Beginning,
                interval: Duration::from_millis(250),
            },
            sinks.clone(),
        );
        assert_eq!(s.poll(), (0, true));
        assert!(s.published().get().lines["api"] > 3);
        sinks.timeline.read(|t| {
            t.iter()
                .map(|e| {
                    assert_eq!(e.pool.as_deref(), Some("api"));
                    match e.kind {
                        EventKind::AppLog(a) => a,
                        ref k => panic!("{k:?}"),
                    }
                })
                .collect()
        })
    }

    /// Where the master listens, as nginx spells it: a pool that is down
    /// when a one-shot diagnosis runs is still tied to its socket.
    #[test]
    fn where_the_master_said_it_listens() {
        let sinks = Sinks::new(1024);
        let mut s = AppLogSource::new(
            AppLogOptions {
                logs: vec![(
                    "api".into(),
                    fixture("max_requests.log"),
                    Server::Gunicorn,
                    None,
                )],
                start: StartAt::Beginning,
                interval: Duration::from_millis(250),
            },
            sinks,
        );
        s.poll();
        let listening = s.published().get().listening["api"].clone();
        assert_eq!(listening.len(), 1, "{listening:?}");
        assert!(listening[0].starts_with("127.0.0.1:"), "{listening:?}");
        assert_eq!(
            upstream_spelling("unix:/run/app.sock").as_deref(),
            Some("unix:/run/app.sock")
        );
        assert_eq!(
            upstream_spelling("http://[::1]:8000").as_deref(),
            Some("[::1]:8000")
        );
        assert_eq!(upstream_spelling("fd://3"), None);
    }

    #[test]
    fn captured_logs_give_the_evidence_of_each_ending() {
        let has = |events: &[AppLog], f: fn(&AppLog) -> bool| events.iter().any(f);
        let e = replay("max_requests.log");
        assert!(
            has(&e, |a| matches!(a, AppLog::Autorestarting { .. })),
            "{e:?}"
        );
        let e = replay("timeout_sigstop.log");
        assert!(
            has(&e, |a| matches!(a, AppLog::WorkerTimeout { .. })),
            "{e:?}"
        );
        assert!(
            has(&e, |a| matches!(
                a,
                AppLog::WorkerSignaled { signal: 9, .. }
            )),
            "{e:?}"
        );
        let e = replay("segv.log");
        assert!(
            has(&e, |a| matches!(
                a,
                AppLog::WorkerSignaled { signal: 11, .. }
            )),
            "{e:?}"
        );
        let e = replay("hup_reload.log");
        assert!(has(&e, |a| matches!(a, AppLog::Reload)), "{e:?}");
        let e = replay("term_shutdown.log");
        assert!(has(&e, |a| matches!(a, AppLog::Shutdown)), "{e:?}");
        // The autorestart line is the worker's own: its pid is the worker
        // that boots earlier in the same log.
        let e = replay("max_requests.log");
        let booted: Vec<i32> = e
            .iter()
            .filter_map(|a| match a {
                AppLog::WorkerBooted { pid } => Some(*pid),
                _ => None,
            })
            .collect();
        for a in &e {
            if let AppLog::Autorestarting { pid } = a {
                assert!(booted.contains(pid), "{pid} {booted:?}");
            }
        }
    }

    /// Another server's captured log, through the same source.
    fn replay_server(server: Server, dir: &str, name: &str) -> Vec<AppLog> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(dir)
            .join(name);
        let sinks = Sinks::new(1024);
        let mut s = AppLogSource::new(
            AppLogOptions {
                logs: vec![("api".into(), path, server, None)],
                start: StartAt::Beginning,
                interval: Duration::from_millis(250),
            },
            sinks.clone(),
        );
        assert_eq!(s.poll(), (0, true));
        sinks.timeline.read(|t| {
            t.iter()
                .map(|e| match e.kind {
                    EventKind::AppLog(a) => a,
                    ref k => panic!("{k:?}"),
                })
                .collect()
        })
    }

    /// Each captured ending of uWSGI 2.0.21, php-fpm 8.2, Unicorn 6 and
    /// Puma 5.6 gives the
    /// evidence the exit-reason table reads.
    #[test]
    fn other_servers_logs_give_the_evidence_of_each_ending() {
        use AppLog::*;
        type Case = (Server, &'static str, &'static str, fn(&AppLog) -> bool);
        let cases: &[Case] = &[
            (Server::Uwsgi, "uwsgi/2.0.21", "max_requests.log", |a| {
                matches!(a, Autorestarting { .. })
            }),
            (Server::Uwsgi, "uwsgi/2.0.21", "harakiri.log", |a| {
                matches!(a, WorkerTimeout { .. })
            }),
            (Server::Uwsgi, "uwsgi/2.0.21", "harakiri.log", |a| {
                matches!(a, WorkerSignaled { signal: 9, .. })
            }),
            (Server::Uwsgi, "uwsgi/2.0.21", "segv.log", |a| {
                matches!(a, WorkerCrashed { signal: 11, .. })
            }),
            (Server::Uwsgi, "uwsgi/2.0.21", "sigkill.log", |a| {
                matches!(a, WorkerSignaled { signal: 9, .. })
            }),
            (Server::Uwsgi, "uwsgi/2.0.21", "hup_reload.log", |a| {
                matches!(a, Reload)
            }),
            (Server::Uwsgi, "uwsgi/2.0.21", "term_reload.log", |a| {
                matches!(a, Reload)
            }),
            (Server::Uwsgi, "uwsgi/2.0.21", "int_stop.log", |a| {
                matches!(a, Shutdown)
            }),
            (Server::PhpFpm, "php-fpm/8.2", "max_requests.log", |a| {
                matches!(a, WorkerExited { code: 0, .. })
            }),
            (Server::PhpFpm, "php-fpm/8.2", "timeout.log", |a| {
                matches!(a, WorkerTimeout { .. })
            }),
            (Server::PhpFpm, "php-fpm/8.2", "timeout.log", |a| {
                matches!(a, WorkerSignaled { signal: 15, .. })
            }),
            (Server::PhpFpm, "php-fpm/8.2", "sigkill.log", |a| {
                matches!(a, WorkerSignaled { signal: 9, .. })
            }),
            (Server::PhpFpm, "php-fpm/8.2", "usr2_reload.log", |a| {
                matches!(a, Reload)
            }),
            (Server::PhpFpm, "php-fpm/8.2", "quit_stop.log", |a| {
                matches!(a, Shutdown)
            }),
            (Server::PhpFpm, "php-fpm/8.2", "term_stop.log", |a| {
                matches!(a, Shutdown)
            }),
            (
                Server::Unicorn,
                "unicorn/6.0.0",
                "timeout_sigkill_hup_quit.log",
                |a| matches!(a, WorkerTimeout { .. }),
            ),
            (
                Server::Unicorn,
                "unicorn/6.0.0",
                "timeout_sigkill_hup_quit.log",
                |a| matches!(a, WorkerSignaled { signal: 9, .. }),
            ),
            (
                Server::Unicorn,
                "unicorn/6.0.0",
                "timeout_sigkill_hup_quit.log",
                |a| matches!(a, WorkerExited { code: 0, .. }),
            ),
            (
                Server::Unicorn,
                "unicorn/6.0.0",
                "timeout_sigkill_hup_quit.log",
                |a| matches!(a, Reload),
            ),
            (
                Server::Unicorn,
                "unicorn/6.0.0",
                "timeout_sigkill_hup_quit.log",
                |a| matches!(a, Shutdown),
            ),
            (
                Server::Puma,
                "puma/5.6.5",
                "sigkill_usr1_usr2_term.log",
                |a| matches!(a, WorkerBooted { .. }),
            ),
            (
                Server::Puma,
                "puma/5.6.5",
                "sigkill_usr1_usr2_term.log",
                |a| matches!(a, Reload),
            ),
            (
                Server::Puma,
                "puma/5.6.5",
                "sigkill_usr1_usr2_term.log",
                |a| matches!(a, Shutdown),
            ),
        ];
        for (server, dir, name, want) in cases {
            let e = replay_server(*server, dir, name);
            assert!(e.iter().any(want), "{dir}/{name}: {e:?}");
        }
        // The harakiri names the pid its reap line names.
        let e = replay_server(Server::Uwsgi, "uwsgi/2.0.21", "harakiri.log");
        let timed_out: Vec<i32> = e
            .iter()
            .filter_map(|a| match a {
                WorkerTimeout { pid } => Some(*pid),
                _ => None,
            })
            .collect();
        assert!(
            e.iter()
                .any(|a| matches!(a, WorkerSignaled { pid, .. } if timed_out.contains(pid))),
            "{e:?}"
        );
        // A stop is not a reload, nor a reload a stop.
        let e = replay_server(Server::Uwsgi, "uwsgi/2.0.21", "int_stop.log");
        assert!(!e.contains(&Reload), "{e:?}");
        let e = replay_server(Server::Uwsgi, "uwsgi/2.0.21", "hup_reload.log");
        assert!(!e.contains(&Shutdown), "{e:?}");
    }

    #[test]
    fn a_missing_log_is_a_down_source_not_a_crash() {
        let sinks = Sinks::new(16);
        let mut s = AppLogSource::new(
            AppLogOptions {
                logs: vec![(
                    "api".into(),
                    PathBuf::from("/nonexistent/gunicorn.log"),
                    Server::Gunicorn,
                    None,
                )],
                start: StartAt::End,
                interval: Duration::from_millis(250),
            },
            sinks.clone(),
        );
        let (errors, changed) = s.poll();
        assert!(!changed);
        // The follower waits for a file that does not exist yet.
        assert_eq!(errors, 0);
        assert_eq!(sinks.health.get("app_log/api").map(|h| h.up), Some(true));
    }
}
