//! Who belongs to a group: voters, the outgoing voters of a joint configuration, and learners;
//! the quorum rules over them; and the encoding of configuration entries.
//!
//! Changes follow joint consensus (Raft thesis §4.3): moving the voters from `C_old` to `C_new`
//! goes through a joint configuration in which every decision (an election, a commit, a
//! confirmed read round, check-quorum) needs a majority of `C_old` **and** a majority of
//! `C_new`. A configuration takes effect on a node as soon as its entry is in the node's log,
//! committed or not; a truncated configuration entry reverts the node to the one before it.
//! Learners receive the log but never vote and never count towards a quorum.
//!
//! Nodes answer messages without consulting their configuration (thesis §4.1): a node being
//! added, or one whose log lags behind the configuration that made it a voter, must still hear
//! the leader and vote. A removed member cannot disrupt the group all the same: it never
//! campaigns once its log holds the committed configuration without it; before that, its
//! log lacks that entry, so it wins no pre-vote; and members that hear from a leader refuse
//! its (pre-)votes and ignore its higher terms (check-quorum's lease). Leaders ignore answers
//! from nodes outside the configuration.
//!
//! Invariants of a [`Membership`]: each list is sorted and free of duplicates; a learner is not
//! a voter of either side; `outgoing` is empty unless the configuration is joint.
//!
//! Encoding of a configuration entry's payload (all little-endian): a format byte, the counts
//! of voters, outgoing voters and learners (`u16` each), the ids (`u64` each) in that order,
//! then an opaque context the driver attaches (the members' addresses) up to the end.

use std::fmt;

use bytes::Bytes;

use crate::core::quorum;
use crate::types::NodeId;

/// Format byte of an encoded configuration entry.
const CONFIG_FORMAT: u8 = 1;

/// Most members one configuration may list (all three lists together).
pub const MEMBERS_MAX: usize = 64;

/// A group's configuration. See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Membership {
    /// The voters (during a joint configuration: the incoming voters, `C_new`).
    pub voters: Vec<NodeId>,
    /// The voters being replaced (`C_old`) while the configuration is joint; empty otherwise.
    pub outgoing: Vec<NodeId>,
    /// Members that receive the log but do not vote.
    pub learners: Vec<NodeId>,
}

/// Why bytes are not a configuration, or a requested change is not allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// The bytes of a configuration entry do not decode (what is wrong with them).
    #[error("configuration entry is malformed: {0}")]
    Malformed(&'static str),
    /// The configuration breaks a rule (which one).
    #[error("configuration is invalid: {0}")]
    Invalid(String),
}

/// One change an operator asks for; applied to the current (non-joint) configuration by
/// [`Membership::changed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// A new member that receives the log without voting.
    AddLearner(NodeId),
    /// A learner becomes a voter (through a joint configuration).
    Promote(NodeId),
    /// A voter or learner leaves (a voter through a joint configuration).
    Remove(NodeId),
}

impl Membership {
    /// A simple configuration of `voters` (sorted and deduplicated here).
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        let mut membership = Membership {
            voters: voters.into_iter().collect(),
            ..Membership::default()
        };
        membership.voters.sort();
        membership.voters.dedup();
        membership
    }

    /// Whether this is a joint configuration (`C_old,new`).
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Whether `id` votes in this configuration (on either side of a joint one).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok() || self.outgoing.binary_search(&id).is_ok()
    }

    /// Whether `id` belongs to the group at all (voter of either side, or learner).
    pub fn is_member(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.binary_search(&id).is_ok()
    }

    /// How many members there are (the length of [`Membership::members`]), without
    /// allocating: O(members) lookups.
    pub fn member_count(&self) -> usize {
        let outgoing_only = self
            .outgoing
            .iter()
            .filter(|id| self.voters.binary_search(id).is_err())
            .count();
        let learners_only = self
            .learners
            .iter()
            .filter(|&&id| !self.is_voter(id))
            .count();
        self.voters.len() + outgoing_only + learners_only
    }

    /// Every member, each once, in id order.
    pub fn members(&self) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self
            .voters
            .iter()
            .chain(&self.outgoing)
            .chain(&self.learners)
            .copied()
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// The non-empty voter sets whose majorities a decision needs (one, or two when joint).
    fn voter_sets(&self) -> impl Iterator<Item = &[NodeId]> + Clone {
        [&self.voters[..], &self.outgoing[..]]
            .into_iter()
            .filter(|set| !set.is_empty())
    }

    /// Whether the voters for which `agrees` holds form a majority of every voter set. An empty
    /// configuration has no quorum.
    pub fn has_quorum(&self, agrees: impl Fn(NodeId) -> bool) -> bool {
        let mut sets = self.voter_sets().peekable();
        sets.peek().is_some()
            && sets.all(|set| {
                set.iter().filter(|&&id| agrees(id)).count() >= quorum::majority(set.len())
            })
    }

    /// Whether the voters for which `refuses` holds make a quorum impossible (a majority of
    /// some voter set refuses).
    pub fn quorum_blocked(&self, refuses: impl Fn(NodeId) -> bool) -> bool {
        self.voter_sets()
            .any(|set| set.iter().filter(|&&id| refuses(id)).count() >= quorum::majority(set.len()))
    }

    /// The highest value a quorum has reached, with `value(id)` for each voter: the smallest of
    /// the voter sets' majority values. `None` for an empty configuration.
    pub fn quorum_value<T: Copy + Ord>(&self, value: impl Fn(NodeId) -> T) -> Option<T> {
        self.voter_sets()
            .map(|set| quorum::committed_index(set.iter().map(|&id| value(id))))
            .min()
    }

    /// The configuration after `change`, which must be allowed from this (non-joint) one.
    /// Changes of the voters yield a joint configuration; learner changes a simple one.
    pub fn changed(&self, change: MembershipChange) -> Result<Membership, MembershipError> {
        if self.is_joint() {
            return Err(MembershipError::Invalid(
                "a configuration change is still in progress".into(),
            ));
        }
        let mut next = self.clone();
        match change {
            MembershipChange::AddLearner(id) => {
                if self.is_member(id) {
                    return Err(MembershipError::Invalid(format!(
                        "node {id} is already a member"
                    )));
                }
                next.learners.push(id);
                next.learners.sort();
            }
            MembershipChange::Promote(id) => {
                let Ok(at) = self.learners.binary_search(&id) else {
                    return Err(MembershipError::Invalid(format!(
                        "node {id} is not a learner"
                    )));
                };
                next.learners.remove(at);
                next.voters.push(id);
                next.voters.sort();
                next.outgoing = self.voters.clone();
            }
            MembershipChange::Remove(id) => {
                if let Ok(at) = self.learners.binary_search(&id) {
                    next.learners.remove(at);
                } else if let Ok(at) = self.voters.binary_search(&id) {
                    if self.voters.len() == 1 {
                        return Err(MembershipError::Invalid(format!(
                            "node {id} is the last voter"
                        )));
                    }
                    next.voters.remove(at);
                    next.outgoing = self.voters.clone();
                } else {
                    return Err(MembershipError::Invalid(format!(
                        "node {id} is not a member"
                    )));
                }
            }
        }
        Ok(next)
    }

    /// The simple configuration that ends this joint one (`C_new`).
    pub fn leave_joint(&self) -> Membership {
        Membership {
            voters: self.voters.clone(),
            outgoing: Vec::new(),
            learners: self.learners.clone(),
        }
    }

    /// Checks the invariants in the module docs.
    pub fn validate(&self) -> Result<(), MembershipError> {
        for (name, list) in [
            ("voters", &self.voters),
            ("outgoing voters", &self.outgoing),
            ("learners", &self.learners),
        ] {
            if list.windows(2).any(|pair| pair[0] >= pair[1]) {
                return Err(MembershipError::Invalid(format!(
                    "{name} are not sorted and unique"
                )));
            }
        }
        if let Some(both) = self.learners.iter().find(|&&id| self.is_voter(id)) {
            return Err(MembershipError::Invalid(format!(
                "node {both} is both a voter and a learner"
            )));
        }
        if self.voters.len() + self.outgoing.len() + self.learners.len() > MEMBERS_MAX {
            return Err(MembershipError::Invalid(format!(
                "more than {MEMBERS_MAX} members"
            )));
        }
        Ok(())
    }

    /// The payload of a configuration entry: this configuration and the driver's `context`.
    pub fn encode(&self, context: &[u8]) -> Vec<u8> {
        let ids = self.voters.len() + self.outgoing.len() + self.learners.len();
        let mut out = Vec::with_capacity(7 + 8 * ids + context.len());
        out.push(CONFIG_FORMAT);
        for list in [&self.voters, &self.outgoing, &self.learners] {
            out.extend_from_slice(&(list.len() as u16).to_le_bytes());
        }
        for id in self
            .voters
            .iter()
            .chain(&self.outgoing)
            .chain(&self.learners)
        {
            out.extend_from_slice(&id.0.to_le_bytes());
        }
        out.extend_from_slice(context);
        out
    }

    /// Reads a configuration entry's payload: the configuration (validated) and the context.
    pub fn decode(payload: &[u8]) -> Result<(Membership, Bytes), MembershipError> {
        let malformed = MembershipError::Malformed;
        let (&format, rest) = payload.split_first().ok_or(malformed("empty"))?;
        if format != CONFIG_FORMAT {
            return Err(malformed("unknown format"));
        }
        let count = |at: usize| -> Result<usize, MembershipError> {
            let bytes = rest.get(at..at + 2).ok_or(malformed("truncated counts"))?;
            Ok(u16::from_le_bytes([bytes[0], bytes[1]]) as usize)
        };
        let counts = [count(0)?, count(2)?, count(4)?];
        let total: usize = counts.iter().sum();
        if total > MEMBERS_MAX {
            return Err(malformed("too many members"));
        }
        let ids_end = 6 + 8 * total;
        let ids = rest.get(6..ids_end).ok_or(malformed("truncated ids"))?;
        let mut ids = ids.chunks_exact(8).map(|chunk| {
            NodeId(u64::from_le_bytes(
                chunk.try_into().expect("chunks of eight"),
            ))
        });
        let mut take = |n: usize| -> Vec<NodeId> { ids.by_ref().take(n).collect() };
        let membership = Membership {
            voters: take(counts[0]),
            outgoing: take(counts[1]),
            learners: take(counts[2]),
        };
        membership.validate()?;
        Ok((membership, Bytes::copy_from_slice(&rest[ids_end..])))
    }
}

impl fmt::Display for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |ids: &[NodeId]| {
            ids.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        write!(f, "voters [{}]", list(&self.voters))?;
        if self.is_joint() {
            write!(f, " joint with [{}]", list(&self.outgoing))?;
        }
        if !self.learners.is_empty() {
            write!(f, " learners [{}]", list(&self.learners))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(values: &[u64]) -> Vec<NodeId> {
        values.iter().map(|&v| NodeId(v)).collect()
    }

    #[test]
    fn joint_quorum_needs_both_majorities() {
        let joint = Membership {
            voters: ids(&[1, 2, 4]),
            outgoing: ids(&[1, 2, 3]),
            learners: ids(&[5]),
        };
        // 1 and 3: a majority of the old voters only.
        assert!(!joint.has_quorum(|id| [1, 3].contains(&id.0)));
        // 1 and 2: majorities of both.
        assert!(joint.has_quorum(|id| [1, 2].contains(&id.0)));
        // Learners never count.
        assert!(!joint.has_quorum(|id| [3, 4, 5].contains(&id.0)));
        assert!(!joint.quorum_blocked(|id| [3, 4].contains(&id.0)));
        assert!(joint.quorum_blocked(|id| [2, 4].contains(&id.0)));
        let matched = |id: NodeId| [0, 9, 7, 5, 3, 1][id.0 as usize];
        // New voters 1,2,4 -> 9,7,3 -> 7; old voters 1,2,3 -> 9,7,5 -> 7; joint -> 7.
        assert_eq!(joint.quorum_value(matched), Some(7));
        let lagging_new = |id: NodeId| [0, 9, 2, 5, 3, 1][id.0 as usize];
        assert_eq!(joint.quorum_value(lagging_new), Some(3));
        assert_eq!(Membership::default().quorum_value(matched), None);
        assert!(!Membership::default().has_quorum(|_| true));
        assert_eq!(joint.member_count(), joint.members().len());
        assert_eq!(joint.member_count(), 5);
        assert_eq!(Membership::default().member_count(), 0);
    }

    #[test]
    fn changes_go_through_joint_configurations() {
        let start = Membership::with_voters(ids(&[1, 2, 3]));
        let learner = start
            .changed(MembershipChange::AddLearner(NodeId(4)))
            .unwrap();
        assert!(!learner.is_joint());
        assert_eq!(learner.learners, ids(&[4]));
        let joint = learner
            .changed(MembershipChange::Promote(NodeId(4)))
            .unwrap();
        assert_eq!(joint.voters, ids(&[1, 2, 3, 4]));
        assert_eq!(joint.outgoing, ids(&[1, 2, 3]));
        assert!(joint.learners.is_empty());
        assert!(joint.changed(MembershipChange::Remove(NodeId(1))).is_err());
        let promoted = joint.leave_joint();
        let removing = promoted
            .changed(MembershipChange::Remove(NodeId(1)))
            .unwrap();
        assert_eq!(removing.voters, ids(&[2, 3, 4]));
        assert_eq!(removing.outgoing, ids(&[1, 2, 3, 4]));
        assert!(start
            .changed(MembershipChange::AddLearner(NodeId(2)))
            .is_err());
        assert!(start.changed(MembershipChange::Promote(NodeId(2))).is_err());
        assert!(start.changed(MembershipChange::Remove(NodeId(9))).is_err());
        let single = Membership::with_voters(ids(&[1]));
        assert!(single.changed(MembershipChange::Remove(NodeId(1))).is_err());
    }

    #[test]
    fn entries_round_trip_and_reject_garbage() {
        let joint = Membership {
            voters: ids(&[1, 2, 4]),
            outgoing: ids(&[1, 2, 3]),
            learners: ids(&[7]),
        };
        let payload = joint.encode(b"addresses");
        let (decoded, context) = Membership::decode(&payload).unwrap();
        assert_eq!(decoded, joint);
        assert_eq!(&context[..], b"addresses");
        for cut in 0..payload.len() - b"addresses".len() {
            assert!(Membership::decode(&payload[..cut]).is_err(), "cut at {cut}");
        }
        let unsorted = Membership {
            voters: ids(&[2, 1]),
            ..Membership::default()
        };
        assert!(Membership::decode(&unsorted.encode(b"")).is_err());
        let overlapping = Membership {
            voters: ids(&[1]),
            learners: ids(&[1]),
            ..Membership::default()
        };
        assert!(Membership::decode(&overlapping.encode(b"")).is_err());
        let mut huge = vec![CONFIG_FORMAT];
        huge.extend_from_slice(&u16::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 4]);
        assert!(Membership::decode(&huge).is_err());
    }
}
