//! Client sessions: how a group applies each request of a client at most once, however often
//! the client retries it (Raft thesis §6.3).
//!
//! A client registers a session with an entry of its own ([`SessionEntry::Register`]); the
//! entry's log index becomes the session's id, so ids are unique in their group and chosen by
//! the log, identically on every replica. Each request then carries `(session, seq)` in its
//! entry ([`SessionEntry::Request`]) and the same `seq` on every retry. When a request entry
//! is applied, its group's [`SessionTable`] decides what it does:
//!
//! - unknown session (never registered, expired or evicted): refused,
//!   [`SessionRefusal::Unknown`]: a request is never applied outside a session the group knows;
//! - `seq` applied before and its output still saved: not applied again; answered with the
//!   saved output and the index where it was applied;
//! - `seq` below the session's lowest unanswered request (the client acknowledged its answer):
//!   a late duplicate, refused ([`SessionRefusal::Acknowledged`]);
//! - `seq` at least [`SESSION_UNANSWERED_MAX`] above the session's lowest unanswered request:
//!   refused ([`SessionRefusal::Busy`]) until the client acknowledges the answers below it.
//!   The lowest unanswered request itself always fits, however the client's requests are
//!   ordered in the log, and every saved output lies in that window, so a session holds at
//!   most that many;
//! - otherwise the state machine applies the request and its output is saved.
//!
//! Each request also carries the lowest `seq` whose answer its client has not received; the
//! outputs below it are dropped (the client will not ask again), so a pipelining client keeps
//! exactly the outputs of its requests in flight.
//!
//! Expiry and bounds ([`SessionLimits`]), all decided by the log alone:
//! - the group's clock is the highest `stamp_ms` of its session entries so far (a leader's
//!   wall clock at placement, never read on apply); a session unused for
//!   [`SessionLimits::idle_expiry`] by that clock expires;
//! - registering beyond [`SessionLimits::sessions_max`] sessions evicts the least recently
//!   used one (by the index of its last entry);
//! - saved outputs are counted with [`SAVED_OUTPUT_OVERHEAD_BYTES`] each; once a batch is
//!   applied, least recently used sessions are evicted while the group holds more than
//!   [`SessionLimits::saved_bytes_max`].
//!
//! So a group's sessions hold at most `sessions_max` entries of fixed size plus about
//! `saved_bytes_max` bytes of outputs, whatever clients do. Expiry and eviction only ever turn
//! an answer into [`SessionRefusal::Unknown`] (the retrier's outcome becomes unknown); they
//! never let a request apply twice. A leader whose clock runs far ahead expires sessions early;
//! the group's clock never goes back, so a clock that runs behind delays expiry instead.
//!
//! Invariants: the table is a function of the entries applied (and of the snapshot it was
//! restored from), so it is identical on every replica at the same index; it is written into
//! every snapshot of its group ([`SessionTable::write_to`]) and read back on restore; between
//! two applied batches no saved output is pending.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::time::Duration;

use bytes::Bytes;

use crate::batch::SessionEntry;
use crate::engine::Committed;
use crate::types::{LogIndex, SessionId, SessionRefusal, SessionRequest};

/// How far above its lowest unanswered request a session's requests may go (so also the most
/// outputs it holds that its client has not acknowledged); beyond it requests are refused
/// ([`SessionRefusal::Busy`]). A client pipelines at most this many requests per group.
pub const SESSION_UNANSWERED_MAX: usize = 1024;

/// Bytes a saved output counts for besides its own (its number, index and bookkeeping).
pub const SAVED_OUTPUT_OVERHEAD_BYTES: usize = 64;

/// Magic in front of a snapshot's session table.
const TABLE_MAGIC: [u8; 8] = *b"RRSESSN1";

/// How many sessions a group keeps, and for how long (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionLimits {
    /// Sessions one group keeps (at least one); registering one more evicts the least recently
    /// used. Default 4,096.
    pub sessions_max: usize,
    /// A session unused for this long, by the group's clock, expires. Default one hour.
    pub idle_expiry: Duration,
    /// Bytes of saved outputs (each counted with [`SAVED_OUTPUT_OVERHEAD_BYTES`]) one group
    /// keeps over all its sessions; beyond it least recently used sessions are evicted.
    /// Default 64 MiB.
    pub saved_bytes_max: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            sessions_max: 4096,
            idle_expiry: Duration::from_secs(3600),
            saved_bytes_max: 64 << 20,
        }
    }
}

/// What applying one session entry did, as observers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionOutcome {
    /// A session was opened (its id is the entry's index).
    Registered,
    /// The state machine applied the request.
    Applied,
    /// The request had been applied at `of`; answered with that output.
    Duplicate {
        of: LogIndex,
    },
    Refused(SessionRefusal),
}

/// What the engine does with one session entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Registered,
    /// Give the payload to the state machine, then [`SessionTable::record`] its output.
    Apply,
    /// Answer with the saved output, applied at `committed.index`.
    Duplicate(Committed),
    /// The request's first application is in the run not yet given to the state machine:
    /// apply that run, then decide again.
    AwaitOutput,
    Refused(SessionRefusal),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Saved {
    index: LogIndex,
    /// `None` while the state machine has not applied it yet (within one batch).
    output: Option<Bytes>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Session {
    last_used: LogIndex,
    last_used_ms: u64,
    lowest_unanswered: u64,
    saved: BTreeMap<u64, Saved>,
    saved_bytes: usize,
}

/// The sessions of one group (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionTable {
    clock_ms: u64,
    sessions: BTreeMap<SessionId, Session>,
    /// Each session by the index of its last entry: least recently used first.
    by_use: BTreeMap<LogIndex, SessionId>,
    saved_bytes: usize,
}

fn saved_cost(output: &Bytes) -> usize {
    output.len() + SAVED_OUTPUT_OVERHEAD_BYTES
}

impl SessionTable {
    /// Sessions the group knows.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Whether the group knows `session`.
    pub fn knows(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }

    /// Bytes of saved outputs, as [`SessionLimits::saved_bytes_max`] counts them.
    pub fn saved_bytes(&self) -> usize {
        self.saved_bytes
    }

    /// Decides what the entry at `index` does (see the module documentation).
    pub fn decide(
        &mut self,
        index: LogIndex,
        entry: &SessionEntry,
        limits: &SessionLimits,
    ) -> Decision {
        self.clock_ms = self.clock_ms.max(entry.stamp_ms());
        self.expire_idle(limits);
        let request = match entry {
            SessionEntry::Register { .. } => {
                self.open(SessionId(index.0), index);
                while self.sessions.len() > limits.sessions_max.max(1) {
                    self.evict_least_recently_used();
                }
                return Decision::Registered;
            }
            SessionEntry::Request { request, .. } => request,
        };
        let id = request.session();
        let Some(session) = self.sessions.get_mut(&id) else {
            return Decision::Refused(SessionRefusal::Unknown(id));
        };
        self.by_use.remove(&session.last_used);
        self.by_use.insert(index, id);
        session.last_used = index;
        session.last_used_ms = self.clock_ms;
        if request.lowest_unanswered() > session.lowest_unanswered {
            session.lowest_unanswered = request.lowest_unanswered();
            let kept = session.saved.split_off(&session.lowest_unanswered);
            let dropped: usize = std::mem::replace(&mut session.saved, kept)
                .values()
                .filter_map(|saved| saved.output.as_ref().map(saved_cost))
                .sum();
            session.saved_bytes -= dropped;
            self.saved_bytes -= dropped;
        }
        let seq = request.seq();
        if seq < session.lowest_unanswered {
            return Decision::Refused(SessionRefusal::Acknowledged { session: id, seq });
        }
        match session.saved.get(&seq) {
            Some(Saved {
                index,
                output: Some(output),
            }) => {
                return Decision::Duplicate(Committed {
                    index: *index,
                    output: output.clone(),
                })
            }
            Some(Saved { output: None, .. }) => return Decision::AwaitOutput,
            None => {}
        }
        // A window, not a count: the lowest unanswered request always fits, so a client whose
        // requests reach the log out of order is never refused forever. Every saved output
        // lies in the window, so a session still holds at most the maximum.
        if seq - session.lowest_unanswered >= SESSION_UNANSWERED_MAX as u64 {
            return Decision::Refused(SessionRefusal::Busy(id));
        }
        session.saved.insert(
            seq,
            Saved {
                index,
                output: None,
            },
        );
        Decision::Apply
    }

    /// The state machine applied `request`, the entry at `index`, with `output`: saves it, if
    /// the session still waits for it (a later entry of the same batch may have acknowledged
    /// it, or evicted the session).
    pub fn record(&mut self, request: &SessionRequest, index: LogIndex, output: &Bytes) {
        let Some(session) = self.sessions.get_mut(&request.session()) else {
            return;
        };
        if let Some(saved) = session.saved.get_mut(&request.seq()) {
            if saved.index == index && saved.output.is_none() {
                saved.output = Some(output.clone());
                session.saved_bytes += saved_cost(output);
                self.saved_bytes += saved_cost(output);
            }
        }
    }

    /// Evicts least recently used sessions while the saved outputs exceed the limit. Called
    /// once a batch is applied (when nothing is pending).
    pub fn enforce_saved_bytes(&mut self, limits: &SessionLimits) {
        while self.saved_bytes > limits.saved_bytes_max {
            self.evict_least_recently_used();
        }
    }

    fn open(&mut self, id: SessionId, index: LogIndex) {
        self.sessions.insert(
            id,
            Session {
                last_used: index,
                last_used_ms: self.clock_ms,
                lowest_unanswered: 0,
                saved: BTreeMap::new(),
                saved_bytes: 0,
            },
        );
        self.by_use.insert(index, id);
    }

    fn remove(&mut self, id: SessionId) {
        if let Some(session) = self.sessions.remove(&id) {
            self.by_use.remove(&session.last_used);
            self.saved_bytes -= session.saved_bytes;
        }
    }

    fn evict_least_recently_used(&mut self) {
        if let Some((_, &id)) = self.by_use.first_key_value() {
            self.remove(id);
        }
    }

    /// Drops the sessions idle for longer than the expiry: the least recently used ones, as
    /// the times of use grow with the index of use.
    fn expire_idle(&mut self, limits: &SessionLimits) {
        let expiry_ms = u64::try_from(limits.idle_expiry.as_millis()).unwrap_or(u64::MAX);
        while let Some((_, &id)) = self.by_use.first_key_value() {
            let last_used_ms = self.sessions[&id].last_used_ms;
            if last_used_ms.saturating_add(expiry_ms) >= self.clock_ms {
                break;
            }
            self.remove(id);
        }
    }

    /// Writes the table (the front of every snapshot body of its group):
    ///
    /// ```text
    /// magic "RRSESSN1" | clock_ms: u64 | session_count: u64 | session_count × (
    ///   id: u64 | last_used: u64 | last_used_ms: u64 | lowest_unanswered: u64
    ///   | saved_count: u64 | saved_count × (seq: u64 | index: u64 | len: u64 | output) )
    /// ```
    /// (little-endian; sessions by id, outputs by seq). Nothing may be pending.
    pub fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(&TABLE_MAGIC)?;
        write_u64(out, self.clock_ms)?;
        write_u64(out, self.sessions.len() as u64)?;
        for (id, session) in &self.sessions {
            for value in [
                id.0,
                session.last_used.0,
                session.last_used_ms,
                session.lowest_unanswered,
                session.saved.len() as u64,
            ] {
                write_u64(out, value)?;
            }
            for (seq, saved) in &session.saved {
                let output = saved
                    .output
                    .as_ref()
                    .expect("no output pending between batches");
                write_u64(out, *seq)?;
                write_u64(out, saved.index.0)?;
                write_u64(out, output.len() as u64)?;
                out.write_all(output)?;
            }
        }
        Ok(())
    }

    /// Reads a table [`SessionTable::write_to`] wrote. Fails with
    /// [`io::ErrorKind::InvalidData`] on anything it would not have written, and allocates only
    /// as bytes arrive (a damaged length runs into the end of the input, not out of memory).
    pub fn read_from(input: &mut dyn Read) -> io::Result<SessionTable> {
        let mut magic = [0; 8];
        input.read_exact(&mut magic)?;
        if magic != TABLE_MAGIC {
            return Err(invalid("the session table does not start with its magic"));
        }
        let mut table = SessionTable {
            clock_ms: read_u64(input)?,
            ..SessionTable::default()
        };
        let count = read_u64(input)?;
        let mut previous: Option<SessionId> = None;
        for _ in 0..count {
            let id = SessionId(read_u64(input)?);
            let last_used = LogIndex(read_u64(input)?);
            let last_used_ms = read_u64(input)?;
            let lowest_unanswered = read_u64(input)?;
            let saved_count = read_u64(input)?;
            if previous.is_some_and(|previous| previous >= id)
                || last_used < LogIndex(id.0)
                || last_used_ms > table.clock_ms
                || table.by_use.contains_key(&last_used)
                || saved_count > SESSION_UNANSWERED_MAX as u64
            {
                return Err(invalid("a session's fields are inconsistent"));
            }
            previous = Some(id);
            let mut session = Session {
                last_used,
                last_used_ms,
                lowest_unanswered,
                saved: BTreeMap::new(),
                saved_bytes: 0,
            };
            let mut previous_seq = None;
            for _ in 0..saved_count {
                let seq = read_u64(input)?;
                let index = LogIndex(read_u64(input)?);
                let len = read_u64(input)?;
                let mut output = Vec::new();
                input.take(len).read_to_end(&mut output)?;
                if output.len() as u64 != len {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the session table ends inside a saved output",
                    ));
                }
                if seq < lowest_unanswered
                    || previous_seq.is_some_and(|previous| previous >= seq)
                    || index > last_used
                {
                    return Err(invalid("a saved output's fields are inconsistent"));
                }
                previous_seq = Some(seq);
                let output = Bytes::from(output);
                session.saved_bytes += saved_cost(&output);
                session.saved.insert(
                    seq,
                    Saved {
                        index,
                        output: Some(output),
                    },
                );
            }
            table.saved_bytes += session.saved_bytes;
            table.by_use.insert(last_used, id);
            table.sessions.insert(id, session);
        }
        Ok(table)
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn write_u64(out: &mut dyn Write, value: u64) -> io::Result<()> {
    out.write_all(&value.to_le_bytes())
}

fn read_u64(input: &mut dyn Read) -> io::Result<u64> {
    let mut word = [0; 8];
    input.read_exact(&mut word)?;
    Ok(u64::from_le_bytes(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SessionLimits = SessionLimits {
        sessions_max: 3,
        idle_expiry: Duration::from_secs(10),
        saved_bytes_max: 1 << 20,
    };

    fn register(table: &mut SessionTable, index: u64, stamp_ms: u64) -> SessionId {
        let decision = table.decide(
            LogIndex(index),
            &SessionEntry::Register { stamp_ms },
            &LIMITS,
        );
        assert_eq!(decision, Decision::Registered);
        SessionId(index)
    }

    fn request(session: SessionId, seq: u64, lowest: u64, stamp_ms: u64) -> SessionEntry {
        SessionEntry::Request {
            request: SessionRequest::new(session, seq, lowest).unwrap(),
            stamp_ms,
        }
    }

    /// Decides the request and, if it is to be applied, records `output` for it.
    fn apply(
        table: &mut SessionTable,
        index: u64,
        entry: SessionEntry,
        output: &'static str,
    ) -> Decision {
        let decision = table.decide(LogIndex(index), &entry, &LIMITS);
        if decision == Decision::Apply {
            let SessionEntry::Request { request, .. } = entry else {
                unreachable!()
            };
            table.record(
                &request,
                LogIndex(index),
                &Bytes::from_static(output.as_bytes()),
            );
        }
        decision
    }

    fn duplicate(index: u64, output: &'static str) -> Decision {
        Decision::Duplicate(Committed {
            index: LogIndex(index),
            output: Bytes::from_static(output.as_bytes()),
        })
    }

    #[test]
    fn a_request_applies_once_and_its_retries_get_its_output() {
        let mut table = SessionTable::default();
        let session = register(&mut table, 5, 1_000);
        assert_eq!(
            apply(&mut table, 6, request(session, 1, 1, 1_001), "one"),
            Decision::Apply
        );
        assert_eq!(
            apply(&mut table, 7, request(session, 2, 1, 1_002), "two"),
            Decision::Apply
        );
        // Retries, in any order, with later stamps: the outputs they had, where they had them.
        assert_eq!(
            apply(&mut table, 8, request(session, 2, 1, 1_003), "x"),
            duplicate(7, "two")
        );
        assert_eq!(
            apply(&mut table, 9, request(session, 1, 1, 1_004), "x"),
            duplicate(6, "one")
        );
        // Acknowledging 1 (the client now waits only for 2 and up) forgets its output: a late
        // copy of it is refused, never applied again.
        assert_eq!(
            apply(&mut table, 10, request(session, 3, 2, 1_005), "three"),
            Decision::Apply
        );
        assert_eq!(
            apply(&mut table, 11, request(session, 1, 1, 1_006), "x"),
            Decision::Refused(SessionRefusal::Acknowledged { session, seq: 1 })
        );
        assert_eq!(
            apply(&mut table, 12, request(session, 2, 1, 1_007), "x"),
            duplicate(7, "two")
        );
        let unknown = SessionId(6);
        assert_eq!(
            apply(&mut table, 13, request(unknown, 1, 1, 1_008), "x"),
            Decision::Refused(SessionRefusal::Unknown(unknown))
        );
    }

    #[test]
    fn a_repeat_within_the_batch_waits_for_the_first_output() {
        let mut table = SessionTable::default();
        let session = register(&mut table, 1, 0);
        let entry = request(session, 1, 1, 0);
        assert_eq!(table.decide(LogIndex(2), &entry, &LIMITS), Decision::Apply);
        assert_eq!(
            table.decide(LogIndex(3), &entry, &LIMITS),
            Decision::AwaitOutput
        );
        let SessionEntry::Request { request, .. } = entry else {
            unreachable!()
        };
        table.record(&request, LogIndex(2), &Bytes::from_static(b"out"));
        assert_eq!(
            table.decide(LogIndex(3), &entry, &LIMITS),
            duplicate(2, "out")
        );
    }

    #[test]
    fn a_session_holds_a_bounded_number_of_unacknowledged_outputs() {
        let mut table = SessionTable::default();
        let session = register(&mut table, 1, 0);
        let mut index = 2;
        for seq in 1..=SESSION_UNANSWERED_MAX as u64 {
            assert_eq!(
                apply(&mut table, index, request(session, seq, 1, 0), "o"),
                Decision::Apply
            );
            index += 1;
        }
        let next = SESSION_UNANSWERED_MAX as u64 + 1;
        assert_eq!(
            apply(&mut table, index, request(session, next, 1, 0), "o"),
            Decision::Refused(SessionRefusal::Busy(session))
        );
        // Retries of saved ones are still answered, and an acknowledgement makes room.
        assert_eq!(
            apply(&mut table, index + 1, request(session, 1, 1, 0), "x"),
            duplicate(2, "o")
        );
        assert_eq!(
            apply(&mut table, index + 2, request(session, next, 2, 0), "o"),
            Decision::Apply
        );
    }

    /// A pipelining client's requests may reach the log out of order (a follower forwards them
    /// concurrently). If its lowest unanswered request arrives after the session filled up, it
    /// must still be applied: refusing it as busy would refuse it forever, since the client
    /// can acknowledge nothing at or above it.
    #[test]
    fn the_lowest_unanswered_request_is_never_refused_as_busy() {
        let mut table = SessionTable::default();
        let session = register(&mut table, 1, 0);
        let max = SESSION_UNANSWERED_MAX as u64;
        let mut index = 2;
        for seq in 2..=max + 1 {
            let decision = apply(&mut table, index, request(session, seq, 1, 0), "o");
            let busy = Decision::Refused(SessionRefusal::Busy(session));
            assert!(decision == Decision::Apply || decision == busy, "{decision:?}");
            index += 1;
        }
        assert_eq!(
            apply(&mut table, index, request(session, 1, 1, 0), "first"),
            Decision::Apply
        );
        assert!(table.sessions[&session].saved.len() <= SESSION_UNANSWERED_MAX);
    }

    #[test]
    fn idle_sessions_expire_by_the_entries_stamps_and_the_clock_never_goes_back() {
        let mut table = SessionTable::default();
        let old = register(&mut table, 1, 1_000);
        let young = register(&mut table, 2, 5_000);
        // 11,001 ms: `old` (last used at 1,000) has been idle for more than 10 s.
        assert_eq!(
            apply(&mut table, 3, request(young, 1, 1, 11_001), "y"),
            Decision::Apply
        );
        assert!(!table.knows(old) && table.knows(young));
        // A leader whose clock is behind stamps 0: the group's clock stays at 11,001 and
        // `young` (last used then) stays.
        assert_eq!(
            apply(&mut table, 4, request(young, 2, 1, 0), "y"),
            Decision::Apply
        );
        assert_eq!(
            apply(&mut table, 5, request(old, 1, 1, 0), "x"),
            Decision::Refused(SessionRefusal::Unknown(old))
        );
        assert_eq!(
            apply(&mut table, 6, request(young, 3, 1, 21_001), "y"),
            Decision::Apply
        );
        assert!(table.knows(young));
        register(&mut table, 7, 31_002);
        assert!(!table.knows(young), "idle for 10,001 ms");
    }

    #[test]
    fn the_least_recently_used_sessions_are_evicted_beyond_the_limits() {
        let mut table = SessionTable::default();
        let first = register(&mut table, 1, 0);
        let second = register(&mut table, 2, 0);
        let third = register(&mut table, 3, 0);
        // Using `first` makes `second` the least recently used.
        assert_eq!(
            apply(&mut table, 4, request(first, 1, 1, 0), "f"),
            Decision::Apply
        );
        let fourth = register(&mut table, 5, 0);
        assert_eq!(table.len(), LIMITS.sessions_max);
        assert!(!table.knows(second));
        assert!(table.knows(first) && table.knows(third) && table.knows(fourth));
        // Saved outputs past the byte limit evict from the least recently used on.
        let limits = SessionLimits {
            saved_bytes_max: 2 * (SAVED_OUTPUT_OVERHEAD_BYTES + 3),
            ..LIMITS
        };
        for (index, session) in [(6, third), (7, fourth)] {
            let decided = table.decide(LogIndex(index), &request(session, 1, 1, 0), &limits);
            assert_eq!(decided, Decision::Apply);
            let request = SessionRequest::new(session, 1, 1).unwrap();
            table.record(&request, LogIndex(index), &Bytes::from_static(b"out"));
        }
        assert_eq!(
            table.saved_bytes(),
            3 * (SAVED_OUTPUT_OVERHEAD_BYTES + 3) - 2
        );
        table.enforce_saved_bytes(&limits);
        assert!(!table.knows(first), "least recently used");
        assert!(table.knows(third) && table.knows(fourth));
        assert_eq!(table.saved_bytes(), 2 * (SAVED_OUTPUT_OVERHEAD_BYTES + 3));
    }

    fn sample() -> SessionTable {
        let mut table = SessionTable::default();
        let one = register(&mut table, 1, 100);
        let two = register(&mut table, 2, 200);
        apply(&mut table, 3, request(one, 1, 1, 300), "first");
        apply(&mut table, 4, request(one, 2, 1, 400), "");
        apply(&mut table, 5, request(two, 7, 7, 500), "second");
        table
    }

    #[test]
    fn the_table_round_trips_through_its_snapshot_bytes() {
        let table = sample();
        let mut bytes = Vec::new();
        table.write_to(&mut bytes).unwrap();
        let read = SessionTable::read_from(&mut &bytes[..]).unwrap();
        assert_eq!(read, table);
        let mut empty = Vec::new();
        SessionTable::default().write_to(&mut empty).unwrap();
        assert_eq!(
            SessionTable::read_from(&mut &empty[..]).unwrap(),
            SessionTable::default()
        );
        // What follows the table in a snapshot is left unread.
        bytes.extend_from_slice(b"state machine");
        let mut input = &bytes[..];
        SessionTable::read_from(&mut input).unwrap();
        assert_eq!(input, b"state machine");
    }

    #[test]
    fn damaged_tables_are_errors_without_large_allocations() {
        let mut bytes = Vec::new();
        sample().write_to(&mut bytes).unwrap();
        for cut in 0..bytes.len() {
            assert!(
                SessionTable::read_from(&mut &bytes[..cut]).is_err(),
                "cut {cut}"
            );
        }
        // Sessions out of order, a session used before it was registered, a saved output
        // above its session's last use, a huge output length.
        let session_at = 8 + 8 + 8;
        let saved_at = session_at + 5 * 8;
        for (at, value) in [
            (session_at, 9u64),
            (session_at + 8, 0),
            (saved_at + 8, 99),
            (saved_at + 16, u64::MAX),
        ] {
            let mut bad = bytes.clone();
            bad[at..at + 8].copy_from_slice(&value.to_le_bytes());
            assert!(
                SessionTable::read_from(&mut &bad[..]).is_err(),
                "{at}: {value}"
            );
        }
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        let error = SessionTable::read_from(&mut &bad[..]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
