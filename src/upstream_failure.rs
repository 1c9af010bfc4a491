//! Why an nginx upstream attempt failed, and in which phase: the
//! vocabulary the error-log classifier writes, the timeline carries and the
//! rules read. Plain data, below every layer that uses it.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    SocketMissing,
    PermissionDenied,
    BacklogFull,
    ConnectionRefused,
    ResetByPeer,
    BrokenPipe,
    PrematureClose,
    Timeout,
    NoLiveUpstreams,
    InvalidHeader,
    TooBigHeader,
    SslError,
    DnsError,
    Other,
}

impl Reason {
    pub const ALL: &'static [Reason] = &[
        Reason::SocketMissing,
        Reason::PermissionDenied,
        Reason::BacklogFull,
        Reason::ConnectionRefused,
        Reason::ResetByPeer,
        Reason::BrokenPipe,
        Reason::PrematureClose,
        Reason::Timeout,
        Reason::NoLiveUpstreams,
        Reason::InvalidHeader,
        Reason::TooBigHeader,
        Reason::SslError,
        Reason::DnsError,
        Reason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SocketMissing => "socket_missing",
            Reason::PermissionDenied => "permission_denied",
            Reason::BacklogFull => "backlog_full",
            Reason::ConnectionRefused => "connection_refused",
            Reason::ResetByPeer => "reset_by_peer",
            Reason::BrokenPipe => "broken_pipe",
            Reason::PrematureClose => "premature_close",
            Reason::Timeout => "timeout",
            Reason::NoLiveUpstreams => "no_live_upstreams",
            Reason::InvalidHeader => "invalid_header",
            Reason::TooBigHeader => "too_big_header",
            Reason::SslError => "ssl_error",
            Reason::DnsError => "dns_error",
            Reason::Other => "other",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    Connect,
    SendRequest,
    ReadHeader,
    ReadBody,
    Unknown,
}

impl Phase {
    pub const ALL: &'static [Phase] = &[
        Phase::Connect,
        Phase::SendRequest,
        Phase::ReadHeader,
        Phase::ReadBody,
        Phase::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::SendRequest => "send_request",
            Phase::ReadHeader => "read_header",
            Phase::ReadBody => "read_body",
            Phase::Unknown => "unknown",
        }
    }
}
