//! The hard-state file: term, vote and commit hint of every group of a shard, in two
//! alternating checksummed slots.
//!
//! Invariants:
//! - The file is `2 * slot_bytes` long; slot `k` starts at `k * slot_bytes`. Each save writes
//!   the **whole table** (all groups) into the slot that does not hold the newest table, with a
//!   generation one higher, then fdatasyncs. A torn save damages only the slot being written,
//!   which was not acknowledged; the other slot still holds the previous table.
//! - On read, the valid slot with the highest generation wins. An all-zero slot was never
//!   written. If the file exists but neither slot is valid, the shard refuses to start
//!   ([`Error::HardStateCorrupt`]): a node must never forget a vote.
//! - When the table outgrows a slot, the file is rewritten under a temporary name with larger
//!   slots, fsynced, renamed into place, and the directory fsynced.
//!
//! Slot layout (little-endian): magic `u32` "RRHS" at 0, version `u16` at 4, zero `u16` at 6,
//! generation `u64` at 8, cluster `u64` at 16, shard `u32` at 24, group count `u32` at 28,
//! crc `u32` at 32 (over the slot with this field zeroed), zero `u32` at 36; then per group
//! 40 bytes: group `u64`, term `u64`, commit `u64`, vote `u64`, has-vote `u8`, 7 zero bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use super::io::{open_rw, Files};
use super::record::{u32_at, u64_at};
use crate::types::{GroupId, HardState, LogIndex, NodeId, ShardId, Term};

/// Format version written into every slot (the segment format has its own,
/// [`SEGMENT_FORMAT_VERSION`](super::segment::SEGMENT_FORMAT_VERSION)).
pub const HARD_STATE_VERSION: u16 = 1;

/// Name of the hard-state file in a shard directory.
pub const HARD_STATE_FILE: &str = "hardstate";
const SLOT_MAGIC: u32 = u32::from_le_bytes(*b"RRHS");
const SLOT_HEADER_BYTES: usize = 40;
const GROUP_BYTES: usize = 40;
/// Smallest slot size.
pub const SLOT_BYTES_MIN: u64 = 4096;

/// What one slot holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotState {
    /// All zero: never written.
    Empty,
    /// A valid table of the given generation.
    Valid {
        generation: u64,
        states: BTreeMap<GroupId, HardState>,
    },
    /// Unreadable (torn or corrupt).
    Invalid(String),
}

/// Bytes a slot needs for `groups` groups.
pub fn slot_len(groups: usize) -> usize {
    SLOT_HEADER_BYTES + groups * GROUP_BYTES
}

/// Encodes a full table into slot bytes.
pub fn encode_slot(
    cluster_id: u64,
    shard: ShardId,
    generation: u64,
    states: &BTreeMap<GroupId, HardState>,
) -> Vec<u8> {
    let mut b = vec![0u8; slot_len(states.len())];
    b[0..4].copy_from_slice(&SLOT_MAGIC.to_le_bytes());
    b[4..6].copy_from_slice(&HARD_STATE_VERSION.to_le_bytes());
    b[8..16].copy_from_slice(&generation.to_le_bytes());
    b[16..24].copy_from_slice(&cluster_id.to_le_bytes());
    b[24..28].copy_from_slice(&shard.0.to_le_bytes());
    b[28..32].copy_from_slice(&(states.len() as u32).to_le_bytes());
    for (i, (group, state)) in states.iter().enumerate() {
        let at = SLOT_HEADER_BYTES + i * GROUP_BYTES;
        b[at..at + 8].copy_from_slice(&group.0.to_le_bytes());
        b[at + 8..at + 16].copy_from_slice(&state.term.0.to_le_bytes());
        b[at + 16..at + 24].copy_from_slice(&state.commit.0.to_le_bytes());
        if let Some(vote) = state.vote {
            b[at + 24..at + 32].copy_from_slice(&vote.0.to_le_bytes());
            b[at + 32] = 1;
        }
    }
    let crc = crc32fast::hash(&b);
    b[32..36].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes one slot. `Err` when the slot belongs to another cluster or shard.
/// `expected` (cluster, shard), when given, must match the slot's owner.
pub fn decode_slot(
    b: &[u8],
    expected: Option<(u64, ShardId)>,
) -> Result<SlotState, (u64, ShardId)> {
    if b.iter().all(|&x| x == 0) {
        return Ok(SlotState::Empty);
    }
    let invalid = |why: &str| Ok(SlotState::Invalid(why.to_string()));
    if b.len() < SLOT_HEADER_BYTES || u32_at(b, 0) != SLOT_MAGIC {
        return invalid("bad slot magic");
    }
    let count = u32_at(b, 28) as usize;
    let len = slot_len(count);
    if len > b.len() {
        return invalid("group count exceeds the slot");
    }
    let mut copy = b[..len].to_vec();
    copy[32..36].fill(0);
    if crc32fast::hash(&copy) != u32_at(b, 32) {
        return invalid("slot checksum mismatch");
    }
    if u16::from_le_bytes([b[4], b[5]]) != HARD_STATE_VERSION {
        return invalid("unsupported format version");
    }
    let (found_cluster, found_shard) = (u64_at(b, 16), ShardId(u32_at(b, 24)));
    if expected.is_some_and(|e| e != (found_cluster, found_shard)) {
        return Err((found_cluster, found_shard));
    }
    let mut states = BTreeMap::new();
    for i in 0..count {
        let at = SLOT_HEADER_BYTES + i * GROUP_BYTES;
        let vote = (b[at + 32] == 1).then(|| NodeId(u64_at(b, at + 24)));
        states.insert(
            GroupId(u64_at(b, at)),
            HardState {
                term: Term(u64_at(b, at + 8)),
                commit: LogIndex(u64_at(b, at + 16)),
                vote,
            },
        );
    }
    Ok(SlotState::Valid {
        generation: u64_at(b, 8),
        states,
    })
}

/// The hard-state file as read on open.
#[derive(Clone, Debug)]
pub struct LoadedHardState {
    pub path: PathBuf,
    /// Bytes per slot (0 when the file does not exist yet).
    pub slot_bytes: u64,
    /// Both slots as found.
    pub slots: [SlotState; 2],
    /// The slot holding the newest valid table, if any.
    pub newest: Option<usize>,
}

impl LoadedHardState {
    /// The newest table and its generation (empty, generation 0, when there is none).
    pub fn table(&self) -> (u64, BTreeMap<GroupId, HardState>) {
        match self.newest.map(|k| &self.slots[k]) {
            Some(SlotState::Valid { generation, states }) => (*generation, states.clone()),
            _ => (0, BTreeMap::new()),
        }
    }

    /// Whether any slot is unreadable (a torn or corrupt write).
    pub fn damaged_slots(&self) -> Vec<usize> {
        (0..2)
            .filter(|&k| matches!(self.slots[k], SlotState::Invalid(_)))
            .collect()
    }
}

/// Reads the hard-state file of `dir`; a missing file reads as empty. Does not fail on damaged
/// slots (see [`LoadedHardState::newest`]), only on I/O errors and foreign files.
pub fn read_hard_state(dir: &Path, expected: Option<(u64, ShardId)>) -> Result<LoadedHardState> {
    let path = dir.join(HARD_STATE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LoadedHardState {
                path,
                slot_bytes: 0,
                slots: [SlotState::Empty, SlotState::Empty],
                newest: None,
            })
        }
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let slot_bytes = (bytes.len() / 2) as u64;
    let mut slots = [SlotState::Empty, SlotState::Empty];
    for (k, slot) in slots.iter_mut().enumerate() {
        let start = k * slot_bytes as usize;
        let chunk = &bytes[start..start + slot_bytes as usize];
        *slot = decode_slot(chunk, expected).map_err(|(found_cluster, found_shard)| {
            let (cluster, shard) = expected.expect("owner checked only when expected");
            Error::WrongOwner {
                path: path.clone(),
                cluster,
                shard,
                found_cluster,
                found_shard,
            }
        })?;
    }
    let generation = |k: usize| match &slots[k] {
        SlotState::Valid { generation, .. } => Some(*generation),
        _ => None,
    };
    let newest = match (generation(0), generation(1)) {
        (Some(a), Some(b)) => Some(if a >= b { 0 } else { 1 }),
        (Some(_), None) => Some(0),
        (None, Some(_)) => Some(1),
        (None, None) => None,
    };
    Ok(LoadedHardState {
        path,
        slot_bytes,
        slots,
        newest,
    })
}

/// Writer-side state of the hard-state file: where the next save goes.
#[derive(Clone, Debug)]
pub(crate) struct HardStateWriter {
    pub slot_bytes: u64,
    /// Slot the next save writes.
    pub next_slot: usize,
    /// Generation of the newest table written.
    pub generation: u64,
}

/// One save, prepared on the staging side and executed by the writer thread.
#[derive(Debug)]
pub(crate) struct HardStateSave {
    pub bytes: Vec<u8>,
    /// Write at this offset of the existing file...
    pub offset: u64,
    /// ...or, when set, rewrite the whole file with this slot size (slot 0 = `bytes`).
    pub regrow_slot_bytes: Option<u64>,
}

impl HardStateWriter {
    pub fn from_loaded(loaded: &LoadedHardState) -> HardStateWriter {
        let (generation, _) = loaded.table();
        HardStateWriter {
            slot_bytes: loaded.slot_bytes,
            next_slot: loaded.newest.map_or(0, |k| 1 - k),
            generation,
        }
    }

    /// Prepares the save of `states` and advances the slot and generation.
    pub fn prepare(
        &mut self,
        cluster_id: u64,
        shard: ShardId,
        states: &BTreeMap<GroupId, HardState>,
    ) -> HardStateSave {
        self.generation += 1;
        let bytes = encode_slot(cluster_id, shard, self.generation, states);
        if bytes.len() as u64 > self.slot_bytes {
            let slot_bytes = (bytes.len() as u64 * 2)
                .next_power_of_two()
                .max(SLOT_BYTES_MIN);
            self.slot_bytes = slot_bytes;
            self.next_slot = 1;
            return HardStateSave {
                bytes,
                offset: 0,
                regrow_slot_bytes: Some(slot_bytes),
            };
        }
        let offset = self.next_slot as u64 * self.slot_bytes;
        self.next_slot = 1 - self.next_slot;
        HardStateSave {
            bytes,
            offset,
            regrow_slot_bytes: None,
        }
    }
}

/// Executes a save (on the writer thread): write + fdatasync, or a rewrite by rename.
pub(crate) fn execute_save(
    files: &Files,
    dir: &Path,
    path: &Path,
    save: &HardStateSave,
) -> Result<()> {
    match save.regrow_slot_bytes {
        None => {
            let file = open_rw(path)?;
            files.write_at(&file, path, &save.bytes, save.offset)?;
            files.sync_data(&file, path)
        }
        Some(slot_bytes) => {
            let temp = dir.join(format!("{HARD_STATE_FILE}.tmp"));
            files.remove(&temp)?;
            let file = files.create_new(&temp)?;
            files.zero_fill(&file, &temp, 2 * slot_bytes)?;
            files.write_at(&file, &temp, &save.bytes, 0)?;
            files.sync_all(&file, &temp)?;
            files.rename(&temp, path)?;
            files.sync_dir(dir)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_round_trips() {
        let mut states = BTreeMap::new();
        states.insert(
            GroupId(3),
            HardState {
                term: Term(4),
                vote: Some(NodeId(2)),
                commit: LogIndex(9),
            },
        );
        states.insert(GroupId(5), HardState::default());
        let b = encode_slot(1, ShardId(0), 7, &states);
        let mut padded = b.clone();
        padded.resize(4096, 0);
        assert_eq!(
            decode_slot(&padded, Some((1, ShardId(0)))).unwrap(),
            SlotState::Valid {
                generation: 7,
                states
            }
        );
        assert!(decode_slot(&padded, Some((2, ShardId(0)))).is_err());
        padded[50] ^= 4;
        assert!(matches!(
            decode_slot(&padded, Some((1, ShardId(0)))).unwrap(),
            SlotState::Invalid(_)
        ));
    }
}
