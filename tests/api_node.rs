//! The embedding API on three in-process nodes: `Node::transfer_leadership` says why it cannot
//! transfer (not the leader, a target that is not a voter, an unknown group) and, from the
//! leader to a voter, moves the leadership; a node shut down frees its ports and, started again
//! in the same process, rejoins its cluster.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use ringraft::api::{LogOnly, Node, NodeConfig, PeerConfig, ProposalError};
use ringraft::procs::free_port_block;
use ringraft::types::{GroupId, NodeId};

const GROUP: GroupId = GroupId(0);

/// The configurations of three one-shard members listening on loopback (peer port at
/// `base + 20 id`, client port 10 above it), with data under `data`.
fn cluster_configs(data: &std::path::Path) -> Vec<NodeConfig> {
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
            config.client_listen = Some(SocketAddr::from((
                [127, 0, 0, 1],
                base + 20 * peer.id.0 as u16 + 10,
            )));
            config.shards = 1;
            config.groups = 1;
            config.init = true;
            config.io_memory_bytes = 256 << 10;
            config
        })
        .collect()
}

fn start_cluster(data: &std::path::Path) -> Vec<Node> {
    cluster_configs(data)
        .into_iter()
        .map(|config| Node::start(config, |_| LogOnly).expect("node starts"))
        .collect()
}

/// Proposes through each of `nodes` in turn until one commits it (whichever leads, once one
/// does), within 20 s; returns its index.
fn commit_through<'a>(nodes: impl IntoIterator<Item = &'a Node> + Clone, payload: &[u8]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut refusals = Vec::new();
        for node in nodes.clone() {
            match node.propose_blocking(GROUP, payload.to_vec()) {
                Ok(committed) => return committed.index.0,
                Err(error) => refusals.push((node.id(), error)),
            }
        }
        assert!(Instant::now() < deadline, "no commit: {refusals:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The leader every node agrees on, within 20 s.
fn agreed_leader<'a>(nodes: impl IntoIterator<Item = &'a Node> + Clone) -> NodeId {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leaders: Vec<Option<NodeId>> = nodes
            .clone()
            .into_iter()
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

#[test]
fn a_node_shut_down_frees_its_ports_and_rejoins_when_started_again_in_the_same_process() {
    let data = tempfile::tempdir().unwrap();
    let configs = cluster_configs(data.path());
    let mut nodes: Vec<Option<Node>> = configs
        .iter()
        .map(|config| Some(Node::start(config.clone(), |_| LogOnly).expect("node starts")))
        .collect();
    let leader = agreed_leader(nodes.iter().flatten());
    let leader_at = leader.0 as usize - 1;
    commit_through(nodes.iter().flatten(), b"before");

    // The leader stops; none of its listeners may outlive it (a connection to its ports is
    // refused, not taken into the backlog of a listener nobody serves).
    nodes[leader_at].take().unwrap().shutdown().unwrap();
    let stopped = &configs[leader_at];
    for port in [stopped.listen, stopped.client_listen.unwrap()] {
        let refused = std::net::TcpStream::connect(port).map_err(|error| error.kind());
        assert!(
            matches!(refused, Err(std::io::ErrorKind::ConnectionRefused)),
            "{port} still listens after shutdown: {refused:?}"
        );
    }

    // The other two elect a leader and commit without it; then it comes back on the same
    // directory and ports, and catches up through its peers.
    let committed = commit_through(nodes.iter().flatten(), b"while it was down");
    let mut again = stopped.clone();
    again.init = false;
    let restarted = Node::start(again, |_| LogOnly).expect("node restarts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while restarted.status_blocking()[0].summary.commit.0 < committed {
        assert!(
            Instant::now() < deadline,
            "the restarted node did not catch up to {committed}: {:?}",
            restarted.status_blocking()[0].summary
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    restarted.shutdown().unwrap();
    for node in nodes.into_iter().flatten() {
        node.shutdown().unwrap();
    }
}
