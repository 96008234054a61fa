//! Entries of the key-value state machine: one operation on the keys of one group, in a
//! compact little-endian layout that is read in place.
//!
//! ```text
//! entry:  tag: u8 | now_ms: u64 | fields of the tag
//! bytes:  len: u32 | len bytes                 (a key or a value)
//! list:   count: u32 | count × bytes           (keys; MSET: key, value, key, value, …)
//!   1 GET key        2 STRLEN key     3 MGET list     4 EXISTS list     5 DBSIZE
//!   6 TTL form: u8 | key        (form: see TtlForm, 0..=3)
//!  16 SET flags: u8 | expire_at_ms: u64 | key | value
//!        flags: bit0 NX, bit1 XX, bit2 GET (answer the old value), bit3 KEEPTTL
//!  17 DEL list      18 INCRBY key | delta: i64      19 APPEND key | value     20 MSET list
//!  21 EXPIRE condition: u8 | at_ms: i64 | key       (condition: see ExpireIf, 0..=5)
//!  22 PERSIST key
//! ```
//!
//! Invariants:
//! - `now_ms` is the wall clock (ms since the Unix epoch) of the node that proposes the entry:
//!   the node that planned it, or, for an entry forwarded to it, the leader that re-stamped it
//!   ([`crate::kv::command`]); never a value taken from the network.
//!   Applying an entry never reads a clock: expiry is judged against the entries' own times, so
//!   every replica reaches the same state. `expire_at_ms` is absolute (0: no expiry); so is
//!   EXPIRE's `at_ms`, which may lie in the past (even before 1970): the key is then deleted.
//! - [`Entry::decode`] borrows every key and value from the entry's bytes (nothing is copied)
//!   and fails, never panics, on anything but a canonical encoding: unknown tags or flags,
//!   lengths past the end, trailing bytes, an odd MSET list, an empty key list.

use bytes::{BufMut, Bytes, BytesMut};

/// What a SET does when the key exists or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// No condition: the key is set whether it exists or not.
    Always,
    /// NX: only if the key does not exist.
    IfAbsent,
    /// XX: only if the key exists.
    IfPresent,
}

/// What a SET does to the key's expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// The key does not expire (any old deadline is dropped).
    Never,
    /// The key expires at this wall-clock time (ms since the Unix epoch).
    At(u64),
    /// KEEPTTL: the key keeps the deadline it had.
    Keep,
}

/// Which keys an EXPIRE changes: Redis 7's NX, XX, GT and LT, where a key without a deadline
/// counts as one that never expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpireIf {
    /// No condition: any existing key.
    Always,
    /// NX: only a key without a deadline.
    NoDeadline,
    /// XX: only a key with a deadline.
    HasDeadline,
    /// GT (alone or with XX): only if the new deadline is later than the key's.
    Later,
    /// LT: only if the new deadline is earlier than the key's (or the key has none).
    Earlier,
    /// XX LT: only a key with a deadline later than the new one.
    EarlierDeadline,
}

/// Every [`ExpireIf`], in the order of their codes in an entry (their discriminants).
const EXPIRE_IFS: [ExpireIf; 6] = [
    ExpireIf::Always,
    ExpireIf::NoDeadline,
    ExpireIf::HasDeadline,
    ExpireIf::Later,
    ExpireIf::Earlier,
    ExpireIf::EarlierDeadline,
];

/// How TTL and its variants answer for a key with a deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TtlForm {
    /// TTL: seconds left, rounded to the nearest.
    Seconds,
    /// PTTL: milliseconds left.
    Millis,
    /// EXPIRETIME: the deadline as a Unix time in seconds, rounded to the nearest.
    UnixSeconds,
    /// PEXPIRETIME: the deadline as a Unix time in milliseconds.
    UnixMillis,
}

/// Every [`TtlForm`], in the order of their codes in an entry (their discriminants).
const TTL_FORMS: [TtlForm; 4] = [
    TtlForm::Seconds,
    TtlForm::Millis,
    TtlForm::UnixSeconds,
    TtlForm::UnixMillis,
];

/// EXPIRE and its variants: give `key` the deadline `at_ms` (ms since the Unix epoch; at or
/// before the entry's time, the key is deleted) if `condition` holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpireOp<'a> {
    /// The key whose deadline changes.
    pub key: &'a [u8],
    /// The new deadline in ms since the Unix epoch; may be in the past, or negative.
    pub at_ms: i64,
    /// Which keys change (NX, XX, GT, LT); the others are left as they are.
    pub condition: ExpireIf,
}

/// SET with its options (and GETSET): store `value` under `key` if `condition` holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetOp<'a> {
    /// The key to set.
    pub key: &'a [u8],
    /// The new value.
    pub value: &'a [u8],
    /// NX / XX: whether the key must be absent or present; otherwise nothing changes.
    pub condition: Condition,
    /// EX / PX / EXAT / PXAT (already an absolute deadline) or KEEPTTL.
    pub expiry: Expiry,
    /// GET option (and GETSET): answer the old value instead of OK.
    pub return_old: bool,
}

/// One operation. Reads change nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op<'a> {
    /// GET key: the value, or nil if the key is missing.
    Get(&'a [u8]),
    /// STRLEN key: the value's length in bytes, 0 if the key is missing.
    Strlen(&'a [u8]),
    /// MGET: an array of each key's value or nil, in the order of the keys.
    MGet(Vec<&'a [u8]>),
    /// EXISTS: how many of the keys exist (a key listed twice counts twice).
    Exists(Vec<&'a [u8]>),
    /// DBSIZE: the number of live keys in the group (the command sums every group's).
    DbSize,
    /// TTL and its variants: the key's deadline in `form`, -1 without one, -2 missing.
    Ttl(&'a [u8], TtlForm),
    /// SET and GETSET: `+OK`, or nil if the condition failed; the old value (or nil) with GET.
    Set(SetOp<'a>),
    /// DEL: removes the keys; how many were removed.
    Del(Vec<&'a [u8]>),
    /// INCRBY key delta (also INCR, DECR, DECRBY): the decimal value (0 if missing) plus
    /// `delta`, stored and answered; the deadline is kept. An error if the value is not an
    /// integer or the sum overflows an `i64`.
    IncrBy(&'a [u8], i64),
    /// APPEND key tail: the new length; the key is created if missing, its deadline kept. An
    /// error if the value would exceed [`crate::kv::parse::BULK_BYTES_MAX`].
    Append(&'a [u8], &'a [u8]),
    /// MSET: sets every (key, value) pair, dropping their deadlines; `+OK`.
    MSet(Vec<(&'a [u8], &'a [u8])>),
    /// EXPIRE and its variants: 1 if the key existed and the condition held (the key then has
    /// the new deadline, or is deleted if that is not after the group's clock), else 0.
    Expire(ExpireOp<'a>),
    /// PERSIST: drop the key's deadline.
    Persist(&'a [u8]),
}

impl Op<'_> {
    /// Whether the operation only reads.
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Op::Get(_) | Op::Strlen(_) | Op::MGet(_) | Op::Exists(_) | Op::DbSize | Op::Ttl(..)
        )
    }
}

/// An operation and the time it was issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The proposing node's wall clock, ms since the Unix epoch: the time expiry is judged at.
    pub now_ms: u64,
    /// What the entry does to (or reads from) the group's keys.
    pub op: Op<'a>,
}

/// Why entry bytes could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed kv entry")]
pub struct Malformed;

const GET: u8 = 1;
const STRLEN: u8 = 2;
const MGET: u8 = 3;
const EXISTS: u8 = 4;
const DBSIZE: u8 = 5;
const TTL: u8 = 6;
const SET: u8 = 16;
const DEL: u8 = 17;
const INCRBY: u8 = 18;
const APPEND: u8 = 19;
const MSET: u8 = 20;
const EXPIRE: u8 = 21;
const PERSIST: u8 = 22;

const FLAG_NX: u8 = 1;
const FLAG_XX: u8 = 2;
const FLAG_GET: u8 = 4;
const FLAG_KEEPTTL: u8 = 8;

impl<'a> Entry<'a> {
    /// Bytes the encoded entry takes at most: its tag and clock, the largest fixed fields of
    /// any operation, and every key and value with its length. The buffer it is written into
    /// is sized once with it, never grown.
    fn encoded_len_max(&self) -> usize {
        const FIXED: usize = 1 + 8 + 1 + 8 + 8 + 4;
        let field = |bytes: &[u8]| 4 + bytes.len();
        FIXED
            + match &self.op {
                Op::Get(key)
                | Op::Strlen(key)
                | Op::Persist(key)
                | Op::Ttl(key, _)
                | Op::IncrBy(key, _) => field(key),
                Op::MGet(keys) | Op::Exists(keys) | Op::Del(keys) => {
                    keys.iter().map(|key| field(key)).sum()
                }
                Op::DbSize => 0,
                Op::Set(set) => field(set.key) + field(set.value),
                Op::Append(key, value) => field(key) + field(value),
                Op::MSet(pairs) => pairs
                    .iter()
                    .map(|(key, value)| field(key) + field(value))
                    .sum(),
                Op::Expire(expire) => field(expire.key),
            }
    }

    /// The entry's encoding.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len_max());
        self.write(&mut out);
        out.freeze()
    }

    /// The entry's encoding, written at the end of `arena` and split off it: entries encoded
    /// into one arena share its allocation (one per block of the arena rather than one per
    /// entry), and a copy of one is a count, not an allocation.
    pub fn encode_into(&self, arena: &mut BytesMut) -> Bytes {
        arena.reserve(self.encoded_len_max());
        self.write(arena);
        arena.split().freeze()
    }

    /// Appends the entry's encoding to `out`.
    fn write(&self, out: &mut BytesMut) {
        let mut out = Writer(out);
        let tag = match &self.op {
            Op::Get(_) => GET,
            Op::Strlen(_) => STRLEN,
            Op::MGet(_) => MGET,
            Op::Exists(_) => EXISTS,
            Op::DbSize => DBSIZE,
            Op::Ttl(..) => TTL,
            Op::Set(_) => SET,
            Op::Del(_) => DEL,
            Op::IncrBy(..) => INCRBY,
            Op::Append(..) => APPEND,
            Op::MSet(_) => MSET,
            Op::Expire(_) => EXPIRE,
            Op::Persist(_) => PERSIST,
        };
        out.0.put_u8(tag);
        out.u64(self.now_ms);
        match &self.op {
            Op::Get(key) | Op::Strlen(key) | Op::Persist(key) => out.bytes(key),
            Op::Ttl(key, form) => {
                out.0.put_u8(*form as u8);
                out.bytes(key);
            }
            Op::MGet(keys) | Op::Exists(keys) | Op::Del(keys) => {
                out.u32(keys.len() as u32);
                keys.iter().for_each(|key| out.bytes(key));
            }
            Op::DbSize => {}
            Op::Set(set) => {
                let mut flags = match set.condition {
                    Condition::Always => 0,
                    Condition::IfAbsent => FLAG_NX,
                    Condition::IfPresent => FLAG_XX,
                };
                if set.return_old {
                    flags |= FLAG_GET;
                }
                let expire_at = match set.expiry {
                    Expiry::Never => 0,
                    Expiry::At(at) => at,
                    Expiry::Keep => {
                        flags |= FLAG_KEEPTTL;
                        0
                    }
                };
                out.0.put_u8(flags);
                out.u64(expire_at);
                out.bytes(set.key);
                out.bytes(set.value);
            }
            Op::IncrBy(key, delta) => {
                out.bytes(key);
                out.u64(*delta as u64);
            }
            Op::Append(key, value) => {
                out.bytes(key);
                out.bytes(value);
            }
            Op::MSet(pairs) => {
                out.u32(pairs.len() as u32 * 2);
                for (key, value) in pairs {
                    out.bytes(key);
                    out.bytes(value);
                }
            }
            Op::Expire(expire) => {
                out.0.put_u8(expire.condition as u8);
                out.u64(expire.at_ms as u64);
                out.bytes(expire.key);
            }
        }
    }

    /// Reads an entry in place.
    pub fn decode(bytes: &'a [u8]) -> Result<Entry<'a>, Malformed> {
        let mut reader = Reader(bytes);
        let tag = reader.u8()?;
        let now_ms = reader.u64()?;
        let op = match tag {
            GET => Op::Get(reader.bytes()?),
            STRLEN => Op::Strlen(reader.bytes()?),
            MGET => Op::MGet(reader.list()?),
            EXISTS => Op::Exists(reader.list()?),
            DBSIZE => Op::DbSize,
            TTL => {
                let form = *TTL_FORMS.get(reader.u8()? as usize).ok_or(Malformed)?;
                Op::Ttl(reader.bytes()?, form)
            }
            SET => {
                let flags = reader.u8()?;
                let expire_at = reader.u64()?;
                if flags & !(FLAG_NX | FLAG_XX | FLAG_GET | FLAG_KEEPTTL) != 0
                    || flags & (FLAG_NX | FLAG_XX) == FLAG_NX | FLAG_XX
                    || (flags & FLAG_KEEPTTL != 0 && expire_at != 0)
                {
                    return Err(Malformed);
                }
                Op::Set(SetOp {
                    key: reader.bytes()?,
                    value: reader.bytes()?,
                    condition: match flags & (FLAG_NX | FLAG_XX) {
                        FLAG_NX => Condition::IfAbsent,
                        FLAG_XX => Condition::IfPresent,
                        _ => Condition::Always,
                    },
                    expiry: match (flags & FLAG_KEEPTTL != 0, expire_at) {
                        (true, _) => Expiry::Keep,
                        (false, 0) => Expiry::Never,
                        (false, at) => Expiry::At(at),
                    },
                    return_old: flags & FLAG_GET != 0,
                })
            }
            DEL => Op::Del(reader.list()?),
            INCRBY => Op::IncrBy(reader.bytes()?, reader.u64()? as i64),
            APPEND => Op::Append(reader.bytes()?, reader.bytes()?),
            MSET => {
                let flat = reader.list()?;
                if flat.len() % 2 != 0 {
                    return Err(Malformed);
                }
                Op::MSet(flat.chunks(2).map(|pair| (pair[0], pair[1])).collect())
            }
            EXPIRE => {
                let condition = *EXPIRE_IFS.get(reader.u8()? as usize).ok_or(Malformed)?;
                let at_ms = reader.u64()? as i64;
                Op::Expire(ExpireOp {
                    key: reader.bytes()?,
                    at_ms,
                    condition,
                })
            }
            PERSIST => Op::Persist(reader.bytes()?),
            _ => return Err(Malformed),
        };
        if !reader.0.is_empty() {
            return Err(Malformed);
        }
        Ok(Entry { now_ms, op })
    }
}

struct Writer<'a>(&'a mut BytesMut);

impl Writer<'_> {
    fn u32(&mut self, n: u32) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    fn u64(&mut self, n: u64) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.u32(bytes.len() as u32);
        self.0.extend_from_slice(bytes);
    }
}

/// The unread rest of an entry.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < len {
            return Err(Malformed);
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Malformed> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Malformed> {
        let mut raw = [0; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(raw))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// A non-empty list; its count is checked against the bytes left before anything is
    /// allocated (each item takes at least its 4-byte length).
    fn list(&mut self) -> Result<Vec<&'a [u8]>, Malformed> {
        let count = self.u32()? as usize;
        if count == 0 || count > self.0.len() / 4 {
            return Err(Malformed);
        }
        (0..count).map(|_| self.bytes()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..12)
    }

    /// An owned operation (the borrowed [`Op`] is built from it).
    #[derive(Clone, Debug)]
    enum Owned {
        Key(u8, Vec<u8>),
        Expire(Vec<u8>, i64, u8),
        Keys(u8, Vec<Vec<u8>>),
        DbSize,
        Set(Vec<u8>, Vec<u8>, u8, u8, u64, bool),
        IncrBy(Vec<u8>, i64),
        Append(Vec<u8>, Vec<u8>),
        MSet(Vec<(Vec<u8>, Vec<u8>)>),
    }

    fn owned() -> impl Strategy<Value = Owned> {
        let keys = proptest::collection::vec(bytes(), 1..5);
        prop_oneof![
            (0u8..5, bytes()).prop_map(|(kind, key)| Owned::Key(kind, key)),
            (bytes(), any::<i64>(), 0u8..6).prop_map(|(k, at, c)| Owned::Expire(k, at, c)),
            (0u8..3, keys).prop_map(|(kind, keys)| Owned::Keys(kind, keys)),
            Just(Owned::DbSize),
            (bytes(), bytes(), 0u8..3, 0u8..3, 1u64.., any::<bool>())
                .prop_map(|(k, v, c, e, at, old)| Owned::Set(k, v, c, e, at, old)),
            (bytes(), any::<i64>()).prop_map(|(k, d)| Owned::IncrBy(k, d)),
            (bytes(), bytes()).prop_map(|(k, v)| Owned::Append(k, v)),
            proptest::collection::vec((bytes(), bytes()), 1..4).prop_map(Owned::MSet),
        ]
    }

    fn borrow(owned: &Owned) -> Op<'_> {
        match owned {
            Owned::Key(0, key) => Op::Get(key),
            Owned::Key(1, key) => Op::Strlen(key),
            Owned::Key(2, key) => Op::Ttl(key, TTL_FORMS[key.len() % TTL_FORMS.len()]),
            Owned::Key(3, key) => Op::Ttl(key, TtlForm::Millis),
            Owned::Key(_, key) => Op::Persist(key),
            Owned::Expire(key, at_ms, condition) => Op::Expire(ExpireOp {
                key,
                at_ms: *at_ms,
                condition: EXPIRE_IFS[*condition as usize],
            }),
            Owned::Keys(kind, keys) => {
                let keys = keys.iter().map(Vec::as_slice).collect();
                match kind {
                    0 => Op::MGet(keys),
                    1 => Op::Exists(keys),
                    _ => Op::Del(keys),
                }
            }
            Owned::DbSize => Op::DbSize,
            Owned::Set(key, value, condition, expiry, at, old) => Op::Set(SetOp {
                key,
                value,
                condition: [Condition::Always, Condition::IfAbsent, Condition::IfPresent]
                    [*condition as usize],
                expiry: [Expiry::Never, Expiry::At(*at), Expiry::Keep][*expiry as usize],
                return_old: *old,
            }),
            Owned::IncrBy(key, delta) => Op::IncrBy(key, *delta),
            Owned::Append(key, value) => Op::Append(key, value),
            Owned::MSet(pairs) => Op::MSet(
                pairs
                    .iter()
                    .map(|(k, v)| (k.as_slice(), v.as_slice()))
                    .collect(),
            ),
        }
    }

    proptest! {
        #[test]
        fn entries_round_trip(owned in owned(), now_ms in any::<u64>()) {
            let entry = Entry { now_ms, op: borrow(&owned) };
            let encoded = entry.encode();
            prop_assert!(encoded.len() <= entry.encoded_len_max());
            // Into an arena holding an earlier entry: the same bytes, the earlier one intact.
            let mut arena = BytesMut::with_capacity(16);
            let earlier = Entry { now_ms: 1, op: Op::DbSize }.encode_into(&mut arena);
            prop_assert_eq!(&entry.encode_into(&mut arena), &encoded);
            prop_assert_eq!(earlier, Entry { now_ms: 1, op: Op::DbSize }.encode());
            prop_assert_eq!(Entry::decode(&encoded), Ok(entry.clone()));
            for cut in 0..encoded.len() {
                prop_assert_eq!(Entry::decode(&encoded[..cut]), Err(Malformed));
            }
            let mut longer = encoded.to_vec();
            longer.push(0);
            prop_assert_eq!(Entry::decode(&longer), Err(Malformed));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Entry::decode(&bytes);
        }
    }

    #[test]
    fn refuses_contradictory_set_flags_and_huge_counts() {
        let mut both = vec![SET];
        both.extend_from_slice(&0u64.to_le_bytes());
        both.push(FLAG_NX | FLAG_XX);
        both.extend_from_slice(&0u64.to_le_bytes());
        both.extend_from_slice(&[0; 8]);
        assert_eq!(Entry::decode(&both), Err(Malformed));
        let mut huge = vec![DEL];
        huge.extend_from_slice(&0u64.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Entry::decode(&huge), Err(Malformed));
        let mut unknown_condition = vec![EXPIRE];
        unknown_condition.extend_from_slice(&0u64.to_le_bytes());
        unknown_condition.push(EXPIRE_IFS.len() as u8);
        unknown_condition.extend_from_slice(&[0; 12]);
        assert_eq!(Entry::decode(&unknown_condition), Err(Malformed));
        unknown_condition[9] = 0;
        assert!(Entry::decode(&unknown_condition).is_ok());
    }
}
