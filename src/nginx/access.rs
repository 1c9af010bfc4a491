//! nginx `log_format` compiled into a line parser.
//!
//! A format is a list of literals and variables. nginx writes each variable's
//! value with escaping that cannot produce the text of the literal that follows
//! it (in the default mode `"` becomes `\x22`; under `escape=json` it becomes
//! `\"`), so a variable ends at the next occurrence of its following literal.
//! Only the fields the exporter needs are kept, as borrowed slices of the line,
//! so parsing allocates nothing.

use std::fmt;

use memchr::memchr;
use thiserror::Error;

/// How nginx escaped variable values (`log_format NAME escape=...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Escape {
    /// `"`, `\`, control and non-ASCII bytes become `\xHH`.
    #[default]
    Default,
    /// JSON string escaping: `\"`, `\\`, `\n`, `\u00XX`.
    Json,
    /// No escaping at all: a value may contain its terminating literal, in
    /// which case the line is split in the wrong place. nginx offers no way
    /// to tell, so neither can we.
    None,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FormatError {
    #[error("`$` at byte {at} is not followed by a variable name")]
    EmptyVariable { at: usize },
    #[error("`${{` at byte {at} has no closing `}}`")]
    UnterminatedBrace { at: usize },
    #[error("variables ${first} and ${second} are adjacent with no text between them, so ${interesting} cannot be located")]
    AdjacentVariables {
        first: String,
        second: String,
        interesting: String,
    },
    #[error("unknown built-in log format `{0}` (known: combined, main)")]
    UnknownBuiltin(String),
    #[error("not a log_format directive: {0}")]
    BadDirective(&'static str),
    #[error("unknown escape mode `{0}` (expected default, json or none)")]
    BadEscape(String),
    #[error("unterminated quoted string in log_format directive")]
    UnterminatedQuote,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LineError {
    /// The literal text of the format was not found where expected.
    /// `at_segment` indexes the format's segments (literals and variables in
    /// written order) and names the literal that failed to match.
    #[error("line does not match the log format at segment {at_segment}")]
    Mismatch { at_segment: usize },
}

/// The fields the exporter uses, borrowed from one line. `-` (nginx's "no
/// value") and the empty string (the same under `escape=json`) are stored as
/// `None`, as is any field the format does not contain. Values written under
/// `escape=json` are left escaped; none of these fields contain escapable
/// characters in practice.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct AccessFields<'a> {
    pub status: Option<&'a [u8]>,
    pub request_time: Option<&'a [u8]>,
    pub upstream_addr: Option<&'a [u8]>,
    pub upstream_status: Option<&'a [u8]>,
    pub upstream_response_time: Option<&'a [u8]>,
    pub upstream_connect_time: Option<&'a [u8]>,
    pub upstream_header_time: Option<&'a [u8]>,
    pub body_bytes_sent: Option<&'a [u8]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Status,
    RequestTime,
    UpstreamAddr,
    UpstreamStatus,
    UpstreamResponseTime,
    UpstreamConnectTime,
    UpstreamHeaderTime,
    BodyBytesSent,
    Skip,
}

impl Field {
    fn from_name(name: &str) -> Field {
        match name {
            "status" => Field::Status,
            "request_time" => Field::RequestTime,
            "upstream_addr" => Field::UpstreamAddr,
            "upstream_status" => Field::UpstreamStatus,
            "upstream_response_time" => Field::UpstreamResponseTime,
            "upstream_connect_time" => Field::UpstreamConnectTime,
            "upstream_header_time" => Field::UpstreamHeaderTime,
            "body_bytes_sent" => Field::BodyBytesSent,
            _ => Field::Skip,
        }
    }
}

/// How a variable's value ends.
#[derive(Clone, Debug)]
enum End {
    /// At the first occurrence of the literal.
    Literal(Vec<u8>),
    /// Last variable followed by a trailing literal: the line must end with it.
    /// Anchoring at the end (rather than searching) keeps a stray copy of the
    /// literal inside the value from cutting it short.
    Suffix(Vec<u8>),
    /// JSON string contents: at the first unescaped `"`, which must begin the
    /// literal.
    JsonQuote(Vec<u8>),
    /// Last variable with nothing after it: the rest of the line.
    RestOfLine,
}

#[derive(Clone, Debug)]
struct Step {
    field: Field,
    end: End,
    /// Segment index of the literal in `end`, for error reporting.
    literal_segment: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Variable(String),
}

#[derive(Clone)]
pub struct AccessFormat {
    prefix: Vec<u8>,
    steps: Vec<Step>,
    names: Vec<String>,
    escape: Escape,
}

impl fmt::Debug for AccessFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessFormat")
            .field("escape", &self.escape)
            .field("variables", &self.names)
            .finish()
    }
}

pub const COMBINED: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;
pub const MAIN: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_forwarded_for""#;

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Splits a format into literals and variables the way nginx's script
/// compiler does: `$name` takes `[A-Za-z0-9_]+`, `${name}` allows text to
/// follow the name directly.
fn split_segments(format: &str) -> Result<Vec<Segment>, FormatError> {
    let bytes = format.as_bytes();
    let mut segments = Vec::new();
    let mut literal_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        if literal_start < i {
            segments.push(Segment::Literal(format[literal_start..i].to_string()));
        }
        let dollar = i;
        i += 1;
        let name = if bytes.get(i) == Some(&b'{') {
            let close =
                memchr(b'}', &bytes[i..]).ok_or(FormatError::UnterminatedBrace { at: dollar })?;
            let name = &format[i + 1..i + close];
            i += close + 1;
            name
        } else {
            let start = i;
            while i < bytes.len() && is_name_byte(bytes[i]) {
                i += 1;
            }
            &format[start..i]
        };
        if name.is_empty() {
            return Err(FormatError::EmptyVariable { at: dollar });
        }
        segments.push(Segment::Variable(name.to_string()));
        literal_start = i;
    }
    if literal_start < bytes.len() {
        segments.push(Segment::Literal(format[literal_start..].to_string()));
    }
    Ok(segments)
}

impl AccessFormat {
    pub fn compile(format: &str, escape: Escape) -> Result<AccessFormat, FormatError> {
        let segments = split_segments(format)?;
        let mut prefix = Vec::new();
        let mut steps: Vec<Step> = Vec::new();
        let mut names = Vec::new();
        let mut pending: Option<(Field, String)> = None;
        for (idx, seg) in segments.iter().enumerate() {
            match seg {
                Segment::Literal(text) => match pending.take() {
                    None => prefix = text.as_bytes().to_vec(),
                    Some((field, _)) => {
                        let lit = text.as_bytes().to_vec();
                        let end = if escape == Escape::Json && lit.first() == Some(&b'"') {
                            End::JsonQuote(lit)
                        } else if idx + 1 == segments.len() {
                            End::Suffix(lit)
                        } else {
                            End::Literal(lit)
                        };
                        steps.push(Step {
                            field,
                            end,
                            literal_segment: idx,
                        });
                    }
                },
                Segment::Variable(name) => {
                    names.push(name.clone());
                    let field = Field::from_name(name);
                    pending = match pending.take() {
                        None => Some((field, name.clone())),
                        // `$host$request_uri`: nothing separates the two, but
                        // when neither is wanted they can be skipped as one.
                        Some((Field::Skip, _)) if field == Field::Skip => {
                            Some((Field::Skip, name.clone()))
                        }
                        Some((prev, prev_name)) => {
                            let interesting = if prev == Field::Skip {
                                name.clone()
                            } else {
                                prev_name.clone()
                            };
                            return Err(FormatError::AdjacentVariables {
                                first: prev_name,
                                second: name.clone(),
                                interesting,
                            });
                        }
                    };
                }
            }
        }
        if let Some((field, _)) = pending {
            steps.push(Step {
                field,
                end: End::RestOfLine,
                literal_segment: segments.len(),
            });
        }
        Ok(AccessFormat {
            prefix,
            steps,
            names,
            escape,
        })
    }

    /// The formats nginx ships: `combined` is compiled into nginx, `main` is
    /// the one in the nginx.org and Debian example configs.
    pub fn builtin(name: &str) -> Result<AccessFormat, FormatError> {
        match name {
            "combined" => AccessFormat::compile(COMBINED, Escape::Default),
            "main" => AccessFormat::compile(MAIN, Escape::Default),
            other => Err(FormatError::UnknownBuiltin(other.to_string())),
        }
    }

    pub fn escape(&self) -> Escape {
        self.escape
    }

    /// Whether the format writes variable `name` (without `$`), so callers can
    /// tell "field absent from the format" from "no value on this line".
    pub fn has_field(&self, name: &str) -> bool {
        let name = name.strip_prefix('$').unwrap_or(name);
        self.names.iter().any(|n| n == name)
    }

    pub fn parse<'a>(&self, line: &'a [u8], out: &mut AccessFields<'a>) -> Result<(), LineError> {
        *out = AccessFields::default();
        let line = strip_newline(line);
        if !eq_prefix(line, &self.prefix) {
            return Err(LineError::Mismatch { at_segment: 0 });
        }
        let mut pos = self.prefix.len();
        for step in &self.steps {
            let rest = &line[pos..];
            let mismatch = LineError::Mismatch {
                at_segment: step.literal_segment,
            };
            let (len, skip) = match &step.end {
                End::Literal(lit) => (find(rest, lit).ok_or(mismatch)?, lit.len()),
                End::Suffix(lit) => {
                    if !rest.ends_with(lit) {
                        return Err(mismatch);
                    }
                    (rest.len() - lit.len(), lit.len())
                }
                End::JsonQuote(lit) => {
                    let at = find_unescaped_quote(rest).ok_or(mismatch.clone())?;
                    if !eq_prefix(&rest[at..], lit) {
                        return Err(mismatch);
                    }
                    (at, lit.len())
                }
                End::RestOfLine => (rest.len(), 0),
            };
            let value = &rest[..len];
            pos += len + skip;
            if step.field == Field::Skip {
                continue;
            }
            let value = if is_nil(value) { None } else { Some(value) };
            match step.field {
                Field::Status => out.status = value,
                Field::RequestTime => out.request_time = value,
                Field::UpstreamAddr => out.upstream_addr = value,
                Field::UpstreamStatus => out.upstream_status = value,
                Field::UpstreamResponseTime => out.upstream_response_time = value,
                Field::UpstreamConnectTime => out.upstream_connect_time = value,
                Field::UpstreamHeaderTime => out.upstream_header_time = value,
                Field::BodyBytesSent => out.body_bytes_sent = value,
                Field::Skip => {}
            }
        }
        // Trailing bytes after the format's last literal mean the line was
        // written by some other format.
        if pos != line.len() {
            return Err(LineError::Mismatch {
                at_segment: self.steps.last().map_or(0, |s| s.literal_segment),
            });
        }
        Ok(())
    }
}

/// `hay.starts_with(prefix)` for the short literals of a log format. The
/// slice comparison calls libc's memcmp, whose call overhead dominated the
/// parse (a third of its time) for 1 to 4 byte literals.
#[inline]
fn eq_prefix(hay: &[u8], prefix: &[u8]) -> bool {
    hay.len() >= prefix.len() && hay.iter().zip(prefix).all(|(a, b)| a == b)
}

/// nginx's "no value": `-`, or the empty string under `escape=json`.
#[inline]
fn is_nil(v: &[u8]) -> bool {
    v.is_empty() || (v.len() == 1 && v[0] == b'-')
}

fn strip_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Literals in log formats are short (`" `, ` [`, `] "`), where a memchr on
/// the first byte plus a compare beats setting up a substring searcher.
#[inline]
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, tail) = needle.split_first()?;
    let mut from = 0;
    while let Some(i) = memchr(first, &hay[from..]) {
        let at = from + i;
        if eq_prefix(&hay[at + 1..], tail) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[inline]
fn find_unescaped_quote(s: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr2(b'"', b'\\', &s[from..]) {
        let at = from + i;
        if s[at] == b'"' {
            return Some(at);
        }
        // Skip the escaped byte; `\u00XX` needs no special case since its
        // tail never contains `"` or `\`.
        from = at + 2;
        if from >= s.len() {
            return None;
        }
    }
    None
}

/// `$status` and `$upstream_status` entries: always three digits in nginx.
#[inline]
pub fn parse_status(s: &[u8]) -> Option<u16> {
    match *s {
        [a, b, c] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            Some((a - b'0') as u16 * 100 + (b - b'0') as u16 * 10 + (c - b'0') as u16)
        }
        _ => None,
    }
}

/// nginx times (`$request_time`, `$upstream_*_time`) are `SECONDS.MMM`.
/// Fewer or more fraction digits are tolerated (extra digits truncate), so
/// hand-written or third-party values still parse.
#[inline]
pub fn parse_seconds_millis(s: &[u8]) -> Option<u64> {
    let (int, frac) = match memchr(b'.', s) {
        Some(dot) => (&s[..dot], &s[dot + 1..]),
        None => (s, &[][..]),
    };
    if int.is_empty() || int.len() > 15 {
        return None;
    }
    let mut secs: u64 = 0;
    for &b in int {
        if !b.is_ascii_digit() {
            return None;
        }
        secs = secs * 10 + (b - b'0') as u64;
    }
    let mut millis: u64 = 0;
    for i in 0..3 {
        let d = match frac.get(i) {
            Some(&b) if b.is_ascii_digit() => (b - b'0') as u64,
            Some(_) => return None,
            None => 0,
        };
        millis = millis * 10 + d;
    }
    if frac.len() > 3 && !frac[3..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(secs * 1000 + millis)
}

/// Entries of an upstream list (`$upstream_addr`, `$upstream_status`,
/// `$upstream_*_time`): one per attempt, `, ` between servers of one group and
/// ` : ` between groups after an internal redirect. Items line up across the
/// variables of one line, so they can be zipped. `-` and empty entries are
/// `None`. An empty field yields nothing.
pub fn upstream_entries(field: &[u8]) -> UpstreamEntries<'_> {
    UpstreamEntries {
        rest: if field.is_empty() { None } else { Some(field) },
    }
}

/// The groups of an upstream list (split on ` : ` only); the last group is
/// the one whose final attempt produced the response.
pub fn upstream_groups(field: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = if field.is_empty() { None } else { Some(field) };
    std::iter::from_fn(move || {
        let s = rest?;
        match find(s, b" : ") {
            Some(at) => {
                rest = Some(&s[at + 3..]);
                Some(&s[..at])
            }
            None => {
                rest = None;
                Some(s)
            }
        }
    })
}

#[derive(Clone, Debug)]
pub struct UpstreamEntries<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for UpstreamEntries<'a> {
    type Item = Option<&'a [u8]>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest?;
        let (entry, rest) = split_entry(s);
        self.rest = rest;
        Some(if is_nil(entry) { None } else { Some(entry) })
    }
}

#[inline]
fn split_entry(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut from = 0;
    while let Some(i) = memchr::memchr2(b',', b' ', &s[from..]) {
        let at = from + i;
        let after = &s[at + 1..];
        if s[at] == b',' && after.first() == Some(&b' ') {
            return (&s[..at], Some(&s[at + 2..]));
        }
        if s[at] == b' ' && eq_prefix(after, b": ") {
            return (&s[..at], Some(&s[at + 3..]));
        }
        from = at + 1;
    }
    (s, None)
}

/// Splits an nginx.conf `log_format` directive into name, escape mode and the
/// format with its quoted pieces joined, unquoting the way nginx's config
/// reader does.
pub fn parse_log_format_directive(s: &str) -> Result<(String, Escape, String), FormatError> {
    let tokens = conf_tokens(s)?;
    let mut it = tokens.into_iter();
    if it.next().as_deref() != Some("log_format") {
        return Err(FormatError::BadDirective(
            "does not start with `log_format`",
        ));
    }
    let name = it.next().ok_or(FormatError::BadDirective("missing name"))?;
    let mut escape = Escape::Default;
    let mut format = String::new();
    let mut first = true;
    for tok in it {
        if first {
            first = false;
            if let Some(mode) = tok.strip_prefix("escape=") {
                escape = match mode {
                    "default" => Escape::Default,
                    "json" => Escape::Json,
                    "none" => Escape::None,
                    other => return Err(FormatError::BadEscape(other.to_string())),
                };
                continue;
            }
        }
        format.push_str(&tok);
    }
    if first && format.is_empty() {
        return Err(FormatError::BadDirective("missing format string"));
    }
    Ok((name, escape, format))
}

/// nginx.conf tokens up to the first unquoted `;`. Inside quotes nginx
/// turns `\"`, `\'` and `\\` into the bare character and `\t`, `\r`, `\n`
/// into control characters; any other backslash is kept as written.
fn conf_tokens(s: &str) -> Result<Vec<String>, FormatError> {
    let mut tokens = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(c) = chars.next() else { break };
        match c {
            ';' => break,
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '\'' | '"' => {
                let quote = c;
                let mut tok = String::new();
                loop {
                    match chars.next() {
                        None => return Err(FormatError::UnterminatedQuote),
                        Some(c) if c == quote => break,
                        Some('\\') => match chars.next() {
                            None => return Err(FormatError::UnterminatedQuote),
                            Some(e @ ('"' | '\'' | '\\')) => tok.push(e),
                            Some('t') => tok.push('\t'),
                            Some('r') => tok.push('\r'),
                            Some('n') => tok.push('\n'),
                            Some(other) => {
                                tok.push('\\');
                                tok.push(other);
                            }
                        },
                        Some(c) => tok.push(c),
                    }
                }
                tokens.push(tok);
            }
            c => {
                let mut tok = String::from(c);
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == ';' {
                        break;
                    }
                    tok.push(c);
                    chars.next();
                }
                tokens.push(tok);
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const COMBINED_LOG: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/nginx/access_combined.log"
    ));
    const MAIN_LOG: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/nginx/access_main.log"
    ));
    const UPSTREAM_LOG: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/nginx/access_upstream.log"
    ));
    // Real nginx output: escape=json passes non-UTF-8 request bytes through.
    const JSON_LOG: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/nginx/access_json.log"
    ));

    // The formats the fixtures were captured with (fixtures/nginx/capture-nginx.conf).
    const UPSTREAM_DIRECTIVE: &str = r#"log_format upstream '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time" urt="$upstream_response_time" ua="$upstream_addr" us="$upstream_status"';"#;
    const JSON_DIRECTIVE: &str = r#"log_format jsonlog escape=json '{"time":"$time_iso8601","status":"$status","request":"$request","request_time":"$request_time",'
                  '"upstream_addr":"$upstream_addr","upstream_status":"$upstream_status",'
                  '"upstream_response_time":"$upstream_response_time","upstream_connect_time":"$upstream_connect_time",'
                  '"upstream_header_time":"$upstream_header_time","ua":"$http_user_agent"}';"#;

    fn upstream_format() -> AccessFormat {
        let (_, esc, fmt) = parse_log_format_directive(UPSTREAM_DIRECTIVE).unwrap();
        AccessFormat::compile(&fmt, esc).unwrap()
    }

    fn json_format() -> AccessFormat {
        let (_, esc, fmt) = parse_log_format_directive(JSON_DIRECTIVE).unwrap();
        AccessFormat::compile(&fmt, esc).unwrap()
    }

    fn entries(f: &[u8]) -> Vec<Option<&[u8]>> {
        upstream_entries(f).collect()
    }

    #[test]
    fn combined_fixture_parses_every_line() {
        let f = AccessFormat::builtin("combined").unwrap();
        let mut out = AccessFields::default();
        let mut statuses = Vec::new();
        for line in COMBINED_LOG.lines() {
            f.parse(line.as_bytes(), &mut out).unwrap();
            statuses.push(parse_status(out.status.unwrap()).unwrap());
            assert!(out.upstream_addr.is_none());
        }
        assert_eq!(statuses.len(), 33);
        assert_eq!(statuses.iter().filter(|&&s| s == 502).count(), 23);
        assert_eq!(statuses.iter().filter(|&&s| s == 504).count(), 2);
    }

    #[test]
    fn combined_line_with_escaped_quotes_and_binary_request() {
        let f = AccessFormat::builtin("combined").unwrap();
        let mut out = AccessFields::default();
        let line = br#"127.0.0.1 - - [23/Nov/2026:04:17:07 +0000] "GET /a\x22b\x5Cc HTTP/1.1" 404 153 "-" "ev\x22il\x5Cua\x01""#;
        f.parse(line, &mut out).unwrap();
        assert_eq!(out.status, Some(&b"404"[..]));
        assert_eq!(out.body_bytes_sent, Some(&b"153"[..]));
    }

    #[test]
    fn main_fixture_parses_every_line() {
        let f = AccessFormat::builtin("main").unwrap();
        let mut out = AccessFields::default();
        for line in MAIN_LOG.lines() {
            f.parse(line.as_bytes(), &mut out).unwrap();
            assert!(parse_status(out.status.unwrap()).is_some());
        }
        // combined lines lack the trailing x-forwarded-for field.
        let line = COMBINED_LOG.lines().next().unwrap();
        assert!(f.parse(line.as_bytes(), &mut out).is_err());
        assert!(f.has_field("http_x_forwarded_for"));
        assert!(!AccessFormat::builtin("combined")
            .unwrap()
            .has_field("http_x_forwarded_for"));
    }

    #[test]
    fn upstream_fixture_retries_and_groups() {
        let f = upstream_format();
        let mut out = AccessFields::default();
        let mut seen_retry = false;
        let mut seen_group = false;
        for line in UPSTREAM_LOG.lines() {
            f.parse(line.as_bytes(), &mut out).unwrap();
            if line.contains("GET /retry ") {
                seen_retry = true;
                assert_eq!(
                    entries(out.upstream_addr.unwrap()),
                    vec![
                        Some(&b"unix:/tmp/ngxcap/socks/missing.sock"[..]),
                        Some(b"127.0.0.1:18101")
                    ]
                );
                let st: Vec<_> = upstream_entries(out.upstream_status.unwrap())
                    .map(|s| s.and_then(parse_status))
                    .collect();
                assert_eq!(st, vec![Some(502), Some(200)]);
                assert_eq!(
                    entries(out.upstream_connect_time.unwrap()),
                    vec![None, Some(&b"0.000"[..])]
                );
            }
            if line.contains("GET /accel ") {
                seen_group = true;
                assert_eq!(
                    entries(out.upstream_addr.unwrap()),
                    vec![
                        Some(&b"127.0.0.1:18108"[..]),
                        Some(b"unix:/tmp/ngxcap/socks/missing.sock")
                    ]
                );
                assert_eq!(upstream_groups(out.upstream_status.unwrap()).count(), 2);
                assert_eq!(
                    entries(out.upstream_connect_time.unwrap()),
                    vec![Some(&b"0.000"[..]), None]
                );
            }
            if line.contains("GET /static ") {
                assert_eq!(out.upstream_addr, None);
                assert_eq!(out.upstream_status, None);
                assert_eq!(out.request_time, Some(&b"0.000"[..]));
            }
            if line.contains("GET /timeout ") {
                assert_eq!(out.request_time.and_then(parse_seconds_millis), Some(1002));
                assert_eq!(out.upstream_status.and_then(parse_status), Some(504));
            }
        }
        assert!(seen_retry && seen_group);
    }

    #[test]
    fn json_fixture() {
        let f = json_format();
        assert_eq!(f.escape(), Escape::Json);
        let mut out = AccessFields::default();
        let mut n = 0;
        for line in JSON_LOG.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            f.parse(line, &mut out).unwrap();
            n += 1;
            assert!(out.status.and_then(parse_status).is_some());
        }
        assert_eq!(n, 33);
    }

    #[test]
    fn json_empty_and_dash_and_escapes() {
        let f = json_format();
        let mut out = AccessFields::default();
        // No upstream: nginx writes "" under escape=json.
        let line = br#"{"time":"2026-11-23T04:17:07+00:00","status":"404","request":"GET /a\"b\\c HTTP/1.1","request_time":"0.000","upstream_addr":"","upstream_status":"","upstream_response_time":"","upstream_connect_time":"","upstream_header_time":"","ua":"ev\"il\\ua\u0001"}"#;
        f.parse(line, &mut out).unwrap();
        assert_eq!(out.status, Some(&b"404"[..]));
        assert_eq!(out.upstream_addr, None);
        assert_eq!(out.upstream_header_time, None);
        // A request containing the literal that follows it, escaped.
        let line = br#"{"time":"t","status":"200","request":"GET /\",\"request_time\":\"9.999\" HTTP/1.1","request_time":"0.001","upstream_addr":"-","upstream_status":"-","upstream_response_time":"-","upstream_connect_time":"-","upstream_header_time":"-","ua":"\\"}"#;
        f.parse(line, &mut out).unwrap();
        assert_eq!(out.request_time, Some(&b"0.001"[..]));
        assert_eq!(out.upstream_status, None);
        // Missing closing quote: mismatch, not a panic.
        assert!(f.parse(br#"{"time":"t","status":"200"#, &mut out).is_err());
    }

    #[test]
    fn builtins_and_unknown() {
        assert!(AccessFormat::builtin("combined").is_ok());
        assert!(AccessFormat::builtin("main").is_ok());
        assert_eq!(
            AccessFormat::builtin("nope").unwrap_err(),
            FormatError::UnknownBuiltin("nope".into())
        );
    }

    #[test]
    fn braces_and_adjacent_variables() {
        let f =
            AccessFormat::compile("${status}ms $host$request_uri end", Escape::Default).unwrap();
        let mut out = AccessFields::default();
        f.parse(b"502ms example.com/x?y end", &mut out).unwrap();
        assert_eq!(out.status, Some(&b"502"[..]));
        assert!(f.has_field("request_uri") && f.has_field("$host"));
        assert!(matches!(
            AccessFormat::compile("$status$upstream_addr", Escape::Default),
            Err(FormatError::AdjacentVariables { .. })
        ));
        assert!(matches!(
            AccessFormat::compile("$host$status x", Escape::Default),
            Err(FormatError::AdjacentVariables { interesting, .. }) if interesting == "status"
        ));
        assert_eq!(
            AccessFormat::compile("a $ b", Escape::Default).unwrap_err(),
            FormatError::EmptyVariable { at: 2 }
        );
        assert_eq!(
            AccessFormat::compile("a ${status", Escape::Default).unwrap_err(),
            FormatError::UnterminatedBrace { at: 2 }
        );
    }

    #[test]
    fn mismatch_reports_segment() {
        let f = AccessFormat::builtin("combined").unwrap();
        let mut out = AccessFields::default();
        // Segments: 0 $remote_addr, 1 " - ", 2 $remote_user, 3 " [", ...
        assert_eq!(
            f.parse(b"1.2.3.4 - - 23/Nov", &mut out),
            Err(LineError::Mismatch { at_segment: 3 })
        );
        let f = AccessFormat::compile("x=$status", Escape::Default).unwrap();
        assert_eq!(
            f.parse(b"y=200", &mut out),
            Err(LineError::Mismatch { at_segment: 0 })
        );
        let f = AccessFormat::compile("[$status]", Escape::Default).unwrap();
        assert_eq!(
            f.parse(b"[200", &mut out),
            Err(LineError::Mismatch { at_segment: 2 })
        );
        assert!(f.parse(b"[200]\r\n", &mut out).is_ok());
        let f = AccessFormat::compile("static", Escape::Default).unwrap();
        assert!(f.parse(b"static", &mut out).is_ok());
        assert!(f.parse(b"static!", &mut out).is_err());
    }

    #[test]
    fn bad_field_does_not_poison_others() {
        let f = upstream_format();
        let mut out = AccessFields::default();
        let line = br#"1.1.1.1 - - [t] "GET / HTTP/1.1" 5x2 10 "-" "-" rt=abc uct="-" urt="1.5.5" ua="127.0.0.1:1" us="502""#;
        f.parse(line, &mut out).unwrap();
        assert_eq!(out.status.and_then(parse_status), None);
        assert_eq!(out.request_time.and_then(parse_seconds_millis), None);
        assert_eq!(
            out.upstream_response_time.and_then(parse_seconds_millis),
            None
        );
        assert_eq!(out.upstream_status.and_then(parse_status), Some(502));
    }

    #[test]
    fn status_helper() {
        assert_eq!(parse_status(b"200"), Some(200));
        assert_eq!(parse_status(b"000"), Some(0));
        for bad in [&b""[..], b"20", b"2000", b"-", b"2a0", b" 200"] {
            assert_eq!(parse_status(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn seconds_helper() {
        assert_eq!(parse_seconds_millis(b"0.003"), Some(3));
        assert_eq!(parse_seconds_millis(b"12.345"), Some(12_345));
        assert_eq!(parse_seconds_millis(b"1"), Some(1000));
        assert_eq!(parse_seconds_millis(b"1."), Some(1000));
        assert_eq!(parse_seconds_millis(b"1.5"), Some(1500));
        assert_eq!(parse_seconds_millis(b"1.23456"), Some(1234));
        for bad in [
            &b""[..],
            b"-",
            b".5",
            b"1.2x",
            b"-1.000",
            b"1.0000x",
            b"1234567890123456.000",
        ] {
            assert_eq!(parse_seconds_millis(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_seconds_millis(b"999999999999999.999"),
            Some(999_999_999_999_999_999)
        );
    }

    #[test]
    fn upstream_entries_examples() {
        let addr = b"unix:/run/gunicorn.sock, 127.0.0.1:8001 : 10.0.0.5:80";
        let status = b"502, 200 : 404";
        let pairs: Vec<_> = upstream_entries(addr)
            .zip(upstream_entries(status))
            .collect();
        assert_eq!(
            pairs,
            vec![
                (Some(&b"unix:/run/gunicorn.sock"[..]), Some(&b"502"[..])),
                (Some(&b"127.0.0.1:8001"[..]), Some(&b"200"[..])),
                (Some(&b"10.0.0.5:80"[..]), Some(&b"404"[..])),
            ]
        );
        assert_eq!(entries(b"-"), vec![None]);
        assert_eq!(entries(b"-, -"), vec![None, None]);
        assert_eq!(entries(b""), Vec::<Option<&[u8]>>::new());
        assert_eq!(entries(b"[::1]:80"), vec![Some(&b"[::1]:80"[..])]);
        assert_eq!(entries(b"a,b"), vec![Some(&b"a,b"[..])]);
        let groups: Vec<_> = upstream_groups(addr).collect();
        assert_eq!(
            groups,
            vec![
                &b"unix:/run/gunicorn.sock, 127.0.0.1:8001"[..],
                b"10.0.0.5:80"
            ]
        );
    }

    #[test]
    fn directive_parsing() {
        let (name, esc, fmt) = parse_log_format_directive(
            r#"log_format upstream escape=json '{"status":"$status",' '"ua":"$upstream_addr"}';"#,
        )
        .unwrap();
        assert_eq!(name, "upstream");
        assert_eq!(esc, Escape::Json);
        assert_eq!(fmt, r#"{"status":"$status","ua":"$upstream_addr"}"#);

        let (name, esc, fmt) = parse_log_format_directive(
            "log_format  main  '$remote_addr - $remote_user [$time_local] \"$request\" '\n    \
             '$status $body_bytes_sent \"$http_referer\" '\n    \
             '\"$http_user_agent\" \"$http_x_forwarded_for\"';",
        )
        .unwrap();
        assert_eq!((name.as_str(), esc), ("main", Escape::Default));
        assert_eq!(fmt, MAIN);

        let (_, esc, fmt) =
            parse_log_format_directive(r#"log_format x escape=none "a \"$status\" \\ \t";"#)
                .unwrap();
        assert_eq!(esc, Escape::None);
        assert_eq!(fmt, "a \"$status\" \\ \t");
        assert_eq!(
            parse_log_format_directive("log_format x escape=xml '$status';").unwrap_err(),
            FormatError::BadEscape("xml".into())
        );
        assert_eq!(
            parse_log_format_directive("log_format x '$status;").unwrap_err(),
            FormatError::UnterminatedQuote
        );
        assert!(parse_log_format_directive("access_log x;").is_err());
        assert!(parse_log_format_directive("log_format x;").is_err());
    }

    #[test]
    fn escape_none_takes_first_literal() {
        let f = AccessFormat::compile(r#""$http_user_agent" $status"#, Escape::None).unwrap();
        let mut out = AccessFields::default();
        f.parse(br#""curl" 200"#, &mut out).unwrap();
        assert_eq!(out.status, Some(&b"200"[..]));
    }

    fn gen_line() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            // Mostly-valid lines with random bytes spliced in reach deeper.
            (
                0..UPSTREAM_LOG.lines().count(),
                proptest::collection::vec(any::<u8>(), 0..20),
                any::<usize>()
            )
                .prop_map(|(i, junk, at)| {
                    let mut l = UPSTREAM_LOG
                        .lines()
                        .nth(i)
                        .unwrap_or("")
                        .as_bytes()
                        .to_vec();
                    let at = at % (l.len() + 1);
                    l.splice(at..at, junk);
                    l
                }),
            (
                0..33usize,
                proptest::collection::vec(any::<u8>(), 0..20),
                any::<usize>()
            )
                .prop_map(|(i, junk, at)| {
                    let mut l = JSON_LOG
                        .split(|&b| b == b'\n')
                        .nth(i)
                        .unwrap_or(b"")
                        .to_vec();
                    let at = at % (l.len() + 1);
                    l.splice(at..at, junk);
                    l
                }),
        ]
    }

    fn formats() -> Vec<AccessFormat> {
        vec![
            AccessFormat::builtin("combined").unwrap(),
            AccessFormat::builtin("main").unwrap(),
            upstream_format(),
            json_format(),
        ]
    }

    fn gen_list() -> impl Strategy<Value = Vec<Vec<Option<String>>>> {
        let entry = prop_oneof![
            Just(None),
            "[0-9a-z.:/\\[\\]_-]{1,20}"
                .prop_filter("not a dash", |s| s != "-")
                .prop_map(Some),
        ];
        proptest::collection::vec(proptest::collection::vec(entry, 1..4), 1..4)
    }

    proptest! {
        #[test]
        fn parse_never_panics(line in gen_line()) {
            let mut out = AccessFields::default();
            for f in formats() {
                let _ = f.parse(&line, &mut out);
                for v in [out.status, out.request_time, out.upstream_addr, out.upstream_status,
                          out.upstream_response_time, out.upstream_connect_time, out.upstream_header_time] {
                    let v = v.unwrap_or_default();
                    let _ = parse_status(v);
                    let _ = parse_seconds_millis(v);
                    for e in upstream_entries(v) {
                        let _ = e.and_then(parse_seconds_millis);
                    }
                }
            }
        }

        #[test]
        fn no_state_leaks(a in gen_line(), b in gen_line()) {
            for f in formats() {
                let mut alone = AccessFields::default();
                let ra = f.parse(&b, &mut alone);
                let alone_fields = alone.clone();
                let mut reused = AccessFields::default();
                let _ = f.parse(&a, &mut reused);
                let rb = f.parse(&b, &mut reused);
                prop_assert_eq!(ra, rb);
                prop_assert_eq!(alone_fields, reused);
            }
        }

        #[test]
        fn upstream_list_round_trips(groups in gen_list()) {
            let text = groups
                .iter()
                .map(|g| g.iter().map(|e| e.as_deref().unwrap_or("-")).collect::<Vec<_>>().join(", "))
                .collect::<Vec<_>>()
                .join(" : ");
            let parsed: Vec<Option<&[u8]>> = upstream_entries(text.as_bytes()).collect();
            let expected: Vec<Option<&[u8]>> =
                groups.iter().flatten().map(|e| e.as_deref().map(str::as_bytes)).collect();
            prop_assert_eq!(parsed, expected);
            prop_assert_eq!(upstream_groups(text.as_bytes()).count(), groups.len());
        }

        #[test]
        fn seconds_round_trip(ms in 0u64..10_000_000_000) {
            let s = format!("{}.{:03}", ms / 1000, ms % 1000);
            prop_assert_eq!(parse_seconds_millis(s.as_bytes()), Some(ms));
        }

        #[test]
        fn generated_upstream_lines_parse(status in 100u16..600, groups in gen_list(), rt in 0u64..100_000) {
            let list = |f: &dyn Fn(usize, &Option<String>) -> String| {
                groups.iter().map(|g| g.iter().enumerate().map(|(i, e)| f(i, e)).collect::<Vec<_>>().join(", "))
                    .collect::<Vec<_>>().join(" : ")
            };
            let ua = list(&|_, e| e.clone().unwrap_or_else(|| "-".into()));
            let us = list(&|i, e| if e.is_some() { format!("{}", 500 + i) } else { "-".into() });
            let line = format!(
                r#"10.0.0.1 - - [23/Nov/2026:04:16:44 +0000] "GET / HTTP/1.1" {status} 5 "-" "a b" rt={}.{:03} uct="-" urt="-" ua="{ua}" us="{us}""#,
                rt / 1000, rt % 1000
            );
            let f = upstream_format();
            let mut out = AccessFields::default();
            prop_assert!(f.parse(line.as_bytes(), &mut out).is_ok());
            prop_assert_eq!(out.status.and_then(parse_status), Some(status));
            prop_assert_eq!(out.request_time.and_then(parse_seconds_millis), Some(rt));
            let n = upstream_entries(out.upstream_addr.unwrap_or_default()).count();
            prop_assert_eq!(n, upstream_entries(out.upstream_status.unwrap_or_default()).count());
        }
    }
}
