//! uWSGI's own log (`--logto`, `--logger file:`, `--daemonize`), one line
//! into the evidence it gives about a worker's end. Captured from Debian
//! 12's uWSGI 2.0.21 in fixtures/uwsgi/ (tools/capture_server_logs.py).
//!
//! Most master lines carry no time; a few (harakiri, `NO MERCY`) start
//! with `Mon Dec  7 14:30:43 2026 - `, and `--log-date` puts a date before
//! every line. The time of a line is when it was read. Request lines
//! (`[pid: N|app: 0|req: 1/1] ... GET /uri ...`) are never evidence: their
//! URI is the client's.
//!
//! | event | text |
//! |---|---|
//! | a worker started | `spawned uWSGI worker 1 (pid: 6923, cores: 1)`, `Respawned uWSGI worker 2 (new pid: 8787)` |
//! | harakiri (the request timeout) | `*** HARAKIRI ON WORKER 2 (pid: 8591, try: 1) ***`, then the same reap line as any SIGKILL |
//! | reaped, killed by a signal | `DAMN ! worker 2 (pid: 8591) died, killed by signal 9 :( trying respawn ...` (an OOM kill and a harakiri alike) |
//! | reaped, exited | `DAMN ! worker 3 (pid: 8865) died :( trying respawn ...` (no code) |
//! | a fatal signal caught in the worker | `!!! uWSGI process 8865 got Segmentation Fault !!!` (the worker then exits with code 1, not by the signal) |
//! | max-requests, reload-on-rss | `...The work of process 8429 is done. Seeya!`, written by the worker |
//! | reload | `...gracefully killing workers...` (SIGHUP), `...brutally killing workers...` (SIGTERM in 2.0), then `binary reloading uWSGI...` |
//! | stop | `SIGINT/SIGTERM received...killing workers...` (SIGINT, SIGQUIT, SIGTERM with `--die-on-term`), `goodbye to uWSGI.` |
//!
//! Mules and the spooler have their own lines (`spawned uWSGI mule 1 (pid:
//! N)`, `mule 1 (pid: N) annihilated`), which are not about workers.

use crate::state::timeline::AppLog;

use super::{after, number_until};

/// What a uWSGI line says about a worker's end or its master, if anything.
pub fn parse_line(line: &[u8]) -> Option<AppLog> {
    let m = message(line)?;
    if let Some(rest) = m.strip_prefix(b"*** HARAKIRI ON WORKER ") {
        let pid = number_until(after(rest, b"(pid: ")?, b',')?;
        return Some(AppLog::WorkerTimeout { pid });
    }
    if let Some(rest) = m.strip_prefix(b"DAMN ! worker ") {
        let rest = after(rest, b"(pid: ")?;
        let pid = number_until(rest, b')')?;
        return Some(match after(rest, b") died, killed by signal ") {
            Some(sig) => AppLog::WorkerSignaled {
                pid,
                signal: number_until(sig, b' ')?,
            },
            // The code is not logged; the proc connector has it.
            None => return None,
        });
    }
    if let Some(rest) = m.strip_prefix(b"spawned uWSGI worker ") {
        let pid = number_until(after(rest, b"(pid: ")?, b',')?;
        return Some(AppLog::WorkerBooted { pid });
    }
    if let Some(rest) = m.strip_prefix(b"Respawned uWSGI worker ") {
        let pid = number_until(after(rest, b"(new pid: ")?, b')')?;
        return Some(AppLog::WorkerBooted { pid });
    }
    if let Some(rest) = m.strip_prefix(b"!!! uWSGI process ") {
        let pid = number_until(rest, b' ')?;
        let what = after(rest, b" got ")?;
        let signal = if what.starts_with(b"Segmentation Fault") {
            11
        } else if what.starts_with(b"Floating Point Exception") {
            8
        } else if what.starts_with(b"Bus Error") {
            7
        } else {
            return None;
        };
        return Some(AppLog::WorkerCrashed { pid, signal });
    }
    if let Some(rest) = m.strip_prefix(b"...The work of process ") {
        let pid = number_until(rest, b' ')?;
        return after(rest, b" is done")
            .is_some()
            .then_some(AppLog::Autorestarting { pid });
    }
    if m.starts_with(b"...gracefully killing workers...")
        || m.starts_with(b"...brutally killing workers...")
        || m.starts_with(b"binary reloading uWSGI")
    {
        return Some(AppLog::Reload);
    }
    if (m.starts_with(b"SIGINT/") && after(m, b" received...killing workers").is_some())
        || m.starts_with(b"goodbye to uWSGI")
    {
        return Some(AppLog::Shutdown);
    }
    None
}

/// The line without a date in front (`Mon Dec  7 14:30:43 2026 - `, or
/// `--log-date`'s); `None` for a request line.
fn message(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    if line.starts_with(b"[pid: ") {
        return None;
    }
    let first = line.first()?;
    if !first.is_ascii_alphanumeric() {
        return Some(line);
    }
    // A date prefix is short, has a clock in it and ends with " - ".
    if let Some(i) = line
        .windows(3)
        .take(48)
        .position(|w| w == b" - ")
        .filter(|&i| line[..i].contains(&b':') && line[..i].iter().any(u8::is_ascii_digit))
    {
        let rest = &line[i + 3..];
        if !rest.starts_with(b"[pid: ") {
            return Some(rest);
        }
        return None;
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_of_the_table() {
        let cases: &[(&str, Option<AppLog>)] = &[
            (
                "Mon Dec  7 14:30:43 2026 - *** HARAKIRI ON WORKER 2 (pid: 8591, try: 1) ***",
                Some(AppLog::WorkerTimeout { pid: 8591 }),
            ),
            (
                "DAMN ! worker 2 (pid: 8591) died, killed by signal 9 :( trying respawn ...",
                Some(AppLog::WorkerSignaled {
                    pid: 8591,
                    signal: 9,
                }),
            ),
            ("DAMN ! worker 3 (pid: 8865) died :( trying respawn ...", None),
            (
                "spawned uWSGI worker 1 (pid: 6923, cores: 1)",
                Some(AppLog::WorkerBooted { pid: 6923 }),
            ),
            (
                "Respawned uWSGI worker 2 (new pid: 8787)",
                Some(AppLog::WorkerBooted { pid: 8787 }),
            ),
            ("spawned uWSGI mule 1 (pid: 6926)", None),
            (
                "!!! uWSGI process 8865 got Segmentation Fault !!!",
                Some(AppLog::WorkerCrashed {
                    pid: 8865,
                    signal: 11,
                }),
            ),
            (
                "...The work of process 8429 is done. Seeya!",
                Some(AppLog::Autorestarting { pid: 8429 }),
            ),
            ("...gracefully killing workers...", Some(AppLog::Reload)),
            ("...brutally killing workers...", Some(AppLog::Reload)),
            (
                "SIGINT/SIGTERM received...killing workers...",
                Some(AppLog::Shutdown),
            ),
            ("goodbye to uWSGI.", Some(AppLog::Shutdown)),
            // A client's URI in a request line is never evidence.
            (
                "[pid: 8433|app: 0|req: 1/1] 127.0.0.1 () {26 vars in 291 bytes} [Mon Dec  7 14:30:37 2026] GET /goodbye to uWSGI. => generated 5 bytes",
                None,
            ),
            (
                "Mon Dec  7 14:30:43 2026 - HARAKIRI [core 0] 127.0.0.1 - GET /sleep?s=10 since 1796653840",
                None,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_line(line.as_bytes()), *want, "{line}");
        }
    }
}
