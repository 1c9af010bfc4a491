//! The YAML configuration: pools, nginx logs and the kernel source.
//!
//! Unknown keys are rejected (`deny_unknown_fields`); serde_norway's error
//! carries the line and column, so the message names both the key and where
//! it is. The other checks run while the YAML is read, for the same
//! reason: a value (a `cmdline` regex, an `escape`) is checked by the
//! visitor that reads it, so its error has the value's line; an entry (a
//! pool, an nginx) is checked against the entries before it by the visitor
//! of its mapping, so its error has the entry's line and index
//! (`pools[1]`). A check this module cannot make (an nginx `log_format`,
//! which the nginx source compiles) is made by the caller, which finds the
//! value's line with [`locate`].

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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
    #[serde(default, deserialize_with = "cmdline_regex")]
    pub cmdline: Option<Regex>,
    pub log_file: Option<PathBuf>,
    /// Upper bound on slots; workers beyond it are counted in the pool
    /// totals but get no per-slot series.
    pub max_slots: Option<usize>,
    /// Gunicorn's control socket, when the search among the master's
    /// listening sockets cannot tell it (several candidates).
    pub control_socket: Option<PathBuf>,
    /// For a php-fpm master serving several pools: the one this pool is
    /// (`[www]` in php-fpm.conf). Children of its other pools are not
    /// counted, and their log lines are not read.
    pub php_fpm_pool: Option<String>,
    /// The server's status interface (uWSGI's stats server, php-fpm's
    /// status page, Puma's control app); see [`StatusEndpoint::parse`].
    pub status: Option<String>,
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

/// Two matchers are the same when they find the same master: the same
/// pidfile, or the same regex as written.
impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        match (self, other) {
            (Matcher::Pidfile(a), Matcher::Pidfile(b)) => a == b,
            (Matcher::Cmdline(a), Matcher::Cmdline(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    pub server: Server,
    pub matcher: Matcher,
    pub log_file: Option<PathBuf>,
    pub max_slots: usize,
    pub control_socket: Option<PathBuf>,
    pub php_fpm_pool: Option<String>,
    pub status: Option<StatusEndpoint>,
}

/// Where a server's status interface answers, from a pool's `status:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEndpoint {
    pub addr: StatusAddr,
    /// What is asked: `/status` (php-fpm), `/stats?token=...` (Puma);
    /// empty for uWSGI, whose stats server answers on connect.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusAddr {
    Unix(PathBuf),
    /// `host:port`, resolved at each connect.
    Tcp(String),
}

impl StatusEndpoint {
    /// A pool's `status:` for `server`:
    /// - uWSGI: its `--stats` address, `/run/uwsgi/stats.sock`,
    ///   `unix:/run/uwsgi/stats.sock` or `127.0.0.1:9191`;
    /// - php-fpm: the pool's FastCGI address and its `pm.status_path`,
    ///   `unix:/run/php/www.sock:/status` (nginx's spelling of a path on a
    ///   unix socket) or `127.0.0.1:9000/status`; the path defaults to
    ///   `/status`;
    /// - Puma: its `--control-url` and the stats path with the token,
    ///   `127.0.0.1:9293/stats?token=SECRET` or
    ///   `unix:/run/puma/ctl.sock:/stats?token=SECRET`; the path defaults
    ///   to `/stats`.
    ///
    /// `tcp://`, `http://` and `unix://` prefixes (Puma's and uWSGI's own
    /// spellings) are taken too.
    pub fn parse(server: Server, value: &str) -> Result<StatusEndpoint, String> {
        let default_path = match server {
            Server::Uwsgi => "",
            Server::PhpFpm => "/status",
            Server::Puma => "/stats",
            _ => return Err("status is for server: uwsgi, php-fpm or puma".to_string()),
        };
        let v = value.trim();
        let v = v
            .strip_prefix("tcp://")
            .or_else(|| v.strip_prefix("http://"))
            .unwrap_or(v);
        let unix = v
            .strip_prefix("unix://")
            .or_else(|| v.strip_prefix("unix:"))
            .or_else(|| v.starts_with('/').then_some(v));
        let (addr, path) = match unix {
            Some(rest) => {
                let (sock, path) = match rest.find(':') {
                    Some(i) => (&rest[..i], &rest[i + 1..]),
                    None => (rest, ""),
                };
                if !sock.starts_with('/') {
                    return Err(format!(
                        "status {value:?}: a unix socket needs an absolute path"
                    ));
                }
                (StatusAddr::Unix(PathBuf::from(sock)), path)
            }
            None => {
                let (hostport, path) = match v.find('/') {
                    Some(i) => (&v[..i], &v[i..]),
                    None => (v, ""),
                };
                let port = hostport
                    .rsplit_once(':')
                    .map(|(h, p)| (h, p.parse::<u16>()));
                match port {
                    Some((h, Ok(p))) if !h.is_empty() && p > 0 => {}
                    _ => {
                        return Err(format!(
                            "status {value:?}: not HOST:PORT, unix:/PATH or /PATH"
                        ))
                    }
                }
                (StatusAddr::Tcp(hostport.to_string()), path)
            }
        };
        if server == Server::Uwsgi && !path.is_empty() {
            return Err(format!(
                "status {value:?}: uWSGI's stats server takes no path"
            ));
        }
        if server == Server::PhpFpm && path.contains('?') {
            return Err(format!(
                "status {value:?}: give php-fpm's pm.status_path alone; the exporter asks for ?full&json"
            ));
        }
        let path = if path.is_empty() { default_path } else { path };
        let path = match (server, path.split_once('?')) {
            // Puma's token alone after the default path.
            (Server::Puma, Some(("", query))) => format!("{default_path}?{query}"),
            _ => path.to_string(),
        };
        Ok(StatusEndpoint { addr, path })
    }
}

pub const DEFAULT_MAX_SLOTS: usize = 256;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NginxConfig {
    pub name: String,
    pub access_log: Option<PathBuf>,
    /// The `log_format` body as written in nginx.conf, or a built-in name
    /// (`combined`, `main`).
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// `default`, `json` or `none`, as nginx's `escape=` parameter.
    #[serde(default, deserialize_with = "checked_escape")]
    pub escape: Option<String>,
    pub error_log: Option<PathBuf>,
}

fn default_log_format() -> String {
    "combined".to_string()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    Uwsgi,
    PhpFpm,
    Puma,
    Unicorn,
}

impl Discover {
    /// The server a discovered pool runs.
    pub fn server(self) -> Server {
        match self {
            Discover::Gunicorn => Server::Gunicorn,
            Discover::Uwsgi => Server::Uwsgi,
            Discover::PhpFpm => Server::PhpFpm,
            Discover::Puma => Server::Puma,
            Discover::Unicorn => Server::Unicorn,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default, deserialize_with = "pool_list")]
    pools: Vec<PoolConfig>,
    #[serde(default)]
    discover: Vec<Discover>,
    #[serde(default, deserialize_with = "nginx_list")]
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
        Ok(Config {
            pools: raw.pools,
            discover: raw.discover,
            nginx: raw.nginx,
            kernel: raw.kernel,
            max_upstreams: raw.max_upstreams.max(1),
            origin: path.display().to_string(),
        })
    }
}

/// One step of a key path in the YAML: a mapping key or a list index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Where the value at `path` (e.g. `nginx`, 0, `log_format`) is in the
/// YAML `text`: its line and column, counted from 1 as in serde_norway's
/// errors. `None` when the text has no such value. (A path through a
/// value that is not a map or a list gives that value's position.)
pub fn locate(text: &str, path: &[Step<'_>]) -> Option<(usize, usize)> {
    // The value's visitor refuses it: serde_norway marks the refusal with
    // the value's position.
    let e = Locate(path)
        .deserialize(serde_norway::Deserializer::from_str(text))
        .err()?;
    e.location().map(|l| (l.line(), l.column()))
}

/// An error about the value at `path`, found after parsing (by a caller
/// that knows what the config module does not), located in the file's
/// `text` so that it reads like a parse error.
pub fn error_at(file: &Path, text: &str, path: &[Step<'_>], what: &str) -> ConfigError {
    let mut key = String::new();
    for s in path {
        match s {
            Step::Key(k) if key.is_empty() => key.push_str(k),
            Step::Key(k) => {
                key.push('.');
                key.push_str(k);
            }
            Step::Index(i) => key.push_str(&format!("[{i}]")),
        }
    }
    let at = locate(text, path)
        .map(|(line, column)| format!(" at line {line} column {column}"))
        .unwrap_or_default();
    ConfigError::Invalid {
        path: file.to_path_buf(),
        what: format!("{key}: {what}{at}"),
    }
}

const HERE: &str = "<located>";

struct Locate<'a>(&'a [Step<'a>]);

impl<'de> DeserializeSeed<'de> for Locate<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.0.first() {
            None => d.deserialize_any(self),
            Some(Step::Key(_)) => d.deserialize_map(self),
            Some(Step::Index(_)) => d.deserialize_seq(self),
        }
    }
}

impl<'de> Visitor<'de> for Locate<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(HERE)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Step::Key(want), rest)) = self.0.split_first() else {
            return Err(de::Error::custom(HERE));
        };
        // Read to the end: serde_norway refuses a mapping left half read.
        while let Some(k) = map.next_key::<String>()? {
            if k == *want {
                map.next_value_seed(Locate(rest))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Step::Index(want), rest)) = self.0.split_first() else {
            return Err(de::Error::custom(HERE));
        };
        for _ in 0..*want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Locate(rest))?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    // Every other value is the one sought (or not a map or list where the
    // path needs one): refused, which marks it.
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(HERE))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }
}

/// A string checked as it is read, so that serde_norway puts the value's
/// line and key path on the error.
struct CheckedStr<T>(fn(&str) -> Result<T, String>);

impl<T> Visitor<'_> for CheckedStr<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v).map_err(E::custom)
    }
}

fn cmdline_regex<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Regex>, D::Error> {
    d.deserialize_str(CheckedStr(|s| {
        Regex::new(s).map_err(|e| format!("cmdline regex: {e}"))
    }))
    .map(Some)
}

fn checked_escape<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_str(CheckedStr(|s| match s {
        "default" | "json" | "none" => Ok(s.to_string()),
        o => Err(format!("escape {o:?}: expected default, json or none")),
    }))
    .map(Some)
}

/// A list whose entries are read as `T` and checked into `U` one by one,
/// each against the entries before it.
struct CheckedList<T, U> {
    check: fn(T, &[U]) -> Result<U, String>,
    raw: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>, U> Visitor<'de> for CheckedList<T, U> {
    type Value = Vec<U>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<U>, A::Error> {
        let mut out = Vec::new();
        while let Some(u) = seq.next_element_seed(CheckedEntry {
            check: self.check,
            before: &out,
            raw: PhantomData,
        })? {
            out.push(u);
        }
        Ok(out)
    }
}

/// One entry of a [`CheckedList`]: checked inside the visitor of its
/// mapping, so that the error carries the entry's line.
struct CheckedEntry<'a, T, U> {
    check: fn(T, &[U]) -> Result<U, String>,
    before: &'a [U],
    raw: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>, U> DeserializeSeed<'de> for CheckedEntry<'_, T, U> {
    type Value = U;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<U, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: Deserialize<'de>, U> Visitor<'de> for CheckedEntry<'_, T, U> {
    type Value = U;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<U, A::Error> {
        let raw = T::deserialize(de::value::MapAccessDeserializer::new(map))?;
        (self.check)(raw, self.before).map_err(de::Error::custom)
    }
}

fn pool_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PoolConfig>, D::Error> {
    d.deserialize_seq(CheckedList {
        check: pool_config,
        raw: PhantomData,
    })
}

fn nginx_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NginxConfig>, D::Error> {
    d.deserialize_seq(CheckedList {
        check: nginx_config,
        raw: PhantomData,
    })
}

fn pool_config(p: RawPool, before: &[PoolConfig]) -> Result<PoolConfig, String> {
    if p.name.is_empty() {
        return Err("name must not be empty".to_string());
    }
    if before.iter().any(|q| q.name == p.name) {
        return Err(format!("duplicate pool name {:?}", p.name));
    }
    let matcher = match (p.pidfile, p.cmdline) {
        (Some(f), None) => Matcher::Pidfile(f),
        (None, Some(re)) => Matcher::Cmdline(re),
        (Some(_), Some(_)) => {
            return Err(format!(
                "pool {:?}: give either pidfile or cmdline, not both",
                p.name
            ))
        }
        (None, None) => {
            return Err(format!(
                "pool {:?}: needs a matcher: pidfile or cmdline",
                p.name
            ))
        }
    };
    if p.control_socket.is_some() && p.server != Server::Gunicorn {
        return Err(format!(
            "pool {:?}: control_socket is for server: gunicorn",
            p.name
        ));
    }
    if p.php_fpm_pool.is_some() && p.server != Server::PhpFpm {
        return Err(format!(
            "pool {:?}: php_fpm_pool is for server: php-fpm",
            p.name
        ));
    }
    let status = match &p.status {
        Some(v) => Some(
            StatusEndpoint::parse(p.server, v).map_err(|e| format!("pool {:?}: {e}", p.name))?,
        ),
        None => None,
    };
    Ok(PoolConfig {
        name: p.name,
        server: p.server,
        matcher,
        log_file: p.log_file,
        max_slots: p.max_slots.unwrap_or(DEFAULT_MAX_SLOTS).max(1),
        control_socket: p.control_socket,
        php_fpm_pool: p.php_fpm_pool,
        status,
    })
}

fn nginx_config(n: NginxConfig, before: &[NginxConfig]) -> Result<NginxConfig, String> {
    if n.access_log.is_none() && n.error_log.is_none() {
        return Err(format!(
            "nginx {:?}: needs access_log, error_log or both",
            n.name
        ));
    }
    if before.iter().any(|m| m.name == n.name) {
        return Err(format!("duplicate nginx name {:?}", n.name));
    }
    Ok(n)
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
    fn bad_regex_and_duplicates_are_named_with_their_line() {
        let err = parse("pools:\n  - name: api\n    cmdline: '('\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pools[0].cmdline: cmdline regex") && err.contains("line 3"),
            "{err}"
        );
        let err = parse("pools:\n  - {name: a, pidfile: /x}\n  - {name: a, pidfile: /y}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pools[1]: duplicate pool name \"a\"") && err.contains("line 3"),
            "{err}"
        );
        let err =
            parse("pools:\n  - name: a\n    pidfile: /x\n  - name: b\n    server: gunicorn\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("pools[1]: pool \"b\": needs a matcher") && err.contains("line 4"),
            "{err}"
        );
    }

    #[test]
    fn values_are_located_by_their_key_path() {
        let text = "pools: []\nnginx:\n  - name: a\n    error_log: /e\n  - name: b\n    access_log: /x\n\n    log_format: |\n      $status\n";
        let at = |p: &[Step]| locate(text, p);
        use Step::{Index, Key};
        assert_eq!(
            at(&[Key("nginx"), Index(1), Key("log_format")]),
            Some((8, 17))
        );
        assert_eq!(at(&[Key("nginx"), Index(0), Key("name")]), Some((3, 11)));
        assert_eq!(at(&[Key("pools")]), Some((1, 8)));
        assert_eq!(at(&[Key("nginx"), Index(0), Key("log_format")]), None);
        assert_eq!(at(&[Key("nginx"), Index(2)]), None);
        assert_eq!(at(&[Key("kernel")]), None);
        let e = error_at(
            Path::new("c.yml"),
            text,
            &[Key("nginx"), Index(1), Key("log_format")],
            "no $status",
        );
        assert_eq!(
            e.to_string(),
            "config file c.yml: nginx[1].log_format: no $status at line 8 column 17"
        );
    }

    #[test]
    fn entries_and_values_are_checked_with_their_line() {
        // An unknown escape, an entry with no log, a duplicate.
        let cases = [
            (
                "nginx:\n  - name: edge\n    access_log: /x\n    escape: yaml\n",
                "nginx[0].escape: escape \"yaml\"",
                "line 4",
            ),
            (
                "nginx:\n  - name: a\n    access_log: /x\n  - name: b\n",
                "nginx[1]: nginx \"b\": needs access_log",
                "line 4",
            ),
            (
                "nginx:\n  - {name: a, error_log: /x}\n  - {name: a, error_log: /y}\n",
                "nginx[1]: duplicate nginx name",
                "line 3",
            ),
        ];
        for (yaml, what, line) in cases {
            let err = parse(yaml).unwrap_err().to_string();
            assert!(
                err.contains(what) && err.contains(line) && err.contains("test.yml"),
                "{yaml}\n{err}"
            );
        }
        let cfg = parse("nginx:\n  - name: edge\n    access_log: /x\n    escape: json\n").unwrap();
        assert_eq!(cfg.nginx[0].escape.as_deref(), Some("json"));
    }

    #[test]
    fn equal_configs_compare_equal() {
        let a = parse("pools:\n  - {name: a, cmdline: 'gunicorn: master \\[a\\]'}\nnginx:\n  - {name: e, error_log: /x}\n").unwrap();
        let b = parse("pools:\n  - {name: a, cmdline: 'gunicorn: master \\[a\\]'}\nnginx:\n  - {name: e, error_log: /x}\n").unwrap();
        let c = parse("pools:\n  - {name: a, cmdline: 'gunicorn: master \\[b\\]'}\n").unwrap();
        assert_eq!(a.pools, b.pools);
        assert_eq!(a.nginx, b.nginx);
        assert_ne!(a.pools, c.pools);
        assert_eq!(a.kernel, KernelConfig::default());
    }

    #[test]
    fn empty_file_and_embedded_default() {
        let cfg = parse("").unwrap();
        assert!(cfg.pools.is_empty());
        let cfg = Config::embedded_default();
        assert_eq!(cfg.discover, vec![Discover::Gunicorn]);
    }

    #[test]
    fn every_server_can_be_discovered() {
        let cfg = parse("discover: [gunicorn, uwsgi, php-fpm, puma, unicorn]\n").unwrap();
        let servers: Vec<Server> = cfg.discover.iter().map(|d| d.server()).collect();
        assert_eq!(
            servers,
            [
                Server::Gunicorn,
                Server::Uwsgi,
                Server::PhpFpm,
                Server::Puma,
                Server::Unicorn
            ]
        );
        assert!(parse("discover: [generic]\n").is_err());
    }

    #[test]
    fn php_fpm_pool_is_for_php_fpm_only() {
        let cfg = parse("pools:\n  - {name: a, server: php-fpm, pidfile: /x, php_fpm_pool: www}\n")
            .unwrap();
        assert_eq!(cfg.pools[0].php_fpm_pool.as_deref(), Some("www"));
        let err = parse("pools:\n  - {name: a, server: uwsgi, pidfile: /x, php_fpm_pool: www}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("php_fpm_pool is for server: php-fpm"), "{err}");
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
        assert!(
            err.contains("pools[0]: pool \"a\": control_socket") && err.contains("line 2"),
            "{err}"
        );
    }

    #[test]
    fn status_names_each_servers_interface_and_a_bad_one_names_the_pool() {
        let cfg = parse(concat!(
            "pools:\n",
            "  - {name: u, server: uwsgi, pidfile: /x, status: /run/u/stats.sock}\n",
            "  - {name: f, server: php-fpm, pidfile: /y, status: 'unix:/run/php/www.sock:/fpm-status'}\n",
            "  - {name: g, server: php-fpm, pidfile: /z, status: '127.0.0.1:9000'}\n",
            "  - {name: p, server: puma, pidfile: /w, status: 'tcp://127.0.0.1:9293/stats?token=s3'}\n",
            "  - {name: q, server: puma, pidfile: /v, status: 'unix:///run/p.sock:?token=t'}\n",
        ))
        .unwrap();
        let got: Vec<_> = cfg
            .pools
            .iter()
            .map(|p| p.status.clone().unwrap())
            .collect();
        let unix = |p: &str| StatusAddr::Unix(PathBuf::from(p));
        let tcp = |a: &str| StatusAddr::Tcp(a.to_string());
        let want = [
            (unix("/run/u/stats.sock"), ""),
            (unix("/run/php/www.sock"), "/fpm-status"),
            (tcp("127.0.0.1:9000"), "/status"),
            (tcp("127.0.0.1:9293"), "/stats?token=s3"),
            (unix("/run/p.sock"), "/stats?token=t"),
        ];
        for (g, (addr, path)) in got.iter().zip(want) {
            assert_eq!((&g.addr, g.path.as_str()), (&addr, path));
        }
        for (line, why) in [
            (
                "{name: a, server: unicorn, pidfile: /x, status: /s}",
                "status is for server: uwsgi, php-fpm or puma",
            ),
            (
                "{name: a, server: uwsgi, pidfile: /x, status: 'localhost'}",
                "not HOST:PORT",
            ),
            (
                "{name: a, server: uwsgi, pidfile: /x, status: 'unix:/s:/x'}",
                "takes no path",
            ),
            (
                "{name: a, server: php-fpm, pidfile: /x, status: '/s:/status?json'}",
                "pm.status_path alone",
            ),
            (
                "{name: a, server: puma, pidfile: /x, status: 'unix:s.sock'}",
                "absolute path",
            ),
        ] {
            let err = parse(&format!("pools:\n  - {line}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("pools[0]: pool \"a\": status") && err.contains(why),
                "{err}"
            );
        }
    }

    #[test]
    fn unknown_server_preset_is_an_error() {
        let err = parse("pools:\n  - {name: a, server: tomcat, pidfile: /x}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tomcat"), "{err}");
    }
}
