//! Client sessions through the embedding API on one in-process node: `Node::register_session`
//! opens a session at its registration's index, a request proposed again with the same number
//! is answered with its first output and reaches the state machine once, and a session the
//! group does not know is refused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future::block_on;
use ringraft::api::{
    CommittedEntries, Node, NodeConfig, PeerConfig, ProposalError, SessionId, SessionRefusal,
    SessionRequest, StateMachine,
};
use ringraft::types::{GroupId, NodeId};

const GROUP: GroupId = GroupId(0);

/// Counts the entries it applies (in a counter the test also holds) and answers each with the
/// count so far.
struct Counter(Arc<AtomicU64>);

impl StateMachine for Counter {
    fn apply(&mut self, _group: GroupId, entries: CommittedEntries<'_>, outputs: &mut Vec<Bytes>) {
        for _ in entries.iter() {
            let count = self.0.fetch_add(1, Ordering::Relaxed) + 1;
            outputs.push(Bytes::from(count.to_string()));
        }
    }
}

#[test]
fn a_request_proposed_again_in_its_session_is_applied_once() {
    let data = tempfile::tempdir().unwrap();
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let peers = vec![PeerConfig {
        id: NodeId(1),
        addr: listen.into(),
        client_addr: None,
    }];
    let mut config = NodeConfig::new(NodeId(1), listen, peers, data.path().into());
    config.shards = 1;
    config.groups = 1;
    config.init = true;
    config.io_memory_bytes = 256 << 10;
    let applied = Arc::new(AtomicU64::new(0));
    let counter = applied.clone();
    let node = Node::start(config, move |_| Counter(counter.clone())).expect("node starts");
    let session = loop {
        match block_on(node.register_session(GROUP)) {
            Ok(session) => break session,
            Err(ProposalError::NotLeader { .. }) => std::thread::sleep(Duration::from_millis(20)),
            Err(other) => panic!("registration failed: {other}"),
        }
    };
    let request = |seq, lowest| SessionRequest::new(session, seq, lowest).unwrap();
    let first = block_on(node.propose_in_session(GROUP, request(1, 1), &b"+1"[..])).unwrap();
    assert_eq!(first.output, Bytes::from_static(b"1"));
    assert!(
        first.index.0 > session.0,
        "requests follow their registration"
    );
    let again = block_on(node.propose_in_session(GROUP, request(1, 1), &b"+1"[..])).unwrap();
    assert_eq!(again, first, "the first answer, where it was applied");
    let second = block_on(node.propose_in_session(GROUP, request(2, 1), &b"+1"[..])).unwrap();
    assert_eq!(second.output, Bytes::from_static(b"2"));
    assert_eq!(applied.load(Ordering::Relaxed), 2);
    // Once request 1's answer is acknowledged (lowest unanswered 3), a late copy is refused.
    block_on(node.propose_in_session(GROUP, request(3, 3), &b"+1"[..])).unwrap();
    assert_eq!(
        block_on(node.propose_in_session(GROUP, request(1, 1), &b"+1"[..])),
        Err(ProposalError::Session(SessionRefusal::Acknowledged {
            session,
            seq: 1
        }))
    );
    let stranger = SessionId(session.0 + 1_000);
    let unknown = SessionRequest::new(stranger, 1, 1).unwrap();
    assert_eq!(
        block_on(node.propose_in_session(GROUP, unknown, &b"+1"[..])),
        Err(ProposalError::Session(SessionRefusal::Unknown(stranger)))
    );
    assert_eq!(applied.load(Ordering::Relaxed), 3);
    node.shutdown().unwrap();
}
