//! nginx `log_format` compiled into a line parser.
//!
//! A format is a list of literals and variables. nginx writes each variable's
//! value with escaping that cannot produce the text of the literal that follows
//! it (in the default mode `"` becomes `\x22`; under `escape=json` it becomes
//! `\"`), so a variable ends at the next occurrence of its following literal.
//! The upstream variables are the exception: they hold one entry per attempt,
//! joined by `, ` (next server of the same upstream) and ` : ` (next upstream,
//! after an internal redirect), so inside them those separators continue the
//! value (see [`upstream_entries`]).
//! Only the fields the exporter needs are kept, as borrowed slices of the line,
//! so parsing allocates nothing.

use std::cell::Cell;
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
    #[error("${field} holds a list (`, ` between servers, ` : ` between upstreams), and the text after it, `{literal}`, {why}, so where the list ends cannot be told; quote the variable or change that text")]
    AmbiguousList {
        field: String,
        literal: String,
        why: &'static str,
    },
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
/// characters in practice, except `$request`.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct AccessFields<'a> {
    /// By `Field::slot`: the eight single fields, then the kept lists in
    /// the order of `LIST_FIELDS`. An array, so that the parse stores a
    /// value with one index its step computed when the format compiled.
    vals: [Option<&'a [u8]>; KEPT_FIELDS],
    /// Bit i: the list at `LIST_FIELDS[i]` holds a space, so it may hold
    /// more than one entry. Noted while parsing, where the value is at
    /// hand, so that the common line (one attempt) is checked in one test.
    spaced_lists: u16,
}

/// The single fields kept, before the lists in `AccessFields::vals`.
const SINGLE_FIELDS: usize = 8;
const KEPT_FIELDS: usize = SINGLE_FIELDS + KEPT_LISTS;
/// `Step::slot` of a variable that is not kept.
const SKIPPED: u8 = u8::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Status,
    RequestTime,
    BodyBytesSent,
    TimeLocal,
    TimeIso8601,
    Msec,
    Connection,
    Request,
    /// Upstream lists, in the order of `LIST_FIELDS`.
    List(u8),
    Skip,
}

/// The variables nginx writes as upstream lists. The first eight are kept in
/// `AccessFields`; `$upstream_queue_time` (nginx 1.27) only needs to be
/// skipped whole.
const LIST_FIELDS: [&str; 9] = [
    "upstream_addr",
    "upstream_status",
    "upstream_response_time",
    "upstream_connect_time",
    "upstream_header_time",
    "upstream_response_length",
    "upstream_bytes_received",
    "upstream_bytes_sent",
    "upstream_queue_time",
];
const UPSTREAM_ADDR: usize = 0;
/// Lists kept in `AccessFields` (and so checked for consistency).
const KEPT_LISTS: usize = 8;

impl Field {
    fn from_name(name: &str) -> Field {
        match name {
            "status" => Field::Status,
            "request_time" => Field::RequestTime,
            "body_bytes_sent" => Field::BodyBytesSent,
            "time_local" => Field::TimeLocal,
            "time_iso8601" => Field::TimeIso8601,
            "msec" => Field::Msec,
            "connection" => Field::Connection,
            "request" => Field::Request,
            _ => match LIST_FIELDS.iter().position(|l| *l == name) {
                Some(i) => Field::List(i as u8),
                None => Field::Skip,
            },
        }
    }

    fn is_list(self) -> bool {
        matches!(self, Field::List(_))
    }

    /// Where the value is kept in `AccessFields::vals`, or `SKIPPED`.
    fn slot(self) -> u8 {
        match self {
            Field::Status => 0,
            Field::RequestTime => 1,
            Field::BodyBytesSent => 2,
            Field::TimeLocal => 3,
            Field::TimeIso8601 => 4,
            Field::Msec => 5,
            Field::Connection => 6,
            Field::Request => 7,
            Field::List(i) if (i as usize) < KEPT_LISTS => SINGLE_FIELDS as u8 + i,
            Field::List(_) | Field::Skip => SKIPPED,
        }
    }
}

impl<'a> AccessFields<'a> {
    /// The upstream list at `LIST_FIELDS[i]`, for `i < KEPT_LISTS`.
    #[inline]
    fn list(&self, i: u8) -> Option<&'a [u8]> {
        self.vals[SINGLE_FIELDS + i as usize]
    }

    /// The entries of the upstream list at `LIST_FIELDS[i]`, split as
    /// [`upstream_entries`] splits them. Every separator holds a space, so
    /// a list that parsing saw hold none is one entry, taken whole without
    /// a search: the common line, with one attempt.
    #[inline(always)]
    fn entries(&self, i: u8) -> Option<UpstreamEntries<'a>> {
        self.list(i).map(|v| UpstreamEntries {
            rest: Some(v),
            whole: self.spaced_lists & (1 << i) == 0,
        })
    }

    /// Whether any upstream list holds a space, and so may hold more than
    /// one entry. When none does, each list is its one entry, as the single
    /// fields (`upstream_addr()`, ...) give it.
    #[inline(always)]
    pub fn has_spaced_list(&self) -> bool {
        self.spaced_lists != 0
    }

    /// The entries of `$upstream_addr`; see [`AccessFields::entries`].
    #[inline(always)]
    pub fn upstream_addr_entries(&self) -> Option<UpstreamEntries<'a>> {
        self.entries(0)
    }

    /// The entries of `$upstream_status`.
    #[inline(always)]
    pub fn upstream_status_entries(&self) -> Option<UpstreamEntries<'a>> {
        self.entries(1)
    }

    /// The entries of `$upstream_response_time`.
    #[inline(always)]
    pub fn upstream_response_time_entries(&self) -> Option<UpstreamEntries<'a>> {
        self.entries(2)
    }

    /// The entries of `$upstream_header_time`.
    #[inline(always)]
    pub fn upstream_header_time_entries(&self) -> Option<UpstreamEntries<'a>> {
        self.entries(4)
    }

    #[inline]
    pub fn status(&self) -> Option<&'a [u8]> {
        self.vals[0]
    }

    #[inline]
    pub fn request_time(&self) -> Option<&'a [u8]> {
        self.vals[1]
    }

    #[inline]
    pub fn body_bytes_sent(&self) -> Option<&'a [u8]> {
        self.vals[2]
    }

    /// `23/Nov/2026:04:20:01 +0000`; see [`parse_time_local`].
    #[inline]
    pub fn time_local(&self) -> Option<&'a [u8]> {
        self.vals[3]
    }

    /// `2026-11-23T04:20:01+00:00`; see [`parse_time_iso8601`].
    #[inline]
    pub fn time_iso8601(&self) -> Option<&'a [u8]> {
        self.vals[4]
    }

    /// `1795407601.123`; see [`parse_msec`].
    #[inline]
    pub fn msec(&self) -> Option<&'a [u8]> {
        self.vals[5]
    }

    /// The connection's serial number; see [`parse_connection`].
    #[inline]
    pub fn connection(&self) -> Option<&'a [u8]> {
        self.vals[6]
    }

    /// `GET /path?query HTTP/1.1`; see [`parse_request`].
    #[inline]
    pub fn request(&self) -> Option<&'a [u8]> {
        self.vals[7]
    }

    /// The whole list; see [`upstream_entries`].
    #[inline]
    pub fn upstream_addr(&self) -> Option<&'a [u8]> {
        self.list(0)
    }

    /// The whole list; see [`upstream_entries`].
    #[inline]
    pub fn upstream_status(&self) -> Option<&'a [u8]> {
        self.list(1)
    }

    /// The whole list; see [`upstream_entries`].
    #[inline]
    pub fn upstream_response_time(&self) -> Option<&'a [u8]> {
        self.list(2)
    }

    /// The whole list; see [`upstream_entries`].
    #[inline]
    pub fn upstream_connect_time(&self) -> Option<&'a [u8]> {
        self.list(3)
    }

    /// The whole list; see [`upstream_entries`].
    #[inline]
    pub fn upstream_header_time(&self) -> Option<&'a [u8]> {
        self.list(4)
    }

    /// The whole list; see [`upstream_entries`].
    #[inline]
    pub fn upstream_response_length(&self) -> Option<&'a [u8]> {
        self.list(5)
    }

    /// The whole list; see [`upstream_entries`].
    #[inline]
    pub fn upstream_bytes_received(&self) -> Option<&'a [u8]> {
        self.list(6)
    }

    /// The whole list; see [`upstream_entries`].
    #[inline]
    pub fn upstream_bytes_sent(&self) -> Option<&'a [u8]> {
        self.list(7)
    }
}

/// Why a line's upstream lists cannot be counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListError {
    /// The lists of one line differ in their number of entries or groups.
    Misaligned,
    /// An `$upstream_status` entry is neither a 3-digit status nor `-`.
    BadStatus,
}

/// How a variable's value ends.
#[derive(Clone, Debug)]
enum End {
    /// At the first occurrence of the literal.
    Literal(Lit),
    /// An upstream list followed by a literal that starts with a byte of a
    /// list separator (` `, `,` or `:`): at the first occurrence of the
    /// literal that is not part of a separator.
    ListLiteral(Lit),
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

/// Up to eight bytes kept in a word, so that a place they may start is
/// checked in one compare.
#[derive(Clone, Copy, Debug)]
struct TailWord {
    /// The bytes, little-endian, and the mask of their bytes.
    word: u64,
    mask: u64,
    len: u8,
}

impl TailWord {
    /// `None` for more than eight bytes.
    fn of(bytes: &[u8]) -> Option<TailWord> {
        let mut word = [0u8; 8];
        word.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(TailWord {
            word: u64::from_le_bytes(word),
            mask: u64::MAX
                .checked_shr(8 * (8 - bytes.len() as u32))
                .unwrap_or(0),
            len: bytes.len() as u8,
        })
    }

    /// Whether `after` starts with the bytes: one compare where eight
    /// bytes are left, else byte by byte.
    #[inline(always)]
    fn at(&self, after: &[u8]) -> bool {
        match after.first_chunk::<8>() {
            Some(w) => (u64::from_le_bytes(*w) ^ self.word) & self.mask == 0,
            None => eq_prefix(after, &self.word.to_le_bytes()[..self.len as usize]),
        }
    }
}

/// A literal that ends a value: never empty. Its bytes after the first,
/// when there are at most eight of them, are also kept in a word, so that
/// each place its first byte is found is checked in one compare.
#[derive(Clone, Debug)]
struct Lit {
    bytes: Vec<u8>,
    first: Needle,
    tail_word: Option<TailWord>,
}

impl Lit {
    fn new(bytes: Vec<u8>) -> Lit {
        let tail_word = TailWord::of(&bytes[1..]);
        Lit {
            first: Needle::new(bytes[0]),
            bytes,
            tail_word,
        }
    }

    fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether `after`, what follows a found first byte, starts with the
    /// rest of the literal.
    #[inline(always)]
    fn tail_at(&self, after: &[u8]) -> bool {
        match self.tail_word {
            Some(t) => t.at(after),
            None => eq_prefix(after, &self.bytes[1..]),
        }
    }

    /// The first occurrence in `hay`.
    #[inline(always)]
    fn find_in(&self, hay: &[u8]) -> Option<usize> {
        find_where(hay, &self.first, |a| self.tail_at(a), |_| true)
    }

    /// Where an upstream list ends: the first occurrence that is not part
    /// of a list separator. `hay` starts at the value, so a separator is
    /// only looked for inside it.
    #[inline(always)]
    fn find_list_end(&self, hay: &[u8]) -> Option<usize> {
        find_where(
            hay,
            &self.first,
            |a| self.tail_at(a),
            |at| !in_separator(hay, at),
        )
    }
}

#[derive(Clone, Debug)]
struct Step {
    field: Field,
    /// `field.slot()`, worked out once.
    slot: u8,
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
    /// The first steps, as long as each ends at a short literal (see
    /// `ScannedStep`); the parse runs these, then the rest of `steps`.
    scanned_steps: Vec<ScannedStep>,
    names: Vec<String>,
    escape: Escape,
    /// The kept lists the format writes, as `LIST_FIELDS` indexes.
    lists: Vec<u8>,
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
        let mut lists = Vec::new();
        let mut pending: Option<(Field, String)> = None;
        for (idx, seg) in segments.iter().enumerate() {
            match seg {
                Segment::Literal(text) => match pending.take() {
                    None => prefix = text.as_bytes().to_vec(),
                    Some((field, name)) => {
                        let lit = text.as_bytes().to_vec();
                        let end = if escape == Escape::Json && lit.first() == Some(&b'"') {
                            End::JsonQuote(lit)
                        } else if idx + 1 == segments.len() {
                            End::Suffix(lit)
                        } else if field.is_list() && matches!(lit[0], b' ' | b',' | b':') {
                            check_list_end(field, &name, text)?;
                            End::ListLiteral(Lit::new(lit))
                        } else {
                            End::Literal(Lit::new(lit))
                        };
                        steps.push(Step {
                            field,
                            slot: field.slot(),
                            end,
                            literal_segment: idx,
                        });
                    }
                },
                Segment::Variable(name) => {
                    names.push(name.clone());
                    let field = Field::from_name(name);
                    if let Field::List(i) = field {
                        if (i as usize) < KEPT_LISTS && !lists.contains(&i) {
                            lists.push(i);
                        }
                    }
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
                slot: field.slot(),
                end: End::RestOfLine,
                literal_segment: segments.len(),
            });
        }
        let scanned_steps: Vec<ScannedStep> = steps.iter().map_while(ScannedStep::of).collect();
        Ok(AccessFormat {
            prefix,
            steps,
            scanned_steps,
            names,
            escape,
            lists,
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
        for s in &self.scanned_steps {
            let len = s.guess.get() as usize;
            let at = if s.ends_at(line, pos, len) {
                pos + len
            } else {
                let at = s.end_in(line, pos).ok_or(LineError::Mismatch {
                    at_segment: s.segment as usize,
                })?;
                s.guess.set((at - pos).min(u8::MAX as usize) as u8);
                at
            };
            let value = &line[pos..at];
            pos = at + s.len as usize;
            if let Some(slot) = out.vals.get_mut(s.slot as usize) {
                *slot = if is_nil(value) { None } else { Some(value) };
                if s.spaced_bit != 0 && has_space(value) {
                    out.spaced_lists |= s.spaced_bit;
                }
            }
        }
        for step in &self.steps[self.scanned_steps.len()..] {
            let rest = &line[pos..];
            let mismatch = LineError::Mismatch {
                at_segment: step.literal_segment,
            };
            let (len, skip) = match &step.end {
                End::Literal(lit) => (lit.find_in(rest).ok_or(mismatch)?, lit.len()),
                End::ListLiteral(lit) => (lit.find_list_end(rest).ok_or(mismatch)?, lit.len()),
                End::Suffix(lit) => {
                    let len = rest.len().checked_sub(lit.len()).ok_or(mismatch.clone())?;
                    if !eq_prefix(&rest[len..], lit) {
                        return Err(mismatch);
                    }
                    (len, lit.len())
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
            let Some(slot) = out.vals.get_mut(step.slot as usize) else {
                continue;
            };
            *slot = if is_nil(value) { None } else { Some(value) };
            if let Field::List(i) = step.field {
                if has_space(value) {
                    out.spaced_lists |= 1 << i;
                }
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

    /// Whether the upstream lists of a parsed line can be counted. nginx
    /// writes every list variable from the same array of attempts, so on a
    /// line it wrote they have as many entries and groups as each other; a
    /// line where they differ was cut, edited or misread, and zipping its
    /// addresses with its statuses would pin statuses on the wrong upstream.
    /// A field the format writes that holds `-` is a list of one entry.
    #[inline]
    pub fn check_upstream_lists(&self, f: &AccessFields<'_>) -> Result<(), ListError> {
        // Entries hold no spaces: with no list spaced, every list is one
        // entry (or `-`), and only the status is left to check.
        let mut shape = (1, 1);
        if f.spaced_lists != 0 {
            for (n, &i) in self.lists.iter().enumerate() {
                let s = match f.list(i) {
                    Some(v) if f.spaced_lists & (1 << i) != 0 => list_shape(v),
                    _ => (1, 1),
                };
                if n == 0 {
                    shape = s;
                } else if s != shape {
                    return Err(ListError::Misaligned);
                }
            }
        }
        let status_ok = match f.upstream_status() {
            None => true,
            Some(st) if shape == (1, 1) => parse_status(st).is_some(),
            Some(st) => upstream_entries(st).all(|e| e.is_none_or(|e| parse_status(e).is_some())),
        };
        if status_ok {
            Ok(())
        } else {
            Err(ListError::BadStatus)
        }
    }
}

/// A step whose value ends at a literal of at most nine bytes, the first
/// of them found by [`Needle::find`] and the others compared as one word:
/// what nearly every step of a real format is, with what its parse needs
/// in one small value, so the loop over them does no more per value
/// than find the end and store the value.
#[derive(Clone, Debug)]
struct ScannedStep {
    /// The literal's bytes after the first (`Lit::tail_word`).
    tail: TailWord,
    /// The literal's length.
    len: u8,
    /// Its first byte.
    first: Needle,
    /// Where the value is kept (`Field::slot`).
    slot: u8,
    /// An upstream list whose literal begins with a separator's byte: an
    /// occurrence inside a separator does not end it (`End::ListLiteral`).
    list_end: bool,
    /// For a kept upstream list, its bit in `AccessFields::spaced_lists`.
    spaced_bit: u16,
    /// `Step::literal_segment`, for the error.
    segment: u32,
    /// The length the value had on the last line parsed (at most 255),
    /// tried first on the next (`ScannedStep::ends_at`). A guess is checked
    /// against the line before it is used, so what a parse returns never
    /// depends on the lines before it, only how long it takes.
    guess: Cell<u8>,
}

impl ScannedStep {
    /// `step` as a scanned step; `None` when it ends some other way or its
    /// literal is longer.
    fn of(step: &Step) -> Option<ScannedStep> {
        let (lit, list_end) = match &step.end {
            End::Literal(l) => (l, false),
            End::ListLiteral(l) => (l, true),
            _ => return None,
        };
        let tail = lit.tail_word?;
        let spaced_bit = match step.field {
            Field::List(i) if (i as usize) < KEPT_LISTS => 1 << i,
            _ => 0,
        };
        Some(ScannedStep {
            tail,
            len: lit.bytes.len() as u8,
            first: lit.first,
            slot: step.slot,
            list_end,
            spaced_bit,
            segment: step.literal_segment as u32,
            guess: Cell::new(u8::MAX),
        })
    }

    /// Whether the value that starts at `pos` is `len` bytes long, that
    /// is, whether [`ScannedStep::end_in`] would find its end at `pos +
    /// len`: the literal's first byte is first found there, in the 16 or
    /// 32 bytes from `pos`, and the rest of the literal follows. No search,
    /// and `false` for a longer value or too few bytes left.
    ///
    /// A value mostly has the length it had on the line before. The next
    /// value's start then follows from the guess, not from this value's
    /// search, so the processor checks both at once: the parse was bound by
    /// each search waiting for the one before.
    #[inline(always)]
    fn ends_at(&self, line: &[u8], pos: usize, len: usize) -> bool {
        let m = if len < 16 && line.len() >= pos + 16 {
            self.first.mask16(&line[pos..pos + 16]) as u64
        } else if len < 32 && line.len() >= pos + 32 {
            let (a, b) = (&line[pos..pos + 16], &line[pos + 16..pos + 32]);
            self.first.mask16(a) as u64 | (self.first.mask16(b) as u64) << 16
        } else {
            return false;
        };
        // The literal's first byte is first found at `len` (`m` has at most
        // 32 bits, so the bit set above them stands for "not found").
        (m | 1 << 32).trailing_zeros() as usize == len
            && self.tail.at(&line[pos + len + 1..])
            && !(self.list_end && in_separator(&line[pos..], len))
    }

    /// Where in `line` the value that starts at `pos` ends: the first place
    /// from `pos` that holds the literal (and, for a list, is not part of a
    /// separator), as [`Lit::find_in`] and [`Lit::find_list_end`] find it.
    #[inline(always)]
    fn end_in(&self, line: &[u8], pos: usize) -> Option<usize> {
        let value = &line[pos..];
        let accept = |at| !(self.list_end && in_separator(value, at));
        find_where(value, &self.first, |a| self.tail.at(a), accept).map(|at| pos + at)
    }
}

/// Refuses a format where the literal after list variable `name` cannot be
/// told apart from the inside of the list. The separators themselves are
/// handled by `Lit::find_list_end`; what is left is a literal that begins with a
/// whole separator (every occurrence would read as one more entry), and a
/// `:` after `$upstream_addr`, whose entries contain colons (`10.0.0.5:80`,
/// `unix:/run/app.sock`).
fn check_list_end(field: Field, name: &str, literal: &str) -> Result<(), FormatError> {
    let why = if literal.starts_with(", ") || literal.starts_with(" : ") {
        "begins with a list separator"
    } else if field == Field::List(UPSTREAM_ADDR as u8) && literal.starts_with(':') {
        "begins with `:`, which addresses contain"
    } else {
        return Ok(());
    };
    Err(FormatError::AmbiguousList {
        field: name.to_string(),
        literal: literal.to_string(),
        why,
    })
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
    find_where(hay, &Needle::new(first), |a| eq_prefix(a, tail), |_| true)
}

/// The first place in `hay` that holds `first`, followed by what `tail`
/// takes, at a position `accept` takes.
#[inline(always)]
fn find_where(
    hay: &[u8],
    first: &Needle,
    tail: impl Fn(&[u8]) -> bool,
    accept: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = first.find(&hay[from..]) {
        let at = from + i;
        if tail(&hay[at + 1..]) && accept(at) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// A byte to search for, with the copies of it that the search compares
/// 16 and 8 bytes of the line against, made once (a format's literals are
/// known when it compiles) rather than at each search.
#[derive(Clone, Copy, Debug)]
struct Needle {
    byte: u8,
    wide: [u8; 16],
    word: u64,
}

impl Needle {
    const fn new(byte: u8) -> Needle {
        Needle {
            byte,
            wide: [byte; 16],
            word: u64::from_ne_bytes([byte; 8]),
        }
    }

    /// Bit i: `chunk[i]` is the byte.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn mask16(&self, chunk: &[u8]) -> u32 {
        use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8};
        let chunk: &[u8; 16] = chunk.try_into().expect("16 bytes");
        // SAFETY: SSE2 is part of x86-64, and both loads are of 16 bytes.
        unsafe {
            _mm_movemask_epi8(_mm_cmpeq_epi8(
                _mm_loadu_si128(chunk.as_ptr() as *const __m128i),
                _mm_loadu_si128(self.wide.as_ptr() as *const __m128i),
            )) as u32
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    fn mask16(&self, chunk: &[u8]) -> u32 {
        chunk
            .iter()
            .enumerate()
            .fold(0, |m, (i, &c)| m | ((c == self.byte) as u32) << i)
    }

    /// The first of the byte in `hay`. Most values of a line are short (a
    /// status, a time, an address) and a line's values are searched one
    /// after another, so the search is inlined where each value's end is
    /// looked for: on x86-64, 16 bytes to a compare (SSE2, which every
    /// x86-64 has) over the first 128 (a user agent), and a longer value
    /// goes on with memchr; the last bytes of a line, and other machines, a
    /// word at a time.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn find(&self, hay: &[u8]) -> Option<usize> {
        const CHUNK: usize = 16;
        const SHORT: usize = 128;
        if hay.len() < CHUNK {
            return find_byte_words(self, hay);
        }
        let found = |at: usize| self.mask16(&hay[at..at + CHUNK]);
        let mut at = 0;
        while at + CHUNK <= hay.len() {
            let m = found(at);
            if m != 0 {
                return Some(at + m.trailing_zeros() as usize);
            }
            at += CHUNK;
            if at == SHORT {
                return memchr(self.byte, &hay[SHORT..]).map(|i| SHORT + i);
            }
        }
        if at == hay.len() {
            return None;
        }
        // The last 16 bytes, less those already searched.
        let last = hay.len() - CHUNK;
        let m = found(last) >> (at - last);
        (m != 0).then(|| at + m.trailing_zeros() as usize)
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    fn find(&self, hay: &[u8]) -> Option<usize> {
        find_byte_words(self, hay)
    }
}

/// The first `b` in `hay`: [`Needle::find`].
#[inline(always)]
fn find_byte(b: u8, hay: &[u8]) -> Option<usize> {
    Needle::new(b).find(hay)
}

/// [`find_byte`] a word at a time over the first 32 bytes, then memchr.
#[inline(always)]
fn find_byte_words(needle: &Needle, hay: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const SHORT: usize = 32;
    let (b, pattern) = (needle.byte, needle.word);
    // The lowest flagged byte of a word is its first zero once xored with
    // `pattern` (flags above it may be false, from the borrow): the first `b`.
    let first = |w: u64| {
        let w = w ^ pattern;
        let zero = w.wrapping_sub(ONES) & !w & HIGHS;
        (zero != 0).then(|| (zero.trailing_zeros() / 8) as usize)
    };
    if let Some(head) = hay.first_chunk::<SHORT>() {
        // The common case: the rest of a line. Four fixed words, then
        // memchr, with no bounds to check in between.
        for k in 0..SHORT / 8 {
            let w = u64::from_le_bytes(head[k * 8..k * 8 + 8].try_into().unwrap());
            if let Some(i) = first(w) {
                return Some(k * 8 + i);
            }
        }
        return memchr(b, &hay[SHORT..]).map(|i| SHORT + i);
    }
    let mut words = hay.chunks_exact(8);
    for (k, w) in words.by_ref().enumerate() {
        if let Some(i) = first(u64::from_le_bytes(w.try_into().unwrap())) {
            return Some(k * 8 + i);
        }
    }
    let at = hay.len() - words.remainder().len();
    words
        .remainder()
        .iter()
        .position(|&c| c == b)
        .map(|i| at + i)
}

/// Whether `s` holds a space. It runs on every list value of every line,
/// and those are short: a word at a time costs less than a memchr call.
#[inline]
fn has_space(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // A zero byte in `w ^ spaces` is a space in `w` (the classic has-zero
    // test, exact for "is there one").
    let any = |w: u64| {
        let x = w ^ (ONES * b' ' as u64);
        x.wrapping_sub(ONES) & !x & HIGHS != 0
    };
    if s.len() < 8 {
        // Short values (a status, a time) in two overlapping half words,
        // rather than a call.
        if s.len() >= 4 {
            let half = |at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap()) as u64;
            return any(half(0) | half(s.len() - 4) << 32);
        }
        // One to three bytes: the first, middle and last cover them all.
        return match s.len() {
            0 => false,
            n => any(s[0] as u64 | (s[n / 2] as u64) << 8 | (s[n - 1] as u64) << 16),
        };
    }
    let word = |at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap());
    // Whole words, then the last 8 bytes (overlapping the words before).
    (0..s.len() / 8).any(|i| any(word(i * 8))) || any(word(s.len() - 8))
}

/// Whether byte `at` of `s` belongs to a `, ` or ` : ` list separator.
#[inline]
fn in_separator(s: &[u8], at: usize) -> bool {
    let (before, after) = (&s[..at], &s[at + 1..]);
    match s[at] {
        b',' => after.first() == Some(&b' '),
        b' ' => before.ends_with(b",") || before.ends_with(b" :") || eq_prefix(after, b": "),
        b':' => before.ends_with(b" ") && after.first() == Some(&b' '),
        _ => false,
    }
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
#[inline(always)]
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
#[inline(always)]
pub fn parse_seconds_millis(s: &[u8]) -> Option<u64> {
    // What nginx writes for anything under ten seconds: a digit, `.`,
    // three digits.
    if let &[i, b'.', a, b, c] = s {
        let d = [i, a, b, c].map(|d| d.wrapping_sub(b'0') as u64);
        if d.iter().all(|&d| d < 10) {
            return Some(d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3]);
        }
    }
    parse_seconds_any(s)
}

/// [`parse_seconds_millis`] for any number of digits on either side.
#[inline(never)]
fn parse_seconds_any(s: &[u8]) -> Option<u64> {
    // A handful of bytes: a plain loop, not a memchr call.
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
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

/// `$msec`, `1795407601.123`: milliseconds since the epoch.
#[inline]
pub fn parse_msec(s: &[u8]) -> Option<u64> {
    parse_seconds_millis(s)
}

/// `$connection`: the connection's serial number.
#[inline]
pub fn parse_connection(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + (b - b'0') as u64)
    })
}

/// `$time_local`, `23/Nov/2026:04:20:01 +0000`: seconds since the epoch.
pub fn parse_time_local(s: &[u8]) -> Option<i64> {
    // dd/Mon/yyyy:HH:MM:SS +hhmm
    if s.len() != 26 || s[2] != b'/' || s[6] != b'/' || s[11] != b':' || s[20] != b' ' {
        return None;
    }
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == &s[3..6])? as u32 + 1;
    Stamp {
        year: &s[7..11],
        month,
        day: &s[0..2],
        time: &s[12..20],
        sign: s[21],
        offset: [&s[22..24], &s[24..26]],
    }
    .epoch_seconds()
}

/// `$time_iso8601`, `2026-11-23T04:20:01+00:00`: seconds since the epoch.
/// nginx always writes the offset as `+hh:mm`; `Z` is taken too.
pub fn parse_time_iso8601(s: &[u8]) -> Option<i64> {
    // yyyy-mm-ddTHH:MM:SS+hh:mm
    let (sign, offset) = match s.len() {
        25 if s[22] == b':' => (s[19], [&s[20..22], &s[23..25]]),
        20 if s[19] == b'Z' => (b'+', [&b"00"[..], b"00"]),
        _ => return None,
    };
    if s[4] != b'-' || s[7] != b'-' || s[10] != b'T' {
        return None;
    }
    Stamp {
        year: &s[0..4],
        month: digits(&s[5..7])?,
        day: &s[8..10],
        time: &s[11..19],
        sign,
        offset,
    }
    .epoch_seconds()
}

#[inline]
fn digits(s: &[u8]) -> Option<u32> {
    s.iter().try_fold(0u32, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + (b - b'0') as u32)
    })
}

/// A time as nginx writes it, cut into its parts: the two layouts differ
/// only in where the parts are.
struct Stamp<'a> {
    year: &'a [u8],
    month: u32,
    day: &'a [u8],
    /// `HH:MM:SS`
    time: &'a [u8],
    /// `+` or `-`
    sign: u8,
    /// hours and minutes east of UTC
    offset: [&'a [u8]; 2],
}

impl Stamp<'_> {
    /// Seconds since 1970-01-01T00:00:00Z on the proleptic Gregorian
    /// calendar (Howard Hinnant's days_from_civil), or None when a part is
    /// not digits or out of range. A leap second (`:60`) counts as the next
    /// second, as the Unix clock has it.
    fn epoch_seconds(&self) -> Option<i64> {
        let t = self.time;
        if t.len() != 8 || t[2] != b':' || t[5] != b':' {
            return None;
        }
        let (year, month, day) = (digits(self.year)?, self.month, digits(self.day)?);
        let (hour, minute, second) = (digits(&t[0..2])?, digits(&t[3..5])?, digits(&t[6..8])?);
        let (off_h, off_m) = (digits(self.offset[0])?, digits(self.offset[1])?);
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let month_days = match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            1..=12 => 31,
            _ => return None,
        };
        if !(1..=month_days).contains(&day)
            || hour > 23
            || minute > 59
            || second > 60
            || off_h > 23
            || off_m > 59
        {
            return None;
        }
        let offset = (off_h * 3600 + off_m * 60) as i64;
        let offset = match self.sign {
            b'+' => offset,
            b'-' => -offset,
            _ => return None,
        };
        let y = year as i64 - i64::from(month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (month as i64 + 9) % 12; // March is 0
        let doy = (153 * mp + 2) / 5 + day as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        Some(days * 86_400 + (hour * 3600 + minute * 60 + second) as i64 - offset)
    }
}

/// How much of a request path [`parse_request`] keeps.
pub const REQUEST_PATH_MAX: usize = 128;

/// `$request`, `GET /path?query HTTP/1.1`, as (method, path): the query
/// string dropped (it is where tokens and personal data live) and the path
/// cut at [`REQUEST_PATH_MAX`] bytes, never inside a UTF-8 character or a
/// `\xHH` escape. None when the line does not start with a method.
pub fn parse_request(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let sp = memchr(b' ', s)?;
    let (method, rest) = (&s[..sp], &s[sp + 1..]);
    let is_method = |m: &[u8]| {
        !m.is_empty()
            && m.len() <= 32
            && m.iter()
                .all(|&b| b.is_ascii_uppercase() || b == b'_' || b == b'-')
    };
    if !is_method(method) {
        return None;
    }
    // The protocol is the last word; a request line without one (HTTP/0.9,
    // or a line cut short) is all path.
    let target = match memchr::memrchr(b' ', rest) {
        Some(at) if rest[at + 1..].starts_with(b"HTTP/") => &rest[..at],
        _ => rest,
    };
    let path = match memchr(b'?', target) {
        Some(q) => &target[..q],
        None => target,
    };
    Some((method, cut_path(path)))
}

fn cut_path(path: &[u8]) -> &[u8] {
    if path.len() <= REQUEST_PATH_MAX {
        return path;
    }
    let mut end = REQUEST_PATH_MAX;
    // Back off a UTF-8 continuation byte (escape=json and escape=none write
    // non-ASCII bytes as they came).
    while end > 0 && path[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    // Back off a `\xHH` escape (the default escaping) cut in two.
    if let Some(back) = (1..=3).find(|&k| end >= k && path[end - k] == b'\\') {
        if path.get(end - back + 1) == Some(&b'x') {
            end -= back;
        }
    }
    &path[..end]
}

/// Entries of an upstream list (`$upstream_addr`, `$upstream_status`,
/// `$upstream_*_time`): one per attempt, `, ` between servers of one group and
/// ` : ` between groups after an internal redirect. Items line up across the
/// variables of one line, so they can be zipped. `-` and empty entries are
/// `None`. An empty field yields nothing.
pub fn upstream_entries(field: &[u8]) -> UpstreamEntries<'_> {
    UpstreamEntries {
        rest: if field.is_empty() { None } else { Some(field) },
        whole: false,
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
    /// `rest` is known to be one entry.
    whole: bool,
}

impl<'a> Iterator for UpstreamEntries<'a> {
    type Item = Option<&'a [u8]>;

    // Always inlined: the counters walk four lists per line with it.
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest?;
        let (entry, rest) = if self.whole {
            (s, None)
        } else {
            split_entry(s)
        };
        self.rest = rest;
        Some(if is_nil(entry) { None } else { Some(entry) })
    }
}

/// (entries, groups) of an upstream list, split the way `upstream_entries`
/// and `upstream_groups` split it.
fn list_shape(s: &[u8]) -> (u32, u32) {
    let (mut entries, mut groups) = (1, 1);
    let mut rest = s;
    while let (_, Some(next)) = split_entry(rest) {
        entries += 1;
        // What split_entry consumed: the entry and its separator.
        if rest[..rest.len() - next.len()].ends_with(b" : ") {
            groups += 1;
        }
        rest = next;
    }
    (entries, groups)
}

// Always inlined: the counters walk four lists a line with it, and a call
// per entry costs as much as the walk.
#[inline(always)]
fn split_entry(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    // Both separators hold a space: `, ` after the comma, ` : ` before
    // the colon. Entries are short, so the search is the inlined one.
    let mut from = 0;
    while let Some(i) = find_byte(b' ', &s[from..]) {
        let at = from + i;
        if at > 0 && s[at - 1] == b',' {
            return (&s[..at - 1], Some(&s[at + 1..]));
        }
        if eq_prefix(&s[at + 1..], b": ") {
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
            statuses.push(parse_status(out.status().unwrap()).unwrap());
            assert!(out.upstream_addr().is_none());
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
        assert_eq!(out.status(), Some(&b"404"[..]));
        assert_eq!(out.body_bytes_sent(), Some(&b"153"[..]));
    }

    #[test]
    fn main_fixture_parses_every_line() {
        let f = AccessFormat::builtin("main").unwrap();
        let mut out = AccessFields::default();
        for line in MAIN_LOG.lines() {
            f.parse(line.as_bytes(), &mut out).unwrap();
            assert!(parse_status(out.status().unwrap()).is_some());
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
                    entries(out.upstream_addr().unwrap()),
                    vec![
                        Some(&b"unix:/tmp/ngxcap/socks/missing.sock"[..]),
                        Some(b"127.0.0.1:18101")
                    ]
                );
                let st: Vec<_> = upstream_entries(out.upstream_status().unwrap())
                    .map(|s| s.and_then(parse_status))
                    .collect();
                assert_eq!(st, vec![Some(502), Some(200)]);
                assert_eq!(
                    entries(out.upstream_connect_time().unwrap()),
                    vec![None, Some(&b"0.000"[..])]
                );
            }
            if line.contains("GET /accel ") {
                seen_group = true;
                assert_eq!(
                    entries(out.upstream_addr().unwrap()),
                    vec![
                        Some(&b"127.0.0.1:18108"[..]),
                        Some(b"unix:/tmp/ngxcap/socks/missing.sock")
                    ]
                );
                assert_eq!(upstream_groups(out.upstream_status().unwrap()).count(), 2);
                assert_eq!(
                    entries(out.upstream_connect_time().unwrap()),
                    vec![Some(&b"0.000"[..]), None]
                );
            }
            if line.contains("GET /static ") {
                assert_eq!(out.upstream_addr(), None);
                assert_eq!(out.upstream_status(), None);
                assert_eq!(out.request_time(), Some(&b"0.000"[..]));
            }
            if line.contains("GET /timeout ") {
                assert_eq!(
                    out.request_time().and_then(parse_seconds_millis),
                    Some(1002)
                );
                assert_eq!(out.upstream_status().and_then(parse_status), Some(504));
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
            assert!(out.status().and_then(parse_status).is_some());
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
        assert_eq!(out.status(), Some(&b"404"[..]));
        assert_eq!(out.upstream_addr(), None);
        assert_eq!(out.upstream_header_time(), None);
        // A request containing the literal that follows it, escaped.
        let line = br#"{"time":"t","status":"200","request":"GET /\",\"request_time\":\"9.999\" HTTP/1.1","request_time":"0.001","upstream_addr":"-","upstream_status":"-","upstream_response_time":"-","upstream_connect_time":"-","upstream_header_time":"-","ua":"\\"}"#;
        f.parse(line, &mut out).unwrap();
        assert_eq!(out.request_time(), Some(&b"0.001"[..]));
        assert_eq!(out.upstream_status(), None);
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
        assert_eq!(out.status(), Some(&b"502"[..]));
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
        assert_eq!(out.status().and_then(parse_status), None);
        assert_eq!(out.request_time().and_then(parse_seconds_millis), None);
        assert_eq!(
            out.upstream_response_time().and_then(parse_seconds_millis),
            None
        );
        assert_eq!(out.upstream_status().and_then(parse_status), Some(502));
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
    fn seconds_fast_path_agrees_with_the_general_parse() {
        let mut n = 0;
        for int in ["", "0", "7", "12", "123", "1234", "12345", "1x", "-", " 1"] {
            for frac in ["000", "123", "999", "12", "1234", "1x3", "", "-"] {
                for dot in [".", ""] {
                    let v = format!("{int}{dot}{frac}");
                    let v = v.as_bytes();
                    assert_eq!(parse_seconds_millis(v), parse_seconds_any(v), "{v:?}");
                    n += parse_seconds_millis(v).is_some() as u32;
                }
            }
        }
        assert_eq!(parse_seconds_millis(b"1234.567"), Some(1_234_567));
        assert!(n > 20, "only {n} values parsed");
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

    /// The word-at-a-time search agrees with a plain one at every length
    /// (short, word-sized, past the 32 bytes where memchr takes over) and
    /// every position, with and without other bytes whose borrow could
    /// flag a false match (`b - 1`, `0x80`).
    #[test]
    fn find_byte_is_a_search() {
        for len in 0..300 {
            for fill in [b'a', b'"' - 1, 0x80, 0] {
                let mut hay = vec![fill; len];
                assert_eq!(find_byte(b'"', &hay), None, "len {len} fill {fill}");
                for at in 0..len {
                    hay[at] = b'"';
                    if at + 1 < len {
                        hay[at + 1] = b'"';
                    }
                    assert_eq!(find_byte(b'"', &hay), Some(at), "len {len} at {at}");
                    assert_eq!(
                        find_byte_words(&Needle::new(b'"'), &hay),
                        Some(at),
                        "len {len} at {at}"
                    );
                    hay[at] = fill;
                    if at + 1 < len {
                        hay[at + 1] = fill;
                    }
                }
            }
        }
    }

    /// A literal's packed tail finds what a byte-by-byte compare finds:
    /// tails of no byte to more than a word, near-misses in every byte,
    /// and matches too close to the end for a whole word.
    #[test]
    fn literal_words_find_what_bytes_find() {
        for lit in [
            &b"\""[..],
            b"\" ",
            b"] \"",
            b"\" rt=",
            b"\" uct=\"",
            b"12345678",
            b"123456789",
            b"1234567890ab",
        ] {
            let l = Lit::new(lit.to_vec());
            for pad in 0..12 {
                for miss in 0..=lit.len() {
                    // The literal with byte `miss` changed (none when
                    // `miss` is its length), then the literal itself.
                    let mut hay = vec![b'x'; pad];
                    let mut near = lit.to_vec();
                    if let Some(b) = near.get_mut(miss) {
                        *b ^= 1;
                    }
                    hay.extend_from_slice(&near);
                    hay.extend_from_slice(lit);
                    for cut in 0..=hay.len() {
                        let h = &hay[..cut];
                        assert_eq!(l.find_in(h), find(h, lit), "{lit:?} in {h:?}");
                    }
                }
            }
        }
    }

    /// A line's lists read the same through the fast path for unspaced
    /// lists as through the full split.
    #[test]
    fn unspaced_lists_read_whole() {
        let f = upstream_format();
        let (mut whole, mut spaced) = (0, 0);
        for line in UPSTREAM_LOG.lines() {
            let mut fields = AccessFields::default();
            f.parse(line.as_bytes(), &mut fields).unwrap();
            match fields.spaced_lists {
                0 => whole += 1,
                _ => spaced += 1,
            }
            fn split(v: Option<&[u8]>) -> Option<Vec<Option<&[u8]>>> {
                v.map(|v| upstream_entries(v).collect())
            }
            fn fast(e: Option<UpstreamEntries<'_>>) -> Option<Vec<Option<&[u8]>>> {
                e.map(|e| e.collect())
            }
            assert_eq!(
                fast(fields.upstream_addr_entries()),
                split(fields.upstream_addr())
            );
            assert_eq!(
                fast(fields.upstream_status_entries()),
                split(fields.upstream_status())
            );
            assert_eq!(
                fast(fields.upstream_response_time_entries()),
                split(fields.upstream_response_time())
            );
            assert_eq!(
                fast(fields.upstream_header_time_entries()),
                split(fields.upstream_header_time())
            );
        }
        assert!(whole > 0 && spaced > 0, "{whole} whole, {spaced} spaced");
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
        assert_eq!(out.status(), Some(&b"200"[..]));
    }

    /// The corpus of real formats (fixtures/nginx/formats/): each format as
    /// its project writes it, with lines real nginx wrote in it (capture.sh).
    macro_rules! corpus {
        ($($name:literal),*) => {
            &[$((
                $name,
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/nginx/formats/", $name, ".conf")),
                include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/nginx/formats/", $name, ".log")),
            )),*]
        };
    }
    const CORPUS: &[(&str, &str, &[u8])] = corpus!(
        "combined",
        "main",
        "upstreaminfo",
        "logfmt",
        "json_analytics",
        "readme"
    );

    fn corpus_format(name: &str) -> AccessFormat {
        let (_, conf, _) = CORPUS.iter().find(|(n, _, _)| *n == name).unwrap();
        let (_, esc, fmt) = parse_log_format_directive(conf).unwrap();
        AccessFormat::compile(&fmt, esc).unwrap()
    }

    fn corpus_lines(name: &str) -> impl Iterator<Item = &'static [u8]> {
        let (_, _, log) = CORPUS.iter().find(|(n, _, _)| *n == name).unwrap();
        log.split(|&b| b == b'\n').filter(|l| !l.is_empty())
    }

    fn find_line(name: &str, needle: &str) -> &'static [u8] {
        corpus_lines(name)
            .find(|l| l.windows(needle.len()).any(|w| w == needle.as_bytes()))
            .unwrap_or_else(|| panic!("{name}: no line with {needle:?}"))
    }

    /// A format keeps the lengths of the last line's values as guesses for
    /// the next: every corpus line parses the same after any other line as
    /// with a fresh format, forwards, backwards, and each after a line of
    /// every other format.
    #[test]
    fn guesses_from_other_lines_change_no_parse() {
        let mut compared = 0;
        for (name, _, _) in CORPUS {
            let lines: Vec<&[u8]> = corpus_lines(name).collect();
            let fresh = |l: &'static [u8]| {
                let mut out = AccessFields::default();
                let r = corpus_format(name).parse(l, &mut out);
                (r, out)
            };
            let warm = corpus_format(name);
            let orders = [
                lines.clone(),
                lines.iter().rev().copied().collect(),
                CORPUS
                    .iter()
                    .flat_map(|(other, _, _)| corpus_lines(other))
                    .collect(),
            ];
            for line in orders.iter().flatten() {
                let mut out = AccessFields::default();
                let r = warm.parse(line, &mut out);
                assert_eq!((r, out), fresh(line), "{name}: {line:?}");
                compared += 1;
            }
        }
        assert!(compared > 500, "{compared}");
    }

    #[test]
    fn corpus_builtins_are_the_projects_own() {
        let joined = |name| {
            let (_, conf, _) = CORPUS.iter().find(|(n, _, _)| *n == name).unwrap();
            parse_log_format_directive(conf).unwrap().2
        };
        assert_eq!(joined("combined"), COMBINED);
        assert_eq!(joined("main"), MAIN);
    }

    #[test]
    fn corpus_every_captured_line_parses_and_lines_up() {
        for &(name, _, _) in CORPUS {
            let f = corpus_format(name);
            let mut out = AccessFields::default();
            let mut n = 0;
            for line in corpus_lines(name) {
                f.parse(line, &mut out)
                    .unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(line)));
                assert!(out.status().and_then(parse_status).is_some(), "{name}");
                assert_eq!(f.check_upstream_lists(&out), Ok(()), "{name}");
                for i in 0..KEPT_LISTS {
                    for e in upstream_entries(out.list(i as u8).unwrap_or_default()).flatten() {
                        assert!(
                            !e.ends_with(b",") && !e.contains(&b' '),
                            "{name}: entry {:?}",
                            String::from_utf8_lossy(e)
                        );
                    }
                }
                n += 1;
            }
            assert_eq!(n, 14, "{name}");
        }
    }

    /// The retried request and the redirected one, as each format with
    /// upstream fields wrote them, read back entry by entry.
    #[test]
    fn corpus_lists_and_groups_read_whole() {
        let missing = &b"unix:/tmp/ngxfmt/missing.sock"[..];
        let missing2 = &b"unix:/tmp/ngxfmt/missing2.sock"[..];
        let app = &b"unix:/tmp/ngxfmt/app.sock"[..];
        for name in ["upstreaminfo", "logfmt", "json_analytics", "readme"] {
            let f = corpus_format(name);
            let mut out = AccessFields::default();
            f.parse(find_line(name, "/retry/1"), &mut out).unwrap();
            assert_eq!(
                entries(out.upstream_addr().unwrap()),
                vec![Some(missing), Some(app)],
                "{name}"
            );
            assert_eq!(out.status(), Some(&b"200"[..]), "{name}");
            if f.has_field("upstream_status") {
                assert_eq!(
                    entries(out.upstream_status().unwrap()),
                    vec![Some(&b"502"[..]), Some(b"200")],
                    "{name}"
                );
            }
            f.parse(find_line(name, "/redirect/1"), &mut out).unwrap();
            assert_eq!(
                entries(out.upstream_addr().unwrap()),
                vec![Some(missing), Some(missing2), Some(missing), Some(app)],
                "{name}"
            );
            assert_eq!(upstream_groups(out.upstream_addr().unwrap()).count(), 2);
            assert_eq!(
                upstream_entries(out.upstream_response_time().unwrap()).count(),
                4,
                "{name}"
            );
            if f.has_field("upstream_status") {
                assert_eq!(out.upstream_status(), Some(&b"502, 502 : 502, 200"[..]));
            }
            // Fields after the lists are where they belong.
            assert_eq!(
                out.request_time()
                    .and_then(parse_seconds_millis)
                    .map(|ms| ms < 1000),
                Some(true),
                "{name}"
            );
        }
        // ingress-nginx: the lists are followed by more unquoted fields.
        let f = corpus_format("upstreaminfo");
        let mut out = AccessFields::default();
        f.parse(find_line("upstreaminfo", "/redirect/1"), &mut out)
            .unwrap();
        assert_eq!(out.upstream_response_length(), Some(&b"0, 0 : 0, 6"[..]));
        assert_eq!(
            out.upstream_response_time().map(list_shape),
            Some((4, 2)),
            "{out:?}"
        );
        // logfmt: a status list, then `request_time=`.
        let f = corpus_format("logfmt");
        f.parse(find_line("logfmt", "/redirect/2"), &mut out)
            .unwrap();
        assert_eq!(out.upstream_status(), Some(&b"502, 502 : 200"[..]));
        assert_eq!(out.upstream_connect_time(), Some(&b"-, - : 0.000"[..]));
    }

    /// The line from issue 8: retried upstreams, written unquoted.
    #[test]
    fn issue_8_unquoted_retry() {
        let f = AccessFormat::compile(
            r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time $upstream_addr $upstream_status $upstream_response_time"#,
            Escape::Default,
        )
        .unwrap();
        let line = br#"127.0.0.1 - - [23/Nov/2026:04:20:01 +0000] "GET / HTTP/1.1" 200 13 "-" "curl/7.88.1" 0.002 unix:/run/dead.sock, unix:/run/app.sock 502, 200 0.000, 0.002"#;
        let mut out = AccessFields::default();
        f.parse(line, &mut out).unwrap();
        assert_eq!(
            out.upstream_addr(),
            Some(&b"unix:/run/dead.sock, unix:/run/app.sock"[..])
        );
        assert_eq!(out.upstream_status(), Some(&b"502, 200"[..]));
        assert_eq!(out.upstream_response_time(), Some(&b"0.000, 0.002"[..]));
        assert_eq!(f.check_upstream_lists(&out), Ok(()));
        // A redirect to an upstream that was never tried: nginx ends each
        // list with ` : ` and an empty entry.
        let line = br#"127.0.0.1 - - [t] "GET / HTTP/1.1" 502 13 "-" "-" 0.002 a:1, b:2 :  502, 502 :  0.000, 0.001 : "#;
        f.parse(line, &mut out).unwrap();
        assert_eq!(out.upstream_addr(), Some(&b"a:1, b:2 : "[..]));
        assert_eq!(out.upstream_status(), Some(&b"502, 502 : "[..]), "{out:?}");
        assert_eq!(out.upstream_response_time(), Some(&b"0.000, 0.001 : "[..]));
        assert_eq!(f.check_upstream_lists(&out), Ok(()));
    }

    #[test]
    fn ambiguous_list_formats_are_refused_with_field_and_literal() {
        for (format, field, literal) in [
            ("$upstream_addr, $status", "upstream_addr", ", "),
            ("$upstream_status : $status", "upstream_status", " : "),
            ("$upstream_addr:$status", "upstream_addr", ":"),
            (
                "ut=$upstream_response_time, s=$status",
                "upstream_response_time",
                ", s=",
            ),
        ] {
            let e = AccessFormat::compile(format, Escape::Default).unwrap_err();
            assert!(
                matches!(&e, FormatError::AmbiguousList { field: f, literal: l, .. } if f == field && l == literal),
                "{format}: {e:?}"
            );
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("${field}")) && msg.contains(&format!("`{literal}`")),
                "{msg}"
            );
        }
        // Not ambiguous: a separator byte that lookahead tells apart, a
        // quoted list, a list at the end, a colon after a numeric list.
        for ok in [
            "$upstream_addr $status",
            "$upstream_addr,$status",
            r#""$upstream_addr", $status"#,
            "$status $upstream_addr, ",
            "$upstream_status:$status",
            "$upstream_addr [$status]",
        ] {
            assert!(AccessFormat::compile(ok, Escape::Default).is_ok(), "{ok}");
        }
    }

    #[test]
    fn separators_inside_a_list_continue_it() {
        let mut out = AccessFields::default();
        for (format, line, addr) in [
            (
                "$upstream_addr $status",
                "a:1, b:2 : c:3 200",
                "a:1, b:2 : c:3",
            ),
            ("$upstream_addr,$status", "a:1, b:2,200", "a:1, b:2"),
            ("$upstream_addr :$status", "a:1 : b:2 :200", "a:1 : b:2"),
            (
                "[$upstream_addr] $status",
                "[a:1, [::1]:80] 200",
                "a:1, [::1]:80",
            ),
            ("$upstream_addr $status", "- 200", "-"),
        ] {
            let f = AccessFormat::compile(format, Escape::Default).unwrap();
            f.parse(line.as_bytes(), &mut out)
                .unwrap_or_else(|e| panic!("{format} / {line}: {e}"));
            assert_eq!(
                out.upstream_addr().unwrap_or(b"-"),
                addr.as_bytes(),
                "{format}"
            );
            assert_eq!(out.status(), Some(&b"200"[..]), "{format}");
        }
    }

    #[test]
    fn upstream_lists_must_line_up() {
        let f = AccessFormat::compile(
            "$status a=$upstream_addr s=$upstream_status t=$upstream_response_time",
            Escape::Default,
        )
        .unwrap();
        let check = |line: &str| {
            let mut out = AccessFields::default();
            f.parse(line.as_bytes(), &mut out).unwrap();
            f.check_upstream_lists(&out)
        };
        assert_eq!(check("200 a=x:1, y:2 s=502, 200 t=0.0, 0.1"), Ok(()));
        assert_eq!(check("200 a=- s=- t=-"), Ok(()));
        assert_eq!(check("200 a=x:1 s=- t=-"), Ok(()));
        assert_eq!(check("200 a=x:1 : y:2 s=502 : 200 t=0.0 : 0.1"), Ok(()));
        assert_eq!(
            check("200 a=x:1, y:2 s=502 t=0.0, 0.1"),
            Err(ListError::Misaligned)
        );
        assert_eq!(
            check("200 a=x:1, y:2 s=502, 200 t=-"),
            Err(ListError::Misaligned)
        );
        assert_eq!(
            check("200 a=x:1, y:2 s=502 : 200 t=0.0, 0.1"),
            Err(ListError::Misaligned)
        );
        assert_eq!(
            check("200 a=x:1, y:2 s=502, 2000 t=0.0, 0.1"),
            Err(ListError::BadStatus)
        );
        assert_eq!(check("200 a=x:1 s=ok t=0.1"), Err(ListError::BadStatus));
        // A format without lists has nothing to check.
        let f = AccessFormat::builtin("combined").unwrap();
        let mut out = AccessFields::default();
        f.parse(COMBINED_LOG.lines().next().unwrap().as_bytes(), &mut out)
            .unwrap();
        assert_eq!(f.check_upstream_lists(&out), Ok(()));
    }

    #[test]
    fn has_space_everywhere() {
        for len in 0..40 {
            let clean = vec![b'a'; len];
            assert!(!has_space(&clean), "{len}");
            for at in 0..len {
                let mut s = clean.clone();
                s[at] = b' ';
                assert!(has_space(&s), "{len} {at}");
                // Bytes whose value is near a space's do not count.
                for near in [0x00, 0x1F, 0x21, 0xA0, 0xFF] {
                    s[at] = near;
                    assert!(!has_space(&s), "{len} {at} {near}");
                }
            }
        }
    }

    #[test]
    fn list_shapes() {
        assert_eq!(list_shape(b"a"), (1, 1));
        assert_eq!(list_shape(b"a,b"), (1, 1));
        assert_eq!(list_shape(b"a, b"), (2, 1));
        assert_eq!(list_shape(b"a, b : c"), (3, 2));
        assert_eq!(list_shape(b"a : "), (2, 2));
        assert_eq!(list_shape(b"-, - : -, 0.000"), (4, 2));
    }

    /// Times, connection and request on lines real nginx wrote.
    #[test]
    fn corpus_times_connection_and_request() {
        let f = corpus_format("json_analytics");
        let mut out = AccessFields::default();
        let mut last_conn = 0;
        for line in corpus_lines("json_analytics") {
            f.parse(line, &mut out).unwrap();
            let ms = out.msec().and_then(parse_msec).unwrap();
            let local = out.time_local().and_then(parse_time_local).unwrap();
            let iso = out.time_iso8601().and_then(parse_time_iso8601).unwrap();
            assert_eq!(local, iso);
            assert_eq!((ms / 1000) as i64, local, "{out:?}");
            let conn = out.connection().and_then(parse_connection).unwrap();
            assert!(conn > last_conn, "one connection per request, in order");
            last_conn = conn;
            let (method, path) = out.request().and_then(parse_request).unwrap();
            assert_eq!(method, b"GET");
            assert!(path.starts_with(b"/") && !path.contains(&b'?'), "{out:?}");
            assert!(path.len() <= REQUEST_PATH_MAX);
            // escape=json writes raw UTF-8: the cut keeps whole characters.
            assert!(std::str::from_utf8(path).is_ok(), "{out:?}");
        }
        let line = find_line("json_analytics", "/retry/1");
        f.parse(line, &mut out).unwrap();
        assert_eq!(
            out.request().and_then(parse_request),
            Some((&b"GET"[..], &b"/retry/1"[..]))
        );

        // The default escaping, on the same requests.
        for name in ["combined", "upstreaminfo", "logfmt", "readme", "main"] {
            let f = corpus_format(name);
            for line in corpus_lines(name) {
                f.parse(line, &mut out).unwrap();
                let t = out.time_local().and_then(parse_time_local);
                assert!(t.is_some(), "{name}: {out:?}");
                if let Some(r) = out.request() {
                    let (_, path) = parse_request(r).unwrap();
                    assert!(path.len() <= REQUEST_PATH_MAX && !path.contains(&b'?'));
                    // Never half an escape.
                    let tail = &path[path.len().saturating_sub(3)..];
                    assert!(!tail.contains(&b'\\'), "{}", String::from_utf8_lossy(path));
                }
            }
        }
        let f = corpus_format("combined");
        f.parse(find_line("combined", "/static/x"), &mut out)
            .unwrap();
        let (_, path) = out.request().and_then(parse_request).unwrap();
        // `/static/x` then `\xC3\xA9` repeated: cut after a whole escape.
        assert_eq!(path.len(), 9 + 8 * 14 + 4);
    }

    #[test]
    fn time_helpers() {
        assert_eq!(
            parse_time_local(b"23/Nov/2026:04:20:01 +0000"),
            Some(1_795_407_601)
        );
        assert_eq!(
            parse_time_local(b"23/Nov/2026:06:20:01 +0200"),
            Some(1_795_407_601)
        );
        assert_eq!(
            parse_time_local(b"22/Nov/2026:23:50:01 -0430"),
            Some(1_795_407_601)
        );
        assert_eq!(parse_time_local(b"01/Jan/1970:00:00:00 +0000"), Some(0));
        assert_eq!(
            parse_time_local(b"29/Feb/2024:12:00:00 +0000"),
            Some(1_709_208_000)
        );
        assert_eq!(
            parse_time_iso8601(b"2026-11-23T04:20:01+00:00"),
            Some(1_795_407_601)
        );
        assert_eq!(
            parse_time_iso8601(b"2026-11-23T09:50:01+05:30"),
            Some(1_795_407_601)
        );
        assert_eq!(
            parse_time_iso8601(b"2026-11-23T04:20:01Z"),
            Some(1_795_407_601)
        );
        for bad in [
            &b""[..],
            b"-",
            b"23/Nov/2026:04:20:01",
            b"23/Foo/2026:04:20:01 +0000",
            b"29/Feb/2026:04:20:01 +0000",
            b"31/Apr/2026:04:20:01 +0000",
            b"23/Nov/2026:24:20:01 +0000",
            b"23/Nov/2026:04:20:01 *0000",
            b"23/Nov/2026:04:20:01 +0099",
            b"2x/Nov/2026:04:20:01 +0000",
        ] {
            assert_eq!(
                parse_time_local(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for bad in [
            &b"2026-11-23 04:20:01+00:00"[..],
            b"2026-13-23T04:20:01+00:00",
            b"2026-11-23T04:20:01+0000",
            b"2026-11-23T04:20:01",
        ] {
            assert_eq!(
                parse_time_iso8601(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse_msec(b"1795407601.123"), Some(1_795_407_601_123));
        assert_eq!(parse_msec(b"-"), None);
        assert_eq!(parse_connection(b"12345"), Some(12345));
        for bad in [&b""[..], b"-", b"12a", b"99999999999999999999"] {
            assert_eq!(parse_connection(bad), None);
        }
    }

    #[test]
    fn request_helper() {
        let r = |s: &str| parse_request(s.as_bytes()).map(|(m, p)| (m.to_vec(), p.to_vec()));
        let mp = |m: &str, p: &str| Some((m.as_bytes().to_vec(), p.as_bytes().to_vec()));
        assert_eq!(r("GET /path?query HTTP/1.1"), mp("GET", "/path"));
        assert_eq!(
            r("POST /api/v1/items HTTP/2.0"),
            mp("POST", "/api/v1/items")
        );
        assert_eq!(r("GET /"), mp("GET", "/"));
        assert_eq!(r("GET http://h/x?y HTTP/1.1"), mp("GET", "http://h/x"));
        assert_eq!(r("GET /a b HTTP/1.1"), mp("GET", "/a b"));
        for bad in [
            "-",
            "",
            "\\x16\\x03\\x01 x",
            "get / HTTP/1.1",
            " / HTTP/1.1",
        ] {
            assert_eq!(r(bad), None, "{bad:?}");
        }
        let long = format!("GET /{} HTTP/1.1", "a".repeat(300));
        assert_eq!(r(&long).unwrap().1.len(), REQUEST_PATH_MAX);
        // A cut inside a two-byte character backs off to its start.
        let long = format!("GET /{} HTTP/1.1", "é".repeat(100));
        let p = r(&long).unwrap().1;
        assert_eq!(p.len(), 127);
        assert!(std::str::from_utf8(&p).is_ok());
        // A cut inside `\xHH` backs off to before the backslash.
        for pad in 0..4 {
            let long = format!(
                "GET /{}{} HTTP/1.1",
                "a".repeat(pad),
                "\\xC3\\xA9".repeat(40)
            );
            let p = r(&long).unwrap().1;
            assert!(p.len() <= REQUEST_PATH_MAX && p.len() > REQUEST_PATH_MAX - 4);
            assert!(
                p.ends_with(b"\\xC3") || p.ends_with(b"\\xA9"),
                "{pad}: {}",
                String::from_utf8_lossy(&p)
            );
        }
    }

    /// A variable of a generated format: its name, how its values look, and
    /// whether it is an upstream list.
    const GEN_VARS: &[(&str, GenValue)] = &[
        ("upstream_addr", GenValue::Addr),
        ("upstream_status", GenValue::Status),
        ("upstream_response_time", GenValue::Time),
        ("upstream_connect_time", GenValue::Time),
        ("upstream_header_time", GenValue::Time),
        ("upstream_response_length", GenValue::Length),
        ("upstream_bytes_received", GenValue::Length),
        ("upstream_bytes_sent", GenValue::Length),
        ("status", GenValue::Status),
        ("request_time", GenValue::Time),
        ("remote_addr", GenValue::Token),
        ("http_user_agent", GenValue::Text),
    ];

    #[derive(Clone, Copy, Debug)]
    enum GenValue {
        Addr,
        Status,
        Time,
        Length,
        Token,
        /// Free text with spaces and separators: only written quoted.
        Text,
    }

    #[derive(Clone, Copy, Debug)]
    enum Style {
        Bare,
        Key,
        Quoted,
        Bracket,
    }

    /// (variable index, style) in written order, and the literal between
    /// neighbours. Joiners never begin with a whole list separator: those
    /// formats are refused (ambiguous_list_formats_are_refused...).
    fn gen_format() -> impl Strategy<Value = (Vec<(usize, Style)>, Vec<&'static str>)> {
        let style = prop_oneof![
            Just(Style::Bare),
            Just(Style::Key),
            Just(Style::Quoted),
            Just(Style::Bracket)
        ];
        proptest::collection::vec((0..GEN_VARS.len(), style), 1..8)
            .prop_map(|mut v| {
                let mut seen = std::collections::HashSet::new();
                v.retain(|(i, _)| seen.insert(*i));
                for (i, s) in v.iter_mut() {
                    if matches!(GEN_VARS[*i].1, GenValue::Text) {
                        *s = Style::Quoted;
                    }
                }
                v
            })
            .prop_flat_map(|v| {
                let n = v.len();
                let joiner = prop_oneof![
                    Just(" "),
                    Just("  "),
                    Just(" | "),
                    Just(","),
                    Just(";"),
                    Just("\t"),
                    Just(" :: ")
                ];
                (Just(v), proptest::collection::vec(joiner, n))
            })
    }

    fn gen_entry(kind: GenValue, seed: u32) -> String {
        let dash = seed % 7 == 0;
        match kind {
            _ if dash => "-".into(),
            GenValue::Addr => match seed % 3 {
                0 => format!("10.0.{}.{}:80{}", seed % 256, seed % 100, seed % 10),
                1 => format!("unix:/run/app{}.sock", seed % 13),
                _ => format!("[::{:x}]:8000", seed % 4096),
            },
            GenValue::Status => format!("{}", 100 + seed % 500),
            GenValue::Time => format!("{}.{:03}", seed % 60, seed % 1000),
            GenValue::Length => format!("{}", seed % 100_000),
            GenValue::Token => format!("t{}.{}:{}", seed % 97, seed % 13, seed % 7),
            GenValue::Text => format!("Mozilla/5.0 (a, b : c) {}", seed),
        }
    }

    /// Writes one line of a generated format: every list with `shape`
    /// (entries per group), or with one entry fewer for variable `short`.
    fn gen_write(
        vars: &[(usize, Style)],
        joiners: &[&str],
        shape: &[usize],
        seed: u32,
        short: Option<usize>,
    ) -> (String, String, Vec<(usize, String)>) {
        let mut format = String::new();
        let mut line = String::new();
        let mut values = Vec::new();
        for (k, &(i, style)) in vars.iter().enumerate() {
            let (name, kind) = GEN_VARS[i];
            let value = if i < KEPT_LISTS {
                let mut n = 0;
                let groups: Vec<String> = shape
                    .iter()
                    .enumerate()
                    .map(|(g, &entries)| {
                        let entries = if short == Some(k) && g == 0 {
                            entries - 1
                        } else {
                            entries
                        };
                        (0..entries)
                            .map(|_| {
                                n += 1;
                                gen_entry(
                                    kind,
                                    seed.wrapping_mul(31).wrapping_add(n * 7 + i as u32),
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .collect();
                groups.join(" : ")
            } else {
                gen_entry(kind, seed.wrapping_add(i as u32 * 11) | 1)
            };
            let (pre, post) = match style {
                Style::Bare => (String::new(), ""),
                Style::Key => (format!("k{k}="), ""),
                Style::Quoted => ("\"".to_string(), "\""),
                Style::Bracket => ("[".to_string(), "]"),
            };
            format.push_str(&format!("{pre}${name}{post}"));
            line.push_str(&format!("{pre}{value}{post}"));
            if k + 1 < vars.len() {
                format.push_str(joiners[k]);
                line.push_str(joiners[k]);
            }
            values.push((i, value));
        }
        (format, line, values)
    }

    fn field_by_index<'a>(out: &AccessFields<'a>, i: usize) -> Option<&'a [u8]> {
        match GEN_VARS[i].0 {
            "status" => out.status(),
            "request_time" => out.request_time(),
            _ if i < KEPT_LISTS => out.list(i as u8),
            _ => None,
        }
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
            corpus_format("upstreaminfo"),
            corpus_format("logfmt"),
            corpus_format("json_analytics"),
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
        /// Formats with upstream lists bare, after `key=`, quoted or in
        /// brackets, followed by more fields: every value reads back whole
        /// and the lists line up; one list short by an entry is caught.
        #[test]
        fn generated_formats_read_lists_whole(
            (vars, joiners) in gen_format(),
            shape in proptest::collection::vec(1usize..4, 1..4),
            seed in any::<u32>(),
            short_pick in any::<usize>(),
        ) {
            let (format, line, values) = gen_write(&vars, &joiners, &shape, seed, None);
            let f = AccessFormat::compile(&format, Escape::Default)
                .map_err(|e| TestCaseError::fail(format!("{format}: {e}")))?;
            let mut out = AccessFields::default();
            prop_assert!(f.parse(line.as_bytes(), &mut out).is_ok(), "{format}\n{line}");
            for (i, value) in &values {
                let want = if is_nil(value.as_bytes()) { None } else { Some(value.as_bytes()) };
                if matches!(GEN_VARS[*i].0, "status" | "request_time") || *i < KEPT_LISTS {
                    prop_assert_eq!(field_by_index(&out, *i), want, "{}\n{}\n{}", GEN_VARS[*i].0, format, line);
                }
            }
            prop_assert_eq!(f.check_upstream_lists(&out), Ok(()));

            // The same line with one list an entry short.
            let lists: Vec<usize> = vars.iter().enumerate()
                .filter(|(_, (i, _))| *i < KEPT_LISTS).map(|(k, _)| k).collect();
            if lists.len() >= 2 && shape.iter().sum::<usize>() >= 2 && shape[0] >= 2 {
                let short = lists[short_pick % lists.len()];
                let (_, line, _) = gen_write(&vars, &joiners, &shape, seed, Some(short));
                prop_assert!(f.parse(line.as_bytes(), &mut out).is_ok(), "{format}\n{line}");
                prop_assert_eq!(f.check_upstream_lists(&out), Err(ListError::Misaligned), "{}\n{}", format, line);
            }
        }

        #[test]
        fn parse_never_panics(line in gen_line()) {
            let mut out = AccessFields::default();
            for f in formats() {
                let _ = f.parse(&line, &mut out);
                for v in [out.status(), out.request_time(), out.upstream_addr(), out.upstream_status(),
                          out.upstream_response_time(), out.upstream_connect_time(), out.upstream_header_time()] {
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
            prop_assert_eq!(out.status().and_then(parse_status), Some(status));
            prop_assert_eq!(out.request_time().and_then(parse_seconds_millis), Some(rt));
            let n = upstream_entries(out.upstream_addr().unwrap_or_default()).count();
            prop_assert_eq!(n, upstream_entries(out.upstream_status().unwrap_or_default()).count());
        }
    }
}
