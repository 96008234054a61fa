//! Driving `ringraft kv` nodes with the `redis` crate: connecting (with or without a user, in
//! RESP2 or RESP3),
//! running a command, retrying it while leaders are elected, and reading INFO.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use redis::{Connection, RedisResult};
use ringraft::types::NodeId;

use super::ProcCluster;

/// A connection to `addr` without credentials.
pub fn connect(addr: SocketAddr) -> Connection {
    open(&format!("redis://{addr}/"))
}

/// A connection to `addr` speaking RESP3 (the client opens with `HELLO 3`).
pub fn connect_resp3(addr: SocketAddr) -> Connection {
    open(&format!("redis://{addr}/?protocol=resp3"))
}

/// A connection to `addr` authenticated as `user` (the client sends AUTH first).
pub fn connect_as(addr: SocketAddr, user: &str, password: &str) -> Connection {
    open(&format!("redis://{user}:{password}@{addr}/"))
}

/// A RESP3 connection to `addr` as `user` (the client sends `HELLO 3 AUTH user password`).
pub fn connect_as_resp3(addr: SocketAddr, user: &str, password: &str) -> Connection {
    open(&format!("redis://{user}:{password}@{addr}/?protocol=resp3"))
}

fn open(url: &str) -> Connection {
    let client = redis::Client::open(url).unwrap();
    let connection = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect: {e}"));
    connection
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    connection
}

pub fn cmd<T: redis::FromRedisValue>(con: &mut Connection, args: &[&str]) -> RedisResult<T> {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query(con)
}

/// Runs `args` until it succeeds (leaders are being elected), for at most 30 s.
pub fn retry<T: redis::FromRedisValue>(con: &mut Connection, args: &[&str]) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match cmd(con, args) {
            Ok(value) => return value,
            Err(error) if Instant::now() < deadline => {
                eprintln!("{args:?}: {error}; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => panic!("{args:?} kept failing: {error}"),
        }
    }
}

/// A 3-node cluster whose every group has a leader reachable through every node.
pub fn ready_cluster(groups: u32, flags: &[&str]) -> ProcCluster {
    let cluster = ProcCluster::start_kv(3, 1, groups, flags);
    wait_until_ready(&cluster, groups, connect);
    cluster
}

/// Waits until a write of a key of every group succeeds through every node, connecting with
/// `connect`.
pub fn wait_until_ready(
    cluster: &ProcCluster,
    groups: u32,
    connect: impl Fn(SocketAddr) -> Connection,
) {
    for (id, addr) in cluster.resp_addrs() {
        let mut con = connect(addr);
        for group in 0..groups * 4 {
            let key = format!("ready:{id}:{group}");
            let _: String = retry(&mut con, &["SET", &key, "1"]);
        }
    }
}

/// The leader of `group` according to INFO on `con`.
pub fn leader_on(con: &mut Connection, group: u32) -> Option<NodeId> {
    let info: String = cmd(con, &["INFO"]).ok()?;
    let line = info
        .lines()
        .find(|line| line.starts_with(&format!("group{group}:")))?;
    let leader = line
        .split(',')
        .find_map(|field| field.strip_prefix("leader="))?;
    leader.parse().ok().map(NodeId)
}

/// The leader of `group` according to INFO through `addr`.
pub fn leader_of(addr: SocketAddr, group: u32) -> Option<NodeId> {
    leader_on(&mut connect(addr), group)
}
