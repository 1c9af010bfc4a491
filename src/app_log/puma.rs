//! Puma's own log (`--redirect-stdout`, `stdout_redirect`), one line into
//! the evidence it gives. Captured from Debian 12's puma 5.6.5 in
//! fixtures/puma/ (tools/capture_ruby_logs.sh).
//!
//! Puma logs **nothing** when a worker dies: only its replacement's boot.
//! The process events and the kernel are the only evidence of a death.
//! Lines are `[MASTERPID] message`, without a time; the time of a line is
//! when it was read.
//!
//! | event | text |
//! |---|---|
//! | a worker started | `[6308] - Worker 0 (PID: 6327) booted in 0.11s, phase: 0` |
//! | phased restart (USR1) | `[6308] - Starting phased worker restart, phase: 1`, then `- Stopping 6328 for phased upgrade...` per worker |
//! | hot restart (USR2) | `[6308] * Restarting...` (the master execs itself under the same pid) |
//! | stop (TERM, INT) | `[6308] === puma shutdown: 2026-12-07 14:53:23 +0000 ===`, `[6308] - Goodbye!` |
//!
//! `- Gracefully shutting down workers...` comes before both a hot restart
//! and a stop, so it says neither.

use crate::state::timeline::AppLog;

use super::{after, number_until};

/// What a Puma line says about a worker or its master, if anything.
pub fn parse_line(line: &[u8]) -> Option<AppLog> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let rest = line.strip_prefix(b"[")?;
    let close = rest.iter().position(|&b| b == b']')?;
    if close == 0 || !rest[..close].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let m = rest[close + 1..].strip_prefix(b" ")?;
    if let Some(w) = m.strip_prefix(b"- Worker ") {
        let pid = number_until(after(w, b"(PID: ")?, b')')?;
        return after(w, b") booted")
            .is_some()
            .then_some(AppLog::WorkerBooted { pid });
    }
    if m.starts_with(b"- Starting phased worker restart") || m.starts_with(b"* Restarting...") {
        return Some(AppLog::Reload);
    }
    if m.starts_with(b"=== puma shutdown:") || m.starts_with(b"- Goodbye!") {
        return Some(AppLog::Shutdown);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_of_the_table() {
        let cases: &[(&str, Option<AppLog>)] = &[
            (
                "[6308] - Worker 0 (PID: 6327) booted in 0.11s, phase: 0",
                Some(AppLog::WorkerBooted { pid: 6327 }),
            ),
            (
                "[6308] - Starting phased worker restart, phase: 1",
                Some(AppLog::Reload),
            ),
            ("[6308] * Restarting...", Some(AppLog::Reload)),
            (
                "[6308] === puma shutdown: 2026-12-07 14:53:23 +0000 ===",
                Some(AppLog::Shutdown),
            ),
            ("[6308] - Goodbye!", Some(AppLog::Shutdown)),
            ("[6308] - Gracefully shutting down workers...", None),
            ("=== puma startup: 2026-12-07 14:53:04 +0000 ===", None),
            // A request log line is never evidence.
            (
                "127.0.0.1 - - [07/Dec/2026:14:53:04 +0000] \"GET /- Goodbye! HTTP/1.1\" 200",
                None,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_line(line.as_bytes()), *want, "{line}");
        }
    }
}
