//! Peer and client transport codecs, free of IO: frames, the Raft wire format, the handshake.
//!
//! Nothing here touches sockets or glommio. A connection task reads bytes into a
//! [`frame::FrameDecoder`], takes whole frames out of it, and decodes their bodies with
//! [`wire`] (Raft traffic), [`snapshot_wire`] (snapshot transfers), [`handshake`] (the first
//! exchange on a peer connection) or [`client_wire`] (client connections, with the types a node and
//! its clients share; [`members`] encodes members' addresses for both); outgoing
//! frames are appended to one reusable buffer so that one socket write carries many frames.
//!
//! Invariants shared by every codec here:
//! - decoding never panics and never allocates more than the frame's own (capped) size, whatever
//!   the input; every count and length is checked against the bytes present before use;
//! - every error is typed and says what was wrong; any decoding error means the stream is
//!   unusable and the connection must be closed (no state was changed by the failed frame);
//! - encodings are canonical (reserved bytes, padding and unused fields are zero and checked).

pub mod client_wire;
pub(crate) mod codec;
pub mod frame;
pub mod handshake;
pub mod members;
pub mod snapshot_wire;
pub mod wire;

pub use frame::{Frame, FrameDecoder, FrameError, FrameKind};
pub use handshake::{
    check_hello, check_hello_reply, HandshakeError, Hello, HelloReply, LocalIdentity,
};
pub use wire::{
    decode_raft, decode_raft_frame, encode_raft, Envelope, RaftFrame, RaftFrameWriter, WireError,
};
