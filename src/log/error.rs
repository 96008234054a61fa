//! Typed errors of the durable log.
//!
//! Invariants:
//! - An [`Error::Io`] raised by a write, fsync, create or delete is **fatal**: the log that raised
//!   it acknowledges nothing further and answers every later call with [`Error::Stopped`].
//!   Nothing that was staged but not synced before the failure is ever reported durable.
//! - [`Error::Corrupt`] names the file and byte offset of the bad spot and, when the record
//!   header was still legible, the group and index range it claimed. Recovery never repairs
//!   corruption; it refuses to open.
//! - Argument errors (`NotContiguous`, `Compacted`, ...) leave the log unchanged and usable.

use std::fmt;
use std::path::{Path, PathBuf};

use super::record::RecordHeader;
use crate::types::{GroupId, LogIndex, ShardId, Term};

/// Result alias of the log module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A spot in a segment that recovery or inspection found unreadable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// The segment (or missing segment, or hard-state file) concerned.
    pub file: PathBuf,
    /// Byte offset of the bad record or header within `file`.
    pub offset: u64,
    /// The group the bad record claimed, when its header was legible.
    pub group: Option<GroupId>,
    /// The index range the bad record claimed, when its header was legible.
    pub indexes: Option<(LogIndex, LogIndex)>,
    /// What is wrong.
    pub reason: String,
}

impl Corruption {
    /// The corruption at `offset` of `file`, naming the group and indexes of `record` (the
    /// header there, when legible).
    pub(crate) fn at(
        file: &Path,
        offset: u64,
        record: Option<&RecordHeader>,
        reason: impl Into<String>,
    ) -> Corruption {
        Corruption {
            file: file.to_path_buf(),
            offset,
            group: record.map(|h| h.group),
            indexes: record.map(RecordHeader::indexes),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.file.display(), self.offset)?;
        if let Some(group) = self.group {
            write!(f, " (group {group}")?;
            if let Some((first, last)) = self.indexes {
                write!(f, ", indexes {first}..={last}")?;
            }
            write!(f, ")")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Everything that can go wrong in the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call on a log file failed. Fatal when raised by a write, sync, create or delete.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`open`, `write`, `fdatasync`, ...).
        op: &'static str,
        /// The file or directory it was made on.
        path: PathBuf,
        /// The error the system returned.
        #[source]
        source: std::io::Error,
    },
    /// An earlier fatal error stopped this log; it accepts no further work.
    #[error("log stopped after a fatal error: {0}")]
    Stopped(String),
    /// Recovery found a bad record, header or gap that is not a torn tail.
    #[error("corrupt log: {0}")]
    Corrupt(Box<Corruption>),
    /// Neither hard-state slot holds a valid table.
    #[error("hard state file {} unusable: {reason}", path.display())]
    HardStateCorrupt {
        /// The hard-state file.
        path: PathBuf,
        /// What is wrong with each slot.
        reason: String,
    },
    /// A file belongs to another cluster or shard.
    #[error("{} belongs to cluster {found_cluster} {found_shard}, expected cluster {cluster} {shard}", path.display())]
    WrongOwner {
        /// The file.
        path: PathBuf,
        /// The cluster this log belongs to.
        cluster: u64,
        /// The shard this log belongs to.
        shard: ShardId,
        /// The cluster the file names.
        found_cluster: u64,
        /// The shard the file names.
        found_shard: ShardId,
    },
    /// A segment of a format version this build does not read.
    #[error("{} has segment format version {found}; this build reads version {supported} only", path.display())]
    UnsupportedFormat {
        /// The segment.
        path: PathBuf,
        /// The version the segment carries.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// An appended batch does not start right after the group's last index.
    #[error("group {group}: batch starts at {got}, expected {expected}")]
    NotContiguous {
        /// The group appended to.
        group: GroupId,
        /// The index after the group's last entry.
        expected: LogIndex,
        /// The first index of the batch.
        got: LogIndex,
    },
    /// An appended batch has a lower term than the group's last entry.
    #[error("group {group}: batch term {got} is below the last term {last}")]
    TermRegression {
        /// The group appended to.
        group: GroupId,
        /// Term of the group's last entry.
        last: Term,
        /// Term of the batch.
        got: Term,
    },
    /// The index lies below the group's compaction point.
    #[error("group {group}: index {index} is compacted (first index is {first})")]
    Compacted {
        /// The group read.
        group: GroupId,
        /// The index asked for.
        index: LogIndex,
        /// The group's first index still in the log.
        first: LogIndex,
    },
    /// The index lies beyond the group's last index.
    #[error("group {group}: index {index} is beyond the last index {last}")]
    Unavailable {
        /// The group read.
        group: GroupId,
        /// The index asked for.
        index: LogIndex,
        /// The group's last index.
        last: LogIndex,
    },
    /// A compaction names a term that differs from the log's entry at that index.
    #[error("group {group}: compaction through {through} at {term}, but the log has {found}")]
    CompactTermMismatch {
        /// The group compacted.
        group: GroupId,
        /// The last index the compaction drops.
        through: LogIndex,
        /// The term the compaction names for it.
        term: Term,
        /// The term of the log's entry there.
        found: Term,
    },
    /// One record would not fit in an empty segment.
    #[error("record of {bytes} bytes exceeds the segment capacity of {max} bytes")]
    RecordTooLarge {
        /// Encoded size of the record.
        bytes: u64,
        /// What one segment holds after its header.
        max: u64,
    },
    /// `start_flush` while a flush is in flight.
    #[error("a flush is already in flight")]
    FlushInFlight,
    /// `finish_flush` with a result that belongs to no flush in flight.
    #[error("flush result does not match the flush in flight")]
    UnknownFlush,
    /// An invalid configuration value.
    #[error("invalid log configuration: {0}")]
    Config(String),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(corruption: Corruption) -> Error {
        Error::Corrupt(Box::new(corruption))
    }

    /// Whether this error stops the log for good (I/O failure or an earlier one).
    pub fn is_fatal(&self) -> bool {
        matches!(self, Error::Io { .. } | Error::Stopped(_))
    }

    /// The corruption report, for [`Error::Corrupt`].
    pub fn corruption(&self) -> Option<&Corruption> {
        match self {
            Error::Corrupt(c) => Some(c),
            _ => None,
        }
    }
}
