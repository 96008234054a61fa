//! The handshake that opens every peer connection, before any Raft frame is read.
//!
//! The dialing shard sends a [`Hello`] ([`FrameKind::Hello`]); the accepting side checks it with
//! [`check_hello`] and answers with a [`HelloReply`] ([`FrameKind::HelloReply`]): either its own
//! `Hello` (so the dialer can check, with [`check_hello_reply`], that it reached the node and
//! shard it meant to) or the reason for the rejection, after which it closes the connection.
//!
//! # Body layouts (little-endian)
//!
//! ```text
//! Hello (32 B):       cluster_id: u64 | node_id: u64 | shard: u32 | shard_count: u32
//!                     | protocol_version: u16 | reserved: 6 B (0)
//! HelloReply accept:  tag = 1: u8 | reserved: 7 B (0) | Hello (32 B)
//! HelloReply reject:  tag = 2: u8 | reason code: u8 | reserved: 6 B (0) | a: u64 | b: u64 | c: u64
//! ```
//!
//! Invariant: the bodies have exactly these lengths and zero reserved bytes; anything else is a
//! [`HandshakeError::Malformed`] and the connection is closed without reading further.

use bytes::Bytes;

use crate::constants::{PROTOCOL_VERSION, PROTOCOL_VERSION_MIN};
use crate::net::codec::{put_u16, put_u32, put_u64, put_u8, put_zeros, Reader, Truncated};
use crate::net::frame::{encode_frame, Frame, FrameKind};
use crate::types::{NodeId, ShardId};

const HELLO_BYTES: usize = 32;
const REPLY_TAG_ACCEPT: u8 = 1;
const REPLY_TAG_REJECT: u8 = 2;

/// What a shard announces about itself when it opens a connection to a peer's shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hello {
    pub cluster_id: u64,
    pub node_id: NodeId,
    pub shard: ShardId,
    pub shard_count: u32,
    pub protocol_version: u16,
}

/// The accepting side's answer to a [`Hello`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HelloReply {
    /// Accepted; the acceptor's own identity.
    Accepted(Hello),
    /// Rejected; the connection is closed after this frame.
    Rejected(HandshakeError),
}

/// What this node knows that a peer's hello must agree with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalIdentity {
    pub cluster_id: u64,
    /// This node.
    pub node_id: NodeId,
    /// The members this node talks to (this node may be listed or not).
    pub peers: Vec<NodeId>,
    /// Shards per node; every node of a cluster runs the same number.
    pub shard_count: u32,
}

impl LocalIdentity {
    /// The hello that `shard` of this node sends (or answers with).
    pub fn hello(&self, shard: ShardId) -> Hello {
        Hello {
            cluster_id: self.cluster_id,
            node_id: self.node_id,
            shard,
            shard_count: self.shard_count,
            protocol_version: PROTOCOL_VERSION,
        }
    }
}

/// Why a handshake failed. The first group are the reasons a side rejects a peer (sent in a
/// [`HelloReply::Rejected`]); the rest describe a broken exchange.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("peer belongs to cluster {found:#x}, this node to cluster {expected:#x}")]
    WrongCluster { expected: u64, found: u64 },
    #[error("peer claims node id {node}, which is not a member of this cluster")]
    UnknownNode { node: NodeId },
    #[error("connection to self: peer claims this node's own id {node}")]
    SelfConnection { node: NodeId },
    #[error("peer speaks protocol version {found}; this node accepts versions {min} to {max}")]
    IncompatibleVersion { found: u16, min: u16, max: u16 },
    #[error(
        "peer runs {found} shards per node, this node {expected}: every member must run the same \
         --shards (its default is the machine's core count, so set it on every member when their \
         core counts differ)"
    )]
    ShardCountMismatch { expected: u32, found: u32 },
    #[error(
        "peer claims node id {node}, but its TLS certificate does not name that node \
         (node-{node}.ringraft)"
    )]
    NotCertified { node: NodeId },
    #[error("peer announces shard {shard}, but nodes have {shard_count} shards")]
    ShardOutOfRange { shard: ShardId, shard_count: u32 },
    #[error("reached node {found} (shard {found_shard}) instead of node {expected} (shard {expected_shard})")]
    UnexpectedPeer {
        expected: NodeId,
        expected_shard: ShardId,
        found: NodeId,
        found_shard: ShardId,
    },
    #[error("peer rejected this node: {0}")]
    RejectedByPeer(Box<HandshakeError>),
    #[error("frame of kind {found:?} where a {expected:?} was expected")]
    UnexpectedFrame {
        expected: FrameKind,
        found: FrameKind,
    },
    #[error("malformed handshake: {reason}")]
    Malformed { reason: &'static str },
}

impl From<Truncated> for HandshakeError {
    fn from(_: Truncated) -> Self {
        HandshakeError::Malformed {
            reason: "body too short",
        }
    }
}

/// Checks a peer's hello against this node: same cluster, a known member other than this node,
/// a compatible protocol version and the same shard layout.
pub fn check_hello(hello: &Hello, local: &LocalIdentity) -> Result<(), HandshakeError> {
    if !(PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION).contains(&hello.protocol_version) {
        return Err(HandshakeError::IncompatibleVersion {
            found: hello.protocol_version,
            min: PROTOCOL_VERSION_MIN,
            max: PROTOCOL_VERSION,
        });
    }
    if hello.cluster_id != local.cluster_id {
        return Err(HandshakeError::WrongCluster {
            expected: local.cluster_id,
            found: hello.cluster_id,
        });
    }
    if hello.node_id == local.node_id {
        return Err(HandshakeError::SelfConnection {
            node: hello.node_id,
        });
    }
    if !local.peers.contains(&hello.node_id) {
        return Err(HandshakeError::UnknownNode {
            node: hello.node_id,
        });
    }
    if hello.shard_count != local.shard_count {
        return Err(HandshakeError::ShardCountMismatch {
            expected: local.shard_count,
            found: hello.shard_count,
        });
    }
    if hello.shard.0 >= hello.shard_count {
        return Err(HandshakeError::ShardOutOfRange {
            shard: hello.shard,
            shard_count: hello.shard_count,
        });
    }
    Ok(())
}

/// The dialer's check of the reply: accepted by a valid peer that is `expected` (node, shard).
/// Returns the acceptor's hello.
pub fn check_hello_reply(
    reply: &HelloReply,
    local: &LocalIdentity,
    expected: NodeId,
    expected_shard: ShardId,
) -> Result<Hello, HandshakeError> {
    let hello = match reply {
        HelloReply::Accepted(hello) => *hello,
        HelloReply::Rejected(reason) => {
            return Err(HandshakeError::RejectedByPeer(Box::new(reason.clone())))
        }
    };
    check_hello(&hello, local)?;
    if hello.node_id != expected || hello.shard != expected_shard {
        return Err(HandshakeError::UnexpectedPeer {
            expected,
            expected_shard,
            found: hello.node_id,
            found_shard: hello.shard,
        });
    }
    Ok(hello)
}

fn put_hello(hello: &Hello, out: &mut Vec<u8>) {
    put_u64(out, hello.cluster_id);
    put_u64(out, hello.node_id.0);
    put_u32(out, hello.shard.0);
    put_u32(out, hello.shard_count);
    put_u16(out, hello.protocol_version);
    put_zeros(out, 6);
}

fn read_hello(reader: &mut Reader<'_>) -> Result<Hello, HandshakeError> {
    let hello = Hello {
        cluster_id: reader.u64()?,
        node_id: NodeId(reader.u64()?),
        shard: ShardId(reader.u32()?),
        shard_count: reader.u32()?,
        protocol_version: reader.u16()?,
    };
    if !reader.zeros(6)? {
        return Err(HandshakeError::Malformed {
            reason: "reserved bytes of a hello are not zero",
        });
    }
    Ok(hello)
}

fn expect_kind(frame: &Frame, expected: FrameKind) -> Result<(), HandshakeError> {
    if frame.kind != expected {
        return Err(HandshakeError::UnexpectedFrame {
            expected,
            found: frame.kind,
        });
    }
    Ok(())
}

fn expect_end(reader: &Reader<'_>) -> Result<(), HandshakeError> {
    if reader.remaining() != 0 {
        return Err(HandshakeError::Malformed {
            reason: "trailing bytes after the handshake",
        });
    }
    Ok(())
}

impl Hello {
    /// Appends this hello as a [`FrameKind::Hello`] frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::with_capacity(HELLO_BYTES);
        put_hello(self, &mut body);
        encode_frame(FrameKind::Hello, &body, out).expect("a hello fits in a frame");
    }

    /// Decodes a frame that must be a [`FrameKind::Hello`].
    pub fn decode(frame: &Frame) -> Result<Hello, HandshakeError> {
        expect_kind(frame, FrameKind::Hello)?;
        Hello::decode_body(&frame.body)
    }

    /// Decodes the body of a hello frame.
    pub fn decode_body(body: &Bytes) -> Result<Hello, HandshakeError> {
        let mut reader = Reader::new(body);
        let hello = read_hello(&mut reader)?;
        expect_end(&reader)?;
        Ok(hello)
    }
}

/// Wire code and fields of a rejection reason.
fn reason_fields(reason: &HandshakeError) -> (u8, [u64; 3]) {
    match *reason {
        HandshakeError::WrongCluster { expected, found } => (1, [expected, found, 0]),
        HandshakeError::UnknownNode { node } => (2, [node.0, 0, 0]),
        HandshakeError::SelfConnection { node } => (3, [node.0, 0, 0]),
        HandshakeError::IncompatibleVersion { found, min, max } => {
            (4, [found as u64, min as u64, max as u64])
        }
        HandshakeError::ShardCountMismatch { expected, found } => {
            (5, [expected as u64, found as u64, 0])
        }
        HandshakeError::ShardOutOfRange { shard, shard_count } => {
            (6, [shard.0 as u64, shard_count as u64, 0])
        }
        HandshakeError::NotCertified { node } => (7, [node.0, 0, 0]),
        // Reasons that only the dialer or a broken exchange produce: sent as "malformed".
        HandshakeError::UnexpectedPeer { .. }
        | HandshakeError::RejectedByPeer(_)
        | HandshakeError::UnexpectedFrame { .. }
        | HandshakeError::Malformed { .. } => (0, [0; 3]),
    }
}

fn reason_from_fields(code: u8, f: [u64; 3]) -> Result<HandshakeError, HandshakeError> {
    let malformed = HandshakeError::Malformed {
        reason: "rejection reason fields out of range",
    };
    let small = |x: u64| u16::try_from(x).map_err(|_| malformed.clone());
    let medium = |x: u64| u32::try_from(x).map_err(|_| malformed.clone());
    let reason = match code {
        0 => HandshakeError::Malformed {
            reason: "the peer found this node's handshake malformed",
        },
        1 => HandshakeError::WrongCluster {
            expected: f[0],
            found: f[1],
        },
        2 => HandshakeError::UnknownNode { node: NodeId(f[0]) },
        3 => HandshakeError::SelfConnection { node: NodeId(f[0]) },
        4 => HandshakeError::IncompatibleVersion {
            found: small(f[0])?,
            min: small(f[1])?,
            max: small(f[2])?,
        },
        5 => HandshakeError::ShardCountMismatch {
            expected: medium(f[0])?,
            found: medium(f[1])?,
        },
        6 => HandshakeError::ShardOutOfRange {
            shard: ShardId(medium(f[0])?),
            shard_count: medium(f[1])?,
        },
        7 => HandshakeError::NotCertified { node: NodeId(f[0]) },
        _ => {
            return Err(HandshakeError::Malformed {
                reason: "unknown rejection reason code",
            })
        }
    };
    // Canonical: fields a reason does not use must be zero.
    if reason_fields(&reason).1 != f {
        return Err(HandshakeError::Malformed {
            reason: "unused rejection reason fields are not zero",
        });
    }
    Ok(reason)
}

impl HelloReply {
    /// Appends this reply as a [`FrameKind::HelloReply`] frame to `out`. A rejection for a
    /// reason that has no wire code is sent as "malformed handshake".
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::with_capacity(8 + HELLO_BYTES);
        match self {
            HelloReply::Accepted(hello) => {
                put_u8(&mut body, REPLY_TAG_ACCEPT);
                put_zeros(&mut body, 7);
                put_hello(hello, &mut body);
            }
            HelloReply::Rejected(reason) => {
                let (code, fields) = reason_fields(reason);
                put_u8(&mut body, REPLY_TAG_REJECT);
                put_u8(&mut body, code);
                put_zeros(&mut body, 6);
                for field in fields {
                    put_u64(&mut body, field);
                }
            }
        }
        encode_frame(FrameKind::HelloReply, &body, out).expect("a hello reply fits in a frame");
    }

    /// Decodes a frame that must be a [`FrameKind::HelloReply`].
    pub fn decode(frame: &Frame) -> Result<HelloReply, HandshakeError> {
        expect_kind(frame, FrameKind::HelloReply)?;
        HelloReply::decode_body(&frame.body)
    }

    /// Decodes the body of a hello reply frame.
    pub fn decode_body(body: &Bytes) -> Result<HelloReply, HandshakeError> {
        let mut reader = Reader::new(body);
        let reply = match reader.u8()? {
            REPLY_TAG_ACCEPT => {
                if !reader.zeros(7)? {
                    return Err(HandshakeError::Malformed {
                        reason: "reserved bytes of a hello reply are not zero",
                    });
                }
                HelloReply::Accepted(read_hello(&mut reader)?)
            }
            REPLY_TAG_REJECT => {
                let code = reader.u8()?;
                if !reader.zeros(6)? {
                    return Err(HandshakeError::Malformed {
                        reason: "reserved bytes of a hello reply are not zero",
                    });
                }
                let fields = [reader.u64()?, reader.u64()?, reader.u64()?];
                HelloReply::Rejected(reason_from_fields(code, fields)?)
            }
            _ => {
                return Err(HandshakeError::Malformed {
                    reason: "unknown hello reply tag",
                })
            }
        };
        expect_end(&reader)?;
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::frame::FrameDecoder;

    fn local() -> LocalIdentity {
        LocalIdentity {
            cluster_id: 0xc1,
            node_id: NodeId(1),
            peers: vec![NodeId(1), NodeId(2), NodeId(3)],
            shard_count: 2,
        }
    }

    fn one_frame(out: &[u8]) -> Frame {
        let mut decoder = FrameDecoder::new();
        decoder.push(out);
        decoder.next_frame().unwrap().unwrap()
    }

    #[test]
    fn hello_and_replies_round_trip() {
        let hello = LocalIdentity {
            node_id: NodeId(2),
            ..local()
        }
        .hello(ShardId(1));
        let mut out = Vec::new();
        hello.encode(&mut out);
        let decoded = Hello::decode(&one_frame(&out)).unwrap();
        assert_eq!(decoded, hello);
        assert_eq!(check_hello(&decoded, &local()), Ok(()));
        for reply in [
            HelloReply::Accepted(hello),
            HelloReply::Rejected(HandshakeError::WrongCluster {
                expected: 1,
                found: 2,
            }),
            HelloReply::Rejected(HandshakeError::IncompatibleVersion {
                found: 9,
                min: 1,
                max: 1,
            }),
            HelloReply::Rejected(HandshakeError::NotCertified { node: NodeId(3) }),
        ] {
            let mut out = Vec::new();
            reply.encode(&mut out);
            assert_eq!(HelloReply::decode(&one_frame(&out)).unwrap(), reply);
        }
    }

    #[test]
    fn checks_reject_strangers() {
        let me = local();
        let good = LocalIdentity {
            node_id: NodeId(3),
            ..local()
        }
        .hello(ShardId(0));
        let cases = [
            (
                Hello {
                    cluster_id: 7,
                    ..good
                },
                HandshakeError::WrongCluster {
                    expected: 0xc1,
                    found: 7,
                },
            ),
            (
                Hello {
                    node_id: NodeId(9),
                    ..good
                },
                HandshakeError::UnknownNode { node: NodeId(9) },
            ),
            (
                Hello {
                    node_id: NodeId(1),
                    ..good
                },
                HandshakeError::SelfConnection { node: NodeId(1) },
            ),
            (
                Hello {
                    protocol_version: PROTOCOL_VERSION + 1,
                    ..good
                },
                HandshakeError::IncompatibleVersion {
                    found: PROTOCOL_VERSION + 1,
                    min: PROTOCOL_VERSION_MIN,
                    max: PROTOCOL_VERSION,
                },
            ),
            (
                Hello {
                    shard_count: 4,
                    ..good
                },
                HandshakeError::ShardCountMismatch {
                    expected: 2,
                    found: 4,
                },
            ),
            (
                Hello {
                    shard: ShardId(2),
                    ..good
                },
                HandshakeError::ShardOutOfRange {
                    shard: ShardId(2),
                    shard_count: 2,
                },
            ),
        ];
        for (hello, expected) in cases {
            assert_eq!(check_hello(&hello, &me), Err(expected));
        }
        let reply = HelloReply::Accepted(good);
        assert_eq!(
            check_hello_reply(&reply, &me, NodeId(3), ShardId(0)),
            Ok(good)
        );
        assert!(matches!(
            check_hello_reply(&reply, &me, NodeId(2), ShardId(0)),
            Err(HandshakeError::UnexpectedPeer { .. })
        ));
    }
}
