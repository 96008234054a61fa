//! `ringraft kv` clusters of real processes on loopback, driven by a Redis client library:
//! every command through every node (in RESP2 and RESP3), mixed pipelines across groups and
//! shards, expiry agreed by every replica, kill -9 of a leader, hostile clients.

mod procs;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use procs::resp::{cmd, connect, connect_resp3, leader_of, ready_cluster, retry, wait_until_ready};
use procs::ProcCluster;
use redis::{RedisResult, Value};
use ringraft::kv::hashing::group_of;
use ringraft::types::GroupId;

#[test]
fn every_command_works_through_every_node() {
    let cluster = ready_cluster(3, &[]);
    let addrs = cluster.resp_addrs();
    for &(id, addr) in &addrs {
        let mut con = connect(addr);
        let k = |name: &str| format!("n{}:{name}", id.0);
        let ok = |reply: RedisResult<String>| assert_eq!(reply.unwrap(), "OK");
        assert_eq!(cmd::<String>(&mut con, &["PING"]).unwrap(), "PONG");
        assert_eq!(cmd::<String>(&mut con, &["ECHO", "hi"]).unwrap(), "hi");
        ok(cmd(&mut con, &["SET", &k("a"), "1"]));
        assert_eq!(cmd::<String>(&mut con, &["GET", &k("a")]).unwrap(), "1");
        assert_eq!(
            cmd::<Option<String>>(&mut con, &["GET", &k("none")]).unwrap(),
            None
        );
        assert_eq!(
            cmd::<Value>(&mut con, &["SET", &k("a"), "2", "NX"]).unwrap(),
            Value::Nil
        );
        assert_eq!(
            cmd::<Value>(&mut con, &["SET", &k("b"), "2", "XX"]).unwrap(),
            Value::Nil
        );
        assert_eq!(
            cmd::<String>(&mut con, &["SET", &k("a"), "3", "GET"]).unwrap(),
            "1"
        );
        assert_eq!(
            cmd::<String>(&mut con, &["GETSET", &k("a"), "10"]).unwrap(),
            "3"
        );
        assert_eq!(cmd::<i64>(&mut con, &["INCR", &k("a")]).unwrap(), 11);
        assert_eq!(
            cmd::<i64>(&mut con, &["INCRBY", &k("a"), "-20"]).unwrap(),
            -9
        );
        assert_eq!(cmd::<i64>(&mut con, &["DECR", &k("a")]).unwrap(), -10);
        assert_eq!(
            cmd::<i64>(&mut con, &["APPEND", &k("s"), "abc"]).unwrap(),
            3
        );
        assert_eq!(cmd::<i64>(&mut con, &["APPEND", &k("s"), "de"]).unwrap(), 5);
        assert_eq!(cmd::<i64>(&mut con, &["STRLEN", &k("s")]).unwrap(), 5);
        let not_integer = cmd::<i64>(&mut con, &["INCR", &k("s")]).unwrap_err();
        assert!(
            not_integer.to_string().contains("not an integer"),
            "{not_integer}"
        );
        ok(cmd(
            &mut con,
            &[
                "MSET",
                &k("m1"),
                "x",
                &k("m2"),
                "y",
                &k("m3"),
                "z",
                &k("m4"),
                "w",
            ],
        ));
        let values: Vec<Option<String>> = cmd(
            &mut con,
            &["MGET", &k("m4"), &k("none"), &k("m1"), &k("m3"), &k("m2")],
        )
        .unwrap();
        let expected = [Some("w"), None, Some("x"), Some("z"), Some("y")];
        assert_eq!(values, expected.map(|v| v.map(String::from)));
        let existing = ["EXISTS", &k("m1"), &k("m2"), &k("none"), &k("m1")];
        assert_eq!(cmd::<i64>(&mut con, &existing).unwrap(), 3);
        assert_eq!(
            cmd::<i64>(&mut con, &["DEL", &k("m1"), &k("m2"), &k("none")]).unwrap(),
            2
        );
        assert_eq!(
            cmd::<i64>(&mut con, &["EXISTS", &k("m1"), &k("m2")]).unwrap(),
            0
        );
        // Expiry: the deadline travels in the entry; every node agrees.
        ok(cmd(&mut con, &["SET", &k("ttl"), "v", "PX", "300"]));
        assert_eq!(cmd::<String>(&mut con, &["GET", &k("ttl")]).unwrap(), "v");
        std::thread::sleep(Duration::from_millis(400));
        for &(_, other) in &addrs {
            let gone: Option<String> = cmd(&mut connect(other), &["GET", &k("ttl")]).unwrap();
            assert_eq!(gone, None, "expired key through {other}");
        }
        // Client handshake commands and errors that leave the connection usable.
        ok(cmd(&mut con, &["SELECT", "0"]));
        ok(cmd(&mut con, &["CLIENT", "SETNAME", "test"]));
        assert!(cmd::<Value>(&mut con, &["HELLO", "4"]).is_err());
        assert!(cmd::<Value>(&mut con, &["HELLO", "2"]).is_ok());
        assert!(cmd::<Value>(&mut con, &["COMMAND", "DOCS"]).is_ok());
        let config: Vec<String> = cmd(&mut con, &["CONFIG", "GET", "save"]).unwrap();
        assert_eq!(config, ["save", ""]);
        let unknown = cmd::<Value>(&mut con, &["FLUSHALL"]).unwrap_err();
        assert!(unknown.to_string().contains("unknown command"), "{unknown}");
        let info: String = cmd(&mut con, &["INFO"]).unwrap();
        for group in 0..3 {
            assert!(info.contains(&format!("group{group}:role=")), "{info}");
        }
        assert!(info.contains("read_mode:linearizable"), "{info}");
        // Pipelined writes through this node take effect in order, forwarded or not.
        let mut pipe = redis::pipe();
        for _ in 0..50 {
            pipe.cmd("INCR").arg(k("counter"));
        }
        pipe.cmd("GET").arg(k("counter"));
        let (counts, last): (Vec<i64>, i64) = {
            let mut all: Vec<i64> = pipe.query(&mut con).unwrap();
            let last = all.pop().unwrap();
            (all, last)
        };
        assert_eq!(counts, (1..=50).collect::<Vec<_>>());
        assert_eq!(last, 50);
    }
    // What one node wrote, every node reads (linearizable reads).
    for &(writer, _) in &addrs {
        for &(_, addr) in &addrs {
            let mut con = connect(addr);
            let key = format!("n{}:s", writer.0);
            assert_eq!(cmd::<String>(&mut con, &["GET", &key]).unwrap(), "abcde");
        }
    }
    let sizes: Vec<i64> = addrs
        .iter()
        .map(|&(_, addr)| cmd(&mut connect(addr), &["DBSIZE"]).unwrap())
        .collect();
    // Per node: a, s, m3, m4, counter; plus the 12 ready keys of each node.
    assert_eq!(sizes, [3 * (5 + 12); 3]);
    let mut con = connect(addrs[0].1);
    assert_eq!(cmd::<String>(&mut con, &["QUIT"]).unwrap(), "OK");
}

/// The field `name` of a HELLO or CONFIG GET map.
fn field<'a>(map: &'a [(Value, Value)], name: &str) -> &'a Value {
    let key = Value::BulkString(name.as_bytes().to_vec());
    let found = map.iter().find(|(k, _)| *k == key);
    &found.unwrap_or_else(|| panic!("no {name} in {map:?}")).1
}

#[test]
fn resp3_clients_get_typed_replies_through_every_node() {
    let cluster = ready_cluster(3, &[]);
    let addrs = cluster.resp_addrs();
    for &(id, addr) in &addrs {
        let mut con = connect_resp3(addr);
        let k = |name: &str| format!("r{}:{name}", id.0);
        let Value::Map(hello) = cmd::<Value>(&mut con, &["HELLO"]).unwrap() else {
            panic!("HELLO in RESP3 answers a map");
        };
        assert_eq!(*field(&hello, "proto"), Value::Int(3));
        assert_eq!(
            *field(&hello, "mode"),
            Value::BulkString(b"standalone".to_vec())
        );
        assert_eq!(*field(&hello, "modules"), Value::Array(vec![]));
        assert_eq!(
            cmd::<String>(&mut con, &["SET", &k("a"), "1"]).unwrap(),
            "OK"
        );
        assert_eq!(cmd::<String>(&mut con, &["GET", &k("a")]).unwrap(), "1");
        assert_eq!(
            cmd::<Value>(&mut con, &["GET", &k("none")]).unwrap(),
            Value::Nil
        );
        assert_eq!(cmd::<i64>(&mut con, &["INCR", &k("a")]).unwrap(), 2);
        let values: Vec<Option<String>> =
            cmd(&mut con, &["MGET", &k("a"), &k("none"), &k("b")]).unwrap();
        assert_eq!(values, [Some("2".to_string()), None, None]);
        assert_eq!(cmd::<i64>(&mut con, &["TTL", &k("a")]).unwrap(), -1);
        assert_eq!(
            cmd::<i64>(&mut con, &["EXPIRE", &k("a"), "100"]).unwrap(),
            1
        );
        let ttl: i64 = cmd(&mut con, &["TTL", &k("a")]).unwrap();
        assert!((1..=100).contains(&ttl), "{ttl}");
        assert_eq!(
            cmd::<i64>(&mut con, &["EXPIRE", &k("a"), "50", "GT"]).unwrap(),
            0
        );
        assert_eq!(cmd::<i64>(&mut con, &["PERSIST", &k("a")]).unwrap(), 1);
        assert_eq!(cmd::<i64>(&mut con, &["PTTL", &k("a")]).unwrap(), -1);
        assert_eq!(cmd::<i64>(&mut con, &["TTL", &k("none")]).unwrap(), -2);
        assert_eq!(
            cmd::<i64>(&mut con, &["DEL", &k("a"), &k("none")]).unwrap(),
            1
        );
        let Value::Map(config) = cmd::<Value>(&mut con, &["CONFIG", "GET", "save"]).unwrap() else {
            panic!("CONFIG GET in RESP3 answers a map");
        };
        assert_eq!(*field(&config, "save"), Value::BulkString(vec![]));
        let info = cmd::<Value>(&mut con, &["INFO"]).unwrap();
        let Value::VerbatimString { text, .. } = info else {
            panic!("INFO in RESP3 is a verbatim string: {info:?}");
        };
        assert!(text.contains("group2:role="), "{text}");
        // Pipelined commands keep their order and their types.
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(k("p")).arg("x").arg("PX").arg("100000");
        for _ in 0..20 {
            pipe.cmd("INCR").arg(k("n"));
        }
        pipe.cmd("GET").arg(k("none"));
        pipe.cmd("PEXPIRE").arg(k("n")).arg("100000").arg("NX");
        pipe.cmd("PERSIST").arg(k("p"));
        pipe.cmd("TTL").arg(k("p"));
        let replies: Vec<Value> = pipe.query(&mut con).unwrap();
        let mut expected = vec![Value::Okay];
        expected.extend((1..=20).map(Value::Int));
        expected.extend([Value::Nil, Value::Int(1), Value::Int(1), Value::Int(-1)]);
        assert_eq!(replies, expected);
        // Back to RESP2 on the same connection: HELLO answers a flat array again.
        let Value::Array(flat) = cmd::<Value>(&mut con, &["HELLO", "2"]).unwrap() else {
            panic!("HELLO 2 answers an array");
        };
        assert_eq!(flat.len(), 14);
    }
    // On the wire: RESP3 nils are `_`, whichever node holds the keys' groups (each group's
    // leader answers a forwarded part in RESP2; the client's own node writes RESP3).
    for &(_, addr) in &addrs {
        let mut request = b"HELLO 3\r\nGET nothing:here\r\n".to_vec();
        request.extend_from_slice(b"MGET r1:n nothing:1 nothing:2 nothing:3 nothing:4\r\n");
        let answer = String::from_utf8_lossy(&exchange(addr, &request)).into_owned();
        let (hello, rest) = answer.split_once("$7\r\nmodules\r\n*0\r\n").unwrap();
        assert!(hello.starts_with("%7\r\n"), "{answer}");
        assert_eq!(
            rest, "_\r\n*5\r\n$2\r\n20\r\n_\r\n_\r\n_\r\n_\r\n",
            "{answer}"
        );
    }
}

/// Expiry commands go through the log with their absolute deadline: the leader and the
/// followers, each reading its own copy (stale reads), hold the very same deadline.
#[test]
fn every_replica_agrees_on_deadlines_set_through_any_node() {
    let cluster = ready_cluster(1, &["--read", "stale"]);
    let addrs = cluster.resp_addrs();
    let leader = leader_of(addrs[0].1, 0).expect("a leader");
    let follower = addrs.iter().find(|(id, _)| *id != leader).unwrap().1;
    let mut con = connect(follower);
    let _: String = cmd(&mut con, &["SET", "deadline", "v"]).unwrap();
    let _: String = cmd(&mut con, &["SET", "gone", "v"]).unwrap();
    assert_eq!(
        cmd::<i64>(&mut con, &["PEXPIRE", "deadline", "3600000"]).unwrap(),
        1
    );
    assert_eq!(
        cmd::<i64>(&mut con, &["PEXPIRE", "gone", "200"]).unwrap(),
        1
    );
    // Read through the follower's own copy once it has applied the write.
    let deadline = Instant::now() + Duration::from_secs(10);
    let at = loop {
        let at: i64 = cmd(&mut con, &["PEXPIRETIME", "deadline"]).unwrap();
        if at > 0 {
            break at;
        }
        assert!(
            Instant::now() < deadline,
            "the follower never applied the PEXPIRE"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    for &(id, addr) in &addrs {
        let mut con = connect(addr);
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let seen: i64 = cmd(&mut con, &["PEXPIRETIME", "deadline"]).unwrap();
            if seen == at {
                break;
            }
            assert!(
                seen <= 0,
                "node {id} holds another deadline: {seen} != {at}"
            );
            assert!(
                Instant::now() < until,
                "node {id} never applied the PEXPIRE"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let seconds: i64 = cmd(&mut con, &["EXPIRETIME", "deadline"]).unwrap();
        // EXPIRETIME truncates to the second, as Redis does.
        assert_eq!(seconds, at / 1000);
    }
    std::thread::sleep(Duration::from_millis(300));
    for &(id, addr) in &addrs {
        let mut con = connect(addr);
        let gone: Option<String> = cmd(&mut con, &["GET", "gone"]).unwrap();
        assert_eq!(gone, None, "expired key on node {id}");
        assert_eq!(cmd::<i64>(&mut con, &["TTL", "gone"]).unwrap(), -2);
    }
    assert_eq!(cmd::<i64>(&mut con, &["PERSIST", "deadline"]).unwrap(), 1);
    let mut leader_con = connect(
        cluster
            .resp_addrs()
            .iter()
            .find(|(id, _)| *id == leader)
            .unwrap()
            .1,
    );
    assert_eq!(
        cmd::<i64>(&mut leader_con, &["TTL", "deadline"]).unwrap(),
        -1
    );
}

#[test]
fn acknowledged_writes_survive_kill_of_the_leader() {
    let mut cluster = ready_cluster(2, &[]);
    let addrs = cluster.resp_addrs();
    let keys: Vec<String> = (0..300).map(|i| format!("key:{i}")).collect();
    let mut con = connect(addrs[0].1);
    let mut pipe = redis::pipe();
    for (i, key) in keys.iter().enumerate() {
        pipe.cmd("SET").arg(key).arg(i).ignore();
    }
    let () = pipe.query(&mut con).unwrap();
    let leader = leader_of(addrs[0].1, 0).expect("group 0 has a leader");
    cluster.kill(leader);
    let survivor = addrs.iter().find(|(id, _)| *id != leader).unwrap().1;
    let mut con = connect(survivor);
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    let values: Vec<String> = retry(&mut con, &mget);
    let expected: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    assert_eq!(values, expected);
    let _: String = retry(&mut con, &["SET", "after", "failover"]);
    let new_leader = leader_of(survivor, 0).expect("group 0 has a new leader");
    assert_ne!(new_leader, leader);
    cluster.relaunch(leader, false);
    let restarted = addrs.iter().find(|(id, _)| *id == leader).unwrap().1;
    let mut con = connect(restarted);
    assert_eq!(retry::<String>(&mut con, &["GET", "after"]), "failover");
    assert_eq!(retry::<String>(&mut con, &["GET", "key:299"]), "299");
}

/// Sends `input` on a fresh connection, half-closes it and returns everything answered.
fn exchange(addr: SocketAddr, input: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(input).unwrap();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

#[test]
fn hostile_clients_leave_the_server_serving_others() {
    let cluster = ready_cluster(1, &[]);
    let addr = cluster.resp_addrs()[1].1;
    let mut bystander = connect(addr);
    let _: String = cmd(&mut bystander, &["SET", "bystander", "1"]).unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();

    // Errors the stream survives: the connection goes on.
    let answer = text(exchange(
        addr,
        b"*1\r\n$3\r\nFOO\r\nPING\r\n*1\r\n$3\r\nGET\r\n*1\r\n$4\r\nPING\r\n",
    ));
    assert_eq!(
        answer,
        "-ERR unknown command 'FOO', with args beginning with:\r\n+PONG\r\n\
         -ERR wrong number of arguments for 'get' command\r\n+PONG\r\n"
    );
    // Errors it does not: one error reply after the earlier replies, then the connection closes.
    for (input, error) in [
        (
            &b"PING\r\n*2\r\n$3\r\nGET\r\n$x\r\nPING\r\n"[..],
            "invalid integer",
        ),
        (
            b"*2\r\n$3\r\nSET\r\n$999999999\r\n",
            "bulk string of 999999999 bytes",
        ),
        (b"*100000000\r\n", "array of 100000000 elements"),
        (b"*1\r\n:1\r\n", "expected '$'"),
        (b"*1\r\n$1\r\nabc\r\n", "not followed by CRLF"),
    ] {
        let answer = text(exchange(addr, input));
        assert!(answer.contains(error), "{input:?} -> {answer}");
        assert!(
            !answer.ends_with("+PONG\r\n"),
            "{input:?} was read past the error"
        );
    }
    let long_line = vec![b'x'; 70 << 10];
    assert!(text(exchange(addr, &long_line)).contains("line longer than"));
    // Random bytes, abrupt disconnects mid-request and mid-pipeline.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..30 {
        let bytes: Vec<u8> = (0..200)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect();
        let _ = exchange(addr, &bytes);
    }
    for input in [
        &b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nabc"[..],
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nw\r\n",
    ] {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(input).unwrap();
        drop(stream);
    }
    // An oversized value is refused; the next request on that connection is not affected.
    let mut con = connect(addr);
    let big = "x".repeat(600 << 10);
    let oversized = cmd::<Value>(&mut con, &["SET", "big", &big]).unwrap_err();
    assert!(
        oversized
            .to_string()
            .contains("bulk string of 614400 bytes"),
        "{oversized}"
    );
    let mut con = connect(addr);
    let nearly = "x".repeat((512 << 10) - 8);
    let too_large = cmd::<Value>(&mut con, &["SET", "big", &nearly]).unwrap_err();
    assert!(too_large.to_string().contains("too large"), "{too_large}");
    assert_eq!(cmd::<String>(&mut con, &["PING"]).unwrap(), "PONG");
    let fits = "y".repeat(400 << 10);
    let _: String = cmd(&mut con, &["SET", "big", &fits]).unwrap();
    assert_eq!(
        cmd::<String>(&mut con, &["GET", "big"]).unwrap().len(),
        fits.len()
    );
    // The bystander never noticed.
    assert_eq!(
        cmd::<String>(&mut bystander, &["GET", "bystander"]).unwrap(),
        "1"
    );
    let mut cluster = cluster;
    assert!(cluster.exited().is_none(), "a node died");
}

#[test]
fn lease_reads_see_every_acknowledged_write() {
    let cluster = ready_cluster(2, &["--read", "lease"]);
    let addrs = cluster.resp_addrs();
    for round in 0..20 {
        let (_, writer) = addrs[round % 3];
        let value = round.to_string();
        let _: String = cmd(&mut connect(writer), &["SET", "lease", &value]).unwrap();
        for &(_, reader) in &addrs {
            let seen: String = cmd(&mut connect(reader), &["GET", "lease"]).unwrap();
            assert_eq!(seen, value, "read through {reader} after round {round}");
        }
    }
    let info: String = cmd(&mut connect(addrs[0].1), &["INFO"]).unwrap();
    assert!(info.contains("read_mode:lease"), "{info}");
}

#[test]
fn stale_reads_are_served_locally_even_without_a_quorum() {
    let mut cluster = ready_cluster(1, &["--read", "stale"]);
    let addrs = cluster.resp_addrs();
    let _: String = cmd(&mut connect(addrs[0].1), &["SET", "stale", "v"]).unwrap();
    let (last, addr) = addrs[2];
    let mut con = connect(addr);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cmd::<Option<String>>(&mut con, &["GET", "stale"]).unwrap() != Some("v".into()) {
        assert!(Instant::now() < deadline, "{last} never applied the write");
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster.kill(addrs[0].0);
    cluster.kill(addrs[1].0);
    let begun = Instant::now();
    assert_eq!(cmd::<String>(&mut con, &["GET", "stale"]).unwrap(), "v");
    assert_eq!(
        cmd::<i64>(&mut con, &["DBSIZE"]).unwrap(),
        13,
        "12 ready keys and one more"
    );
    assert!(begun.elapsed() < Duration::from_secs(1), "answered locally");
    let write = cmd::<Value>(&mut con, &["SET", "stale", "w"]).unwrap_err();
    assert!(
        write.to_string().to_uppercase().contains("TRYAGAIN"),
        "{write}"
    );
}

/// A command as a RESP array of bulk strings.
fn resp_command(args: &[&str]) -> String {
    let mut out = format!("*{}\r\n", args.len());
    for arg in args {
        out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    out
}

/// One pipeline, sent in one write through every node (the leader of some groups, a
/// follower for others, so parts run here and are forwarded in the same pipeline), with keys
/// in all four groups of two shards: writes and reads mixed, errors and immediate answers in
/// the middle, multi-key commands across groups, a protocol switch. The replies come in
/// request order, each read sees the writes before it, and a reply is in the protocol its
/// connection spoke when it was sent.
#[test]
fn a_mixed_pipeline_is_answered_in_order_through_every_node() {
    const GROUPS: u32 = 4;
    let cluster = ProcCluster::start_kv(3, 2, GROUPS, &[]);
    wait_until_ready(&cluster, GROUPS, connect);
    for (id, addr) in cluster.resp_addrs() {
        // keys[g]: a key of group g.
        let keys: Vec<String> = (0..GROUPS)
            .map(|group| {
                (0..)
                    .map(|i| format!("p{}:{i}", id.0))
                    .find(|key| group_of(key.as_bytes(), GROUPS) == GroupId(group.into()))
                    .unwrap()
            })
            .collect();
        let [k0, k1, k2, k3] = [0, 1, 2, 3].map(|g| keys[g].as_str());
        let mut input = String::new();
        let mut expected = String::new();
        let mut step = |args: &[&str], reply: &str| {
            input.push_str(&resp_command(args));
            expected.push_str(reply);
        };
        let not_integer = "-ERR value is not an integer or out of range\r\n";
        step(&["SET", k0, "1"], "+OK\r\n");
        step(&["SET", k1, "x"], "+OK\r\n");
        step(&["INCR", k0], ":2\r\n");
        step(&["INCR", k1], not_integer);
        step(
            &["GET"],
            "-ERR wrong number of arguments for 'get' command\r\n",
        );
        step(&["INCR", k0], ":3\r\n");
        step(&["GET", k0], "$1\r\n3\r\n");
        step(&["GET", k1], "$1\r\nx\r\n");
        step(&["PING"], "+PONG\r\n");
        step(&["MSET", k2, "a", k3, "b", k0, "9"], "+OK\r\n");
        step(&["INCR", k2], not_integer);
        step(
            &["FOO"],
            "-ERR unknown command 'FOO', with args beginning with:\r\n",
        );
        step(&["INCR", k0], ":10\r\n");
        step(
            &["MGET", k3, k2, k0, "none"],
            "*4\r\n$1\r\nb\r\n$1\r\na\r\n$2\r\n10\r\n$-1\r\n",
        );
        step(&["APPEND", k3, "c"], ":2\r\n");
        step(&["DEL", k2, k3, k1], ":3\r\n");
        step(&["EXISTS", k0, k1, k2, k3], ":1\r\n");
        // Writes spread over the groups, each group's in order, then a read of each.
        let mut counts = [10, 0, 0, 0];
        for i in 0..40 {
            counts[i % 4] += 1;
            step(
                &["INCR", keys[i % 4].as_str()],
                &format!(":{}\r\n", counts[i % 4]),
            );
        }
        for (key, count) in keys.iter().zip(counts) {
            let text = count.to_string();
            step(&["GET", key], &format!("${}\r\n{text}\r\n", text.len()));
        }
        step(&["GET", "none"], "$-1\r\n");
        input.push_str(&resp_command(&["HELLO", "3"]));
        input.push_str(&resp_command(&["GET", "none"]));
        input.push_str(&resp_command(&["SET", k0, "resp3"]));
        let answer = String::from_utf8_lossy(&exchange(addr, input.as_bytes())).into_owned();
        assert!(
            answer.starts_with(&format!("{expected}%7\r\n")),
            "through n{}:\n{answer}\nexpected first:\n{expected}",
            id.0
        );
        assert!(answer.ends_with("_\r\n+OK\r\n"), "{answer}");
    }
}
