//! When a group snapshots its state machine next.
//!
//! A snapshot is due once the group applied [`SnapshotPolicy::entries`] entries past its last
//! snapshot *and* entries holding [`SnapshotPolicy::log_ratio`] times that snapshot's size in
//! bytes. The second condition keeps snapshotting proportionate to the log: a state machine
//! whose state is as large as many entries (a key-value store with as many keys as the
//! interval has entries) would otherwise write as many bytes into snapshots as into its log,
//! on the event loop, stalling every request each time. With a ratio of `r`, snapshot bytes
//! are at most `1/r` of log bytes, and the log past the last snapshot holds at most about
//! `max(entries, r × snapshot size)`.
//!
//! Invariants:
//! - the ratio counts only when the size of the last snapshot is known: once a snapshot this
//!   engine wrote is stored ([`SnapshotPolicy::learned_size`]; it may be written off the shard's
//!   thread, while entries go on being applied, and those entries count towards the next one).
//!   After a restart or an installed snapshot the next one is due by the entry count alone;
//! - `entries == 0` means never, whatever the ratio; `log_ratio == 0` means by count alone.

use std::io;

use crate::types::LogIndex;

/// The production default of [`SnapshotPolicy::log_ratio`].
pub const LOG_RATIO_DEFAULT: u64 = 4;

/// How often snapshots are taken (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Entries applied past the last snapshot before the next one (0: never).
    pub entries: u64,
    /// Bytes of entries applied past the last snapshot, in multiples of its size, before the
    /// next one (0: no such condition).
    pub log_ratio: u64,
}

/// When one group's next snapshot is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotDue {
    /// The snapshot (or restart or installed snapshot) this counts from.
    since: LogIndex,
    /// The applied index the snapshot waits for.
    index: LogIndex,
    /// Bytes of entries still to apply before it (0 while the size of the snapshot at
    /// `since` is unknown).
    bytes_left: u64,
    /// Bytes of entries applied since `since`.
    applied_bytes: u64,
}

impl SnapshotPolicy {
    /// The next snapshot after one (or a restart, or an installed snapshot) at `index`, by
    /// the entry count until [`Self::learned_size`] says how large that snapshot is.
    pub fn after(&self, index: LogIndex) -> SnapshotDue {
        match self.entries {
            0 => SnapshotDue::NEVER,
            entries => SnapshotDue {
                since: index,
                index: index.plus(entries),
                bytes_left: 0,
                applied_bytes: 0,
            },
        }
    }

    /// The snapshot at `since` turned out `snapshot_bytes` long: `due`, if it still counts
    /// from that snapshot, also waits for entries of the ratio times that many bytes, those
    /// applied since the snapshot included.
    pub fn learned_size(&self, due: &mut SnapshotDue, since: LogIndex, snapshot_bytes: u64) {
        if due.since == since && *due != SnapshotDue::NEVER {
            due.bytes_left = snapshot_bytes
                .saturating_mul(self.log_ratio)
                .saturating_sub(due.applied_bytes);
        }
    }
}

impl SnapshotDue {
    /// No snapshot ever.
    pub const NEVER: SnapshotDue = SnapshotDue {
        since: LogIndex(0),
        index: LogIndex(u64::MAX),
        bytes_left: 0,
        applied_bytes: 0,
    };

    /// The group applied entries of `bytes` bytes.
    pub fn applied(&mut self, bytes: u64) {
        self.bytes_left = self.bytes_left.saturating_sub(bytes);
        self.applied_bytes = self.applied_bytes.saturating_add(bytes);
    }

    /// Whether the snapshot is due once the group applied through `applied`.
    pub fn is_due(&self, applied: LogIndex) -> bool {
        applied >= self.index && self.bytes_left == 0
    }
}

/// Passes writes on to a writer and counts their bytes (the size of a snapshot being written).
pub struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: io::Write> CountingWriter<W> {
    /// Counts what goes to `inner`.
    pub fn new(inner: W) -> Self {
        CountingWriter { inner, bytes: 0 }
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl<W: io::Write> io::Write for CountingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_the_count_and_the_bytes_must_be_reached() {
        let policy = SnapshotPolicy {
            entries: 100,
            log_ratio: 4,
        };
        let mut due = policy.after(LogIndex(1_000));
        policy.learned_size(&mut due, LogIndex(1_000), 50);
        assert!(!due.is_due(LogIndex(1_099)));
        due.applied(199);
        assert!(!due.is_due(LogIndex(1_100)), "one byte short of 4 × 50");
        due.applied(1);
        assert!(!due.is_due(LogIndex(1_099)), "one entry short");
        assert!(due.is_due(LogIndex(1_100)));
    }

    #[test]
    fn an_unknown_size_or_a_zero_ratio_leaves_the_count_alone() {
        let count_only = SnapshotPolicy {
            entries: 10,
            log_ratio: 0,
        };
        let mut due = count_only.after(LogIndex(5));
        count_only.learned_size(&mut due, LogIndex(5), 1 << 20);
        assert!(due.is_due(LogIndex(15)));
        let ratio = SnapshotPolicy {
            entries: 10,
            log_ratio: 4,
        };
        let mut due = ratio.after(LogIndex(5));
        assert!(due.is_due(LogIndex(15)), "size unknown");
        ratio.learned_size(&mut due, LogIndex(5), 1);
        assert!(!due.is_due(LogIndex(15)));
    }

    #[test]
    fn zero_entries_means_never() {
        let policy = SnapshotPolicy {
            entries: 0,
            log_ratio: 4,
        };
        let mut due = policy.after(LogIndex(0));
        assert_eq!(due, SnapshotDue::NEVER);
        policy.learned_size(&mut due, LogIndex(0), 0);
        due.applied(u64::MAX);
        assert!(!due.is_due(LogIndex(u64::MAX - 1)));
    }

    #[test]
    fn a_size_learned_late_counts_the_entries_applied_meanwhile_and_only_for_its_snapshot() {
        let policy = SnapshotPolicy {
            entries: 10,
            log_ratio: 2,
        };
        let mut due = policy.after(LogIndex(100));
        due.applied(150);
        policy.learned_size(&mut due, LogIndex(100), 100);
        due.applied(49);
        assert!(!due.is_due(LogIndex(110)), "one byte short of 2 × 100");
        due.applied(1);
        assert!(due.is_due(LogIndex(110)));

        let mut due = policy.after(LogIndex(200));
        policy.learned_size(&mut due, LogIndex(100), 1 << 20);
        assert!(due.is_due(LogIndex(210)), "the size of an older snapshot changes nothing");
    }
}
