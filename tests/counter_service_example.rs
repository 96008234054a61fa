//! The `counter_service` example, compiled in from its modules and run as four members in one
//! process: increments sent to any member are counted once each, a snapshot compacts the log,
//! a joining member is added as a learner (catching up from the snapshot) and promoted, a
//! member is removed; and a member restarted on its data directory recovers the count from
//! its snapshot.

#[path = "../examples/counter_service/counter.rs"]
mod counter;
#[path = "../examples/counter_service/protocol.rs"]
mod protocol;
#[path = "../examples/counter_service/service.rs"]
mod service;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use ringraft::api::PeerConfig;
use ringraft::procs::free_port_block;
use ringraft::types::NodeId;

use service::CounterService;

/// Every wait of the test gives up after this long.
const PATIENCE: Duration = Duration::from_secs(30);

/// The members of the test's cluster: their services, peer addresses and data directories.
struct Cluster<'a> {
    data: &'a Path,
    peer_base: u16,
    services: BTreeMap<u64, CounterService>,
}

impl<'a> Cluster<'a> {
    /// No members yet; their data directories go under `data`.
    fn new(data: &'a Path) -> Cluster<'a> {
        Cluster {
            data,
            peer_base: free_port_block(),
            services: BTreeMap::new(),
        }
    }

    fn peer_addr(&self, id: u64) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.peer_base + id as u16))
    }

    fn peers(&self, ids: &[u64]) -> Vec<PeerConfig> {
        ids.iter()
            .map(|&id| PeerConfig {
                id: NodeId(id),
                addr: self.peer_addr(id).into(),
                client_addr: None,
            })
            .collect()
    }

    /// Starts member `id` with `peers`; `init` for a new data directory, `join` for a member
    /// that learns the configuration from the leader.
    fn start(&mut self, id: u64, peers: &[u64], init: bool, join: bool) {
        let data_dir = self.data.join(id.to_string());
        let mut config =
            service::node_config(NodeId(id), self.peer_addr(id), self.peers(peers), data_dir);
        config.init = init;
        config.join = join;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let member = CounterService::start(config, listener).expect("member starts");
        assert!(member.is_serving());
        self.services.insert(id, member);
    }

    fn stop(&mut self, id: u64) {
        let member = self.services.remove(&id).expect("a running member");
        member.shutdown().expect("clean shutdown");
    }

    /// Sends `line` to member `id`; its reply line.
    fn ask(&self, id: u64, line: &str) -> String {
        let mut stream = TcpStream::connect(self.services[&id].addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        writeln!(stream, "{line}").unwrap();
        let mut reply = String::new();
        BufReader::new(stream).read_line(&mut reply).unwrap();
        reply.trim_end().to_string()
    }

    /// Sends `line` to member `first`, then to whichever member each `REDIRECT` names, waiting
    /// out elections ("no leader"); the first other reply.
    fn ask_leader(&self, first: u64, line: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut target = first;
        loop {
            let reply = self.ask(target, line);
            if let Some(leader) = reply.strip_prefix("REDIRECT ") {
                target = leader.parse().unwrap();
            } else if !reply.starts_with("ERR no leader") {
                return reply;
            }
            assert!(Instant::now() < deadline, "{line}: still {reply}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `line` at the leader until it is not refused because another change is in progress or
    /// the learner to promote has not caught up.
    fn change(&self, line: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let reply = self.ask_leader(*self.services.keys().next().unwrap(), line);
            let retry = reply.contains("still in progress") || reply.contains("not caught up");
            if !retry || Instant::now() > deadline {
                return reply;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Member `id`'s STATUS fields, once `ready` holds for them.
    fn status_when(
        &self,
        id: u64,
        ready: impl Fn(&BTreeMap<String, String>) -> bool,
    ) -> BTreeMap<String, String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let reply = self.ask(id, "STATUS");
            let fields = reply
                .strip_prefix("OK ")
                .unwrap_or_else(|| panic!("STATUS: {reply}"))
                .split(' ')
                .filter_map(|field| field.split_once('='))
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect();
            if ready(&fields) {
                return fields;
            }
            assert!(Instant::now() < deadline, "member {id}: {fields:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The member all running members name as leader.
    fn leader(&self) -> u64 {
        let ids: Vec<u64> = self.services.keys().copied().collect();
        let first = self.status_when(ids[0], |fields| fields["leader"] != "0");
        let leader: u64 = first["leader"].parse().unwrap();
        for &id in &ids {
            self.status_when(id, |fields| fields["leader"] == leader.to_string());
        }
        leader
    }
}

fn number(fields: &BTreeMap<String, String>, key: &str) -> u64 {
    fields[key].parse().unwrap()
}

/// A list of member ids (`voters`, `learners`), sorted.
fn ids(fields: &BTreeMap<String, String>, key: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = fields[key]
        .split(',')
        .filter(|id| !id.is_empty())
        .map(|id| id.parse().unwrap())
        .collect();
    ids.sort();
    ids
}

#[test]
fn the_counter_service_counts_snapshots_and_changes_members() {
    let data = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::new(data.path());
    for id in 1..=3 {
        cluster.start(id, &[1, 2, 3], true, false);
    }

    // Increments sent to every member: followers redirect to the leader, each counts once.
    let mut expected = 0;
    for amount in 1..=12u64 {
        expected += amount;
        let reply = cluster.ask_leader(amount % 3 + 1, &format!("INCR {amount}"));
        assert_eq!(reply, format!("OK {expected}"));
    }
    let leader = cluster.leader();
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    assert_eq!(
        cluster.ask(follower, "INCR 1"),
        format!("REDIRECT {leader}")
    );
    assert_eq!(
        cluster.ask_leader(follower, "GET"),
        format!("OK {expected}")
    );
    assert!(cluster.ask(leader, "INCR x").starts_with("ERR "));
    assert!(cluster
        .ask(leader, "FLY")
        .starts_with("ERR unknown command"));

    // A snapshot at the leader compacts its log up to the snapshot.
    let snapshot: u64 = cluster.ask(leader, "SNAPSHOT")[3..].parse().unwrap();
    assert!(snapshot > 12, "snapshot at {snapshot}");
    let status = cluster.status_when(leader, |fields| number(fields, "log_base") >= snapshot);
    assert_eq!(number(&status, "snapshot"), snapshot);

    // Member 4 joins, is added as a learner and catches up (from the snapshot, the log behind
    // it being gone), then becomes a voter.
    cluster.start(4, &[1, 2, 3, 4], true, true);
    let add = format!("ADD-LEARNER 4 {}", cluster.peer_addr(4));
    assert!(cluster.change(&add).starts_with("OK configuration at "));
    // The count is whole as soon as the snapshot is installed; the configuration entry that
    // made member 4 a learner comes after the snapshot, so wait for both.
    let joined = cluster.status_when(4, |fields| {
        fields["count"] == expected.to_string() && ids(fields, "learners") == [4]
    });
    assert!(number(&joined, "snapshot") >= snapshot, "{joined:?}");
    assert!(cluster.change("PROMOTE 4").starts_with("OK "));
    cluster.status_when(leader, |fields| {
        ids(fields, "voters") == [1, 2, 3, 4] && ids(fields, "learners").is_empty()
    });

    // A follower other than member 4 leaves.
    let removed = (1..=3).find(|&id| id != leader).unwrap();
    assert!(cluster
        .change(&format!("REMOVE {removed}"))
        .starts_with("OK "));
    let voters: Vec<u64> = [1, 2, 3, 4]
        .into_iter()
        .filter(|&id| id != removed)
        .collect();
    cluster.status_when(leader, |fields| ids(fields, "voters") == voters);
    cluster.stop(removed);

    expected += 100;
    let reply = cluster.ask_leader(4, "INCR 100");
    assert_eq!(reply, format!("OK {expected}"));

    for id in cluster.services.keys().copied().collect::<Vec<_>>() {
        cluster.stop(id);
    }
}

/// A one-member service restarted on its data directory recovers the count from its snapshot
/// (its log was compacted up to it) and counts on. (A member rejoining others after an
/// in-process restart is `tests/api_node.rs`'s.)
#[test]
fn a_restarted_member_recovers_the_count_from_its_snapshot() {
    let data = tempfile::tempdir().unwrap();
    let mut single = Cluster::new(data.path());
    single.start(1, &[1], true, false);
    for amount in [3, 4, 5] {
        single.ask_leader(1, &format!("INCR {amount}"));
    }
    let snapshot: u64 = single.ask(1, "SNAPSHOT")[3..].parse().unwrap();
    assert!(snapshot >= 4, "snapshot at {snapshot}");
    assert_eq!(single.ask_leader(1, "INCR 8"), "OK 20");
    single.stop(1);

    single.start(1, &[1], false, false);
    let recovered = single.status_when(1, |fields| fields["count"] == "20");
    assert_eq!(number(&recovered, "snapshot"), snapshot, "{recovered:?}");
    assert!(number(&recovered, "log_base") >= snapshot, "{recovered:?}");
    assert_eq!(single.ask_leader(1, "INCR 1"), "OK 21");
    single.stop(1);
}
