//! Property tests of the on-disk encodings taken one by one: record headers, segment headers
//! and hard-state slots decode to what was encoded, and any single flipped byte is noticed
//! (by the decoder or by the checksum). The whole log is tested against a model in
//! `log_proptest.rs`, and the decoders take arbitrary bytes in `fuzz/`.

use std::collections::BTreeMap;

use proptest::prelude::*;
use ringraft::log::hard_state::{decode_slot, encode_slot, SlotState};
use ringraft::log::record::{RecordHeader, RecordKind};
use ringraft::log::segment::SegmentHeader;
use ringraft::types::{GroupId, HardState, LogIndex, NodeId, ShardId, Term};

fn record_header() -> impl Strategy<Value = (RecordHeader, Vec<u8>)> {
    prop_oneof![
        (
            1u32..40,
            any::<u64>(),
            1u64..1 << 40,
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(count, group, first, term, flush, skip, body)| {
                let header = RecordHeader {
                    kind: RecordKind::Entries,
                    body_len: body.len() as u32,
                    count,
                    group: GroupId(group),
                    first: LogIndex(first),
                    term: Term(term),
                    flush,
                    skip,
                    segment: flush.rotate_left(7) ^ group,
                };
                (header, body)
            }),
        (
            prop::bool::ANY,
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(|(truncate, group, first, term, flush)| {
                let header = RecordHeader {
                    kind: if truncate {
                        RecordKind::Truncate
                    } else {
                        RecordKind::Compact
                    },
                    body_len: 0,
                    count: 0,
                    group: GroupId(group),
                    first: LogIndex(first),
                    term: Term(term),
                    flush,
                    skip: 0,
                    segment: flush.rotate_left(7) ^ group,
                };
                (header, Vec::new())
            }),
    ]
}

fn hard_states() -> impl Strategy<Value = BTreeMap<GroupId, HardState>> {
    prop::collection::btree_map(
        any::<u64>().prop_map(GroupId),
        (any::<u64>(), prop::option::of(1u64..100), any::<u64>()).prop_map(
            |(term, vote, commit)| HardState {
                term: Term(term),
                vote: vote.map(NodeId),
                commit: LogIndex(commit),
            },
        ),
        0..6,
    )
}

proptest! {
    #[test]
    fn record_headers_round_trip_and_detect_a_flipped_byte(
        (header, body) in record_header(),
        flip in any::<prop::sample::Index>(),
    ) {
        let bytes = header.encode(&body);
        prop_assert_eq!(RecordHeader::decode(&bytes), Ok(header));
        prop_assert!(RecordHeader::crc_matches(&bytes, &body));
        let mut damaged = bytes;
        let at = flip.index(damaged.len());
        damaged[at] ^= 0x20;
        let noticed = RecordHeader::decode(&damaged) != Ok(header)
            || !RecordHeader::crc_matches(&damaged, &body);
        prop_assert!(noticed, "byte {} flipped unnoticed", at);
    }

    #[test]
    fn segment_headers_round_trip_and_detect_a_flipped_byte(
        cluster_id in any::<u64>(),
        shard in any::<u32>(),
        sequence in any::<u64>(),
        size in any::<u64>(),
        flip in any::<prop::sample::Index>(),
    ) {
        let recycled = sequence % 2 == 1;
        let header = SegmentHeader { cluster_id, shard: ShardId(shard), sequence, size, recycled };
        let bytes = header.encode();
        prop_assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        let mut damaged = bytes;
        let at = flip.index(damaged.len());
        damaged[at] ^= 0x01;
        prop_assert!(SegmentHeader::decode(&damaged).is_err());
    }

    #[test]
    fn hard_state_slots_round_trip_and_detect_a_flipped_byte(
        states in hard_states(),
        generation in 1u64..1 << 60,
        flip in any::<prop::sample::Index>(),
    ) {
        let bytes = encode_slot(7, ShardId(2), generation, &states);
        let expected = SlotState::Valid { generation, states: states.clone() };
        prop_assert_eq!(decode_slot(&bytes, Some((7, ShardId(2)))), Ok(expected.clone()));
        prop_assert_eq!(decode_slot(&bytes, None), Ok(expected.clone()));
        let mut damaged = bytes.clone();
        let at = flip.index(damaged.len());
        damaged[at] ^= 0x04;
        prop_assert_ne!(decode_slot(&damaged, None), Ok(expected));
    }
}
