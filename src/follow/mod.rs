//! Log file follower: `tail -F` done right, driven by polling.
//!
//! Split like vector's file-source:
//! - [`fingerprint`]: what "the same file" means (`st_dev`, `st_ino`);
//! - [`watcher`]: `stat` the path and decide what happened to it;
//! - [`reader`]: one open file, its offset, truncation detection and line
//!   splitting with a length cap;
//! - this file: the [`Follower`] state machine tying them together.
//!
//! Rotation handling, per poll:
//! 1. drain every file we still hold from earlier rotations (the writer, e.g.
//!    nginx, keeps writing to the old inode until it reopens on SIGUSR1);
//! 2. drain the current file, checking it for truncation (copytruncate) first;
//! 3. `stat` the path: if it now names a different inode, the current file
//!    joins the draining set and the new file is opened and read from its
//!    START (it is new, so everything in it is unread); if the path is gone,
//!    the current file joins the draining set and we wait for a new one;
//! 4. close draining files that have been quiet for `rotate_grace` while a
//!    new file exists at the path.
//!
//! Draining before `stat`-ing the path means the old file is read as late as
//! possible before it is demoted, which minimises what a copytruncate or a
//! slow writer can cost us.

mod fingerprint;
mod reader;
mod watcher;

#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use self::fingerprint::FileId;
use self::reader::Reader;
use self::watcher::{Event, PathState};

/// Where to start reading the file that exists when the follower is created.
/// Files that appear later (rotation, late creation) are always read from
/// their start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// Like `tail -F`: skip what is already there.
    End,
    /// Read the existing content too (tests, backfill).
    Beginning,
}

#[derive(Clone, Debug)]
pub struct FollowConfig {
    /// Longer lines are delivered cut to this length with `truncated: true`;
    /// the rest up to the newline is dropped. Also bounds per-file memory.
    pub max_line_bytes: usize,
    pub start: StartAt,
    /// How long a rotated-away file must be quiet (with a new file present at
    /// the path) before we stop draining it.
    pub rotate_grace: Duration,
}

impl Default for FollowConfig {
    fn default() -> Self {
        FollowConfig {
            max_line_bytes: 16 * 1024,
            start: StartAt::End,
            rotate_grace: Duration::from_secs(5),
        }
    }
}

/// Counters for one poll (or cumulative, see [`Follower::totals`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollStats {
    /// Lines delivered (including truncated ones).
    pub lines: u64,
    /// Bytes consumed from files.
    pub bytes: u64,
    /// The path started naming a different file (rename+create,
    /// delete+recreate). The first appearance of a missing file is not one.
    pub rotations: u64,
    /// A held file shrank or was rewritten under us (copytruncate).
    pub truncations: u64,
    /// Lines delivered with `truncated: true`.
    pub truncated_lines: u64,
}

impl PollStats {
    fn add(&mut self, o: &PollStats) {
        self.lines += o.lines;
        self.bytes += o.bytes;
        self.rotations += o.rotations;
        self.truncations += o.truncations;
        self.truncated_lines += o.truncated_lines;
    }
}

/// One complete line, borrowed from the follower's buffers for the duration of
/// the callback. Bytes are passed through untouched (no UTF-8 check, a `\r`
/// before the `\n` is kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// The line without its terminating `\n`.
    pub bytes: &'a [u8],
    /// The line was longer than `max_line_bytes` and has been cut.
    pub truncated: bool,
}

/// Size of the reusable read buffer shared by all files of a follower.
const READ_BUF_BYTES: usize = 64 * 1024;

/// A file the path no longer names, still read until quiet.
struct Draining {
    reader: Reader,
    last_growth: Instant,
    /// Read without error in the current poll (only then may it be closed:
    /// a failed read says nothing about quietness).
    read_ok: bool,
}

pub struct Follower {
    path: PathBuf,
    cfg: FollowConfig,
    /// The file the path named when we last looked.
    current: Option<Reader>,
    /// Files rotated away (renamed or deleted) that the writer may still
    /// append to.
    draining: Vec<Draining>,
    buf: Vec<u8>,
    /// Whether we have ever held a file; a later new file is then a rotation.
    seen_any: bool,
    /// `StartAt::End` for a file that existed at startup but could not be
    /// opened then: when we manage to open that very file, start at its end.
    end_for: Option<FileId>,
    totals: PollStats,
}

impl Follower {
    /// Never fails: a missing or unreadable file is simply waited for.
    pub fn new(path: impl Into<PathBuf>, cfg: FollowConfig) -> Follower {
        let mut f = Follower {
            path: path.into(),
            cfg,
            current: None,
            draining: Vec::new(),
            buf: vec![0; READ_BUF_BYTES],
            seen_any: false,
            end_for: None,
            totals: PollStats::default(),
        };
        // Open eagerly for StartAt::End so lines written between `new` and
        // the first poll are not skipped. For `Beginning`, the first poll
        // opens it.
        if f.cfg.start == StartAt::End {
            match Reader::open(&f.path, f.cfg.max_line_bytes) {
                Ok(mut r) => {
                    if r.start_near_end().is_ok() {
                        f.seen_any = true;
                        f.current = Some(r);
                    } else {
                        f.end_for = Some(r.id());
                    }
                }
                Err(_) => {
                    if let Ok(PathState::Present(id)) = watcher::stat_path(&f.path) {
                        f.end_for = Some(id);
                    }
                }
            }
        }
        f
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Cumulative counters since creation. Unlike the per-poll return value
    /// these are also updated by polls that end in an error.
    pub fn totals(&self) -> PollStats {
        self.totals
    }

    /// Bytes between our offsets and the current sizes of all files we hold
    /// (current and still-draining). A new file at the path that we have not
    /// opened yet is not counted until the next poll.
    pub fn lag_bytes(&self) -> u64 {
        self.readers().map(|r| r.lag().unwrap_or(0)).sum()
    }

    fn readers(&self) -> impl Iterator<Item = &Reader> {
        self.draining
            .iter()
            .map(|d| &d.reader)
            .chain(self.current.iter())
    }

    /// Read everything available and deliver complete lines to `on_line`.
    ///
    /// An io error on one file does not stop the others from being read and
    /// never loses state (offsets, buffered partial lines, held files); the
    /// first error is returned after the whole poll ran. Lines delivered
    /// before the error still count in [`Follower::totals`].
    pub fn poll(&mut self, on_line: &mut dyn FnMut(Line<'_>)) -> io::Result<PollStats> {
        self.poll_at(Instant::now(), on_line)
    }

    /// `poll` with an injected clock, so the grace period is testable.
    fn poll_at(
        &mut self,
        now: Instant,
        on_line: &mut dyn FnMut(Line<'_>),
    ) -> io::Result<PollStats> {
        let mut stats = PollStats::default();
        let mut first_err: Option<io::Error> = None;
        // Remember the first error, keep going with the other files.
        let note = |r: io::Result<u64>, err: &mut Option<io::Error>| match r {
            Ok(n) => Some(n),
            Err(e) => {
                err.get_or_insert(e);
                None
            }
        };

        // 1. Old files first: their lines are older than the new file's.
        for d in &mut self.draining {
            let r = d.reader.read_available(&mut self.buf, &mut stats, on_line);
            match note(r, &mut first_err) {
                Some(n) => {
                    d.read_ok = true;
                    if n > 0 {
                        d.last_growth = now;
                    }
                }
                None => d.read_ok = false,
            }
        }

        // 2. Drain the current file before looking at the path.
        if let Some(r) = &mut self.current {
            note(
                r.read_available(&mut self.buf, &mut stats, on_line),
                &mut first_err,
            );
        }

        // 3. What does the path name now?
        match watcher::stat_path(&self.path) {
            Err(e) => {
                first_err.get_or_insert(e);
            }
            Ok(state) => match watcher::decide(self.current.as_ref().map(Reader::id), state) {
                Event::Unchanged => {}
                Event::Disappeared => self.demote_current(now),
                Event::Appeared => match Reader::open(&self.path, self.cfg.max_line_bytes) {
                    Ok(new) => {
                        if let Err(e) = self.switch_to(new, now, &mut stats, on_line) {
                            first_err.get_or_insert(e);
                        }
                    }
                    // Vanished between stat and open: next poll sees "missing".
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                },
            },
        }

        // 4. Close old files once they have been quiet for the grace period
        // and the writer has somewhere else to write (a new file exists).
        if self.current.is_some() {
            let grace = self.cfg.rotate_grace;
            self.draining
                .retain(|d| !(d.read_ok && now.saturating_duration_since(d.last_growth) >= grace));
        }

        self.totals.add(&stats);
        match first_err {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }

    /// Move the current file to the draining set.
    fn demote_current(&mut self, now: Instant) {
        if let Some(reader) = self.current.take() {
            self.draining.push(Draining {
                reader,
                last_growth: now,
                read_ok: false,
            });
        }
    }

    /// Make `new` (just opened from the path) the current file and read it.
    fn switch_to(
        &mut self,
        mut new: Reader,
        now: Instant,
        stats: &mut PollStats,
        on_line: &mut dyn FnMut(Line<'_>),
    ) -> io::Result<()> {
        let id = new.id();
        if self.current.as_ref().map(Reader::id) == Some(id) {
            // The path was rotated and rotated back between our stat and
            // open; we already hold this file.
            return Ok(());
        }
        let back = self.draining.iter().position(|d| d.reader.id() == id);
        if back.is_none() && self.end_for == Some(id) {
            // Before touching any state, so a failure just retries next poll.
            new.start_near_end()?;
            self.end_for = None;
        }
        if self.seen_any {
            stats.rotations += 1;
        }
        self.seen_any = true;
        if let Some(i) = back {
            // A file we are draining was moved back to the path: keep its
            // offset instead of reading it again.
            let old = self.draining.swap_remove(i).reader;
            self.demote_current(now);
            self.current = Some(old);
            return Ok(());
        }
        self.demote_current(now);
        // Anything else is a new file: read it from the start.
        let cur = self.current.insert(new);
        cur.read_available(&mut self.buf, stats, on_line)
            .map(|_| ())
    }

    #[cfg(test)]
    fn with_read_buf(mut self, n: usize) -> Follower {
        self.buf = vec![0; n.max(1)];
        self
    }

    #[cfg(test)]
    fn held_files(&self) -> usize {
        self.readers().count()
    }
}
