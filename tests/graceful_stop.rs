//! Graceful stops on real `ringraft node` processes: SIGTERM hands a leader's groups to a
//! follower before the process exits (the new leader's term comes from the transfer, not from
//! an election timeout), and a rolling restart of every node under a steady load fails no
//! request and loses no acknowledged write.

mod procs;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use procs::ProcCluster;
use ringraft::client::Client;
use ringraft::loadgen::codec::NativeCodec;
use ringraft::loadgen::connection::{ConnectionPlan, Load};
use ringraft::loadgen::load::{ConnectionResult, LoadCounters, Pace, Schedule};
use ringraft::types::{GroupId, LogIndex, NodeId, Term};

const NODES: u64 = 3;

fn client_for(cluster: &ProcCluster) -> Client {
    Client::connect(
        cluster.client_addrs(),
        cluster.shards(),
        Duration::from_secs(20),
    )
}

/// The leader of `group` among the running nodes (the highest term that claims it).
fn leader_of(cluster: &ProcCluster, client: &mut Client, group: GroupId) -> Option<(NodeId, Term)> {
    let mut claims = Vec::new();
    for id in (1..=NODES).map(NodeId) {
        if !cluster.is_up(id) {
            continue;
        }
        if let Ok(statuses) = client.status(id) {
            if let Some(status) = statuses.iter().find(|status| status.group == group) {
                if status.leader == Some(id) {
                    claims.push((status.term, id));
                }
            }
        }
    }
    claims.into_iter().max().map(|(term, id)| (id, term))
}

fn wait_for_leader(cluster: &ProcCluster, client: &mut Client, group: GroupId) -> (NodeId, Term) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = leader_of(cluster, client, group) {
            return found;
        }
        assert!(Instant::now() < deadline, "no leader of {group}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM to node `id`'s process; returns its exit status once it exited (at most 10 s).
fn sigterm_and_wait(cluster: &mut ProcCluster, id: NodeId) -> i32 {
    let pid = cluster.pid(id).expect("node runs") as i32;
    // SAFETY: kill(2) on a child of this process with a valid signal.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = cluster.reap(id) {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "{id} did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// With election timeouts of 3–6 s, only a transfer can elect a new leader within a second:
/// followers refuse other votes while they hear from the leader, and none of them times out
/// that soon. The leader's SIGTERM must produce a leader of the next term on another node, the
/// leader process exiting cleanly within the drain.
#[test]
fn a_leaders_sigterm_makes_a_follower_leader_before_it_exits() {
    let mut cluster = ProcCluster::start(
        NODES,
        1,
        2,
        &["--election-timeout-ms", "3000", "--heartbeat-ms", "50"],
    );
    let mut client = client_for(&cluster);
    let groups = [GroupId(0), GroupId(1)];
    // A few commits, so that every group has a leader that committed in its term.
    for group in groups {
        client
            .propose(group, b"before")
            .expect("commit before the stop");
    }
    let (leader, _) = wait_for_leader(&cluster, &mut client, groups[0]);
    let led: Vec<(GroupId, Term)> = groups
        .iter()
        .filter_map(|&group| {
            let (node, term) = wait_for_leader(&cluster, &mut client, group);
            (node == leader).then_some((group, term))
        })
        .collect();
    assert!(!led.is_empty());
    let signalled = Instant::now();
    let code = sigterm_and_wait(&mut cluster, leader);
    let exited_after = signalled.elapsed();
    assert_eq!(code, 0, "a graceful stop exits 0");
    for (group, old_term) in led {
        let (new_leader, new_term) = leader_of(&cluster, &mut client, group)
            .unwrap_or_else(|| panic!("{group}: no leader right after {leader} exited"));
        assert_ne!(new_leader, leader);
        assert_eq!(
            new_term,
            Term(old_term.0 + 1),
            "{group}: the new leader's term follows the old one's (one transfer election)"
        );
    }
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "the handover took {exited_after:?} to exit and longer to observe: not a transfer"
    );
    // The new leaders serve.
    for group in groups {
        client
            .propose(group, b"after")
            .expect("commit after the stop");
    }
}

/// The load generator's connections: an open loop of 2,500 requests/s per connection (steady,
/// whatever the latency), one client each, two per group.
fn start_load(cluster: &ProcCluster, seconds: u64) -> (Load, Arc<LoadCounters>) {
    let nodes: Vec<(NodeId, SocketAddr)> = cluster.client_addrs();
    let shards = cluster.shards() as u64;
    let mut client = client_for(cluster);
    let groups = [GroupId(0), GroupId(1)];
    let connections = 4;
    let plans = (0..connections)
        .map(|connection| {
            let group = groups[connection % groups.len()];
            let (leader, _) = wait_for_leader(cluster, &mut client, group);
            let nodes = nodes.clone();
            ConnectionPlan {
                codec: NativeCodec::new(group, Bytes::from(vec![7u8; 128])),
                leader,
                nodes: nodes.iter().map(|&(id, _)| id).collect(),
                addr_of: Arc::new(move |id| {
                    let (_, addr) = nodes.iter().find(|(node, _)| *node == id)?;
                    Some(SocketAddr::new(
                        addr.ip(),
                        addr.port() + (group.0 % shards) as u16,
                    ))
                }),
                clients: vec![connection],
                total_clients: connections,
                tls: None,
                pace: Pace::Open {
                    per_second: 2_500.0,
                },
            }
        })
        .collect();
    let started = Instant::now();
    let schedule = Schedule {
        started,
        measure_from: started,
        stop: started + Duration::from_secs(seconds),
    };
    let counters = Arc::new(LoadCounters::default());
    let load = Load::start(plans, schedule, counters.clone()).expect("load starts");
    (load, counters)
}

/// Unique values written through the Rust client, with the index each was acknowledged at.
struct Writer {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<BTreeMap<u64, (GroupId, LogIndex)>>>,
    errors: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    fn start(cluster: &ProcCluster) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(BTreeMap::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let mut client = client_for(cluster);
        let thread = {
            let (stop, acknowledged, errors) = (stop.clone(), acknowledged.clone(), errors.clone());
            std::thread::spawn(move || {
                let mut next = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    for group in [GroupId(0), GroupId(1)] {
                        let values: Vec<u64> = (next..next + 8).collect();
                        next += 8;
                        let payloads: Vec<Vec<u8>> =
                            values.iter().map(|v| v.to_le_bytes().to_vec()).collect();
                        let results = client.propose_many(group, &payloads);
                        for (value, result) in values.iter().zip(results) {
                            match result {
                                Ok(done) => {
                                    acknowledged
                                        .lock()
                                        .unwrap()
                                        .insert(*value, (group, done.index));
                                }
                                Err(error) => {
                                    errors.lock().unwrap().push(format!("{value}: {error}"))
                                }
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Writer {
            stop,
            acknowledged,
            errors,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (BTreeMap<u64, (GroupId, LogIndex)>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("writer thread");
        let acknowledged = std::mem::take(&mut *self.acknowledged.lock().unwrap());
        let errors = std::mem::take(&mut *self.errors.lock().unwrap());
        (acknowledged, errors)
    }
}

/// Waits until every running node has applied each group up to what its leader has committed
/// now.
fn wait_caught_up(cluster: &ProcCluster, client: &mut Client) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for group in [GroupId(0), GroupId(1)] {
        let (leader, _) = wait_for_leader(cluster, client, group);
        let target = client
            .status(leader)
            .ok()
            .and_then(|statuses| statuses.into_iter().find(|s| s.group == group))
            .map_or(LogIndex::ZERO, |status| status.commit);
        for id in (1..=NODES).map(NodeId).filter(|&id| cluster.is_up(id)) {
            loop {
                let applied = client
                    .status(id)
                    .ok()
                    .and_then(|statuses| statuses.into_iter().find(|s| s.group == group))
                    .map_or(LogIndex::ZERO, |status| status.applied);
                if applied >= target {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{id} did not catch up on {group}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Every node, one after the other (the leaders included), is stopped with SIGTERM while the
/// load runs, restarted on its data directory, and caught up before the next. The load
/// generator counts requests in flight on a socket that a node closes as failed, and answers
/// that never come too: a correct drain is what makes the count zero.
#[test]
fn a_rolling_restart_under_load_fails_no_request_and_loses_no_write() {
    // No snapshots: every acknowledged write stays in every log, where the end checks it.
    let mut cluster = ProcCluster::start(NODES, 1, 2, &["--snapshot-entries", "0"]);
    let mut client = client_for(&cluster);
    let (load, counters) = start_load(&cluster, 12);
    let writer = Writer::start(&cluster);
    std::thread::sleep(Duration::from_secs(2));
    let mut leaders_stopped = 0;
    for id in (1..=NODES).map(NodeId) {
        let before = counters.committed.load(Ordering::Relaxed);
        let led = [GroupId(0), GroupId(1)]
            .into_iter()
            .filter(|&group| wait_for_leader(&cluster, &mut client, group).0 == id)
            .count();
        leaders_stopped += led;
        let stopping = Instant::now();
        assert_eq!(sigterm_and_wait(&mut cluster, id), 0, "{id} exits 0");
        let stopped_after = stopping.elapsed();
        cluster.relaunch(id, false);
        wait_caught_up(&cluster, &mut client);
        println!(
            "{id} (leader of {led} groups): stopped in {stopped_after:?}, back and caught up \
             after {:?}",
            stopping.elapsed()
        );
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            counters.committed.load(Ordering::Relaxed) > before,
            "no commits while {id} restarted"
        );
    }
    assert!(leaders_stopped > 0, "no leader was restarted");
    let results: Vec<ConnectionResult> = load
        .finish()
        .into_iter()
        .map(|result| result.expect("connection ran"))
        .collect();
    let (acknowledged, writer_errors) = writer.finish();
    let committed: u64 = results.iter().map(|r| r.committed).sum();
    let failed: u64 = results.iter().map(|r| r.failed).sum();
    let redirected: u64 = results.iter().map(|r| r.redirected).sum();
    let errors: Vec<&String> = results.iter().flat_map(|r| &r.errors).collect();
    println!("load: {committed} committed, {failed} failed, {redirected} redirected; {errors:?}");
    assert!(committed > 0);
    assert_eq!(failed, 0, "failed requests: {errors:?}");
    assert!(
        redirected > 0,
        "leaders were restarted: some requests must have been redirected"
    );
    assert!(writer_errors.is_empty(), "client errors: {writer_errors:?}");
    assert!(!acknowledged.is_empty());
    wait_caught_up(&cluster, &mut client);
    cluster.stop_all();
    for id in (1..=NODES).map(NodeId) {
        for group in [GroupId(0), GroupId(1)] {
            let log: BTreeMap<LogIndex, Vec<u8>> = cluster
                .read_log(id, group)
                .into_iter()
                .map(|(index, _, payload)| (index, payload))
                .collect();
            for (value, (_, index)) in acknowledged.iter().filter(|(_, (g, _))| *g == group) {
                assert_eq!(
                    log.get(index).map(Vec::as_slice),
                    Some(&value.to_le_bytes()[..]),
                    "{id}'s log of {group} lacks acknowledged value {value} at {index}"
                );
            }
        }
    }
}

/// `ringraft kv`: a RESP client on another node writes (pipelined SETs, forwarded to each
/// key's leader) while the leader of the groups is stopped with SIGTERM and restarted: every
/// command is answered OK and every acknowledged value reads back afterwards. (Commands
/// forwarded to the stopping node are answered before it stops reading; a client connected to
/// the stopping node itself sees its connection close, between answers.)
#[test]
fn a_kv_leaders_sigterm_fails_no_command_of_clients_on_other_nodes() {
    let mut cluster = ProcCluster::start_kv(NODES, 1, 2, &[]);
    let mut client = client_for(&cluster);
    let (leader, _) = wait_for_leader(&cluster, &mut client, GroupId(0));
    let served_by = (1..=NODES).map(NodeId).find(|&id| id != leader).unwrap();
    let addr = cluster.resp_addrs()[served_by.0 as usize - 1].1;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut connection = redis::Client::open(format!("redis://{addr}/"))
                .unwrap()
                .get_connection_with_timeout(Duration::from_secs(5))
                .unwrap();
            connection
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let (mut written, mut errors) = (Vec::new(), Vec::new());
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut pipe = redis::pipe();
                let batch: Vec<u64> = (next..next + 16).collect();
                next += 16;
                for value in &batch {
                    pipe.cmd("SET")
                        .arg(format!("k{value}"))
                        .arg(value.to_string());
                }
                match pipe.query::<Vec<redis::Value>>(&mut connection) {
                    Ok(replies) => {
                        for (value, reply) in batch.iter().zip(replies) {
                            match reply {
                                redis::Value::Okay => written.push(*value),
                                other => errors.push(format!("SET k{value}: {other:?}")),
                            }
                        }
                    }
                    Err(error) => errors.push(format!("pipeline from {}: {error}", batch[0])),
                }
            }
            (written, errors)
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        sigterm_and_wait(&mut cluster, leader),
        0,
        "{leader} exits 0"
    );
    std::thread::sleep(Duration::from_millis(500));
    cluster.relaunch(leader, false);
    wait_caught_up(&cluster, &mut client);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (written, errors) = writer.join().expect("writer thread");
    assert!(errors.is_empty(), "commands failed: {errors:?}");
    assert!(written.len() > 100, "only {} writes", written.len());
    let mut reader = redis::Client::open(format!("redis://{}/", cluster.resp_addrs()[0].1))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    for value in written {
        let read: Option<String> = redis::cmd("GET")
            .arg(format!("k{value}"))
            .query(&mut reader)
            .unwrap();
        assert_eq!(read, Some(value.to_string()), "k{value}");
    }
}
