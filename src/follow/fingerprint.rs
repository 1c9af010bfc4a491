//! File identity ("fingerprint").
//!
//! A followed file is identified by `(st_dev, st_ino)`. Unlike vector's
//! default checksum fingerprint this needs no read and works for empty files
//! (logrotate `create` makes empty files), and it is exactly what tells a
//! rename/delete+recreate apart from "same file, more data".
//!
//! Inode numbers are reused once an inode is freed. That cannot bite us for a
//! file we still hold open (the open fd keeps the inode alive), and a file we
//! no longer hold has no state left that could be confused with a newcomer.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct FileId {
    pub(super) dev: u64,
    pub(super) ino: u64,
}

impl FileId {
    pub(super) fn of(meta: &Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}
