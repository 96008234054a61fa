//! Messages exchanged between the cores of one group on different nodes.
//!
//! Every message carries the sender's term; a receiver first reconciles terms (see
//! [`crate::core::Raft`]) and only then looks at the rest.
//!
//! A message comes from another node and is not trusted: before anything else the receiver
//! checks [`Message::check_well_formed`], what any message a correct peer sends satisfies
//! whatever the receiver's state. Terms and indexes stay within [`TERM_MAX`] and
//! [`INDEX_MAX`], so the core's `+ 1` never overflows; AppendEntries batches are contiguous
//! after `prev_index` and their terms never decrease from `prev_term` up to the message's term,
//! as in the log they come from.

use bytes::Bytes;

use crate::batch::EntryBatch;
use crate::constants::{INDEX_MAX, TERM_MAX};
use crate::core::membership::Membership;
use crate::types::{LogIndex, Term};

/// A Raft message of one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// RequestVote, or a pre-vote when `pre_vote` (then `term` is the term the candidate would
    /// campaign in, and nothing is persisted by anybody).
    VoteRequest {
        term: Term,
        last_index: LogIndex,
        last_term: Term,
        pre_vote: bool,
        /// Sent on a leader's request (TimeoutNow): voters skip the leader-lease check.
        transfer: bool,
    },
    /// Answer to a (pre-)vote request. A granted pre-vote carries the requested term; any
    /// refusal carries the voter's own term.
    VoteResponse {
        term: Term,
        pre_vote: bool,
        granted: bool,
    },
    /// AppendEntries; a heartbeat is one with no batches.
    Append(AppendRequest),
    /// Answer to AppendEntries.
    AppendResponse { term: Term, outcome: AppendOutcome },
    /// Leadership transfer: start an election now, skipping pre-vote.
    TimeoutNow { term: Term },
    /// InstallSnapshot: the leader's snapshot replaces the follower's log up to `snapshot.index`.
    /// A leader's core emits it without the data; the driver streams the snapshot's bytes and
    /// hands the message to the receiving core only once it holds them durably. Answered with
    /// an [`Message::AppendResponse`].
    InstallSnapshot { term: Term, snapshot: SnapshotMeta },
}

/// What a snapshot covers: the state after applying every entry up to `index` (of `term`), and
/// the configuration in force at that point.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub index: LogIndex,
    pub term: Term,
    pub membership: Membership,
    /// The driver's context of that configuration's entry.
    pub context: Bytes,
}

/// AppendEntries: `batches` follow the entry `(prev_index, prev_term)` in the leader's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendRequest {
    pub term: Term,
    pub prev_index: LogIndex,
    pub prev_term: Term,
    pub commit: LogIndex,
    /// The leader's current read round (see `core::reads`), echoed by acknowledgements.
    pub read_round: u64,
    pub batches: Vec<EntryBatch>,
}

/// A follower's answer to AppendEntries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The follower's log matches the leader's and is **durable** up to `match_index`;
    /// `read_round` is the highest read round it received from this leader.
    Accepted {
        match_index: LogIndex,
        read_round: u64,
    },
    /// The follower's log has no entry matching `prev_index`; `hint` says where to retry.
    Rejected {
        prev_index: LogIndex,
        hint: RejectHint,
    },
}

/// Where a leader should back up to after a rejection, so it needs one round trip per
/// conflicting term rather than one per entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejectHint {
    /// The follower's last index.
    pub last_index: LogIndex,
    /// The term of the follower's entry at `prev_index`, when it has one, and the first index
    /// the follower holds in that term.
    pub conflict: Option<(Term, LogIndex)>,
}

impl Message {
    /// The sender's term (for a pre-vote request, the proposed term).
    pub fn term(&self) -> Term {
        match self {
            Message::VoteRequest { term, .. }
            | Message::VoteResponse { term, .. }
            | Message::AppendResponse { term, .. }
            | Message::TimeoutNow { term }
            | Message::InstallSnapshot { term, .. } => *term,
            Message::Append(request) => request.term,
        }
    }

    /// Checks what every message a correct peer sends satisfies, whatever the receiver's
    /// state (see the module docs); returns what is wrong with the first violation.
    pub fn check_well_formed(&self) -> Result<(), &'static str> {
        let term = self.term();
        if term.0 > TERM_MAX {
            return Err("term beyond the largest a peer may send");
        }
        let index_ok = |index: LogIndex| index.0 <= INDEX_MAX;
        match self {
            Message::VoteRequest { last_index, .. } => {
                if !index_ok(*last_index) {
                    return Err("vote request for a log beyond the index cap");
                }
            }
            Message::VoteResponse { .. } | Message::TimeoutNow { .. } => {}
            Message::Append(request) => request.check_entries()?,
            Message::AppendResponse { outcome, .. } => match *outcome {
                AppendOutcome::Accepted { match_index, .. } => {
                    if !index_ok(match_index) {
                        return Err("acknowledged index beyond the cap");
                    }
                }
                AppendOutcome::Rejected { prev_index, hint } => {
                    let conflict_ok = hint.conflict.is_none_or(|(_, first)| index_ok(first));
                    if !index_ok(prev_index) || !index_ok(hint.last_index) || !conflict_ok {
                        return Err("rejection naming an index beyond the cap");
                    }
                }
            },
            Message::InstallSnapshot { snapshot, .. } => {
                if !index_ok(snapshot.index) || snapshot.term > term {
                    return Err("snapshot beyond the leader's term or the index cap");
                }
            }
        }
        Ok(())
    }
}

impl AppendRequest {
    /// Checks that the batches continue the log at `prev_index` as a leader's log of this
    /// term can: contiguous, terms from `prev_term` up to the request's term, never
    /// decreasing, and every index within the cap.
    fn check_entries(&self) -> Result<(), &'static str> {
        if self.prev_term > self.term || self.prev_index.0 > INDEX_MAX || self.commit.0 > INDEX_MAX
        {
            return Err("append request beyond the leader's term or the index cap");
        }
        let (mut last_index, mut last_term) = (self.prev_index, self.prev_term);
        for batch in &self.batches {
            if batch.first_index() != last_index.next() {
                return Err("append request whose batches are not contiguous");
            }
            if batch.term() < last_term || batch.term() > self.term {
                return Err("append request whose entry terms go back or beyond its term");
            }
            (last_index, last_term) = (batch.last_index(), batch.term());
            if last_index.0 > INDEX_MAX {
                return Err("append request beyond the index cap");
            }
        }
        Ok(())
    }
}
