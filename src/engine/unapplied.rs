//! How many bytes of log entries each group holds that its state machine has not applied yet:
//! the memory a leader without a working majority accumulates at its clients' rate, which the
//! engine caps ([`crate::engine::EngineConfig::uncommitted_bytes_max`]).
//!
//! A batch counts with its encoded length (the body it keeps alive, however much of it its
//! window shows) from the moment it is appended to this node's log until it leaves the unapplied
//! suffix: its last entry applied, a snapshot compacting over it, or a truncation removing its
//! first entry. A batch cut in the middle keeps its whole count: the entries left still hold the
//! body. The count is kept from the log actions themselves (append, truncate, apply, compact),
//! so it is exact for every role and every way entries leave the log.
//!
//! Invariants: per group, the tracked batches are in increasing index order and do not overlap
//! (the log is a sequence: an append always follows the last entry, a truncation removes a
//! suffix), and `bytes` is the sum of their lengths.

use std::collections::{BTreeMap, VecDeque};

use crate::batch::EntryBatch;
use crate::types::{GroupId, LogIndex};

struct Tracked {
    first: LogIndex,
    last: LogIndex,
    bytes: usize,
}

#[derive(Default)]
struct GroupLedger {
    batches: VecDeque<Tracked>,
    bytes: usize,
}

/// See the module documentation.
#[derive(Default)]
pub struct UnappliedBytes {
    groups: BTreeMap<GroupId, GroupLedger>,
}

impl UnappliedBytes {
    /// Bytes `group` holds unapplied.
    pub fn of(&self, group: GroupId) -> usize {
        self.groups.get(&group).map_or(0, |ledger| ledger.bytes)
    }

    /// `batch` was appended to `group`'s log.
    pub fn appended(&mut self, group: GroupId, batch: &EntryBatch) {
        let ledger = self.groups.entry(group).or_default();
        debug_assert!(ledger
            .batches
            .back()
            .is_none_or(|back| back.last < batch.first_index()));
        ledger.bytes += batch.encoded_len();
        ledger.batches.push_back(Tracked {
            first: batch.first_index(),
            last: batch.last_index(),
            bytes: batch.encoded_len(),
        });
    }

    /// `group`'s log lost every entry from `from` on.
    pub fn truncated(&mut self, group: GroupId, from: LogIndex) {
        let Some(ledger) = self.groups.get_mut(&group) else {
            return;
        };
        while let Some(back) = ledger.batches.back_mut() {
            if back.first >= from {
                ledger.bytes -= back.bytes;
                ledger.batches.pop_back();
            } else {
                back.last = back.last.min(from.prev());
                break;
            }
        }
    }

    /// `group`'s entries up to `through` were applied (or a snapshot replaced them).
    pub fn released_through(&mut self, group: GroupId, through: LogIndex) {
        let Some(ledger) = self.groups.get_mut(&group) else {
            return;
        };
        while ledger
            .batches
            .front()
            .is_some_and(|front| front.last <= through)
        {
            let front = ledger.batches.pop_front().expect("peeked");
            ledger.bytes -= front.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchKind;
    use crate::types::Term;

    const G: GroupId = GroupId(3);

    fn batch(first: u64, entries: usize) -> EntryBatch {
        let payload = [7u8; 100];
        EntryBatch::encode(
            BatchKind::Command,
            Term(1),
            LogIndex(first),
            (0..entries).map(|_| &payload[..]),
        )
    }

    #[test]
    fn counts_follow_appends_truncations_and_applies_exactly() {
        let mut ledger = UnappliedBytes::default();
        let (a, b, c) = (batch(1, 3), batch(4, 2), batch(6, 1));
        for appended in [&a, &b, &c] {
            ledger.appended(G, appended);
        }
        let all = a.encoded_len() + b.encoded_len() + c.encoded_len();
        assert_eq!(ledger.of(G), all);
        assert_eq!(ledger.of(GroupId(9)), 0, "other groups hold nothing");
        // Applying part of a batch releases nothing: its body is still held.
        ledger.released_through(G, LogIndex(2));
        assert_eq!(ledger.of(G), all);
        ledger.released_through(G, LogIndex(3));
        assert_eq!(ledger.of(G), b.encoded_len() + c.encoded_len());
        // A cut inside `b` keeps it (entry 4 stays), drops `c`.
        ledger.truncated(G, LogIndex(5));
        assert_eq!(ledger.of(G), b.encoded_len());
        // `b` now ends at 4: a new batch at 5 follows it, and applying 4 releases `b` alone.
        let d = batch(5, 2);
        ledger.appended(G, &d);
        ledger.released_through(G, LogIndex(4));
        assert_eq!(ledger.of(G), d.encoded_len());
        ledger.truncated(G, LogIndex(5));
        assert_eq!(ledger.of(G), 0);
        // A snapshot far beyond the log releases everything.
        ledger.appended(G, &batch(5, 1));
        ledger.released_through(G, LogIndex(1_000));
        assert_eq!(ledger.of(G), 0);
    }
}
