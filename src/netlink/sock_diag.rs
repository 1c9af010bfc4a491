//! The listen queue of specific sockets, asked of the kernel by inode (unix)
//! or by address and port (TCP) through NETLINK_SOCK_DIAG: one exact lookup
//! per socket, never a dump of every socket on the host.
//!
//! - unix: `struct unix_diag_req` (include/uapi/linux/unix_diag.h) with
//!   `udiag_ino` set, `udiag_cookie` INET_DIAG_NOCOOKIE and
//!   `UDIAG_SHOW_RQLEN`; the reply's `struct unix_diag_rqlen` holds, for a
//!   listener, the pending connections (`udiag_rqueue`) and the backlog
//!   (`udiag_wqueue`, i.e. `sk_max_ack_backlog`).
//! - TCP: `struct inet_diag_req_v2` (include/uapi/linux/inet_diag.h) with the
//!   listener's local address and port in `id.idiag_src`/`idiag_sport`, the
//!   rest zero; the kernel finds it like an incoming packet would. For a
//!   LISTEN socket the reply's `idiag_rqueue` is the accept queue
//!   (`sk_ack_backlog`) and `idiag_wqueue` the backlog.
//!
//! The messages are built and parsed by netlink-packet-sock-diag; the socket
//! is netlink-sys. Both queues may reach limit + 1: the kernel refuses a
//! connection only once the queue is *over* the backlog.
//!
//! Costs, from the kernel's side: the unix lookup walks the unix socket hash
//! of the network namespace (no copying, no formatting); the TCP lookup is a
//! hash lookup. Sockets in another network namespace are not found: they
//! report [`QueueSample::Gone`].

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::{
    constants::{AF_INET, AF_INET6, AF_UNIX, IPPROTO_TCP, TCP_LISTEN},
    inet::{self, ExtensionFlags, InetRequest, SocketId},
    unix::{self, ShowFlags, UnixRequest},
    SockDiagMessage,
};
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket};

/// `INET_DIAG_NOCOOKIE` (inet_diag.h): match any socket, not one incarnation.
const NO_COOKIE: [u8; 8] = [0xff; 8];
/// Requests sent in one datagram: their replies must fit the receive buffer.
const BATCH: usize = 32;

/// A listening socket to sample, as the caller knows it from /proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listener {
    /// A unix socket, by the inode in /proc/PID/fd and /proc/net/unix.
    Unix { inode: u64 },
    /// A TCP listener, by the local address, port and inode of its line in
    /// /proc/net/tcp or tcp6 (an IPv6 socket keeps an IPv6 address, also a
    /// v4-mapped one). The inode tells it apart from SO_REUSEPORT siblings on
    /// the same address.
    Tcp { local: SocketAddr, inode: u64 },
}

/// The accept queue of a listener: `length` connections wait for accept(2),
/// `limit` is its backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenQueue {
    pub length: u32,
    pub limit: u32,
}

/// What the kernel says about one [`Listener`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueSample {
    Listening(ListenQueue),
    /// The socket exists but does not listen (any more).
    NotListening,
    /// No such socket (closed, or in another network namespace).
    Gone,
}

/// One reply of the kernel, as parsed from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The sequence number of the request it answers.
    pub seq: u32,
    pub answer: Answer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A socket: for a unix one the queues come from UNIX_DIAG_RQLEN (absent
    /// when not asked for), for a TCP one from the message itself.
    Socket {
        family: u8,
        inode: u32,
        /// `TCP_*` state (10 is LISTEN, for unix sockets too).
        state: u8,
        queues: Option<(u32, u32)>,
    },
    /// NLMSG_ERROR with this errno (ENOENT: no such socket).
    Error(i32),
    /// NLMSG_DONE: the end of a dump.
    Done,
}

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("sock_diag reply at byte {offset}: {reason}")]
pub struct ParseError {
    pub offset: usize,
    pub reason: String,
}

/// Parses the netlink messages in one received buffer.
pub fn parse_replies(buf: &[u8]) -> Result<Vec<Reply>, ParseError> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < buf.len() {
        let msg = NetlinkMessage::<SockDiagMessage>::deserialize(&buf[offset..]).map_err(|e| {
            ParseError {
                offset,
                reason: e.to_string(),
            }
        })?;
        let len = msg.header.length as usize;
        if len == 0 {
            return Err(ParseError {
                offset,
                reason: "zero-length message".into(),
            });
        }
        let answer = match msg.payload {
            NetlinkPayload::InnerMessage(SockDiagMessage::UnixResponse(r)) => Answer::Socket {
                family: AF_UNIX,
                inode: r.header.inode,
                state: r.header.state,
                queues: r.nlas.iter().find_map(|nla| match nla {
                    unix::nlas::Nla::ReceiveQueueLength(rq, wq) => Some((*rq, *wq)),
                    _ => None,
                }),
            },
            NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => Answer::Socket {
                family: r.header.family,
                inode: r.header.inode,
                state: r.header.state,
                queues: Some((r.header.recv_queue, r.header.send_queue)),
            },
            NetlinkPayload::Error(e) => match e.code {
                // NLMSG_ERROR carries -errno.
                Some(code) => Answer::Error(-code.get()),
                None => {
                    offset += nlmsg_align(len);
                    continue;
                }
            },
            NetlinkPayload::Done(_) => Answer::Done,
            _ => {
                offset += nlmsg_align(len);
                continue;
            }
        };
        out.push(Reply {
            seq: msg.header.sequence_number,
            answer,
        });
        offset += nlmsg_align(len);
    }
    Ok(out)
}

fn nlmsg_align(len: usize) -> usize {
    (len + 3) & !3
}

/// The request for one listener, as netlink bytes.
pub fn request(listener: &Listener, seq: u32) -> Vec<u8> {
    match *listener {
        Listener::Unix { inode } => encode(
            SockDiagMessage::UnixRequest(UnixRequest {
                state_flags: unix::StateFlags::all(),
                // Socket inodes are 32-bit; `sample` answers larger ones
                // Gone without asking. 0 is refused by the kernel (EINVAL).
                inode: u32::try_from(inode).unwrap_or(0),
                show_flags: ShowFlags::RQLEN,
                cookie: NO_COOKIE,
            }),
            NLM_F_REQUEST,
            seq,
        ),
        Listener::Tcp { local, .. } => {
            encode(inet_request(local, local.port()), NLM_F_REQUEST, seq)
        }
    }
}

fn inet_request(local: SocketAddr, port: u16) -> SockDiagMessage {
    let (family, mut socket_id) = match local.ip() {
        IpAddr::V4(_) => (AF_INET, SocketId::new_v4()),
        IpAddr::V6(_) => (AF_INET6, SocketId::new_v6()),
    };
    socket_id.source_address = local.ip();
    socket_id.source_port = port;
    socket_id.cookie = NO_COOKIE;
    SockDiagMessage::InetRequest(InetRequest {
        family,
        protocol: IPPROTO_TCP,
        extensions: ExtensionFlags::empty(),
        states: inet::StateFlags::LISTEN,
        socket_id,
    })
}

fn encode(msg: SockDiagMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    buf
}

#[derive(thiserror::Error, Debug)]
pub enum SockDiagError {
    #[error("sock_diag: {op}: {source}")]
    Io { op: &'static str, source: io::Error },
    #[error("sock_diag: {0}")]
    Parse(#[from] ParseError),
    #[error("sock_diag: the kernel answered request {seq} with errno {errno}")]
    Kernel { seq: u32, errno: i32 },
    #[error("sock_diag: no reply to request {seq} within {timeout:?}")]
    NoReply { seq: u32, timeout: Duration },
}

/// A NETLINK_SOCK_DIAG socket for sampling listen queues. Needs no
/// privilege; sees the network namespace it was opened in.
pub struct SockDiag {
    socket: Socket,
    buf: Vec<u8>,
    seq: u32,
    slots: Vec<Slot>,
}

/// Where the answer for one listener of a batch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Waiting,
    Done(QueueSample),
    /// Another listener on the same address and port answered.
    Sibling,
}

/// A reply that does not come within this is an error, not a hang.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

impl SockDiag {
    pub fn open() -> Result<Self, SockDiagError> {
        let io = |op| move |source| SockDiagError::Io { op, source };
        let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(io("socket"))?;
        socket.bind_auto().map_err(io("bind"))?;
        socket
            .connect(&netlink_sys::SocketAddr::new(0, 0))
            .map_err(io("connect"))?;
        Ok(SockDiag {
            socket,
            buf: vec![0; 64 << 10],
            seq: 0,
            slots: Vec::new(),
        })
    }

    /// The queue of each listener, in order, appended to `out`. Requests go
    /// out in batches of 32 per datagram.
    pub fn sample(
        &mut self,
        listeners: &[Listener],
        out: &mut Vec<QueueSample>,
    ) -> Result<(), SockDiagError> {
        for chunk in listeners.chunks(BATCH) {
            self.sample_batch(chunk, out)?;
        }
        Ok(())
    }

    /// The queue of one listener.
    pub fn sample_one(&mut self, listener: &Listener) -> Result<QueueSample, SockDiagError> {
        let mut out = Vec::with_capacity(1);
        self.sample_batch(std::slice::from_ref(listener), &mut out)?;
        Ok(out[0])
    }

    fn sample_batch(
        &mut self,
        listeners: &[Listener],
        out: &mut Vec<QueueSample>,
    ) -> Result<(), SockDiagError> {
        let first = self.seq.wrapping_add(1);
        self.seq = self.seq.wrapping_add(listeners.len() as u32);
        self.slots.clear();
        let mut datagram = Vec::with_capacity(listeners.len() * 72);
        for (i, l) in listeners.iter().enumerate() {
            if let Listener::Unix { inode } = *l {
                if u32::try_from(inode).is_err() {
                    // Socket inodes are 32-bit (sockfs uses get_next_ino).
                    self.slots.push(Slot::Done(QueueSample::Gone));
                    continue;
                }
            }
            self.slots.push(Slot::Waiting);
            datagram.extend(request(l, first.wrapping_add(i as u32)));
        }
        let mut left = self.slots.iter().filter(|s| **s == Slot::Waiting).count();
        if left > 0 {
            self.send(&datagram)?;
        }
        while left > 0 {
            let n = self.recv(first)?;
            for reply in parse_replies(&self.buf[..n])? {
                let i = reply.seq.wrapping_sub(first) as usize;
                if i >= listeners.len() || self.slots[i] != Slot::Waiting {
                    continue; // a late reply to an earlier call
                }
                self.slots[i] = match (reply.answer, listeners[i]) {
                    (Answer::Error(libc::ENOENT), _) => Slot::Done(QueueSample::Gone),
                    (Answer::Error(errno), _) => {
                        return Err(SockDiagError::Kernel {
                            seq: reply.seq,
                            errno,
                        })
                    }
                    (Answer::Done, _) => continue,
                    // An SO_REUSEPORT sibling answered: ours is found among
                    // the listeners on that port once this batch is read.
                    (Answer::Socket { inode, .. }, Listener::Tcp { inode: want, .. })
                        if u64::from(inode) != want =>
                    {
                        Slot::Sibling
                    }
                    (Answer::Socket { state, queues, .. }, _) => {
                        Slot::Done(to_sample(state, queues))
                    }
                };
                left -= 1;
            }
        }
        for (i, l) in listeners.iter().enumerate() {
            let sample = match (self.slots[i], *l) {
                (Slot::Done(s), _) => s,
                (Slot::Sibling, Listener::Tcp { local, inode }) => {
                    self.tcp_listener_by_inode(local, inode)?
                }
                (slot, _) => unreachable!("{slot:?} after every reply"),
            };
            out.push(sample);
        }
        Ok(())
    }

    /// Dumps the TCP listeners on `local`'s port, of its family, and picks
    /// `inode`. The kernel filters the dump by port and walks only the
    /// listening hash, so this is cheap, but the exact lookup is cheaper.
    fn tcp_listener_by_inode(
        &mut self,
        local: SocketAddr,
        inode: u64,
    ) -> Result<QueueSample, SockDiagError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.send(&encode(
            inet_request(local, local.port()),
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
        ))?;
        let mut found = QueueSample::Gone;
        loop {
            let n = self.recv(seq)?;
            for reply in parse_replies(&self.buf[..n])? {
                if reply.seq != seq {
                    continue;
                }
                match reply.answer {
                    Answer::Done => return Ok(found),
                    Answer::Error(errno) => return Err(SockDiagError::Kernel { seq, errno }),
                    Answer::Socket {
                        inode: i,
                        state,
                        queues,
                        ..
                    } if u64::from(i) == inode => found = to_sample(state, queues),
                    Answer::Socket { .. } => {}
                }
            }
        }
    }

    fn send(&self, datagram: &[u8]) -> Result<(), SockDiagError> {
        self.socket
            .send(datagram, 0)
            .map(drop)
            .map_err(|source| SockDiagError::Io { op: "send", source })
    }

    /// One datagram; `seq` names the first request waited for, for the error.
    fn recv(&mut self, seq: u32) -> Result<usize, SockDiagError> {
        loop {
            match self.socket.recv(&mut &mut self.buf[..], libc::MSG_DONTWAIT) {
                Ok(n) => return Ok(n.min(self.buf.len())),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    // The kernel answers while handling the send, so this
                    // is rare; wait, but not forever.
                    let readable = super::poll_readable(self.socket.as_raw_fd(), REPLY_TIMEOUT)
                        .map_err(|source| SockDiagError::Io { op: "poll", source })?;
                    if !readable {
                        return Err(SockDiagError::NoReply {
                            seq,
                            timeout: REPLY_TIMEOUT,
                        });
                    }
                }
                Err(source) => return Err(SockDiagError::Io { op: "recv", source }),
            }
        }
    }
}

fn to_sample(state: u8, queues: Option<(u32, u32)>) -> QueueSample {
    match queues {
        Some((length, limit)) if state == TCP_LISTEN => {
            QueueSample::Listening(ListenQueue { length, limit })
        }
        _ => QueueSample::NotListening,
    }
}

impl std::fmt::Debug for SockDiag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SockDiag")
            .field("fd", &self.socket.as_raw_fd())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::fixture::{load, num};

    fn one_reply(name: &str) -> (Reply, std::collections::HashMap<String, String>) {
        let (buf, facts) = load(name);
        let replies = parse_replies(&buf).expect("parses");
        assert_eq!(replies.len(), 1, "{name}: {replies:?}");
        (replies[0].clone(), facts)
    }

    #[test]
    fn unix_listener_queue() {
        let (reply, facts) = one_reply("sock_diag_unix_listen8_pending3.bin");
        assert_eq!(
            reply.answer,
            Answer::Socket {
                family: AF_UNIX,
                inode: num(&facts, "inode"),
                state: TCP_LISTEN,
                queues: Some((num(&facts, "length"), num(&facts, "limit"))),
            }
        );
        let Answer::Socket { state, queues, .. } = reply.answer else {
            unreachable!()
        };
        assert_eq!(
            to_sample(state, queues),
            QueueSample::Listening(ListenQueue {
                length: 3,
                limit: 8
            })
        );
    }

    #[test]
    fn tcp_listener_queues() {
        for (name, family) in [
            ("sock_diag_tcp4_listen8_pending2.bin", AF_INET),
            ("sock_diag_tcp6_listen8_pending2.bin", AF_INET6),
        ] {
            let (reply, facts) = one_reply(name);
            assert_eq!(
                reply.answer,
                Answer::Socket {
                    family,
                    inode: num(&facts, "inode"),
                    state: TCP_LISTEN,
                    queues: Some((num(&facts, "length"), num(&facts, "limit"))),
                },
                "{name}"
            );
        }
    }

    #[test]
    fn vanished_sockets_are_enoent() {
        for name in [
            "sock_diag_unix_gone.bin",
            "sock_diag_tcp4_gone.bin",
            "sock_diag_tcp6_gone.bin",
        ] {
            let (reply, _) = one_reply(name);
            assert_eq!(reply.answer, Answer::Error(libc::ENOENT), "{name}");
        }
    }

    #[test]
    fn replies_keep_their_sequence_numbers() {
        let (a, _) = load("sock_diag_unix_listen8_pending3.bin");
        let (b, _) = load("sock_diag_tcp4_gone.bin");
        let replies = parse_replies(&[a, b].concat()).unwrap();
        let seqs: Vec<u32> = replies.iter().map(|r| r.seq).collect();
        // tools/capture_netlink.py numbers its requests from 101, in the
        // order unix listener, unix gone, tcp4 listener, tcp4 gone.
        assert_eq!(seqs, [101, 104]);
    }

    #[test]
    fn a_socket_that_does_not_listen() {
        assert_eq!(to_sample(1, Some((0, 0))), QueueSample::NotListening);
        assert_eq!(to_sample(TCP_LISTEN, None), QueueSample::NotListening);
    }

    #[test]
    fn damaged_input_is_an_error() {
        let (buf, _) = load("sock_diag_tcp4_listen8_pending2.bin");
        let err = parse_replies(&buf[..40]).unwrap_err();
        assert_eq!(err.offset, 0);
        // Every truncation fails or parses; none panics.
        for cut in 0..buf.len() {
            let _ = parse_replies(&buf[..cut]);
        }
    }

    #[test]
    fn requests_are_exact_lookups() {
        let unix = request(&Listener::Unix { inode: 118924 }, 7);
        // nlmsghdr: length, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST only (no
        // dump), seq; then unix_diag_req.
        assert_eq!(u32::from_ne_bytes(unix[0..4].try_into().unwrap()), 16 + 24);
        assert_eq!(u16::from_ne_bytes(unix[4..6].try_into().unwrap()), 20);
        assert_eq!(
            u16::from_ne_bytes(unix[6..8].try_into().unwrap()),
            NLM_F_REQUEST
        );
        assert_eq!(u32::from_ne_bytes(unix[8..12].try_into().unwrap()), 7);
        assert_eq!(unix[16], AF_UNIX);
        assert_eq!(u32::from_ne_bytes(unix[24..28].try_into().unwrap()), 118924);
        assert_eq!(u32::from_ne_bytes(unix[28..32].try_into().unwrap()), 0x10);
        assert_eq!(unix[32..40], NO_COOKIE);

        let tcp = request(
            &Listener::Tcp {
                local: "127.0.0.1:8000".parse().unwrap(),
                inode: 1,
            },
            8,
        );
        // inet_diag_req_v2 (8 bytes) + inet_diag_sockid (48 bytes).
        assert_eq!(tcp.len(), 16 + 56);
        assert_eq!(
            u16::from_ne_bytes(tcp[6..8].try_into().unwrap()),
            NLM_F_REQUEST
        );
        assert_eq!((tcp[16], tcp[17]), (AF_INET, IPPROTO_TCP));
        assert_eq!(u16::from_be_bytes(tcp[24..26].try_into().unwrap()), 8000);
        assert_eq!(tcp[28..32], [127, 0, 0, 1]);
        assert_eq!(tcp[64..72], NO_COOKIE);
    }
}
