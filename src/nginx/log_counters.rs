//! Turning parsed nginx lines into bounded counters.
//!
//! Anyone who can send a request controls what nginx logs, so no URI,
//! client address or Host header becomes a label. `upstream` values come
//! from a capped table: past the cap they fold into `other`.

use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;

use super::access::{self, AccessFields, AccessFormat};
use super::error_log::{self, ErrorLine, Phase, Reason, UpstreamFailure};

/// The `upstream` label of requests nginx answered without an upstream.
pub const NO_UPSTREAM: &str = "-";
/// The `upstream` label that values past the cap fold into.
pub const OTHER: &str = "other";

/// A bounded table of upstream label values.
#[derive(Debug, Clone)]
pub struct Upstreams {
    index: HashMap<Vec<u8>, u16>,
    /// Shared, so that an event about a request to an upstream can name
    /// it without a copy.
    names: Vec<Arc<str>>,
    /// The ids of values met lately, by a hash of each value's length and
    /// last eight bytes ([`recent_key`]): a value met before is found with
    /// one compare of its key and one of its bytes. The upstream changes
    /// from line to line, and a scan of the names stopped at a different
    /// place each time, which the processor mispredicted.
    recent: [(u64, u16); RECENT],
    cap: usize,
    pub overflowed: u64,
}

/// Slots of [`Upstreams::recent`]: a power of two.
const RECENT: usize = 16;

/// A hash of a value's length and its last eight bytes (fewer when it is
/// shorter), where addresses differ (`127.0.0.1:8001`, `127.0.0.1:8002`).
#[inline(always)]
fn recent_key(k: &[u8]) -> u64 {
    let tail = match k.last_chunk::<8>() {
        Some(w) => u64::from_le_bytes(*w),
        None => k.iter().fold(0, |w, &b| w << 8 | b as u64),
    };
    (tail ^ k.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}

impl Upstreams {
    pub fn new(cap: usize) -> Upstreams {
        let mut u = Upstreams {
            index: HashMap::default(),
            names: Vec::new(),
            recent: [(0, 0); RECENT],
            cap,
            overflowed: 0,
        };
        u.intern_raw(NO_UPSTREAM.as_bytes());
        u.intern_raw(OTHER.as_bytes());
        u
    }

    fn intern_raw(&mut self, k: &[u8]) -> u16 {
        let id = self.names.len() as u16;
        self.names.push(String::from_utf8_lossy(k).into());
        self.index.insert(k.to_vec(), id);
        id
    }

    /// The label id for an upstream as written in the log; allocates only
    /// the first time a value is seen.
    #[inline(always)]
    pub fn id(&mut self, k: &[u8]) -> u16 {
        let key = recent_key(k);
        let slot = (key >> 60) as usize % RECENT;
        let (seen, id) = self.recent[slot];
        if seen == key && same_bytes(self.names[id as usize].as_bytes(), k) {
            return id;
        }
        let id = self.id_of(k);
        // A value folded into `other` has no name of its own to compare.
        if id != 1 {
            self.recent[slot] = (key, id);
        }
        id
    }

    /// [`Upstreams::id`] without the recent values.
    fn id_of(&mut self, k: &[u8]) -> u16 {
        // While there are few, a value is found by comparing it with each
        // name (most logs name a handful of upstreams, and hashing a value
        // cost more than the compares); a name differs from its value only
        // when the value is not UTF-8, which the index then finds.
        if self.names.len() <= FEW_UPSTREAMS {
            if let Some(id) = self.names.iter().position(|n| same_bytes(n.as_bytes(), k)) {
                return id as u16;
            }
        }
        match self.index.get(k) {
            Some(id) => *id,
            None => self.intern(k),
        }
    }

    #[cold]
    fn intern(&mut self, k: &[u8]) -> u16 {
        // Two reserved entries (`-`, `other`) do not count against the cap.
        if self.names.len() - 2 >= self.cap || k.len() > 256 {
            self.overflowed += 1;
            return 1;
        }
        self.intern_raw(k)
    }

    pub fn name(&self, id: u16) -> &str {
        &self.names[id as usize]
    }

    /// The upstream value `k` as its id names it, shared: the same text
    /// as `String::from_utf8_lossy(k)` without a copy, when `id` is `k`'s
    /// own entry (not `-` or the `other` that values past the cap fold
    /// into).
    pub fn shared_name(&self, id: u16, k: &[u8]) -> Arc<str> {
        match self.names.get(id as usize) {
            Some(n) if id > 1 => n.clone(),
            _ => String::from_utf8_lossy(k).into(),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = (u16, &str)> {
        self.names.iter().enumerate().map(|(i, n)| (i as u16, &**n))
    }
}

/// Up to this many upstream values (with the two reserved), [`Upstreams::id`]
/// compares rather than hashes.
const FEW_UPSTREAMS: usize = 16;

/// `a == b`, a word at a time and inlined: upstream values are short
/// (`10.0.0.7:8000`, `unix:/run/app.sock`), where a call to memcmp cost
/// more than the compare.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap());
    // Whole words before the last 8 bytes, then those (overlapping the
    // words before), in a plain loop: an iterator's `all` here was left
    // as a call.
    let last = a.len() - 8;
    let mut at = 0;
    while at < last {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, last) == word(b, last)
}

/// How many of [`BUCKETS_MS`] are below `ms`, from two small tables
/// indexed by `ms`'s highest set bit: each power-of-two range holds at most
/// one bound, so the count is the bounds below the range plus a compare
/// with the one in it. No branch on the time (times vary from line to line,
/// so a branch on them was mispredicted half the time), and no chain of
/// dependent compares.
#[inline(always)]
fn bucket_of(ms: u64) -> usize {
    let k = (u64::BITS - 1 - (ms | 1).leading_zeros()) as usize;
    BOUNDS_BELOW[k] as usize + (BOUND_IN[k] < ms) as usize
}

/// By power of two `k`: how many bounds lie below `2^k`.
const BOUNDS_BELOW: [u8; 64] = bucket_tables().0;
/// By power of two `k`: the bound in `[2^k, 2^(k+1))`, or `u64::MAX`.
const BOUND_IN: [u64; 64] = bucket_tables().1;

const fn bucket_tables() -> ([u8; 64], [u64; 64]) {
    let mut below = [0u8; 64];
    let mut inside = [u64::MAX; 64];
    let mut k = 0;
    while k < 64 {
        let mut i = 0;
        while i < BUCKETS_MS.len() {
            let b = BUCKETS_MS[i];
            if b < 1 << k {
                below[k] += 1;
            } else if k == 63 || b < 1 << (k + 1) {
                assert!(inside[k] == u64::MAX, "two bounds in one power of two");
                inside[k] = b;
            }
            i += 1;
        }
        k += 1;
    }
    (below, inside)
}

/// Histogram bucket bounds, in milliseconds (the log's resolution).
pub const BUCKETS_MS: &[u64] = &[
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
];

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Per-bucket (not cumulative) counts; the last is +Inf.
    pub counts: [u64; 14],
    pub sum_ms: u64,
    pub count: u64,
}

impl Histogram {
    #[inline(always)]
    pub fn observe_ms(&mut self, ms: u64) {
        let i = bucket_of(ms);
        self.counts[i] += 1;
        self.sum_ms += ms;
        self.count += 1;
    }

    /// (upper bound in seconds, count in that bucket alone), ending with
    /// +Inf: the encoder makes them cumulative.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let le = BUCKETS_MS
                    .get(i)
                    .map(|b| *b as f64 / 1000.0)
                    .unwrap_or(f64::INFINITY);
                (le, *c)
            })
            .collect()
    }
}

/// Why a line did not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ParseError {
    /// The line does not match the configured `log_format`.
    FormatMismatch,
    /// `$status` is not a 3-digit HTTP status.
    BadStatus,
    /// Binary or invalid UTF-8.
    InvalidUtf8,
    /// Longer than the line cap; cut, and not counted.
    TooLong,
    /// An error-log line not in nginx's error-log layout.
    ErrorLayout,
    /// The upstream lists of the line do not line up (different numbers of
    /// entries or groups), or `$upstream_status` holds a non-status.
    BadUpstreamList,
}

impl ParseError {
    pub const ALL: &'static [ParseError] = &[
        ParseError::FormatMismatch,
        ParseError::BadStatus,
        ParseError::InvalidUtf8,
        ParseError::TooLong,
        ParseError::ErrorLayout,
        ParseError::BadUpstreamList,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ParseError::FormatMismatch => "format_mismatch",
            ParseError::BadStatus => "bad_status",
            ParseError::InvalidUtf8 => "invalid_utf8",
            ParseError::TooLong => "too_long",
            ParseError::ErrorLayout => "error_layout",
            ParseError::BadUpstreamList => "bad_upstream_list",
        }
    }
}

/// The `status` label of an attempt without a status (`-`).
pub const NO_STATUS: u16 = 0;

/// An access line that counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted<'a> {
    /// The status nginx answered the client with.
    pub status: u16,
    /// The upstream of the last attempt, as written in the line, and its
    /// id in [`LogCounters::upstreams`].
    pub upstream: Option<(&'a [u8], u16)>,
    /// The last attempt's 5xx came from the backend (a header arrived).
    pub backend_sent: bool,
}

/// (upstream, status) -> count. Stored by upstream id, which is dense and
/// bounded (`Upstreams`' cap), with each upstream's few statuses in a short
/// list: a line costs an index and a scan of a handful of entries, where a
/// hash map cost a hash and a probe for each of the line's counts. Iterates
/// as a map of the same keys does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusCounts {
    by_upstream: Vec<Vec<((u16, u16), u64)>>,
}

impl StatusCounts {
    #[inline(always)]
    pub fn add(&mut self, upstream: u16, status: u16) {
        let up = upstream as usize;
        if up >= self.by_upstream.len() {
            self.by_upstream.resize_with(up + 1, Vec::new);
        }
        let row = &mut self.by_upstream[up];
        match row.iter_mut().find(|((_, s), _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => row.push(((upstream, status), 1)),
        }
    }

    pub fn get(&self, key: &(u16, u16)) -> Option<&u64> {
        self.by_upstream
            .get(key.0 as usize)?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, n)| n)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&(u16, u16), &u64)> {
        self.by_upstream.iter().flatten().map(|(k, n)| (k, n))
    }

    pub fn values(&self) -> impl Iterator<Item = &u64> {
        self.iter().map(|(_, n)| n)
    }

    pub fn len(&self) -> usize {
        self.by_upstream.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A histogram per upstream id, stored by id as `StatusCounts` is.
/// Iterates as a map from the id does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamHistograms {
    by_upstream: Vec<Option<(u16, Histogram)>>,
}

impl UpstreamHistograms {
    #[inline(always)]
    pub fn observe_ms(&mut self, upstream: u16, ms: u64) {
        let up = upstream as usize;
        if up >= self.by_upstream.len() {
            self.by_upstream.resize_with(up + 1, || None);
        }
        self.by_upstream[up]
            .get_or_insert_with(|| (upstream, Histogram::default()))
            .1
            .observe_ms(ms);
    }

    pub fn get(&self, upstream: &u16) -> Option<&Histogram> {
        self.by_upstream
            .get(*upstream as usize)?
            .as_ref()
            .map(|(_, h)| h)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u16, &Histogram)> {
        self.by_upstream.iter().flatten().map(|(k, h)| (k, h))
    }
}

/// Everything counted for one configured nginx (one access + error log).
#[derive(Debug, Clone)]
pub struct LogCounters {
    pub upstreams: Upstreams,
    /// (upstream, final client status) -> requests.
    pub responses: StatusCounts,
    /// (upstream, attempt status or NO_STATUS) -> attempts.
    pub attempts: StatusCounts,
    /// (upstream, 5xx status) -> attempts whose 5xx the backend sent itself
    /// (a response header arrived), as opposed to one nginx generated.
    pub backend_errors: StatusCounts,
    /// (upstream, reason, phase) -> failures from the error log.
    pub failures: HashMap<(u16, Reason, Phase), u64>,
    pub response_seconds: UpstreamHistograms,
    pub upstream_seconds: UpstreamHistograms,
    pub access_lines: u64,
    pub error_lines: u64,
    pub parse_errors: HashMap<ParseError, u64>,
    /// When the first and the last counted access line were written (or
    /// read, when the format has no time): the span the counts cover.
    pub first_time: Option<std::time::SystemTime>,
    pub last_time: Option<std::time::SystemTime>,
}

impl LogCounters {
    pub fn new(max_upstreams: usize) -> LogCounters {
        LogCounters {
            upstreams: Upstreams::new(max_upstreams),
            responses: StatusCounts::default(),
            attempts: StatusCounts::default(),
            backend_errors: StatusCounts::default(),
            failures: HashMap::default(),
            response_seconds: UpstreamHistograms::default(),
            upstream_seconds: UpstreamHistograms::default(),
            access_lines: 0,
            error_lines: 0,
            parse_errors: HashMap::default(),
            first_time: None,
            last_time: None,
        }
    }

    fn parse_error<T>(&mut self, e: ParseError) -> Option<T> {
        *self.parse_errors.entry(e).or_default() += 1;
        None
    }

    /// Count one access-log line into `fields` (fresh, the caller's: a
    /// few hundred bytes not moved about per line) and return what was
    /// counted, for the caller's timeline. Nothing here allocates once an
    /// upstream has been seen: fields borrow from the line.
    pub fn access_line<'a>(
        &mut self,
        fmt: &AccessFormat,
        line: &'a [u8],
        truncated: bool,
        fields: &mut AccessFields<'a>,
    ) -> Option<Counted<'a>> {
        self.access_lines += 1;
        if truncated {
            return self.parse_error(ParseError::TooLong);
        }
        // nginx escapes non-ASCII bytes in the access log, so a valid line
        // is ASCII; the full UTF-8 check only runs for the rare other line.
        if !is_ascii(line) && std::str::from_utf8(line).is_err() {
            return self.parse_error(ParseError::InvalidUtf8);
        }
        if fmt.parse(line, fields).is_err() {
            return self.parse_error(ParseError::FormatMismatch);
        }
        let Some(status) = fields
            .status()
            .and_then(access::parse_status)
            .filter(|s| (100..600).contains(s))
        else {
            return self.parse_error(ParseError::BadStatus);
        };
        if fmt.check_upstream_lists(fields).is_err() {
            return self.parse_error(ParseError::BadUpstreamList);
        }

        // Attempts: $upstream_addr[i] with $upstream_status[i].
        // The last attempt's upstream, as written and by id.
        let mut last = None;
        let mut backend_sent = false;
        if !fields.has_spaced_list() {
            // The common line: every list holds one entry (or is `-`), so
            // the attempt is read from the fields without walking lists.
            if let Some(addr) = fields.upstream_addr() {
                let header = fields.upstream_header_time().is_some();
                let (st, t) = (fields.upstream_status(), fields.upstream_response_time());
                let (up, sent) = self.attempt(addr, st, t, header);
                (last, backend_sent) = (Some((addr, up)), sent);
            }
        } else if let Some(addrs) = fields.upstream_addr_entries() {
            let mut statuses = fields.upstream_status_entries();
            let mut times = fields.upstream_response_time_entries();
            let mut headers = fields.upstream_header_time_entries();
            for addr in addrs {
                let st = statuses.as_mut().and_then(|s| s.next()).flatten();
                let t = times.as_mut().and_then(|s| s.next()).flatten();
                let h = headers.as_mut().and_then(|s| s.next());
                let Some(addr) = addr else { continue };
                let (up, sent) = self.attempt(addr, st, t, matches!(h, Some(Some(_))));
                (last, backend_sent) = (Some((addr, up)), sent);
            }
        }
        let up = last.map_or(0, |(_, up)| up);
        self.responses.add(up, status);
        if let Some(ms) = fields.request_time().and_then(access::parse_seconds_millis) {
            self.response_seconds.observe_ms(up, ms);
        }
        Some(Counted {
            status,
            upstream: last,
            backend_sent,
        })
    }

    /// Count one upstream attempt: its address, status, response time, and
    /// whether a response header arrived. Returns the upstream's id, and
    /// whether the attempt's 5xx came from the backend itself.
    #[inline(always)]
    fn attempt(
        &mut self,
        addr: &[u8],
        status: Option<&[u8]>,
        time: Option<&[u8]>,
        header: bool,
    ) -> (u16, bool) {
        let up = self.upstreams.id(addr);
        let code = status
            .and_then(access::parse_status)
            .filter(|s| (100..600).contains(s))
            .unwrap_or(NO_STATUS);
        self.attempts.add(up, code);
        // A header time means the backend answered: its 5xx is its own, not
        // one nginx generated for a failed attempt.
        let backend_sent = code >= 500 && header;
        if backend_sent {
            self.backend_errors.add(up, code);
        }
        if let Some(ms) = time.and_then(access::parse_seconds_millis) {
            self.upstream_seconds.observe_ms(up, ms);
        }
        (up, backend_sent)
    }

    /// Count one error-log line; only upstream failures become series,
    /// and are returned for the caller's timeline.
    pub fn error_line<'a>(
        &mut self,
        text: &'a str,
        truncated: bool,
    ) -> Option<(ErrorLine<'a>, UpstreamFailure)> {
        self.error_lines += 1;
        // nginx cuts error lines itself (at 2048 bytes); a cut line still
        // carries the message, so it is classified, not rejected.
        let _ = truncated;
        let Some(parsed) = error_log::parse_error_line(text) else {
            return self.parse_error(ParseError::ErrorLayout);
        };
        let failure = error_log::classify(&parsed)?;
        let up = match parsed.upstream {
            Some(u) => self.upstreams.id(error_log::upstream_server(u).as_bytes()),
            None => 0,
        };
        *self
            .failures
            .entry((up, failure.reason, failure.phase))
            .or_default() += 1;
        Some((parsed, failure))
    }
}

/// `line.is_ascii()`: on x86-64 the high bits of 16 bytes at a time are
/// gathered with SSE2 and tested once at the end, with the last 16 bytes
/// (overlapping those before) loaded whole; elsewhere, and for lines under
/// 16 bytes, the standard library's.
#[inline]
fn is_ascii(line: &[u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if line.len() >= 16 {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128};
        let p = line.as_ptr();
        // SAFETY: SSE2 is part of x86-64; every load starts at most 16
        // bytes before the end of `line`.
        return unsafe {
            let load = |at: usize| _mm_loadu_si128(p.add(at) as *const __m128i);
            let mut acc = load(line.len() - 16);
            let mut at = 0;
            while at + 16 <= line.len() {
                acc = _mm_or_si128(acc, load(at));
                at += 16;
            }
            _mm_movemask_epi8(acc) == 0
        };
    }
    line.is_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nginx::access::Escape;

    const FMT: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time" uht="$upstream_header_time" urt="$upstream_response_time" ua="$upstream_addr" us="$upstream_status""#;

    fn line(status: u16, ua: &str, us: &str, uht: &str, urt: &str) -> String {
        format!(
            r#"127.0.0.1 - - [23/Nov/2026:04:20:01 +0000] "GET /x HTTP/1.1" {status} 5 "-" "curl/8" rt=0.012 uct="{uht}" uht="{uht}" urt="{urt}" ua="{ua}" us="{us}""#
        )
    }

    fn feed(c: &mut LogCounters, lines: &[String]) {
        let fmt = AccessFormat::compile(FMT, Escape::Default).unwrap();
        for l in lines {
            c.access_line(&fmt, l.as_bytes(), false, &mut AccessFields::default());
        }
    }

    #[test]
    fn same_bytes_is_equality() {
        let values: [&[u8]; 8] = [
            b"",
            b"a",
            b"10.0.0.7",
            b"10.0.0.8",
            b"127.0.0.1:8001",
            b"127.0.0.1:8002",
            b"unix:/run/gunicorn/api.sock",
            b"unix:/run/gunicorn/api.sick",
        ];
        for a in values {
            for b in values {
                assert_eq!(same_bytes(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    /// Past the few compared one by one, values are found by their hash:
    /// the same ids either way, and the cap still folds into `other`.
    #[test]
    fn upstream_ids_are_the_same_past_the_few() {
        let mut u = Upstreams::new(40);
        // Not UTF-8: its name differs from it, and the index finds it.
        let odd = u.id(b"10.0.0.\xff:80");
        assert_eq!((odd, u.id(b"10.0.0.\xff:80")), (2, 2));
        assert_eq!(u.name(odd), "10.0.0.\u{fffd}:80");
        let mut u = Upstreams::new(40);
        let name = |i: usize| format!("10.0.{i}.1:8000").into_bytes();
        let ids: Vec<u16> = (0..40).map(|i| u.id(&name(i))).collect();
        assert_eq!(ids, (2..42).collect::<Vec<u16>>());
        for i in (0..40).rev() {
            assert_eq!(u.id(&name(i)), ids[i], "{i}");
        }
        assert_eq!(u.id(b"10.9.9.9:80"), 1);
        assert_eq!(u.overflowed, 1);
        assert_eq!(u.name(ids[39]), "10.0.39.1:8000");
    }

    #[test]
    fn bucket_of_is_a_lower_bound() {
        let edges = BUCKETS_MS.iter().flat_map(|b| [b - 1, *b, b + 1]);
        let powers = (0..64).flat_map(|k| [(1u64 << k) - 1, 1 << k, (1 << k) + 1]);
        for ms in (0..5).chain(edges).chain(powers).chain([u64::MAX]) {
            assert_eq!(
                bucket_of(ms),
                BUCKETS_MS.partition_point(|b| *b < ms),
                "{ms}"
            );
        }
    }

    /// Values met again, in any order and past the slots of the recent
    /// ones, keep the id of their first meeting; short, long, and not UTF-8.
    #[test]
    fn recent_values_keep_their_ids() {
        let mut u = Upstreams::new(100);
        let values: Vec<Vec<u8>> = (0..40)
            .map(|i| match i % 4 {
                0 => format!("10.0.{i}.1:8000").into_bytes(),
                1 => format!("unix:/run/app{i}.sock").into_bytes(),
                2 => format!("h{i}").into_bytes(),
                _ => [b"10.1.1.\xff:".as_slice(), &[i as u8]].concat(),
            })
            .collect();
        let mut first_id = std::collections::HashMap::new();
        let mut x: u64 = 7;
        for _ in 0..2000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = &values[(x >> 33) as usize % values.len()];
            let next = first_id.len() as u16 + 2;
            let want = *first_id.entry(v.clone()).or_insert(next);
            assert_eq!(u.id(v), want, "{v:?}");
        }
        assert_eq!(first_id.len(), values.len());
    }

    /// An event names its upstream by the value itself: the interned name
    /// when the value has its own id, and the value when it folded into
    /// `other` past the cap.
    #[test]
    fn shared_name_is_the_value() {
        let mut u = Upstreams::new(1);
        let a = u.id(b"10.0.0.7:8000");
        let past_cap = u.id(b"10.0.0.8:8000");
        assert_eq!((a, past_cap), (2, 1));
        let shared = u.shared_name(a, b"10.0.0.7:8000");
        assert_eq!(&*shared, "10.0.0.7:8000");
        assert!(Arc::ptr_eq(&shared, &u.shared_name(a, b"10.0.0.7:8000")));
        assert_eq!(&*u.shared_name(past_cap, b"10.0.0.8:8000"), "10.0.0.8:8000");
        assert_eq!(&*u.shared_name(0, b"x"), "x");
    }

    #[test]
    fn is_ascii_agrees_with_the_standard_library() {
        for len in 0..40 {
            let mut line = vec![b'a'; len];
            assert!(is_ascii(&line));
            for at in 0..len {
                line[at] = 0x80 | (at as u8);
                assert_eq!(is_ascii(&line), line.is_ascii(), "len {len} at {at}");
                assert!(!is_ascii(&line));
                line[at] = b'a';
            }
        }
    }

    #[test]
    fn retry_that_succeeds_is_a_200_with_a_failed_attempt() {
        let mut c = LogCounters::new(8);
        feed(
            &mut c,
            &[line(
                200,
                "unix:/a.sock, 127.0.0.1:8001",
                "502, 200",
                "-, 0.010",
                "0.000, 0.010",
            )],
        );
        let a = c.upstreams.id(b"unix:/a.sock");
        let b = c.upstreams.id(b"127.0.0.1:8001");
        assert_eq!(c.responses.get(&(b, 200)), Some(&1));
        assert_eq!(c.responses.len(), 1);
        assert_eq!(c.attempts.get(&(a, 502)), Some(&1));
        assert_eq!(c.attempts.get(&(b, 200)), Some(&1));
        assert!(c.backend_errors.is_empty(), "nginx generated that 502");
    }

    #[test]
    fn backend_sent_502_is_kept_apart() {
        let mut c = LogCounters::new(8);
        feed(
            &mut c,
            &[line(502, "127.0.0.1:8001", "502", "0.004", "0.004")],
        );
        let b = c.upstreams.id(b"127.0.0.1:8001");
        assert_eq!(c.backend_errors.get(&(b, 502)), Some(&1));
        assert_eq!(c.responses.get(&(b, 502)), Some(&1));
    }

    #[test]
    fn no_upstream_and_groups() {
        let mut c = LogCounters::new(8);
        feed(
            &mut c,
            &[
                line(404, "-", "-", "-", "-"),
                line(
                    200,
                    "10.0.0.1:80 : 10.0.0.2:80",
                    "404 : 200",
                    "0.001 : 0.002",
                    "0.001 : 0.002",
                ),
            ],
        );
        assert_eq!(c.responses.get(&(0, 404)), Some(&1));
        let g2 = c.upstreams.id(b"10.0.0.2:80");
        assert_eq!(c.responses.get(&(g2, 200)), Some(&1));
        assert_eq!(c.attempts.values().sum::<u64>(), 2);
    }

    #[test]
    fn upstream_labels_are_capped() {
        let mut c = LogCounters::new(2);
        let lines: Vec<String> = (0..10)
            .map(|i| line(200, &format!("10.0.0.{i}:80"), "200", "0.001", "0.001"))
            .collect();
        feed(&mut c, &lines);
        assert_eq!(c.upstreams.names().count(), 4, "-, other and two upstreams");
        assert_eq!(c.upstreams.overflowed, 8);
        assert_eq!(c.responses.get(&(1, 200)), Some(&8));
    }

    #[test]
    fn bad_lines_count_as_parse_errors_only() {
        let mut c = LogCounters::new(8);
        let fmt = AccessFormat::compile(FMT, Escape::Default).unwrap();
        c.access_line(&fmt, b"garbage", false, &mut AccessFields::default());
        c.access_line(
            &fmt,
            b"\xff\xfe binary",
            false,
            &mut AccessFields::default(),
        );
        let l = line(200, "a:1", "200", "0.1", "0.1");
        c.access_line(&fmt, l.as_bytes(), true, &mut AccessFields::default());
        let bad = line(200, "a:1", "200", "0.1", "0.1").replace(" 200 5 ", " 2x0 5 ");
        c.access_line(&fmt, bad.as_bytes(), false, &mut AccessFields::default());
        assert!(c.responses.is_empty() && c.attempts.is_empty());
        assert_eq!(c.access_lines, 4);
        for e in [
            ParseError::FormatMismatch,
            ParseError::InvalidUtf8,
            ParseError::TooLong,
            ParseError::BadStatus,
        ] {
            assert_eq!(c.parse_errors.get(&e), Some(&1), "{e:?}");
        }
    }

    #[test]
    fn misaligned_upstream_lists_count_as_parse_errors_only() {
        let mut c = LogCounters::new(8);
        feed(
            &mut c,
            &[
                line(200, "a:1, b:2", "502", "-, 0.010", "0.000, 0.010"),
                line(200, "a:1", "2xx", "0.010", "0.010"),
            ],
        );
        assert_eq!(c.parse_errors.get(&ParseError::BadUpstreamList), Some(&2));
        assert!(c.responses.is_empty() && c.attempts.is_empty());
        assert_eq!(c.upstreams.names().count(), 2, "no label from either line");
    }

    #[test]
    fn error_log_fixture_classifies_into_failures() {
        let mut c = LogCounters::new(32);
        let text = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/nginx/error.log"
        ));
        for l in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            c.error_line(&String::from_utf8_lossy(l), false);
        }
        let by_reason = |r: Reason| -> u64 {
            c.failures
                .iter()
                .filter(|((_, rr, _), _)| *rr == r)
                .map(|(_, v)| v)
                .sum()
        };
        assert!(by_reason(Reason::SocketMissing) > 0);
        assert!(by_reason(Reason::ConnectionRefused) > 0);
        assert!(by_reason(Reason::Timeout) > 0);
        assert_eq!(c.parse_errors.get(&ParseError::ErrorLayout), None);
        // Unix-socket upstreams are labelled as $upstream_addr writes them.
        assert!(c.upstreams.names().any(|(_, n)| n.starts_with("unix:/")));
    }

    #[test]
    fn histogram_buckets() {
        let mut h = Histogram::default();
        for ms in [0, 5, 6, 1000, 70000] {
            h.observe_ms(ms);
        }
        let b = h.buckets();
        assert_eq!(b[0], (0.005, 2));
        assert_eq!(b[1], (0.01, 1));
        assert_eq!(b[7], (1.0, 1));
        assert_eq!(b.last().unwrap(), &(f64::INFINITY, 1));
        assert_eq!(b.iter().map(|(_, c)| c).sum::<u64>(), h.count);
        assert_eq!(h.sum_ms, 71011);
    }
}
