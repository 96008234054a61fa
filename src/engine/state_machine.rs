//! The trait an embedding program implements to receive committed entries.

use std::io;

use bytes::Bytes;

use crate::batch::EntryBatch;
use crate::types::{GroupId, LogIndex};

/// Writes a snapshot of a state copied earlier, off the shard's thread
/// ([`StateMachine::snapshot_job`]); the same bytes [`StateMachine::snapshot`] would have
/// written when the job was made.
pub type SnapshotJob = Box<dyn FnOnce(&mut dyn io::Write) -> io::Result<()> + Send>;

/// Committed command entries of one group, in log order, read in place from the log's bytes.
/// Their indexes increase but may have gaps: entries that are not commands (and requests of
/// client sessions that were applied before: [client sessions](crate#client-sessions)) are not among them.
pub struct CommittedEntries<'a> {
    entries: Entries<'a>,
}

enum Entries<'a> {
    /// Every entry of a command batch.
    Batch(&'a EntryBatch),
    /// Payloads picked out of a session batch.
    Picked(&'a [(LogIndex, &'a [u8])]),
}

impl<'a> CommittedEntries<'a> {
    pub(crate) fn new(batch: &'a EntryBatch) -> CommittedEntries<'a> {
        CommittedEntries {
            entries: Entries::Batch(batch),
        }
    }

    /// `picked` (at least one), in index order.
    pub(crate) fn picked(picked: &'a [(LogIndex, &'a [u8])]) -> CommittedEntries<'a> {
        debug_assert!(!picked.is_empty());
        CommittedEntries {
            entries: Entries::Picked(picked),
        }
    }

    /// Index of the first entry.
    pub fn first_index(&self) -> LogIndex {
        match self.entries {
            Entries::Batch(batch) => batch.first_index(),
            Entries::Picked(picked) => picked[0].0,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        match self.entries {
            Entries::Batch(batch) => batch.len() as usize,
            Entries::Picked(picked) => picked.len(),
        }
    }

    /// Always false: there is at least one entry.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// `(index, payload)` of each entry, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (LogIndex, &'a [u8])> + 'a {
        match self.entries {
            Entries::Batch(batch) => {
                let first = batch.first_index();
                OneOf::Batch(
                    batch
                        .payloads()
                        .enumerate()
                        .map(move |(offset, payload)| (first.plus(offset as u64), payload)),
                )
            }
            Entries::Picked(picked) => OneOf::Picked(picked.iter().copied()),
        }
    }
}

/// The iterator of either kind of [`Entries`].
enum OneOf<B, P> {
    Batch(B),
    Picked(P),
}

impl<T, B: ExactSizeIterator<Item = T>, P: ExactSizeIterator<Item = T>> Iterator for OneOf<B, P> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match self {
            OneOf::Batch(batch) => batch.next(),
            OneOf::Picked(picked) => picked.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            OneOf::Batch(batch) => batch.size_hint(),
            OneOf::Picked(picked) => picked.size_hint(),
        }
    }
}

impl<T, B: ExactSizeIterator<Item = T>, P: ExactSizeIterator<Item = T>> ExactSizeIterator
    for OneOf<B, P>
{
}

/// A replicated state machine: the embedding program's side of ringraft.
///
/// One instance lives on each shard (built on the shard's own thread, so it need not be `Send`)
/// and receives the committed entries of every group of that shard. For each group, `apply` is
/// called with entries in log order, each entry exactly once per node lifetime (after a
/// restart the state machine is restored from the group's newest snapshot, if any, and the log
/// after it is applied again, so an in-memory state machine is rebuilt).
pub trait StateMachine: 'static {
    /// Applies `entries` of `group` and pushes exactly one output per entry onto `outputs`; the
    /// output of an entry is returned to whoever proposed it (`Bytes::new()` costs nothing).
    fn apply(&mut self, group: GroupId, entries: CommittedEntries<'_>, outputs: &mut Vec<Bytes>);

    /// Answers a read-only `query` against the state of `group`, once the read's consistency
    /// condition holds ([`crate::api::ReadConsistency`]): for a linearizable read, the state
    /// reflects at least every write committed before the read began. Called on the shard's
    /// thread; it must not block. The default answers nothing.
    fn query(&self, group: GroupId, query: &[u8]) -> Bytes {
        let _ = (group, query);
        Bytes::new()
    }

    /// Writes the state of `group` (every entry applied so far) to `out`, as a stream: it need
    /// not fit in memory. The node stores it durably and compacts the log behind it; it is what
    /// [`StateMachine::restore`] reads back, on this node after a restart or on a follower
    /// too far behind to catch up from the log. Called on the shard's thread between applies.
    ///
    /// The default answers [`io::ErrorKind::Unsupported`]: the node then never snapshots and
    /// its log keeps every entry.
    fn snapshot(&self, group: GroupId, out: &mut dyn io::Write) -> io::Result<()> {
        let _ = (group, out);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this state machine does not snapshot",
        ))
    }

    /// A copy of the state of `group` as it is now, which writes what [`StateMachine::snapshot`]
    /// would write now, but later and on another thread, while the shard goes on applying
    /// entries. Worth providing when the state is cheap to copy but slow to write (shared or
    /// persistent structures): a snapshot then holds up the shard's thread only for the copy,
    /// not for the writing. The job must write the state as of this call, whatever is applied
    /// after it.
    ///
    /// The default, `None`, has the shard's thread call [`StateMachine::snapshot`] instead.
    fn snapshot_job(&self, group: GroupId) -> Option<SnapshotJob> {
        let _ = group;
        None
    }

    /// Replaces the state of `group` with a snapshot [`StateMachine::snapshot`] wrote (possibly
    /// on another node). Entries after the snapshot's index are applied afterwards. An error
    /// stops the shard: the state machine must not be left half restored.
    fn restore(&mut self, group: GroupId, input: &mut dyn io::Read) -> io::Result<()> {
        let _ = (group, input);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this state machine does not restore snapshots",
        ))
    }
}

/// A state machine that keeps nothing and answers every entry with an empty output: for a
/// node that only replicates a log (and for benchmarks of replication itself).
#[derive(Clone, Copy, Debug, Default)]
pub struct LogOnly;

impl StateMachine for LogOnly {
    fn apply(&mut self, _group: GroupId, entries: CommittedEntries<'_>, outputs: &mut Vec<Bytes>) {
        outputs.resize_with(outputs.len() + entries.len(), Bytes::new);
    }

    /// Nothing to write: the log can be compacted freely.
    fn snapshot(&self, _group: GroupId, _out: &mut dyn io::Write) -> io::Result<()> {
        Ok(())
    }

    fn restore(&mut self, _group: GroupId, _input: &mut dyn io::Read) -> io::Result<()> {
        Ok(())
    }
}
