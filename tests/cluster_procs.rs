//! Multi-process clusters on loopback: real `ringraft node` processes, real fsync, kill -9.
//! Timeouts are generous and nothing here asserts performance.

mod procs;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use procs::ProcCluster;
use ringraft::api::ReadConsistency;
use ringraft::client::Client;
use ringraft::log::shard_dir;
use ringraft::snapshot::{snapshot_dir, SnapshotStore};
use ringraft::types::{GroupId, LogIndex, NodeId, ShardId};

const GROUP: GroupId = GroupId(0);

fn connect_client(cluster: &ProcCluster) -> Client {
    Client::connect(
        cluster.client_addrs(),
        cluster.shards(),
        Duration::from_secs(20),
    )
}

/// Proposes `values` (pipelined `depth` at a time) and returns value -> committed index.
fn propose_all(
    client: &mut Client,
    group: GroupId,
    values: &[u64],
    depth: usize,
) -> BTreeMap<u64, LogIndex> {
    let mut committed = BTreeMap::new();
    for chunk in values.chunks(depth) {
        let payloads: Vec<Vec<u8>> = chunk.iter().map(|v| v.to_le_bytes().to_vec()).collect();
        let results = client.propose_many(group, &payloads);
        for (value, result) in chunk.iter().zip(results) {
            let done = result.unwrap_or_else(|e| panic!("value {value}: {e}"));
            committed.insert(*value, done.index);
        }
    }
    committed
}

/// Waits until every running node has applied `group` up to `target` (applied entries are
/// durable on that node).
fn wait_caught_up(cluster: &ProcCluster, client: &mut Client, group: GroupId, target: LogIndex) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in (1..=cluster.nodes.len() as u64).map(NodeId) {
        if !cluster.is_up(id) {
            continue;
        }
        loop {
            let commit = client
                .status(id)
                .ok()
                .and_then(|statuses| statuses.into_iter().find(|s| s.group == group))
                .map_or(LogIndex::ZERO, |status| status.applied);
            if commit >= target {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{id} did not catch up to {target} (at {commit})"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The index of `id`'s newest snapshot of `group` (zero without one).
fn newest_snapshot(cluster: &ProcCluster, id: NodeId, group: GroupId) -> LogIndex {
    let shard = ShardId((group.0 % cluster.shards() as u64) as u32);
    let dir = snapshot_dir(&shard_dir(cluster.data_dir(id), shard));
    SnapshotStore::open(&dir, None)
        .and_then(|store| store.latest(group))
        .expect("the node's snapshots open")
        .map_or(LogIndex::ZERO, |snapshot| snapshot.index)
}

/// A node's log of one group: index → (term, payload).
type LogByIndex = BTreeMap<LogIndex, (u64, Vec<u8>)>;

/// Every node's log holds the same entry at every index it has, and each acknowledged value
/// sits at its acknowledged index on every node whose log reaches it. Logs may start at
/// different indexes: a node compacts what its own snapshot covers (a restarted one snapshots
/// at other indexes than the rest), so entries are compared by index.
fn assert_logs_agree(
    cluster: &ProcCluster,
    group: GroupId,
    acknowledged: &BTreeMap<u64, LogIndex>,
) {
    let logs: Vec<(u64, LogByIndex)> = (1..=cluster.nodes.len() as u64)
        .map(|id| {
            let log = cluster.read_log(NodeId(id), group);
            let by_index = log
                .into_iter()
                .map(|(index, term, payload)| (index, (term, payload)))
                .collect();
            (id, by_index)
        })
        .collect();
    let indexes: BTreeSet<LogIndex> = logs
        .iter()
        .flat_map(|(_, log)| log.keys())
        .copied()
        .collect();
    for index in indexes {
        let entries: Vec<_> = logs
            .iter()
            .filter_map(|(id, log)| log.get(&index).map(|entry| (id, entry)))
            .collect();
        let (first_id, first) = entries[0];
        for (id, entry) in &entries[1..] {
            assert_eq!(entry, &first, "n{id} and n{first_id} differ at {index}");
        }
    }
    for (value, index) in acknowledged {
        for (id, log) in &logs {
            if log.keys().next().is_some_and(|first| index < first) {
                // Compacted on this node: its newest snapshot must cover the value.
                let covered = newest_snapshot(cluster, NodeId(*id), group);
                assert!(
                    covered >= *index,
                    "n{id}'s log starts after acknowledged value {value} at {index}, \
                     and its newest snapshot is at {covered}"
                );
                continue;
            }
            let Some((_, payload)) = log.get(index) else {
                let report = ringraft::log::inspect(cluster.data_dir(NodeId(*id)));
                panic!(
                    "n{id}'s log of {group} ends before acknowledged value {value} at {index}\n{}",
                    report.map_or_else(|e| e.to_string(), |r| r.to_string())
                );
            };
            assert_eq!(
                payload,
                &value.to_le_bytes(),
                "n{id} holds another value at {index}"
            );
        }
    }
}

#[test]
fn three_nodes_commit_ten_thousand_proposals_into_identical_logs() {
    let mut cluster = ProcCluster::start(3, 1, 1, &[]);
    let mut client = connect_client(&cluster);
    let values: Vec<u64> = (1..=10_000).collect();
    let acknowledged = propose_all(&mut client, GROUP, &values, 200);
    assert_eq!(acknowledged.len(), 10_000);
    let indexes: std::collections::BTreeSet<_> = acknowledged.values().collect();
    assert_eq!(indexes.len(), 10_000, "every proposal has its own index");
    // Reads through the client port reflect at least every acknowledged proposal.
    let last = **indexes.last().unwrap();
    for consistency in [ReadConsistency::Linearizable, ReadConsistency::Lease] {
        let read = client.read(GROUP, b"", consistency).expect("read answered");
        assert!(
            read.index >= last,
            "{consistency:?} read at {} < {last}",
            read.index
        );
    }
    wait_caught_up(&cluster, &mut client, GROUP, last);
    cluster.stop_all();
    assert_logs_agree(&cluster, GROUP, &acknowledged);
}

#[test]
fn killing_the_leader_under_load_loses_no_acknowledged_proposal() {
    let mut cluster = ProcCluster::start(3, 1, 1, &[]);
    let mut client = connect_client(&cluster);
    let mut acknowledged = propose_all(&mut client, GROUP, &(1..=500).collect::<Vec<_>>(), 50);
    let leader = client.leader_of(GROUP).expect("a leader is known");

    // A load thread proposes pipelined batches the whole time; only answered values count.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let mut load_client = connect_client(&cluster);
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut acknowledged = BTreeMap::new();
            let mut next = 100_000u64;
            while !stop.load(Ordering::Relaxed) {
                let values: Vec<u64> = (next..next + 50).collect();
                next += 50;
                let payloads: Vec<Vec<u8>> =
                    values.iter().map(|v| v.to_le_bytes().to_vec()).collect();
                for (value, result) in values
                    .iter()
                    .zip(load_client.propose_many(GROUP, &payloads))
                {
                    if let Ok(done) = result {
                        acknowledged.insert(*value, done.index);
                    }
                }
            }
            acknowledged
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    cluster.kill(leader);
    let killed = Instant::now();
    let new_leader = client.leader_of(GROUP).expect("a new leader");
    assert_ne!(new_leader, leader);
    println!(
        "new leader {new_leader} known {:?} after kill -9 of {leader}",
        killed.elapsed()
    );
    std::thread::sleep(Duration::from_millis(700));
    cluster.relaunch(leader, false);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let under_load = load.join().expect("load thread");
    assert!(
        under_load.keys().any(|&value| value >= 100_000),
        "the load thread committed nothing"
    );
    acknowledged.extend(under_load);
    acknowledged.extend(propose_all(
        &mut client,
        GROUP,
        &(1001..=1200).collect::<Vec<_>>(),
        50,
    ));
    // Wait for every node (the restarted one too) to catch up, then compare every log.
    let target = *acknowledged.values().max().unwrap();
    wait_caught_up(&cluster, &mut client, GROUP, target);
    cluster.stop_all();
    assert_logs_agree(&cluster, GROUP, &acknowledged);
}

#[test]
fn a_full_restart_recovers_terms_votes_logs_and_commit() {
    let mut cluster = ProcCluster::start(3, 2, 4, &[]);
    let mut client = connect_client(&cluster);
    let mut acknowledged: BTreeMap<GroupId, BTreeMap<u64, LogIndex>> = BTreeMap::new();
    for group in (0..4).map(GroupId) {
        let values: Vec<u64> = (1..=300).map(|v| v + group.0 * 1_000).collect();
        acknowledged.insert(group, propose_all(&mut client, group, &values, 30));
    }
    let before: Vec<_> = (1..=3)
        .map(|id| client.status(NodeId(id)).unwrap())
        .collect();
    cluster.stop_all();
    for id in 1..=3 {
        cluster.relaunch(NodeId(id), false);
    }
    let mut client = connect_client(&cluster);
    for (node, statuses) in before.iter().enumerate() {
        let after = client.status(NodeId(node as u64 + 1)).unwrap();
        for (old, new) in statuses.iter().zip(&after) {
            assert!(new.term >= old.term, "term went back on n{}", node + 1);
            assert!(
                new.last_index >= old.commit,
                "log lost committed entries on n{}",
                node + 1
            );
        }
    }
    for group in (0..4).map(GroupId) {
        let values: Vec<u64> = (301..=400).map(|v| v + group.0 * 1_000).collect();
        let done = propose_all(&mut client, group, &values, 20);
        let target = *done.values().max().unwrap();
        acknowledged.get_mut(&group).unwrap().extend(done);
        wait_caught_up(&cluster, &mut client, group, target);
    }
    cluster.stop_all();
    for (group, values) in &acknowledged {
        assert_logs_agree(&cluster, *group, values);
    }
}

#[test]
fn a_node_with_a_wiped_data_dir_refuses_to_start_without_init() {
    let mut cluster = ProcCluster::start(3, 1, 1, &[]);
    let mut client = connect_client(&cluster);
    propose_all(&mut client, GROUP, &(1..=50).collect::<Vec<_>>(), 10);
    let victim = NodeId(3);
    cluster.kill(victim);
    std::fs::remove_dir_all(cluster.data_dir(victim)).unwrap();
    let output = cluster.command(victim, false).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--init"), "{stderr}");
    // Rejoining deliberately (--init) works and the node catches up.
    cluster.relaunch(victim, true);
    let acknowledged = propose_all(&mut client, GROUP, &(51..=100).collect::<Vec<_>>(), 10);
    let target = *acknowledged.values().max().unwrap();
    wait_caught_up(&cluster, &mut client, GROUP, target);
}
