//! [`Work`]: one request to a group (public as `api::Work`), as [`crate::api::Node::run_batch`] takes many of them at
//! once (and the node's single-request methods and client connections one at a time).

use bytes::Bytes;

use crate::types::{GroupId, ReadConsistency, SessionRequest};

/// A proposal, a session registration or a read for one group: what [`Node::propose`],
/// [`Node::propose_in_session`], [`Node::register_session`] and [`Node::read`] each ask for
/// alone, and [`Node::run_batch`] for many requests in one hand-over to the shard.
///
/// [`Node::propose`]: crate::api::Node::propose
/// [`Node::propose_in_session`]: crate::api::Node::propose_in_session
/// [`Node::register_session`]: crate::api::Node::register_session
/// [`Node::read`]: crate::api::Node::read
/// [`Node::run_batch`]: crate::api::Node::run_batch
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// Propose `payload` to `group`: answered with the entry's index and output once it is
    /// committed and applied on this node.
    Propose {
        /// The group to propose to.
        group: GroupId,
        /// The entry's payload, handed to the state machine's `apply`.
        payload: Bytes,
        /// The proposal's place in a client session, if it has one (applied at most once
        /// however often it is proposed; see [`Node::propose_in_session`]).
        ///
        /// [`Node::propose_in_session`]: crate::api::Node::propose_in_session
        session: Option<SessionRequest>,
    },
    /// Open a client session of `group`: answered with the registration's index, which is the
    /// session's id.
    RegisterSession {
        /// The group to open the session in.
        group: GroupId,
    },
    /// Read `group`'s state machine once `consistency` allows: answered with the state
    /// machine's answer to `query` as the output, and the index the answer reflects.
    Read {
        /// The group to read.
        group: GroupId,
        /// Handed to the state machine's `query`.
        query: Bytes,
        /// How fresh the answer must be.
        consistency: ReadConsistency,
    },
}

impl Work {
    /// The group the work is for.
    pub fn group(&self) -> GroupId {
        match self {
            Work::Propose { group, .. }
            | Work::RegisterSession { group }
            | Work::Read { group, .. } => *group,
        }
    }
}
