//! Parser for one `/dev/kmsg` record, i.e. what a single `read()` returns.
//!
//! See Documentation/ABI/testing/dev-kmsg in the kernel tree for the format:
//! `prio,seq,ts_usec,flags[,more];text\n[ KEY=value\n]...`

use std::borrow::Cow;

/// One kernel log record. `text` excludes the dictionary lines that follow it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'a> {
    pub facility: u8,
    pub level: u8,
    pub seq: u64,
    pub ts_usec: u64,
    /// Flags `c`: a fragment of a message split across records (older kernels).
    pub fragment: bool,
    /// Unescaped text; invalid UTF-8 is replaced lossily.
    pub text: Cow<'a, str>,
}

#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum RecordError {
    #[error("kmsg record has no ';' separating the header from the text")]
    MissingText,
    #[error("kmsg record header lacks the {0} field")]
    MissingField(&'static str),
    #[error("kmsg record has an invalid {field} field: {value:?}")]
    InvalidField { field: &'static str, value: String },
}

pub fn parse_record(buf: &[u8]) -> Result<Record<'_>, RecordError> {
    let semi = memchr::memchr(b';', buf).ok_or(RecordError::MissingText)?;
    let (header, rest) = (&buf[..semi], &buf[semi + 1..]);
    // The kernel escapes '\n' inside messages, so the first one ends the text;
    // anything after it is the dictionary (" SUBSYSTEM=..."), not the message.
    let text = memchr::memchr(b'\n', rest).map_or(rest, |nl| &rest[..nl]);

    let mut fields = header.split(|&b| b == b',');
    let mut next = |name| fields.next().ok_or(RecordError::MissingField(name));
    let prio_field = next("prio")?;
    let prio: u32 = parse_dec(prio_field, "prio")?;
    let seq = parse_dec(next("seq")?, "seq")?;
    let ts_usec = parse_dec(next("ts_usec")?, "ts_usec")?;
    let flags = next("flags")?;
    if flags.is_empty() {
        return Err(invalid("flags", flags));
    }
    // Further fields (e.g. `caller=T123`) are optional and not needed here.

    let facility = u8::try_from(prio >> 3).map_err(|_| invalid("prio", prio_field))?;
    Ok(Record {
        facility,
        level: (prio & 7) as u8,
        seq,
        ts_usec,
        fragment: flags.contains(&b'c'),
        text: unescape_bytes(text),
    })
}

/// The records of a capture of /dev/kmsg (what `cat /dev/kmsg` writes):
/// each record is its header line plus the dictionary lines after it, which
/// start with a space. Each item is what one `read()` of the device returns.
pub fn capture_records(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = 0;
        loop {
            end += memchr::memchr(b'\n', &rest[end..]).map_or(rest.len() - end, |i| i + 1);
            if end >= rest.len() || rest[end] != b' ' {
                break;
            }
        }
        let (rec, tail) = rest.split_at(end);
        rest = tail;
        Some(rec)
    })
}

/// Decodes the kernel's `\xNN` escapes (used for control bytes, bytes >= 0x7f
/// and the backslash itself). A backslash not followed by two hex digits is
/// kept verbatim rather than rejected, since the text is still useful.
pub fn unescape(s: &str) -> Cow<'_, str> {
    unescape_bytes(s.as_bytes())
}

fn unescape_bytes(s: &[u8]) -> Cow<'_, str> {
    let Some(first) = memchr::memchr(b'\\', s) else {
        return String::from_utf8_lossy(s);
    };
    let mut out = Vec::with_capacity(s.len());
    out.extend_from_slice(&s[..first]);
    let mut i = first;
    while i < s.len() {
        if let [b'\\', b'x', hi, lo, ..] = s[i..] {
            if let (Some(hi), Some(lo)) = (hex(hi), hex(lo)) {
                out.push(hi << 4 | lo);
                i += 4;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    // Escaped bytes may form multi-byte UTF-8 sequences (e.g. `\xc3\xa9`), so
    // decode only after all escapes are resolved.
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Strict decimal: `str::parse` would also accept a leading `+`.
fn parse_dec<T: TryFrom<u64>>(s: &[u8], field: &'static str) -> Result<T, RecordError> {
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return Err(invalid(field, s));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or_else(|| invalid(field, s))?;
    }
    if s.is_empty() {
        return Err(invalid(field, s));
    }
    T::try_from(n).map_err(|_| invalid(field, s))
}

fn invalid(field: &'static str, value: &[u8]) -> RecordError {
    RecordError::InvalidField {
        field,
        value: String::from_utf8_lossy(value).into_owned(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The real kills captured on 6.18, and the hand-built kernel formats.
    pub(crate) const CAPTURED: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/kernel/kmsg_memcg_oom_6.18.txt"
    ));
    pub(crate) const OOM_HAND: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/kernel/oom_lines_hand.txt"
    ));

    /// Splits a fixture (one record per line, dictionary lines start with a
    /// space) back into the byte strings individual `read()`s would return.
    pub(crate) fn fixture_records(file: &str) -> Vec<String> {
        capture_records(file.as_bytes())
            .map(|r| String::from_utf8(r.to_vec()).unwrap())
            .collect()
    }

    const RECORDS_HAND: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/kernel/kmsg_records_hand.txt"
    ));

    #[test]
    fn every_captured_record_parses_in_sequence() {
        let recs = fixture_records(CAPTURED);
        assert_eq!(recs.len(), 238);
        let mut prev: Option<Record> = None;
        for r in &recs {
            let rec = parse_record(r.as_bytes()).unwrap();
            assert_eq!(rec.facility, 0, "kernel facility: {r}");
            if let Some(p) = prev {
                assert_eq!(rec.seq, p.seq + 1);
                assert!(rec.ts_usec >= p.ts_usec);
            }
            assert!(!rec.fragment);
            prev = Some(rec);
        }
    }

    #[test]
    fn captured_kill_record() {
        let line = "3,424,185536381,-;Memory cgroup out of memory: Killed process 7418 (python3) total-vm:75160kB, anon-rss:65280kB, file-rss:6636kB, shmem-rss:0kB, UID:0 pgtables:188kB oom_score_adj:0\n";
        assert!(CAPTURED.contains(line));
        let rec = parse_record(line.as_bytes()).unwrap();
        assert_eq!(
            (rec.facility, rec.level, rec.seq, rec.ts_usec),
            (0, 3, 424, 185536381)
        );
        assert!(
            matches!(rec.text, Cow::Borrowed(_)),
            "no escapes, no allocation"
        );
        assert_eq!(rec.text, &line[18..line.len() - 1]);
    }

    #[test]
    fn captured_escaped_comm_is_decoded_as_utf8() {
        let line = r"4,504,185763257,-;bgw\x5cx\xc3\xa9 z invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0";
        assert!(CAPTURED.contains(line));
        let rec = parse_record(line.as_bytes()).unwrap();
        assert_eq!(
            rec.text,
            "bgw\\xé z invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0"
        );
    }

    #[test]
    fn hand_records() {
        let recs = fixture_records(RECORDS_HAND);
        let parsed: Vec<_> = recs.iter().map(|r| parse_record(r.as_bytes())).collect();
        let ok = |i: usize| parsed[i].as_ref().unwrap();

        // Dictionary lines are not part of the text.
        assert_eq!(
            ok(0).text,
            "usb 1-1: new high-speed USB device number 2 using xhci_hcd"
        );
        assert_eq!((ok(0).facility, ok(0).level), (0, 6));
        // caller= and unknown extra header fields are ignored.
        assert_eq!(ok(1).text, "Out of memory: Killed process 42 (a) total-vm:1kB, anon-rss:2kB, file-rss:3kB, shmem-rss:4kB, UID:5 pgtables:6kB oom_score_adj:7");
        assert_eq!(ok(1).seq, 18446744073709551615);
        assert_eq!(ok(2).text, "fragment of text");
        assert!(ok(2).fragment);
        assert!(!ok(3).fragment, "'+' is a continuation, not a 'c' fragment");
        assert_eq!(ok(4).text, "Web Content\\ (x)\ny");
        // Userspace writes to /dev/kmsg may carry a non-kernel facility.
        assert_eq!((ok(5).facility, ok(5).level), (3, 6));
        assert_eq!(ok(6).text, "");

        let err = |i: usize| parsed[i].clone().unwrap_err();
        assert_eq!(err(7), RecordError::MissingText);
        assert_eq!(err(8), RecordError::MissingField("flags"));
        assert_eq!(
            err(9),
            RecordError::InvalidField {
                field: "seq",
                value: "+5".into()
            }
        );
        assert_eq!(
            err(10),
            RecordError::InvalidField {
                field: "ts_usec",
                value: "99999999999999999999".into()
            }
        );
        assert_eq!(
            err(11),
            RecordError::InvalidField {
                field: "prio",
                value: "".into()
            }
        );
        assert_eq!(
            err(12),
            RecordError::InvalidField {
                field: "flags",
                value: "".into()
            }
        );
        assert_eq!(parsed.len(), 13);
        assert_eq!(
            err(9).to_string(),
            "kmsg record has an invalid seq field: \"+5\""
        );
    }

    #[test]
    fn unescape_edge_cases() {
        assert!(matches!(unescape("plain"), Cow::Borrowed("plain")));
        assert_eq!(unescape(r"a\x20b"), "a b");
        assert_eq!(unescape(r"\x5c\x5C"), "\\\\");
        assert_eq!(unescape(r"bad\xZZ \x4"), r"bad\xZZ \x4");
        assert_eq!(unescape(r"trailing\"), r"trailing\");
        assert_eq!(unescape(r"\xff\xfe"), "\u{fffd}\u{fffd}");
        assert_eq!(unescape(r"\xe2\x82\xac"), "€");
    }

    #[test]
    fn invalid_utf8_text_is_lossy() {
        let rec = parse_record(b"6,1,2,-;a\xffb\n").unwrap();
        assert_eq!(rec.text, "a\u{fffd}b");
    }

    /// The kernel's escaping (printk's `msg_add_ext_text`), for round trips.
    pub(crate) fn kernel_escape(s: &[u8]) -> String {
        s.iter()
            .map(|&c| match c {
                b'\\' | 0..=0x1f | 0x7f.. => format!("\\x{c:02x}"),
                _ => char::from(c).to_string(),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn parse_record_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_record(&buf);
        }

        #[test]
        fn parse_record_never_panics_on_plausible(s in "[0-9,;c+\\-x\\\\ a-f\n]{0,60}") {
            let _ = parse_record(s.as_bytes());
        }

        #[test]
        fn escape_round_trips(text in "\\PC{0,40}", seq in any::<u64>(), prio in 0u32..2048) {
            let line = format!("{prio},{seq},7,-,caller=T1;{}\n SUBSYSTEM=x\n", kernel_escape(text.as_bytes()));
            let rec = parse_record(line.as_bytes()).unwrap();
            prop_assert_eq!(rec.text, text);
            prop_assert_eq!(rec.seq, seq);
            prop_assert_eq!(u32::from(rec.facility) << 3 | u32::from(rec.level), prio);
        }
    }
}
