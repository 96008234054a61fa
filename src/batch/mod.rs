//! `EntryBatch`: consecutive log entries of one term that share one encoded body.
//!
//! A batch is the unit in which entries are proposed, appended, sent and applied. Its body is an
//! rkyv archive of the batch kind and the entry payloads ([`ArchivedBatchBody`]), encoded **once**
//! by the proposer, with no term or index inside (the leader places it in the log), so that the leader's log, every AppendEntries frame and every follower's log carry the same
//! bytes. Entries are read in place from the archive, never deserialized.
//!
//! Invariants of every `EntryBatch` value:
//! - `body` holds a validated archive whose address is [`BODY_ALIGN`]-aligned, so unchecked
//!   access is sound; bodies only come from [`EntryBatch::encode`] (our own encoder) or
//!   [`EntryBatch::from_body`] (which validates).
//! - the batch exposes the window `skip .. skip + count` of the archive's entries, and
//!   `skip + count <= archive length`. A window lets a follower keep or a leader send part of a
//!   batch without re-encoding (conflict truncation, catching up a follower mid-batch).
//! - `count >= 1`: an empty batch is never built.
//! - every entry of a [`BatchKind::Session`] body (the whole archive, not only the window)
//!   decodes as a [`SessionEntry`]: the engine builds them with [`SessionEntry::encode`], and
//!   [`EntryBatch::from_body`] checks them. Other kinds cost nothing for it.

pub mod session_entry;

use bytes::Bytes;
use rkyv::rancor::{Error as RkyvError, Failure};
use rkyv::util::AlignedVec;
use rkyv::with::{InlineAsBox, Map};

use crate::types::{LogIndex, Term};
pub use session_entry::{MalformedSessionEntry, SessionEntry, SESSION_HEADER_BYTES};

/// Required alignment of an encoded body's first byte.
pub const BODY_ALIGN: usize = 16;

/// What the entries of a batch are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize)]
#[rkyv(derive(Debug, PartialEq, Eq))]
#[repr(u8)]
pub enum BatchKind {
    /// Commands of the embedding program, handed to its state machine.
    Command,
    /// The empty entry a new leader appends to commit its predecessors' entries (§5.4.2).
    Noop,
    /// One entry: a group configuration (see `core::membership` for its payload).
    Config,
    /// Entries of client sessions: each a [`SessionEntry`] header, then (for a request) a
    /// command for the state machine, which the engine applies unless the session applied
    /// that request before (see `engine::sessions`). Added after the others, so logs written
    /// before it existed decode unchanged.
    Session,
}

/// The encoded body: the kind, then each entry's payload.
#[derive(rkyv::Archive, rkyv::Serialize)]
#[rkyv(archived = ArchivedBatchBody)]
pub struct BatchBody<'a> {
    pub kind: BatchKind,
    #[rkyv(with = Map<InlineAsBox>)]
    pub entries: Vec<&'a [u8]>,
}

/// Why bytes could not be taken as a batch body.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch body is not {BODY_ALIGN}-byte aligned")]
    Misaligned,
    #[error("batch body is not a valid archive")]
    InvalidArchive,
    #[error("batch window {skip}+{count} exceeds the {len} entries of its body")]
    WindowOutOfRange { skip: u32, count: u32, len: usize },
    #[error("batch has no entries")]
    Empty,
    #[error("entry {position} of a session batch: {error}")]
    SessionEntry {
        position: usize,
        error: MalformedSessionEntry,
    },
}

/// Consecutive entries `first_index ..= last_index()` of one term; cheap to clone and slice.
#[derive(Clone)]
pub struct EntryBatch {
    term: Term,
    first_index: LogIndex,
    body: Bytes,
    skip: u32,
    count: u32,
}

impl EntryBatch {
    /// Encodes `payloads` (at least one) as a new batch starting at `first_index`. Panics if
    /// a session batch is given an entry that is not a [`SessionEntry`] (a programming error:
    /// they are built with [`SessionEntry::encode`]).
    pub fn encode<'a>(
        kind: BatchKind,
        term: Term,
        first_index: LogIndex,
        payloads: impl IntoIterator<Item = &'a [u8]>,
    ) -> EntryBatch {
        let body = BatchBody {
            kind,
            entries: payloads.into_iter().collect(),
        };
        if kind == BatchKind::Session {
            for entry in &body.entries {
                if let Err(error) = SessionEntry::decode(entry) {
                    panic!("a session batch built with a bad entry: {error}");
                }
            }
        }
        let count = u32::try_from(body.entries.len()).expect("batch entry count fits u32");
        let body = encode_body(&body);
        assert!(count > 0, "a batch holds at least one entry");
        EntryBatch {
            term,
            first_index,
            body,
            skip: 0,
            count,
        }
    }

    /// Takes received or stored bytes as the window `skip .. skip + count` of a batch body,
    /// validating the archive once.
    pub fn from_body(
        term: Term,
        first_index: LogIndex,
        body: Bytes,
        skip: u32,
        count: u32,
    ) -> Result<EntryBatch, BatchError> {
        Self::validate_body(&body, skip, count)?;
        Ok(EntryBatch {
            term,
            first_index,
            body,
            skip,
            count,
        })
    }

    /// The same entries placed at another position (how a leader places a proposal).
    pub fn placed_at(self, term: Term, first_index: LogIndex) -> EntryBatch {
        EntryBatch {
            term,
            first_index,
            ..self
        }
    }

    /// What the entries are for.
    pub fn kind(&self) -> BatchKind {
        match self.archive().kind {
            ArchivedBatchKind::Command => BatchKind::Command,
            ArchivedBatchKind::Noop => BatchKind::Noop,
            ArchivedBatchKind::Config => BatchKind::Config,
            ArchivedBatchKind::Session => BatchKind::Session,
        }
    }

    /// Checks, without building a batch, that `body` (at an aligned address) is a valid archive
    /// holding the window `skip .. skip + count` (and, for a session batch, only entries that
    /// decode): what [`EntryBatch::from_body`] accepts.
    pub fn validate_body(body: &[u8], skip: u32, count: u32) -> Result<(), BatchError> {
        if count == 0 {
            return Err(BatchError::Empty);
        }
        if (body.as_ptr() as usize) % BODY_ALIGN != 0 {
            return Err(BatchError::Misaligned);
        }
        let archive = rkyv::access::<ArchivedBatchBody<'_>, Failure>(body)
            .map_err(|_| BatchError::InvalidArchive)?;
        let len = archive.entries.len();
        if skip as usize + count as usize > len {
            return Err(BatchError::WindowOutOfRange { skip, count, len });
        }
        if archive.kind == ArchivedBatchKind::Session {
            for (position, entry) in archive.entries.iter().enumerate() {
                SessionEntry::decode(entry.get())
                    .map_err(|error| BatchError::SessionEntry { position, error })?;
            }
        }
        Ok(())
    }

    pub fn term(&self) -> Term {
        self.term
    }

    pub fn first_index(&self) -> LogIndex {
        self.first_index
    }

    pub fn last_index(&self) -> LogIndex {
        self.first_index.plus(self.count as u64 - 1)
    }

    /// Number of entries in the window.
    pub fn len(&self) -> u64 {
        self.count as u64
    }

    /// Always false: batches hold at least one entry (kept for clippy's `len` convention).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `index` lies in this batch.
    pub fn contains(&self, index: LogIndex) -> bool {
        self.first_index <= index && index <= self.last_index()
    }

    /// The encoded body (the whole archive, including entries outside the window).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Window start within the body's entries.
    pub fn skip(&self) -> u32 {
        self.skip
    }

    /// Bytes this batch occupies when sent or stored (its whole body).
    pub fn encoded_len(&self) -> usize {
        self.body.len()
    }

    /// The sub-batch `from ..= to`, sharing the body. Panics unless both lie in the batch.
    pub fn slice(&self, from: LogIndex, to: LogIndex) -> EntryBatch {
        assert!(
            self.contains(from) && self.contains(to) && from <= to,
            "slice {from}..={to} outside batch {}..={}",
            self.first_index,
            self.last_index()
        );
        EntryBatch {
            term: self.term,
            first_index: from,
            body: self.body.clone(),
            skip: self.skip + (from.0 - self.first_index.0) as u32,
            count: (to.0 - from.0 + 1) as u32,
        }
    }

    /// The payloads of the window, in index order, read in place.
    pub fn payloads(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        let archive = self.archive();
        let start = self.skip as usize;
        archive.entries[start..start + self.count as usize]
            .iter()
            .map(|entry| entry.get())
    }

    /// The payload of entry `index`. Panics unless `index` lies in the batch.
    pub fn payload(&self, index: LogIndex) -> &[u8] {
        assert!(self.contains(index), "{index} outside batch");
        let position = self.skip as usize + (index.0 - self.first_index.0) as usize;
        self.archive().entries[position].get()
    }

    fn archive(&self) -> &ArchivedBatchBody<'_> {
        // SAFETY: by the type's invariant, `body` is an aligned archive that was either produced
        // by `encode_body` or validated in `from_body`, and `Bytes` is immutable.
        unsafe { rkyv::access_unchecked::<ArchivedBatchBody<'_>>(&self.body) }
    }
}

impl std::fmt::Debug for EntryBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Batch({}..={} @{} {}B)",
            self.first_index,
            self.last_index(),
            self.term,
            self.body.len()
        )
    }
}

impl PartialEq for EntryBatch {
    /// Batches are equal when they hold the same entries at the same positions.
    fn eq(&self, other: &Self) -> bool {
        self.term == other.term
            && self.first_index == other.first_index
            && self.count == other.count
            && self.payloads().eq(other.payloads())
    }
}

impl Eq for EntryBatch {}

fn encode_body(body: &BatchBody<'_>) -> Bytes {
    // Sized up front: the archive is written once, without reallocations that copy it again.
    let bytes = rkyv::api::high::to_bytes_in::<_, RkyvError>(
        body,
        AlignedVec::<BODY_ALIGN>::with_capacity(body_capacity(body)),
    )
    .expect("encoding into memory cannot fail");
    Bytes::from_owner(bytes)
}

/// Bytes an archived body takes at most: the payloads, one 8-byte boxed-slice header each, and
/// the vector's header, the kind and alignment padding.
fn body_capacity(body: &BatchBody<'_>) -> usize {
    let payload_bytes: usize = body.entries.iter().map(|entry| entry.len()).sum();
    payload_bytes + 8 * body.entries.len() + 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_bodies_fit_their_reserved_capacity() {
        for count in [1usize, 2, 7, 64, 1000] {
            for len in [0usize, 1, 3, 8, 128, 4097] {
                let payloads = vec![vec![0xabu8; len]; count];
                let body = BatchBody {
                    kind: BatchKind::Command,
                    entries: payloads.iter().map(Vec::as_slice).collect(),
                };
                let encoded = encode_body(&body);
                assert!(
                    encoded.len() <= body_capacity(&body),
                    "{count} × {len} B: {} > {}",
                    encoded.len(),
                    body_capacity(&body)
                );
            }
        }
    }

    fn sample() -> EntryBatch {
        EntryBatch::encode(
            BatchKind::Command,
            Term(3),
            LogIndex(10),
            [b"a".as_slice(), b"bb", b"ccc", b"dddd"],
        )
    }

    #[test]
    fn payloads_round_trip_in_place() {
        let batch = sample();
        assert_eq!(batch.last_index(), LogIndex(13));
        let payloads: Vec<&[u8]> = batch.payloads().collect();
        assert_eq!(payloads, vec![&b"a"[..], b"bb", b"ccc", b"dddd"]);
        assert_eq!(batch.payload(LogIndex(12)), b"ccc");
        assert_eq!(batch.kind(), BatchKind::Command);
    }

    #[test]
    fn slice_shares_body_and_keeps_positions() {
        let batch = sample();
        let middle = batch.slice(LogIndex(11), LogIndex(12));
        assert_eq!(middle.first_index(), LogIndex(11));
        assert_eq!(middle.len(), 2);
        assert_eq!(
            middle.payloads().collect::<Vec<_>>(),
            vec![&b"bb"[..], b"ccc"]
        );
        assert_eq!(middle.body().as_ptr(), batch.body().as_ptr());
        let reread = EntryBatch::from_body(
            Term(3),
            LogIndex(11),
            middle.body().clone(),
            middle.skip(),
            2,
        )
        .unwrap();
        assert_eq!(reread, middle);
    }

    #[test]
    fn session_batches_check_every_entry_and_old_kinds_keep_their_codes() {
        use crate::types::{SessionId, SessionRequest};
        let request = SessionEntry::Request {
            request: SessionRequest::new(SessionId(4), 2, 1).unwrap(),
            stamp_ms: 9,
        }
        .encode(b"payload");
        let register = SessionEntry::Register { stamp_ms: 9 }.encode(b"");
        let batch = EntryBatch::encode(
            BatchKind::Session,
            Term(2),
            LogIndex(5),
            [&register[..], &request[..]],
        );
        let reread =
            EntryBatch::from_body(Term(2), LogIndex(6), batch.body().clone(), 1, 1).unwrap();
        assert_eq!(reread.kind(), BatchKind::Session);
        assert_eq!(reread.payload(LogIndex(6)), &request[..]);
        // A bad header anywhere in the body is refused, inside the window or not.
        let mut bad = request.to_vec();
        bad[1] = 1;
        let body = encode_body(&BatchBody {
            kind: BatchKind::Session,
            entries: vec![&bad[..], &register[..]],
        });
        assert!(matches!(
            EntryBatch::from_body(Term(2), LogIndex(6), body.clone(), 1, 1),
            Err(BatchError::SessionEntry { position: 0, .. })
        ));
        assert!(EntryBatch::validate_body(&body, 1, 1).is_err());
        // The archive codes of the kinds that existed before sessions are unchanged, so logs
        // written before them decode as they were written.
        for (kind, code) in [
            (BatchKind::Command, 0u8),
            (BatchKind::Noop, 1),
            (BatchKind::Config, 2),
            (BatchKind::Session, 3),
        ] {
            let body = encode_body(&BatchBody {
                kind,
                entries: vec![&register[..]],
            });
            let archive = rkyv::access::<ArchivedBatchBody<'_>, Failure>(&body).unwrap();
            assert_eq!(std::mem::size_of::<ArchivedBatchKind>(), 1);
            // SAFETY: the archived kind is a one-byte fieldless enum: its byte is its code.
            let stored: u8 = unsafe { std::mem::transmute_copy(&archive.kind) };
            assert_eq!(stored, code, "{kind:?}");
        }
    }

    #[test]
    fn from_body_rejects_bad_windows_and_garbage() {
        let batch = sample();
        let err = EntryBatch::from_body(Term(3), LogIndex(10), batch.body().clone(), 2, 3);
        assert_eq!(
            err.unwrap_err(),
            BatchError::WindowOutOfRange {
                skip: 2,
                count: 3,
                len: 4
            }
        );
        let mut garbage = AlignedVec::<BODY_ALIGN>::new();
        garbage.extend_from_slice(&[0xff; 64]);
        let err = EntryBatch::from_body(Term(1), LogIndex(1), Bytes::from_owner(garbage), 0, 1);
        assert_eq!(err.unwrap_err(), BatchError::InvalidArchive);
    }
}
