//! Which processes belong to which pool, and where each pool listens: what
//! the pool source publishes for the other sources. The kernel source
//! attributes an OOM victim by it; the nginx source ties an upstream to the
//! pool that serves it.

use std::net::SocketAddr;
use std::sync::Arc;

use super::timeline::Process;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolIndex {
    pub pools: Vec<PoolMembers>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolMembers {
    pub name: Arc<str>,
    pub master: Option<Process>,
    pub workers: Vec<Process>,
    /// Where the master listens for the app (Gunicorn's control socket is
    /// not among them).
    pub listeners: Vec<PoolListener>,
}

/// One listening socket of a pool's master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolListener {
    /// `unix:/path` or `host:port`, written the way nginx writes an
    /// upstream: the key that ties an upstream to its pool, and the
    /// `listener` label.
    pub name: String,
    /// The socket's inode, as in /proc/PID/fd.
    pub inode: u64,
    /// The local address of a TCP listener; `None` for a unix socket.
    pub tcp: Option<SocketAddr>,
}

impl PoolIndex {
    /// The pools whose master listens where `upstream` points.
    pub fn serving<'a>(&'a self, upstream: &'a str) -> impl Iterator<Item = &'a Arc<str>> {
        self.pools
            .iter()
            .filter(move |p| p.listeners.iter().any(|l| serves(&l.name, upstream)))
            .map(|p| &p.name)
    }

    pub fn get(&self, pool: &str) -> Option<&PoolMembers> {
        self.pools.iter().find(|p| &*p.name == pool)
    }
}

/// Whether an upstream as nginx logs it is served by `listen`: the same
/// unix path, or the same port on the same address or on a wildcard one.
pub fn serves(listen: &str, upstream: &str) -> bool {
    if listen == upstream {
        return true;
    }
    if listen.starts_with("unix:") || upstream.starts_with("unix:") {
        return false;
    }
    let (Ok(l), Ok(u)) = (listen.parse::<SocketAddr>(), upstream.parse::<SocketAddr>()) else {
        return false;
    };
    l.port() == u.port() && (l.ip().is_unspecified() || l.ip() == u.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_matching() {
        assert!(serves("unix:/run/app.sock", "unix:/run/app.sock"));
        assert!(!serves("unix:/run/app.sock", "unix:/run/other.sock"));
        assert!(serves("127.0.0.1:8000", "127.0.0.1:8000"));
        assert!(serves("0.0.0.0:8000", "127.0.0.1:8000"));
        assert!(serves("[::]:8000", "[::1]:8000"));
        assert!(!serves("127.0.0.1:8000", "127.0.0.1:8001"));
        assert!(!serves("10.0.0.1:8000", "127.0.0.1:8000"));
        assert!(!serves("127.0.0.1:8000", "backend_group"));
        assert!(!serves("unix:/a", "127.0.0.1:1"));
    }

    #[test]
    fn pools_serving_an_upstream() {
        let pool = |name: &str, listeners: &[&str]| PoolMembers {
            name: Arc::from(name),
            master: None,
            workers: Vec::new(),
            listeners: listeners
                .iter()
                .enumerate()
                .map(|(i, s)| PoolListener {
                    name: s.to_string(),
                    inode: i as u64 + 1,
                    tcp: s.parse().ok(),
                })
                .collect(),
        };
        let idx = PoolIndex {
            pools: vec![
                pool("api", &["unix:/run/api.sock", "0.0.0.0:8000"]),
                pool("web", &["127.0.0.1:9000"]),
            ],
        };
        let names = |u| idx.serving(u).map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(names("unix:/run/api.sock"), ["api"]);
        assert_eq!(names("127.0.0.1:8000"), ["api"]);
        assert_eq!(names("127.0.0.1:9000"), ["web"]);
        assert!(names("10.0.0.1:9000").is_empty());
        assert!(idx.get("web").is_some() && idx.get("x").is_none());
    }
}
