//! Membership changes on real node processes, driven by `ringraft admin`: growing a cluster
//! with nodes started with `--join`, shrinking it, removing the leader, and replacing a node
//! whose disk was wiped. After each step every acknowledged write is still in the log of
//! every member and the admin status shows the expected members.

mod procs;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use procs::ProcCluster;
use ringraft::api::ReadConsistency;
use ringraft::client::Client;
use ringraft::types::{GroupId, LogIndex, NodeId, Term};

const GROUPS: u32 = 2;

fn ids(values: &[u64]) -> Vec<NodeId> {
    values.iter().map(|&v| NodeId(v)).collect()
}

fn client_for(cluster: &ProcCluster) -> Client {
    Client::connect(
        cluster.client_addrs(),
        cluster.shards(),
        Duration::from_secs(20),
    )
}

/// Runs `ringraft admin --node <node's client address> <args>`; panics unless it succeeds.
fn admin(cluster: &ProcCluster, node: NodeId, args: &[&str]) -> String {
    let addr = cluster.client_addrs()[node.0 as usize - 1].1.to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(["admin", "--node", &addr, "--timeout-secs", "30"])
        .args(args)
        .output()
        .expect("run ringraft admin");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "admin {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    println!("admin {}:\n{stdout}", args.join(" "));
    stdout
}

/// A light write load on every group: small pipelined batches; answered values only.
struct Load {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<BTreeMap<u64, (GroupId, LogIndex)>>>,
    thread: Option<JoinHandle<()>>,
}

impl Load {
    fn start(cluster: &ProcCluster) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(BTreeMap::new()));
        // Every node the test may add is known from the start (their ports are fixed), so that
        // "not leader" answers naming a new member can be followed.
        let base = cluster.spec.base_port;
        let addrs = (1..=5u16)
            .map(|id| {
                let port = base + 20 * id + 10;
                (NodeId(id as u64), ([127, 0, 0, 1], port).into())
            })
            .collect();
        let mut client = Client::connect(addrs, cluster.shards(), Duration::from_secs(20));
        let thread = {
            let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
            std::thread::spawn(move || {
                let mut next = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    for group in (0..GROUPS as u64).map(GroupId) {
                        let values: Vec<u64> = (next..next + 10).collect();
                        next += 10;
                        let payloads: Vec<Vec<u8>> =
                            values.iter().map(|v| v.to_le_bytes().to_vec()).collect();
                        let results = client.propose_many(group, &payloads);
                        let mut done = acknowledged.lock().unwrap();
                        for (value, result) in values.iter().zip(results) {
                            if let Ok(committed) = result {
                                done.insert(*value, (group, committed.index));
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Load {
            stop,
            acknowledged,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    /// Waits until `more` further writes were acknowledged (the cluster makes progress).
    fn wait_progress(&self, more: usize) {
        let target = self.count() + more;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.count() < target {
            assert!(Instant::now() < deadline, "the write load made no progress");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(mut self) -> BTreeMap<u64, (GroupId, LogIndex)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("load thread");
        std::mem::take(&mut *self.acknowledged.lock().unwrap())
    }
}

/// The leader of `group` among `members` (highest term that claims it), waiting for one.
fn leader(client: &mut Client, members: &[NodeId], group: GroupId) -> (NodeId, Term) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut claims = Vec::new();
        for &node in members {
            if let Ok(statuses) = client.status(node) {
                if let Some(s) = statuses.iter().find(|s| s.group == group) {
                    if s.leader == Some(node) {
                        claims.push((s.term, node));
                    }
                }
            }
        }
        if let Some(&(term, node)) = claims.iter().max() {
            return (node, term);
        }
        assert!(Instant::now() < deadline, "no leader of {group}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until every node of `members` reports, for every group, a settled configuration with
/// exactly `voters` and no learners, and has applied it.
fn assert_members(client: &mut Client, members: &[NodeId], voters: &[NodeId]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for &node in members {
        loop {
            let status = client.admin_status(node);
            let settled = status.as_ref().is_ok_and(|status| {
                status.groups.len() == GROUPS as usize
                    && status.groups.iter().all(|group| {
                        group.membership.voters == voters
                            && !group.membership.is_joint()
                            && group.membership.learners.is_empty()
                            && group.summary.applied >= group.config_index
                            && group
                                .members
                                .iter()
                                .map(|m| m.id)
                                .eq(voters.iter().copied())
                    })
            });
            if settled {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{node} does not show voters {voters:?}: {status:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Every acknowledged write so far is covered by a linearizable read of its group (the
/// leader has applied it) and, once `members` caught up, by every member's applied index.
fn assert_writes_readable(
    client: &mut Client,
    members: &[NodeId],
    acknowledged: &BTreeMap<u64, (GroupId, LogIndex)>,
) {
    for group in (0..GROUPS as u64).map(GroupId) {
        let Some(highest) = acknowledged
            .values()
            .filter(|(g, _)| *g == group)
            .map(|(_, index)| *index)
            .max()
        else {
            continue;
        };
        let read = client
            .read(group, b"", ReadConsistency::Linearizable)
            .expect("read");
        assert!(read.index >= highest, "{group}: read at {}", read.index);
        let deadline = Instant::now() + Duration::from_secs(30);
        for &node in members {
            loop {
                let applied = client
                    .status(node)
                    .ok()
                    .and_then(|s| s.into_iter().find(|s| s.group == group))
                    .map_or(LogIndex::ZERO, |s| s.applied);
                if applied >= highest {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{node} did not apply {group} to {highest}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// After a graceful stop: each acknowledged value sits at its index in the log of every
/// node of `members` (unless compacted behind a snapshot there).
fn assert_logs_hold(
    cluster: &ProcCluster,
    members: &[NodeId],
    acknowledged: &BTreeMap<u64, (GroupId, LogIndex)>,
) {
    for group in (0..GROUPS as u64).map(GroupId) {
        for &node in members {
            let log: BTreeMap<LogIndex, Vec<u8>> = cluster
                .read_log(node, group)
                .into_iter()
                .map(|(index, _, payload)| (index, payload))
                .collect();
            let first = log.keys().next().copied().unwrap_or(LogIndex::ZERO);
            for (value, (_, index)) in acknowledged
                .iter()
                .filter(|(_, (g, index))| *g == group && *index >= first)
            {
                assert_eq!(
                    log.get(index).map(Vec::as_slice),
                    Some(&value.to_le_bytes()[..]),
                    "{node}'s log of {group} lacks acknowledged value {value} at {index}"
                );
            }
        }
    }
}

fn add_and_promote(cluster: &ProcCluster, via: NodeId, id: NodeId) {
    let (peer, client) = {
        let node = &cluster.nodes[id.0 as usize - 1];
        (node.peer_addr.to_string(), node.client_addr.to_string())
    };
    let id = id.0.to_string();
    let out = admin(
        cluster,
        via,
        &[
            "add-learner",
            "--id",
            &id,
            "--addr",
            &peer,
            "--client-addr",
            &client,
        ],
    );
    assert!(out.contains("as a learner committed"), "{out}");
    let out = admin(cluster, via, &["promote", "--id", &id]);
    assert!(out.contains("committed"), "{out}");
}

#[test]
fn grow_shrink_remove_the_leader_and_replace_a_wiped_node() {
    let started = Instant::now();
    let mut cluster = ProcCluster::start(3, 1, GROUPS, &[]);
    let mut client = client_for(&cluster);
    let load = Load::start(&cluster);
    load.wait_progress(50);

    // Grow to five: nodes 4 and 5 start with --join and are added, then promoted.
    for _ in 0..2 {
        let id = cluster.add_node().expect("room for a node");
        cluster.relaunch(id, true);
        client.add_node(id, cluster.client_addrs()[id.0 as usize - 1].1);
        add_and_promote(&cluster, NodeId(1), id);
        load.wait_progress(50);
    }
    let five = ids(&[1, 2, 3, 4, 5]);
    assert_members(&mut client, &five, &five);
    let status = admin(&cluster, NodeId(5), &["status"]);
    assert!(status.contains("voters [n1,n2,n3,n4,n5]"), "{status}");
    assert_writes_readable(&mut client, &five, &load.acknowledged.lock().unwrap());
    println!("grown to five after {:?}", started.elapsed());

    // Shrink back to three.
    for id in ["4", "5"] {
        let out = admin(&cluster, NodeId(2), &["remove", "--id", id]);
        assert!(out.contains("committed"), "{out}");
        load.wait_progress(20);
    }
    let three = ids(&[1, 2, 3]);
    assert_members(&mut client, &three, &three);
    cluster.stop(NodeId(4));
    cluster.stop(NodeId(5));
    assert_writes_readable(&mut client, &three, &load.acknowledged.lock().unwrap());
    println!("shrunk to three after {:?}", started.elapsed());

    // Remove the leader of group 0 (first make it lead every group, so the step-down shows in
    // each): it steps down, the other two elect a leader and go on.
    let (old_leader, _) = leader(&mut client, &three, GroupId(0));
    admin(
        &cluster,
        old_leader,
        &["transfer-leader", "--to", &old_leader.0.to_string()],
    );
    let rest: Vec<NodeId> = three.iter().copied().filter(|&n| n != old_leader).collect();
    let out = admin(
        &cluster,
        rest[0],
        &["remove", "--id", &old_leader.0.to_string()],
    );
    assert!(out.contains("committed"), "{out}");
    assert_members(&mut client, &rest, &rest);
    for group in (0..GROUPS as u64).map(GroupId) {
        let (new_leader, _) = leader(&mut client, &rest, group);
        assert!(rest.contains(&new_leader), "{group} led by {new_leader}");
    }
    load.wait_progress(50);
    // The removed node keeps running but is cut off: the remaining nodes' terms stay put.
    let terms = |client: &mut Client| -> Vec<Term> {
        rest.iter()
            .flat_map(|&node| client.status(node).unwrap())
            .map(|status| status.term)
            .collect()
    };
    let before = terms(&mut client);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        terms(&mut client),
        before,
        "the removed node disrupted the rest"
    );
    assert_writes_readable(&mut client, &rest, &load.acknowledged.lock().unwrap());
    println!(
        "removed the leader {old_leader} after {:?}",
        started.elapsed()
    );

    // Replace it: its disk is wiped, it rejoins with --join --init as a learner and is promoted.
    cluster.kill(old_leader);
    std::fs::remove_dir_all(cluster.data_dir(old_leader)).unwrap();
    cluster.set_join(old_leader, true);
    cluster.relaunch(old_leader, true);
    add_and_promote(&cluster, rest[1], old_leader);
    assert_members(&mut client, &three, &three);
    load.wait_progress(50);
    let snapshot = admin(&cluster, rest[0], &["snapshot"]);
    assert!(snapshot.contains("snapshot at"), "{snapshot}");
    let acknowledged = load.finish();
    assert_writes_readable(&mut client, &three, &acknowledged);
    println!(
        "replaced the wiped {old_leader} after {:?}; {} writes acknowledged",
        started.elapsed(),
        acknowledged.len()
    );
    for &node in &three {
        cluster.stop(node);
    }
    assert_logs_hold(&cluster, &three, &acknowledged);
}

#[test]
fn admin_flags_are_checked() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ringraft"))
            .arg("admin")
            .args(args)
            .output()
            .expect("run ringraft admin")
    };
    let missing = run(&["--node", "127.0.0.1:1", "add-learner", "--id", "4"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--addr"));
    let bad = run(&["--node", "nowhere", "status"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--node"));
    let unreachable = run(&["--node", "127.0.0.1:1", "status"]);
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("127.0.0.1:1"));
}
