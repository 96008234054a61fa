//! Exactly-once writes on real `ringraft kv` processes while leaders are killed with SIGKILL:
//! increments of one counter, sent by the Rust client (in its client session) or by Redis
//! clients connected to a follower (which forwards them in its own session), end with the
//! counter equal to the number of increments acknowledged, and the acknowledged increments
//! answered with distinct values: none was applied twice, none acknowledged was lost.
//!
//! Each test kills the leader again until some retry of an applied increment has been
//! answered from its session (the nodes' `ringraft_session_duplicates_total`), so the case
//! that sessions exist for (applied, then retried) is what the counter is checked against.

mod procs;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use procs::resp::{connect, ready_cluster, retry};
use procs::{http_get, ProcCluster};
use ringraft::api::ReadConsistency;
use ringraft::client::Client;
use ringraft::kv::op::{Entry, Op};
use ringraft::kv::parse::{parse_value, REPLY_LIMITS};
use ringraft::kv::resp::Value;
use ringraft::types::{GroupId, NodeId};

const GROUP: GroupId = GroupId(0);
const KEY: &str = "counter";
/// Leader kills at most; each waits for a new leader and restarts the killed node.
const KILLS_MAX: usize = 6;

/// What the clients were told about their increments.
#[derive(Debug, Default)]
struct Tally {
    /// The counter's value each acknowledged increment answered.
    acknowledged: Vec<i64>,
    /// Increments whose outcome is unknown (applied once or not at all).
    unknown: usize,
    /// Increments certainly not applied.
    not_applied: usize,
}

impl Tally {
    /// Checks the counter's final value against what the clients were told: every
    /// acknowledged increment applied once, none twice.
    fn check(&self, counter: i64) {
        let acknowledged = self.acknowledged.len() as i64;
        println!(
            "counter {counter}: {acknowledged} increments acknowledged, {} unknown, {} not \
             applied",
            self.unknown, self.not_applied
        );
        assert!(acknowledged > 0, "nothing was acknowledged");
        let distinct: BTreeSet<i64> = self.acknowledged.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            self.acknowledged.len(),
            "two acknowledged increments answered the same value: one was applied twice or \
             answered for another"
        );
        assert!(
            distinct.iter().all(|&value| 1 <= value && value <= counter),
            "an acknowledged increment answered a value outside 1..={counter}"
        );
        assert!(
            acknowledged <= counter && counter <= acknowledged + self.unknown as i64,
            "the counter is {counter}, but {acknowledged} increments were acknowledged and {} \
             have an unknown outcome: some increment was applied twice or lost",
            self.unknown
        );
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// The kv entry that increments the counter.
fn increment() -> Vec<u8> {
    Entry {
        now_ms: now_ms(),
        op: Op::IncrBy(KEY.as_bytes(), 1),
    }
    .encode()
    .to_vec()
}

/// The integer in a kv reply (`:7` or the bulk string `7`).
fn integer_of(reply: &[u8]) -> i64 {
    match parse_value(reply, &REPLY_LIMITS) {
        Ok(Some((Value::Integer(value), _))) => value,
        Ok(Some((Value::Bulk(bytes), _))) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| panic!("not a number: {bytes:?}")),
        other => panic!("not an integer reply: {other:?}"),
    }
}

/// Retries of applied writes the running nodes answered from their sessions.
fn duplicates_answered(cluster: &ProcCluster) -> u64 {
    cluster
        .nodes
        .iter()
        .filter(|node| cluster.is_up(node.id))
        .map(|node| {
            let (_, body) = http_get(node.metrics_addr, "/metrics");
            body.lines()
                .filter(|line| line.starts_with("ringraft_session_duplicates_total{"))
                .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// Runs `load` on `threads` threads until told to stop; their tallies, merged.
struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(
        threads: usize,
        load: impl Fn(&AtomicBool, &Mutex<Tally>) + Send + Sync + 'static,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let load = Arc::new(load);
        let threads = (0..threads)
            .map(|_| {
                let (stop, tally, load) = (stop.clone(), tally.clone(), load.clone());
                std::thread::spawn(move || load(&stop, &tally))
            })
            .collect();
        Load {
            stop,
            tally,
            threads,
        }
    }

    fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().expect("load thread");
        }
        Arc::try_unwrap(self.tally)
            .expect("threads joined")
            .into_inner()
            .unwrap()
    }
}

/// Kills the leader of `GROUP` (as `admin` finds it), waits, restarts it; again, until some
/// node answered a retry of an applied write from its session (and at least twice), at most
/// [`KILLS_MAX`] times. `spare` is a node that must not be killed: if it leads, leadership is
/// handed to another node first.
fn kill_leaders(cluster: &mut ProcCluster, admin: &mut Client, spare: Option<NodeId>) {
    for kill in 1..=KILLS_MAX {
        std::thread::sleep(Duration::from_millis(400));
        let mut leader = admin.leader_of(GROUP).expect("a leader");
        if Some(leader) == spare {
            let other = cluster
                .nodes
                .iter()
                .map(|node| node.id)
                .find(|&id| id != leader)
                .unwrap();
            // If the transfer does not happen, the next round tries again.
            let _ = admin.transfer_leader(GROUP, other);
            std::thread::sleep(Duration::from_millis(300));
            leader = admin.leader_of(GROUP).expect("a leader");
            if Some(leader) == spare {
                continue;
            }
        }
        cluster.kill(leader);
        std::thread::sleep(Duration::from_millis(1500));
        cluster.relaunch(leader, false);
        let duplicates = duplicates_answered(cluster);
        println!("kill {kill} of {leader}: {duplicates} retries answered from sessions so far");
        if kill >= 2 && duplicates > 0 {
            return;
        }
    }
    panic!("no retry of an applied write in {KILLS_MAX} leader kills: nothing was tested");
}

fn client_of(addrs: Vec<(NodeId, SocketAddr)>, deadline: Duration) -> Client {
    Client::connect(addrs, 1, deadline)
}

#[test]
fn increments_from_the_rust_client_apply_exactly_once_while_leaders_are_killed() {
    let mut cluster = ProcCluster::start_kv(3, 1, 1, &[]);
    let addrs = cluster.client_addrs();
    let mut admin = client_of(addrs.clone(), Duration::from_secs(30));
    let load = Load::start(2, move |stop, tally| {
        let mut client = client_of(addrs.clone(), Duration::from_secs(30));
        let batch = vec![increment(); 20];
        while !stop.load(Ordering::Relaxed) {
            let results = client.propose_many(GROUP, &batch);
            let mut tally = tally.lock().unwrap();
            for result in results {
                match result {
                    Ok(done) => tally.acknowledged.push(integer_of(&done.output)),
                    Err(error) if error.certainly_not_applied() => tally.not_applied += 1,
                    Err(_) => tally.unknown += 1,
                }
            }
        }
    });
    kill_leaders(&mut cluster, &mut admin, None);
    std::thread::sleep(Duration::from_millis(500));
    let tally = load.finish();
    let get = Entry {
        now_ms: now_ms(),
        op: Op::Get(KEY.as_bytes()),
    }
    .encode();
    let read = admin
        .read(GROUP, &get, ReadConsistency::Linearizable)
        .expect("read the counter");
    tally.check(integer_of(&read.output));
}

#[test]
fn incrs_through_a_follower_apply_exactly_once_while_leaders_are_killed() {
    let mut cluster = ready_cluster(1, &[]);
    let mut admin = client_of(cluster.client_addrs(), Duration::from_secs(30));
    let leader = admin.leader_of(GROUP).expect("a leader");
    let (follower, follower_addr) = cluster
        .resp_addrs()
        .into_iter()
        .find(|&(id, _)| id != leader)
        .unwrap();
    let load = Load::start(4, move |stop, tally| {
        let mut con = connect(follower_addr);
        while !stop.load(Ordering::Relaxed) {
            let result = redis::cmd("INCR").arg(KEY).query::<i64>(&mut con);
            let mut tally = tally.lock().unwrap();
            match result {
                Ok(value) => tally.acknowledged.push(value),
                // Every reply whose write may have been applied says so ("... may or may not
                // have been applied", "... may still be applied").
                Err(error) if error.to_string().contains("may") => tally.unknown += 1,
                Err(_) => tally.not_applied += 1,
            }
        }
    });
    kill_leaders(&mut cluster, &mut admin, Some(follower));
    std::thread::sleep(Duration::from_millis(500));
    let tally = load.finish();
    let counter: String = retry(&mut connect(follower_addr), &["GET", KEY]);
    tally.check(counter.parse().unwrap());
}
