//! The simulated nodes' state machine: the kv store that ships ([`KvStore`]), plus, per group,
//! a digest of every command entry it applied, carried through its snapshots.
//!
//! Why the digest: a restored snapshot must hold exactly the committed prefix up to its index
//! (State Machine Safety through snapshots). The kv state alone cannot show which entries made
//! it, so the machine chains `(index, payload)` of each command entry it applies into a digest
//! ([`chain`]), writes `(last index, digest)` in front of the kv snapshot and reads it back on
//! restore. The checker recomputes the digest from the entries committed at those indexes;
//! a snapshot that missed, doubled or invented an entry yields a different digest.
//!
//! A machine made with snapshot jobs ([`SimMachine::new`]) hands the engine a copy of itself
//! as its [`SnapshotJob`], which the simulator runs only when the snapshot is stored, after
//! later entries were applied: a job that wrote anything but the state it was made from would
//! show in the digest.

use std::collections::BTreeMap;
use std::io;

use bytes::Bytes;

use crate::api::{CommittedEntries, SnapshotJob, StateMachine};
use crate::kv::store::KvStore;
use crate::types::{GroupId, LogIndex};

/// What a group's machine reflects: the last command entry applied and the digest of all of
/// them (both zero: none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub index: LogIndex,
    pub digest: u64,
}

#[derive(Clone, Debug, Default)]
pub struct SimMachine {
    kv: KvStore,
    applied: BTreeMap<GroupId, Applied>,
    /// Whether snapshots are written by snapshot jobs.
    in_jobs: bool,
}

/// The digest after `digest` and then the command entry `payload` at `index` (FNV-1a).
pub fn chain(digest: u64, index: LogIndex, payload: &[u8]) -> u64 {
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut hash = digest ^ 0xcbf2_9ce4_8422_2325;
    for &byte in index.0.to_le_bytes().iter().chain(payload) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(PRIME);
    }
    hash
}

impl SimMachine {
    /// An empty machine; its snapshots are written by snapshot jobs if `in_jobs`.
    pub fn new(in_jobs: bool) -> SimMachine {
        SimMachine {
            in_jobs,
            ..SimMachine::default()
        }
    }

    /// The command entries `group`'s state reflects.
    pub fn applied(&self, group: GroupId) -> Applied {
        self.applied.get(&group).copied().unwrap_or_default()
    }
}

impl StateMachine for SimMachine {
    fn apply(&mut self, group: GroupId, entries: CommittedEntries<'_>, outputs: &mut Vec<Bytes>) {
        let applied = self.applied.entry(group).or_default();
        for (index, payload) in entries.iter() {
            applied.digest = chain(applied.digest, index, payload);
            applied.index = index;
        }
        self.kv.apply(group, entries, outputs);
    }

    fn query(&self, group: GroupId, query: &[u8]) -> Bytes {
        self.kv.query(group, query)
    }

    fn snapshot(&self, group: GroupId, out: &mut dyn io::Write) -> io::Result<()> {
        let applied = self.applied(group);
        out.write_all(&applied.index.0.to_le_bytes())?;
        out.write_all(&applied.digest.to_le_bytes())?;
        self.kv.snapshot(group, out)
    }

    fn snapshot_job(&self, group: GroupId) -> Option<SnapshotJob> {
        let copy = self.in_jobs.then(|| self.clone())?;
        Some(Box::new(move |out| copy.snapshot(group, out)))
    }

    fn restore(&mut self, group: GroupId, input: &mut dyn io::Read) -> io::Result<()> {
        let mut word = [0; 8];
        input.read_exact(&mut word)?;
        let index = LogIndex(u64::from_le_bytes(word));
        input.read_exact(&mut word)?;
        let digest = u64::from_le_bytes(word);
        self.kv.restore(group, input)?;
        self.applied.insert(group, Applied { index, digest });
        Ok(())
    }
}
