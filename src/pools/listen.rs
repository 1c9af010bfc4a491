//! What a pool's master listens on: its unix socket paths and TCP
//! host:port pairs, with their inodes, from /proc/MASTER/fd and the
//! master's own /proc/MASTER/net/{unix,tcp,tcp6} (its network namespace).
//!
//! nginx names an upstream the same way (`unix:/run/app.sock`,
//! `127.0.0.1:8000`), which is how a 502 is tied to the pool behind it
//! (see `state::pool_index::serves`). The inode is what the listen-queue
//! sampler asks sock_diag about, and what tells Gunicorn's control socket
//! from the app's sockets (the workers hold the app's, see
//! `gunicorn::control::find_control_socket`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use procfs::net::{TcpNetEntry, TcpState, UnixNetEntry, UnixState};
use procfs::process::{FDTarget, Process};
use procfs::ProcError;

/// Where a listening socket is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

/// One listening socket of a master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSocket {
    /// As nginx writes an upstream: `unix:/path` or `host:port`.
    pub name: String,
    pub inode: u64,
    pub addr: ListenAddr,
}

/// The socket inodes among the fds of `p`.
pub fn socket_inodes(p: &Process) -> Result<HashSet<u64>, ProcError> {
    Ok(p.fd()?
        .flatten()
        .filter_map(|fd| match fd.target {
            FDTarget::Socket(i) => Some(i),
            _ => None,
        })
        .collect())
}

/// The listening sockets of `master`, by name. An error when its fds
/// cannot be read (another user's process, without CAP_SYS_PTRACE); a
/// socket table that cannot be read adds nothing.
pub fn listen_sockets(master: &Process) -> Result<Vec<ListenSocket>, ProcError> {
    let inodes = socket_inodes(master)?;
    if inodes.is_empty() {
        return Ok(Vec::new());
    }
    let unix = master.unix().unwrap_or_default();
    let tcp = master.tcp().unwrap_or_default();
    let tcp6 = master.tcp6().unwrap_or_default();
    Ok(listening(&inodes, &unix, &[&tcp, &tcp6]))
}

/// The entries of the socket tables that listen and are among `inodes`
/// (the master's fds), sorted by name. A unix socket listens when it is
/// bound to a path, unconnected, and a stream (or seqpacket) socket: the
/// table has no listen flag the procfs crate parses, and a bound datagram
/// socket is unconnected too.
pub fn listening(
    inodes: &HashSet<u64>,
    unix: &[UnixNetEntry],
    tcp: &[&[TcpNetEntry]],
) -> Vec<ListenSocket> {
    let mut out = Vec::new();
    for u in unix {
        let stream = u.socket_type == libc::SOCK_STREAM as u16
            || u.socket_type == libc::SOCK_SEQPACKET as u16;
        if u.state != UnixState::UNCONNECTED || !stream || !inodes.contains(&u.inode) {
            continue;
        }
        // An abstract socket's path reads `@name`.
        if let Some(p) = &u.path {
            out.push(ListenSocket {
                name: format!("unix:{}", p.display()),
                inode: u.inode,
                addr: ListenAddr::Unix(p.clone()),
            });
        }
    }
    for t in tcp.iter().flat_map(|t| t.iter()) {
        if t.state == TcpState::Listen && inodes.contains(&t.inode) {
            out.push(ListenSocket {
                name: t.local_address.to_string(),
                inode: t.inode,
                addr: ListenAddr::Tcp(t.local_address),
            });
        }
    }
    out.sort_by(|a, b| (&a.name, a.inode).cmp(&(&b.name, b.inode)));
    out.dedup_by(|a, b| a.inode == b.inode);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use procfs::net::{TcpNetEntries, UnixNetEntries};
    use procfs::{FromBufRead, FromBufReadSI};

    // Captured on Linux 6.18 from a Gunicorn 27.0.1 master bound to
    // unix:/tmp/bgwcap/app.sock, 127.0.0.1:18000 and [::]:18001, control
    // socket /tmp/bgwcap/ctl.sock; beside them a connected socket of its
    // own, another master's default control socket, and a bound datagram
    // socket and an abstract listener of a Python process.
    const UNIX: &str = "\
Num       RefCount Protocol Flags    Type St Inode Path
00000000afcc1439: 00000003 00000000 00000000 0001 03 921796
000000001c903cdf: 00000002 00000000 00010000 0001 01 922812 /root/.gunicorn/gunicorn.ctl
00000000ad9f667f: 00000002 00000000 00010000 0001 01 921781 /tmp/bgwcap/app.sock
00000000bb32205c: 00000002 00000000 00010000 0001 01 922776 /tmp/bgwcap/ctl.sock
000000008b7cec9f: 00000002 00000000 00000000 0002 01 922183 /tmp/bgwcap/dgram.sock
00000000d105034f: 00000002 00000000 00010000 0001 01 922184 @bgw-abstract
";
    const TCP: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   2: 0100007F:4650 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 921782 1 0000000061184e97 100 0 0 10 0
";
    const TCP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:4651 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 921783 1 00000000cae26dc4 100 0 0 10 0
";

    #[test]
    fn the_masters_listeners_with_their_inodes() {
        let unix = UnixNetEntries::from_buf_read(UNIX.as_bytes()).unwrap().0;
        let info = procfs::current_system_info();
        let tcp = TcpNetEntries::from_buf_read(TCP.as_bytes(), info)
            .unwrap()
            .0;
        let tcp6 = TcpNetEntries::from_buf_read(TCP6.as_bytes(), info)
            .unwrap()
            .0;
        // The master's fds, and for the test the datagram and abstract
        // sockets too: the datagram socket does not listen.
        let fds: HashSet<u64> = [921781, 921782, 921783, 922776, 921796, 922183, 922184]
            .into_iter()
            .collect();
        let got = listening(&fds, &unix, &[&tcp, &tcp6]);
        let names: Vec<(&str, u64)> = got.iter().map(|l| (l.name.as_str(), l.inode)).collect();
        assert_eq!(
            names,
            [
                ("127.0.0.1:18000", 921782),
                ("[::]:18001", 921783),
                ("unix:/tmp/bgwcap/app.sock", 921781),
                ("unix:/tmp/bgwcap/ctl.sock", 922776),
                ("unix:@bgw-abstract", 922184),
            ]
        );
        assert_eq!(
            got[0].addr,
            ListenAddr::Tcp("127.0.0.1:18000".parse().unwrap())
        );
        assert_eq!(
            got[2].addr,
            ListenAddr::Unix(PathBuf::from("/tmp/bgwcap/app.sock"))
        );
        assert!(listening(&HashSet::new(), &unix, &[&tcp]).is_empty());
    }
}
