//! The voters' lease promise, checked as messages cross the network.
//!
//! A leader serves lease reads while a majority acknowledged a read round that started less
//! than the lease ago; what makes that safe is a promise of every voter that acknowledges a
//! round: it grants no vote (other than the transfer vote its leader asked for) until the lease
//! of every round it acknowledged has run out. A follower keeps it by refusing votes for an
//! election timeout after it last heard from a leader, which outlasts the lease.
//!
//! [`LeasePromises`] records when each leader's round was first sent and the highest round
//! each voter acknowledged to it, and fails a vote granted inside the lease of one of them.
//! It catches a broken promise at once, whether or not the vote goes on to elect anybody while
//! the old leader still serves reads.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::{AppendOutcome, Message};
use crate::sim::checker::Violation;
use crate::types::{GroupId, NodeId, Term};

#[derive(Default)]
pub struct LeasePromises {
    /// How long a round's lease lasts (simulated microseconds).
    lease_us: u64,
    /// (group, leader, term, round) → when the round was first sent.
    round_sent: BTreeMap<(GroupId, NodeId, Term, u64), u64>,
    /// (group, voter, leader, term) → the highest round the voter acknowledged.
    acknowledged: BTreeMap<(GroupId, NodeId, NodeId, Term), u64>,
    /// (group, voter, term): the voter received a transfer vote request of that term.
    transfer_votes: BTreeSet<(GroupId, NodeId, Term)>,
}

impl LeasePromises {
    pub fn new(lease_us: u64) -> LeasePromises {
        LeasePromises {
            lease_us,
            ..LeasePromises::default()
        }
    }

    /// `from` sent `message` of `group` to `to` at `now_us`.
    pub fn sent(
        &mut self,
        from: NodeId,
        to: NodeId,
        group: GroupId,
        message: &Message,
        now_us: u64,
    ) -> Result<(), Violation> {
        match message {
            Message::Append(request) => {
                self.round_sent
                    .entry((group, from, request.term, request.read_round))
                    .or_insert(now_us);
            }
            Message::AppendResponse {
                term,
                outcome: AppendOutcome::Accepted { read_round, .. },
            } => {
                let acked = self
                    .acknowledged
                    .entry((group, from, to, *term))
                    .or_default();
                *acked = (*acked).max(*read_round);
            }
            Message::VoteResponse {
                term,
                pre_vote: false,
                granted: true,
            } if !self.transfer_votes.contains(&(group, from, *term)) => {
                self.check_vote(from, to, group, *term, now_us)?
            }
            _ => {}
        }
        Ok(())
    }

    /// `to` received `message` of `group`.
    pub fn delivered(&mut self, to: NodeId, group: GroupId, message: &Message) {
        if let Message::VoteRequest {
            term,
            pre_vote: false,
            transfer: true,
            ..
        } = message
        {
            self.transfer_votes.insert((group, to, *term));
        }
    }

    fn check_vote(
        &self,
        voter: NodeId,
        candidate: NodeId,
        group: GroupId,
        term: Term,
        now_us: u64,
    ) -> Result<(), Violation> {
        let acknowledged = self
            .acknowledged
            .range((group, voter, NodeId(0), Term(0))..=(group, voter, NodeId(u64::MAX), term));
        for (&(_, _, leader, leader_term), &round) in acknowledged {
            if leader_term >= term {
                continue;
            }
            let Some(&sent_us) = self.round_sent.get(&(group, leader, leader_term, round)) else {
                continue;
            };
            if now_us < sent_us + self.lease_us {
                return Err(Violation(format!(
                    "{voter} voted for {candidate} in {term} of {group} inside the lease of \
                     {leader}, leader of {leader_term}: it acknowledged read round {round}, sent \
                     at {:.3}ms, whose lease lasts until {:.3}ms",
                    sent_us as f64 / 1000.0,
                    (sent_us + self.lease_us) as f64 / 1000.0
                )));
            }
        }
        Ok(())
    }
}
