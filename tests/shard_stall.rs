//! A shard whose thread stands still shows it: `ringraft_shard_tick_lateness_seconds` counts a
//! tick that ran at least as late as the stall. The stall here is a state machine that blocks in `apply` (what a slow disk under an
//! inline flush, a long snapshot, or a starved CPU look like from the shard's timer).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringraft::api::{CommittedEntries, Node, NodeConfig, PeerConfig, StateMachine};
use ringraft::metrics::MetricsServer;
use ringraft::procs::free_port_block;
use ringraft::types::{GroupId, NodeId};

const GROUP: GroupId = GroupId(0);
/// How long the state machine blocks the shard's thread on a `stall` entry.
const STALL: Duration = Duration::from_millis(300);
/// The histogram bound the stall must land above (and free running below).
const LATE_BOUND: &str = "0.25";

/// Blocks the thread it runs on for [`STALL`] when it applies the entry `stall`.
struct Stalling;

impl StateMachine for Stalling {
    fn apply(&mut self, _group: GroupId, entries: CommittedEntries<'_>, outputs: &mut Vec<Bytes>) {
        for (_, payload) in entries.iter() {
            if payload == b"stall" {
                std::thread::sleep(STALL);
            }
            outputs.push(Bytes::new());
        }
    }

    fn snapshot(&self, _group: GroupId, _out: &mut dyn io::Write) -> io::Result<()> {
        Ok(())
    }

    fn restore(&mut self, _group: GroupId, _input: &mut dyn io::Read) -> io::Result<()> {
        Ok(())
    }
}

/// `GET /metrics` of `addr`, the body.
fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("metrics endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "metrics answered {head}");
    body.to_string()
}

/// Ticks of shard 0 in all, and those that ran later than [`LATE_BOUND`] seconds.
fn ticks(body: &str) -> (f64, f64) {
    let sample = |prefix: &str, needle: &str| -> f64 {
        body.lines()
            .find(|line| line.starts_with(prefix) && line.contains(needle))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} sample with {needle} in:\n{body}"))
    };
    let all = sample("ringraft_shard_tick_lateness_seconds_count", "");
    let in_time = sample(
        "ringraft_shard_tick_lateness_seconds_bucket",
        &format!("le=\"{LATE_BOUND}\""),
    );
    (all, all - in_time)
}

#[test]
fn a_blocked_shard_thread_shows_as_a_late_tick() {
    let data = tempfile::tempdir().expect("tempdir");
    let port = free_port_block();
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    let peers = vec![PeerConfig {
        id: NodeId(1),
        addr: listen.into(),
        client_addr: None,
    }];
    let mut config = NodeConfig::new(NodeId(1), listen, peers, data.path().join("n1"));
    config.shards = 1;
    config.groups = 1;
    config.init = true;
    config.io_memory_bytes = 256 << 10;
    let metrics = MetricsServer::start(SocketAddr::from(([127, 0, 0, 1], 0))).expect("metrics");
    let node = Node::start(config, |_| Stalling).expect("node starts");
    metrics.sources().node_started(node.observer());

    // Running freely for a while (a lone member elects itself), no tick is that late.
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.propose_blocking(GROUP, b"warm-up".to_vec()).is_err() {
        assert!(Instant::now() < deadline, "the lone member never committed");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let (before, late_before) = ticks(&scrape(metrics.addr()));
    assert!(before > 0.0, "no tick counted in the first 200 ms");

    node.propose_blocking(GROUP, b"stall".to_vec())
        .expect("the stalling entry commits");
    // The next tick after the stall is the late one.
    std::thread::sleep(Duration::from_millis(100));
    let (after, late_after) = ticks(&scrape(metrics.addr()));
    assert!(after > before, "no tick counted after the stall");
    // Exactly one more: the tick due during the stall. (Whatever else this machine did to
    // the thread before it is in `late_before`.)
    assert_eq!(
        late_after - late_before,
        1.0,
        "one tick ran later than {LATE_BOUND} s (the one due during the {STALL:?} stall)"
    );
    node.shutdown().expect("shutdown");
}
