//! The configurations a node's log holds: the one in force at the log's base (from the
//! snapshot, or the bootstrap configuration) and every configuration entry after it.
//!
//! Invariants: `entries` are ordered by index, all above `base.index`; the configuration in
//! force is the last entry's (or the base's). Truncating the log drops the entries it removes,
//! which reverts the node to the configuration before them; compacting folds the entries it
//! passes into the base.

use bytes::Bytes;

use crate::core::membership::Membership;
use crate::types::LogIndex;

/// A configuration and the log index of the entry that set it (0 for the bootstrap one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigEntry {
    pub index: LogIndex,
    pub membership: Membership,
    /// The driver's context attached to the entry (members' addresses).
    pub context: Bytes,
}

#[derive(Clone, Debug, Default)]
pub struct ConfigHistory {
    base: ConfigEntry,
    entries: Vec<ConfigEntry>,
}

impl ConfigHistory {
    pub fn new(base: ConfigEntry) -> ConfigHistory {
        ConfigHistory {
            base,
            entries: Vec::new(),
        }
    }

    /// The configuration in force.
    pub fn latest(&self) -> &ConfigEntry {
        self.entries.last().unwrap_or(&self.base)
    }

    /// The configuration in force just after entry `index`.
    pub fn at(&self, index: LogIndex) -> &ConfigEntry {
        self.entries
            .iter()
            .rev()
            .find(|entry| entry.index <= index)
            .unwrap_or(&self.base)
    }

    /// Records a configuration entry appended at the end of the log.
    pub fn push(&mut self, entry: ConfigEntry) {
        debug_assert!(entry.index > self.latest().index);
        self.entries.push(entry);
    }

    /// Forgets the entries from `from` on; returns whether the configuration in force changed.
    pub fn truncate_from(&mut self, from: LogIndex) -> bool {
        let before = self.entries.len();
        self.entries.retain(|entry| entry.index < from);
        self.entries.len() != before
    }

    /// Folds the entries up to `through` into the base.
    pub fn compact(&mut self, through: LogIndex) {
        let folded = self.entries.partition_point(|entry| entry.index <= through);
        if folded > 0 {
            self.base = self
                .entries
                .drain(..folded)
                .next_back()
                .expect("folded > 0");
        }
    }

    /// Checks the invariants in the module docs, and that the configuration in force is at
    /// most `last_index` (the log's last index): walks every entry, O(configuration entries).
    pub fn check(&self, last_index: LogIndex) -> Result<(), String> {
        let mut previous = self.base.index;
        for entry in &self.entries {
            if entry.index <= previous {
                return Err(format!(
                    "configuration entry {} not above {previous}",
                    entry.index
                ));
            }
            previous = entry.index;
        }
        if previous > last_index {
            return Err(format!(
                "configuration in force at {previous}, beyond the last index {last_index}"
            ));
        }
        Ok(())
    }

    /// Replaces everything with `base` (a snapshot that replaced the whole log).
    pub fn reset(&mut self, base: ConfigEntry) {
        self.base = base;
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::NodeId;

    fn entry(index: u64, voters: &[u64]) -> ConfigEntry {
        ConfigEntry {
            index: LogIndex(index),
            membership: Membership::with_voters(voters.iter().map(|&v| NodeId(v))),
            context: Bytes::new(),
        }
    }

    #[test]
    fn truncation_reverts_and_compaction_folds() {
        let mut history = ConfigHistory::new(entry(0, &[1, 2, 3]));
        history.push(entry(5, &[1, 2, 3, 4]));
        history.push(entry(9, &[1, 2, 4]));
        assert_eq!(history.latest().index, LogIndex(9));
        assert_eq!(history.at(LogIndex(7)).index, LogIndex(5));
        assert_eq!(history.at(LogIndex(4)).index, LogIndex(0));
        assert!(history.truncate_from(LogIndex(9)));
        assert!(!history.truncate_from(LogIndex(9)));
        assert_eq!(history.latest().index, LogIndex(5));
        history.compact(LogIndex(6));
        assert_eq!(history.at(LogIndex(1)).index, LogIndex(5));
        assert!(!history.truncate_from(LogIndex(6)));
        assert_eq!(history.latest().index, LogIndex(5));
        history.check(LogIndex(6)).unwrap();
        assert!(history.check(LogIndex(4)).is_err());
    }
}
