//! The entries of a [`BatchKind::Session`](super::BatchKind::Session) batch: a fixed header
//! naming the client session, then the application's payload.
//!
//! ```text
//! entry:   kind: u8 | reserved: 7 B (0) | session: u64 | seq: u64 | lowest_unanswered: u64
//!          | stamp_ms: u64 | payload            (little-endian; 40 header bytes)
//!   1 Register   session, seq and lowest_unanswered 0; no payload
//!   2 Request    a request of `session` (lowest_unanswered <= seq); the payload goes to the
//!                state machine if the request was not applied before
//! ```
//!
//! `stamp_ms` is the wall clock (ms since the Unix epoch) of the leader that placed the entry,
//! never a time taken from a client: applying session entries reads no clock, so every replica
//! expires the same sessions ([`crate::engine::sessions`]).
//!
//! Invariants: the encoding is canonical (reserved bytes and the unused fields of a
//! registration are zero, a registration has no payload), and [`SessionEntry::decode`] fails,
//! never panics, on anything else. Session batches are checked entry by entry when they are
//! read from the network or the disk ([`super::EntryBatch::from_body`]), so a batch value never
//! holds an entry that does not decode.

use bytes::{BufMut, Bytes, BytesMut};

use crate::types::{SessionId, SessionRequest};

/// Bytes of the header in front of every session entry's payload.
pub const SESSION_HEADER_BYTES: usize = 40;

const KIND_REGISTER: u8 = 1;
const KIND_REQUEST: u8 = 2;

/// What a session entry asks of its group, with the time its leader placed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEntry {
    /// Open a new session; its id is this entry's index.
    Register { stamp_ms: u64 },
    /// A request of an open session.
    Request {
        request: SessionRequest,
        stamp_ms: u64,
    },
}

/// Why bytes are not a session entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed session entry: {reason}")]
pub struct MalformedSessionEntry {
    pub reason: &'static str,
}

fn malformed<T>(reason: &'static str) -> Result<T, MalformedSessionEntry> {
    Err(MalformedSessionEntry { reason })
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

impl SessionEntry {
    /// The leader's wall clock when it placed the entry.
    pub fn stamp_ms(&self) -> u64 {
        match self {
            SessionEntry::Register { stamp_ms } | SessionEntry::Request { stamp_ms, .. } => {
                *stamp_ms
            }
        }
    }

    /// The entry: this header, then `payload` (which must be empty for a registration).
    pub fn encode(&self, payload: &[u8]) -> Bytes {
        let (kind, session, seq, lowest) = match self {
            SessionEntry::Register { .. } => {
                assert!(payload.is_empty(), "a registration carries no payload");
                (KIND_REGISTER, 0, 0, 0)
            }
            SessionEntry::Request { request, .. } => (
                KIND_REQUEST,
                request.session().0,
                request.seq(),
                request.lowest_unanswered(),
            ),
        };
        let mut out = BytesMut::with_capacity(SESSION_HEADER_BYTES + payload.len());
        out.put_u8(kind);
        out.put_bytes(0, 7);
        out.put_u64_le(session);
        out.put_u64_le(seq);
        out.put_u64_le(lowest);
        out.put_u64_le(self.stamp_ms());
        out.put_slice(payload);
        out.freeze()
    }

    /// Reads the header of `entry`; returns it with the payload that follows.
    pub fn decode(entry: &[u8]) -> Result<(SessionEntry, &[u8]), MalformedSessionEntry> {
        if entry.len() < SESSION_HEADER_BYTES {
            return malformed("shorter than its header");
        }
        if entry[1..8].iter().any(|&byte| byte != 0) {
            return malformed("reserved bytes are not zero");
        }
        let (session, seq, lowest, stamp_ms) = (
            u64_at(entry, 8),
            u64_at(entry, 16),
            u64_at(entry, 24),
            u64_at(entry, 32),
        );
        let payload = &entry[SESSION_HEADER_BYTES..];
        let decoded = match entry[0] {
            KIND_REGISTER if session == 0 && seq == 0 && lowest == 0 && payload.is_empty() => {
                SessionEntry::Register { stamp_ms }
            }
            KIND_REGISTER => return malformed("a registration with fields or a payload"),
            KIND_REQUEST => match SessionRequest::new(SessionId(session), seq, lowest) {
                Some(request) => SessionEntry::Request { request, stamp_ms },
                None => return malformed("lowest unanswered request above the request"),
            },
            _ => return malformed("unknown kind"),
        };
        Ok((decoded, payload))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn entries_round_trip_and_keep_their_payload() {
        let register = SessionEntry::Register { stamp_ms: 77 };
        let encoded = register.encode(b"");
        assert_eq!(encoded.len(), SESSION_HEADER_BYTES);
        assert_eq!(SessionEntry::decode(&encoded), Ok((register, &b""[..])));
        let request = SessionEntry::Request {
            request: SessionRequest::new(SessionId(12), 9, 4).unwrap(),
            stamp_ms: 1_700_000_000_000,
        };
        let encoded = request.encode(b"incr x");
        assert_eq!(
            SessionEntry::decode(&encoded),
            Ok((request, &b"incr x"[..]))
        );
    }

    #[test]
    fn non_canonical_headers_are_refused() {
        let request = SessionEntry::Request {
            request: SessionRequest::new(SessionId(3), 5, 5).unwrap(),
            stamp_ms: 1,
        }
        .encode(b"p");
        let register = SessionEntry::Register { stamp_ms: 1 }.encode(b"");
        let with = |base: &Bytes, at: usize, value: u8| {
            let mut bytes = base.to_vec();
            bytes[at] = value;
            bytes
        };
        let cases = [
            request[..SESSION_HEADER_BYTES - 1].to_vec(),
            with(&request, 3, 1),
            with(&request, 0, 9),
            // lowest unanswered 6 above seq 5
            with(&request, 24, 6),
            with(&register, 8, 1),
            [register.to_vec(), b"x".to_vec()].concat(),
        ];
        for (case, bytes) in cases.iter().enumerate() {
            let result = SessionEntry::decode(bytes);
            assert!(result.is_err(), "case {case} decoded: {result:?}");
        }
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok((entry, payload)) = SessionEntry::decode(&bytes) {
                prop_assert_eq!(&entry.encode(payload)[..], &bytes[..]);
            }
        }
    }
}
