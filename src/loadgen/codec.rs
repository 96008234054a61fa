//! The protocol a connection speaks, behind one trait, and the native client protocol.
//!
//! A codec turns request ids into bytes and received bytes back into answers carrying those
//! ids. The connection driver ([`crate::loadgen::connection`]) owns the socket, the clients'
//! credits and the in-flight table; the codec owns only the encoding and its receive buffer.
//! Malformed input is an `Err` for the connection, never a panic.

use std::ops::Range;

use bytes::Bytes;

use crate::net::client_wire::{
    decode_responses_frame, encode_requests, ClientError, ClientRequest, ClientResponse,
};
use crate::net::frame::READ_SPARE_BYTES;
use crate::net::{FrameDecoder, FrameKind};
use crate::types::{GroupId, NodeId};

/// One answer to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub id: u64,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Refused because the node does not lead the group (or is handing it over): certainly not
    /// applied. `leader` when the node named the leader to go to instead.
    NotLeader {
        leader: Option<NodeId>,
    },
    /// Refused for another reason.
    Refused {
        error: String,
    },
}

pub trait Codec: Send + 'static {
    /// Forgets everything received (a new connection starts with request id 0).
    fn reset(&mut self);
    /// Appends the requests with `ids` to `out`.
    fn encode(&mut self, ids: Range<u64>, out: &mut Vec<u8>) -> Result<(), String>;
    /// Where the next read goes.
    fn read_buffer(&mut self) -> &mut [u8];
    /// The first `n` bytes of the last read buffer were filled.
    fn filled(&mut self, n: usize);
    /// The next complete answer, `Ok(None)` when more bytes are needed.
    fn next_answer(&mut self) -> Result<Option<Answer>, String>;
}

/// Bytes of requests per native frame (well below the frame limit).
const NATIVE_FRAME_BUDGET: usize = 4 << 20;

/// Proposals of one payload to one group over the native client protocol.
pub struct NativeCodec {
    group: GroupId,
    payload: Bytes,
    decoder: FrameDecoder,
    /// The answers of the last frame read, not yet returned.
    decoded: std::vec::IntoIter<ClientResponse>,
    requests: Vec<ClientRequest>,
}

impl NativeCodec {
    pub fn new(group: GroupId, payload: Bytes) -> NativeCodec {
        NativeCodec {
            group,
            payload,
            decoder: FrameDecoder::new(),
            decoded: Vec::new().into_iter(),
            requests: Vec::new(),
        }
    }
}

impl Codec for NativeCodec {
    fn reset(&mut self) {
        self.decoder = FrameDecoder::new();
        self.decoded = Vec::new().into_iter();
    }

    fn encode(&mut self, ids: Range<u64>, out: &mut Vec<u8>) -> Result<(), String> {
        let per_frame = (NATIVE_FRAME_BUDGET / (64 + self.payload.len())).clamp(1, 1024);
        self.requests.clear();
        self.requests.extend(ids.map(|id| ClientRequest::Propose {
            id,
            group: self.group,
            payload: self.payload.clone(),
        }));
        for chunk in self.requests.chunks(per_frame) {
            encode_requests(chunk, out).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn read_buffer(&mut self) -> &mut [u8] {
        self.decoder.spare(READ_SPARE_BYTES)
    }

    fn filled(&mut self, n: usize) {
        self.decoder.filled(n);
    }

    fn next_answer(&mut self) -> Result<Option<Answer>, String> {
        loop {
            if let Some(response) = self.decoded.next() {
                let outcome = match response {
                    ClientResponse::Committed { .. } => Outcome::Done,
                    ClientResponse::Error {
                        error: ClientError::NotLeader { leader, .. },
                        ..
                    } => Outcome::NotLeader { leader },
                    ClientResponse::Error { ref error, .. } => Outcome::Refused {
                        error: error.to_string(),
                    },
                    ClientResponse::Status { .. } | ClientResponse::AdminStatus { .. } => {
                        return Err("a status answer to a proposal".into())
                    }
                };
                return Ok(Some(Answer {
                    id: response.id(),
                    outcome,
                }));
            }
            let Some(frame) = self.decoder.next_frame().map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            if frame.kind != FrameKind::ClientResponses {
                return Err("unexpected frame from server".into());
            }
            self.decoded = decode_responses_frame(&frame)
                .map_err(|e| e.to_string())?
                .into_iter();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::client_wire::encode_responses;
    use crate::types::LogIndex;

    #[test]
    fn native_answers_carry_their_ids_and_redirects() {
        let mut codec = NativeCodec::new(GroupId(2), Bytes::from_static(b"xyz"));
        let mut out = Vec::new();
        codec.encode(5..8, &mut out).unwrap();
        assert!(!out.is_empty());
        let mut wire = Vec::new();
        let responses = [
            ClientResponse::Committed {
                id: 6,
                index: LogIndex(1),
                output: Bytes::new(),
            },
            ClientResponse::Error {
                id: 5,
                error: ClientError::NotLeader {
                    leader: Some(NodeId(3)),
                    leader_client_addr: None,
                },
            },
        ];
        encode_responses(&responses, &mut wire).unwrap();
        let (first, second) = wire.split_at(7);
        for part in [first, second] {
            codec.read_buffer()[..part.len()].copy_from_slice(part);
            codec.filled(part.len());
        }
        let first = codec.next_answer().unwrap().unwrap();
        assert_eq!((first.id, first.outcome), (6, Outcome::Done));
        let second = codec.next_answer().unwrap().unwrap();
        assert_eq!(
            second.outcome,
            Outcome::NotLeader {
                leader: Some(NodeId(3))
            }
        );
        assert_eq!(codec.next_answer(), Ok(None));
        let garbage = [0xffu8; 64];
        codec.read_buffer()[..64].copy_from_slice(&garbage);
        codec.filled(64);
        assert!(
            codec.next_answer().is_err(),
            "garbage is an error, not a panic"
        );
    }
}
