//! A leader's bookkeeping for ReadIndex (thesis §6.4): reads waiting for the leader to prove it
//! still leads.
//!
//! Protocol. Every AppendEntries a leader sends carries its current **read round**; a follower
//! echoes the highest round it received from the leader of its current term in every
//! acknowledgement. A read that arrives is stamped with the commit index and the next round,
//! and that round is broadcast at once (one heartbeat round for every read pending at that
//! moment, however many). Once a majority (the leader included) has echoed a round, every read
//! of that round or earlier is safe at its stamped index: at some moment after the read
//! arrived, a majority still followed this leader in its term, so no other leader could have
//! committed anything the stamped index does not cover.
//!
//! Invariants:
//! - reads wait in `awaiting_commit` only while the leader has not committed an entry of its
//!   own term (until then its commit index may lag what earlier leaders committed); they are
//!   stamped when the first such commit happens;
//! - `awaiting_quorum` is ordered by round and by index (both only grow), so confirmations
//!   release a prefix;
//! - rounds only grow over the life of the core, so an echo of an old term's round can never
//!   confirm a newer read (echoes are also reset with the follower's term).

use std::collections::VecDeque;

use crate::types::LogIndex;

/// A read waiting for its round to be acknowledged by a majority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StampedRead {
    pub id: u64,
    pub index: LogIndex,
    pub round: u64,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct ReadTracker {
    round: u64,
    awaiting_commit: Vec<u64>,
    awaiting_quorum: VecDeque<StampedRead>,
}

impl ReadTracker {
    /// The round the leader's messages currently carry.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// Starts a new round and returns it.
    pub fn next_round(&mut self) -> u64 {
        self.round += 1;
        self.round
    }

    /// Parks a read until the leader commits an entry of its term.
    pub fn await_commit(&mut self, id: u64) {
        self.awaiting_commit.push(id);
    }

    /// Whether reads are parked until the leader's first commit in its term.
    pub fn has_awaiting_commit(&self) -> bool {
        !self.awaiting_commit.is_empty()
    }

    /// Stamps every parked read with `index` and `round`.
    pub fn stamp_awaiting_commit(&mut self, index: LogIndex, round: u64) {
        for id in self.awaiting_commit.drain(..) {
            self.awaiting_quorum
                .push_back(StampedRead { id, index, round });
        }
    }

    /// Queues a read stamped with `index` that waits for `round`.
    pub fn await_quorum(&mut self, id: u64, index: LogIndex, round: u64) {
        self.awaiting_quorum
            .push_back(StampedRead { id, index, round });
    }

    /// Removes and passes to `ready` every read whose round is at most `confirmed`.
    pub fn confirm(&mut self, confirmed: u64, mut ready: impl FnMut(StampedRead)) {
        while let Some(read) = self.awaiting_quorum.front() {
            if read.round > confirmed {
                break;
            }
            ready(self.awaiting_quorum.pop_front().expect("peeked"));
        }
    }

    /// Removes every pending read (the leader stepped down); passes each id to `refused`.
    pub fn abandon(&mut self, mut refused: impl FnMut(u64)) {
        for id in self.awaiting_commit.drain(..) {
            refused(id);
        }
        for read in self.awaiting_quorum.drain(..) {
            refused(read.id);
        }
    }

    /// Whether no read is pending.
    pub fn is_empty(&self) -> bool {
        self.awaiting_commit.is_empty() && self.awaiting_quorum.is_empty()
    }

    /// Checks, in O(1), that the newest read awaiting a quorum is of a round already started.
    pub fn check_newest(&self) -> Result<(), String> {
        if self
            .awaiting_quorum
            .back()
            .is_none_or(|read| read.round <= self.round)
        {
            Ok(())
        } else {
            Err("pending reads are out of order or ahead of the current round".into())
        }
    }

    /// Checks the ordering invariant of `awaiting_quorum` (rounds and indexes never decrease,
    /// none ahead of the current round): O(pending reads).
    pub fn check(&self) -> Result<(), String> {
        let ordered = self
            .awaiting_quorum
            .iter()
            .zip(self.awaiting_quorum.iter().skip(1))
            .all(|(a, b)| a.round <= b.round && a.index <= b.index);
        if ordered {
            self.check_newest()
        } else {
            Err("pending reads are out of order or ahead of the current round".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmation_releases_a_prefix_in_order() {
        let mut reads = ReadTracker::default();
        let first = reads.next_round();
        reads.await_quorum(1, LogIndex(5), first);
        reads.await_quorum(2, LogIndex(5), first);
        let second = reads.next_round();
        reads.await_quorum(3, LogIndex(7), second);
        reads.check().unwrap();
        let mut ready = Vec::new();
        reads.confirm(first, |read| ready.push(read.id));
        assert_eq!(ready, vec![1, 2]);
        reads.confirm(first, |read| ready.push(read.id));
        assert_eq!(ready, vec![1, 2]);
        reads.confirm(second, |read| ready.push(read.id));
        assert_eq!(ready, vec![1, 2, 3]);
    }

    #[test]
    fn parked_reads_are_stamped_together_and_abandoned_on_step_down() {
        let mut reads = ReadTracker::default();
        reads.await_commit(1);
        reads.await_commit(2);
        assert!(reads.has_awaiting_commit());
        let round = reads.next_round();
        reads.stamp_awaiting_commit(LogIndex(9), round);
        assert!(!reads.has_awaiting_commit());
        reads.await_commit(3);
        let mut refused = Vec::new();
        reads.abandon(|id| refused.push(id));
        assert_eq!(refused, vec![3, 1, 2]);
        let mut ready = Vec::new();
        reads.confirm(u64::MAX, |read| ready.push(read.id));
        assert!(ready.is_empty());
    }
}
