//! `kv::gather::Gatherer` on an in-process one-member kv node: many connections (tasks) hand
//! in batches at once, and each gets exactly its own answers, in its own order, whatever
//! batch of the node its works went in; reads gathered beside writes are answered too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringraft::api::{Node, NodeConfig, PeerConfig, ReadConsistency, Work};
use ringraft::kv::gather::Gatherer;
use ringraft::kv::op::{Entry, Op};
use ringraft::kv::store::KvStore;
use ringraft::procs::free_port_block;
use ringraft::types::{GroupId, NodeId};

const GROUP: GroupId = GroupId(0);
const CONNECTIONS: usize = 24;
const ROUNDS: usize = 6;

fn entry(op: Op<'_>) -> Bytes {
    Entry { now_ms: 1, op }.encode()
}

fn append(key: &str, tail: &str) -> Work {
    Work::Propose {
        group: GROUP,
        payload: entry(Op::Append(key.as_bytes(), tail.as_bytes())),
        session: None,
    }
}

fn outputs(
    answers: Vec<Result<ringraft::api::Committed, ringraft::api::ProposalError>>,
) -> Vec<String> {
    answers
        .into_iter()
        .map(|answer| String::from_utf8_lossy(&answer.expect("answered").output).into_owned())
        .collect()
}

#[test]
fn every_connection_gets_its_own_answers_in_order() {
    let data = tempfile::tempdir().unwrap();
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port_block()));
    let me = PeerConfig {
        id: NodeId(1),
        addr: listen.into(),
        client_addr: None,
    };
    let mut config = NodeConfig::new(NodeId(1), listen, vec![me], data.path().join("1"));
    config.init = true;
    config.io_memory_bytes = 256 << 10;
    let node = Arc::new(Node::start(config, |_| KvStore::default()).expect("node starts"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let fixed = entry(Op::Append(b"fixed", b"abc"));
    while node.propose_blocking(GROUP, fixed.clone()).is_err() {
        assert!(Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(20));
    }
    // As the RESP server runs: one worker thread, every connection a task of it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let gatherer = Gatherer::new(node.clone());
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for connection in 0..CONNECTIONS {
            let gatherer = gatherer.clone();
            tasks.push(tokio::spawn(async move {
                // Each connection's lengths are its own: answers handed to the wrong one show.
                let key = format!("c{connection}");
                let tail = "x".repeat(connection + 1);
                for round in 0..ROUNDS {
                    let works = vec![append(&key, &tail), append(&key, "y")];
                    let got = outputs(gatherer.run(works).await);
                    let before = round * (connection + 2);
                    let lengths = [before + connection + 1, before + connection + 2];
                    assert_eq!(
                        got,
                        lengths.map(|length| format!(":{length}\r\n")),
                        "connection {connection}, round {round}"
                    );
                    let read = Work::Read {
                        group: GROUP,
                        query: entry(Op::Strlen(b"fixed")),
                        consistency: ReadConsistency::Linearizable,
                    };
                    assert_eq!(outputs(gatherer.run(vec![read]).await), [":3\r\n"]);
                }
            }));
        }
        for task in tasks {
            task.await.expect("a connection failed");
        }
    });
    drop(gatherer);
    drop(runtime);
    Arc::try_unwrap(node)
        .ok()
        .expect("node still shared")
        .shutdown()
        .unwrap();
}
