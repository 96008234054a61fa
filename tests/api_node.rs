//! The embedding API on three in-process nodes: `Node::transfer_leadership` says why it cannot
//! transfer (not the leader, a target that is not a voter, an unknown group) and, from the
//! leader to a voter, moves the leadership; a node shut down frees its ports and, started again
//! in the same process, rejoins its cluster; `Node::run_batch` answers a batch in order across
//! shards and messages.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future::block_on;
use ringraft::api::node::BATCH_WORKS_MAX;
use ringraft::api::{
    CommittedEntries, LogOnly, Node, NodeConfig, PeerConfig, ProposalError, ReadConsistency,
    StateMachine, Work,
};
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

/// Answers each entry with `group:n:payload`, `n` counting the group's entries applied so
/// far, and a query with the group's count: the order in which a batch's proposals were
/// placed in each group's log shows in their outputs.
#[derive(Default)]
struct Numbering {
    applied: std::collections::HashMap<GroupId, u64>,
}

impl StateMachine for Numbering {
    fn apply(&mut self, group: GroupId, entries: CommittedEntries<'_>, outputs: &mut Vec<Bytes>) {
        let applied = self.applied.entry(group).or_default();
        for (_, payload) in entries.iter() {
            *applied += 1;
            let payload = String::from_utf8_lossy(payload);
            outputs.push(Bytes::from(format!("{}:{applied}:{payload}", group.0)));
        }
    }

    fn query(&self, group: GroupId, _query: &[u8]) -> Bytes {
        let applied = self.applied.get(&group).copied().unwrap_or(0);
        Bytes::from(applied.to_string())
    }
}

/// `Node::run_batch` on a one-member cluster of two shards and four groups: a batch spanning
/// both shards is answered in the order given, each group's proposals placed in its log in
/// that order; a refused work in the middle gets its own error and the others their outputs;
/// a batch longer than one message (`BATCH_WORKS_MAX`) keeps its order too.
#[test]
fn a_batch_is_answered_in_order_across_shards_and_messages() {
    let data = tempfile::tempdir().unwrap();
    let base = free_port_block();
    let listen = SocketAddr::from(([127, 0, 0, 1], base));
    let me = PeerConfig {
        id: NodeId(1),
        addr: listen.into(),
        client_addr: None,
    };
    let mut config = NodeConfig::new(NodeId(1), listen, vec![me], data.path().join("1"));
    config.shards = 2;
    config.groups = 4;
    config.init = true;
    config.io_memory_bytes = 256 << 10;
    let node = Node::start(config, |_| Numbering::default()).expect("node starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    for group in (0..4).map(GroupId) {
        // The first entry of every group: `group:1:ready`.
        while let Err(error) = node.propose_blocking(group, &b"ready"[..]) {
            assert!(Instant::now() < deadline, "group {group:?}: {error:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let propose = |group: u64, payload: &str| Work::Propose {
        group: GroupId(group),
        payload: Bytes::from(payload.to_string()),
        session: None,
    };
    let read = |group: u64| Work::Read {
        group: GroupId(group),
        query: Bytes::new(),
        consistency: ReadConsistency::Linearizable,
    };
    let works = vec![
        propose(0, "a"),
        propose(1, "b"),
        propose(0, "c"),
        read(3),
        propose(9, "nowhere"),
        propose(2, "d"),
        propose(1, "e"),
        propose(0, "f"),
    ];
    let answers = block_on(node.run_batch(works));
    let outputs: Vec<Result<String, ProposalError>> = answers
        .into_iter()
        .map(|answer| answer.map(|done| String::from_utf8_lossy(&done.output).into_owned()))
        .collect();
    let ok = |text: &str| Ok(text.to_string());
    assert_eq!(
        outputs,
        [
            ok("0:2:a"),
            ok("1:2:b"),
            ok("0:3:c"),
            ok("1"),
            Err(ProposalError::UnknownGroup(GroupId(9))),
            ok("2:2:d"),
            ok("1:3:e"),
            ok("0:4:f"),
        ]
    );
    // More works than one message holds, alternating between the shards (groups 0 and 1 hold
    // 4 and 3 entries so far).
    let count = BATCH_WORKS_MAX + 300;
    let works = (0..count)
        .map(|i| propose(i as u64 % 2, &i.to_string()))
        .collect();
    let answers = block_on(node.run_batch(works));
    assert_eq!(answers.len(), count);
    for (i, answer) in answers.into_iter().enumerate() {
        let group = i % 2;
        let expected = format!("{group}:{}:{i}", [5, 4][group] + i / 2);
        assert_eq!(answer.map(|done| done.output), Ok(Bytes::from(expected)));
    }
    assert!(block_on(node.run_batch(Vec::new())).is_empty());
    node.shutdown().unwrap();
}
