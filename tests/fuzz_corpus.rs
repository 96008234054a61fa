//! Replays the committed fuzzing corpus (`fuzz/corpus/<target>/*`) through the same entry
//! points the libFuzzer targets use ([`ringraft::fuzzing`]), on the stable toolchain: every
//! input must be handled without a panic. `write_seed_corpus` (ignored; run it with
//! `--ignored`) regenerates the seeds from real encodings.

mod log_helpers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use log_helpers::{batch, DiskFixture, Fixture};
use ringraft::batch::{BatchKind, EntryBatch, SessionEntry};
use ringraft::constants::FRAME_HEADER_BYTES;
use ringraft::core::{AppendOutcome, AppendRequest, Message};
use ringraft::fuzzing;
use ringraft::log::hard_state::encode_slot;
use ringraft::log::segment::SEGMENT_HEADER_BYTES;
use ringraft::log::LogStore;
use ringraft::net::client_wire::{
    encode_requests, encode_responses, ClientError, ClientRequest, ClientResponse,
};
use ringraft::net::wire::encode_raft;
use ringraft::types::{
    GroupId, HardState, LogIndex, NodeId, SessionId, SessionRefusal, SessionRequest, ShardId, Term,
};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 6] = [
    ("frames", fuzzing::frames),
    ("raft_body", fuzzing::raft_body),
    ("client_body", fuzzing::client_body),
    ("segment_records", fuzzing::segment_records),
    ("hard_state_slot", fuzzing::hard_state_slot),
    ("core_messages", fuzzing::core_messages),
];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

#[test]
fn every_corpus_input_is_handled_without_a_panic() {
    for (name, target) in TARGETS {
        let dir = corpus_dir(name);
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("corpus entry").path();
            let data = std::fs::read(&path).expect("corpus file");
            target(&data);
            // Truncations and a flipped byte of every seed too.
            target(&data[..data.len() / 2]);
            if let Some(middle) = data.len().checked_sub(1).map(|last| last / 2) {
                let mut flipped = data.clone();
                flipped[middle] ^= 0x41;
                target(&flipped);
            }
            inputs += 1;
        }
        assert!(inputs > 0, "no corpus for {name}");
    }
}

/// A batch of client session entries at `first`: a registration and a request.
fn session_batch(first: u64, term: u64) -> EntryBatch {
    let register = SessionEntry::Register { stamp_ms: 1_000 }.encode(b"");
    let request = SessionEntry::Request {
        request: SessionRequest::new(SessionId(first), 1, 1).unwrap(),
        stamp_ms: 1_001,
    }
    .encode(b"incr k");
    EntryBatch::encode(
        BatchKind::Session,
        Term(term),
        LogIndex(first),
        [&register[..], &request[..]],
    )
}

/// Frame bytes of a Raft frame with an AppendEntries (of commands and of session entries) and
/// its acknowledgement.
fn raft_frame() -> Vec<u8> {
    let append = Message::Append(AppendRequest {
        term: Term(3),
        prev_index: LogIndex(4),
        prev_term: Term(2),
        commit: LogIndex(4),
        read_round: 7,
        batches: vec![batch(GroupId(1), 5, 3, 3, 9), session_batch(8, 3)],
    });
    let ack = Message::AppendResponse {
        term: Term(3),
        outcome: AppendOutcome::Accepted {
            match_index: LogIndex(7),
            read_round: 7,
        },
    };
    let mut out = Vec::new();
    encode_raft(
        NodeId(1),
        &[
            (GroupId(1), NodeId(2), &append),
            (GroupId(1), NodeId(1), &ack),
        ],
        &mut out,
    )
    .expect("encodes");
    out
}

fn client_frames() -> (Vec<u8>, Vec<u8>) {
    let mut requests = Vec::new();
    encode_requests(
        &[
            ClientRequest::Propose {
                id: 1,
                group: GroupId(0),
                payload: Bytes::from_static(b"set k v"),
            },
            ClientRequest::Status { id: 2 },
            ClientRequest::RegisterSession {
                id: 3,
                group: GroupId(0),
            },
            ClientRequest::ProposeInSession {
                id: 4,
                group: GroupId(0),
                request: SessionRequest::new(SessionId(7), 2, 1).unwrap(),
                payload: Bytes::from_static(b"incr k"),
            },
        ],
        &mut requests,
    )
    .expect("encodes");
    let mut responses = Vec::new();
    encode_responses(
        &[
            ClientResponse::Committed {
                id: 1,
                index: LogIndex(9),
                output: Bytes::from_static(b"OK"),
            },
            ClientResponse::Error {
                id: 4,
                error: ClientError::Session(SessionRefusal::Unknown(SessionId(7))),
            },
        ],
        &mut responses,
    )
    .expect("encodes");
    (requests, responses)
}

/// Records of a real segment: the bytes after the segment header, zeros trimmed.
fn segment_records() -> Vec<u8> {
    let mut fixture = DiskFixture::new(1 << 20);
    let log = fixture.log();
    log.append(GroupId(1), &batch(GroupId(1), 1, 4, 1, 3))
        .expect("append");
    log.save_hard_state(
        GroupId(1),
        HardState {
            term: Term(1),
            vote: Some(NodeId(1)),
            commit: LogIndex(2),
        },
    )
    .expect("hard state");
    log.append(GroupId(2), &batch(GroupId(2), 1, 2, 1, 5))
        .expect("append");
    log.append(GroupId(2), &session_batch(3, 1))
        .expect("append");
    fixture.sync();
    let path = log_helpers::segment_path(fixture.dir.path(), 1);
    let bytes = std::fs::read(path).expect("segment");
    let mut records = bytes[SEGMENT_HEADER_BYTES as usize..].to_vec();
    while records.last() == Some(&0) {
        records.pop();
    }
    records
}

fn hard_state_slot() -> Vec<u8> {
    let states: BTreeMap<GroupId, HardState> = [(
        GroupId(1),
        HardState {
            term: Term(4),
            vote: Some(NodeId(2)),
            commit: LogIndex(10),
        },
    )]
    .into_iter()
    .collect();
    encode_slot(1, ShardId(0), 3, &states)
}

/// One seed per role (the first byte), each followed by ticks, a durability report and one
/// message of every kind from node 2 (`2` then the sender pick `2`, then the kind).
fn core_message_seeds() -> Vec<Vec<u8>> {
    (0..4u8)
        .map(|role| {
            let mut seed = vec![role, 0, 0, 1];
            for kind in 0..6u8 {
                seed.extend_from_slice(&[2, 2, 0x44, kind, 0x45, 0x46, 0x47, 0x31, 0x52, 0x62]);
            }
            seed
        })
        .collect()
}

#[test]
#[ignore = "regenerates the committed seed corpus"]
fn write_seed_corpus() {
    let raft = raft_frame();
    let (requests, responses) = client_frames();
    let mut stream = vec![3u8];
    stream.extend_from_slice(&raft);
    stream.extend_from_slice(&requests);
    let seeds: [(&str, Vec<Vec<u8>>); 6] = [
        ("frames", vec![stream, [&[0u8][..], &responses].concat()]),
        ("raft_body", vec![raft[FRAME_HEADER_BYTES..].to_vec()]),
        (
            "client_body",
            vec![
                requests[FRAME_HEADER_BYTES..].to_vec(),
                responses[FRAME_HEADER_BYTES..].to_vec(),
            ],
        ),
        ("segment_records", vec![segment_records()]),
        ("hard_state_slot", vec![hard_state_slot()]),
        ("core_messages", core_message_seeds()),
    ];
    for (name, inputs) in seeds {
        let dir = corpus_dir(name);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        for (i, input) in inputs.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), input).expect("write seed");
        }
    }
}
