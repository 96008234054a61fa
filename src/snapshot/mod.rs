//! Durable, checksummed snapshot files of Raft groups, written and read as streams.
//!
//! Modules, one job each:
//! - [`format`](mod@format): file names, the header and the trailer.
//! - `store`: [`SnapshotStore`] (listing, verification, reading, retention).
//! - `writer`: [`SnapshotWriter`] (a local snapshot) and [`RawSnapshotWriter`] (a snapshot
//!   received from another node as raw file bytes).
//! - `body`: [`SnapshotBody`], the verifying body reader.
//! - [`error`]: the error type, [`SnapshotError`].
//! - `storage`: [`SnapshotStorage`], what the engine needs of a store, implemented by
//!   [`SnapshotStore`] and by its in-memory twin [`MemSnapshots`] (`mem`, for the simulator).
//!
//! Invariants:
//! - A snapshot is written under a temporary name (suffix [`format::TEMP_SUFFIX`]), its trailer
//!   written last, fdatasynced, renamed to its final name, then the directory is fsynced. A file
//!   under a final name was therefore complete and synced when it appeared; after a crash at
//!   any point, the previous snapshots are intact and the new one is either wholly there or
//!   absent. Leftover temporaries are deleted by [`SnapshotStore::open`] (and by the writers
//!   when dropped unfinished), which also syncs every snapshot file and the directory before
//!   trusting them (a process crash may leave a rename only in the page cache).
//! - Every create, write, sync, rename and delete goes through the log's file layer
//!   ([`crate::log::io`]), so a [`FaultPlan`](crate::log::FaultPlan) can fail them. A write or
//!   sync failure makes `finish` fail and installs nothing.
//! - Bodies are streamed: writers buffer at most [`WRITE_BUFFER_BYTES`], readers hold only the
//!   caller's buffer. No length read from a file or a peer is used to size an allocation
//!   beyond a fixed cap ([`format::MAX_MEMBERSHIP_BYTES`], [`MAX_RAW_CHUNK_BYTES`]).
//! - A snapshot is reported by [`SnapshotStore::latest`] only after its header, trailer and body
//!   checksums verify. A damaged newest snapshot is an error naming the file, never skipped in
//!   favour of an older one.

mod body;
pub mod error;
pub mod format;
mod mem;
mod storage;
mod store;
mod writer;

use std::path::{Path, PathBuf};

pub use body::SnapshotBody;
pub use error::SnapshotError;
pub use mem::{MemSnapshotWriter, MemSnapshots, StoredSnapshot};
pub use storage::{SnapshotRead, SnapshotStorage};
pub use store::{RawSnapshotFile, SnapshotStore};
pub use writer::{RawSnapshotWriter, SnapshotWriter};

use crate::types::{GroupId, LogIndex, Term};

/// Result alias of the snapshot module.
pub type Result<T, E = SnapshotError> = std::result::Result<T, E>;

/// Name of the snapshot directory inside a node's data directory.
pub const SNAPSHOT_DIR: &str = "snapshots";
/// Bytes a [`SnapshotWriter`] buffers before writing them to its file.
pub const WRITE_BUFFER_BYTES: usize = 256 << 10;
/// Largest chunk [`RawSnapshotFile::read_chunk`] returns, whatever the caller asks for.
pub const MAX_RAW_CHUNK_BYTES: usize = 4 << 20;

/// What a snapshot covers: the state of `group` after applying entries up to `index` (of term
/// `term`), and the group's membership at that point (opaque bytes, at most
/// [`format::MAX_MEMBERSHIP_BYTES`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotInfo {
    pub group: GroupId,
    pub index: LogIndex,
    pub term: Term,
    pub membership: Vec<u8>,
}

/// The snapshot directory of the node whose data directory is `data_dir`.
pub fn snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(SNAPSHOT_DIR)
}
