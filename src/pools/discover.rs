//! Finding a pool's master: from a pidfile, from a command-line regex, or by
//! auto-discovering Gunicorn masters. The text rules are pure functions.

use std::collections::HashMap;

use regex::Regex;

use super::proc::{ProcEntry, ProcId};

/// The pid in a pidfile: the first line, trimmed. Gunicorn writes `1234\n`.
pub fn parse_pidfile(text: &str) -> Option<i32> {
    text.lines()
        .next()?
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
}

/// What a Gunicorn process's command line says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GunicornRole {
    /// `gunicorn: master [name]` (with setproctitle).
    Master,
    /// `gunicorn: worker [name]` (with setproctitle).
    Worker,
    /// A plain `.../gunicorn app:app` command line, shared by master and
    /// workers when setproctitle is not installed.
    Plain,
}

pub fn gunicorn_role(cmdline: &str) -> Option<GunicornRole> {
    if cmdline.starts_with("gunicorn: master") {
        return Some(GunicornRole::Master);
    }
    if cmdline.starts_with("gunicorn: worker") {
        return Some(GunicornRole::Worker);
    }
    let mut args = cmdline.split(' ');
    let first = args.next()?;
    let is_gunicorn = |a: &str| a == "gunicorn" || a.ends_with("/gunicorn");
    if is_gunicorn(first) {
        return Some(GunicornRole::Plain);
    }
    // `python /venv/bin/gunicorn ...` or `python -m gunicorn ...`
    let base = first.rsplit('/').next().unwrap_or(first);
    if base.starts_with("python") {
        let mut prev = "";
        for a in args.take(4) {
            if is_gunicorn(a) && (prev != "-m" || a == "gunicorn") {
                return Some(GunicornRole::Plain);
            }
            prev = a;
        }
    }
    None
}

/// Whether a process with this comm (the kernel's task name, at most 15
/// bytes) can be Gunicorn: the script name, setproctitle's `gunicorn: ...`,
/// or the interpreter running it. Only these have their cmdline read.
pub fn may_be_gunicorn(comm: &[u8]) -> bool {
    comm.starts_with(b"gunicorn") || comm.starts_with(b"python") || comm.starts_with(b"pypy")
}

/// A stable pool name for a discovered Gunicorn master: the setproctitle
/// name, else `--name`, else the WSGI app argument, else `gunicorn`.
pub fn gunicorn_pool_name(cmdline: &str) -> String {
    let cmdline = cmdline.trim_end();
    if let Some(rest) = cmdline.strip_prefix("gunicorn: master [") {
        if let Some(name) = rest.strip_suffix(']') {
            return name.to_string();
        }
    }
    let args: Vec<&str> = cmdline.split(' ').filter(|a| !a.is_empty()).collect();
    let mut app = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        if a == "-n" || a == "--name" {
            if let Some(n) = args.get(i + 1) {
                return (*n).to_string();
            }
        }
        if let Some(n) = a.strip_prefix("--name=") {
            return n.to_string();
        }
        // The app is the positional argument of the form module:callable.
        if !a.starts_with('-') && a.contains(':') && !a.contains('/') {
            app = Some(a);
        }
        i += 1;
    }
    app.unwrap_or("gunicorn").to_string()
}

/// The master among processes whose command line matches: the earliest
/// started one whose parent does not match too. A plain Gunicorn command
/// line is shared by master and workers, so "top-most" is what tells them
/// apart.
pub fn topmost_matching(table: &[ProcEntry], matches: &HashMap<i32, bool>) -> Vec<ProcId> {
    let mut masters: Vec<ProcId> = table
        .iter()
        .filter(|e| matches.get(&e.id.pid).copied().unwrap_or(false))
        .filter(|e| !matches.get(&e.ppid).copied().unwrap_or(false))
        .map(|e| e.id)
        .collect();
    masters.sort_by_key(|id| (id.starttime, id.pid));
    masters
}

/// Evaluate a command-line regex over the table. `cmdline` reads one
/// process's command line (None when it vanished or is unreadable).
pub fn match_cmdlines(
    table: &[ProcEntry],
    re: &Regex,
    own_pid: i32,
    mut cmdline: impl FnMut(i32) -> Option<String>,
) -> HashMap<i32, bool> {
    table
        .iter()
        .filter(|e| e.id.pid != own_pid)
        .map(|e| {
            let m = cmdline(e.id.pid).map(|c| re.is_match(&c)).unwrap_or(false);
            (e.id.pid, m)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidfile() {
        assert_eq!(parse_pidfile("1234\n"), Some(1234));
        assert_eq!(parse_pidfile("  77  \nextra"), Some(77));
        assert_eq!(parse_pidfile(""), None);
        assert_eq!(parse_pidfile("abc"), None);
        assert_eq!(parse_pidfile("-1"), None);
    }

    #[test]
    fn gunicorn_roles_with_and_without_setproctitle() {
        assert_eq!(
            gunicorn_role("gunicorn: master [api]"),
            Some(GunicornRole::Master)
        );
        assert_eq!(
            gunicorn_role("gunicorn: worker [api]"),
            Some(GunicornRole::Worker)
        );
        assert_eq!(
            gunicorn_role("/venv/bin/python3 /venv/bin/gunicorn -w 4 app:app"),
            Some(GunicornRole::Plain)
        );
        assert_eq!(
            gunicorn_role("python3 -m gunicorn app:app"),
            Some(GunicornRole::Plain)
        );
        assert_eq!(gunicorn_role("gunicorn app:app"), Some(GunicornRole::Plain));
        assert_eq!(gunicorn_role("vim gunicorn.conf.py"), None);
        assert_eq!(gunicorn_role("python3 manage.py runserver"), None);
        assert_eq!(gunicorn_role(""), None);
    }

    #[test]
    fn comm_prefilter() {
        for c in [
            "gunicorn",
            "gunicorn: maste",
            "python3",
            "python3.11",
            "python",
            "pypy3",
        ] {
            assert!(may_be_gunicorn(c.as_bytes()), "{c}");
        }
        for c in ["nginx", "uwsgi", "bash", "php-fpm8.2", "systemd"] {
            assert!(!may_be_gunicorn(c.as_bytes()), "{c}");
        }
    }

    #[test]
    fn gunicorn_names() {
        assert_eq!(gunicorn_pool_name("gunicorn: master [api]"), "api");
        assert_eq!(
            gunicorn_pool_name(
                "/v/bin/python /v/bin/gunicorn -w 2 -b 127.0.0.1:8000 shop.wsgi:application"
            ),
            "shop.wsgi:application"
        );
        assert_eq!(
            gunicorn_pool_name("/v/bin/gunicorn --name billing app:app"),
            "billing"
        );
        assert_eq!(gunicorn_pool_name("/v/bin/gunicorn --name=b app:app"), "b");
        assert_eq!(gunicorn_pool_name("/v/bin/gunicorn -c conf.py"), "gunicorn");
    }

    #[test]
    fn topmost_is_the_master() {
        let e = |pid, ppid, st| ProcEntry::new(ProcId { pid, starttime: st }, ppid, b"x");
        let table = vec![
            e(1, 0, 1),
            e(10, 1, 5),
            e(11, 10, 6),
            e(12, 10, 7),
            e(20, 1, 3),
        ];
        let matches: HashMap<i32, bool> =
            [(1, false), (10, true), (11, true), (12, true), (20, true)].into();
        let m = topmost_matching(&table, &matches);
        assert_eq!(
            m,
            vec![
                ProcId {
                    pid: 20,
                    starttime: 3
                },
                ProcId {
                    pid: 10,
                    starttime: 5
                }
            ]
        );
    }
}
