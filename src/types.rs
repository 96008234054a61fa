//! Identifier and position newtypes shared by every layer, and the small vocabulary both a
//! node and its clients speak: a member's addresses ([`PeerConfig`]) and how fresh a read must
//! be ([`ReadConsistency`]).
//!
//! Each quantity has its own type so that an index cannot be passed where a count or a term is
//! expected. `LogIndex(0)` is the empty position before the first entry: the first entry of a
//! group's log has index 1, and `LogIndex::ZERO` with `Term::ZERO` describes an empty log.

use std::fmt;
use std::net::SocketAddr;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
        #[rkyv(derive(Debug, PartialEq, Eq))]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_newtype!(
    /// A member of the cluster. Node ids are chosen by the operator and never reused.
    NodeId(u64),
    "n"
);
id_newtype!(
    /// One Raft group (an independent replicated log). Group `g` lives on shard `g mod shards`.
    GroupId(u64),
    "g"
);
id_newtype!(
    /// One thread-per-core shard of a node.
    ShardId(u32),
    "s"
);
id_newtype!(
    /// A Raft term. Terms only grow.
    Term(u64),
    "t"
);
id_newtype!(
    /// A position in a group's log (1-based; 0 means "before the first entry").
    LogIndex(u64),
    "i"
);

impl Term {
    pub const ZERO: Term = Term(0);

    /// The term after this one.
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl LogIndex {
    pub const ZERO: LogIndex = LogIndex(0);

    /// The index `count` positions after this one.
    pub fn plus(self, count: u64) -> LogIndex {
        LogIndex(self.0 + count)
    }

    /// The index just after this one.
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }

    /// The index just before this one (saturating at zero).
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }

    /// Number of entries in the inclusive range `self..=last` (zero when `last < self`).
    pub fn count_to(self, last: LogIndex) -> u64 {
        (last.0 + 1).saturating_sub(self.0)
    }
}

/// The per-group state that must be durable before a node acts on it: the current term, the
/// vote cast in that term, and a hint of the commit index (entries up to `commit` were known
/// committed when it was saved; recovery may start applying from there without asking a leader).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HardState {
    pub term: Term,
    pub vote: Option<NodeId>,
    pub commit: LogIndex,
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ReadConsistency {
    /// Linearizable, by ReadIndex: the leader confirms with a heartbeat round that it still
    /// leads, then serves at the commit index it had when the read arrived.
    #[default]
    Linearizable,
    /// Linearizable as long as clocks drift less than the configured bound: the leader serves
    /// at its commit index without a round trip while its lease holds (falls back to ReadIndex
    /// otherwise). Needs check-quorum.
    Lease,
    /// The local state machine as it is, on any node: may miss recent writes (not
    /// linearizable).
    Stale,
}

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    pub id: NodeId,
    /// Base address of its peer port.
    pub addr: SocketAddr,
    /// Base address of its client port, if known (used in "not leader" answers).
    pub client_addr: Option<SocketAddr>,
}
