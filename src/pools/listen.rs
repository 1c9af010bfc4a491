//! What a pool's master listens on: its unix socket paths and TCP
//! host:port pairs, from /proc/MASTER/fd and the master's own
//! /proc/MASTER/net/{unix,tcp,tcp6} (its network namespace).
//!
//! nginx names an upstream the same way (`unix:/run/app.sock`,
//! `127.0.0.1:8000`), which is how a 502 is tied to the pool behind it.

use std::collections::HashSet;
use std::net::SocketAddr;

use procfs::net::{TcpState, UnixState};
use procfs::process::{FDTarget, Process};

/// Listening addresses of `master`, written as nginx writes upstreams.
pub fn listen_addresses(master: &Process) -> Vec<String> {
    let Ok(fds) = master.fd() else {
        return Vec::new();
    };
    let inodes: HashSet<u64> = fds
        .flatten()
        .filter_map(|fd| match fd.target {
            FDTarget::Socket(i) => Some(i),
            _ => None,
        })
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    if let Ok(unix) = master.unix() {
        for u in unix {
            if u.state == UnixState::UNCONNECTED && inodes.contains(&u.inode) {
                if let Some(p) = u.path {
                    out.push(format!("unix:{}", p.display()));
                }
            }
        }
    }
    for tcp in [master.tcp(), master.tcp6()].into_iter().flatten() {
        for t in tcp {
            if t.state == TcpState::Listen && inodes.contains(&t.inode) {
                out.push(t.local_address.to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out
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
}
