//! Where the server listens: each `--web.listen-address` (several are
//! served at once, as exporter-toolkit does), or with
//! `--web.systemd-socket` the sockets systemd passes to a socket-activated
//! service (sd_listen_fds(3)), in which case the addresses are not used.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, RawFd};

use anyhow::{bail, Context};

/// The first descriptor systemd passes (SD_LISTEN_FDS_START).
const LISTEN_FDS_START: RawFd = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Addresses(Vec<SocketAddr>),
    SystemdSocket,
}

impl Listen {
    /// Bind every address, or take systemd's sockets; the error names the
    /// address or descriptor that failed.
    pub fn open(&self) -> anyhow::Result<Vec<TcpListener>> {
        match self {
            Listen::Addresses(addrs) => addrs.iter().map(|a| bind(*a)).collect(),
            Listen::SystemdSocket => systemd_sockets(
                std::env::var("LISTEN_PID").ok().as_deref(),
                std::env::var("LISTEN_FDS").ok().as_deref(),
            ),
        }
    }
}

/// A listening TCP socket with SO_REUSEADDR, as tokio's `bind` makes it,
/// so that a restart does not wait out the old connections' TIME_WAIT.
pub fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listen = || -> std::io::Result<TcpListener> {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        s.set_reuse_address(true)?;
        s.bind(&addr.into())?;
        s.listen(1024)?;
        Ok(s.into())
    };
    listen().with_context(|| format!("listening on {addr}"))
}

/// The sockets passed by systemd, given `LISTEN_PID` and `LISTEN_FDS` as
/// the environment has them: `LISTEN_FDS` descriptors from 3, meant for
/// this process when `LISTEN_PID` is its pid. Each must be a listening
/// TCP socket.
pub fn systemd_sockets(pid: Option<&str>, fds: Option<&str>) -> anyhow::Result<Vec<TcpListener>> {
    let hint = "--web.systemd-socket: start the exporter from a systemd .socket unit (or systemd-socket-activate)";
    let (Some(pid), Some(fds)) = (pid, fds) else {
        bail!("{hint}: LISTEN_PID and LISTEN_FDS are not set");
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        bail!("{hint}: LISTEN_PID={pid} is not this process");
    }
    let n: RawFd = fds
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .with_context(|| format!("{hint}: LISTEN_FDS={fds:?} passes no socket"))?;
    (LISTEN_FDS_START..LISTEN_FDS_START + n)
        .map(|fd| {
            check_listening_tcp(fd).with_context(|| format!("--web.systemd-socket: fd {fd}"))?;
            // SAFETY: systemd passed the descriptor to this process to own,
            // and it was checked to be an open listening TCP socket. Each
            // is taken once.
            let l = unsafe { TcpListener::from_raw_fd(fd) };
            // Not for the processes the exporter might start.
            // SAFETY: fcntl on a descriptor we own.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            Ok(l)
        })
        .collect()
}

fn sockopt(fd: RawFd, level: libc::c_int, name: libc::c_int) -> std::io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the int we own.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(v)
}

fn check_listening_tcp(fd: RawFd) -> anyhow::Result<()> {
    let domain = sockopt(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).context("not a socket")?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        bail!("not a TCP socket (address family {domain}): use ListenStream=PORT or HOST:PORT");
    }
    if sockopt(fd, libc::SOL_SOCKET, libc::SO_TYPE)? != libc::SOCK_STREAM {
        bail!("not a stream socket: use ListenStream=");
    }
    if sockopt(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? == 0 {
        bail!("not listening");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_must_name_this_process_and_a_socket() {
        let me = std::process::id().to_string();
        let err = |pid, fds| format!("{:#}", systemd_sockets(pid, fds).unwrap_err());
        assert!(err(None, Some("1")).contains("LISTEN_PID and LISTEN_FDS are not set"));
        assert!(err(Some("1"), Some("1")).contains("LISTEN_PID=1 is not this process"));
        assert!(err(Some(&me), Some("0")).contains("passes no socket"));
        assert!(err(Some(&me), Some("x")).contains("passes no socket"));
    }

    #[test]
    fn descriptors_that_are_not_listening_tcp_sockets_are_refused() {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(
            format!("{:#}", check_listening_tcp(file.as_raw_fd()).unwrap_err())
                .contains("not a socket")
        );
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(
            format!("{:#}", check_listening_tcp(a.as_raw_fd()).unwrap_err())
                .contains("not a TCP socket")
        );
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(
            format!("{:#}", check_listening_tcp(udp.as_raw_fd()).unwrap_err())
                .contains("not a stream socket")
        );
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        check_listening_tcp(l.as_raw_fd()).unwrap();
        let conn = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(
            format!("{:#}", check_listening_tcp(conn.as_raw_fd()).unwrap_err())
                .contains("not listening")
        );
    }
}
