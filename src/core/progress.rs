//! A leader's view of one follower's log.
//!
//! Invariants: `match_index < next_index`; `match_index` only grows within a term (it is what
//! the follower acknowledged as **durable**), except when the follower shows it lost its disk
//! ([`Progress::forget_match`]); `inflight` lists the last index and byte size of
//! each unacknowledged AppendEntries in send order, `inflight_bytes` is their sum, and both stay
//! within the configured window.
//!
//! States: in `Probe` the leader sends one message and waits for an answer (`paused`) because it
//! does not know where the follower's log ends; in `Replicate` it streams messages back to back
//! within the inflight window, assuming they arrive; in `Snapshot` the follower needs entries
//! the leader compacted away, a snapshot up to `index` is on its way, and nothing else is sent
//! (heartbeats aside) until the follower acknowledges that index or the transfer fails.

use std::collections::VecDeque;

use crate::types::LogIndex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    Probe,
    Replicate,
    Snapshot { index: LogIndex },
}

#[derive(Clone, Debug)]
pub struct Progress {
    pub match_index: LogIndex,
    pub next_index: LogIndex,
    pub state: ProgressState,
    /// In probe state: a message is out and no answer came yet.
    pub paused: bool,
    /// Heard from since the last check-quorum round.
    pub recently_active: bool,
    /// Highest read round the follower echoed (see `core::reads`).
    pub read_round_acked: u64,
    inflight: VecDeque<(LogIndex, usize)>,
    inflight_bytes: usize,
}

impl Progress {
    /// Progress of a follower about which nothing is known, for a leader whose log ends at
    /// `last_index`.
    pub fn new(last_index: LogIndex) -> Progress {
        Progress {
            match_index: LogIndex::ZERO,
            next_index: last_index.next(),
            state: ProgressState::Probe,
            paused: false,
            recently_active: true,
            read_round_acked: 0,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
        }
    }

    /// Whether another message with entries may be sent now.
    pub fn can_send(&self, messages_max: usize, bytes_max: usize) -> bool {
        match self.state {
            ProgressState::Probe => !self.paused,
            ProgressState::Replicate => {
                self.inflight.len() < messages_max && self.inflight_bytes < bytes_max
            }
            ProgressState::Snapshot { .. } => false,
        }
    }

    /// Records a message carrying entries up to `last_index` (`bytes` body bytes).
    pub fn sent(&mut self, last_index: LogIndex, bytes: usize) {
        match self.state {
            ProgressState::Probe => self.paused = true,
            ProgressState::Replicate => {
                self.next_index = last_index.next();
                self.inflight.push_back((last_index, bytes));
                self.inflight_bytes += bytes;
            }
            ProgressState::Snapshot { .. } => {}
        }
    }

    /// The follower is durable and matching up to `index`. Returns whether `match_index` grew.
    pub fn acknowledged(&mut self, index: LogIndex) -> bool {
        self.paused = false;
        while let Some(&(last, bytes)) = self.inflight.front() {
            if last > index {
                break;
            }
            self.inflight.pop_front();
            self.inflight_bytes -= bytes;
        }
        if index <= self.match_index {
            return false;
        }
        self.match_index = index;
        if self.next_index <= index {
            self.next_index = index.next();
        }
        match self.state {
            ProgressState::Probe => self.become_replicate(),
            ProgressState::Snapshot { index: sent } if index >= sent => self.become_replicate(),
            _ => {}
        }
        true
    }

    /// Switches to streaming from just after the match.
    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.paused = false;
        self.next_index = self.match_index.next();
    }

    /// Falls back to probing from `next_index` (never below the match).
    pub fn become_probe(&mut self, next_index: LogIndex) {
        self.state = ProgressState::Probe;
        self.paused = false;
        self.next_index = next_index.max(self.match_index.next());
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    /// A snapshot up to `index` is being sent: wait for its acknowledgement.
    pub fn become_snapshot(&mut self, index: LogIndex) {
        self.state = ProgressState::Snapshot { index };
        self.paused = false;
        self.next_index = index.next().max(self.match_index.next());
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    /// The follower lost its log beyond `last_index` (a replaced disk): its acknowledgements
    /// above it no longer hold. The commit index is unaffected: it never goes back.
    pub fn forget_match(&mut self, last_index: LogIndex) {
        self.match_index = self.match_index.min(last_index);
        self.become_probe(last_index.next());
    }

    pub fn inflight_messages(&self) -> usize {
        self.inflight.len()
    }

    pub fn inflight_bytes(&self) -> usize {
        self.inflight_bytes
    }

    /// Checks the O(1) invariants of the module docs: `match_index < next_index <=
    /// leader_last_index + 1`, and no bytes counted in flight when no message is.
    pub fn check_bounds(&self, leader_last_index: LogIndex) -> Result<(), String> {
        if self.match_index >= self.next_index {
            return Err(format!("{self:?}: match not below next"));
        }
        if self.next_index > leader_last_index.next() {
            return Err(format!(
                "{self:?}: next beyond leader's last {leader_last_index}"
            ));
        }
        if self.inflight.is_empty() && self.inflight_bytes != 0 {
            return Err(format!("{self:?}: inflight bytes out of sync"));
        }
        Ok(())
    }

    /// Checks that `inflight_bytes` is the sum of the messages in flight: O(messages in
    /// flight), at most the configured window.
    pub fn check_inflight(&self) -> Result<(), String> {
        let sum: usize = self.inflight.iter().map(|&(_, bytes)| bytes).sum();
        if sum != self.inflight_bytes {
            return Err(format!("{self:?}: inflight bytes out of sync"));
        }
        Ok(())
    }
}
