//! The YAML configuration: pools, nginx logs and the kernel source.
//!
//! Unknown keys are rejected (`deny_unknown_fields`); serde_norway's error
//! carries the line and column, so the message names both the key and where
//! it is.

use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The cause is part of the message (not a `source`), so that printing
    // the error chain does not repeat it.
    #[error("reading config file {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("config file {path}: {err}")]
    Yaml {
        path: PathBuf,
        err: serde_norway::Error,
    },
    #[error("config file {path}: {what}")]
    Invalid { path: PathBuf, what: String },
}

/// The app server a pool runs. The preset decides how the master and its
/// workers are recognised from their command lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Server {
    Gunicorn,
    Uwsgi,
    Puma,
    Unicorn,
    PhpFpm,
    Generic,
}

impl Server {
    pub fn as_str(self) -> &'static str {
        match self {
            Server::Gunicorn => "gunicorn",
            Server::Uwsgi => "uwsgi",
            Server::Puma => "puma",
            Server::Unicorn => "unicorn",
            Server::PhpFpm => "php-fpm",
            Server::Generic => "generic",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub name: String,
    #[serde(default = "default_server")]
    pub server: Server,
    pub pidfile: Option<PathBuf>,
    pub cmdline: Option<String>,
    pub log_file: Option<PathBuf>,
    /// Upper bound on slots; workers beyond it are counted in the pool
    /// totals but get no per-slot series.
    pub max_slots: Option<usize>,
    /// Gunicorn's control socket, when the search among the master's
    /// listening sockets cannot tell it (several candidates).
    pub control_socket: Option<PathBuf>,
}

fn default_server() -> Server {
    Server::Generic
}

/// How a pool's master is found.
#[derive(Debug, Clone)]
pub enum Matcher {
    Pidfile(PathBuf),
    Cmdline(Regex),
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub name: String,
    pub server: Server,
    pub matcher: Matcher,
    pub log_file: Option<PathBuf>,
    pub max_slots: usize,
    pub control_socket: Option<PathBuf>,
}

pub const DEFAULT_MAX_SLOTS: usize = 256;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NginxConfig {
    pub name: String,
    pub access_log: Option<PathBuf>,
    /// The `log_format` body as written in nginx.conf, or a built-in name
    /// (`combined`, `main`).
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// `default`, `json` or `none`, as nginx's `escape=` parameter.
    #[serde(default)]
    pub escape: Option<String>,
    pub error_log: Option<PathBuf>,
}

fn default_log_format() -> String {
    "combined".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelConfig {
    #[serde(default = "default_true")]
    pub kmsg: bool,
    #[serde(default = "default_kmsg_path")]
    pub kmsg_path: PathBuf,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            kmsg: true,
            kmsg_path: default_kmsg_path(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_kmsg_path() -> PathBuf {
    PathBuf::from("/dev/kmsg")
}

/// Auto-discovery of pools that are not configured by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Discover {
    Gunicorn,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    pools: Vec<RawPool>,
    #[serde(default)]
    discover: Vec<Discover>,
    #[serde(default)]
    nginx: Vec<NginxConfig>,
    #[serde(default)]
    kernel: KernelConfig,
    /// Upper bound on distinct `upstream` label values per log.
    #[serde(default = "default_max_upstreams")]
    max_upstreams: usize,
}

fn default_max_upstreams() -> usize {
    32
}

#[derive(Debug, Clone)]
pub struct Config {
    pub pools: Vec<PoolConfig>,
    pub discover: Vec<Discover>,
    pub nginx: Vec<NginxConfig>,
    pub kernel: KernelConfig,
    pub max_upstreams: usize,
    /// Where the config came from, for the landing page.
    pub origin: String,
}

/// The configuration used when no file is given: discover Gunicorn masters,
/// and read nginx's default logs where they exist.
pub const EMBEDDED_DEFAULT: &str = "\
discover: [gunicorn]
";

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            path: path.to_path_buf(),
            err,
        })?;
        Config::parse(&text, path)
    }

    pub fn embedded_default() -> Config {
        let mut cfg = Config::parse(EMBEDDED_DEFAULT, Path::new("<embedded default>"))
            .expect("the embedded default config parses");
        let access = Path::new("/var/log/nginx/access.log");
        let error = Path::new("/var/log/nginx/error.log");
        if access.exists() || error.exists() {
            cfg.nginx.push(NginxConfig {
                name: "nginx".to_string(),
                access_log: access.exists().then(|| access.to_path_buf()),
                log_format: default_log_format(),
                escape: None,
                error_log: error.exists().then(|| error.to_path_buf()),
            });
        }
        cfg
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |what: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            what,
        };
        // An empty file is a valid, empty config rather than a YAML error.
        let raw: RawConfig = if text.trim().is_empty() {
            serde_norway::from_str("{}")
        } else {
            serde_norway::from_str(text)
        }
        .map_err(|err| ConfigError::Yaml {
            path: path.to_path_buf(),
            err,
        })?;

        let mut pools = Vec::with_capacity(raw.pools.len());
        for (i, p) in raw.pools.into_iter().enumerate() {
            if p.name.is_empty() {
                return Err(invalid(format!("pools[{i}]: name must not be empty")));
            }
            if pools.iter().any(|q: &PoolConfig| q.name == p.name) {
                return Err(invalid(format!(
                    "pools[{i}]: duplicate pool name {:?}",
                    p.name
                )));
            }
            let matcher = match (p.pidfile, p.cmdline) {
                (Some(f), None) => Matcher::Pidfile(f),
                (None, Some(re)) => Matcher::Cmdline(Regex::new(&re).map_err(|e| {
                    invalid(format!("pools[{i}] ({}): cmdline regex: {e}", p.name))
                })?),
                (Some(_), Some(_)) => {
                    return Err(invalid(format!(
                        "pools[{i}] ({}): give either pidfile or cmdline, not both",
                        p.name
                    )))
                }
                (None, None) => {
                    return Err(invalid(format!(
                        "pools[{i}] ({}): needs a matcher: pidfile or cmdline",
                        p.name
                    )))
                }
            };
            if p.control_socket.is_some() && p.server != Server::Gunicorn {
                return Err(invalid(format!(
                    "pools[{i}] ({}): control_socket is for server: gunicorn",
                    p.name
                )));
            }
            pools.push(PoolConfig {
                name: p.name,
                server: p.server,
                matcher,
                log_file: p.log_file,
                max_slots: p.max_slots.unwrap_or(DEFAULT_MAX_SLOTS).max(1),
                control_socket: p.control_socket,
            });
        }
        for (i, n) in raw.nginx.iter().enumerate() {
            if n.access_log.is_none() && n.error_log.is_none() {
                return Err(invalid(format!(
                    "nginx[{i}] ({}): needs access_log, error_log or both",
                    n.name
                )));
            }
            if raw.nginx[..i].iter().any(|m| m.name == n.name) {
                return Err(invalid(format!("nginx[{i}]: duplicate name {:?}", n.name)));
            }
        }
        Ok(Config {
            pools,
            discover: raw.discover,
            nginx: raw.nginx,
            kernel: raw.kernel,
            max_upstreams: raw.max_upstreams.max(1),
            origin: path.display().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.yml"))
    }

    #[test]
    fn parses_the_documented_example() {
        let cfg = parse(
            "pools:\n  - name: api\n    server: gunicorn\n    pidfile: /run/gunicorn/api.pid\n    log_file: /var/log/gunicorn/error.log\n  - name: web\n    server: php-fpm\n    cmdline: 'php-fpm: master'\n",
        )
        .unwrap();
        assert_eq!(cfg.pools.len(), 2);
        assert_eq!(cfg.pools[0].name, "api");
        assert_eq!(cfg.pools[0].server, Server::Gunicorn);
        assert!(
            matches!(cfg.pools[0].matcher, Matcher::Pidfile(ref p) if p == Path::new("/run/gunicorn/api.pid"))
        );
        assert_eq!(cfg.pools[1].server, Server::PhpFpm);
        assert!(matches!(cfg.pools[1].matcher, Matcher::Cmdline(_)));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse("pools:\n  - name: api\n    pidfle: /run/x.pid\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("pidfle"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("test.yml"), "{err}");
    }

    #[test]
    fn unknown_top_level_key_is_an_error() {
        let err = parse("pools: []\nngnix: []\n").unwrap_err().to_string();
        assert!(err.contains("ngnix") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn matcher_is_required_and_exclusive() {
        let err = parse("pools:\n  - name: api\n").unwrap_err().to_string();
        assert!(err.contains("needs a matcher"), "{err}");
        let err = parse("pools:\n  - name: api\n    pidfile: /a\n    cmdline: b\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not both"), "{err}");
    }

    #[test]
    fn bad_regex_and_duplicates_are_named() {
        let err = parse("pools:\n  - name: api\n    cmdline: '('\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("pools[0] (api): cmdline regex"), "{err}");
        let err = parse("pools:\n  - {name: a, pidfile: /x}\n  - {name: a, pidfile: /y}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate"), "{err}");
    }

    #[test]
    fn empty_file_and_embedded_default() {
        let cfg = parse("").unwrap();
        assert!(cfg.pools.is_empty());
        let cfg = Config::embedded_default();
        assert_eq!(cfg.discover, vec![Discover::Gunicorn]);
    }

    #[test]
    fn control_socket_overrides_the_search_for_gunicorn_only() {
        let cfg = parse(
            "pools:\n  - {name: a, server: gunicorn, pidfile: /x, control_socket: /run/a/ctl.sock}\n",
        )
        .unwrap();
        assert_eq!(
            cfg.pools[0].control_socket.as_deref(),
            Some(Path::new("/run/a/ctl.sock"))
        );
        let err = parse("pools:\n  - {name: a, server: uwsgi, pidfile: /x, control_socket: /c}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("pools[0] (a): control_socket"), "{err}");
    }

    #[test]
    fn unknown_server_preset_is_an_error() {
        let err = parse("pools:\n  - {name: a, server: tomcat, pidfile: /x}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tomcat"), "{err}");
    }
}
