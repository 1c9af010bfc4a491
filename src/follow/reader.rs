//! Reader: one open file, its offset, and line splitting.
//!
//! Reads use `pread` (`FileExt::read_at`) at our own offset instead of the
//! fd's file position, so restarting after a truncation is just `offset = 0`
//! and there is no hidden seek state to get out of sync.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::fingerprint::FileId;
use super::{Line, PollStats};

/// Upper bound on bytes consumed from one file in one poll, so a huge backlog
/// (e.g. `StartAt::Beginning` on a multi-GB file) cannot stall the caller's
/// timer loop. The rest is picked up by following polls and shows as lag.
pub(super) const MAX_BYTES_PER_POLL: u64 = 32 << 20;

/// Bytes remembered just before our offset; see [`Reader::replaced`].
const WINDOW: usize = 64;

/// Splits a byte stream into `\n`-terminated lines with a hard length cap.
///
/// Memory is bounded by `max`: a partial line is buffered only up to `max`
/// bytes. A longer line is delivered truncated as soon as the cap is hit and
/// everything up to its newline is discarded.
pub(super) struct LineBuf {
    buf: Vec<u8>,
    max: usize,
    /// Inside the over-long tail of a line that was already delivered truncated.
    discarding: bool,
}

fn emit(bytes: &[u8], truncated: bool, stats: &mut PollStats, on_line: &mut dyn FnMut(Line<'_>)) {
    stats.lines += 1;
    if truncated {
        stats.truncated_lines += 1;
    }
    on_line(Line { bytes, truncated });
}

impl LineBuf {
    pub(super) fn new(max: usize) -> LineBuf {
        // A zero cap would make every line "truncated" and is surely a config
        // mistake; one byte is the smallest meaningful cap.
        let max = max.max(1);
        LineBuf {
            // Grows on demand up to `max`; don't reserve 16 KiB per idle file.
            buf: Vec::new(),
            max,
            discarding: false,
        }
    }

    /// Forget any partial line (after a truncation or when the data can no
    /// longer be completed).
    pub(super) fn reset(&mut self) {
        self.buf.clear();
        self.discarding = false;
    }

    /// Start in "discard until newline" mode (used when we start reading in
    /// the middle of a line that is longer than the cap).
    pub(super) fn skip_to_newline(&mut self) {
        self.buf.clear();
        self.discarding = true;
    }

    #[cfg(test)]
    pub(super) fn pending(&self) -> usize {
        self.buf.len()
    }

    pub(super) fn feed(
        &mut self,
        mut data: &[u8],
        stats: &mut PollStats,
        on_line: &mut dyn FnMut(Line<'_>),
    ) {
        while let Some(pos) = memchr::memchr(b'\n', data) {
            let seg = &data[..pos];
            data = &data[pos + 1..];
            if self.discarding {
                // End of a line we already delivered truncated.
                self.discarding = false;
                continue;
            }
            if self.buf.is_empty() {
                // Fast path: the whole line is inside the read buffer, hand it
                // out without copying.
                if seg.len() <= self.max {
                    emit(seg, false, stats, on_line);
                } else {
                    emit(&seg[..self.max], true, stats, on_line);
                }
            } else {
                let room = self.max - self.buf.len();
                let truncated = seg.len() > room;
                self.buf.extend_from_slice(&seg[..seg.len().min(room)]);
                emit(&self.buf, truncated, stats, on_line);
                self.buf.clear();
            }
        }
        if data.is_empty() || self.discarding {
            return;
        }
        let room = self.max - self.buf.len();
        if data.len() <= room {
            self.buf.extend_from_slice(data);
        } else {
            // Cap reached without a newline: deliver what we have now rather
            // than buffering further, and drop the rest of this line.
            self.buf.extend_from_slice(&data[..room]);
            emit(&self.buf, true, stats, on_line);
            self.buf.clear();
            self.discarding = true;
        }
    }
}

/// The last up-to-`WINDOW` bytes before the reader's offset.
struct TailWindow {
    bytes: [u8; WINDOW],
    len: usize,
}

impl TailWindow {
    fn new() -> TailWindow {
        TailWindow {
            bytes: [0; WINDOW],
            len: 0,
        }
    }

    fn push(&mut self, data: &[u8]) {
        if data.len() >= WINDOW {
            self.bytes.copy_from_slice(&data[data.len() - WINDOW..]);
            self.len = WINDOW;
            return;
        }
        let keep = self.len.min(WINDOW - data.len());
        self.bytes.copy_within(self.len - keep..self.len, 0);
        self.bytes[keep..keep + data.len()].copy_from_slice(data);
        self.len = keep + data.len();
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

/// One open file being followed.
pub(super) struct Reader {
    file: File,
    id: FileId,
    offset: u64,
    lines: LineBuf,
    window: TailWindow,
}

impl Reader {
    /// Open the path and identify the opened fd. The identity comes from
    /// `fstat` on the fd, not from an earlier `stat` of the path, so a
    /// rotation racing with the open cannot mislabel the file.
    pub(super) fn open(path: &Path, max_line_bytes: usize) -> io::Result<Reader> {
        let file = File::open(path)?;
        let id = FileId::of(&file.metadata()?);
        Ok(Reader {
            file,
            id,
            offset: 0,
            lines: LineBuf::new(max_line_bytes),
            window: TailWindow::new(),
        })
    }

    pub(super) fn id(&self) -> FileId {
        self.id
    }

    /// Position at the end of the file for `StartAt::End`, but backed up to the
    /// start of an unfinished last line (if it is within the cap) so that a
    /// line being written at startup is delivered whole instead of as a
    /// fragment. If the unfinished line is longer than the cap we start at the
    /// end and discard up to its newline.
    pub(super) fn start_near_end(&mut self) -> io::Result<()> {
        let size = self.file.metadata()?.len();
        let back = size.min(self.lines.max as u64 + 1);
        let from = size - back;
        let mut tail = vec![0u8; back as usize];
        let got = read_full_at(&self.file, &mut tail, from)?;
        tail.truncate(got);
        let (start, discard) = match memchr::memrchr(b'\n', &tail) {
            Some(p) => (from + p as u64 + 1, false),
            // The whole (short) file is one unfinished line: read it all.
            None if from == 0 => (0, false),
            None => (from + tail.len() as u64, true),
        };
        self.offset = start;
        self.window.clear();
        self.window.push(&tail[..(start - from) as usize]);
        if discard {
            self.lines.skip_to_newline();
        } else {
            self.lines.reset();
        }
        Ok(())
    }

    /// Bytes between our offset and the file's current size.
    pub(super) fn lag(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len().saturating_sub(self.offset))
    }

    /// Has the file been truncated, or truncated and rewritten past our
    /// offset? `size < offset` catches the common copytruncate case. If the
    /// writer already wrote past our old offset before we looked, size alone
    /// cannot tell, so we also compare the bytes just before our offset with
    /// what we read there: appends never change existing bytes.
    fn replaced(&self, size: u64) -> io::Result<bool> {
        if size < self.offset {
            return Ok(true);
        }
        if self.window.len == 0 {
            return Ok(false);
        }
        let mut now = [0u8; WINDOW];
        let n = self.window.len;
        let got = read_full_at(&self.file, &mut now[..n], self.offset - n as u64)?;
        Ok(got < n || now[..n] != self.window.bytes[..n])
    }

    /// Check for truncation, then read everything available (up to
    /// `MAX_BYTES_PER_POLL`), delivering complete lines. Returns the number of
    /// bytes consumed. On error the reader keeps a consistent state: the
    /// offset covers exactly the bytes that were fed to the line splitter.
    pub(super) fn read_available(
        &mut self,
        buf: &mut [u8],
        stats: &mut PollStats,
        on_line: &mut dyn FnMut(Line<'_>),
    ) -> io::Result<u64> {
        let size = self.file.metadata()?.len();
        if self.replaced(size)? {
            // copytruncate: the bytes we had not read yet are gone, and a
            // buffered partial line can never be completed.
            self.offset = 0;
            self.lines.reset();
            self.window.clear();
            stats.truncations += 1;
        }
        let mut total = 0u64;
        while total < MAX_BYTES_PER_POLL {
            let n = match self.file.read_at(buf, self.offset) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let data = &buf[..n];
            self.lines.feed(data, stats, on_line);
            self.window.push(data);
            self.offset += n as u64;
            total += n as u64;
            stats.bytes += n as u64;
        }
        Ok(total)
    }
}

/// `pread` until `buf` is full or EOF; returns the number of bytes read.
fn read_full_at(file: &File, buf: &mut [u8], mut offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset) {
            Ok(0) => break,
            Ok(n) => {
                got += n;
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
