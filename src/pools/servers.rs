//! Per-server rules over process titles: which of a master's children are
//! its workers, which number the server gives each (its slot), and how a
//! master of each server is discovered. One row per server; pure functions
//! over the command line, tested on the titles the real servers set.
//!
//! | server | master | worker (slot) | not a worker |
//! |---|---|---|---|
//! | uWSGI (`--auto-procname`) | `uWSGI master` | `uWSGI worker 1` (1) | `uWSGI mule 1`, `uWSGI spooler`, `uWSGI http 1`, any other `uWSGI ...` title |
//! | uWSGI (without it) | `uwsgi --ini app.ini` | the same command line as the master: counted as a worker, mules and spooler too (they can't be told apart without a title) | |
//! | php-fpm | `php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)` | `php-fpm: pool www` (lowest free slot) | `php-fpm: master process ...` |
//! | Puma (cluster) | `puma 5.6.5 (tcp://0.0.0.0:3000) [app]` | `puma: cluster worker 0: 4242 [app]` (0) | any other title |
//! | Unicorn | `unicorn master -c unicorn.rb` | `unicorn worker[0] -c unicorn.rb` (0) | `unicorn master ...`: the new master of a USR2 hot restart |
//!
//! Gunicorn has no row: every child is a worker, on the lowest free slot,
//! except a new master of a USR2 hot restart, still titled `gunicorn:
//! master` (setproctitle) once a worker would have retitled itself
//! (`Tracker::without_new_masters`).
//!
//! A child still showing its master's command line has not set its title
//! yet (it does so right after the fork): it is undecided until it does,
//! or until [`UNDECIDED_GRACE`] has passed, when it is counted as a worker
//! on the lowest free slot, as before.

use std::time::Duration;

use crate::config::Server;

/// How long a child may keep its master's command line before it is
/// counted as a worker anyway.
pub const UNDECIDED_GRACE: Duration = Duration::from_secs(2);

/// What a master's child is, by its title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildRole {
    /// A worker, with the number the server gives it when it gives one.
    Worker(Option<usize>),
    /// A mule, a spooler, a new master: not counted.
    Other,
    /// Its title is still its master's.
    Undecided,
}

/// What a process's command line says it is, for discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Title {
    Master,
    Worker,
    /// A command line shared by master and workers (uWSGI without
    /// `--auto-procname`): the top-most one is the master.
    Plain,
}

/// One server's rules.
pub struct Preset {
    pub server: Server,
    /// Whether a process with this comm may be the server: only these have
    /// their command line read during discovery.
    pub may_be: fn(&[u8]) -> bool,
    pub title: fn(&str) -> Option<Title>,
    /// A stable pool name for a discovered master.
    pub pool_name: fn(&str) -> String,
    /// A child's role from its command line (see [`child_role`], which
    /// first compares it with its master's).
    pub child: fn(&str) -> ChildRole,
}

impl std::fmt::Debug for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Preset({})", self.server.as_str())
    }
}

pub static PRESETS: &[Preset] = &[
    Preset {
        server: Server::Uwsgi,
        may_be: |c| c.starts_with(b"uwsgi") || c.starts_with(b"uWSGI"),
        title: uwsgi_title,
        pool_name: uwsgi_pool_name,
        child: uwsgi_child,
    },
    Preset {
        server: Server::PhpFpm,
        may_be: |c| c.starts_with(b"php-fpm"),
        title: |c| {
            if c.starts_with("php-fpm: master process") {
                Some(Title::Master)
            } else if c.starts_with("php-fpm: pool ") {
                Some(Title::Worker)
            } else {
                None
            }
        },
        pool_name: |_| "php-fpm".to_string(),
        child: |c| {
            if c.starts_with("php-fpm: pool ") {
                ChildRole::Worker(None)
            } else if c.starts_with("php-fpm: ") {
                ChildRole::Other
            } else {
                ChildRole::Undecided
            }
        },
    },
    Preset {
        server: Server::Puma,
        may_be: |c| c.starts_with(b"puma") || c.starts_with(b"ruby") || c.starts_with(b"bundle"),
        title: |c| {
            if c.starts_with("puma: cluster worker ") {
                Some(Title::Worker)
            } else if c.starts_with("puma ") && c.contains(" (") {
                Some(Title::Master)
            } else {
                None
            }
        },
        pool_name: |c| bracketed(c).unwrap_or("puma").to_string(),
        child: |c| match c.strip_prefix("puma: cluster worker ") {
            Some(rest) => ChildRole::Worker(leading_number(rest)),
            None if c.starts_with("puma") => ChildRole::Other,
            None => ChildRole::Undecided,
        },
    },
    Preset {
        server: Server::Unicorn,
        may_be: |c| c.starts_with(b"unicorn") || c.starts_with(b"ruby") || c.starts_with(b"bundle"),
        title: |c| {
            let rest = c
                .strip_prefix("unicorn_rails ")
                .or_else(|| c.strip_prefix("unicorn "))?;
            if rest.starts_with("master") {
                Some(Title::Master)
            } else if rest.starts_with("worker[") {
                Some(Title::Worker)
            } else {
                None
            }
        },
        pool_name: |_| "unicorn".to_string(),
        child: |c| {
            let Some(rest) = c
                .strip_prefix("unicorn_rails ")
                .or_else(|| c.strip_prefix("unicorn "))
            else {
                return ChildRole::Undecided;
            };
            match rest.strip_prefix("worker[") {
                Some(n) => ChildRole::Worker(leading_number(n)),
                None if rest.starts_with("master") => ChildRole::Other,
                None => ChildRole::Undecided,
            }
        },
    },
];

/// The rules of `server`; Gunicorn and generic pools have none (every
/// child is a worker, on the lowest free slot).
pub fn preset(server: Server) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.server == server)
}

/// A child's role: by its own title, and undecided while it still shows
/// its master's command line.
pub fn child_role(p: &Preset, child: &str, master: Option<&str>) -> ChildRole {
    if master.is_some_and(|m| m == child) {
        return ChildRole::Undecided;
    }
    (p.child)(child)
}

/// The php-fpm pool a child serves, from its title `php-fpm: pool www`.
pub fn php_fpm_pool(title: &str) -> Option<&str> {
    title
        .strip_prefix("php-fpm: pool ")
        .map(|p| p.trim_end())
        .filter(|p| !p.is_empty())
}

fn leading_number(s: &str) -> Option<usize> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    s[..n].parse().ok()
}

/// The last `[name]` of a title.
fn bracketed(s: &str) -> Option<&str> {
    let s = s.trim_end();
    let inner = s.strip_suffix(']')?;
    let open = inner.rfind('[')?;
    Some(&inner[open + 1..]).filter(|n| !n.is_empty())
}

fn uwsgi_title(c: &str) -> Option<Title> {
    if let Some(rest) = c.strip_prefix("uWSGI ") {
        return Some(if rest.starts_with("master") {
            Title::Master
        } else {
            Title::Worker
        });
    }
    let first = c.split(' ').next()?;
    let base = first.rsplit('/').next().unwrap_or(first);
    (base == "uwsgi" || base == "uwsgi-core").then_some(Title::Plain)
}

fn uwsgi_child(c: &str) -> ChildRole {
    match c.strip_prefix("uWSGI ") {
        Some(rest) => match rest.strip_prefix("worker ") {
            Some(n) => ChildRole::Worker(leading_number(n)),
            None => ChildRole::Other,
        },
        None => ChildRole::Undecided,
    }
}

/// `--ini`, `--wsgi-file`, `--module` or `-w` names a uWSGI pool: the file's
/// stem or the module; else `uwsgi`.
fn uwsgi_pool_name(c: &str) -> String {
    let args: Vec<&str> = c.split(' ').filter(|a| !a.is_empty()).collect();
    for w in args.windows(2) {
        if matches!(
            w[0],
            "--ini" | "--yaml" | "--wsgi-file" | "--module" | "-w" | "--file"
        ) {
            let base = w[1].rsplit('/').next().unwrap_or(w[1]);
            let stem = base.split('.').next().unwrap_or(base);
            if !stem.is_empty() {
                return stem.to_string();
            }
        }
    }
    "uwsgi".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(server: Server, child: &str, master: &str) -> ChildRole {
        child_role(preset(server).unwrap(), child, Some(master))
    }

    /// The titles the real servers set (uWSGI 2.0.21 and php-fpm 8.2 seen
    /// with ps; Puma's and Unicorn's from their sources).
    #[test]
    fn children_by_title() {
        use ChildRole::*;
        let m = "uWSGI master";
        assert_eq!(role(Server::Uwsgi, "uWSGI worker 3", m), Worker(Some(3)));
        assert_eq!(role(Server::Uwsgi, "uWSGI mule 1", m), Other);
        assert_eq!(role(Server::Uwsgi, "uWSGI spooler", m), Other);
        let plain = "uwsgi --ini /etc/app.ini";
        assert_eq!(role(Server::Uwsgi, plain, plain), Undecided);
        let m = "php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)";
        assert_eq!(role(Server::PhpFpm, "php-fpm: pool www", m), Worker(None));
        assert_eq!(role(Server::PhpFpm, m, m), Undecided);
        let m = "puma 5.6.5 (tcp://0.0.0.0:3000) [app]";
        assert_eq!(
            role(Server::Puma, "puma: cluster worker 2: 4242 [app]", m),
            Worker(Some(2))
        );
        let m = "unicorn master -c unicorn.rb";
        assert_eq!(
            role(Server::Unicorn, "unicorn worker[1] -c unicorn.rb", m),
            Worker(Some(1))
        );
        assert_eq!(
            role(
                Server::Unicorn,
                "unicorn master -c unicorn.rb",
                "unicorn master (old) -c unicorn.rb"
            ),
            Other,
            "the new master of a hot restart"
        );
        assert!(preset(Server::Gunicorn).is_none());
        assert_eq!(php_fpm_pool("php-fpm: pool admin"), Some("admin"));
        assert_eq!(php_fpm_pool("php-fpm: master process (x)"), None);
    }

    #[test]
    fn masters_and_names_for_discovery() {
        let u = preset(Server::Uwsgi).unwrap();
        assert_eq!((u.title)("uWSGI master"), Some(Title::Master));
        assert_eq!((u.title)("uWSGI worker 1"), Some(Title::Worker));
        assert_eq!(
            (u.title)("/usr/bin/uwsgi --ini /etc/uwsgi/shop.ini"),
            Some(Title::Plain)
        );
        assert_eq!((u.title)("vim uwsgi.ini"), None);
        assert_eq!((u.pool_name)("uwsgi --ini /etc/uwsgi/shop.ini"), "shop");
        assert_eq!((u.pool_name)("uWSGI master"), "uwsgi");
        let p = preset(Server::Puma).unwrap();
        assert_eq!(
            (p.title)("puma 5.6.5 (tcp://0.0.0.0:3000) [billing]"),
            Some(Title::Master)
        );
        assert_eq!(
            (p.pool_name)("puma 5.6.5 (tcp://0.0.0.0:3000) [billing]"),
            "billing"
        );
        let f = preset(Server::PhpFpm).unwrap();
        assert!((f.may_be)(b"php-fpm8.2"));
        assert!(!(f.may_be)(b"nginx"));
        let n = preset(Server::Unicorn).unwrap();
        assert_eq!(
            (n.title)("unicorn_rails master -c config/unicorn.rb -E production"),
            Some(Title::Master)
        );
    }
}
