//! The keys of one group: a map from key to value with optional expiry deadlines.
//!
//! Invariants:
//! - `deadlines` holds `(at, key)` exactly when `map[key]` exists with `expires_at == Some(at)`.
//! - `clock` is the latest entry time applied (it never goes back, whatever the proposers'
//!   clocks do); after [`Keyspace::advance`] no key with a deadline at or before `clock` is left,
//!   so writers see only live keys. Readers pass their own time and skip keys expired by then.
//! - Every change goes through `insert`/`set_value`/`remove`/`set_deadline`, which keep the two
//!   maps in step.
//!
//! Applying a write is mostly cache misses on a large keyspace, so the layout avoids them: keys
//! of up to [`INLINE_KEY_BYTES`] bytes live inside the map's slot (comparing one costs no
//! further miss), and overwriting a key reuses its slot and its value's buffer.

use std::collections::{BTreeSet, HashMap};

use smallvec::SmallVec;

/// Keys up to this long are stored inline in the map (longer ones on the heap).
pub const INLINE_KEY_BYTES: usize = 24;

/// A stored key.
type Key = SmallVec<[u8; INLINE_KEY_BYTES]>;

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
#[derive(Clone, Debug, Default)]
pub struct Keyspace {
    map: HashMap<Key, Item>,
    deadlines: BTreeSet<(u64, Key)>,
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
        match self.map.get_mut(key) {
            Some(slot) => {
                let old = std::mem::replace(slot, item);
                move_deadline(&mut self.deadlines, key, old.expires_at, slot.expires_at);
            }
            None => {
                let key = Key::from_slice(key);
                move_deadline(&mut self.deadlines, &key, None, item.expires_at);
                self.map.insert(key, item);
            }
        }
    }

    /// Stores a copy of `value` under `key` with the deadline `expires_at`, replacing any old
    /// item (in its buffer, when it has room).
    pub fn set_value(&mut self, key: &[u8], value: &[u8], expires_at: Option<u64>) {
        match self.map.get_mut(key) {
            Some(item) => {
                item.value.clear();
                item.value.extend_from_slice(value);
                move_deadline(&mut self.deadlines, key, item.expires_at, expires_at);
                item.expires_at = expires_at;
            }
            None => self.insert(
                key,
                Item {
                    value: value.to_vec(),
                    expires_at,
                },
            ),
        }
    }

    /// Removes `key`; whether it was there.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        match self.map.remove_entry(key) {
            Some((key, item)) => {
                move_deadline(&mut self.deadlines, &key, item.expires_at, None);
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
        move_deadline(&mut self.deadlines, key, item.expires_at, expires_at);
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
            .range(..(now_ms.saturating_add(1), Key::new()))
            .count();
        self.map.len() - expired
    }

    /// How many keys there are, including those expired but not yet dropped.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no keys at all.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every key, including those expired but not yet dropped.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Item)> {
        self.map.iter().map(|(key, item)| (&key[..], item))
    }

    /// Sets the clock (restoring a snapshot).
    pub fn set_clock(&mut self, clock: u64) {
        self.clock = clock;
    }
}

/// Moves `key`'s entry in `deadlines` from `old` to `new` (either `None`: no entry).
fn move_deadline(
    deadlines: &mut BTreeSet<(u64, Key)>,
    key: &[u8],
    old: Option<u64>,
    new: Option<u64>,
) {
    if old == new {
        return;
    }
    if let Some(at) = old {
        deadlines.remove(&(at, Key::from_slice(key)));
    }
    if let Some(at) = new {
        deadlines.insert((at, Key::from_slice(key)));
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
            [(400, Key::from_slice(b"c"))]
        );
        assert!(keys.set_deadline(b"c", None));
        assert!(keys.remove(b"a"));
        assert!(keys.deadlines.is_empty());
        assert!(!keys.remove(b"a"));
    }

    #[test]
    fn set_value_overwrites_in_place_and_moves_the_deadline() {
        let long_key = [b'k'; INLINE_KEY_BYTES + 9];
        let mut keys = Keyspace::default();
        assert!(keys.is_empty());
        for key in [&b"short"[..], &long_key[..]] {
            keys.set_value(key, b"first value", Some(100));
            let buffer = keys.get(key, 0).unwrap().value.as_ptr();
            keys.set_value(key, b"second", Some(300));
            let item = keys.get(key, 0).unwrap();
            assert_eq!(item, &item_of(b"second", Some(300)));
            assert_eq!(item.value.as_ptr(), buffer, "the old buffer had room");
            keys.set_value(key, b"third", None);
            assert_eq!(keys.get(key, u64::MAX), Some(&item_of(b"third", None)));
        }
        assert!(keys.deadlines.is_empty());
        keys.set_value(&long_key, b"v", Some(50));
        keys.advance(50);
        assert!(keys.get(&long_key, 0).is_none());
        assert_eq!(
            keys.iter().map(|(key, _)| key).collect::<Vec<_>>(),
            [b"short"]
        );
        assert_eq!(keys.len(), 1);
    }

    fn item_of(value: &[u8], expires_at: Option<u64>) -> Item {
        Item {
            value: value.to_vec(),
            expires_at,
        }
    }
}
