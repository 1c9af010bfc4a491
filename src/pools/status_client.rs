//! One request to a server's status interface, synchronous, within a
//! deadline and a size cap:
//! - uWSGI's stats server writes its JSON on connect and closes;
//! - Puma's control app is HTTP: one `GET` in HTTP/1.0, read to the close;
//! - php-fpm serves its status page over FastCGI only. It is asked on the
//!   pool's own FastCGI socket with one FastCGI request (a begin record,
//!   the params, an empty stdin; its stdout read to the end record), not
//!   through an HTTP URL: that needs no `location` in nginx, and it still
//!   answers while nginx is the thing that fails. A crate would bring an
//!   async runtime or more than these 60 lines.
//!
//! The status page is answered by one of the pool's own children: while
//! every child is busy the request waits in the pool's listen queue, and
//! the deadline ends it (reported, not waited for).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::config::{StatusAddr, StatusEndpoint};

/// A connected stream of either kind.
trait Stream: Read + Write {
    fn set_read_timeout(&self, d: Duration) -> std::io::Result<()>;
}

impl Stream for UnixStream {
    fn set_read_timeout(&self, d: Duration) -> std::io::Result<()> {
        UnixStream::set_read_timeout(self, Some(d))
    }
}

impl Stream for TcpStream {
    fn set_read_timeout(&self, d: Duration) -> std::io::Result<()> {
        TcpStream::set_read_timeout(self, Some(d))
    }
}

fn connect(addr: &StatusAddr, timeout: Duration) -> Result<Box<dyn Stream>, String> {
    match addr {
        StatusAddr::Unix(path) => {
            let s = UnixStream::connect(path)
                .map_err(|e| format!("connecting to unix:{}: {e}", path.display()))?;
            s.set_read_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            s.set_write_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            Ok(Box::new(s))
        }
        StatusAddr::Tcp(hostport) => {
            let sa = hostport
                .to_socket_addrs()
                .map_err(|e| format!("resolving {hostport}: {e}"))?
                .next()
                .ok_or_else(|| format!("resolving {hostport}: no address"))?;
            let s = TcpStream::connect_timeout(&sa, timeout)
                .map_err(|e| format!("connecting to {hostport}: {e}"))?;
            s.set_read_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            s.set_write_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            Ok(Box::new(s))
        }
    }
}

/// Read until the peer closes, `deadline` passes or `max` bytes came.
fn read_all(s: &mut dyn Stream, deadline: Instant, max: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        // Each read waits only for what is left of the deadline.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(left).is_err() {
            return Err("no complete answer within the timeout".to_string());
        }
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                if out.len() + n > max {
                    return Err(format!("answer longer than {max} bytes: not read"));
                }
                out.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err("no complete answer within the timeout".to_string())
            }
            Err(e) => return Err(format!("reading: {e}")),
        }
    }
}

/// uWSGI's stats server: its JSON.
pub fn uwsgi(ep: &StatusEndpoint, timeout: Duration, max: usize) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + timeout;
    let mut s = connect(&ep.addr, timeout)?;
    read_all(&mut *s, deadline, max)
}

/// Puma's control app: the body of a 200 answer to `GET path`.
pub fn http_get(ep: &StatusEndpoint, timeout: Duration, max: usize) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + timeout;
    let mut s = connect(&ep.addr, timeout)?;
    let req = format!("GET {} HTTP/1.0\r\nHost: localhost\r\n\r\n", ep.path);
    s.write_all(req.as_bytes())
        .map_err(|e| format!("writing: {e}"))?;
    let answer = read_all(&mut *s, deadline, max)?;
    let Some(end) = memchr::memmem::find(&answer, b"\r\n\r\n") else {
        return Err("not an HTTP answer".to_string());
    };
    let status_line = answer[..end].split(|b| *b == b'\n').next().unwrap_or(&[]);
    let status_line = String::from_utf8_lossy(status_line).trim().to_string();
    let body = &answer[end + 4..];
    if status_line.split(' ').nth(1) != Some("200") {
        let body = String::from_utf8_lossy(&body[..body.len().min(100)]);
        // The token is in the path: never repeated in a message.
        return Err(format!("answered {status_line:?}: {}", body.trim()));
    }
    Ok(body.to_vec())
}

const FCGI_BEGIN_REQUEST: u8 = 1;
const FCGI_END_REQUEST: u8 = 3;
const FCGI_PARAMS: u8 = 4;
const FCGI_STDIN: u8 = 5;
const FCGI_STDOUT: u8 = 6;
const FCGI_RESPONDER: u16 = 1;
const REQUEST_ID: u16 = 1;

fn record(out: &mut Vec<u8>, kind: u8, content: &[u8]) {
    out.extend_from_slice(&[1, kind]);
    out.extend_from_slice(&REQUEST_ID.to_be_bytes());
    out.extend_from_slice(&(content.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(content);
}

fn name_value(out: &mut Vec<u8>, name: &str, value: &str) {
    for len in [name.len(), value.len()] {
        if len < 128 {
            out.push(len as u8);
        } else {
            out.extend_from_slice(&(len as u32 | 1 << 31).to_be_bytes());
        }
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(value.as_bytes());
}

/// The FastCGI request for `path?query`.
pub fn fastcgi_request(path: &str, query: &str) -> Vec<u8> {
    let mut params = Vec::new();
    for (n, v) in [
        ("SCRIPT_NAME", path),
        ("SCRIPT_FILENAME", path),
        ("REQUEST_METHOD", "GET"),
        ("QUERY_STRING", query),
        ("REQUEST_URI", &format!("{path}?{query}")),
        ("SERVER_PROTOCOL", "HTTP/1.0"),
    ] {
        name_value(&mut params, n, v);
    }
    let mut req = Vec::with_capacity(params.len() + 64);
    let mut begin = FCGI_RESPONDER.to_be_bytes().to_vec();
    begin.extend_from_slice(&[0; 6]);
    record(&mut req, FCGI_BEGIN_REQUEST, &begin);
    record(&mut req, FCGI_PARAMS, &params);
    record(&mut req, FCGI_PARAMS, &[]);
    record(&mut req, FCGI_STDIN, &[]);
    req
}

/// The stdout of a FastCGI answer, up to its end record.
pub fn fastcgi_stdout(answer: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut rest = answer;
    while rest.len() >= 8 {
        let kind = rest[1];
        let len = u16::from_be_bytes([rest[4], rest[5]]) as usize;
        let end = 8 + len + rest[6] as usize;
        if rest.len() < end {
            break;
        }
        match kind {
            FCGI_STDOUT => out.extend_from_slice(&rest[8..8 + len]),
            FCGI_END_REQUEST => return Ok(out),
            _ => {}
        }
        rest = &rest[end..];
    }
    Err("the FastCGI answer ended before its end record".to_string())
}

/// php-fpm's status page: the JSON of `path?full&json` (the CGI headers
/// checked and cut).
pub fn php_fpm(ep: &StatusEndpoint, timeout: Duration, max: usize) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + timeout;
    let mut s = connect(&ep.addr, timeout)?;
    s.write_all(&fastcgi_request(&ep.path, "full&json"))
        .map_err(|e| format!("writing: {e}"))?;
    let out = fastcgi_stdout(&read_all(&mut *s, deadline, max)?)?;
    let Some(end) = memchr::memmem::find(&out, b"\r\n\r\n") else {
        return Err("no CGI headers in the FastCGI answer".to_string());
    };
    let headers = String::from_utf8_lossy(&out[..end]);
    if let Some(status) = headers
        .lines()
        .find_map(|l| l.strip_prefix("Status:"))
        .map(str::trim)
        .filter(|s| !s.starts_with("200"))
    {
        return Err(format!(
            "{} answered {status:?}: is it the pool's pm.status_path?",
            ep.path
        ));
    }
    Ok(out[end + 4..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fastcgi_request_is_records_and_its_answer_is_stdout() {
        let req = fastcgi_request("/status", "full&json");
        // Begin: version 1, type 1, id 1, 8 bytes, role responder.
        assert_eq!(
            &req[..16],
            &[1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
        );
        // Ends with an empty params and an empty stdin record.
        assert_eq!(
            &req[req.len() - 16..],
            &[1, 4, 0, 1, 0, 0, 0, 0, 1, 5, 0, 1, 0, 0, 0, 0]
        );
        let mut answer = Vec::new();
        record(&mut answer, FCGI_STDOUT, b"Content-Type: x\r\n\r\n{");
        record(&mut answer, 7, b"a warning");
        record(&mut answer, FCGI_STDOUT, b"}");
        record(&mut answer, FCGI_END_REQUEST, &[0; 8]);
        assert_eq!(
            fastcgi_stdout(&answer).unwrap(),
            b"Content-Type: x\r\n\r\n{}".to_vec()
        );
        assert!(fastcgi_stdout(&answer[..answer.len() - 3]).is_err());
        // A long value takes a 4-byte length.
        let mut nv = Vec::new();
        name_value(&mut nv, "Q", &"x".repeat(200));
        assert_eq!(&nv[..5], &[1, 0x80, 0, 0, 200]);
    }

    #[test]
    fn an_answer_past_the_cap_or_the_deadline_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.sock");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(&[b' '; 4096]).unwrap();
            drop(s);
            // A peer that accepts and says nothing.
            let (_s, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_millis(500));
        });
        let ep = StatusEndpoint {
            addr: StatusAddr::Unix(path),
            path: String::new(),
        };
        let e = uwsgi(&ep, Duration::from_secs(2), 1000).unwrap_err();
        assert!(e.contains("longer than 1000"), "{e}");
        let t0 = Instant::now();
        let e = uwsgi(&ep, Duration::from_millis(100), 1000).unwrap_err();
        assert!(
            e.contains("timeout") && t0.elapsed() < Duration::from_millis(400),
            "{e}"
        );
        t.join().unwrap();
    }
}
