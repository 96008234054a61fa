//! [`SnapshotStorage`]: what the engine needs of a snapshot store, so that the same engine runs
//! over snapshot files (production, [`SnapshotStore`]) and over their in-memory twin (the
//! simulator, [`super::MemSnapshots`]).
//!
//! Contract, which both implementations keep:
//! - [`SnapshotStorage::create`] starts a snapshot that is invisible (to `latest`, `open_body`
//!   and `holds`) until [`SnapshotStorage::store`] returns `Ok`; from then on it is durable: a
//!   crash keeps it. A crash before that loses it, and never damages stored ones.
//! - `store` also deletes the group's older snapshots beyond the newest `keep`.
//! - `latest` and `open_body` only report stored snapshots; `open_body` streams the body, and
//!   says whether it starts with the group's client sessions ([`SnapshotRead`]): every
//!   snapshot written now does; a file written before sessions existed does not.

use std::io;

use super::{Result, SnapshotInfo, SnapshotStore, SnapshotWriter};
use crate::snapshot::SnapshotBody;
use crate::types::{GroupId, LogIndex};

/// A stored snapshot's body, as a stream.
pub trait SnapshotRead: io::Read {
    /// Whether the body starts with the group's client sessions (see
    /// [`super::format::SNAPSHOT_VERSION`]).
    fn holds_sessions(&self) -> bool;
}

/// A store of durable snapshots. See the module documentation for the contract.
pub trait SnapshotStorage: Clone {
    /// Receives a snapshot's body.
    type Writer: io::Write;
    /// Streams a stored snapshot's body.
    type Body: SnapshotRead;

    /// Starts a snapshot described by `meta`.
    fn create(&self, meta: SnapshotInfo) -> Result<Self::Writer>;
    /// Makes the snapshot written into `writer` durable, then keeps only the newest `keep`
    /// (at least one) of its group. Blocking for a disk store.
    fn store(&self, writer: Self::Writer, keep: usize) -> Result<()>;
    /// The newest stored snapshot of `group`, if any.
    fn latest(&self, group: GroupId) -> Result<Option<SnapshotInfo>>;
    /// The body of `group`'s stored snapshot at `index`.
    fn open_body(&self, group: GroupId, index: LogIndex) -> Result<Self::Body>;
    /// Whether `group`'s snapshot at `index` is stored.
    fn holds(&self, group: GroupId, index: LogIndex) -> bool;
}

impl SnapshotStorage for SnapshotStore {
    type Writer = SnapshotWriter;
    type Body = SnapshotBody;

    fn create(&self, meta: SnapshotInfo) -> Result<SnapshotWriter> {
        SnapshotStore::create(self, meta)
    }

    fn store(&self, writer: SnapshotWriter, keep: usize) -> Result<()> {
        let meta = writer.finish()?;
        self.retain(meta.group, keep)
    }

    fn latest(&self, group: GroupId) -> Result<Option<SnapshotInfo>> {
        SnapshotStore::latest(self, group)
    }

    fn open_body(&self, group: GroupId, index: LogIndex) -> Result<SnapshotBody> {
        SnapshotStore::open_body(self, group, index)
    }

    fn holds(&self, group: GroupId, index: LogIndex) -> bool {
        self.path(group, index).exists()
    }
}
