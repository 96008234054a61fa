//! Garbled messages: what a peer with a bug, or a network that corrupts data its checksums
//! miss, could deliver. Each garbled message breaks a rule every message of a correct peer
//! keeps, whatever the receiver's state, so a correct core drops it (and counts it) and a
//! core that trusts its peers ([`crate::core::BrokenRule::TrustPeerInput`]) acts on it.

use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::constants::{INDEX_MAX, TERM_MAX};
use crate::core::{AppendOutcome, Message, RejectHint};
use crate::types::{LogIndex, Term};

/// A copy of `message` that no correct peer sends.
pub fn garble(message: &Message, rng: &mut Xoshiro256PlusPlus) -> Message {
    match message {
        // Within a leadership the leader's log only grows, so no answer names an index at
        // the cap: a leader never holds that many entries.
        Message::AppendResponse { term, .. } => Message::AppendResponse {
            term: *term,
            outcome: if rng.random_bool(0.5) {
                AppendOutcome::Rejected {
                    prev_index: LogIndex(INDEX_MAX),
                    hint: RejectHint {
                        last_index: LogIndex(INDEX_MAX),
                        conflict: None,
                    },
                }
            } else {
                AppendOutcome::Accepted {
                    match_index: LogIndex(INDEX_MAX),
                    read_round: 0,
                }
            },
        },
        // Batches that do not continue the log at `prev_index`.
        Message::Append(request) if !request.batches.is_empty() => {
            let mut request = request.clone();
            request.prev_index = request.prev_index.next();
            Message::Append(request)
        }
        // A term beyond the largest a peer may send.
        other => with_term(other.clone(), Term(TERM_MAX + 1)),
    }
}

fn with_term(mut message: Message, new_term: Term) -> Message {
    match &mut message {
        Message::VoteRequest { term, .. }
        | Message::VoteResponse { term, .. }
        | Message::AppendResponse { term, .. }
        | Message::TimeoutNow { term }
        | Message::InstallSnapshot { term, .. } => *term = new_term,
        Message::Append(request) => request.term = new_term,
    }
    message
}
