//! The durable segmented log of a shard, and its in-memory twin.
//!
//! One log per shard holds the records of every Raft group on the shard, so the whole shard
//! pays one `fdatasync` per flush. Modules, one job each:
//!
//! - [`record`]: the record format (header, CRC, aligned verbatim batch body).
//! - [`segment`]: segment files (naming, checksummed header, creation zero-filled or recycled).
//! - [`hard_state`]: the per-shard hard-state file with two alternating slots.
//! - `index`: the in-memory view of every group's log, shared by all implementations.
//! - [`flush`]: the group-commit contract (`PendingFlush`, `SyncReport`).
//! - `writer`: the writer thread (buffered `pwrite` + `fdatasync`).
//! - `scan`: verifying one segment image (its valid records, and where it goes bad).
//! - `replay`: rebuilding the in-memory view from scanned records.
//! - `shard_scan`: one read-only pass over a shard directory applying every check, with what
//!   fails as findings (torn tail versus corruption decided there, once).
//! - [`recovery`]: opening a shard by acting on those findings (repair or refuse).
//! - [`mod@inspect`]: reporting those findings, for `ringraft inspect`.
//! - [`disk`]: [`DiskLog`], the production log.
//! - [`mem`]: [`MemLog`], the simulator's twin with a crash model.
//! - [`io`]: the file layer and its fault injection.
//!
//! The contract ([`LogStore`]), common to both logs:
//! - Staging calls are synchronous and take effect at once for reads; they become durable
//!   when a flush that started after them completes.
//! - A flush writes everything staged with one write per segment and one `fdatasync` (plus one
//!   for the hard-state file when a hard state changed). Everything staged while a flush is in
//!   flight goes into the next one.
//! - A [`SyncReport`] tells, per group touched, the `(index, term)` up to which the log is
//!   durable and which hard states are durable. Reports arrive in flush order; no position is
//!   ever reported before it is synced.
//! - A write or sync error is fatal: the log returns a typed error, reports nothing of that
//!   flush, and refuses all further work ([`Error::Stopped`]).

use std::future::Future;

use crate::batch::EntryBatch;
use crate::types::{GroupId, HardState, LogIndex, Term};

pub mod disk;
pub mod error;
pub mod flush;
pub mod gather;
pub mod hard_state;
mod index;
pub mod inspect;
pub mod io;
pub mod mem;
pub mod record;
pub mod recovery;
mod replay;
pub(crate) mod scan;
pub mod segment;
mod shard_scan;
mod writer;

pub use disk::{shard_dir, DiskLog, LogConfig, INLINE_FLUSH_BYTES_DEFAULT, SEGMENT_BYTES_DEFAULT};
pub use error::{Corruption, Error, Result};
pub use flush::{FlushDone, PendingFlush, SyncReport};
pub use index::LogPosition;
pub use inspect::{inspect, InspectReport};
pub use io::{FaultOp, FaultPlan};
pub use mem::MemLog;
pub use recovery::{RecoveryReport, TornTail};

/// The storage interface used by the shard driver (with [`DiskLog`]) and by the simulator
/// (with [`MemLog`]). See the module documentation for the contract.
pub trait LogStore {
    /// Stages `batch` at the end of `group`'s log. It must start at `last_index + 1` and its
    /// term must not be below the last entry's term.
    fn append(&mut self, group: GroupId, batch: &EntryBatch) -> Result<()>;

    /// Stages the removal of `group`'s entries from `from` on (a follower's conflicting
    /// suffix). `from` must not be compacted; removing nothing is a no-op.
    fn truncate(&mut self, group: GroupId, from: LogIndex) -> Result<()>;

    /// Stages the compaction of `group`'s entries up to and including `through`, whose term is
    /// `term` (for example after a snapshot). `first_index` becomes `through + 1` and
    /// `term_at(through)` stays answerable. `through` may lie beyond the last index (snapshot
    /// install: the log becomes empty at `through`). Whole segments are deleted once no group
    /// needs them.
    fn compact(&mut self, group: GroupId, through: LogIndex, term: Term) -> Result<()>;

    /// Stages `group`'s hard state.
    fn save_hard_state(&mut self, group: GroupId, state: HardState) -> Result<()>;

    /// The latest staged hard state of `group` (default if none).
    fn hard_state(&self, group: GroupId) -> HardState;

    /// The entries `from ..= to` as batches in index order (nothing if `from > to`). Errors if
    /// the range reaches below `first_index` or beyond `last_index`.
    fn read(&self, group: GroupId, from: LogIndex, to: LogIndex) -> Result<Vec<EntryBatch>>;

    /// The term of entry `index`, if the log knows it (`Term::ZERO` at index 0, the compaction
    /// term at `first_index - 1`).
    fn term_at(&self, group: GroupId, index: LogIndex) -> Option<Term>;

    /// The first index still in the log (1 unless compacted).
    fn first_index(&self, group: GroupId) -> LogIndex;

    /// The last index staged (`first_index - 1` when empty).
    fn last_index(&self, group: GroupId) -> LogIndex;

    /// The position up to which `group`'s log is known durable.
    fn durable(&self, group: GroupId) -> LogPosition;

    /// Every group with entries, compaction state or a hard state, in order.
    fn groups(&self) -> Vec<GroupId>;

    /// Whether a flush would do anything.
    fn has_staged(&self) -> bool;

    /// Starts a flush of everything staged; `None` if there is nothing to flush. The returned
    /// future completes when the I/O is done; hand its output to [`LogStore::finish_flush`].
    fn start_flush(&mut self) -> Result<Option<PendingFlush>>;

    /// Whether the next flushes may do their I/O on the thread that awaits them, blocking it
    /// (the disk log does so for small flushes: `LogConfig::inline_flush_bytes_max`). A shard
    /// that leads a group says no: its own sync must not hold up the acknowledgements that
    /// let two followers commit without it. Default yes; a log without such I/O ignores it.
    fn allow_blocking_flush(&mut self, allowed: bool) {
        let _ = allowed;
    }

    /// Completes the flush in flight, returning what became durable (or the fatal error).
    fn finish_flush(&mut self, done: FlushDone) -> Result<SyncReport>;

    /// Flushes everything staged and waits for it: `start_flush`, await, `finish_flush`.
    fn sync(&mut self) -> impl Future<Output = Result<SyncReport>> {
        async move {
            match self.start_flush()? {
                Some(pending) => {
                    let done = pending.await;
                    self.finish_flush(done)
                }
                None => Ok(SyncReport::default()),
            }
        }
    }
}
