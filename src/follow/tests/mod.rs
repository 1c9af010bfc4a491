//! Tests for the follower. `model` is the model-based property test,
//! `realtime` the threaded writer test; unit tests are here.

mod model;
mod realtime;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::reader::LineBuf;
use super::{FollowConfig, Follower, Line, PollStats, StartAt};

type Got = Vec<(Vec<u8>, bool)>;

fn feed_all(lb: &mut LineBuf, chunks: &[&[u8]]) -> (Got, PollStats) {
    let mut got = Vec::new();
    let mut stats = PollStats::default();
    for c in chunks {
        lb.feed(c, &mut stats, &mut |l: Line<'_>| {
            got.push((l.bytes.to_vec(), l.truncated))
        });
    }
    (got, stats)
}

fn poll_at(f: &mut Follower, now: Instant) -> (Vec<String>, PollStats) {
    let mut got = Vec::new();
    let stats = f
        .poll_at(now, &mut |l: Line<'_>| {
            got.push(String::from_utf8_lossy(l.bytes).into_owned())
        })
        .expect("poll");
    (got, stats)
}

fn append(path: &Path, data: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(data.as_bytes()).expect("write");
}

fn cfg(start: StartAt) -> FollowConfig {
    FollowConfig {
        max_line_bytes: 64,
        start,
        rotate_grace: Duration::from_secs(5),
    }
}

#[test]
fn partial_line_across_feeds() {
    let mut lb = LineBuf::new(100);
    let (got, st) = feed_all(&mut lb, &[b"ab", b"c\nde", b"f", b"\n\n"]);
    assert_eq!(
        got,
        vec![
            (b"abc".to_vec(), false),
            (b"def".to_vec(), false),
            (vec![], false)
        ]
    );
    assert_eq!(st.lines, 3);
    assert_eq!(lb.pending(), 0);
}

#[test]
fn crlf_binary_and_empty_lines_pass_through() {
    let mut lb = LineBuf::new(100);
    let (got, _) = feed_all(&mut lb, &[b"a\r\n\n\xff\x00\xfe\n\r\n"]);
    assert_eq!(
        got,
        vec![
            (b"a\r".to_vec(), false),
            (vec![], false),
            (b"\xff\x00\xfe".to_vec(), false),
            (b"\r".to_vec(), false),
        ]
    );
}

#[test]
fn long_line_cap() {
    let mut lb = LineBuf::new(4);
    // Exactly the cap: not truncated, in one chunk and split.
    let (got, _) = feed_all(&mut lb, &[b"abcd\nab", b"cd", b"\n"]);
    assert_eq!(
        got,
        vec![(b"abcd".to_vec(), false), (b"abcd".to_vec(), false)]
    );
    // One over, in one chunk.
    let (got, st) = feed_all(&mut lb, &[b"abcde\nx\n"]);
    assert_eq!(got, vec![(b"abcd".to_vec(), true), (b"x".to_vec(), false)]);
    assert_eq!((st.lines, st.truncated_lines), (2, 1));
    // Very long, across many chunks: delivered once, early, rest discarded,
    // and the buffer never grows past the cap.
    let (got, _) = feed_all(&mut lb, &[b"ab", b"cdef", b"ghij", b"kl"]);
    assert_eq!(got, vec![(b"abcd".to_vec(), true)]);
    assert_eq!(lb.pending(), 0);
    let (got, _) = feed_all(&mut lb, &[b"mn\nok\n"]);
    assert_eq!(got, vec![(b"ok".to_vec(), false)]);
}

/// Reference: split the whole input at '\n', cut each line at `max`.
fn reference(input: &[u8], max: usize) -> Got {
    let mut out = Vec::new();
    let mut rest = input;
    while let Some(p) = rest.iter().position(|&b| b == b'\n') {
        let l = &rest[..p];
        out.push((l[..l.len().min(max)].to_vec(), l.len() > max));
        rest = &rest[p + 1..];
    }
    // An unfinished over-long line is delivered truncated right away.
    if rest.len() > max {
        out.push((rest[..max].to_vec(), true));
    }
    out
}

proptest! {
    #[test]
    fn linebuf_matches_reference(
        input in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>(), Just(b'a')], 0..300),
        cuts in proptest::collection::vec(0usize..300, 0..10),
        max in 1usize..20,
    ) {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
        cuts.push(0);
        cuts.push(input.len());
        cuts.sort_unstable();
        let chunks: Vec<&[u8]> = cuts.windows(2).map(|w| &input[w[0]..w[1]]).collect();
        let mut lb = LineBuf::new(max);
        let (got, st) = feed_all(&mut lb, &chunks);
        prop_assert!(lb.pending() <= max);
        prop_assert_eq!(st.lines as usize, got.len());
        prop_assert_eq!(got, reference(&input, max));
    }
}

#[test]
fn missing_at_start_then_created_is_read_from_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("access.log");
    let t0 = Instant::now();
    let mut f = Follower::new(&path, cfg(StartAt::End));
    assert_eq!(poll_at(&mut f, t0).0, Vec::<String>::new());
    append(&path, "one\ntwo\n");
    let (got, st) = poll_at(&mut f, t0);
    assert_eq!(got, ["one", "two"]);
    assert_eq!(st.rotations, 0, "first appearance is not a rotation");
}

#[test]
fn start_at_end_skips_existing_but_keeps_unfinished_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("access.log");
    append(&path, "old1\nold2\nhalf-");
    let t0 = Instant::now();
    let mut f = Follower::new(&path, cfg(StartAt::End));
    append(&path, "line\nnew\n");
    assert_eq!(poll_at(&mut f, t0).0, ["half-line", "new"]);

    // Unfinished line longer than the cap: start at the end, drop the rest.
    let path2 = dir.path().join("error.log");
    append(&path2, &format!("old\n{}", "x".repeat(100)));
    let mut f = Follower::new(&path2, cfg(StartAt::End));
    append(&path2, "yyy\nnew\n");
    assert_eq!(poll_at(&mut f, t0).0, ["new"]);

    let mut f = Follower::new(&path2, cfg(StartAt::Beginning));
    let mut got = Vec::new();
    f.poll_at(t0, &mut |l: Line<'_>| {
        got.push((l.bytes.len(), l.truncated))
    })
    .expect("poll");
    assert_eq!(got, [(3, false), (64, true), (3, false)]);
}

#[test]
fn partial_line_across_polls_and_lag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("access.log");
    append(&path, "");
    let t0 = Instant::now();
    let mut f = Follower::new(&path, cfg(StartAt::Beginning)).with_read_buf(3);
    append(&path, "abc");
    assert!(poll_at(&mut f, t0).0.is_empty());
    append(&path, "def\ng");
    assert_eq!(f.lag_bytes(), 5);
    assert_eq!(poll_at(&mut f, t0).0, ["abcdef"]);
    assert_eq!(f.lag_bytes(), 0);
    append(&path, "\n");
    assert_eq!(poll_at(&mut f, t0).0, ["g"]);
}

#[test]
fn rename_create_drains_old_until_quiet_for_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("access.log");
    append(&path, "a1\n");
    let t0 = Instant::now();
    let mut f = Follower::new(&path, cfg(StartAt::Beginning));
    assert_eq!(poll_at(&mut f, t0).0, ["a1"]);

    let mut writer = OpenOptions::new().append(true).open(&path).expect("open");
    fs::rename(&path, dir.path().join("access.log.1")).expect("rename");
    File::create(&path).expect("create");
    writer.write_all(b"a2\n").expect("write");
    let (got, st) = poll_at(&mut f, t0);
    assert_eq!(got, ["a2"]);
    assert_eq!(st.rotations, 1);
    assert_eq!(f.held_files(), 2);

    // Old file still growing: not closed even after the grace period.
    let t1 = t0 + Duration::from_secs(4);
    writer.write_all(b"a3\n").expect("write");
    assert_eq!(poll_at(&mut f, t1).0, ["a3"]);
    let t2 = t1 + Duration::from_secs(4);
    assert!(poll_at(&mut f, t2).0.is_empty());
    assert_eq!(f.held_files(), 2, "quiet for 4s < 5s grace");
    // "nginx reopens": new lines go to the new file.
    writer = OpenOptions::new().append(true).open(&path).expect("open");
    writer.write_all(b"b1\n").expect("write");
    let t3 = t1 + Duration::from_secs(5);
    assert_eq!(poll_at(&mut f, t3).0, ["b1"]);
    assert_eq!(f.held_files(), 1, "old file closed after grace");
}

#[test]
fn deleted_file_is_drained_and_kept_while_path_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("access.log");
    append(&path, "");
    let t0 = Instant::now();
    let mut f = Follower::new(&path, cfg(StartAt::Beginning));
    let mut writer = OpenOptions::new().append(true).open(&path).expect("open");
    poll_at(&mut f, t0);
    fs::remove_file(&path).expect("rm");
    writer.write_all(b"x1\n").expect("write");
    assert_eq!(poll_at(&mut f, t0).0, ["x1"]);
    // Long past the grace, but no new file exists: keep the fd.
    let t1 = t0 + Duration::from_secs(60);
    assert!(poll_at(&mut f, t1).0.is_empty());
    assert_eq!(f.held_files(), 1);
    writer.write_all(b"x2\n").expect("write");
    append(&path, "y1\n");
    let (got, st) = poll_at(&mut f, t1);
    assert_eq!(got, ["x2", "y1"]);
    assert_eq!(st.rotations, 1);
}

#[test]
fn copytruncate_detected_by_size_and_by_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("access.log");
    append(&path, "");
    let t0 = Instant::now();
    let mut f = Follower::new(&path, cfg(StartAt::Beginning));
    append(&path, "line-1\nline-2\n");
    assert_eq!(poll_at(&mut f, t0).0, ["line-1", "line-2"]);
    // Shrunk: size < offset.
    File::create(&path).expect("truncate");
    append(&path, "line-3\n");
    let (got, st) = poll_at(&mut f, t0);
    assert_eq!((got, st.truncations), (vec!["line-3".to_string()], 1));
    // Truncated and rewritten past our offset before we looked: the bytes
    // before our offset changed, which appends never do.
    File::create(&path).expect("truncate");
    append(&path, "line-4\nline-5\nline-6\n");
    let (got, st) = poll_at(&mut f, t0);
    assert_eq!(got, ["line-4", "line-5", "line-6"]);
    assert_eq!(st.truncations, 1);
}
