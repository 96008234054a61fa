//! [`KvStore`]: the replicated key-value state machine.
//!
//! One store lives on each shard and holds a [`Keyspace`] per group of that shard. Every log
//! entry is one [`Entry`] (see [`crate::kv::op`]), decoded in place, and its output is the
//! RESP2 reply to the command, ready to be written to a RESP2 client (a RESP3 connection
//! rewrites its nils, [`crate::kv::resp::for_protocol`]).
//!
//! Invariants:
//! - Applying depends only on the entries: time comes from each entry's `now_ms` (through the
//!   keyspace clock), never from this machine's clock, so replicas agree.
//! - Bytes that are not a canonical entry are answered with an error and change nothing.
//! - No value grows beyond [`BULK_BYTES_MAX`] (APPEND past it fails), so every reply fits the
//!   RESP limits of the nodes that forward it.
//! - A read-only entry changes nothing but the group's clock (and the keys expired by it).

use std::collections::HashMap;
use std::io::{self, Write};

use bytes::Bytes;

use crate::api::{CommittedEntries, StateMachine};
use crate::kv::keyspace::{Item, Keyspace};
use crate::kv::op::{Condition, Entry, ExpireIf, ExpireOp, Expiry, Malformed, Op, SetOp, TtlForm};
use crate::kv::parse::{parse_integer, BULK_BYTES_MAX};
use crate::kv::resp::{put_array_header, put_bulk, put_error, put_integer, put_nil, put_ok};
use crate::types::GroupId;

/// Keys of every group of one shard.
#[derive(Clone, Debug, Default)]
pub struct KvStore {
    groups: HashMap<GroupId, Keyspace>,
}

/// The reply of most writes.
const OK: &[u8] = b"+OK\r\n";

/// Bytes handed to the snapshot's writer at a time ([`KvStore::write_snapshot`]).
const SNAPSHOT_CHUNK_BYTES: usize = 64 << 10;

/// First bytes of a snapshot of one group.
const SNAPSHOT_MAGIC: &[u8; 4] = b"RKV1";

impl StateMachine for KvStore {
    fn apply(&mut self, group: GroupId, entries: CommittedEntries<'_>, outputs: &mut Vec<Bytes>) {
        let keys = self.groups.entry(group).or_default();
        // One buffer for every output; the commonest (`+OK`) is not allocated at all.
        let mut out = Vec::new();
        for (_index, payload) in entries.iter() {
            out.clear();
            match Entry::decode(payload) {
                Ok(entry) => {
                    keys.advance(entry.now_ms);
                    if entry.op.is_read() {
                        read(keys, &entry.op, keys.clock(), &mut out);
                    } else {
                        write(keys, entry.op, &mut out);
                    }
                }
                Err(Malformed) => put_error(&mut out, "ERR malformed kv entry"),
            }
            outputs.push(match &out[..] {
                OK => Bytes::from_static(OK),
                other => Bytes::copy_from_slice(other),
            });
        }
    }

    /// Answers a read-only entry against the current state of `group`, judging expiry at the
    /// entry's time (or the group's clock, if later). Anything else is answered with an error.
    fn query(&self, group: GroupId, query: &[u8]) -> Bytes {
        let mut out = Vec::new();
        match Entry::decode(query) {
            Ok(entry) if entry.op.is_read() => match self.groups.get(&group) {
                Some(keys) => read(keys, &entry.op, entry.now_ms.max(keys.clock()), &mut out),
                None => read(&Keyspace::default(), &entry.op, entry.now_ms, &mut out),
            },
            Ok(_) => put_error(&mut out, "ERR not a read-only operation"),
            Err(Malformed) => put_error(&mut out, "ERR malformed kv entry"),
        }
        Bytes::from(out)
    }

    fn snapshot(&self, group: GroupId, out: &mut dyn io::Write) -> io::Result<()> {
        self.write_snapshot(group, out)
    }

    fn restore(&mut self, group: GroupId, input: &mut dyn io::Read) -> io::Result<()> {
        self.restore_snapshot(group, input)
    }
}

impl KvStore {
    /// Writes a snapshot of `group` to `out`, key by key: its clock and every key with its
    /// value and deadline, in no particular order.
    ///
    /// ```text
    /// "RKV1" | clock: u64 | count: u64 | count × (key_len: u32 | key | value_len: u32 | value
    ///        | expires_at_ms: u64 (0: never))
    /// ```
    ///
    /// The fields go to `out` in chunks of 64 KiB, not one call each: a
    /// snapshot stalls its shard's thread while it is written, and five small writes per key
    /// (each checksummed on its own) cost more than the copying.
    pub fn write_snapshot(&self, group: GroupId, out: &mut dyn io::Write) -> io::Result<()> {
        let empty = Keyspace::default();
        let keys = self.groups.get(&group).unwrap_or(&empty);
        let mut out = io::BufWriter::with_capacity(SNAPSHOT_CHUNK_BYTES, out);
        out.write_all(SNAPSHOT_MAGIC)?;
        out.write_all(&keys.clock().to_le_bytes())?;
        out.write_all(&(keys.len() as u64).to_le_bytes())?;
        for (key, item) in keys.iter() {
            for bytes in [key, &item.value] {
                out.write_all(&(bytes.len() as u32).to_le_bytes())?;
                out.write_all(bytes)?;
            }
            out.write_all(&item.expires_at.unwrap_or(0).to_le_bytes())?;
        }
        out.flush()
    }

    /// Replaces the keys of `group` by a snapshot from [`KvStore::write_snapshot`], read as a
    /// stream. On error (`InvalidData` for a malformed snapshot) the group is left as it was.
    pub fn restore_snapshot(&mut self, group: GroupId, input: &mut dyn io::Read) -> io::Result<()> {
        let mut magic = [0; 4];
        input.read_exact(&mut magic)?;
        if &magic != SNAPSHOT_MAGIC {
            return Err(malformed_snapshot("bad magic"));
        }
        let mut keys = Keyspace::default();
        keys.set_clock(read_u64(input)?);
        let count = read_u64(input)?;
        for _ in 0..count {
            let key = read_bytes(input)?;
            let value = read_bytes(input)?;
            let expires_at = Some(read_u64(input)?).filter(|&at| at != 0);
            keys.insert(&key, Item { value, expires_at });
        }
        if input.read(&mut [0])? != 0 {
            return Err(malformed_snapshot("trailing bytes"));
        }
        self.groups.insert(group, keys);
        Ok(())
    }
}

fn malformed_snapshot(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed kv snapshot: {what}"),
    )
}

fn read_u64(input: &mut dyn io::Read) -> io::Result<u64> {
    let mut bytes = [0; 8];
    input.read_exact(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

/// A length-prefixed key or value; lengths beyond the longest value a key can hold are refused
/// before anything is allocated.
fn read_bytes(input: &mut dyn io::Read) -> io::Result<Vec<u8>> {
    let mut len = [0; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > BULK_BYTES_MAX {
        return Err(malformed_snapshot(
            "key or value longer than any client can write",
        ));
    }
    let mut bytes = vec![0; len];
    input.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Answers a read-only `op` with keys alive at `now_ms`.
fn read(keys: &Keyspace, op: &Op<'_>, now_ms: u64, out: &mut Vec<u8>) {
    let value = |key: &[u8]| keys.get(key, now_ms).map(|item| &item.value[..]);
    match op {
        Op::Get(key) => put_value(out, value(key)),
        Op::Strlen(key) => put_integer(out, value(key).map_or(0, <[u8]>::len) as i64),
        Op::MGet(list) => {
            put_array_header(out, list.len());
            list.iter().for_each(|key| put_value(out, value(key)));
        }
        Op::Exists(list) => put_integer(
            out,
            list.iter().filter(|key| value(key).is_some()).count() as i64,
        ),
        Op::DbSize => put_integer(out, keys.live_len(now_ms) as i64),
        Op::Ttl(key, form) => {
            let answer = match keys.get(key, now_ms) {
                None => -2,
                Some(Item {
                    expires_at: None, ..
                }) => -1,
                // Alive: the deadline is after `now_ms`.
                Some(Item {
                    expires_at: Some(at),
                    ..
                }) => {
                    let ms = match form {
                        TtlForm::Seconds | TtlForm::Millis => at - now_ms,
                        TtlForm::UnixSeconds | TtlForm::UnixMillis => *at,
                    };
                    let ms = ms.min(i64::MAX as u64) as i64;
                    // As Redis: TTL rounds to the nearest second, EXPIRETIME truncates.
                    match form {
                        TtlForm::Millis | TtlForm::UnixMillis => ms,
                        TtlForm::Seconds => ms / 1000 + i64::from(ms % 1000 >= 500),
                        TtlForm::UnixSeconds => ms / 1000,
                    }
                }
            };
            put_integer(out, answer);
        }
        _ => put_error(out, "ERR not a read-only operation"),
    }
}

/// Applies a write `op`; every key left in `keys` is alive (the clock was just advanced).
fn write(keys: &mut Keyspace, op: Op<'_>, out: &mut Vec<u8>) {
    match op {
        Op::Set(set) => apply_set(keys, set, out),
        Op::Del(list) => put_integer(
            out,
            list.iter().filter(|key| keys.remove(key)).count() as i64,
        ),
        Op::IncrBy(key, delta) => {
            let current = match keys.get(key, keys.clock()) {
                None => 0,
                Some(item) => match parse_integer(&item.value) {
                    Some(n) => n,
                    None => return put_error(out, "ERR value is not an integer or out of range"),
                },
            };
            let Some(next) = current.checked_add(delta) else {
                return put_error(out, "ERR increment or decrement would overflow");
            };
            let text = next.to_string().into_bytes();
            match keys.value_mut(key) {
                Some(value) => *value = text,
                None => keys.insert(
                    key,
                    Item {
                        value: text,
                        expires_at: None,
                    },
                ),
            }
            put_integer(out, next);
        }
        Op::Append(key, tail) => match keys.value_mut(key) {
            Some(value) if value.len() + tail.len() > BULK_BYTES_MAX => {
                put_error(out, "ERR string exceeds maximum allowed size (512 KiB)")
            }
            Some(value) => {
                value.extend_from_slice(tail);
                put_integer(out, value.len() as i64);
            }
            None => {
                keys.set_value(key, tail, None);
                put_integer(out, tail.len() as i64);
            }
        },
        Op::MSet(pairs) => {
            for (key, value) in pairs {
                keys.set_value(key, value, None);
            }
            put_ok(out);
        }
        Op::Expire(expire) => put_integer(out, i64::from(apply_expire(keys, expire))),
        Op::Persist(key) => {
            let has_deadline = keys
                .get(key, keys.clock())
                .is_some_and(|item| item.expires_at.is_some());
            put_integer(out, i64::from(has_deadline && keys.set_deadline(key, None)));
        }
        _ => put_error(out, "ERR not a write operation"),
    }
}

/// EXPIRE: whether the key exists and its condition held (then it has the new deadline, or
/// is deleted if that deadline is not after the group's clock).
fn apply_expire(keys: &mut Keyspace, expire: ExpireOp<'_>) -> bool {
    let Some(item) = keys.get(expire.key, keys.clock()) else {
        return false;
    };
    // Deadlines of live keys are after the clock, so below i64::MAX ms.
    let current = item.expires_at.map(|at| at as i64);
    let at = expire.at_ms;
    let allowed = match expire.condition {
        ExpireIf::Always => true,
        ExpireIf::NoDeadline => current.is_none(),
        ExpireIf::HasDeadline => current.is_some(),
        ExpireIf::Later => current.is_some_and(|current| at > current),
        ExpireIf::Earlier => current.is_none_or(|current| at < current),
        ExpireIf::EarlierDeadline => current.is_some_and(|current| at < current),
    };
    if allowed {
        match u64::try_from(at).ok().filter(|&at| at > keys.clock()) {
            Some(at) => keys.set_deadline(expire.key, Some(at)),
            None => keys.remove(expire.key),
        };
    }
    allowed
}

fn apply_set(keys: &mut Keyspace, set: SetOp<'_>, out: &mut Vec<u8>) {
    let clock = keys.clock();
    let old = keys.get(set.key, clock);
    let allowed = match set.condition {
        Condition::Always => true,
        Condition::IfAbsent => old.is_none(),
        Condition::IfPresent => old.is_some(),
    };
    match (set.return_old, allowed) {
        (true, _) => put_value(out, old.map(|item| &item.value[..])),
        (false, true) => put_ok(out),
        (false, false) => put_nil(out),
    }
    if !allowed {
        return;
    }
    let expires_at = match set.expiry {
        Expiry::Never => None,
        Expiry::At(at) => Some(at),
        Expiry::Keep => old.and_then(|item| item.expires_at),
    };
    if expires_at.is_some_and(|at| at <= clock) {
        keys.remove(set.key);
    } else {
        keys.set_value(set.key, set.value, expires_at);
    }
}

fn put_value(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(bytes) => put_bulk(out, bytes),
        None => put_nil(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies entries one at a time (as the engine would, in log order) and returns replies.
    fn run(store: &mut KvStore, group: GroupId, entries: &[Entry<'_>]) -> Vec<String> {
        entries
            .iter()
            .map(|entry| {
                let mut out = Vec::new();
                let keys = store.groups.entry(group).or_default();
                keys.advance(entry.now_ms);
                if entry.op.is_read() {
                    read(keys, &entry.op, keys.clock(), &mut out);
                } else {
                    write(keys, entry.op.clone(), &mut out);
                }
                String::from_utf8_lossy(&out).into_owned()
            })
            .collect()
    }

    fn at(now_ms: u64, op: Op<'_>) -> Entry<'_> {
        Entry { now_ms, op }
    }

    fn set<'a>(key: &'a str, value: &'a str) -> SetOp<'a> {
        SetOp {
            key: key.as_bytes(),
            value: value.as_bytes(),
            condition: Condition::Always,
            expiry: Expiry::Never,
            return_old: false,
        }
    }

    #[test]
    fn strings_counters_and_conditions() {
        let mut store = KvStore::default();
        let replies = run(
            &mut store,
            GroupId(0),
            &[
                at(1, Op::Set(set("a", "1"))),
                at(1, Op::IncrBy(b"a", 41)),
                at(1, Op::Get(b"a")),
                at(1, Op::IncrBy(b"n", -2)),
                at(1, Op::Append(b"a", b"x")),
                at(1, Op::IncrBy(b"a", 1)),
                at(1, Op::IncrBy(b"n", i64::MIN)),
                at(
                    1,
                    Op::Set(SetOp {
                        condition: Condition::IfAbsent,
                        ..set("a", "z")
                    }),
                ),
                at(
                    1,
                    Op::Set(SetOp {
                        condition: Condition::IfPresent,
                        ..set("b", "z")
                    }),
                ),
                at(
                    1,
                    Op::Set(SetOp {
                        return_old: true,
                        ..set("a", "new")
                    }),
                ),
                at(1, Op::Strlen(b"a")),
                at(1, Op::MSet(vec![(b"b", b"2"), (b"c", b"3")])),
                at(1, Op::MGet(vec![b"a", b"zz", b"c"])),
                at(1, Op::Exists(vec![b"a", b"a", b"zz"])),
                at(1, Op::Del(vec![b"a", b"zz", b"b"])),
                at(1, Op::DbSize),
            ],
        );
        assert_eq!(
            replies,
            [
                "+OK\r\n",
                ":42\r\n",
                "$2\r\n42\r\n",
                ":-2\r\n",
                ":3\r\n",
                "-ERR value is not an integer or out of range\r\n",
                "-ERR increment or decrement would overflow\r\n",
                "$-1\r\n",
                "$-1\r\n",
                "$3\r\n42x\r\n",
                ":3\r\n",
                "+OK\r\n",
                "*3\r\n$3\r\nnew\r\n$-1\r\n$1\r\n3\r\n",
                ":2\r\n",
                ":2\r\n",
                ":2\r\n",
            ]
        );
    }

    #[test]
    fn expiry_follows_entry_times_not_the_local_clock() {
        let mut store = KvStore::default();
        let with_ttl = |at_ms| SetOp {
            expiry: Expiry::At(at_ms),
            ..set("k", "v")
        };
        let replies = run(
            &mut store,
            GroupId(3),
            &[
                at(1_000, Op::Set(with_ttl(1_500))),
                at(1_499, Op::Get(b"k")),
                at(1_200, Op::IncrBy(b"k", 1)),
                at(1_500, Op::Exists(vec![b"k"])),
                at(1_600, Op::Set(with_ttl(1_700))),
                at(
                    1_600,
                    Op::Set(SetOp {
                        expiry: Expiry::Keep,
                        ..set("k", "w")
                    }),
                ),
                at(1_600, Op::Set(with_ttl(1_600))),
                at(1_650, Op::DbSize),
            ],
        );
        assert_eq!(
            replies,
            [
                "+OK\r\n",
                "$1\r\nv\r\n",
                "-ERR value is not an integer or out of range\r\n",
                ":0\r\n",
                "+OK\r\n",
                "+OK\r\n",
                "+OK\r\n",
                ":0\r\n",
            ]
        );
        let keys = &store.groups[&GroupId(3)];
        assert_eq!(keys.clock(), 1_650);
        assert_eq!(
            keys.live_len(0),
            0,
            "a deadline in the past removes the key"
        );
    }

    #[test]
    fn expire_ttl_and_persist_follow_entry_times() {
        let mut store = KvStore::default();
        let expire = |at_ms, condition| {
            Op::Expire(ExpireOp {
                key: b"k",
                at_ms,
                condition,
            })
        };
        let replies = run(
            &mut store,
            GroupId(0),
            &[
                at(1_000, Op::Ttl(b"k", TtlForm::Seconds)),
                at(1_000, expire(5_000, ExpireIf::Always)),
                at(1_000, Op::Set(set("k", "v"))),
                at(1_000, Op::Ttl(b"k", TtlForm::Seconds)),
                at(1_000, Op::Persist(b"k")),
                at(1_000, expire(5_000, ExpireIf::HasDeadline)),
                at(1_000, expire(5_000, ExpireIf::Later)),
                at(1_000, expire(5_000, ExpireIf::EarlierDeadline)),
                at(1_000, expire(5_000, ExpireIf::NoDeadline)),
                at(1_000, expire(6_000, ExpireIf::NoDeadline)),
                at(1_499, Op::Ttl(b"k", TtlForm::Millis)),
                at(1_499, Op::Ttl(b"k", TtlForm::Seconds)),
                at(1_501, Op::Ttl(b"k", TtlForm::Seconds)),
                at(1_500, expire(4_000, ExpireIf::Later)),
                at(1_500, expire(6_000, ExpireIf::Later)),
                at(1_500, expire(7_000, ExpireIf::Earlier)),
                at(1_500, expire(3_000, ExpireIf::Earlier)),
                at(1_500, expire(2_000, ExpireIf::EarlierDeadline)),
                at(1_600, Op::Ttl(b"k", TtlForm::Millis)),
                at(1_600, Op::Persist(b"k")),
                at(1_600, Op::Persist(b"k")),
                at(1_600, Op::Ttl(b"k", TtlForm::Millis)),
                at(1_600, expire(9_000, ExpireIf::Earlier)),
                at(8_999, Op::Ttl(b"k", TtlForm::Millis)),
                at(9_000, Op::Ttl(b"k", TtlForm::Millis)),
                at(9_000, Op::Persist(b"k")),
                at(9_000, Op::Set(set("k", "v"))),
                at(9_000, expire(-5, ExpireIf::Always)),
                at(9_000, Op::Exists(vec![b"k"])),
                at(9_000, Op::Set(set("k", "v"))),
                at(9_000, expire(12_500, ExpireIf::Always)),
                at(9_000, Op::Ttl(b"k", TtlForm::UnixSeconds)),
                at(9_000, Op::Ttl(b"k", TtlForm::UnixMillis)),
            ],
        );
        assert_eq!(
            replies,
            [
                ":-2\r\n",
                ":0\r\n",
                "+OK\r\n",
                ":-1\r\n",
                ":0\r\n",
                ":0\r\n",
                ":0\r\n",
                ":0\r\n",
                ":1\r\n",
                ":0\r\n",
                ":3501\r\n",
                ":4\r\n",
                ":3\r\n",
                ":0\r\n",
                ":1\r\n",
                ":0\r\n",
                ":1\r\n",
                ":1\r\n",
                ":400\r\n",
                ":1\r\n",
                ":0\r\n",
                ":-1\r\n",
                ":1\r\n",
                ":1\r\n",
                ":-2\r\n",
                ":0\r\n",
                "+OK\r\n",
                ":1\r\n",
                ":0\r\n",
                "+OK\r\n",
                ":1\r\n",
                ":12\r\n",
                ":12500\r\n",
            ]
        );
        assert_eq!(store.groups[&GroupId(0)].live_len(12_500), 0);
    }

    #[test]
    fn queries_read_without_changing_anything() {
        let mut store = KvStore::default();
        run(
            &mut store,
            GroupId(1),
            &[at(
                10,
                Op::Set(SetOp {
                    expiry: Expiry::At(100),
                    ..set("k", "v")
                }),
            )],
        );
        let get = |now_ms| at(now_ms, Op::Get(b"k")).encode();
        assert_eq!(store.query(GroupId(1), &get(99)), "$1\r\nv\r\n");
        assert_eq!(store.query(GroupId(1), &get(100)), "$-1\r\n");
        assert_eq!(store.query(GroupId(2), &get(0)), "$-1\r\n");
        let write = at(0, Op::Del(vec![b"k"])).encode();
        assert_eq!(
            store.query(GroupId(1), &write),
            "-ERR not a read-only operation\r\n"
        );
        assert_eq!(
            store.query(GroupId(1), b"junk"),
            "-ERR malformed kv entry\r\n"
        );
        assert_eq!(store.query(GroupId(1), &get(99)), "$1\r\nv\r\n");
    }

    #[test]
    fn append_stops_at_the_value_limit() {
        let mut store = KvStore::default();
        let half = vec![b'x'; BULK_BYTES_MAX / 2];
        let replies = run(
            &mut store,
            GroupId(0),
            &[
                at(1, Op::Append(b"k", &half)),
                at(1, Op::Append(b"k", &half)),
                at(1, Op::Append(b"k", b"!")),
            ],
        );
        assert_eq!(replies[1], format!(":{BULK_BYTES_MAX}\r\n"));
        assert!(replies[2].starts_with("-ERR string exceeds"));
    }

    #[test]
    fn snapshots_round_trip_and_refuse_damage() {
        let mut store = KvStore::default();
        run(
            &mut store,
            GroupId(0),
            &[
                at(5, Op::MSet(vec![(b"a", b"1"), (b"b", b"")])),
                at(
                    6,
                    Op::Set(SetOp {
                        expiry: Expiry::At(90),
                        ..set("c", "3")
                    }),
                ),
            ],
        );
        let mut snapshot = Vec::new();
        store.write_snapshot(GroupId(0), &mut snapshot).unwrap();
        let mut restored = KvStore::default();
        restored
            .restore_snapshot(GroupId(7), &mut &snapshot[..])
            .unwrap();
        let keys = &restored.groups[&GroupId(7)];
        assert_eq!(keys.clock(), 6);
        let mut items: Vec<_> = keys.iter().map(|(k, i)| (k, i.clone())).collect();
        items.sort_by(|a, b| a.0.cmp(b.0));
        let mut expected: Vec<_> = store.groups[&GroupId(0)]
            .iter()
            .map(|(k, i)| (k, i.clone()))
            .collect();
        expected.sort_by(|a, b| a.0.cmp(b.0));
        assert_eq!(items, expected);
        assert_eq!(keys.live_len(89), 3);
        assert_eq!(keys.live_len(90), 2);
        for cut in 0..snapshot.len() {
            assert!(restored
                .restore_snapshot(GroupId(7), &mut &snapshot[..cut])
                .is_err());
        }
        assert_eq!(
            restored.groups[&GroupId(7)].live_len(0),
            3,
            "left as it was"
        );
    }
}
