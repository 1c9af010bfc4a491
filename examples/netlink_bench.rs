//! Measurements of the netlink readers, run by bench/netlink.sh (not a test:
//! it prints figures and asserts nothing about time).
//!
//!   netlink_bench sock-diag OTHERS ITERS
//!       4 listeners (2 unix, TCP v4, TCP v6) with connections waiting, among
//!       OTHERS extra unix socket pairs; the cost of one `SockDiag::sample` of
//!       the 4, against one in-process dump of every unix socket (what
//!       `ss -xa` asks the kernel for), as wall and CPU time per call.
//!   netlink_bench kill-latency N
//!       N times: start `sleep`, kill(2) it with SIGKILL, read until its exit
//!       event; the time from kill(2) to the event being read, and how it
//!       splits at the kernel's timestamp.
//!   netlink_bench event-cost N [INTERVAL_MS]
//!       The reader's CPU time per event while N processes run /bin/true:
//!       blocked in `read` (0, the default), or draining every INTERVAL_MS.

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Command;
use std::time::{Duration, Instant};

use badgateway_exporter::netlink::proc_connector::{
    monotonic_ns, EventKind, ProcConnector, ProcConnectorOptions,
};
use badgateway_exporter::netlink::sock_diag::{Listener, QueueSample, SockDiag};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::{
    unix::{ShowFlags, StateFlags, UnixRequest},
    SockDiagMessage,
};
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize, default: usize| {
        args.get(i)
            .map(|s| s.parse().expect("a number"))
            .unwrap_or(default)
    };
    match args.get(1).map(String::as_str) {
        Some("sock-diag") => sock_diag(num(2, 2000), num(3, 20000)),
        Some("kill-latency") => kill_latency(num(2, 200)),
        Some("event-cost") => event_cost(num(2, 2000), num(3, 0)),
        _ => {
            eprintln!("usage: netlink_bench sock-diag OTHERS ITERS | kill-latency N | event-cost N [INTERVAL_MS]");
            std::process::exit(2);
        }
    }
}

/// CPU time of the calling thread, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn inode(fd: i32) -> u64 {
    // SAFETY: fstat on an open fd into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
    st.st_ino
}

fn backlog(fd: i32, n: i32) {
    // SAFETY: listen(2) on a listening socket resets its backlog.
    assert_eq!(unsafe { libc::listen(fd, n) }, 0);
}

fn sock_diag(others: usize, iters: usize) {
    raise_fd_limit();
    let dir = std::env::temp_dir().join(format!("bgw-bench-sockdiag-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut keep_unix = Vec::new();
    let mut listeners = Vec::new();
    for i in 0..2 {
        let path = dir.join(format!("app{i}.sock"));
        let l = UnixListener::bind(&path).unwrap();
        backlog(l.as_raw_fd(), 8);
        for _ in 0..3 {
            keep_unix.push(UnixStream::connect(&path).unwrap());
        }
        listeners.push(Listener::Unix {
            inode: inode(l.as_raw_fd()),
        });
        std::mem::forget(l); // kept open until exit
    }
    let mut keep_tcp = Vec::new();
    for addr in ["127.0.0.1:0", "[::1]:0"] {
        let l = TcpListener::bind(addr).unwrap();
        backlog(l.as_raw_fd(), 8);
        let local = l.local_addr().unwrap();
        keep_tcp.push(TcpStream::connect(local).unwrap());
        listeners.push(Listener::Tcp {
            local,
            inode: inode(l.as_raw_fd()),
        });
        std::mem::forget(l);
    }
    let pairs: Vec<_> = (0..others).map(|_| UnixStream::pair().unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));

    let mut diag = SockDiag::open().unwrap();
    let mut out = Vec::with_capacity(listeners.len());
    diag.sample(&listeners, &mut out).unwrap();
    println!("# samples: {out:?}");
    assert!(out.iter().all(|s| matches!(s, QueueSample::Listening(_))));

    let (w0, c0) = (Instant::now(), thread_cpu_ns());
    for _ in 0..iters {
        out.clear();
        diag.sample(&listeners, &mut out).unwrap();
    }
    let (wall, cpu) = (w0.elapsed(), thread_cpu_ns() - c0);
    let per = |total_ns: f64, n: usize| total_ns / n as f64 / 1000.0;
    let by_inode = per(cpu as f64, iters);
    println!(
        "sock_diag by inode, {} listeners, {} other unix sockets on the host: {:.1} us wall, {:.1} us CPU per sample ({iters} samples); at a 100 ms interval: {:.3}% of a core",
        listeners.len(),
        unix_sockets_on_host(),
        per(wall.as_nanos() as f64, iters),
        by_inode,
        by_inode / 100_000.0 * 100.0
    );

    let dumps = (iters / 20).max(10);
    let (w0, c0) = (Instant::now(), thread_cpu_ns());
    let mut count = 0;
    for _ in 0..dumps {
        count = dump_unix();
    }
    let (wall, cpu) = (w0.elapsed(), thread_cpu_ns() - c0);
    let dump = per(cpu as f64, dumps);
    println!(
        "full unix dump with UDIAG_SHOW_RQLEN (in process, {count} sockets): {:.1} us wall, {:.1} us CPU per dump ({dumps} dumps); by inode is {:.0}x cheaper",
        per(wall.as_nanos() as f64, dumps),
        dump,
        dump / by_inode
    );
    drop(pairs);
    drop(keep_unix);
    drop(keep_tcp);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two fds per socket pair: up to the hard limit.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

fn unix_sockets_on_host() -> usize {
    std::fs::read_to_string("/proc/net/unix")
        .map(|s| s.lines().count().saturating_sub(1))
        .unwrap_or(0)
}

/// One dump of every unix socket, as `ss -xa` asks for it; returns how many.
fn dump_unix() -> usize {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).unwrap();
    socket.bind_auto().unwrap();
    socket.connect(&netlink_sys::SocketAddr::new(0, 0)).unwrap();
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut packet = NetlinkMessage::new(
        header,
        NetlinkPayload::from(SockDiagMessage::UnixRequest(UnixRequest {
            state_flags: StateFlags::all(),
            inode: 0,
            show_flags: ShowFlags::RQLEN,
            cookie: [0xff; 8],
        })),
    );
    packet.finalize();
    let mut req = vec![0; packet.buffer_len()];
    packet.serialize(&mut req);
    socket.send(&req, 0).unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let mut sockets = 0;
    loop {
        let n = socket.recv(&mut &mut buf[..], 0).unwrap();
        let mut off = 0;
        while off < n {
            let msg = NetlinkMessage::<SockDiagMessage>::deserialize(&buf[off..n]).unwrap();
            match msg.payload {
                NetlinkPayload::Done(_) => return sockets,
                NetlinkPayload::InnerMessage(_) => sockets += 1,
                other => panic!("{other:?}"),
            }
            off += (msg.header.length as usize + 3) & !3;
        }
    }
}

fn percentiles(mut v: Vec<u64>) -> String {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    format!(
        "p50 {:.0} us, p90 {:.0} us, p99 {:.0} us, max {:.0} us",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    )
}

fn kill_latency(n: usize) {
    let mut conn = ProcConnector::open(&ProcConnectorOptions::default()).unwrap();
    let (mut total, mut to_kernel, mut to_reader) = (Vec::new(), Vec::new(), Vec::new());
    let mut events = Vec::new();
    for _ in 0..n {
        let mut child = Command::new("sleep").arg("60").spawn().unwrap();
        let pid = child.id() as i32;
        std::thread::sleep(Duration::from_millis(5));
        // Drain what came before, so the read below waits for the exit.
        events.clear();
        conn.read(Duration::ZERO, &mut events).unwrap();
        let t0 = monotonic_ns();
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let stamp = 'found: loop {
            events.clear();
            conn.read(Duration::from_secs(5), &mut events).unwrap();
            for e in &events {
                if let EventKind::Exit { task, .. } = e.kind {
                    if task.pid == pid {
                        break 'found e.timestamp_ns;
                    }
                }
            }
        };
        let t1 = monotonic_ns();
        child.wait().unwrap();
        total.push(t1 - t0);
        to_kernel.push(stamp.saturating_sub(t0));
        to_reader.push(t1.saturating_sub(stamp));
    }
    println!(
        "kill(2) -> exit event read ({n} kills): {}",
        percentiles(total)
    );
    println!(
        "  kill(2) -> kernel's event timestamp: {}",
        percentiles(to_kernel)
    );
    println!(
        "  timestamp -> read by the blocked reader: {}",
        percentiles(to_reader)
    );
    println!(
        "  lost {} overruns {}",
        conn.lost_total(),
        conn.overruns_total()
    );
}

fn event_cost(n: usize, interval_ms: usize) {
    let mut conn = ProcConnector::open(&ProcConnectorOptions::default()).unwrap();
    let interval = Duration::from_millis(interval_ms as u64);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done"
        ))
        .spawn()
        .unwrap();
    let mut events = Vec::with_capacity(4096);
    let (mut count, c0) = (0usize, thread_cpu_ns());
    loop {
        events.clear();
        let stats = if interval.is_zero() {
            conn.read(Duration::from_millis(50), &mut events).unwrap()
        } else {
            std::thread::sleep(interval);
            conn.read(Duration::ZERO, &mut events).unwrap()
        };
        count += stats.events;
        if stats.events == 0 && child.try_wait().unwrap().is_some() {
            break;
        }
    }
    let cpu = thread_cpu_ns() - c0;
    let how = if interval.is_zero() {
        "blocked in read".to_string()
    } else {
        format!("draining every {interval_ms} ms")
    };
    println!(
        "reader CPU per event, {how}: {:.2} us ({count} events, {:.1} ms CPU, lost {}, overruns {})",
        cpu as f64 / count as f64 / 1000.0,
        cpu as f64 / 1e6,
        conn.lost_total(),
        conn.overruns_total()
    );
}
