//! Parser for Gunicorn's own log (`--error-logfile`, alias `--log-file`),
//! one line into a typed [`LogLine`] without allocating: everything it
//! returns is a number or borrowed from the line.
//!
//! The layout is glogging.py's default, unchanged since 19.2:
//! `%(asctime)s [%(process)d] [%(levelname)s] %(message)s` with the date
//! format `[%Y-%m-%d %H:%M:%S %z]`, so
//! `[2026-11-24 00:15:07 +0530] [19318] [CRITICAL] WORKER TIMEOUT (pid:19324)`.
//! The bracketed pid is the process that wrote the line: the master for most
//! lines, the worker itself for `Booting worker`, `Autorestarting worker` and
//! `Worker exiting`. A traceback (`log.exception`) continues over lines
//! without that header; they, and anything else not in the layout (access
//! lines in the same file, a custom `--log-config`), parse as `None`.
//!
//! The texts by version (arbiter.py, workers/*.py; captured from 20.1.0,
//! 23.0.0 and 27.0.1 in fixtures/gunicorn/):
//!
//! | event | texts |
//! |---|---|
//! | worker killed by a signal | 24.0+: `Worker (pid:N) was sent SIGKILL! Perhaps out of memory?` (ERROR), `... was sent SIGTERM!` (INFO), `... was sent SIGSEGV!` and every other signal (WARNING), `... was sent signal 40!` for a signal Python has no name for |
//! | | 21.0–23.0: `Worker (pid:N) was sent SIGKILL!`-style texts, all at ERROR, but the name is looked up from the raw wait status, so a core dump or an unnamed signal shows as `was sent code 139!` (signal = N & 0x7f) |
//! | | 20.1.0: `Worker with pid N was terminated due to signal 9` (WARNING); 20.0 and older log nothing |
//! | worker exited with a code | 24.0+: `Worker (pid:N) exited with code 7.` (ERROR) |
//! | | 21.0–23.0: the same exit logged twice, `... exited with code 7` and then `... exited with code 7.`; 20.1 and older log nothing |
//! | | exit code 3 (Worker failed to boot) and 4 (App failed to load) then halt the master: `Shutting down: Master`, `Reason: Worker failed to boot.` |
//! | timeout | all: `WORKER TIMEOUT (pid:N)` (CRITICAL); the master sends SIGABRT, and SIGKILL on a later pass if the worker is still there |
//! | the rest | all: `Booting worker with pid: N`, `Autorestarting worker after current request.`, `Worker exiting (pid: N)`, `Handling signal: hup`, `Hang up: Master`, `Shutting down: Master`, `Starting gunicorn V`, `Listening at: URLS (PID)`, `Using worker: CLASS` |
//! | | 24.0+: `Handling signal: chld` at DEBUG; 25.1+: `Control socket listening at PATH`, and from 25.2 again after every fork, because the master closes the socket around each fork and binds it anew |

use std::str;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLine<'a> {
    /// When the line was written, seconds since the epoch (its UTC offset
    /// applied).
    pub time: i64,
    /// The process that wrote the line.
    pub pid: u32,
    pub level: Level,
    pub event: Event<'a>,
}

impl LogLine<'_> {
    /// The worker the line is about: the pid in its message, or the writer
    /// itself for the lines a worker logs about itself.
    pub fn worker(&self) -> Option<u32> {
        match self.event {
            Event::BootingWorker { pid }
            | Event::WorkerTimeout { pid }
            | Event::WorkerSignaled { pid, .. }
            | Event::WorkerExited { pid, .. }
            | Event::WorkerExiting { pid } => Some(pid),
            Event::Autorestarting => Some(self.pid),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl Level {
    fn from_bytes(b: &[u8]) -> Option<Level> {
        Some(match b {
            b"DEBUG" => Level::Debug,
            b"INFO" => Level::Info,
            b"WARNING" => Level::Warning,
            b"ERROR" => Level::Error,
            b"CRITICAL" => Level::Critical,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// `Starting gunicorn 27.0.1`
    Starting { version: &'a str },
    /// `Listening at: http://127.0.0.1:8000,unix:/run/app.sock (1234)`; the
    /// pid is missing when a reload changed the addresses.
    Listening {
        addresses: &'a str,
        master: Option<u32>,
    },
    /// `Using worker: sync`
    UsingWorker { class: &'a str },
    /// `Control socket listening at /run/user/0/gunicorn.ctl` (25.1+).
    ControlSocketListening { path: &'a str },
    /// `Booting worker with pid: N`, written by the new worker.
    BootingWorker { pid: u32 },
    /// `WORKER TIMEOUT (pid:N)`: the master sends SIGABRT now and SIGKILL
    /// on a later pass.
    WorkerTimeout { pid: u32 },
    /// The master reaped a worker killed by `signal` (the Linux number).
    /// A SIGKILL carries "Perhaps out of memory?" whoever sent it,
    /// including the master itself after a timeout or a slow shutdown.
    WorkerSignaled { pid: u32, signal: i32 },
    /// The master reaped a worker that exited with a non-zero `code`.
    /// 21.0–23.0 log each such exit twice.
    WorkerExited { pid: u32, code: u8 },
    /// `Autorestarting worker after current request.`: the writer reached
    /// `--max-requests` and exits after this request.
    Autorestarting,
    /// `Worker exiting (pid: N)`, written by the worker on a clean way out.
    WorkerExiting { pid: u32 },
    /// `Handling signal: hup`: a signal the master took from its queue.
    HandlingSignal { signal: MasterSignal<'a> },
    /// `Hang up: Master`: the reload that follows SIGHUP.
    HangUp { master: &'a str },
    /// `Shutting down: Master` (`Master.2` for a USR2 re-exec'd master).
    ShuttingDown { master: &'a str },
    /// `Reason: Worker failed to boot.`, after a `ShuttingDown` at ERROR.
    HaltReason { reason: &'a str },
    /// Any other message, as written.
    Other { message: &'a [u8] },
}

/// The signals the master handles, as `Handling signal:` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MasterSignal<'a> {
    /// Reload: new workers with the new configuration, old ones stopped.
    Hup,
    /// Graceful shutdown.
    Term,
    /// Quick shutdown.
    Int,
    /// Quick shutdown.
    Quit,
    /// Reopen the log files.
    Usr1,
    /// Re-exec a new master beside this one.
    Usr2,
    /// Stop the workers gracefully when daemonized.
    Winch,
    /// One worker more.
    Ttin,
    /// One worker less.
    Ttou,
    /// A child exited (logged at DEBUG, 24.0+).
    Chld,
    Other(&'a str),
}

impl<'a> MasterSignal<'a> {
    fn from_name(name: &'a str) -> MasterSignal<'a> {
        match name {
            "hup" => MasterSignal::Hup,
            "term" => MasterSignal::Term,
            "int" => MasterSignal::Int,
            "quit" => MasterSignal::Quit,
            "usr1" => MasterSignal::Usr1,
            "usr2" => MasterSignal::Usr2,
            "winch" => MasterSignal::Winch,
            "ttin" => MasterSignal::Ttin,
            "ttou" => MasterSignal::Ttou,
            // Python's signal module has both names for 17.
            "chld" | "cld" => MasterSignal::Chld,
            other => MasterSignal::Other(other),
        }
    }
}

/// `[YYYY-MM-DD HH:MM:SS +HHMM]`
const STAMP_LEN: usize = 27;

/// Parses one line of Gunicorn's log; a trailing `\n` or `\r\n` is ignored.
/// `None` for anything not in Gunicorn's default layout.
pub fn parse_line(line: &[u8]) -> Option<LogLine<'_>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let time = parse_time(line.get(..STAMP_LEN)?)?;
    let rest = line[STAMP_LEN..].strip_prefix(b" [")?;
    let (pid, rest) = split_number(rest)?;
    let rest = rest.strip_prefix(b"] [")?;
    let close = rest.iter().position(|&b| b == b']')?;
    let level = Level::from_bytes(&rest[..close])?;
    let rest = &rest[close + 1..];
    // Python writes "] " before the message, even an empty one.
    let message = rest.strip_prefix(b" ").unwrap_or(rest);
    if !rest.is_empty() && rest.len() == message.len() {
        return None;
    }
    Some(LogLine {
        time,
        pid: u32::try_from(pid).ok()?,
        level,
        event: parse_message(message),
    })
}

/// Classifies the message part of a line (after `[LEVEL] `).
pub fn parse_message(m: &[u8]) -> Event<'_> {
    classify(m).unwrap_or(Event::Other { message: m })
}

fn classify(m: &[u8]) -> Option<Event<'_>> {
    if let Some(r) = m.strip_prefix(b"Booting worker with pid: ") {
        return Some(Event::BootingWorker { pid: whole_pid(r)? });
    }
    if let Some(r) = m.strip_prefix(b"WORKER TIMEOUT (pid:") {
        return Some(Event::WorkerTimeout {
            pid: whole_pid(r.strip_suffix(b")")?)?,
        });
    }
    if let Some(r) = m.strip_prefix(b"Worker (pid:") {
        let (pid, r) = split_number(r)?;
        let pid = u32::try_from(pid).ok()?;
        let r = r.strip_prefix(b") ")?;
        if let Some(code) = r.strip_prefix(b"exited with code ") {
            // 21.0-23.0 log the exit twice, with and without the period.
            let code = code.strip_suffix(b".").unwrap_or(code);
            let code = u8::try_from(whole_number(code)?).ok()?;
            return Some(Event::WorkerExited { pid, code });
        }
        let sent = r.strip_prefix(b"was sent ")?;
        let sent = sent
            .strip_suffix(b"! Perhaps out of memory?")
            .or_else(|| sent.strip_suffix(b"!"))?;
        return Some(Event::WorkerSignaled {
            pid,
            signal: sent_signal(sent)?,
        });
    }
    if let Some(r) = m.strip_prefix(b"Worker with pid ") {
        // 20.1.0
        let (pid, r) = split_number(r)?;
        let sig = r.strip_prefix(b" was terminated due to signal ")?;
        return Some(Event::WorkerSignaled {
            pid: u32::try_from(pid).ok()?,
            signal: i32::try_from(whole_number(sig)?).ok()?,
        });
    }
    if m == b"Autorestarting worker after current request." {
        return Some(Event::Autorestarting);
    }
    if let Some(r) = m.strip_prefix(b"Worker exiting (pid: ") {
        return Some(Event::WorkerExiting {
            pid: whole_pid(r.strip_suffix(b")")?)?,
        });
    }
    if let Some(r) = m.strip_prefix(b"Handling signal: ") {
        return Some(Event::HandlingSignal {
            signal: MasterSignal::from_name(text(r)?),
        });
    }
    if let Some(r) = m.strip_prefix(b"Hang up: ") {
        return Some(Event::HangUp { master: text(r)? });
    }
    if let Some(r) = m.strip_prefix(b"Shutting down: ") {
        return Some(Event::ShuttingDown { master: text(r)? });
    }
    if let Some(r) = m.strip_prefix(b"Reason: ") {
        return Some(Event::HaltReason { reason: text(r)? });
    }
    if let Some(r) = m.strip_prefix(b"Starting gunicorn ") {
        return Some(Event::Starting { version: text(r)? });
    }
    if let Some(r) = m.strip_prefix(b"Listening at: ") {
        let r = text(r)?;
        let with_pid = r.strip_suffix(')').and_then(|r| r.rsplit_once(" ("));
        return Some(match with_pid {
            Some((addresses, pid)) if pid.bytes().all(|b| b.is_ascii_digit()) => Event::Listening {
                addresses,
                master: Some(whole_pid(pid.as_bytes())?),
            },
            _ => Event::Listening {
                addresses: r,
                master: None,
            },
        });
    }
    if let Some(r) = m.strip_prefix(b"Using worker: ") {
        return Some(Event::UsingWorker { class: text(r)? });
    }
    if let Some(r) = m.strip_prefix(b"Control socket listening at ") {
        return Some(Event::ControlSocketListening { path: text(r)? });
    }
    None
}

/// What follows `was sent `: `SIGKILL` (24.0+, and 21.0-23.0 for a plain
/// signal), `signal 40` (24.0+, a number Python has no name for) or
/// `code 139` (21.0-23.0: the raw wait status, core-dump bit included).
fn sent_signal(s: &[u8]) -> Option<i32> {
    if let Some(n) = s.strip_prefix(b"signal ") {
        return i32::try_from(whole_number(n)?).ok();
    }
    if let Some(n) = s.strip_prefix(b"code ") {
        return i32::try_from(whole_number(n)? & 0x7f).ok();
    }
    signal_number(text(s)?)
}

/// The Linux number of a signal as Python's `signal.Signals(n).name`
/// spells it (aliases included).
pub fn signal_number(name: &str) -> Option<i32> {
    Some(match name {
        "SIGHUP" => libc::SIGHUP,
        "SIGINT" => libc::SIGINT,
        "SIGQUIT" => libc::SIGQUIT,
        "SIGILL" => libc::SIGILL,
        "SIGTRAP" => libc::SIGTRAP,
        "SIGABRT" | "SIGIOT" => libc::SIGABRT,
        "SIGBUS" => libc::SIGBUS,
        "SIGFPE" => libc::SIGFPE,
        "SIGKILL" => libc::SIGKILL,
        "SIGUSR1" => libc::SIGUSR1,
        "SIGSEGV" => libc::SIGSEGV,
        "SIGUSR2" => libc::SIGUSR2,
        "SIGPIPE" => libc::SIGPIPE,
        "SIGALRM" => libc::SIGALRM,
        "SIGTERM" => libc::SIGTERM,
        "SIGSTKFLT" => libc::SIGSTKFLT,
        "SIGCHLD" | "SIGCLD" => libc::SIGCHLD,
        "SIGCONT" => libc::SIGCONT,
        "SIGSTOP" => libc::SIGSTOP,
        "SIGTSTP" => libc::SIGTSTP,
        "SIGTTIN" => libc::SIGTTIN,
        "SIGTTOU" => libc::SIGTTOU,
        "SIGURG" => libc::SIGURG,
        "SIGXCPU" => libc::SIGXCPU,
        "SIGXFSZ" => libc::SIGXFSZ,
        "SIGVTALRM" => libc::SIGVTALRM,
        "SIGPROF" => libc::SIGPROF,
        "SIGWINCH" => libc::SIGWINCH,
        "SIGIO" | "SIGPOLL" => libc::SIGIO,
        "SIGPWR" => libc::SIGPWR,
        "SIGSYS" => libc::SIGSYS,
        "SIGRTMIN" => libc::SIGRTMIN(),
        "SIGRTMAX" => libc::SIGRTMAX(),
        _ => return None,
    })
}

/// Seconds since the epoch of `[YYYY-MM-DD HH:MM:SS +HHMM]`.
pub fn parse_time(s: &[u8]) -> Option<i64> {
    if s.len() != STAMP_LEN
        || s[0] != b'['
        || s[5] != b'-'
        || s[8] != b'-'
        || s[11] != b' '
        || s[14] != b':'
        || s[17] != b':'
        || s[20] != b' '
        || s[26] != b']'
    {
        return None;
    }
    let year = digits(&s[1..5])?;
    let month = digits(&s[6..8])?;
    let day = digits(&s[9..11])?;
    let (hour, min, sec) = (
        digits(&s[12..14])?,
        digits(&s[15..17])?,
        digits(&s[18..20])?,
    );
    let sign = match s[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (off_h, off_m) = (digits(&s[22..24])?, digits(&s[24..26])?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 60
        || off_h > 23
        || off_m > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let local = days * 86_400 + hour * 3600 + min * 60 + sec;
    Some(local - sign * (off_h * 3600 + off_m * 60))
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard
/// Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

/// A leading run of ASCII digits (at most 19) and what follows it.
fn split_number(b: &[u8]) -> Option<(u64, &[u8])> {
    let end = b
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(b.len());
    if end == 0 || end > 19 {
        return None;
    }
    Some((digits(&b[..end])? as u64, &b[end..]))
}

fn whole_number(b: &[u8]) -> Option<u64> {
    match split_number(b)? {
        (n, []) => Some(n),
        _ => None,
    }
}

fn whole_pid(b: &[u8]) -> Option<u32> {
    u32::try_from(whole_number(b)?).ok()
}

fn text(b: &[u8]) -> Option<&str> {
    str::from_utf8(b).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    macro_rules! fixture {
        ($v:literal, $f:literal) => {
            (
                concat!($v, "/", $f),
                include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/fixtures/gunicorn/",
                    $v,
                    "/",
                    $f,
                    ".log"
                )),
            )
        };
    }

    /// Every captured log (tools/capture_gunicorn_logs.py).
    fn fixtures() -> Vec<(&'static str, &'static str)> {
        macro_rules! all {
            ($($v:literal),*) => { vec![$(
                fixture!($v, "max_requests"),
                fixture!($v, "timeout_sigstop"),
                fixture!($v, "timeout_busy"),
                fixture!($v, "segv"),
                fixture!($v, "exit_code"),
                fixture!($v, "exit_code_3_boot"),
                fixture!($v, "exit_code_3_os"),
                fixture!($v, "hup_reload"),
                fixture!($v, "term_shutdown"),
                fixture!($v, "term_shutdown_busy"),
                fixture!($v, "sigkill_external"),
                fixture!($v, "worker_signals"),
                fixture!($v, "master_signals"),
            )*] };
        }
        let mut all = all!("27.0.1", "23.0.0", "20.1.0");
        all.push(fixture!("27.0.1", "control"));
        all
    }

    fn log(name: &str) -> Vec<LogLine<'static>> {
        let (_, text) = fixtures()
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no fixture {name}"));
        text.lines()
            .filter_map(|l| parse_line(l.as_bytes()))
            .collect()
    }

    fn events(name: &str) -> Vec<Event<'static>> {
        log(name).into_iter().map(|l| l.event).collect()
    }

    fn booted(lines: &[LogLine]) -> Vec<u32> {
        lines
            .iter()
            .filter_map(|l| match l.event {
                Event::BootingWorker { pid } => {
                    // A worker announces its own boot.
                    assert_eq!(pid, l.pid);
                    Some(pid)
                }
                _ => None,
            })
            .collect()
    }

    fn signaled(lines: &[LogLine]) -> Vec<(u32, i32)> {
        lines
            .iter()
            .filter_map(|l| match l.event {
                Event::WorkerSignaled { pid, signal } => Some((pid, signal)),
                _ => None,
            })
            .collect()
    }

    fn master(lines: &[LogLine]) -> u32 {
        lines
            .iter()
            .find_map(|l| match l.event {
                Event::Listening { master, .. } => master,
                _ => None,
            })
            .expect("a Listening line with the master's pid")
    }

    #[test]
    fn every_header_line_parses_and_continuations_do_not() {
        for (name, text) in fixtures() {
            let mut headers = 0;
            for (i, line) in text.lines().enumerate() {
                let parsed = parse_line(line.as_bytes());
                if line.starts_with("[20") {
                    let l = parsed.unwrap_or_else(|| panic!("{name}:{}: {line:?}", i + 1));
                    headers += 1;
                    if let Event::Other { message } = l.event {
                        // Known texts must never fall through to Other.
                        for known in [
                            &b"Worker ("[..],
                            b"Worker with pid",
                            b"WORKER TIMEOUT",
                            b"Booting worker",
                            b"Worker exiting",
                            b"Handling signal",
                            b"Shutting down",
                            b"Autorestarting",
                        ] {
                            assert!(
                                !message.starts_with(known),
                                "{name}:{}: {line:?} fell through",
                                i + 1
                            );
                        }
                    }
                } else {
                    assert_eq!(parsed, None, "{name}:{}: {line:?}", i + 1);
                }
            }
            assert!(headers >= 6, "{name}: only {headers} lines");
        }
    }

    #[test]
    fn start_lines() {
        for v in ["27.0.1", "23.0.0", "20.1.0"] {
            let lines = log(&format!("{v}/max_requests"));
            let m = master(&lines);
            assert_eq!(lines[0].event, Event::Starting { version: v });
            assert_eq!(lines[0].pid, m);
            let Event::Listening { addresses, .. } = lines[1].event else {
                unreachable!()
            };
            assert!(addresses.starts_with("http://127.0.0.1:"), "{addresses}");
            assert_eq!(lines[2].event, Event::UsingWorker { class: "sync" });
            assert!(lines[..3].iter().all(|l| l.level == Level::Info));
        }
    }

    #[test]
    fn control_socket_line_27() {
        let lines = log("27.0.1/max_requests");
        let paths: Vec<&str> = lines
            .iter()
            .filter_map(|l| match l.event {
                Event::ControlSocketListening { path } => Some(path),
                _ => None,
            })
            .collect();
        // Re-created after every fork: once per worker spawned here.
        assert_eq!(paths.len(), booted(&lines).len(), "{paths:?}");
        assert!(paths
            .iter()
            .all(|p| p.ends_with("/gunicorn.ctl") && *p == paths[0]));
        assert!(events("23.0.0/max_requests")
            .iter()
            .all(|e| !matches!(e, Event::ControlSocketListening { .. })));
    }

    #[test]
    fn max_requests_recycling() {
        for v in ["27.0.1", "23.0.0", "20.1.0"] {
            let lines = log(&format!("{v}/max_requests"));
            let booted = booted(&lines);
            // 7 requests, 3 per worker: two workers recycled, a third serving.
            assert_eq!(booted.len(), 3, "{v}");
            let restarted: Vec<u32> = lines
                .iter()
                .filter(|l| l.event == Event::Autorestarting)
                .map(|l| l.worker().unwrap())
                .collect();
            assert_eq!(restarted, booted[..2], "{v}");
            for pid in &restarted {
                let at = lines
                    .iter()
                    .position(|l| l.worker() == Some(*pid) && l.event == Event::Autorestarting);
                let exit = lines
                    .iter()
                    .position(|l| l.event == Event::WorkerExiting { pid: *pid });
                assert!(at < exit, "{v}: {pid} exits after autorestarting");
                assert_eq!(lines[exit.unwrap()].pid, *pid, "logged by the worker");
            }
            assert!(signaled(&lines).is_empty(), "{v}");
        }
    }

    #[test]
    fn timeout_of_a_stopped_worker() {
        for v in ["27.0.1", "23.0.0", "20.1.0"] {
            let lines = log(&format!("{v}/timeout_sigstop"));
            let m = master(&lines);
            let timeouts: Vec<&LogLine> = lines
                .iter()
                .filter(|l| matches!(l.event, Event::WorkerTimeout { .. }))
                .collect();
            assert_eq!(timeouts.len(), 1, "{v}");
            let t = timeouts[0];
            assert_eq!((t.pid, t.level), (m, Level::Critical));
            let victim = t.worker().unwrap();
            assert_eq!(booted(&lines)[0], victim);
            // SIGABRT stays pending on a stopped process; the SIGKILL of the
            // next pass ends it, logged like an OOM kill from 21.0 on.
            assert_eq!(signaled(&lines), [(victim, libc::SIGKILL)], "{v}");
            let kill = lines
                .iter()
                .find(|l| matches!(l.event, Event::WorkerSignaled { .. }));
            assert!(kill.unwrap().time >= t.time);
            assert!(!lines
                .iter()
                .any(|l| l.event == Event::WorkerExiting { pid: victim }));
        }
    }

    #[test]
    fn timeout_of_a_busy_worker_exits_quietly() {
        let lines = log("27.0.1/timeout_busy");
        let victim = booted(&lines)[0];
        assert!(lines
            .iter()
            .any(|l| l.event == Event::WorkerTimeout { pid: victim }));
        // SIGABRT's handler raises SystemExit inside the request; the worker
        // logs the traceback and leaves its loop with code 0: no exit line.
        assert!(signaled(&lines).is_empty());
        assert!(lines
            .iter()
            .any(|l| l.event == Event::WorkerExiting { pid: victim } && l.pid == victim));
        assert!(!lines
            .iter()
            .any(|l| matches!(l.event, Event::WorkerExited { .. })));
    }

    #[test]
    fn segfault() {
        for (v, level) in [
            ("27.0.1", Level::Warning),
            ("23.0.0", Level::Error),
            ("20.1.0", Level::Warning),
        ] {
            let lines = log(&format!("{v}/segv"));
            let victim = booted(&lines)[0];
            assert_eq!(signaled(&lines), [(victim, libc::SIGSEGV)], "{v}");
            let l = lines
                .iter()
                .find(|l| matches!(l.event, Event::WorkerSignaled { .. }));
            assert_eq!(l.unwrap().level, level, "{v}");
        }
    }

    #[test]
    fn exit_codes() {
        let exits = |name: &str| -> Vec<Event> {
            events(name)
                .into_iter()
                .filter(|e| matches!(e, Event::WorkerExited { .. }))
                .collect()
        };
        // os._exit(7): once from 24.0 on, twice (with and without the final
        // period) in 21.0-23.0, not at all before.
        let e27 = exits("27.0.1/exit_code");
        assert!(
            matches!(e27[..], [Event::WorkerExited { code: 7, .. }]),
            "{e27:?}"
        );
        let e23 = exits("23.0.0/exit_code");
        assert!(
            matches!(e23[..], [Event::WorkerExited { code: 7, pid: a }, Event::WorkerExited { code: 7, pid: b }] if a == b),
            "{e23:?}"
        );
        assert!(exits("20.1.0/exit_code").is_empty());
        // Exit code 3 is Gunicorn's "Worker failed to boot": the master halts.
        for name in [
            "27.0.1/exit_code_3_boot",
            "27.0.1/exit_code_3_os",
            "23.0.0/exit_code_3_os",
        ] {
            let lines = log(name);
            let victim = booted(&lines)[0];
            let m = master(&lines);
            assert!(
                exits(name).contains(&Event::WorkerExited {
                    pid: victim,
                    code: 3
                }),
                "{name}"
            );
            let tail: Vec<_> = lines[lines.len() - 2..]
                .iter()
                .map(|l| (l.pid, l.level, l.event))
                .collect();
            assert_eq!(
                tail,
                [
                    (m, Level::Error, Event::ShuttingDown { master: "Master" }),
                    (
                        m,
                        Level::Error,
                        Event::HaltReason {
                            reason: "Worker failed to boot."
                        }
                    ),
                ],
                "{name}"
            );
        }
    }

    #[test]
    fn reload_on_hup() {
        for v in ["27.0.1", "23.0.0", "20.1.0"] {
            let lines = log(&format!("{v}/hup_reload"));
            let m = master(&lines);
            let hup = lines
                .iter()
                .position(|l| {
                    l.event
                        == Event::HandlingSignal {
                            signal: MasterSignal::Hup,
                        }
                })
                .unwrap();
            assert_eq!(lines[hup].pid, m);
            assert_eq!(lines[hup + 1].event, Event::HangUp { master: "Master" });
            let booted = booted(&lines);
            assert_eq!(booted.len(), 4, "{v}: two before, two after");
            for old in &booted[..2] {
                assert!(
                    lines[hup..]
                        .iter()
                        .any(|l| l.event == Event::WorkerExiting { pid: *old }),
                    "{v}: {old} exits after the HUP"
                );
            }
        }
        // 23.0.0 sent the old workers SIGTERM twice; one died of the second.
        assert!(signaled(&log("23.0.0/hup_reload"))
            .iter()
            .all(|&(_, s)| s == libc::SIGTERM));
        assert!(signaled(&log("27.0.1/hup_reload")).is_empty());
    }

    #[test]
    fn shutdown_on_term() {
        let lines = log("27.0.1/term_shutdown");
        let m = master(&lines);
        let term = lines
            .iter()
            .position(|l| {
                l.event
                    == Event::HandlingSignal {
                        signal: MasterSignal::Term,
                    }
            })
            .unwrap();
        let exiting: Vec<u32> = lines[term..]
            .iter()
            .filter_map(|l| match l.event {
                Event::WorkerExiting { pid } => Some(pid),
                _ => None,
            })
            .collect();
        let mut b = booted(&lines);
        b.sort();
        let mut e = exiting.clone();
        e.sort();
        assert_eq!(b, e);
        let last = lines.last().unwrap();
        assert_eq!(
            (last.pid, last.level, last.event),
            (m, Level::Info, Event::ShuttingDown { master: "Master" })
        );
        // Captured at --log-level debug.
        assert!(lines.iter().any(|l| l.level == Level::Debug
            && l.event
                == Event::Other {
                    message: b"Arbiter booted"
                }));
    }

    #[test]
    fn shutdown_kill_of_a_busy_worker() {
        let lines = log("27.0.1/term_shutdown_busy");
        let victim = booted(&lines)[0];
        // The graceful timeout ran out: SIGKILL, "Perhaps out of memory?".
        assert_eq!(signaled(&lines), [(victim, libc::SIGKILL)]);
        let i = lines
            .iter()
            .position(|l| matches!(l.event, Event::WorkerSignaled { .. }))
            .unwrap();
        assert_eq!(lines[i].level, Level::Error);
        assert_eq!(lines[i + 1].event, Event::ShuttingDown { master: "Master" });
    }

    #[test]
    fn sigkill_by_someone_else() {
        for v in ["27.0.1", "23.0.0", "20.1.0"] {
            let lines = log(&format!("{v}/sigkill_external"));
            let victim = booted(&lines)[1];
            assert_eq!(signaled(&lines), [(victim, libc::SIGKILL)], "{v}");
            assert!(!lines
                .iter()
                .any(|l| matches!(l.event, Event::WorkerTimeout { .. })));
        }
    }

    #[test]
    fn other_signals() {
        // SIGHUP and SIGUSR2 (default action in a worker), real-time 40,
        // and SIGTERM raised with its default action restored.
        let want = [libc::SIGHUP, libc::SIGUSR2, 40, libc::SIGTERM];
        for v in ["27.0.1", "23.0.0", "20.1.0"] {
            let lines = log(&format!("{v}/worker_signals"));
            let got: Vec<i32> = signaled(&lines).iter().map(|s| s.1).collect();
            assert_eq!(got, want, "{v}");
            let b = booted(&lines);
            assert!(signaled(&lines).iter().all(|(p, _)| b.contains(p)));
        }
        // The texts differ: "signal 40" (24.0+), "code 40" (21.0-23.0).
        let raw = |name: &str| {
            fixtures()
                .into_iter()
                .find(|f| f.0 == name)
                .unwrap()
                .1
                .to_string()
        };
        assert!(raw("27.0.1/worker_signals").contains("was sent signal 40!"));
        assert!(raw("23.0.0/worker_signals").contains("was sent code 40!"));
        let term = log("27.0.1/worker_signals")
            .into_iter()
            .find(|l| matches!(l.event, Event::WorkerSignaled { signal: 15, .. }))
            .unwrap();
        assert_eq!(term.level, Level::Info);
    }

    #[test]
    fn master_signals() {
        for v in ["27.0.1", "23.0.0", "20.1.0"] {
            let got: Vec<MasterSignal> = events(&format!("{v}/master_signals"))
                .into_iter()
                .filter_map(|e| match e {
                    Event::HandlingSignal { signal } => Some(signal),
                    _ => None,
                })
                .collect();
            use MasterSignal::*;
            assert_eq!(got, [Ttin, Ttou, Usr1, Winch, Int], "{v}");
        }
    }

    #[test]
    fn offsets_are_respected() {
        // The same instant in three zones.
        let t = |s: &str| parse_time(s.as_bytes()).unwrap();
        assert_eq!(
            t("[2026-11-24 00:15:07 +0530]"),
            t("[2026-11-23 18:45:07 +0000]")
        );
        assert_eq!(
            t("[2026-11-23 13:45:07 -0500]"),
            t("[2026-11-23 18:45:07 +0000]")
        );
        assert_eq!(t("[1970-01-01 00:00:00 +0000]"), 0);
        assert_eq!(t("[2000-03-01 00:00:00 +0000]"), 951_868_800);
        for bad in [
            "[2026-02-29 00:00:00 +0000]",
            "[2026-13-01 00:00:00 +0000]",
            "[2026-01-01 24:00:00 +0000]",
            "[2026-01-01 00:00:00 0000]",
            "[2026-01-01 00:00:00 +0000 ",
            "2026-01-01 00:00:00 +0000]",
        ] {
            assert_eq!(parse_time(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn header_edge_cases() {
        let l = parse_line(b"[2026-11-23 18:45:03 +0000] [1] [INFO] \r\n").unwrap();
        assert_eq!(l.event, Event::Other { message: b"" });
        assert!(parse_line(b"[2026-11-23 18:45:03 +0000] [1] [INFO]").is_some());
        assert_eq!(
            parse_line(b"[2026-11-23 18:45:03 +0000] [1] [NOTICE] x"),
            None
        );
        assert_eq!(
            parse_line(b"[2026-11-23 18:45:03 +0000] [4294967296] [INFO] x"),
            None
        );
        assert_eq!(parse_line(b"[2026-11-23 18:45:03 +0000] [1] [INFO]x"), None);
        assert_eq!(
            parse_message(b"Worker (pid:1) exited with code 256."),
            Event::Other {
                message: b"Worker (pid:1) exited with code 256."
            }
        );
        assert_eq!(
            parse_message(b"Worker (pid:5263) was sent code 139!"),
            Event::WorkerSignaled {
                pid: 5263,
                signal: libc::SIGSEGV
            }
        );
        assert_eq!(
            parse_message(b"Listening at: unix:/run/a (b).sock"),
            Event::Listening {
                addresses: "unix:/run/a (b).sock",
                master: None
            }
        );
        assert_eq!(
            parse_message(b"DIRTY WORKER TIMEOUT (pid:5)"),
            Event::Other {
                message: b"DIRTY WORKER TIMEOUT (pid:5)"
            }
        );
    }

    /// Every byte slice a parsed line borrows.
    fn borrowed<'a>(l: &LogLine<'a>) -> Vec<&'a [u8]> {
        match l.event {
            Event::Starting { version: s }
            | Event::Listening { addresses: s, .. }
            | Event::UsingWorker { class: s }
            | Event::ControlSocketListening { path: s }
            | Event::HangUp { master: s }
            | Event::ShuttingDown { master: s }
            | Event::HaltReason { reason: s }
            | Event::HandlingSignal {
                signal: MasterSignal::Other(s),
            } => vec![s.as_bytes()],
            Event::Other { message } => vec![message],
            _ => vec![],
        }
    }

    fn within(outer: &[u8], inner: &[u8]) -> bool {
        let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
        i >= o && i + inner.len() <= o + outer.len()
    }

    /// Real lines with bytes changed, cut or inserted.
    fn mutated_line() -> impl Strategy<Value = Vec<u8>> {
        let lines: Vec<&'static str> = fixtures()
            .into_iter()
            .flat_map(|(_, t)| t.lines())
            .collect();
        (
            proptest::sample::select(lines),
            proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..4),
        )
            .prop_map(|(line, edits)| {
                let mut b = line.as_bytes().to_vec();
                for (at, byte, op) in edits {
                    if b.is_empty() {
                        break;
                    }
                    let i = at.index(b.len());
                    match op {
                        0 => b[i] = byte,
                        1 => b.truncate(i),
                        _ => b.insert(i, byte),
                    }
                }
                b
            })
    }

    /// Seconds since the epoch counted day by day, to check the arithmetic.
    fn reference_epoch(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64, off: i64) -> i64 {
        let mut days = 0;
        for year in 1970..y {
            days += if days_in_month(year, 2) == 29 {
                366
            } else {
                365
            };
        }
        for m in 1..mo {
            days += days_in_month(y, m);
        }
        days += d - 1;
        days * 86400 + h * 3600 + mi * 60 + s - off
    }

    proptest! {
        #[test]
        fn never_panics_on_bytes(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some(l) = parse_line(&b) {
                for s in borrowed(&l) {
                    prop_assert!(within(&b, s));
                }
            }
        }

        #[test]
        fn mutated_real_lines_borrow_only_from_themselves(b in mutated_line()) {
            let first = parse_line(&b);
            if let Some(l) = first {
                for s in borrowed(&l) {
                    prop_assert!(within(&b, s));
                }
            }
            // A line's value depends on that line alone: an owned copy, in
            // another buffer, parses the same.
            let copy = b.clone();
            prop_assert_eq!(parse_line(&copy), first);
        }

        #[test]
        fn times_match_day_by_day_counting(
            y in 1970i64..2200, mo in 1i64..=12, d in 1i64..=31,
            h in 0i64..24, mi in 0i64..60, s in 0i64..60,
            neg in any::<bool>(), oh in 0i64..15, om in prop::sample::select(vec![0i64, 30, 45]),
        ) {
            let d = d.min(days_in_month(y, mo));
            let stamp = format!(
                "[{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} {}{oh:02}{om:02}]",
                if neg { '-' } else { '+' }
            );
            let off = (if neg { -1 } else { 1 }) * (oh * 3600 + om * 60);
            prop_assert_eq!(parse_time(stamp.as_bytes()), Some(reference_epoch(y, mo, d, h, mi, s, off)));
        }

        /// Gunicorn's own format strings, filled with arbitrary values.
        #[test]
        fn formatted_events_round_trip(pid in 1u32.., code in 1u8.., sig in prop::sample::select(vec![
            ("SIGKILL! Perhaps out of memory?", 9), ("SIGTERM!", 15), ("SIGSEGV!", 11),
            ("SIGABRT!", 6), ("SIGBUS!", 7), ("signal 40!", 40), ("code 137!", 9),
        ])) {
            let cases = [
                (format!("Booting worker with pid: {pid}"), Event::BootingWorker { pid }),
                (format!("WORKER TIMEOUT (pid:{pid})"), Event::WorkerTimeout { pid }),
                (format!("Worker exiting (pid: {pid})"), Event::WorkerExiting { pid }),
                (format!("Worker (pid:{pid}) exited with code {code}."), Event::WorkerExited { pid, code }),
                (format!("Worker (pid:{pid}) exited with code {code}"), Event::WorkerExited { pid, code }),
                (format!("Worker (pid:{pid}) was sent {}", sig.0), Event::WorkerSignaled { pid, signal: sig.1 }),
                (
                    format!("Worker with pid {pid} was terminated due to signal {}", sig.1),
                    Event::WorkerSignaled { pid, signal: sig.1 },
                ),
            ];
            for (message, want) in cases {
                let line = format!("[2026-11-23 18:45:03 +0000] [77] [ERROR] {message}\n");
                prop_assert_eq!(parse_line(line.as_bytes()).map(|l| l.event), Some(want));
            }
        }
    }
}
