//! The embedding API on three in-process nodes: `Node::transfer_leadership` says why it cannot
//! transfer (not the leader, a target that is not a voter, an unknown group) and, from the
//! leader to a voter, moves the leadership.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use ringraft::api::{LogOnly, Node, NodeConfig, PeerConfig, ProposalError};
use ringraft::procs::free_port_block;
use ringraft::types::{GroupId, NodeId};

const GROUP: GroupId = GroupId(0);

fn start_cluster(data: &std::path::Path) -> Vec<Node> {
    let base = free_port_block();
    let listen = |id: u64| SocketAddr::from(([127, 0, 0, 1], base + 20 * id as u16));
    let peers: Vec<PeerConfig> = (1..=3)
        .map(|id| PeerConfig {
            id: NodeId(id),
            addr: listen(id).into(),
            client_addr: None,
        })
        .collect();
    peers
        .iter()
        .map(|peer| {
            let data_dir = data.join(peer.id.0.to_string());
            let mut config = NodeConfig::new(peer.id, listen(peer.id.0), peers.clone(), data_dir);
            config.shards = 1;
            config.groups = 1;
            config.init = true;
            config.io_memory_bytes = 256 << 10;
            Node::start(config, |_| LogOnly).expect("node starts")
        })
        .collect()
}

/// The leader every node agrees on, within 20 s.
fn agreed_leader(nodes: &[Node]) -> NodeId {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leaders: Vec<Option<NodeId>> = nodes
            .iter()
            .map(|node| node.status_blocking()[0].summary.leader)
            .collect();
        if let Some(leader) = leaders[0] {
            if leaders.iter().all(|known| *known == Some(leader)) {
                return leader;
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn transfer_leadership_refuses_with_a_reason_or_moves_the_leadership() {
    let data = tempfile::tempdir().unwrap();
    let nodes = start_cluster(data.path());
    let node = |id: NodeId| &nodes[id.0 as usize - 1];
    let leader = agreed_leader(&nodes);
    let follower = NodeId(leader.0 % 3 + 1);

    assert_eq!(
        block_on(node(follower).transfer_leadership(GROUP, leader)),
        Err(ProposalError::NotLeader {
            leader: Some(leader)
        })
    );
    assert_eq!(
        block_on(node(leader).transfer_leadership(GROUP, NodeId(9))),
        Err(ProposalError::ChangeNotAllowed)
    );
    assert_eq!(
        block_on(node(leader).transfer_leadership(GroupId(7), follower)),
        Err(ProposalError::UnknownGroup(GroupId(7)))
    );

    assert_eq!(
        block_on(node(leader).transfer_leadership(GROUP, follower)),
        Ok(())
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while agreed_leader(&nodes) != follower {
        assert!(
            Instant::now() < deadline,
            "leadership did not move to {follower}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for node in nodes {
        node.shutdown().unwrap();
    }
}
