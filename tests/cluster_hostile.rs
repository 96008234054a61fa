//! Hostile input on real node processes: foreign clusters, random bytes and absurd lengths on
//! the peer and client ports. Each bad connection is closed; the node keeps serving everyone
//! else and never panics.

mod procs;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use procs::ProcCluster;
use ringraft::client::Client;
use ringraft::net::{FrameDecoder, FrameKind, HandshakeError, Hello, HelloReply};
use ringraft::types::{GroupId, NodeId, ShardId};

fn read_reply(stream: &mut TcpStream) -> Option<HelloReply> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut decoder = FrameDecoder::new();
    loop {
        if let Ok(Some(frame)) = decoder.next_frame() {
            return HelloReply::decode(&frame).ok();
        }
        let read = stream.read(decoder.spare(4096)).ok()?;
        if read == 0 {
            return None;
        }
        decoder.filled(read);
    }
}

/// Whether the server closed the connection (EOF or reset) within a few seconds.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error) => {
                return !matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

fn still_serves(cluster: &ProcCluster, round: u64) {
    let mut client = Client::connect(
        cluster.client_addrs(),
        cluster.shards(),
        Duration::from_secs(20),
    );
    let results = client.propose_many(GroupId(0), &vec![round.to_le_bytes().to_vec(); 10]);
    for result in results {
        result.expect("the cluster keeps committing");
    }
}

#[test]
fn foreign_peers_and_garbage_are_refused_and_the_cluster_keeps_serving() {
    let cluster = ProcCluster::start(3, 1, 1, &[]);
    still_serves(&cluster, 1);
    let target = &cluster.nodes[0];

    // A peer of another cluster is rejected before any Raft message is read.
    let mut stream = TcpStream::connect(target.peer_addr).unwrap();
    let mut hello = Vec::new();
    Hello {
        cluster_id: cluster.cluster_id() + 1,
        node_id: NodeId(2),
        shard: ShardId(0),
        shard_count: 1,
        protocol_version: ringraft::constants::PROTOCOL_VERSION,
    }
    .encode(&mut hello);
    stream.write_all(&hello).unwrap();
    match read_reply(&mut stream) {
        Some(HelloReply::Rejected(HandshakeError::WrongCluster { .. })) => {}
        other => panic!("expected a wrong-cluster rejection, got {other:?}"),
    }
    assert!(closed_by_server(&mut stream));

    // An unknown node id and an incompatible version are rejected too.
    for (node, version) in [
        (NodeId(99), ringraft::constants::PROTOCOL_VERSION),
        (NodeId(2), 999),
    ] {
        let mut stream = TcpStream::connect(target.peer_addr).unwrap();
        let mut hello = Vec::new();
        Hello {
            cluster_id: cluster.cluster_id(),
            node_id: node,
            shard: ShardId(0),
            shard_count: 1,
            protocol_version: version,
        }
        .encode(&mut hello);
        stream.write_all(&hello).unwrap();
        assert!(matches!(
            read_reply(&mut stream),
            Some(HelloReply::Rejected(_))
        ));
    }

    // Random bytes and a giant length on both ports close the connection.
    let mut garbage = vec![0u8; 4096];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for byte in &mut garbage {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    // A well-formed header (right magic, version and header CRC) announcing 2^63 bytes.
    let mut giant = [0u8; 32];
    giant[..4].copy_from_slice(&ringraft::net::frame::FRAME_MAGIC);
    giant[4..6].copy_from_slice(&ringraft::constants::FRAME_FORMAT_VERSION.to_le_bytes());
    giant[6..8].copy_from_slice(&FrameKind::ClientRequests.code().to_le_bytes());
    giant[8..16].copy_from_slice(&(1u64 << 63).to_le_bytes());
    let header_crc = crc32fast::hash(&giant[..28]);
    giant[28..32].copy_from_slice(&header_crc.to_le_bytes());
    for addr in [target.peer_addr, target.client_addr] {
        for payload in [&garbage[..], &giant[..]] {
            let mut stream = TcpStream::connect(addr).unwrap();
            let _ = stream.write_all(payload);
            assert!(
                closed_by_server(&mut stream),
                "{addr} kept a garbage connection"
            );
        }
    }
    // A flood of idle connections does not stop service.
    let idle: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(target.client_addr).ok())
        .collect();
    still_serves(&cluster, 2);
    drop(idle);
    still_serves(&cluster, 3);
}
