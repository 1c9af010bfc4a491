//! The nginx source's families: client statuses, upstream attempts and
//! failures, latency histograms, and the logs' own health.

use std::fmt;

use super::Encoder;

use super::{define_metrics, family};
use crate::nginx::error_log::{Phase, Reason};
use crate::nginx::log_counters::{self, LogCounters, ParseError};
use crate::nginx::NginxView;

define_metrics! { METRICS;
    RESPONSES: Counter, "badgateway_nginx_responses", ["log", "upstream", "status"], "Requests by final client status and the upstream of the last attempt (`-` when nginx answered without one).";
    ATTEMPTS: Counter, "badgateway_nginx_upstream_attempts", ["log", "upstream", "status"], "Upstream attempts by status, from $upstream_addr/$upstream_status (`-` when the attempt has no status).";
    BACKEND_ERRORS: Counter, "badgateway_nginx_upstream_backend_errors", ["log", "upstream", "status"], "5xx attempts that the backend sent itself (a response header arrived, per $upstream_header_time), as opposed to ones nginx generated.";
    FAILURES: Counter, "badgateway_nginx_upstream_failures", ["log", "upstream", "reason", "phase"], "Upstream failures from the error log, by reason and phase. Phase read_body failures come after the status was sent and do not become 5xx.";
    RESPONSE_SECONDS: Histogram, "badgateway_nginx_response_seconds", ["log", "upstream"], "$request_time, by the upstream of the last attempt.";
    UPSTREAM_SECONDS: Histogram, "badgateway_nginx_upstream_response_seconds", ["log", "upstream"], "$upstream_response_time of each attempt.";
    LOG_LINES: Counter, "badgateway_log_lines", ["log", "file"], "Lines read, by file (access, error).";
    PARSE_ERRORS: Counter, "badgateway_log_parse_errors", ["log", "reason"], "Lines that did not count: format_mismatch, bad_status, bad_upstream_list, invalid_utf8, too_long, error_layout.";
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
    fn of(self, c: &LogCounters) -> &log_counters::StatusCounts {
        match self {
            StatusTable::Responses => &c.responses,
            StatusTable::Attempts => &c.attempts,
            StatusTable::BackendErrors => &c.backend_errors,
        }
    }
}

pub fn encode(st: &NginxView, enc: &mut Encoder) -> fmt::Result {
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
                        log_counters::NO_STATUS => "-".to_string(),
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
                        &h.buckets(),
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
            l.upstream_pools
                .iter()
                .try_for_each(|(up, pool)| f.gauge(&[name, up, pool], 1))
        })
    })?;
    family(enc, &OVERFLOW, |f| {
        let n: u64 = logs().map(|(_, l)| l.counters.upstreams.overflowed).sum();
        f.counter(&["upstream"], n)
    })
}
