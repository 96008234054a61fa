//! Which group holds a key.
//!
//! A key belongs to group `crc32(tag) mod groups`, where the tag is the part of the key
//! between the first `{` and the next `}` if that part is non-empty, and the whole key
//! otherwise (the hash tags of Redis Cluster). Keys sharing a tag share a group, which is what
//! makes a multi-key write atomic (see [`crate::kv`]). The mapping depends only on the key
//! and the number of groups, so every node computes the same one; changing `--groups` moves
//! keys and needs a fresh cluster.

use crate::types::GroupId;

/// The group of `key` among `groups` (at least one).
pub fn group_of(key: &[u8], groups: u32) -> GroupId {
    GroupId(u64::from(crc32fast::hash(hash_tag(key))) % u64::from(groups.max(1)))
}

fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&byte| byte == b'{') else {
        return key;
    };
    match key[open + 1..].iter().position(|&byte| byte == b'}') {
        Some(len) if len > 0 => &key[open + 1..open + 1 + len],
        _ => key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_pick_the_hashed_part() {
        assert_eq!(hash_tag(b"user:{42}:name"), b"42");
        assert_eq!(hash_tag(b"{}x"), b"{}x");
        assert_eq!(hash_tag(b"a{b"), b"a{b");
        assert_eq!(hash_tag(b"{a}{b}"), b"a");
        assert_eq!(group_of(b"{42}a", 7), group_of(b"{42}b", 7));
        assert_eq!(group_of(b"anything", 1), GroupId(0));
        // The mapping is part of the data layout: it must never change.
        assert_eq!(
            group_of(b"foo", 1000),
            GroupId(u64::from(crc32fast::hash(b"foo")) % 1000)
        );
        assert_eq!(crc32fast::hash(b"foo"), 0x8c73_6521);
    }
}
