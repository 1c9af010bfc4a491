//! php-fpm's own log (`error_log` in php-fpm.conf), one line into the
//! evidence it gives about a child's end. Captured from Debian 12's
//! php-fpm 8.2 in fixtures/php-fpm/ (tools/capture_server_logs.py).
//!
//! Every line is `[07-Dec-2026 14:32:05] LEVEL: message`, in local time
//! without a zone, to the second; the time of a line is when it was read.
//! A child's own output (`catch_workers_output`) comes as `[pool www]
//! child N said into stderr: "..."`, which is never evidence.
//!
//! | event | text |
//! |---|---|
//! | a child started | `[pool www] child 12897 started` (not logged for the first children at start) |
//! | request_terminate_timeout | `[pool www] child 12957, script '/app.php' (request: "GET /app.php?sleep=10") execution timed out (2.624431 sec), terminating`, then an exit on SIGTERM |
//! | reaped, killed by a signal | `[pool www] child 13217 exited on signal 9 (SIGKILL) after 0.132122 seconds from start` |
//! | reaped, exited | `[pool www] child 12891 exited with code 0 after 0.100742 seconds from start` (pm.max_requests leaves with 0) |
//! | reload (SIGUSR2) | `Reloading in progress ...` |
//! | stop | `Terminating ...` (SIGTERM, SIGINT), `Finishing ...` (SIGQUIT), `exiting, bye-bye!` |

use crate::state::timeline::AppLog;

use super::{after, number_until};

/// What a php-fpm line says about a child's end or its master, if anything.
/// `pool`, when given, keeps only the lines of that php-fpm pool.
pub fn parse_line(line: &[u8], pool: Option<&str>) -> Option<AppLog> {
    let m = message(line)?;
    if let Some(rest) = m.strip_prefix(b"[pool ") {
        let end = rest.iter().position(|&b| b == b']')?;
        if pool.is_some_and(|p| p.as_bytes() != &rest[..end]) {
            return None;
        }
        let rest = rest[end..].strip_prefix(b"] child ")?;
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let pid: i32 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
        let rest = &rest[digits..];
        if rest == b" started" {
            return Some(AppLog::WorkerBooted { pid });
        }
        if let Some(code) = rest.strip_prefix(b" exited with code ") {
            let code: u8 = number_until::<u8>(code, b' ')?;
            return Some(AppLog::WorkerExited { pid, code });
        }
        if let Some(sig) = rest.strip_prefix(b" exited on signal ") {
            let signal = number_until(sig, b' ')?;
            return Some(AppLog::WorkerSignaled { pid, signal });
        }
        if rest.starts_with(b", script '")
            && rest.ends_with(b", terminating")
            && after(rest, b") execution timed out (").is_some()
        {
            return Some(AppLog::WorkerTimeout { pid });
        }
        return None;
    }
    if m.starts_with(b"Reloading in progress") {
        return Some(AppLog::Reload);
    }
    if m.starts_with(b"Terminating ...")
        || m.starts_with(b"Finishing ...")
        || m.starts_with(b"exiting, bye-bye!")
    {
        return Some(AppLog::Shutdown);
    }
    None
}

/// The message after `[date] LEVEL: `.
fn message(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let rest = line.strip_prefix(b"[")?;
    let close = rest.iter().position(|&b| b == b']')?;
    let rest = rest[close + 1..].strip_prefix(b" ")?;
    let colon = rest.iter().position(|&b| b == b':')?;
    if !rest[..colon].iter().all(u8::is_ascii_uppercase) {
        return None;
    }
    rest[colon + 1..].strip_prefix(b" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_of_the_table() {
        let cases: &[(&str, Option<AppLog>)] = &[
            (
                "[07-Dec-2026 14:32:05] NOTICE: [pool www] child 12897 started",
                Some(AppLog::WorkerBooted { pid: 12897 }),
            ),
            (
                "[07-Dec-2026 14:32:09] WARNING: [pool www] child 12957, script '/a.php' (request: \"GET /a.php?sleep=10\") execution timed out (2.624431 sec), terminating",
                Some(AppLog::WorkerTimeout { pid: 12957 }),
            ),
            (
                "[07-Dec-2026 14:32:10] WARNING: [pool www] child 13217 exited on signal 9 (SIGKILL) after 0.132122 seconds from start",
                Some(AppLog::WorkerSignaled { pid: 13217, signal: 9 }),
            ),
            (
                "[07-Dec-2026 14:32:05] NOTICE: [pool www] child 12891 exited with code 0 after 0.100742 seconds from start",
                Some(AppLog::WorkerExited { pid: 12891, code: 0 }),
            ),
            ("[07-Dec-2026 14:32:11] NOTICE: Reloading in progress ...", Some(AppLog::Reload)),
            ("[07-Dec-2026 14:32:14] NOTICE: Terminating ...", Some(AppLog::Shutdown)),
            ("[07-Dec-2026 14:32:13] NOTICE: Finishing ...", Some(AppLog::Shutdown)),
            // A child's own output is never evidence.
            (
                "[07-Dec-2026 14:32:14] WARNING: [pool www] child 5 said into stderr: \"child 5 exited on signal 9\"",
                None,
            ),
            ("[07-Dec-2026 14:32:05] NOTICE: fpm is running, pid 12890", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_line(line.as_bytes(), None), *want, "{line}");
        }
        let other = "[07-Dec-2026 14:32:05] NOTICE: [pool admin] child 12897 started";
        assert_eq!(parse_line(other.as_bytes(), Some("www")), None);
        assert!(parse_line(other.as_bytes(), Some("admin")).is_some());
    }
}
