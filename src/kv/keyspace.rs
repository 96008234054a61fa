//! The keys of one group: a map from key to value with optional expiry deadlines.
//!
//! Invariants:
//! - `deadlines` holds `(at, key)` exactly when `map[key]` exists with `expires_at == Some(at)`.
//! - `clock` is the latest entry time applied (it never goes back, whatever the proposers'
//!   clocks do); after [`Keyspace::advance`] no key with a deadline at or before `clock` is left,
//!   so writers see only live keys. Readers pass their own time and skip keys expired by then.
//! - Every change goes through `insert`/`remove`, which keep the two maps in step.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;

/// One stored value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The value's bytes (the store keeps them within [`crate::kv::parse::BULK_BYTES_MAX`]).
    pub value: Vec<u8>,
    /// Wall-clock deadline in ms since the Unix epoch.
    pub expires_at: Option<u64>,
}

impl Item {
    /// Whether the item is still alive at `now_ms`.
    pub fn live_at(&self, now_ms: u64) -> bool {
        self.expires_at.is_none_or(|at| at > now_ms)
    }
}

/// The keys of one group, their deadlines, and the group's clock (see the module docs).
#[derive(Debug, Default)]
pub struct Keyspace {
    map: HashMap<Bytes, Item>,
    deadlines: BTreeSet<(u64, Bytes)>,
    clock: u64,
}

impl Keyspace {
    /// The latest entry time applied.
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// Moves the clock to `now_ms` (if later) and drops every key expired by then.
    pub fn advance(&mut self, now_ms: u64) {
        self.clock = self.clock.max(now_ms);
        while let Some((at, key)) = self.deadlines.first().cloned() {
            if at > self.clock {
                break;
            }
            self.remove(&key);
        }
    }

    /// The item of `key` if it is alive at `now_ms`.
    pub fn get(&self, key: &[u8], now_ms: u64) -> Option<&Item> {
        self.map.get(key).filter(|item| item.live_at(now_ms))
    }

    /// Stores `item` under `key`, replacing any old item.
    pub fn insert(&mut self, key: &[u8], item: Item) {
        let key = Bytes::copy_from_slice(key);
        if let Some(at) = item.expires_at {
            self.deadlines.insert((at, key.clone()));
        }
        if let Some(old) = self.map.insert(key.clone(), item) {
            if let Some(at) = old.expires_at {
                self.deadlines.remove(&(at, key));
            }
        }
    }

    /// Removes `key`; whether it was there.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        match self.map.remove_entry(key) {
            Some((key, item)) => {
                if let Some(at) = item.expires_at {
                    self.deadlines.remove(&(at, key));
                }
                true
            }
            None => false,
        }
    }

    /// Gives `key` the deadline `expires_at` (`None`: never expires); whether the key exists.
    /// Writers call this after [`Keyspace::advance`], with a deadline after the clock.
    pub fn set_deadline(&mut self, key: &[u8], expires_at: Option<u64>) -> bool {
        let Some(item) = self.map.get_mut(key) else {
            return false;
        };
        let key = Bytes::copy_from_slice(key);
        if let Some(old) = item.expires_at {
            self.deadlines.remove(&(old, key.clone()));
        }
        if let Some(at) = expires_at {
            self.deadlines.insert((at, key.clone()));
        }
        item.expires_at = expires_at;
        true
    }

    /// The value of `key` to change in place (its deadline stays). Writers call this after
    /// [`Keyspace::advance`], when every key left is alive.
    pub fn value_mut(&mut self, key: &[u8]) -> Option<&mut Vec<u8>> {
        self.map.get_mut(key).map(|item| &mut item.value)
    }

    /// Keys alive at `now_ms`.
    pub fn live_len(&self, now_ms: u64) -> usize {
        let expired = self
            .deadlines
            .range(..(now_ms.saturating_add(1), Bytes::new()))
            .count();
        self.map.len() - expired
    }

    /// Every key, including those expired but not yet dropped.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Item)> {
        self.map.iter()
    }

    /// Sets the clock (restoring a snapshot).
    pub fn set_clock(&mut self, clock: u64) {
        self.clock = clock;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(value: &str, expires_at: Option<u64>) -> Item {
        Item {
            value: value.into(),
            expires_at,
        }
    }

    #[test]
    fn deadlines_follow_the_items() {
        let mut keys = Keyspace::default();
        keys.insert(b"a", item("1", Some(100)));
        keys.insert(b"b", item("2", Some(200)));
        keys.insert(b"c", item("3", None));
        keys.insert(b"a", item("4", Some(300)));
        assert_eq!(keys.live_len(0), 3);
        assert_eq!(keys.live_len(200), 2);
        assert!(keys.get(b"b", 199).is_some() && keys.get(b"b", 200).is_none());
        keys.advance(250);
        assert_eq!(keys.map.len(), 2);
        assert_eq!(keys.deadlines.len(), 1);
        keys.advance(10);
        assert_eq!(keys.clock(), 250, "the clock never goes back");
        assert!(keys.set_deadline(b"c", Some(400)));
        assert!(keys.set_deadline(b"a", None));
        assert!(!keys.set_deadline(b"zz", Some(1)));
        assert_eq!(
            keys.deadlines.iter().cloned().collect::<Vec<_>>(),
            [(400, Bytes::from_static(b"c"))]
        );
        assert!(keys.set_deadline(b"c", None));
        assert!(keys.remove(b"a"));
        assert!(keys.deadlines.is_empty());
        assert!(!keys.remove(b"a"));
    }
}
