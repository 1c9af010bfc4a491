//! Model-based property test (in the spirit of vector's file-source tests).
//!
//! Random operation sequences are applied to a real temp dir while a simple
//! model records, for every line written, whether the follower MUST deliver
//! it, MAY lose it (inherent to the scenario), or must NEVER deliver it
//! (before the start position). The model is deliberately conservative and
//! does not mirror the follower's algorithm; it only encodes the contract:
//!
//! - a file rotated away before any poll saw it at the path: never opened,
//!   its lines may be lost (inherent to polling);
//! - a line completed in a rotated-away file after the grace period elapsed
//!   since the rotation may be lost (the writer was too slow to reopen);
//! - copytruncate loses the lines written since the last poll.
//!
//! Everything else must be delivered exactly once, uncorrupted. Time only
//! moves through `AdvanceTimePastGrace`, via the injected clock.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::super::{FollowConfig, Follower, Line, StartAt};

#[derive(Clone, Debug)]
enum Op {
    /// Complete a pending partial line, write `n` lines, optionally leave the
    /// first half of another one unfinished.
    Write {
        n: usize,
        partial: bool,
    },
    /// logrotate default: rename away, create a new empty file.
    RenameAndCreate,
    /// Rename away, path stays missing for a while.
    Rename,
    /// nginx SIGUSR1: the writer switches to the file at the path (creating
    /// it if missing, as nginx does).
    ReopenWriter,
    /// logrotate copytruncate; `poll_first` makes exact counting possible.
    CopyTruncate {
        poll_first: bool,
    },
    DeleteAndRecreate,
    Delete,
    Create,
    Poll,
    AdvanceTimePastGrace,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..5, any::<bool>()).prop_map(|(n, partial)| Op::Write { n, partial }),
        4 => Just(Op::Poll),
        2 => Just(Op::RenameAndCreate),
        1 => Just(Op::Rename),
        2 => Just(Op::ReopenWriter),
        2 => any::<bool>().prop_map(|poll_first| Op::CopyTruncate { poll_first }),
        1 => Just(Op::DeleteAndRecreate),
        1 => Just(Op::Delete),
        1 => Just(Op::Create),
        2 => Just(Op::AdvanceTimePastGrace),
    ]
}

#[derive(Clone, Debug)]
enum Init {
    Missing,
    Existing {
        start: StartAt,
        pre_lines: usize,
        pre_partial: bool,
    },
}

fn init() -> impl Strategy<Value = Init> {
    prop_oneof![
        Just(Init::Missing),
        (any::<bool>(), 0usize..4, any::<bool>()).prop_map(|(end, pre_lines, pre_partial)| {
            Init::Existing {
                start: if end {
                    StartAt::End
                } else {
                    StartAt::Beginning
                },
                pre_lines,
                pre_partial,
            }
        }),
    ]
}

/// Unique, varied-length content; the id is recoverable and the whole line
/// is checked, so joins, splits and corruption are all detected.
fn content(id: usize) -> String {
    format!("line-{id:06}-{}", "x".repeat(id * 13 % 37))
}

struct MFile {
    /// No longer at the path (renamed or deleted); never comes back.
    detached: bool,
    /// A poll ran while this file was at the path.
    seen: bool,
    /// The grace period elapsed at some point after detaching.
    late: bool,
    /// Lines completed since the last poll.
    unpolled: Vec<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    Must,
    May,
    Never,
}

struct Harness {
    dir: tempfile::TempDir,
    path: PathBuf,
    files: Vec<MFile>,
    at_path: Option<usize>,
    writer: Option<(File, usize)>,
    partial: Option<usize>,
    /// Per line id: file index and expectation.
    lines: Vec<(usize, Expect)>,
    delivered: Vec<u32>,
    follower: Follower,
    now: Instant,
    grace: Duration,
    names: usize,
}

impl Harness {
    fn new(init: &Init, read_buf: usize) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let grace = Duration::from_secs(5);
        let mut start = StartAt::Beginning;
        let mut h_files = Vec::new();
        let mut lines = Vec::new();
        let mut writer = None;
        let mut partial = None;
        let mut at_path = None;
        if let Init::Existing {
            start: s,
            pre_lines,
            pre_partial,
        } = *init
        {
            start = s;
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .expect("create");
            let pre = if s == StartAt::End {
                Expect::Never
            } else {
                Expect::Must
            };
            for _ in 0..pre_lines {
                let id = lines.len();
                lines.push((0, pre));
                f.write_all(format!("{}\n", content(id)).as_bytes())
                    .expect("write");
            }
            if pre_partial {
                // With StartAt::End the follower must back up to the start of
                // this unfinished line, so it is a Must either way.
                let id = lines.len();
                lines.push((0, Expect::Must));
                let c = content(id);
                f.write_all(&c.as_bytes()[..c.len() / 2]).expect("write");
                partial = Some(id);
            }
            h_files.push(MFile {
                detached: false,
                // StartAt::End opens the file in `new`.
                seen: s == StartAt::End,
                late: false,
                // Not read until the first poll (copytruncate may eat them).
                unpolled: (0..pre_lines).collect(),
            });
            at_path = Some(0);
            writer = Some((f, 0));
        }
        let follower = Follower::new(
            &path,
            FollowConfig {
                max_line_bytes: 4096,
                start,
                rotate_grace: grace,
            },
        )
        .with_read_buf(read_buf);
        let n = lines.len();
        Harness {
            dir,
            path,
            files: h_files,
            at_path,
            writer,
            partial,
            lines,
            delivered: vec![0; n],
            follower,
            now: Instant::now(),
            grace,
            names: 0,
        }
    }

    fn new_line(&mut self, file: usize) -> usize {
        self.lines.push((file, Expect::Must));
        self.delivered.push(0);
        self.lines.len() - 1
    }

    /// The line's last byte (its '\n') has been written.
    fn finish_line(&mut self, id: usize) {
        let f = self.lines[id].0;
        if self.files[f].late {
            self.lines[id].1 = Expect::May;
        }
        self.files[f].unpolled.push(id);
    }

    fn complete_partial(&mut self) {
        if let (Some(id), Some((w, _))) = (self.partial.take(), self.writer.as_mut()) {
            let c = content(id);
            w.write_all(format!("{}\n", &c[c.len() / 2..]).as_bytes())
                .expect("write");
            self.finish_line(id);
        }
    }

    fn create_at_path(&mut self) {
        if self.at_path.is_some() {
            return;
        }
        File::create(&self.path).expect("create");
        self.files.push(MFile {
            detached: false,
            seen: false,
            late: false,
            unpolled: Vec::new(),
        });
        self.at_path = Some(self.files.len() - 1);
    }

    fn detach(&mut self, rename: bool) {
        if let Some(f) = self.at_path.take() {
            if rename {
                self.names += 1;
                let to = self.dir.path().join(format!("access.log.{}", self.names));
                fs::rename(&self.path, to).expect("rename");
            } else {
                fs::remove_file(&self.path).expect("remove");
            }
            self.files[f].detached = true;
        }
    }

    fn poll(&mut self) {
        let delivered = &mut self.delivered;
        let mut bad = Vec::new();
        self.follower
            .poll_at(self.now, &mut |l: Line<'_>| {
                let id = std::str::from_utf8(l.bytes)
                    .ok()
                    .and_then(|s| s.get(5..11))
                    .and_then(|s| s.parse::<usize>().ok());
                match id {
                    Some(id)
                        if !l.truncated
                            && id < delivered.len()
                            && l.bytes == content(id).as_bytes() =>
                    {
                        delivered[id] += 1
                    }
                    _ => bad.push(String::from_utf8_lossy(l.bytes).into_owned()),
                }
            })
            .expect("poll");
        assert!(bad.is_empty(), "corrupted lines delivered: {bad:?}");
        if let Some(f) = self.at_path {
            self.files[f].seen = true;
        }
        for f in &mut self.files {
            f.unpolled.clear();
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Write { n, partial } => {
                let Some(file) = self.writer.as_ref().map(|w| w.1) else {
                    return;
                };
                self.complete_partial();
                for _ in 0..n {
                    let id = self.new_line(file);
                    let w = &mut self.writer.as_mut().expect("writer").0;
                    w.write_all(format!("{}\n", content(id)).as_bytes())
                        .expect("write");
                    self.finish_line(id);
                }
                if partial {
                    let id = self.new_line(file);
                    let c = content(id);
                    let w = &mut self.writer.as_mut().expect("writer").0;
                    w.write_all(&c.as_bytes()[..c.len() / 2]).expect("write");
                    self.partial = Some(id);
                }
            }
            Op::RenameAndCreate => {
                self.detach(true);
                self.create_at_path();
            }
            Op::Rename => self.detach(true),
            Op::ReopenWriter => {
                // A line is never split across files: finish it first, as
                // nginx writes whole lines to the fd it holds.
                self.complete_partial();
                self.create_at_path();
                let f = OpenOptions::new()
                    .append(true)
                    .open(&self.path)
                    .expect("reopen");
                self.writer = Some((f, self.at_path.expect("at path")));
            }
            Op::CopyTruncate { poll_first } => {
                let Some(f) = self.at_path else { return };
                self.complete_partial();
                if poll_first {
                    self.poll();
                }
                self.names += 1;
                let copy = self.dir.path().join(format!("access.log.{}", self.names));
                fs::copy(&self.path, copy).expect("copy");
                OpenOptions::new()
                    .write(true)
                    .open(&self.path)
                    .and_then(|t| t.set_len(0))
                    .expect("truncate");
                for id in std::mem::take(&mut self.files[f].unpolled) {
                    self.lines[id].1 = Expect::May;
                }
            }
            Op::DeleteAndRecreate => {
                self.detach(false);
                self.create_at_path();
            }
            Op::Delete => self.detach(false),
            Op::Create => self.create_at_path(),
            Op::Poll => self.poll(),
            Op::AdvanceTimePastGrace => {
                self.now += self.grace + Duration::from_millis(1);
                for f in &mut self.files {
                    if f.detached {
                        f.late = true;
                    }
                }
            }
        }
    }

    fn finish_and_check(&mut self) -> Result<(), TestCaseError> {
        self.complete_partial();
        self.poll();
        self.poll();
        for (id, &(file, exp)) in self.lines.iter().enumerate() {
            let f = &self.files[file];
            let exp = if exp == Expect::Must && f.detached && !f.seen {
                Expect::May
            } else {
                exp
            };
            let n = self.delivered[id];
            match exp {
                Expect::Must => {
                    prop_assert_eq!(n, 1, "line {} (file {}) must be delivered once", id, file)
                }
                Expect::May => prop_assert!(n <= 1, "line {} delivered {} times", id, n),
                Expect::Never => prop_assert_eq!(n, 0, "line {} predates StartAt::End", id),
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    #[test]
    fn follower_matches_model(
        init in init(),
        ops in proptest::collection::vec(op(), 1..40),
        read_buf in prop_oneof![Just(7usize), Just(64), Just(65536)],
    ) {
        let mut h = Harness::new(&init, read_buf);
        for op in &ops {
            h.apply(op);
        }
        h.finish_and_check()?;
    }
}

/// Exact accounting when every copytruncate is preceded by a poll and the
/// writer always reopens before the grace period: nothing at all may be lost.
#[test]
fn no_loss_with_prompt_polls() {
    use proptest::test_runner::{Config, TestRunner};
    let ops = prop_oneof![
        (0usize..5, any::<bool>()).prop_map(|(n, partial)| Op::Write { n, partial }),
        Just(Op::Poll),
        Just(Op::RenameAndCreate),
        Just(Op::ReopenWriter),
        Just(Op::CopyTruncate { poll_first: true }),
        Just(Op::DeleteAndRecreate),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 256,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(ops, 1..40), |ops| {
            let init = Init::Existing {
                start: StartAt::End,
                pre_lines: 1,
                pre_partial: false,
            };
            let mut h = Harness::new(&init, 64);
            for op in &ops {
                // Poll after every rotation, like a timer much faster than
                // the rotation rate would: then no file goes unseen.
                h.apply(op);
                if matches!(
                    op,
                    Op::RenameAndCreate | Op::DeleteAndRecreate | Op::ReopenWriter
                ) {
                    h.poll();
                }
            }
            h.finish_and_check()?;
            let may = h.lines.iter().filter(|l| l.1 == Expect::May).count();
            prop_assert_eq!(may, 0);
            Ok(())
        })
        .expect("property");
}
