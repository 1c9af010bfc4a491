//! Watcher: stat the path and decide what happened to it.
//!
//! Deliberately pure apart from one `stat(2)`: the decision table is small
//! enough to read at a glance, and all file-descriptor handling lives in the
//! reader / follower.

use std::io;
use std::path::Path;

use super::fingerprint::FileId;

/// What the path points to right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PathState {
    Missing,
    Present(FileId),
}

/// `stat` (following symlinks, like `tail -F`) the path.
///
/// "Not found" and "a path component is not a directory" mean the file is
/// simply not there (yet); other errors (e.g. EACCES on the directory) are
/// reported so the caller can surface them.
pub(super) fn stat_path(path: &Path) -> io::Result<PathState> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(PathState::Present(FileId::of(&meta))),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(PathState::Missing)
        }
        Err(e) => Err(e),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Event {
    /// The path still names the file we hold (or is still missing).
    Unchanged,
    /// The path no longer exists; whatever we hold keeps being drained.
    Disappeared,
    /// The path names a file we do not hold as the current file: a rotation
    /// (rename+create, delete+recreate) or the first appearance.
    Appeared,
}

/// `current` is the identity of the file we treat as "the file at the path".
pub(super) fn decide(current: Option<FileId>, state: PathState) -> Event {
    match (current, state) {
        (None, PathState::Missing) => Event::Unchanged,
        (Some(_), PathState::Missing) => Event::Disappeared,
        (Some(held), PathState::Present(id)) if held == id => Event::Unchanged,
        (_, PathState::Present(_)) => Event::Appeared,
    }
}
