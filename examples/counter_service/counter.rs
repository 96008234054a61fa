//! The replicated state: one counter, as a [`StateMachine`].
//!
//! Entries are increments (8 bytes, little-endian `u64`); each answers with the new count.
//! The count wraps around at `u64::MAX` (the same way on every replica, so replicas agree).
//! A snapshot is the count itself, so the node can compact its log behind it and send it to a
//! member too far behind to catch up from the log.

use std::io;

use bytes::Bytes;
use ringraft::api::{CommittedEntries, StateMachine};
use ringraft::types::GroupId;

/// The state machine of the service: see the module documentation.
#[derive(Debug, Default)]
pub struct Counter {
    count: u64,
}

/// The entry that adds `amount` to the count.
pub fn increment(amount: u64) -> Bytes {
    Bytes::copy_from_slice(&amount.to_le_bytes())
}

/// A count as the state machine answers it (an increment's output, a query's answer).
pub fn decode(output: &[u8]) -> Option<u64> {
    output.try_into().ok().map(u64::from_le_bytes)
}

impl StateMachine for Counter {
    fn apply(&mut self, _group: GroupId, entries: CommittedEntries<'_>, outputs: &mut Vec<Bytes>) {
        for (_index, payload) in entries.iter() {
            // The service proposes nothing else; an entry of another size adds nothing.
            let amount = decode(payload).unwrap_or(0);
            self.count = self.count.wrapping_add(amount);
            outputs.push(Bytes::copy_from_slice(&self.count.to_le_bytes()));
        }
    }

    /// Every query reads the count.
    fn query(&self, _group: GroupId, _query: &[u8]) -> Bytes {
        Bytes::copy_from_slice(&self.count.to_le_bytes())
    }

    fn snapshot(&self, _group: GroupId, out: &mut dyn io::Write) -> io::Result<()> {
        out.write_all(&self.count.to_le_bytes())
    }

    fn restore(&mut self, _group: GroupId, input: &mut dyn io::Read) -> io::Result<()> {
        let mut count = [0; 8];
        input.read_exact(&mut count)?;
        self.count = u64::from_le_bytes(count);
        Ok(())
    }
}
