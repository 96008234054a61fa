//! Typed errors of the snapshot store.
//!
//! Every error about a file names it. Damage is reported by kind (header, body, trailer,
//! truncation, foreign group) so a caller can tell a corrupt snapshot from a failing disk.

use std::path::PathBuf;

use crate::types::{GroupId, LogIndex};

/// Everything that can go wrong in the snapshot store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// A system call on a snapshot file or directory failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`list`, `read`, `stat`, ...).
        op: &'static str,
        /// The file or directory it was made on.
        path: PathBuf,
        /// The error the system returned.
        #[source]
        source: std::io::Error,
    },
    /// The header is unreadable: bad magic, checksum, version or length, or it disagrees with
    /// the file name.
    #[error("snapshot {}: corrupt header: {reason}", path.display())]
    CorruptHeader {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong with the header.
        reason: String,
    },
    /// The trailer is legible but wrong (its own checksum, or a body length that does not fit
    /// the file).
    #[error("snapshot {}: corrupt trailer: {reason}", path.display())]
    CorruptTrailer {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong with the trailer.
        reason: String,
    },
    /// The file is shorter than its header says, or does not end with a trailer.
    #[error("snapshot {}: truncated: {reason}", path.display())]
    Truncated {
        /// The snapshot file.
        path: PathBuf,
        /// Where the file ends short.
        reason: String,
    },
    /// The body does not hash to the checksum recorded in the trailer.
    #[error(
        "snapshot {}: body checksum mismatch (trailer records {recorded:#010x}, body hashes to {computed:#010x})",
        path.display()
    )]
    BodyChecksum {
        /// The snapshot file.
        path: PathBuf,
        /// The checksum the trailer records.
        recorded: u32,
        /// The checksum of the body as read.
        computed: u32,
    },
    /// A received snapshot belongs to another group than the one it was received for.
    #[error("snapshot {}: belongs to group {found}, expected group {expected}", path.display())]
    WrongGroup {
        /// The snapshot file.
        path: PathBuf,
        /// The group it was received for.
        expected: GroupId,
        /// The group its header names.
        found: GroupId,
    },
    /// A received chunk does not start where the previous one ended.
    #[error("snapshot {}: chunk at offset {got}, expected offset {expected}", path.display())]
    NotContiguous {
        /// The snapshot file being received.
        path: PathBuf,
        /// The offset after the previous chunk.
        expected: u64,
        /// The offset of the chunk that arrived.
        got: u64,
    },
    /// No snapshot of the group at that index exists.
    #[error("no snapshot of group {group} at index {index} in {}", dir.display())]
    NotFound {
        /// The snapshot directory.
        dir: PathBuf,
        /// The group asked for.
        group: GroupId,
        /// The index asked for.
        index: LogIndex,
    },
    /// The membership bytes exceed the format's cap.
    #[error("membership of {bytes} bytes exceeds the limit of {max} bytes")]
    MembershipTooLarge {
        /// Encoded size of the membership.
        bytes: usize,
        /// The format's cap.
        max: usize,
    },
    /// `retain` was asked to keep no snapshot.
    #[error("retain must keep at least one snapshot")]
    KeepNone,
    /// A state machine's snapshot job ([`crate::engine::StateMachine::snapshot_job`]) failed
    /// while writing the snapshot.
    #[error("writing the state machine's snapshot: {0}")]
    Job(#[source] std::io::Error),
    /// Any other error of the file layer.
    #[error(transparent)]
    Log(Box<crate::log::Error>),
}

impl SnapshotError {
    /// Whether the error reports a damaged or foreign file (as opposed to I/O or misuse).
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            SnapshotError::CorruptHeader { .. }
                | SnapshotError::CorruptTrailer { .. }
                | SnapshotError::Truncated { .. }
                | SnapshotError::BodyChecksum { .. }
                | SnapshotError::WrongGroup { .. }
        )
    }

    /// The operating-system error behind an [`SnapshotError::Io`].
    pub fn io_source(&self) -> Option<&std::io::Error> {
        match self {
            SnapshotError::Io { source, .. } => Some(source),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SnapshotError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl From<crate::log::Error> for SnapshotError {
    fn from(e: crate::log::Error) -> Self {
        match e {
            crate::log::Error::Io { op, path, source } => SnapshotError::Io { op, path, source },
            other => SnapshotError::Log(Box::new(other)),
        }
    }
}
