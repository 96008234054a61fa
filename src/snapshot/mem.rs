//! `MemSnapshots`: the in-memory twin of the snapshot files, for the deterministic simulator,
//! with the same contract ([`SnapshotStorage`]) and the disk's crash model.
//!
//! Fault model (a crash is power loss): a snapshot is durable exactly when
//! [`SnapshotStorage::store`] has returned, as a file is once its sync, rename and directory
//! sync completed. A [`MemSnapshotWriter`] not yet stored is the temporary file: it lives only
//! in its writer, so a crash (the simulator dropping the writer) loses it and nothing else.
//! Stored snapshots are never damaged: corrupt snapshot files are tested against the real
//! store. Clones share one store, as handles to one directory do; the simulator keeps a clone
//! per node that outlives the node's engine, the way the directory outlives the process.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::rc::Rc;

use bytes::Bytes;

use super::{Result, SnapshotError, SnapshotInfo, SnapshotRead, SnapshotStorage};
use crate::types::{GroupId, LogIndex};

/// Stored snapshots by group and index. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct MemSnapshots {
    stored: Rc<RefCell<BTreeMap<(GroupId, LogIndex), StoredSnapshot>>>,
}

/// One stored snapshot: what it covers and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSnapshot {
    pub meta: SnapshotInfo,
    pub body: Bytes,
}

/// A snapshot being written: not durable until [`SnapshotStorage::store`] takes it.
#[derive(Debug)]
pub struct MemSnapshotWriter {
    meta: SnapshotInfo,
    body: Vec<u8>,
}

impl io::Write for MemSnapshotWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.body.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl MemSnapshots {
    pub fn new() -> MemSnapshots {
        MemSnapshots::default()
    }

    /// `group`'s stored snapshot at `index`, for a transfer to another node.
    pub fn get(&self, group: GroupId, index: LogIndex) -> Option<StoredSnapshot> {
        self.stored.borrow().get(&(group, index)).cloned()
    }

    /// Stores a snapshot received whole from another node (durable at once, as a transfer
    /// completes only after the receiver synced the file). Older ones are not removed, as a
    /// received file is not subject to retention until the next local snapshot.
    pub fn install(&self, snapshot: StoredSnapshot) {
        let key = (snapshot.meta.group, snapshot.meta.index);
        self.stored.borrow_mut().insert(key, snapshot);
    }
}

/// Every snapshot stored in memory was written by this build, so with its client sessions.
impl SnapshotRead for io::Cursor<Bytes> {
    fn holds_sessions(&self) -> bool {
        true
    }
}

impl SnapshotStorage for MemSnapshots {
    type Writer = MemSnapshotWriter;
    type Body = io::Cursor<Bytes>;

    fn create(&self, meta: SnapshotInfo) -> Result<MemSnapshotWriter> {
        Ok(MemSnapshotWriter {
            meta,
            body: Vec::new(),
        })
    }

    fn store(&self, writer: MemSnapshotWriter, keep: usize) -> Result<()> {
        if keep == 0 {
            return Err(SnapshotError::KeepNone);
        }
        let group = writer.meta.group;
        self.install(StoredSnapshot {
            meta: writer.meta,
            body: Bytes::from(writer.body),
        });
        let mut stored = self.stored.borrow_mut();
        let indexes: Vec<LogIndex> = stored
            .range((group, LogIndex::ZERO)..=(group, LogIndex(u64::MAX)))
            .map(|(&(_, index), _)| index)
            .collect();
        for index in &indexes[..indexes.len().saturating_sub(keep)] {
            stored.remove(&(group, *index));
        }
        Ok(())
    }

    fn latest(&self, group: GroupId) -> Result<Option<SnapshotInfo>> {
        let stored = self.stored.borrow();
        let newest = stored
            .range((group, LogIndex::ZERO)..=(group, LogIndex(u64::MAX)))
            .next_back();
        Ok(newest.map(|(_, snapshot)| snapshot.meta.clone()))
    }

    fn open_body(&self, group: GroupId, index: LogIndex) -> Result<io::Cursor<Bytes>> {
        match self.get(group, index) {
            Some(snapshot) => Ok(io::Cursor::new(snapshot.body)),
            None => Err(SnapshotError::NotFound {
                dir: "<memory>".into(),
                group,
                index,
            }),
        }
    }

    fn holds(&self, group: GroupId, index: LogIndex) -> bool {
        self.stored.borrow().contains_key(&(group, index))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;
    use crate::types::Term;

    fn meta(index: u64) -> SnapshotInfo {
        SnapshotInfo {
            group: GroupId(3),
            index: LogIndex(index),
            term: Term(1),
            membership: Vec::new(),
        }
    }

    #[test]
    fn a_snapshot_is_visible_only_once_stored_and_retention_keeps_the_newest() {
        let store = MemSnapshots::new();
        for index in [4, 9, 12] {
            let mut writer = store.create(meta(index)).unwrap();
            writer.write_all(b"state").unwrap();
            assert!(!store.holds(GroupId(3), LogIndex(index)));
            store.store(writer, 2).unwrap();
        }
        assert!(!store.holds(GroupId(3), LogIndex(4)));
        assert_eq!(store.latest(GroupId(3)).unwrap(), Some(meta(12)));
        let mut body = String::new();
        store
            .open_body(GroupId(3), LogIndex(9))
            .unwrap()
            .read_to_string(&mut body)
            .unwrap();
        assert_eq!(body, "state");
        assert_eq!(store.latest(GroupId(4)).unwrap(), None);
    }
}
