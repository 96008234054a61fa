//! Identifier and position newtypes shared by every layer, and the small vocabulary both a
//! node and its clients speak: a member's addresses ([`PeerConfig`]), how fresh a read must
//! be ([`ReadConsistency`]), and where a proposal stands in its client session
//! ([`SessionRequest`], [`SessionRefusal`]).
//!
//! Each quantity has its own type so that an index cannot be passed where a count or a term is
//! expected. `LogIndex(0)` is the empty position before the first entry: the first entry of a
//! group's log has index 1, and `LogIndex::ZERO` with `Term::ZERO` describes an empty log.

#![warn(missing_docs)]

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
id_newtype!(
    /// A client session of one group: the index of the entry that registered it, so ids are
    /// unique within their group and never reused (see [client sessions](crate#client-sessions)).
    SessionId(u64),
    "c"
);

impl Term {
    /// The term before the first election.
    pub const ZERO: Term = Term(0);

    /// The term after this one.
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl LogIndex {
    /// The position before the first entry.
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
    /// The latest term this node has seen.
    pub term: Term,
    /// Whom it voted for in `term`, if anyone.
    pub vote: Option<NodeId>,
    /// The commit index known when the hard state was saved.
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

/// Where a member's peer port is: an IP address, or a host name resolved each time a
/// connection is made (so a member whose address changes is found again on reconnect).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerAddr {
    /// An IP address and port.
    Ip(SocketAddr),
    /// A DNS name (letters, digits, `-` and `.`, at most [`PeerAddr::HOST_BYTES_MAX`] bytes).
    Host {
        /// The host name.
        name: String,
        /// The port.
        port: u16,
    },
}

impl PeerAddr {
    /// Longest host name (as DNS allows).
    pub const HOST_BYTES_MAX: usize = 253;

    /// The port, of either form.
    pub fn port(&self) -> u16 {
        match self {
            PeerAddr::Ip(addr) => addr.port(),
            PeerAddr::Host { port, .. } => *port,
        }
    }

    /// The same host with the port `offset` higher (shard `s` listens on the base port + `s`).
    /// `None` past port 65535.
    pub fn offset(&self, offset: u16) -> Option<PeerAddr> {
        let port = self.port().checked_add(offset)?;
        Some(match self {
            PeerAddr::Ip(addr) => PeerAddr::Ip(SocketAddr::new(addr.ip(), port)),
            PeerAddr::Host { name, .. } => PeerAddr::Host {
                name: name.clone(),
                port,
            },
        })
    }

    /// The addresses it stands for now (a DNS lookup for a host name: this blocks).
    pub fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        match self {
            PeerAddr::Ip(addr) => Ok(vec![*addr]),
            PeerAddr::Host { name, port } => {
                std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), *port))
                    .map(Iterator::collect)
            }
        }
    }

    /// Whether `name` is a syntactically valid host name.
    pub fn is_host_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= Self::HOST_BYTES_MAX
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> PeerAddr {
        PeerAddr::Ip(addr)
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Ip(addr) => write!(f, "{addr}"),
            PeerAddr::Host { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

impl std::str::FromStr for PeerAddr {
    type Err = String;

    /// `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT`.
    fn from_str(text: &str) -> Result<PeerAddr, String> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(PeerAddr::Ip(addr));
        }
        let (name, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("'{text}' is not HOST:PORT"))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("'{text}': '{port}' is not a port"))?;
        if !PeerAddr::is_host_name(name) {
            return Err(format!(
                "'{text}': '{name}' is neither an IP address nor a host name"
            ));
        }
        Ok(PeerAddr::Host {
            name: name.to_ascii_lowercase(),
            port,
        })
    }
}

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// The member's id.
    pub id: NodeId,
    /// Base address of its peer port.
    pub addr: PeerAddr,
    /// Base address of its client port, if known (used in "not leader" answers).
    pub client_addr: Option<SocketAddr>,
}

/// Where a proposal stands in its client session: the session, the request's number in it, and
/// how far its client has received answers. A retry of a request carries the same `seq`, so
/// the group applies it at most once (see [client sessions](crate#client-sessions)).
///
/// Invariant: `lowest_unanswered <= seq` (a client still waiting for `seq` cannot have received
/// its answer), so a request never acknowledges itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionRequest {
    session: SessionId,
    seq: u64,
    lowest_unanswered: u64,
}

impl SessionRequest {
    /// Request `seq` of `session`, from a client that has received the answer of every request
    /// below `lowest_unanswered` (the group forgets the saved answers below it). `None` when
    /// `lowest_unanswered > seq`.
    pub fn new(session: SessionId, seq: u64, lowest_unanswered: u64) -> Option<SessionRequest> {
        (lowest_unanswered <= seq).then_some(SessionRequest {
            session,
            seq,
            lowest_unanswered,
        })
    }

    /// The client session the request belongs to.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The request's sequence number in its session (the same on every retry).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The lowest sequence number whose answer the client has not received yet.
    pub fn lowest_unanswered(&self) -> u64 {
        self.lowest_unanswered
    }
}

/// Why a group did not apply a request of a client session. Each is certain for the attempt
/// it answers: that entry was not applied and never will be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionRefusal {
    /// The group does not know the session: never registered, expired or evicted. An earlier
    /// attempt of the same request may have been applied while the session lived.
    #[error(
        "client session {0} is unknown to the group (never registered, expired or evicted); \
         this attempt was not applied, but an earlier attempt of the request may have been"
    )]
    Unknown(SessionId),
    /// The session holds as many answers its client has not acknowledged as the group keeps
    /// ([`SESSION_UNANSWERED_MAX`](crate::api::SESSION_UNANSWERED_MAX)): acknowledge, then retry.
    #[error(
        "client session {0} holds too many answers its client has not acknowledged; this \
         attempt was not applied: retry once earlier answers are acknowledged"
    )]
    Busy(SessionId),
    /// The client acknowledged the answer of this request before: this is a late duplicate of
    /// a request that was answered.
    #[error(
        "request {seq} of client session {session} was answered and acknowledged already; \
         this late attempt was not applied again"
    )]
    Acknowledged {
        /// The request's session.
        session: SessionId,
        /// The request's sequence number.
        seq: u64,
    },
}
