//! Netlink readers (layer 1): the process events connector and sock_diag
//! lookups of listen queues. Each has a pure parser over the bytes the
//! kernel sends, tested on captures in fixtures/netlink/, and a small reader
//! that owns the socket. Nothing here knows pools, state or metrics.

pub mod proc_connector;
pub mod sock_diag;

/// What a source that needs the host's network namespace (the proc
/// connector, sock_diag on the pools' sockets) says when run in another:
/// the fix, in the words of the two usual ways of running it.
pub const NEEDS_HOST_NETWORK: &str =
    "needs the host network namespace: hostNetwork: true in Kubernetes, --network host in Docker";

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Waits until `fd` is readable (true) or `timeout` passes (false). A signal
/// ends the wait early with true: callers read (EAGAIN) and wait again.
fn poll_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // Round up, so that a sub-millisecond wait still waits.
    let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    match unsafe { libc::poll(&mut pfd, 1, ms) } {
        r if r > 0 => Ok(true),
        0 => Ok(false),
        _ => {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                Ok(true)
            } else {
                Err(e)
            }
        }
    }
}

/// The captures of tools/capture_netlink.py and the facts its MANIFEST
/// records about each (pids, inodes, expected queue lengths).
#[cfg(test)]
pub(crate) mod fixture {
    use std::collections::HashMap;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/netlink/6.18");

    pub fn load(name: &str) -> (Vec<u8>, HashMap<String, String>) {
        let bytes =
            std::fs::read(format!("{DIR}/{name}")).unwrap_or_else(|e| panic!("{DIR}/{name}: {e}"));
        let manifest = std::fs::read_to_string(format!("{DIR}/MANIFEST")).expect("MANIFEST");
        let line = manifest
            .lines()
            .find(|l| l.split(' ').next() == Some(name))
            .unwrap_or_else(|| panic!("{name} is not in {DIR}/MANIFEST"));
        let facts = line
            .split(' ')
            .skip(1)
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("key=value");
                (k.to_string(), v.to_string())
            })
            .collect();
        (bytes, facts)
    }

    pub fn num<T: std::str::FromStr>(facts: &HashMap<String, String>, key: &str) -> T {
        facts[key]
            .parse()
            .unwrap_or_else(|_| panic!("MANIFEST value of {key}: {:?}", facts[key]))
    }
}
