//! The netlink readers against the real kernel: process events of real
//! processes (killed, crashed, exited), the connector without privileges
//! and from another network namespace, and the listen queues of real unix
//! and TCP listeners with connections waiting in them.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use badgateway_exporter::netlink::proc_connector::{
    monotonic_ns, EventKind, ExitOutcome, ProcConnector, ProcConnectorError, ProcConnectorOptions,
    ProcEvent, Task,
};
use badgateway_exporter::netlink::sock_diag::{ListenQueue, Listener, QueueSample, SockDiag};
use common::{wait_for, TempDir};

// ---- proc connector ----------------------------------------------------------

/// Reads events until `done` holds for those read so far (events about
/// other processes on the host included), or panics after 10 s.
fn read_until(
    conn: &mut ProcConnector,
    what: &str,
    mut done: impl FnMut(&[ProcEvent]) -> bool,
) -> Vec<ProcEvent> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut events = Vec::new();
    while !done(&events) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        conn.read(Duration::from_millis(100), &mut events)
            .expect("read proc events");
    }
    events
}

fn exit_of(events: &[ProcEvent], pid: i32) -> Option<(ExitOutcome, i32, Option<Task>)> {
    events.iter().find_map(|e| match e.kind {
        EventKind::Exit {
            task,
            status,
            exit_signal,
            parent,
        } if task.pid == pid => Some((status.outcome(), exit_signal, parent)),
        _ => None,
    })
}

fn fork_of(events: &[ProcEvent], pid: i32) -> Option<Task> {
    events.iter().find_map(|e| match e.kind {
        EventKind::Fork { parent, child } if child.pid == pid => Some(parent),
        _ => None,
    })
}

fn process(pid: i32) -> Task {
    Task { pid, tgid: pid }
}

/// Runs `script` under sh; returns it and the pids it prints, one a line.
fn sh(script: &str, pids: usize) -> (std::process::Child, Vec<i32>) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let printed = (0..pids)
        .map(|_| lines.next().expect("a pid").unwrap().parse().unwrap())
        .collect();
    (child, printed)
}

fn kill(pid: i32, signal: i32) {
    // SAFETY: kill(2) on a pid this test started.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill {pid}");
}

#[test]
fn each_exit_arrives_with_its_pid_parent_and_outcome() {
    let mut conn = ProcConnector::open(&ProcConnectorOptions::default()).expect("subscribe");
    let before = monotonic_ns();
    // A child that forks three grandchildren: two sleep until killed, one
    // exits with code 3. No core files (ulimit -c 0).
    let (mut child, g) = sh(
        "ulimit -c 0; sleep 60 & echo $!; sleep 60 & echo $!; (exit 3) & echo $!; wait",
        3,
    );
    kill(g[0], libc::SIGKILL);
    kill(g[1], libc::SIGSEGV);
    assert!(child.wait().unwrap().success());
    let sh_pid = child.id() as i32;
    let events = read_until(&mut conn, "the exits of sh and its 3 children", |ev| {
        exit_of(ev, sh_pid).is_some() && g.iter().all(|&p| exit_of(ev, p).is_some())
    });
    let after = monotonic_ns();

    let parent = Some(process(sh_pid));
    let signaled = |signal| ExitOutcome::Signaled {
        signal,
        core_dumped: false,
    };
    for (pid, outcome) in [
        (g[0], signaled(libc::SIGKILL)),
        (g[1], signaled(libc::SIGSEGV)),
        (g[2], ExitOutcome::Exited(3)),
    ] {
        assert_eq!(
            fork_of(&events, pid),
            Some(process(sh_pid)),
            "fork of {pid}"
        );
        assert_eq!(
            exit_of(&events, pid),
            Some((outcome, libc::SIGCHLD, parent)),
            "exit of {pid}"
        );
    }
    let (outcome, _, sh_parent) = exit_of(&events, sh_pid).unwrap();
    assert_eq!(outcome, ExitOutcome::Exited(0));
    assert_eq!(sh_parent.unwrap().tgid, std::process::id() as i32);
    // Our events carry CLOCK_MONOTONIC stamps from within the test.
    for e in events.iter().filter(|e| {
        let t = e.kind.task();
        t.tgid == sh_pid || g.contains(&t.tgid)
    }) {
        assert!(
            (before..=after).contains(&e.timestamp_ns),
            "{e:?} not within [{before}, {after}]"
        );
    }
}

#[test]
fn a_process_forked_and_killed_at_once_is_seen() {
    let mut conn = ProcConnector::open(&ProcConnectorOptions::default()).expect("subscribe");
    // The grandchild lives for microseconds: far less than one pool cycle.
    let (mut child, g) = sh("sleep 60 & kill -9 $!; echo $!; wait", 1);
    child.wait().unwrap();
    let sh_pid = child.id() as i32;
    let events = read_until(&mut conn, "the short-lived process's exit", |ev| {
        exit_of(ev, g[0]).is_some()
    });
    assert_eq!(fork_of(&events, g[0]), Some(process(sh_pid)));
    let (outcome, _, parent) = exit_of(&events, g[0]).unwrap();
    assert_eq!(
        outcome,
        ExitOutcome::Signaled {
            signal: libc::SIGKILL,
            core_dumped: false
        }
    );
    assert_eq!(parent, Some(process(sh_pid)));
    // The fork comes before the exit, as the pool source needs it to.
    let pos = |f: &dyn Fn(&EventKind) -> bool| events.iter().position(|e| f(&e.kind)).unwrap();
    let fork_at = pos(&|k| matches!(k, EventKind::Fork { child, .. } if child.pid == g[0]));
    let exit_at = pos(&|k| matches!(k, EventKind::Exit { task, .. } if task.pid == g[0]));
    assert!(fork_at < exit_at);
}

#[test]
fn a_full_buffer_counts_the_lost_events() {
    let opts = ProcConnectorOptions {
        // The kernel raises this to its minimum: two messages.
        recv_buffer_bytes: 1,
        ..ProcConnectorOptions::default()
    };
    let mut conn = ProcConnector::open(&opts).expect("subscribe");
    let granted = conn.recv_buffer_bytes().unwrap();
    assert!(granted < 16 << 10, "granted {granted}");
    // A loss is a gap in a CPU's sequence, so each CPU needs a first
    // message before its losses can count.
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } as usize;
    let mut seen = vec![false; cpus];
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.contains(&false) {
        assert!(
            Instant::now() < deadline,
            "no message from some CPU: {seen:?}"
        );
        Command::new("/bin/true").status().unwrap();
        events.clear();
        conn.read(Duration::from_millis(10), &mut events).unwrap();
        for e in &events {
            seen[e.cpu as usize] = true;
        }
    }
    let lost_before = conn.lost_total();
    // 200 processes while nobody reads: 600 events, two of which fit.
    let (mut child, _) = sh(
        "i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done",
        0,
    );
    child.wait().unwrap();
    let overruns_before = conn.overruns_total();
    let stats = conn.read(Duration::ZERO, &mut events).unwrap();
    assert!(stats.overruns >= 1, "ENOBUFS reported: {stats:?}");
    assert_eq!(conn.overruns_total(), overruns_before + stats.overruns);
    // Each CPU's gap shows when that CPU sends again, as the host's
    // processes and ours make it do. A buffer large enough for the host
    // lets ours through.
    conn.set_recv_buffer_bytes(4 << 20).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while conn.lost_total() - lost_before < 500 {
        assert!(
            Instant::now() < deadline,
            "lost only {}",
            conn.lost_total() - lost_before
        );
        Command::new("/bin/true").status().unwrap();
        events.clear();
        conn.read(Duration::from_millis(10), &mut events).unwrap();
    }
    // And it goes on reading.
    let (mut child, _) = sh("exit 4", 0);
    child.wait().unwrap();
    let pid = child.id() as i32;
    let events = read_until(&mut conn, "an exit after the overrun", |ev| {
        exit_of(ev, pid).is_some()
    });
    assert_eq!(exit_of(&events, pid).unwrap().0, ExitOutcome::Exited(4));
}

#[test]
fn a_read_returns_at_most_max_batch_events() {
    let opts = ProcConnectorOptions {
        max_batch: 3,
        ..ProcConnectorOptions::default()
    };
    let mut conn = ProcConnector::open(&opts).expect("subscribe");
    let (mut child, _) = sh("for i in 1 2 3 4 5; do /bin/true; done", 0);
    child.wait().unwrap();
    let mut events = Vec::new();
    let stats = conn.read(Duration::from_secs(1), &mut events).unwrap();
    assert_eq!((stats.events, events.len()), (3, 3));
    let stats = conn.read(Duration::ZERO, &mut events).unwrap();
    assert_eq!((stats.events, events.len()), (3, 6), "the rest waited");
}

/// Runs `f` in a new thread whose credentials or namespaces it may change:
/// those are per thread in Linux, so the test process keeps its own.
fn in_own_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join().expect("thread")
}

/// The kernel's policy differs between versions: 6.6 opened the proc
/// connector to every user, and other kernels (6.18.44 among them) refuse
/// a process without CAP_NET_ADMIN. Whichever this kernel has, the
/// connector either follows events as nobody or says `PermissionDenied`,
/// typed, so that the pool source can fall back to polling and say why.
#[test]
fn without_privileges_the_connector_subscribes_or_says_permission_denied() {
    let (cap_eff, result, seen) = in_own_thread(|| {
        common::kernel_policy::become_nobody();
        let cap_eff = common::kernel_policy::thread_cap_eff();
        let mut conn = match ProcConnector::open(&ProcConnectorOptions::default()) {
            Ok(c) => c,
            Err(e) => return (cap_eff, Err(e), false),
        };
        let mut child = Command::new("/bin/true").spawn().unwrap();
        child.wait().unwrap();
        let pid = child.id() as i32;
        let events = read_until(&mut conn, "an exit seen as nobody", |ev| {
            exit_of(ev, pid).is_some()
        });
        (cap_eff, Ok(()), exit_of(&events, pid).is_some())
    });
    assert_eq!(cap_eff, 0, "the thread has no capabilities");
    match result {
        Ok(()) => assert!(seen, "subscribed as nobody, so its events flow"),
        Err(ProcConnectorError::PermissionDenied { op, .. }) => {
            assert!(op.contains("CN_IDX_PROC") || op.contains("LISTEN"), "{op}");
            assert!(!seen);
        }
        Err(e) => panic!("neither subscribed nor refused for want of privilege: {e:?}"),
    }
    // The probe the other tests use agrees with what was seen here.
    assert_eq!(
        common::kernel_policy::proc_connector_open_to(common::kernel_policy::Asker::Nobody),
        seen
    );
}

#[test]
fn another_network_namespace_is_a_typed_error() {
    let dir = TempDir::new("netns");
    let host = UnixListener::bind(dir.path().join("host.sock")).unwrap();
    set_backlog(host.as_raw_fd(), 8);
    let host_inode = inode(host.as_raw_fd());
    let (conn, seen_from_there) = in_own_thread(move || {
        // SAFETY: unshare(2) of this thread's network namespace.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
        let conn = ProcConnector::open(&ProcConnectorOptions::default()).map(drop);
        // sock_diag opens there, but sees only that namespace's sockets.
        let seen = SockDiag::open()
            .unwrap()
            .sample_one(&Listener::Unix { inode: host_inode })
            .unwrap();
        (conn, seen)
    });
    assert!(
        matches!(conn, Err(ProcConnectorError::OtherNetworkNamespace)),
        "{conn:?}"
    );
    assert_eq!(seen_from_there, QueueSample::Gone);
    let mut diag = SockDiag::open().unwrap();
    assert_eq!(
        diag.sample_one(&Listener::Unix { inode: host_inode })
            .unwrap(),
        QueueSample::Listening(ListenQueue {
            length: 0,
            limit: 8
        }),
        "seen from its own namespace"
    );
}

// ---- sock_diag -------------------------------------------------------------------

fn inode(fd: RawFd) -> u64 {
    // SAFETY: fstat into a zeroed struct, on an open fd.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
    st.st_ino
}

/// Re-listens with `backlog`: listen(2) on a listening socket sets it.
fn set_backlog(fd: RawFd, backlog: i32) {
    // SAFETY: listen(2) on an open socket.
    assert_eq!(unsafe { libc::listen(fd, backlog) }, 0);
}

fn sample(diag: &mut SockDiag, l: Listener) -> QueueSample {
    diag.sample_one(&l).expect("sock_diag")
}

fn listening(length: u32, limit: u32) -> QueueSample {
    QueueSample::Listening(ListenQueue { length, limit })
}

#[test]
fn unix_listener_queue_length_and_limit() {
    let dir = TempDir::new("sockdiag");
    let path = dir.path().join("app.sock");
    let lsn = UnixListener::bind(&path).unwrap();
    set_backlog(lsn.as_raw_fd(), 8);
    let me = Listener::Unix {
        inode: inode(lsn.as_raw_fd()),
    };
    let mut diag = SockDiag::open().unwrap();
    assert_eq!(sample(&mut diag, me), listening(0, 8));
    let mut clients: Vec<UnixStream> = (0..5)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    assert_eq!(sample(&mut diag, me), listening(5, 8));

    // Filling it: the kernel takes connections until the queue is over
    // the backlog, so the length reaches limit + 1.
    loop {
        let s = socket(libc::AF_UNIX);
        let addr = unix_addr(&path);
        // SAFETY: connect(2) with a sockaddr_un of the right length.
        let r = unsafe {
            libc::connect(
                s.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            )
        };
        if r != 0 {
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EAGAIN)
            );
            break;
        }
        clients.push(UnixStream::from(s));
    }
    assert_eq!(sample(&mut diag, me), listening(9, 8));

    // A connected socket is no listener.
    let client = Listener::Unix {
        inode: inode(clients[0].as_raw_fd()),
    };
    assert_eq!(sample(&mut diag, client), QueueSample::NotListening);

    drop(lsn);
    drop(clients);
    assert_eq!(sample(&mut diag, me), QueueSample::Gone);
    assert_eq!(
        sample(&mut diag, Listener::Unix { inode: 1 << 40 }),
        QueueSample::Gone
    );
}

/// A non-blocking socket of `family`, for connects that must not wait.
fn socket(family: i32) -> OwnedFd {
    // SAFETY: socket(2); the fd is owned from here on.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    assert!(fd >= 0);
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn unix_addr(path: &std::path::Path) -> libc::sockaddr_un {
    // SAFETY: all-zero is a valid sockaddr_un.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_encoded_bytes();
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    addr
}

fn tcp_listener_with_pending(
    addr: &str,
    backlog: i32,
    pending: usize,
) -> (TcpListener, Vec<TcpStream>, Listener) {
    let lsn = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    set_backlog(lsn.as_raw_fd(), backlog);
    let local = lsn.local_addr().unwrap();
    let clients = (0..pending)
        .map(|_| TcpStream::connect(local).unwrap())
        .collect();
    let me = Listener::Tcp {
        local,
        inode: inode(lsn.as_raw_fd()),
    };
    (lsn, clients, me)
}

#[test]
fn tcp_listener_queue_length_and_limit_v4_and_v6() {
    let mut diag = SockDiag::open().unwrap();
    for addr in ["127.0.0.1:0", "[::1]:0"] {
        let (lsn, clients, me) = tcp_listener_with_pending(addr, 8, 3);
        // Each connection joins the accept queue when the handshake's last
        // ACK is processed, a moment after connect(2) returns.
        wait_for(Duration::from_secs(2), "3 connections queued", || {
            sample(&mut diag, me) == listening(3, 8)
        });
        drop(clients);
        drop(lsn);
        assert_eq!(sample(&mut diag, me), QueueSample::Gone, "{addr}");
    }
}

#[test]
fn tcp_wildcard_listener() {
    let mut diag = SockDiag::open().unwrap();
    let (lsn, _clients, me) = tcp_listener_with_pending("0.0.0.0:0", 4, 0);
    let port = lsn.local_addr().unwrap().port();
    let _c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    wait_for(Duration::from_secs(2), "1 connection queued", || {
        sample(&mut diag, me) == listening(1, 4)
    });
}

/// Two SO_REUSEPORT listeners on one address: each is told apart by inode.
#[test]
fn reuseport_siblings_are_told_apart_by_inode() {
    let mut diag = SockDiag::open().unwrap();
    let a = reuseport_listener(0, 8);
    let port = local_port(a.as_raw_fd());
    let b = reuseport_listener(port, 4);
    let local: SocketAddr = ([127, 0, 0, 1], port).into();
    let la = Listener::Tcp {
        local,
        inode: inode(a.as_raw_fd()),
    };
    let lb = Listener::Tcp {
        local,
        inode: inode(b.as_raw_fd()),
    };
    let mut out = Vec::new();
    diag.sample(&[la, lb, la], &mut out).unwrap();
    assert_eq!(out, [listening(0, 8), listening(0, 4), listening(0, 8)]);
    drop(b);
    assert_eq!(sample(&mut diag, lb), QueueSample::Gone);
    assert_eq!(sample(&mut diag, la), listening(0, 8));
}

fn reuseport_listener(port: u16, backlog: i32) -> OwnedFd {
    let fd = socket(libc::AF_INET);
    let one: libc::c_int = 1;
    // SAFETY: setsockopt/bind/listen on an owned socket with valid pointers.
    unsafe {
        assert_eq!(
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_REUSEPORT,
                (&one as *const libc::c_int).cast(),
                4
            ),
            0
        );
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = port.to_be();
        sin.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        assert_eq!(
            libc::bind(
                fd.as_raw_fd(),
                (&sin as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
            ),
            0
        );
    }
    set_backlog(fd.as_raw_fd(), backlog);
    fd
}

fn local_port(fd: RawFd) -> u16 {
    // SAFETY: getsockname into a sockaddr_in of the right length.
    let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    assert_eq!(
        unsafe { libc::getsockname(fd, (&mut sin as *mut libc::sockaddr_in).cast(), &mut len) },
        0
    );
    u16::from_be(sin.sin_port)
}

#[test]
fn one_batch_for_several_listeners_in_order() {
    let dir = TempDir::new("sockdiag-batch");
    let path = dir.path().join("a.sock");
    let ulsn = UnixListener::bind(&path).unwrap();
    set_backlog(ulsn.as_raw_fd(), 8);
    let _u = UnixStream::connect(&path).unwrap();
    let (_t4, _c4, t4) = tcp_listener_with_pending("127.0.0.1:0", 16, 0);
    let (_t6, _c6, t6) = tcp_listener_with_pending("[::1]:0", 32, 0);
    let gone = {
        let l = UnixListener::bind(dir.path().join("b.sock")).unwrap();
        inode(l.as_raw_fd())
    };
    let listeners: Vec<Listener> = [
        Listener::Unix {
            inode: inode(ulsn.as_raw_fd()),
        },
        t4,
        Listener::Unix { inode: gone },
        t6,
    ]
    .into_iter()
    .cycle()
    .take(40) // more than one datagram of requests
    .collect();
    let mut diag = SockDiag::open().unwrap();
    let mut out = vec![QueueSample::Gone]; // appended to, not replaced
    diag.sample(&listeners, &mut out).unwrap();
    let want = [
        listening(1, 8),
        listening(0, 16),
        QueueSample::Gone,
        listening(0, 32),
    ];
    assert_eq!(out.len(), 41);
    for (i, got) in out[1..].iter().enumerate() {
        assert_eq!(*got, want[i % 4], "listener {i}");
    }
}
