//! The nginx source: access-log status counts and error-log failure causes.
//!
//! One thread polls every configured log through a rotation-safe follower;
//! lines are parsed in place and counted into bounded tables that are
//! published to the world after each poll.

pub mod access;
pub mod counters;
pub mod error;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::DescriptorEncoder;

use crate::config::{Config, NginxConfig};
use crate::follow::{FollowConfig, Follower, StartAt};
use crate::metrics::{define_metrics, family};
use crate::state::{lock, World};
use access::{AccessFormat, Escape};
use counters::{LogCounters, ParseError};
use error::{Phase, Reason};

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
}

/// What the nginx source has seen, by configured name.
#[derive(Debug, Default, Clone)]
pub struct NginxState {
    pub logs: BTreeMap<String, LogState>,
}

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

struct Source {
    name: String,
    format: Option<AccessFormat>,
    access: Option<Follower>,
    error: Option<Follower>,
    state: LogState,
    warned: bool,
}

impl Source {
    fn new(n: &NginxConfig, max_upstreams: usize, start: StartAt) -> Result<Source, String> {
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
        Ok(Source {
            name: n.name.clone(),
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
            },
            warned: false,
        })
    }

    /// Read everything new from both logs. Returns whether anything changed.
    fn poll(&mut self) -> bool {
        let before = (
            self.state.counters.access_lines,
            self.state.counters.error_lines,
        );
        let counters = &mut self.state.counters;
        let mut rotations = 0;
        let mut lag = 0;
        let mut errors = Vec::new();
        if let (Some(f), Some(fmt)) = (self.access.as_mut(), self.format.as_ref()) {
            let r = f.poll(&mut |l| counters.access_line(fmt, l.bytes, l.truncated));
            if let Err(e) = r {
                errors.push((f.path().display().to_string(), e));
            }
            rotations += f.totals().rotations + f.totals().truncations;
            lag += f.lag_bytes();
        }
        if let Some(f) = self.error.as_mut() {
            if let Err(e) = f.poll(&mut |l| counters.error_line(l.bytes, l.truncated)) {
                errors.push((f.path().display().to_string(), e));
            }
            rotations += f.totals().rotations + f.totals().truncations;
            lag += f.lag_bytes();
        }
        self.state.rotations = rotations;
        self.state.lag_bytes = lag;
        self.state.read_errors += errors.len() as u64;
        for (path, e) in errors {
            if !self.warned {
                tracing::warn!(log = %self.name, path = %path, error = %e, "reading nginx log");
                self.warned = true;
            }
        }
        before
            != (
                self.state.counters.access_lines,
                self.state.counters.error_lines,
            )
    }
}

pub fn start(cfg: &Config, args: &crate::cli::Args, world: Arc<World>) -> anyhow::Result<()> {
    let mut sources = Vec::new();
    for n in &cfg.nginx {
        let s = Source::new(n, cfg.max_upstreams, StartAt::End)
            .map_err(|e| anyhow::anyhow!("config {}: nginx {:?}: {e}", cfg.origin, n.name))?;
        sources.push(s);
    }
    if sources.is_empty() {
        return Ok(());
    }
    let interval = args.nginx_interval;
    crate::cli::spawn("nginx", move || run(sources, world, interval))
}

fn run(mut sources: Vec<Source>, world: Arc<World>, interval: Duration) {
    world.run_collector("nginx", interval, || {
        let errors0: u64 = sources.iter().map(|s| s.state.read_errors).sum();
        let mut changed = false;
        for s in &mut sources {
            changed |= s.poll();
        }
        let mut st = lock(&world.nginx);
        for s in &sources {
            st.logs.insert(s.name.clone(), s.state.clone());
        }
        let errors = sources.iter().map(|s| s.state.read_errors).sum::<u64>() - errors0;
        (errors, changed)
    })
}

define_metrics! { METRICS;
    RESPONSES: Counter, "badgateway_nginx_responses", ["log", "upstream", "status"], "Requests by final client status and the upstream of the last attempt (`-` when nginx answered without one).";
    ATTEMPTS: Counter, "badgateway_nginx_upstream_attempts", ["log", "upstream", "status"], "Upstream attempts by status, from $upstream_addr/$upstream_status (`-` when the attempt has no status).";
    BACKEND_ERRORS: Counter, "badgateway_nginx_upstream_backend_errors", ["log", "upstream", "status"], "5xx attempts that the backend sent itself (a response header arrived, per $upstream_header_time), as opposed to ones nginx generated.";
    FAILURES: Counter, "badgateway_nginx_upstream_failures", ["log", "upstream", "reason", "phase"], "Upstream failures from the error log, by reason and phase. Phase read_body failures come after the status was sent and do not become 5xx.";
    RESPONSE_SECONDS: Histogram, "badgateway_nginx_response_seconds", ["log", "upstream"], "$request_time, by the upstream of the last attempt.";
    UPSTREAM_SECONDS: Histogram, "badgateway_nginx_upstream_response_seconds", ["log", "upstream"], "$upstream_response_time of each attempt.";
    LOG_LINES: Counter, "badgateway_log_lines", ["log", "file"], "Lines read, by file (access, error).";
    PARSE_ERRORS: Counter, "badgateway_log_parse_errors", ["log", "reason"], "Lines that did not count: format_mismatch, bad_status, invalid_utf8, too_long, error_layout.";
    ROTATIONS: Counter, "badgateway_log_rotations", ["log"], "Rotations (rename, delete+recreate) and truncations (copytruncate) seen.";
    LAG: Gauge, "badgateway_log_lag_bytes", ["log"], "Bytes written to the log files and not yet read.";
    LOG_READ_ERRORS: Counter, "badgateway_log_read_errors", ["log"], "Polls that failed to read a log file (the follower keeps its place).";
    OVERFLOW: Counter, "badgateway_label_overflow", ["metric"], "Label values folded into `other` because a label hit its cap.";
    UPSTREAM_POOL: Gauge, "badgateway_nginx_upstream_pool", ["log", "upstream", "pool"], "1 for each upstream served by a pool's master (its unix socket or host:port); join on `upstream` to put a pool on nginx series.";
}

/// The three (upstream, status) tables, written the same way.
#[derive(Clone, Copy)]
enum StatusTable {
    Responses,
    Attempts,
    BackendErrors,
}

impl StatusTable {
    fn of(self, c: &LogCounters) -> &counters::StatusCounts {
        match self {
            StatusTable::Responses => &c.responses,
            StatusTable::Attempts => &c.attempts,
            StatusTable::BackendErrors => &c.backend_errors,
        }
    }
}

pub fn encode(world: &World, enc: &mut DescriptorEncoder) -> fmt::Result {
    let st = lock(&world.nginx).clone();
    let listening: Vec<(String, Vec<String>)> = lock(&world.pools)
        .values()
        .filter(|p| !p.listen.is_empty())
        .map(|p| (p.name.clone(), p.listen.clone()))
        .collect();
    let logs = || st.logs.iter();
    for (def, table) in [
        (&RESPONSES, StatusTable::Responses),
        (&ATTEMPTS, StatusTable::Attempts),
        (&BACKEND_ERRORS, StatusTable::BackendErrors),
    ] {
        family(enc, def, |f| {
            logs().try_for_each(|(name, l)| {
                let c = &l.counters;
                let mut v: Vec<_> = table.of(c).iter().collect();
                v.sort();
                v.into_iter().try_for_each(|((up, status), n)| {
                    let s = match *status {
                        counters::NO_STATUS => "-".to_string(),
                        s => s.to_string(),
                    };
                    f.counter(&[name, c.upstreams.name(*up), &s], *n)
                })
            })
        })?;
    }
    family(enc, &FAILURES, |f| {
        logs()
            .filter(|(_, l)| l.has_error)
            .try_for_each(|(name, l)| {
                let c = &l.counters;
                let mut v: Vec<((u16, Reason, Phase), u64)> =
                    c.failures.iter().map(|(k, v)| (*k, *v)).collect();
                v.sort_by_key(|((u, r, p), _)| (*u, r.as_str(), p.as_str()));
                v.into_iter().try_for_each(|((up, reason, phase), n)| {
                    f.counter(
                        &[name, c.upstreams.name(up), reason.as_str(), phase.as_str()],
                        n,
                    )
                })
            })
    })?;
    for (def, pick) in [(&RESPONSE_SECONDS, 0), (&UPSTREAM_SECONDS, 1)] {
        family(enc, def, |f| {
            logs().try_for_each(|(name, l)| {
                let c = &l.counters;
                let h = if pick == 0 {
                    &c.response_seconds
                } else {
                    &c.upstream_seconds
                };
                let mut v: Vec<_> = h.iter().collect();
                v.sort_by_key(|(k, _)| **k);
                v.into_iter().try_for_each(|(up, h)| {
                    f.histogram(
                        &[name, c.upstreams.name(*up)],
                        h.sum_ms as f64 / 1000.0,
                        h.count,
                        &h.cumulative(),
                    )
                })
            })
        })?;
    }
    family(enc, &LOG_LINES, |f| {
        logs().try_for_each(|(name, l)| {
            if l.has_access {
                f.counter(&[name, "access"], l.counters.access_lines)?;
            }
            if l.has_error {
                f.counter(&[name, "error"], l.counters.error_lines)?;
            }
            Ok(())
        })
    })?;
    family(enc, &PARSE_ERRORS, |f| {
        logs().try_for_each(|(name, l)| {
            ParseError::ALL.iter().try_for_each(|e| {
                f.counter(
                    &[name, e.as_str()],
                    l.counters.parse_errors.get(e).copied().unwrap_or(0),
                )
            })
        })
    })?;
    family(enc, &ROTATIONS, |f| {
        logs().try_for_each(|(name, l)| f.counter(&[name], l.rotations))
    })?;
    family(enc, &LAG, |f| {
        logs().try_for_each(|(name, l)| f.gauge(&[name], l.lag_bytes))
    })?;
    family(enc, &LOG_READ_ERRORS, |f| {
        logs().try_for_each(|(name, l)| f.counter(&[name], l.read_errors))
    })?;
    family(enc, &UPSTREAM_POOL, |f| {
        logs().try_for_each(|(name, l)| {
            l.counters.upstreams.names().try_for_each(|(_, up)| {
                listening
                    .iter()
                    .filter(|(_, addrs)| addrs.iter().any(|a| crate::pools::listen::serves(a, up)))
                    .try_for_each(|(pool, _)| f.gauge(&[name, up, pool], 1))
            })
        })
    })?;
    family(enc, &OVERFLOW, |f| {
        let n: u64 = logs().map(|(_, l)| l.counters.upstreams.overflowed).sum();
        f.counter(&["upstream"], n)
    })
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
        assert_eq!(f.upstream_addr, Some(&b"unix:/run/a.sock"[..]));

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
    fn bad_formats_say_why() {
        let e = compile_format(&entry("$remote_addr $request", None)).unwrap_err();
        assert!(e.contains("$status"), "{e}");
        let e = compile_format(&entry("combined", Some("yaml"))).unwrap_err();
        assert!(e.contains("escape"), "{e}");
        assert!(compile_format(&entry("${status", None)).is_err());
    }
}
