//! Snapshots between real `ringraft kv` processes on loopback: a follower that missed
//! compacted entries catches up through a snapshot transfer, a follower killed in the middle
//! of a large transfer comes back with a whole snapshot (old or new, never half), and a cluster
//! restarted after compaction restores every node from its own snapshot plus log.
//!
//! Nodes serve stale reads, so a GET through a node answers from that node's own state.

mod procs;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use procs::ProcCluster;
use redis::{Connection, RedisResult};
use ringraft::log::shard_dir;
use ringraft::snapshot::{snapshot_dir, SnapshotStore};
use ringraft::types::{GroupId, NodeId, ShardId};

const GROUP: u32 = 0;

fn connect(addr: SocketAddr) -> Connection {
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let connection = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    connection
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    connection
}

fn cmd<T: redis::FromRedisValue>(con: &mut Connection, args: &[&str]) -> RedisResult<T> {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query(con)
}

/// Runs `args` until it succeeds (leaders are being elected), for at most 30 s.
fn retry<T: redis::FromRedisValue>(addr: SocketAddr, args: &[&str]) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let result = std::panic::catch_unwind(|| cmd(&mut connect(addr), args));
        match result {
            Ok(Ok(value)) => return value,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Ok(Err(error)) => panic!("{args:?} kept failing: {error}"),
            Err(_) => panic!("{args:?}: {addr} unreachable"),
        }
    }
}

/// `(role, leader, commit, applied)` of the group according to INFO through `addr`.
fn group_info(addr: SocketAddr) -> Option<(String, Option<NodeId>, u64, u64)> {
    let client = redis::Client::open(format!("redis://{addr}/")).ok()?;
    let mut con = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .ok()?;
    let info: String = cmd(&mut con, &["INFO"]).ok()?;
    let line = info
        .lines()
        .find(|line| line.starts_with(&format!("group{GROUP}:")))?;
    let field = |name: &str| {
        line.split([',', ':'])
            .find_map(|field| field.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    Some((
        field("role")?,
        field("leader")?.parse().ok().map(NodeId),
        field("commit")?.parse().ok()?,
        field("applied")?.parse().ok()?,
    ))
}

/// Waits until node `addr` applied at least `index` (at most `limit`).
fn wait_applied(addr: SocketAddr, index: u64, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let applied = group_info(addr).map_or(0, |(_, _, _, applied)| applied);
        if applied >= index {
            return applied;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} applied {applied}, not {index}, within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A cluster of three kv nodes with a leader elected and reachable through every node.
fn ready_cluster(flags: &[&str]) -> ProcCluster {
    let mut all = vec!["--read", "stale"];
    all.extend_from_slice(flags);
    let cluster = ProcCluster::start_kv(3, 1, 1, &all);
    for (id, addr) in cluster.resp_addrs() {
        let _: String = retry(addr, &["SET", &format!("ready:{id}"), "1"]);
    }
    cluster
}

/// The leader and one follower of the group.
fn leader_and_follower(cluster: &ProcCluster) -> (NodeId, NodeId) {
    let addrs = cluster.resp_addrs();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((_, Some(leader), _, _)) = group_info(addrs[0].1) {
            let follower = addrs.iter().map(|&(id, _)| id).find(|&id| id != leader);
            return (leader, follower.expect("three nodes"));
        }
        assert!(Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn resp_addr(cluster: &ProcCluster, id: NodeId) -> SocketAddr {
    cluster
        .resp_addrs()
        .into_iter()
        .find(|&(node, _)| node == id)
        .expect("member")
        .1
}

/// The value written for key `i` with `len` bytes.
fn value(i: usize, len: usize) -> String {
    let seed = format!("{i:08}-");
    seed.repeat(len / seed.len() + 1)[..len].to_string()
}

/// Writes keys `prefix:i` for `range` with values of `len` bytes through `addr`, pipelined.
fn write_keys(addr: SocketAddr, prefix: &str, range: std::ops::Range<usize>, len: usize) {
    let mut con = connect(addr);
    let per_pipe = (4 << 20) / len.max(1) + 1;
    let keys: Vec<usize> = range.collect();
    for part in keys.chunks(per_pipe.min(200)) {
        let mut pipe = redis::pipe();
        for &i in part {
            pipe.cmd("SET")
                .arg(format!("{prefix}:{i}"))
                .arg(value(i, len))
                .ignore();
        }
        let () = pipe.query(&mut con).unwrap();
    }
}

/// Checks every key `prefix:i` of `range` through `addr` (a stale read: that node's state).
fn check_keys(addr: SocketAddr, prefix: &str, range: std::ops::Range<usize>, len: usize) {
    let mut con = connect(addr);
    for i in range {
        let got: Option<String> = cmd(&mut con, &["GET", &format!("{prefix}:{i}")]).unwrap();
        assert_eq!(
            got.as_deref(),
            Some(&value(i, len)[..]),
            "{prefix}:{i} at {addr}"
        );
    }
}

fn snapshots_of(cluster: &ProcCluster, id: NodeId) -> PathBuf {
    snapshot_dir(&shard_dir(cluster.data_dir(id), ShardId(0)))
}

/// Names of the files in `dir` (sorted), with their sizes.
fn files_in(dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let len = entry.metadata().ok()?.len();
                    Some((entry.file_name().to_string_lossy().into_owned(), len))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Asserts that no partial snapshot file (`.tmp`) is left in `dir`. One may exist for a moment
/// while a snapshot is being written (the node's own of its state, or a newer one from the
/// leader), so this waits up to 20 s for it to be renamed; a leftover stays and fails.
fn assert_no_partial_snapshot_stays(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while files_in(dir).iter().any(|(name, _)| name.ends_with(".tmp")) {
        assert!(
            Instant::now() < deadline,
            "a partial snapshot file stays: {:?}",
            files_in(dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn snap_count(dir: &Path) -> usize {
    files_in(dir)
        .iter()
        .filter(|(name, _)| name.ends_with(".snap"))
        .count()
}

/// (a) A follower killed while the leader snapshots and compacts past it catches up through
/// a snapshot transfer when it comes back, and serves the data.
#[test]
fn a_restarted_follower_catches_up_through_a_snapshot() {
    let mut cluster = ready_cluster(&[
        "--snapshot-entries",
        "200",
        "--compaction-trailing-entries",
        "20",
    ]);
    let (leader, follower) = leader_and_follower(&cluster);
    let leader_addr = resp_addr(&cluster, leader);
    write_keys(leader_addr, "early", 0..50, 100);
    cluster.kill(follower);
    write_keys(leader_addr, "late", 0..1500, 100);
    let (_, _, commit, _) = group_info(leader_addr).expect("leader answers INFO");
    assert!(
        snap_count(&snapshots_of(&cluster, leader)) > 0,
        "the leader snapshotted"
    );
    let follower_snapshots = snapshots_of(&cluster, follower);
    let before = files_in(&follower_snapshots);
    cluster.relaunch(follower, false);
    let follower_addr = resp_addr(&cluster, follower);
    wait_applied(follower_addr, commit, Duration::from_secs(30));
    let after = files_in(&follower_snapshots);
    assert_ne!(before, after, "the follower received a snapshot");
    assert_no_partial_snapshot_stays(&follower_snapshots);
    check_keys(follower_addr, "early", 0..50, 100);
    check_keys(follower_addr, "late", 0..1500, 100);
    // It keeps replicating afterwards.
    write_keys(leader_addr, "after", 0..20, 10);
    let (_, _, commit, _) = group_info(leader_addr).expect("leader answers INFO");
    wait_applied(follower_addr, commit, Duration::from_secs(20));
    check_keys(follower_addr, "after", 0..20, 10);
}

/// (b) A follower killed with -9 in the middle of a large snapshot transfer comes back with
/// whole snapshots only (the partial file is removed), and then catches up.
#[test]
fn a_follower_killed_mid_transfer_keeps_whole_snapshots_only() {
    const KEYS: usize = 120;
    const LEN: usize = 256 << 10; // 30 MiB of values
    let mut cluster = ready_cluster(&[
        "--snapshot-entries",
        "40",
        "--compaction-trailing-entries",
        "5",
        "--snapshot-chunk-bytes",
        "16384",
    ]);
    let (leader, follower) = leader_and_follower(&cluster);
    let leader_addr = resp_addr(&cluster, leader);
    cluster.kill(follower);
    write_keys(leader_addr, "big", 0..KEYS, LEN);
    let (_, _, commit, _) = group_info(leader_addr).expect("leader answers INFO");
    let dir = snapshots_of(&cluster, follower);
    let old: Vec<String> = files_in(&dir)
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| name.ends_with(".snap"))
        .collect();

    // Restart the follower and kill it as soon as a partial file of some size appears (16 KiB
    // chunks, 64 KiB in flight: the transfer takes long enough to be seen).
    cluster.relaunch(follower, false);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut caught = None;
    while caught.is_none() && Instant::now() < deadline {
        caught = files_in(&dir)
            .into_iter()
            .find(|(name, len)| name.ends_with(".tmp") && *len >= 1 << 20);
        assert!(
            snap_count(&dir) == old.len(),
            "the transfer finished before it was seen"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    cluster.kill(follower);
    let (partial, len) = caught.expect("a transfer in flight was caught");
    eprintln!("killed the follower with {partial} at {len} bytes");

    // What a restart sees: the partial file goes, and the newest snapshot is whole.
    let store = SnapshotStore::open(&dir, None).expect("open the dead follower's store");
    assert!(files_in(&dir)
        .iter()
        .all(|(name, _)| !name.ends_with(".tmp")));
    if let Some(meta) = store
        .latest(GroupId(0))
        .expect("the newest snapshot verifies")
    {
        eprintln!("follower's newest snapshot after the kill: {}", meta.index);
    }
    drop(store);

    cluster.relaunch(follower, false);
    let follower_addr = resp_addr(&cluster, follower);
    wait_applied(follower_addr, commit, Duration::from_secs(40));
    check_keys(follower_addr, "big", 0..KEYS, LEN);
    assert_no_partial_snapshot_stays(&dir);
}

/// (c) Every node restarted after compaction restores from its own snapshot plus its log,
/// with all the data.
#[test]
fn a_cluster_restarted_after_compaction_has_all_its_data() {
    let mut cluster = ready_cluster(&[
        "--snapshot-entries",
        "100",
        "--compaction-trailing-entries",
        "10",
    ]);
    let (leader, _) = leader_and_follower(&cluster);
    write_keys(resp_addr(&cluster, leader), "k", 0..450, 64);
    let addrs = cluster.resp_addrs();
    let (_, _, commit, _) = group_info(resp_addr(&cluster, leader)).expect("INFO");
    for &(_, addr) in &addrs {
        wait_applied(addr, commit, Duration::from_secs(20));
    }
    for &(id, _) in &addrs {
        cluster.stop(id);
        assert!(
            snap_count(&snapshots_of(&cluster, id)) > 0,
            "node {id} snapshotted"
        );
        let log = cluster.read_log(id, GroupId(0));
        let first = log.first().map_or(0, |(index, _, _)| index.0);
        assert!(
            first > 1,
            "node {id}'s log was compacted (first index {first})"
        );
    }
    for &(id, _) in &addrs {
        cluster.relaunch(id, false);
    }
    for &(_, addr) in &addrs {
        wait_applied(addr, commit, Duration::from_secs(30));
        check_keys(addr, "k", 0..450, 64);
    }
}
