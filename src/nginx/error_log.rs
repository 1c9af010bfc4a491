//! nginx error-log lines and the table that turns upstream failures into a
//! reason and the status nginx answered with.
//!
//! An nginx error line is
//! `TIME [LEVEL] PID#TID: [*CONN ]MESSAGE[ (ERRNO: STRERROR)][ while ACTION][, client: ..., server: ..., request: "...", upstream: "...", host: "..."]`.
//! nginx cuts lines at about 2 KiB, so any trailing part may be missing.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Emerg,
    Alert,
    Crit,
    Error,
    Warn,
    Notice,
    Info,
    Debug,
}

impl Level {
    pub const ALL: &'static [Level] = &[
        Level::Emerg,
        Level::Alert,
        Level::Crit,
        Level::Error,
        Level::Warn,
        Level::Notice,
        Level::Info,
        Level::Debug,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Emerg => "emerg",
            Level::Alert => "alert",
            Level::Crit => "crit",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Notice => "notice",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    fn from_str(s: &str) -> Option<Level> {
        Level::ALL.iter().copied().find(|l| l.as_str() == s)
    }
}

pub use crate::upstream_failure::{Phase, Reason};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorLine<'a> {
    /// `YYYY/MM/DD HH:MM:SS`, local time of the nginx host.
    pub time: &'a str,
    pub level: Level,
    pub pid: u32,
    /// nginx's connection number (`*56`); absent for process-level messages.
    pub conn: Option<u64>,
    /// Everything between the connection number and `, client:`, including
    /// the errno text and the `while ...` clause.
    pub message: &'a str,
    pub errno: Option<i32>,
    /// From the `while ...` clause; `Unknown` when there is none or it is not
    /// about an upstream.
    pub phase: Phase,
    pub client: Option<&'a str>,
    pub server: Option<&'a str>,
    pub request: Option<&'a str>,
    /// As written, e.g. `http://unix:/run/g.sock:/x`; see [`upstream_server`].
    pub upstream: Option<&'a str>,
    pub host: Option<&'a str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamFailure {
    pub reason: Reason,
    pub phase: Phase,
    /// The status nginx records for this attempt in `$upstream_status`:
    /// 504 for timeouts, 502 otherwise, and `None` once the response header
    /// has arrived, because the status was already sent and the failure only
    /// truncates the body.
    pub status: Option<u16>,
}

/// `ACTION` texts of `while ACTION` that nginx's upstream module sets.
const PHASES: &[(&str, Phase)] = &[
    ("connecting to upstream", Phase::Connect),
    ("SSL handshaking to upstream", Phase::Connect),
    ("sending request to upstream", Phase::SendRequest),
    ("reading response header from upstream", Phase::ReadHeader),
    ("reading upstream", Phase::ReadBody),
];

/// Context keys nginx's HTTP log handler appends, in the order it writes them.
const CONTEXT_KEYS: &[&str] = &[
    ", server: ",
    ", request: ",
    ", subrequest: ",
    ", upstream: ",
    ", host: ",
    ", referrer: ",
];

/// Parses one error-log line (a trailing newline is ignored). Returns `None`
/// for anything that is not in nginx's error-log layout.
pub fn parse_error_line(line: &str) -> Option<ErrorLine<'_>> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    let time = line.get(..19)?;
    if !is_timestamp(time.as_bytes()) {
        return None;
    }
    let rest = line[19..].strip_prefix(" [")?;
    let close = rest.find("] ")?;
    let level = Level::from_str(&rest[..close])?;
    let rest = &rest[close + 2..];

    let (pid, rest) = split_number(rest)?;
    let pid = u32::try_from(pid).ok()?;
    let rest = rest.strip_prefix('#')?;
    let (_tid, rest) = split_number(rest)?;
    let rest = rest.strip_prefix(": ")?;

    let (conn, rest) = match rest.strip_prefix('*') {
        Some(r) => {
            let (n, r) = split_number(r)?;
            (Some(n), r.strip_prefix(' ')?)
        }
        None => (None, rest),
    };

    // nginx escapes the bytes it quotes from upstream responses (`\x20`), so
    // the first `, client: ` is the one its log handler wrote.
    let (message, context) = match rest.find(", client: ") {
        Some(at) => (&rest[..at], Some(&rest[at + ", client: ".len()..])),
        None => (rest, None),
    };

    let (before_while, action) = match message.rfind(" while ") {
        Some(at) => (&message[..at], Some(&message[at + " while ".len()..])),
        None => (message, None),
    };
    let phase = action
        .and_then(|a| PHASES.iter().find(|(text, _)| *text == a))
        .map_or(Phase::Unknown, |&(_, p)| p);

    let mut out = ErrorLine {
        time,
        level,
        pid,
        conn,
        message,
        errno: find_errno(before_while),
        phase,
        client: None,
        server: None,
        request: None,
        upstream: None,
        host: None,
    };
    if let Some(context) = context {
        fill_context(context, &mut out);
    }
    Some(out)
}

fn is_timestamp(t: &[u8]) -> bool {
    // YYYY/MM/DD HH:MM:SS
    t.len() == 19
        && t.iter().enumerate().all(|(i, &b)| match i {
            4 | 7 => b == b'/',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        })
}

fn split_number(s: &str) -> Option<(u64, &str)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    Some((s[..digits].parse().ok()?, &s[digits..]))
}

/// nginx appends ` (ERRNO: STRERROR)` to the message text; the last one
/// wins because the message itself may quote parentheses.
fn find_errno(s: &str) -> Option<i32> {
    let mut end = s.len();
    while let Some(open) = s[..end].rfind(" (") {
        let inner = &s[open + 2..];
        let digits = inner.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && digits <= 9 && inner[digits..].starts_with(": ") {
            return inner[..digits].parse().ok();
        }
        end = open;
    }
    None
}

fn fill_context<'a>(context: &'a str, out: &mut ErrorLine<'a>) {
    // Each value runs to the next key nginx could have written after it.
    let mut found: [Option<usize>; CONTEXT_KEYS.len()] = [None; CONTEXT_KEYS.len()];
    let mut cursor = 0;
    for (i, key) in CONTEXT_KEYS.iter().enumerate() {
        if let Some(at) = context[cursor..].find(key) {
            found[i] = Some(cursor + at);
            cursor += at + key.len();
        }
    }
    let value_end = |from: usize, after: usize| -> usize {
        found[after..]
            .iter()
            .flatten()
            .copied()
            .find(|&p| p >= from)
            .unwrap_or(context.len())
    };
    let client_end = value_end(0, 0);
    out.client = non_empty(&context[..client_end]);
    for (i, key) in CONTEXT_KEYS.iter().enumerate() {
        let Some(at) = found[i] else { continue };
        let from = at + key.len();
        let end = value_end(from, i + 1).max(from);
        let raw = &context[from..end];
        let value = match *key {
            ", server: " => non_empty(raw),
            _ => non_empty(unquote(raw)),
        };
        match *key {
            ", server: " => out.server = value,
            ", request: " => out.request = value,
            ", upstream: " => out.upstream = value,
            ", host: " => out.host = value,
            _ => {}
        }
    }
}

/// Strips the quotes nginx puts around values; a line cut at 2 KiB may have
/// lost the closing one.
fn unquote(s: &str) -> &str {
    let s = s.strip_prefix('"').unwrap_or(s);
    s.strip_suffix('"').unwrap_or(s)
}

fn non_empty(s: &str) -> Option<&str> {
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

/// One row of the classification table. Rows are tried in order and the
/// first whose every condition holds decides.
#[derive(Debug)]
pub struct Rule {
    /// Substring of the message; empty matches any message.
    pub pattern: &'static str,
    pub errno: Option<i32>,
    /// Only when the upstream is a unix socket.
    pub unix_only: bool,
    /// `None`: a known message that is not an upstream failure.
    pub reason: Option<Reason>,
}

const fn rule(
    pattern: &'static str,
    errno: Option<i32>,
    unix_only: bool,
    reason: Option<Reason>,
) -> Rule {
    Rule {
        pattern,
        errno,
        unix_only,
        reason,
    }
}

use Reason::*;

#[rustfmt::skip]
pub static RULES: &[Rule] = &[
    // Logged with an upstream phase but not failures: PHP warnings relayed by
    // FastCGI, and the note that accompanies max_fails tripping.
    rule("FastCGI sent in stderr",                      None,      false, None),
    rule("upstream server temporarily disabled",        None,      false, None),
    // Resolver errors carry their own errno (110 on a resolver timeout) and
    // must not be read as an upstream timeout.
    rule("could not be resolved",                       None,      false, Some(DnsError)),
    rule("no resolver defined to resolve",              None,      false, Some(DnsError)),
    rule("no live upstreams",                           None,      false, Some(NoLiveUpstreams)),
    rule("upstream timed out",                          None,      false, Some(Timeout)),
    rule("SSL_do_handshake() failed",                   None,      false, Some(SslError)),
    rule("upstream SSL certificate",                    None,      false, Some(SslError)),
    rule("peer closed connection in SSL handshake",     None,      false, Some(SslError)),
    rule("upstream sent too big header",                None,      false, Some(TooBigHeader)),
    rule("upstream sent invalid header",                None,      false, Some(InvalidHeader)),
    rule("upstream sent no valid",                      None,      false, Some(InvalidHeader)),
    rule("upstream sent duplicate header line",         None,      false, Some(InvalidHeader)),
    rule("upstream prematurely closed connection",      None,      false, Some(PrematureClose)),
    // A FastCGI app that closed its stdout before its headers.
    rule("upstream prematurely closed FastCGI stdout",  None,      false, Some(PrematureClose)),
    // ENOENT: the socket file is gone (app not started, wrong path).
    rule("",                                            Some(2),   true,  Some(SocketMissing)),
    // EACCES: socket file mode on unix sockets; SELinux denying TCP.
    rule("",                                            Some(13),  false, Some(PermissionDenied)),
    // EAGAIN from a non-blocking connect() to a unix socket: listen queue full.
    rule("",                                            Some(11),  true,  Some(BacklogFull)),
    // ECONNREFUSED: nothing listening; on a unix socket, a stale socket file.
    rule("",                                            Some(111), false, Some(ConnectionRefused)),
    rule("",                                            Some(104), false, Some(ResetByPeer)),
    rule("",                                            Some(32),  false, Some(BrokenPipe)),
    rule("",                                            Some(110), false, Some(Timeout)),
];

fn is_unix_upstream(line: &ErrorLine) -> bool {
    line.message.contains(" to unix:") || line.upstream.is_some_and(|u| u.contains("://unix:"))
}

/// Classifies an error line that reports an upstream failure; `None` for
/// everything else (warnings, client errors, static-file errors, ...).
pub fn classify(line: &ErrorLine) -> Option<UpstreamFailure> {
    // Upstream failures are logged at `error` or `crit` (nginx picks `crit`
    // for some connect() errnos); warn and below are advisory.
    if line.level > Level::Error {
        return None;
    }
    let has_upstream_phase = line.phase != Phase::Unknown;
    // A `while` clause that is not an upstream one (`while reading client
    // request line`, `while SSL handshaking`) means the upstream is not involved.
    if !has_upstream_phase && line.message.contains(" while ") {
        return None;
    }
    let unix = is_unix_upstream(line);
    let rule = RULES.iter().find(|r| {
        // A bare errno says nothing about upstreams (open() of a static file
        // fails with 2 or 13 too), so errno-only rows need an upstream phase.
        (if r.pattern.is_empty() {
            has_upstream_phase
        } else {
            line.message.contains(r.pattern)
        }) && r.errno.is_none_or(|e| line.errno == Some(e))
            && (!r.unix_only || unix)
    });
    let reason = match rule {
        Some(r) => r.reason?,
        None if has_upstream_phase => Reason::Other,
        None => return None,
    };
    let status = match (line.phase, reason) {
        (Phase::ReadBody, _) => None,
        (_, Reason::Timeout) => Some(504),
        _ => Some(502),
    };
    Some(UpstreamFailure {
        reason,
        phase: line.phase,
        status,
    })
}

/// The server part of an error line's `upstream: "..."`, spelled the way
/// `$upstream_addr` spells it, so error lines can be joined to access lines.
/// For `no live upstreams` nginx writes the group name here, which is also
/// what `$upstream_addr` holds.
pub fn upstream_server(upstream: &str) -> &str {
    let rest = match upstream.find("://") {
        Some(at) => &upstream[at + 3..],
        None => upstream,
    };
    if let Some(path) = rest.strip_prefix("unix:") {
        // nginx writes `unix:PATH:URI`. Some code paths drop the `:` before
        // the URI; then the conventional `.sock` suffix is the best boundary.
        let end = match path.find(':') {
            Some(at) => at,
            None => path
                .find(".sock")
                .map_or(path.len(), |at| at + ".sock".len()),
        };
        return &rest[.."unix:".len() + end];
    }
    match rest.find('/') {
        Some(at) => &rest[..at],
        None => rest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Captured from nginx 1.22.1 (fixtures/nginx/capture-nginx.conf). It
    // holds raw non-UTF-8 request bytes, as real error logs do.
    const ERROR_LOG: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/nginx/error.log"
    ));

    const CTX: &str = r#", client: 127.0.0.1, server: _, request: "GET /x HTTP/1.1", upstream: "http://127.0.0.1:8001/x", host: "127.0.0.1:8080""#;
    const UNIX_CTX: &str = r#", client: 127.0.0.1, server: _, request: "GET /x HTTP/1.1", upstream: "http://unix:/run/g.sock:/x", host: "127.0.0.1:8080""#;

    fn line(level: &str, msg: &str, ctx: &str) -> String {
        format!("2026/11/23 04:20:01 [{level}] 1234#1234: *56 {msg}{ctx}")
    }

    fn class(level: &str, msg: &str, ctx: &str) -> Option<(Reason, Phase, Option<u16>)> {
        let l = line(level, msg, ctx);
        let parsed = parse_error_line(&l).expect("parses");
        classify(&parsed).map(|f| (f.reason, f.phase, f.status))
    }

    /// Each line of a capture: its reason, phase, status and upstream.
    fn classify_captured(text: &str) -> Vec<(Reason, Phase, Option<u16>, &str)> {
        text.lines()
            .map(|l| {
                let p = parse_error_line(l).expect("parses");
                let f = classify(&p).unwrap_or_else(|| panic!("not classified: {l}"));
                (
                    f.reason,
                    f.phase,
                    f.status,
                    upstream_server(p.upstream.unwrap()),
                )
            })
            .collect()
    }

    /// nginx 1.22 in front of uWSGI 2.0.21 (`uwsgi_pass`) and php-fpm 8.2
    /// (`fastcgi_pass`), captured by tools/capture_server_logs.py nginx:
    /// the same rows as for `proxy_pass`, on `uwsgi://unix:` and
    /// `fastcgi://unix:` upstreams.
    #[test]
    fn uwsgi_and_fastcgi_lines_captured_from_real_nginx() {
        use Phase::*;
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/nginx/error_uwsgi_fastcgi.log"
        ));
        let got = classify_captured(text);
        let uwsgi = "unix:/run/app/uwsgi.sock";
        let fpm = "unix:/run/app/fpm.sock";
        let want = [
            // A uWSGI worker SIGKILLed mid-request; then a harakiri.
            (PrematureClose, ReadHeader, Some(502), uwsgi),
            (PrematureClose, ReadHeader, Some(502), uwsgi),
            // A php-fpm child SIGKILLed mid-request (as an OOM kill does);
            // then request_terminate_timeout: a reset, not a close.
            (ResetByPeer, ReadHeader, Some(502), fpm),
            (ResetByPeer, ReadHeader, Some(502), fpm),
        ];
        assert_eq!(got[..4], want, "{got:?}");
        // listen.backlog = 1 with its one child busy: EAGAIN on the socket.
        let rest = &got[4..];
        let backlog = rest.iter().take_while(|g| g.0 == BacklogFull).count();
        assert!(backlog >= 1, "{got:?}");
        assert!(rest[..backlog]
            .iter()
            .all(|g| *g == (BacklogFull, Connect, Some(502), fpm)));
        // uWSGI stopped (its socket file left behind), php-fpm stopped (its
        // socket removed).
        assert_eq!(
            rest[backlog..],
            [
                (ConnectionRefused, Connect, Some(502), uwsgi),
                (SocketMissing, Connect, Some(502), fpm),
            ]
        );
    }

    /// nginx 1.22 with `fastcgi_pass`, captured by
    /// fixtures/nginx/capture-fastcgi.sh: a php-fpm 8.2 child SIGKILLed
    /// while its body streamed (a reset after the 200 went out, so no
    /// status of nginx's own), and an app that closed its FastCGI stdout
    /// before its headers (a 502).
    #[test]
    fn fastcgi_stdout_closed_and_a_child_killed_mid_body() {
        use Phase::*;
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/nginx/error_fastcgi.log"
        ));
        let got = classify_captured(text);
        assert_eq!(
            got,
            [
                (ResetByPeer, ReadBody, None, "unix:/run/app/fpm.sock"),
                (
                    PrematureClose,
                    ReadHeader,
                    Some(502),
                    "unix:/run/app/cgi.sock"
                ),
            ]
        );
    }

    #[test]
    fn parses_full_line() {
        let l = r#"2026/11/23 04:20:01 [error] 1234#1234: *56 connect() to unix:/run/gunicorn/api.sock failed (2: No such file or directory) while connecting to upstream, client: 127.0.0.1, server: _, request: "GET /x HTTP/1.1", upstream: "http://unix:/run/gunicorn/api.sock:/x", host: "127.0.0.1:8080""#;
        let p = parse_error_line(l).unwrap();
        assert_eq!(p.time, "2026/11/23 04:20:01");
        assert_eq!(p.level, Level::Error);
        assert_eq!(p.pid, 1234);
        assert_eq!(p.conn, Some(56));
        assert_eq!(
            p.message,
            "connect() to unix:/run/gunicorn/api.sock failed (2: No such file or directory) while connecting to upstream"
        );
        assert_eq!(p.errno, Some(2));
        assert_eq!(p.phase, Phase::Connect);
        assert_eq!(p.client, Some("127.0.0.1"));
        assert_eq!(p.server, Some("_"));
        assert_eq!(p.request, Some("GET /x HTTP/1.1"));
        assert_eq!(p.upstream, Some("http://unix:/run/gunicorn/api.sock:/x"));
        assert_eq!(p.host, Some("127.0.0.1:8080"));
        assert_eq!(
            upstream_server(p.upstream.unwrap()),
            "unix:/run/gunicorn/api.sock"
        );
    }

    #[test]
    fn parses_line_without_connection_or_context() {
        let p = parse_error_line(
            "2026/11/23 04:16:47 [error] 7585#7585: send() failed (111: Connection refused) while resolving, resolver: 127.0.0.1:18053\n",
        )
        .unwrap();
        assert_eq!(p.conn, None);
        assert_eq!(p.errno, Some(111));
        assert_eq!(p.phase, Phase::Unknown);
        assert_eq!(p.client, None);
        // A resolver socket error is not an upstream failure by itself.
        assert_eq!(classify(&p), None);
    }

    #[test]
    fn truncated_line_keeps_what_is_there() {
        let l = line("error", "upstream timed out (110: Connection timed out) while reading response header from upstream", r#", client: 1.2.3.4, server: a, request: "GET /very/long"#);
        let p = parse_error_line(&l).unwrap();
        assert_eq!(p.request, Some("GET /very/long"));
        assert_eq!(p.upstream, None);
        assert_eq!(classify(&p).map(|f| f.status), Some(Some(504)));
        let p = parse_error_line(&l[..80]).unwrap();
        assert_eq!(p.phase, Phase::Unknown);
    }

    #[test]
    fn rejects_garbage() {
        for l in [
            "",
            "hello",
            "2026/11/23 04:20:01",
            "2026/11/23 04:20:01 [bogus] 1#1: x",
            "2026/11/23 04:20:01 [error] x#1: x",
            "2026/11/23 04:20:01 [error] 1#1 x",
            "2026/11/23 04:20:01 [error] 1#1: *x y",
            "2026-11-23 04:20:01 [error] 1#1: x",
            "2026/11/23 04:20:01 [error] 99999999999#1: x",
        ] {
            assert_eq!(parse_error_line(l), None, "{l}");
        }
    }

    // One test per RULES row, in table order.
    #[test]
    fn row_fastcgi_stderr_ignored() {
        assert_eq!(
            class(
                "error",
                r#"FastCGI sent in stderr: "PHP message: x" while reading response header from upstream"#,
                CTX
            ),
            None
        );
    }
    #[test]
    fn row_temporarily_disabled_ignored() {
        // nginx logs this at warn; even at error it is not a failure.
        assert_eq!(
            class(
                "error",
                "upstream server temporarily disabled while connecting to upstream",
                CTX
            ),
            None
        );
        assert_eq!(
            class(
                "warn",
                "upstream server temporarily disabled while connecting to upstream",
                CTX
            ),
            None
        );
    }
    #[test]
    fn row_could_not_be_resolved() {
        assert_eq!(
            class(
                "error",
                "gunicorn could not be resolved (3: Host not found)",
                r#", client: 1.1.1.1, server: _, request: "GET / HTTP/1.1", host: "h""#
            ),
            Some((DnsError, Phase::Unknown, Some(502)))
        );
        assert_eq!(
            class(
                "error",
                "gunicorn.internal could not be resolved (110: Operation timed out)",
                CTX
            )
            .unwrap()
            .0,
            DnsError
        );
    }
    #[test]
    fn row_no_resolver() {
        assert_eq!(
            class("error", "no resolver defined to resolve gunicorn", CTX),
            Some((DnsError, Phase::Unknown, Some(502)))
        );
    }
    #[test]
    fn row_no_live_upstreams() {
        assert_eq!(
            class(
                "error",
                "no live upstreams while connecting to upstream",
                r#", client: 1.1.1.1, server: _, request: "GET / HTTP/1.1", upstream: "http://backend/", host: "h""#
            ),
            Some((NoLiveUpstreams, Phase::Connect, Some(502)))
        );
    }
    #[test]
    fn row_upstream_timed_out() {
        let m = "upstream timed out (110: Connection timed out) while";
        assert_eq!(
            class(
                "error",
                &format!("{m} reading response header from upstream"),
                CTX
            ),
            Some((Timeout, Phase::ReadHeader, Some(504)))
        );
        assert_eq!(
            class("error", &format!("{m} connecting to upstream"), CTX),
            Some((Timeout, Phase::Connect, Some(504)))
        );
        assert_eq!(
            class("error", &format!("{m} sending request to upstream"), CTX),
            Some((Timeout, Phase::SendRequest, Some(504)))
        );
        assert_eq!(
            class("error", &format!("{m} reading upstream"), CTX),
            Some((Timeout, Phase::ReadBody, None))
        );
    }
    #[test]
    fn row_ssl_handshake() {
        assert_eq!(
            class("error", "SSL_do_handshake() failed (SSL: error:0A00010B:SSL routines::wrong version number) while SSL handshaking to upstream", CTX),
            Some((SslError, Phase::Connect, Some(502)))
        );
        // The same call failing for a client connection is not upstream.
        assert_eq!(
            class(
                "info",
                "SSL_do_handshake() failed (SSL: error:0A000126) while SSL handshaking",
                ", client: 1.1.1.1, server: 0.0.0.0:443"
            ),
            None
        );
        assert_eq!(
            class(
                "error",
                "SSL_do_handshake() failed (SSL: x) while SSL handshaking",
                ", client: 1.1.1.1, server: 0.0.0.0:443"
            ),
            None
        );
    }
    #[test]
    fn row_ssl_certificate() {
        assert_eq!(class("error", r#"upstream SSL certificate verify error: (10:certificate has expired) while SSL handshaking to upstream"#, CTX).unwrap().0, SslError);
    }
    #[test]
    fn row_ssl_peer_closed() {
        assert_eq!(class("error", "peer closed connection in SSL handshake (104: Connection reset by peer) while SSL handshaking to upstream", CTX).unwrap().0, SslError);
    }
    #[test]
    fn row_too_big_header() {
        assert_eq!(
            class(
                "error",
                "upstream sent too big header while reading response header from upstream",
                CTX
            ),
            Some((TooBigHeader, Phase::ReadHeader, Some(502)))
        );
    }
    #[test]
    fn row_invalid_header() {
        assert_eq!(
            class(
                "error",
                "upstream sent invalid header while reading response header from upstream",
                CTX
            ),
            Some((InvalidHeader, Phase::ReadHeader, Some(502)))
        );
        assert_eq!(class("error", r#"upstream sent invalid header: "Bad\x20..." while reading response header from upstream"#, CTX).unwrap().0, InvalidHeader);
    }
    #[test]
    fn row_no_valid_header() {
        assert_eq!(class("error", "upstream sent no valid HTTP/1.0 header while reading response header from upstream", CTX).unwrap().0, InvalidHeader);
    }
    #[test]
    fn row_duplicate_header() {
        assert_eq!(class("error", r#"upstream sent duplicate header line: "Content-Length: 1", previous value: "Content-Length: 2" while reading response header from upstream"#, CTX).unwrap().0, InvalidHeader);
    }
    #[test]
    fn row_premature_close() {
        assert_eq!(class("error", "upstream prematurely closed connection while reading response header from upstream", CTX), Some((PrematureClose, Phase::ReadHeader, Some(502))));
        assert_eq!(
            class(
                "error",
                "upstream prematurely closed connection while reading upstream",
                CTX
            ),
            Some((PrematureClose, Phase::ReadBody, None))
        );
    }
    #[test]
    fn row_socket_missing() {
        assert_eq!(
            class("crit", "connect() to unix:/run/g.sock failed (2: No such file or directory) while connecting to upstream", UNIX_CTX),
            Some((SocketMissing, Phase::Connect, Some(502)))
        );
        // ENOENT without a unix socket, e.g. a static file, is not this row.
        assert_eq!(
            class(
                "error",
                r#"open() "/var/www/x" failed (2: No such file or directory)"#,
                ", client: 1.1.1.1, server: _"
            ),
            None
        );
    }
    #[test]
    fn row_permission_denied() {
        assert_eq!(
            class("crit", "connect() to unix:/tmp/g.sock failed (13: Permission denied) while connecting to upstream", UNIX_CTX),
            Some((PermissionDenied, Phase::Connect, Some(502)))
        );
        assert_eq!(class("crit", "connect() to 127.0.0.1:8001 failed (13: Permission denied) while connecting to upstream", CTX).unwrap().0, PermissionDenied);
        assert_eq!(
            class(
                "error",
                r#"open() "/var/www/x" failed (13: Permission denied)"#,
                ", client: 1.1.1.1, server: _"
            ),
            None
        );
    }
    #[test]
    fn row_backlog_full() {
        assert_eq!(
            class("error", "connect() to unix:/tmp/g.sock failed (11: Resource temporarily unavailable) while connecting to upstream", UNIX_CTX),
            Some((BacklogFull, Phase::Connect, Some(502)))
        );
        // EAGAIN on TCP is not a listen-queue signal.
        assert_eq!(class("error", "connect() failed (11: Resource temporarily unavailable) while connecting to upstream", CTX).unwrap().0, Other);
    }
    #[test]
    fn row_connection_refused() {
        assert_eq!(
            class(
                "error",
                "connect() failed (111: Connection refused) while connecting to upstream",
                CTX
            ),
            Some((ConnectionRefused, Phase::Connect, Some(502)))
        );
        assert_eq!(class("error", "connect() to 127.0.0.1:8001 failed (111: Connection refused) while connecting to upstream", CTX).unwrap().0, ConnectionRefused);
        assert_eq!(class("error", "connect() to unix:/tmp/g.sock failed (111: Connection refused) while connecting to upstream", UNIX_CTX).unwrap().0, ConnectionRefused);
    }
    #[test]
    fn row_reset_by_peer() {
        assert_eq!(class("error", "recv() failed (104: Connection reset by peer) while reading response header from upstream", CTX), Some((ResetByPeer, Phase::ReadHeader, Some(502))));
        assert_eq!(
            class(
                "error",
                "writev() failed (104: Connection reset by peer) while sending request to upstream",
                CTX
            ),
            Some((ResetByPeer, Phase::SendRequest, Some(502)))
        );
        assert_eq!(
            class(
                "error",
                "readv() failed (104: Connection reset by peer) while reading upstream",
                CTX
            ),
            Some((ResetByPeer, Phase::ReadBody, None))
        );
    }
    #[test]
    fn row_broken_pipe() {
        assert_eq!(
            class(
                "error",
                "writev() failed (32: Broken pipe) while sending request to upstream",
                CTX
            ),
            Some((BrokenPipe, Phase::SendRequest, Some(502)))
        );
    }
    #[test]
    fn row_errno_timeout() {
        assert_eq!(
            class(
                "error",
                "connect() failed (110: Connection timed out) while connecting to upstream",
                CTX
            ),
            Some((Timeout, Phase::Connect, Some(504)))
        );
    }
    #[test]
    fn unmatched_upstream_message_is_other() {
        assert_eq!(
            class(
                "error",
                "connect() failed (113: No route to host) while connecting to upstream",
                CTX
            ),
            Some((Other, Phase::Connect, Some(502)))
        );
        assert_eq!(
            class(
                "error",
                r#"upstream sent more data than specified in "Content-Length" header while reading upstream"#,
                CTX
            ),
            Some((Other, Phase::ReadBody, None))
        );
    }
    #[test]
    fn non_upstream_lines() {
        assert_eq!(class("warn", "an upstream response is buffered to a temporary file /var/cache/nginx/proxy_temp/1/00/0000000001 while reading upstream", CTX), None);
        assert_eq!(
            class("info", "client 127.0.0.1 closed keepalive connection", ""),
            None
        );
        assert_eq!(
            class(
                "info",
                "recv() failed (104: Connection reset by peer) while reading client request line",
                ", client: 1.1.1.1, server: _"
            ),
            None
        );
        assert_eq!(
            class(
                "error",
                "client intended to send too large body: 2000000 bytes",
                CTX
            ),
            None
        );
    }

    #[test]
    fn every_rule_is_reachable() {
        // Each row must win for some message, or a row above shadows it.
        for (i, r) in RULES.iter().enumerate() {
            let msg = if r.pattern.is_empty() {
                format!(
                    "connect() to unix:/a.sock failed ({}: x) while connecting to upstream",
                    r.errno.unwrap_or(0)
                )
            } else {
                format!("{} while reading response header from upstream", r.pattern)
            };
            let l = line("error", &msg, UNIX_CTX);
            let p = parse_error_line(&l).unwrap();
            let first = RULES.iter().position(|q| {
                (if q.pattern.is_empty() {
                    true
                } else {
                    p.message.contains(q.pattern)
                }) && q.errno.is_none_or(|e| p.errno == Some(e))
            });
            assert_eq!(first, Some(i), "row {i} {r:?} is shadowed");
            assert_eq!(classify(&p).map(|f| f.reason), r.reason);
        }
    }

    #[test]
    fn captured_fixture() {
        let text = String::from_utf8_lossy(ERROR_LOG);
        let mut counts = std::collections::HashMap::new();
        let mut parsed = 0;
        for l in text.lines() {
            let p = parse_error_line(l).unwrap_or_else(|| panic!("unparsed: {l}"));
            parsed += 1;
            if let Some(f) = classify(&p) {
                *counts.entry(f.reason.as_str()).or_insert(0) += 1;
                if f.reason != DnsError {
                    let up = p.upstream.expect("upstream failures name the upstream");
                    assert!(
                        !upstream_server(up).contains('/')
                            || upstream_server(up).starts_with("unix:"),
                        "{up}"
                    );
                }
            }
        }
        assert_eq!(parsed, 73);
        let expect = [
            ("socket_missing", 4),
            ("connection_refused", 4),
            ("permission_denied", 1),
            ("premature_close", 2),
            ("timeout", 3),
            ("reset_by_peer", 2),
            ("invalid_header", 1),
            ("too_big_header", 1),
            ("ssl_error", 1),
            ("no_live_upstreams", 2),
            ("dns_error", 2),
            ("backlog_full", 5),
        ];
        for (reason, n) in expect {
            assert_eq!(
                counts.get(reason).copied().unwrap_or(0),
                n,
                "{reason}: {counts:?}"
            );
        }
        assert_eq!(
            counts.values().sum::<i32>(),
            expect.iter().map(|e| e.1).sum::<i32>()
        );
    }

    #[test]
    fn upstream_server_forms() {
        for (input, want) in [
            ("http://unix:/run/g.sock:/x", "unix:/run/g.sock"),
            (
                "http://unix:/tmp/ngxcap/socks/backlog.sock/backlog",
                "unix:/tmp/ngxcap/socks/backlog.sock",
            ),
            ("http://127.0.0.1:8001/x", "127.0.0.1:8001"),
            ("https://[::1]:8443/a/b", "[::1]:8443"),
            (
                "fastcgi://unix:/run/php/php8.2-fpm.sock:",
                "unix:/run/php/php8.2-fpm.sock",
            ),
            ("fastcgi://127.0.0.1:9000", "127.0.0.1:9000"),
            ("uwsgi://unix:/run/app", "unix:/run/app"),
            ("http://nolive2/nolive2", "nolive2"),
            ("127.0.0.1:80", "127.0.0.1:80"),
            ("", ""),
        ] {
            assert_eq!(upstream_server(input), want, "{input}");
        }
    }

    #[test]
    fn names() {
        let names: Vec<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), 14);
        assert_eq!(names[0], "socket_missing");
        assert_eq!(names[13], "other");
        assert_eq!(Phase::ReadBody.as_str(), "read_body");
        assert_eq!(Level::Crit.as_str(), "crit");
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            if let Some(p) = parse_error_line(&s) {
                let _ = classify(&p);
                if let Some(u) = p.upstream { let _ = upstream_server(u); }
            }
        }

        #[test]
        fn never_panics_near_valid(i in 0usize..73, junk in "\\PC{0,12}", at in any::<usize>(), cut in any::<usize>()) {
            let text = String::from_utf8_lossy(ERROR_LOG);
            let l = text.lines().nth(i).unwrap_or("");
            let mut s: String = l.to_string();
            let mut at = at % (s.len() + 1);
            while !s.is_char_boundary(at) { at -= 1; }
            s.insert_str(at, &junk);
            let mut cut = cut % (s.len() + 1);
            while !s.is_char_boundary(cut) { cut -= 1; }
            for cand in [&s[..], &s[..cut]] {
                if let Some(p) = parse_error_line(cand) {
                    let _ = classify(&p);
                    if let Some(u) = p.upstream { let _ = upstream_server(u); }
                }
            }
        }

        #[test]
        fn upstream_server_never_panics(s in "\\PC{0,80}") {
            let _ = upstream_server(&s);
        }
    }
}
