//! Three nodes of one cluster in one process, each embedding ringraft as its replication layer
//! for a tiny state machine: a counter per group that every committed entry adds to.
//!
//! Run with `cargo run --release --example embedded_counter`.

use std::time::Duration;

use bytes::Bytes;
use ringraft::api::{CommittedEntries, Node, NodeConfig, PeerConfig, ProposalError, StateMachine};
use ringraft::types::{GroupId, NodeId};

/// Adds each entry's little-endian u64 to a running total and answers with the new total.
#[derive(Default)]
struct Counter {
    total: u64,
}

impl StateMachine for Counter {
    fn apply(&mut self, _group: GroupId, entries: CommittedEntries<'_>, outputs: &mut Vec<Bytes>) {
        for (_index, payload) in entries.iter() {
            let amount = payload
                .try_into()
                .map(u64::from_le_bytes)
                .unwrap_or_default();
            self.total += amount;
            outputs.push(Bytes::copy_from_slice(&self.total.to_le_bytes()));
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data = tempfile::tempdir()?;
    let base = 27_000;
    let listen = |id: u64| -> std::net::SocketAddr {
        format!("127.0.0.1:{}", base + 10 * id).parse().unwrap()
    };
    let peers: Vec<PeerConfig> = (1..=3)
        .map(|id| PeerConfig {
            id: NodeId(id),
            addr: listen(id).into(),
            client_addr: None,
        })
        .collect();
    let nodes: Vec<Node> = peers
        .iter()
        .map(|peer| {
            let mut config = NodeConfig::new(
                peer.id,
                listen(peer.id.0),
                peers.clone(),
                data.path().join(peer.id.to_string()),
            );
            config.shards = 1;
            config.groups = 1;
            config.init = true;
            config.io_memory_bytes = 256 << 10;
            Node::start(config, |_shard| Counter::default())
        })
        .collect::<Result<_, _>>()?;

    // Any node accepts the call; only the leader commits. Follow the leader hint.
    let group = GroupId(0);
    let mut target = 0;
    let mut committed = 0;
    while committed < 10 {
        match nodes[target].propose_blocking(group, 5u64.to_le_bytes().to_vec()) {
            Ok(done) => {
                let total = u64::from_le_bytes(done.output[..].try_into()?);
                println!("entry {} committed, total now {total}", done.index);
                committed += 1;
            }
            Err(ProposalError::NotLeader {
                leader: Some(leader),
            }) => target = leader.0 as usize - 1,
            Err(ProposalError::NotLeader { leader: None }) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(other) => return Err(other.into()),
        }
    }
    for node in &nodes {
        for status in node.status().into_iter().map(|status| status.summary) {
            println!(
                "{}: {:?} of {} in {}, commit {}, applied {}",
                node.id(),
                status.role,
                status.group,
                status.term,
                status.commit,
                status.applied
            );
        }
    }
    for node in nodes {
        node.shutdown()?;
    }
    Ok(())
}
