//! The answers of the servers' status interfaces, parsed: pure functions
//! over the bytes, tested on answers captured from the real servers
//! (`fixtures/uwsgi/2.0.21/stats.json`, `fixtures/php-fpm/8.2/status_full.fcgi`,
//! `fixtures/puma/5.6.5/stats.http`). Only the figures the exporter uses
//! are read; a missing one is an error naming it, so that a server that
//! changed its format says so instead of reporting zeros.

use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatusError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("no {0:?} in the answer")]
    Missing(&'static str),
}

/// One worker in uWSGI's stats server answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UwsgiWorker {
    /// uWSGI's worker id, from 1.
    pub id: u64,
    pub pid: i32,
    /// Requests of the worker process now in the id (`delta_requests`,
    /// which uWSGI sets to 0 at each respawn; `requests` counts the id's
    /// requests across respawns).
    pub requests: u64,
    /// Harakiris of the id since the master started.
    pub harakiri_count: u64,
    /// Whether it is handling a request (`status` is `busy`).
    pub busy: bool,
}

/// php-fpm's `?full&json` status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FpmStatus {
    pub active: u64,
    pub idle: u64,
    /// Times the pool reached `pm.max_children` since the master started.
    pub max_children_reached: u64,
    /// Requests past `request_slowlog_timeout` since the master started.
    pub slow_requests: u64,
    pub processes: Vec<FpmProcess>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FpmProcess {
    pub pid: i32,
    /// Requests this child served.
    pub requests: u64,
}

/// One worker in Puma's control app `/stats` (cluster mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PumaWorker {
    pub index: u64,
    pub pid: i32,
    /// `last_checkin`, seconds since the epoch (Puma writes whole seconds).
    pub last_checkin: i64,
    /// Requests accepted by the worker waiting for one of its threads.
    pub backlog: u64,
    pub requests: u64,
}

fn json(bytes: &[u8]) -> Result<Value, StatusError> {
    serde_json::from_slice(bytes).map_err(|e| StatusError::Json(e.to_string()))
}

fn u64_at(v: &Value, key: &'static str) -> Result<u64, StatusError> {
    v.get(key)
        .and_then(Value::as_u64)
        .ok_or(StatusError::Missing(key))
}

fn pid_at(v: &Value) -> Result<i32, StatusError> {
    u64_at(v, "pid").and_then(|p| i32::try_from(p).map_err(|_| StatusError::Missing("pid")))
}

fn array_at<'a>(v: &'a Value, key: &'static str) -> Result<&'a Vec<Value>, StatusError> {
    v.get(key)
        .and_then(Value::as_array)
        .ok_or(StatusError::Missing(key))
}

/// uWSGI's stats server answer (`--stats`), its `workers`.
pub fn parse_uwsgi(bytes: &[u8]) -> Result<Vec<UwsgiWorker>, StatusError> {
    let v = json(bytes)?;
    array_at(&v, "workers")?
        .iter()
        .map(|w| {
            Ok(UwsgiWorker {
                id: u64_at(w, "id")?,
                pid: pid_at(w)?,
                requests: u64_at(w, "delta_requests")?,
                harakiri_count: u64_at(w, "harakiri_count")?,
                busy: w.get("status").and_then(Value::as_str) == Some("busy"),
            })
        })
        .collect()
}

/// php-fpm's status page, `?full&json`. `body` may start with the CGI
/// headers (what FastCGI's stdout carries); they are skipped.
pub fn parse_php_fpm(body: &[u8]) -> Result<FpmStatus, StatusError> {
    let v = json(cgi_body(body))?;
    let processes = array_at(&v, "processes")?
        .iter()
        .map(|p| {
            Ok(FpmProcess {
                pid: pid_at(p)?,
                requests: u64_at(p, "requests")?,
            })
        })
        .collect::<Result<_, StatusError>>()?;
    Ok(FpmStatus {
        active: u64_at(&v, "active processes")?,
        idle: u64_at(&v, "idle processes")?,
        max_children_reached: u64_at(&v, "max children reached")?,
        slow_requests: u64_at(&v, "slow requests")?,
        processes,
    })
}

/// What follows the CGI (or HTTP) headers, if `out` starts with headers
/// (a letter: JSON starts with a bracket or a brace).
pub fn cgi_body(out: &[u8]) -> &[u8] {
    if !out.first().is_some_and(u8::is_ascii_alphabetic) {
        return out;
    }
    match memchr::memmem::find(out, b"\r\n\r\n") {
        Some(i) => &out[i + 4..],
        None => out,
    }
}

/// Puma's control app `/stats` answer. A Puma in single mode (no
/// workers) has no `worker_status`: no workers.
pub fn parse_puma(bytes: &[u8]) -> Result<Vec<PumaWorker>, StatusError> {
    let v = json(bytes)?;
    let Some(workers) = v.get("worker_status").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    workers
        .iter()
        .map(|w| {
            let checkin = w
                .get("last_checkin")
                .and_then(Value::as_str)
                .and_then(|t| crate::nginx::access::parse_time_iso8601(t.as_bytes()))
                .ok_or(StatusError::Missing("last_checkin"))?;
            let status = w
                .get("last_status")
                .ok_or(StatusError::Missing("last_status"))?;
            Ok(PumaWorker {
                index: u64_at(w, "index")?,
                pid: pid_at(w)?,
                last_checkin: checkin,
                // A worker that has not checked in yet has an empty
                // last_status.
                backlog: status.get("backlog").and_then(Value::as_u64).unwrap_or(0),
                requests: status
                    .get("requests_count")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn uwsgi_stats_server_answer() {
        // 3 workers after 5 requests and a harakiri of worker 1.
        let w = parse_uwsgi(&fixture("uwsgi/2.0.21/stats.json")).unwrap();
        let ids: Vec<u64> = w.iter().map(|w| w.id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(
            w[0],
            UwsgiWorker {
                id: 1,
                pid: 15274,
                requests: 0,
                harakiri_count: 1,
                busy: false
            }
        );
        assert_eq!(w[1].requests, 2);
        assert_eq!(w.iter().map(|w| w.harakiri_count).sum::<u64>(), 1);
    }

    #[test]
    fn php_fpm_status_page_through_fastcgi() {
        // Read through FastCGI: the CGI headers first. Captured after 6
        // requests of 1.5 s on pm.max_children = 2, with
        // request_slowlog_timeout = 1s.
        let s = parse_php_fpm(&fixture("php-fpm/8.2/status_full.fcgi")).unwrap();
        assert_eq!(
            s,
            FpmStatus {
                active: 1,
                idle: 1,
                max_children_reached: 1,
                slow_requests: 6,
                processes: vec![
                    FpmProcess {
                        pid: 16631,
                        requests: 5
                    },
                    FpmProcess {
                        pid: 17051,
                        requests: 3
                    },
                ],
            }
        );
    }

    #[test]
    fn puma_control_app_stats() {
        let http = fixture("puma/5.6.5/stats.http");
        let body = cgi_body(&http);
        let w = parse_puma(body).unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!(
            w[0],
            PumaWorker {
                index: 0,
                pid: 17519,
                // 2026-12-07T16:47:15Z
                last_checkin: 1_796_662_035,
                backlog: 0,
                requests: 4,
            }
        );
        assert_eq!(w.iter().map(|w| w.index).collect::<Vec<_>>(), [0, 1, 2]);
        // Single mode: no workers.
        assert_eq!(parse_puma(br#"{"started_at":"x","backlog":0}"#), Ok(vec![]));
    }

    #[test]
    fn a_changed_format_names_what_is_missing() {
        assert_eq!(
            parse_uwsgi(br#"{"workers":[{"id":1,"pid":2,"requests":3}]}"#),
            Err(StatusError::Missing("delta_requests"))
        );
        assert_eq!(
            parse_php_fpm(br#"{"pool":"www","processes":[]}"#),
            Err(StatusError::Missing("active processes"))
        );
        assert!(matches!(
            parse_puma(b"Invalid auth token"),
            Err(StatusError::Json(_))
        ));
    }
}
