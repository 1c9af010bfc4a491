//! What a pool's master listens on: its unix socket paths and TCP
//! host:port pairs, from /proc/MASTER/fd and the master's own
//! /proc/MASTER/net/{unix,tcp,tcp6} (its network namespace).
//!
//! nginx names an upstream the same way (`unix:/run/app.sock`,
//! `127.0.0.1:8000`), which is how a 502 is tied to the pool behind it
//! (see `state::pool_index::serves`).

use std::collections::HashSet;

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
