//! Unicorn's own log (`stderr_path`), one line into the evidence it gives
//! about a worker's end. Captured from Debian 12's unicorn 6.0.0 in
//! fixtures/unicorn/ (tools/capture_ruby_logs.sh).
//!
//! Lines are Ruby's Logger layout, `I, [2026-12-07T14:52:40.667672 #5852]
//! INFO -- : message`, in local time without a zone; the time of a line is
//! when it was read. Every master line about a worker names its slot
//! (`worker=N`).
//!
//! | event | text |
//! |---|---|
//! | a worker started | `worker=0 spawned pid=5893` (written by the worker) |
//! | timeout | `worker=1 PID:5897 timeout (4s > 3s), killing`, then the same reap line as any SIGKILL |
//! | reaped, killed by a signal | `reaped #<Process::Status: pid 5897 SIGKILL (signal 9)> worker=1` (an OOM kill and a timeout alike; a segfault shows as SIGABRT, since Ruby aborts) |
//! | reaped, exited | `reaped #<Process::Status: pid 6215 exit 0> worker=0` |
//! | reload (HUP) | `reloading config_file=unicorn.rb` |
//! | stop (QUIT, TERM, INT) | `master complete`, after the workers are reaped (nothing is logged before) |

use crate::state::timeline::AppLog;

use super::{after, number_until};

/// What a Unicorn line says about a worker's end or its master, if anything.
pub fn parse_line(line: &[u8]) -> Option<AppLog> {
    let m = message(line)?;
    if let Some(rest) = m.strip_prefix(b"reaped #<Process::Status: pid ") {
        let pid = number_until(rest, b' ')?;
        let rest = after(rest, b" ")?;
        if let Some(code) = rest.strip_prefix(b"exit ") {
            return Some(AppLog::WorkerExited {
                pid,
                code: number_until(code, b'>')?,
            });
        }
        let signal = number_until(after(rest, b"(signal ")?, b')')?;
        return Some(AppLog::WorkerSignaled { pid, signal });
    }
    if m.starts_with(b"reloading config_file=") {
        return Some(AppLog::Reload);
    }
    if m == b"master complete" {
        return Some(AppLog::Shutdown);
    }
    let rest = m.strip_prefix(b"worker=")?;
    if let Some(p) = after(rest, b" PID:") {
        let pid = number_until(p, b' ')?;
        return after(p, b" timeout (")
            .is_some()
            .then_some(AppLog::WorkerTimeout { pid });
    }
    let pid = number_until(after(rest, b" spawned pid=")?, b' ')?;
    Some(AppLog::WorkerBooted { pid })
}

/// The message after Logger's `... -- : `.
fn message(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    if line.get(1..4) != Some(b", [".as_slice()) {
        return None;
    }
    let rest = after(line, b"] ")?;
    after(rest, b" -- ").and_then(|r| after(r, b": "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_of_the_table() {
        let l = |m: &str| format!("E, [2026-12-07T14:52:47.683427 #5852] ERROR -- : {m}");
        let cases: &[(String, Option<AppLog>)] = &[
            (
                l("worker=1 PID:5897 timeout (4s > 3s), killing"),
                Some(AppLog::WorkerTimeout { pid: 5897 }),
            ),
            (
                l("reaped #<Process::Status: pid 5897 SIGKILL (signal 9)> worker=1"),
                Some(AppLog::WorkerSignaled {
                    pid: 5897,
                    signal: 9,
                }),
            ),
            (
                l("reaped #<Process::Status: pid 6215 exit 0> worker=0"),
                Some(AppLog::WorkerExited { pid: 6215, code: 0 }),
            ),
            (
                l("worker=0 spawned pid=5893"),
                Some(AppLog::WorkerBooted { pid: 5893 }),
            ),
            (l("reloading config_file=unicorn.rb"), Some(AppLog::Reload)),
            (l("master complete"), Some(AppLog::Shutdown)),
            (l("worker=0 ready"), None),
            (l("worker=2 spawning..."), None),
            ("master complete".to_string(), None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_line(line.as_bytes()), *want, "{line}");
        }
    }
}
