//! Authentication on real `ringraft kv` processes: passwords and read-only users on every
//! node, a flood of wrong passwords beside a working client, and the internal forwarding
//! commands, which only a node holding the cluster secret may send.

mod procs;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use procs::resp::{
    cmd, connect, connect_as, connect_as_resp3, leader_on, ready_cluster, retry, wait_until_ready,
};
use procs::ProcCluster;
use redis::{Connection, Value as RedisValue};
use ringraft::chaos::resp_client::RespConnection;
use ringraft::kv::op::{Entry, Op};
use ringraft::kv::peer_proof::ClusterSecret;
use ringraft::kv::resp::Value;
use ringraft::types::NodeId;

const PASSWORD: &str = "pw-Default-7d1c";
const WRITER_PASSWORD: &str = "pw-Writer-93ab";
const READER_PASSWORD: &str = "pw-Reader-5e20";

/// Password files in `dir`: the flags that make every node require them.
fn auth_flags(dir: &Path) -> Vec<String> {
    let requirepass = dir.join("requirepass");
    std::fs::write(&requirepass, format!("{PASSWORD}\n")).unwrap();
    let users = dir.join("users.toml");
    std::fs::write(
        &users,
        format!(
            "[[users]]\nname = \"writer\"\npassword = \"{WRITER_PASSWORD}\"\naccess = \"read-write\"\n\n\
             [[users]]\nname = \"reader\"\npassword = \"{READER_PASSWORD}\"\naccess = \"read-only\"\n"
        ),
    )
    .unwrap();
    vec![
        "--requirepass-file".into(),
        requirepass.display().to_string(),
        "--users-file".into(),
        users.display().to_string(),
    ]
}

fn error_of<T: redis::FromRedisValue + std::fmt::Debug>(
    con: &mut Connection,
    args: &[&str],
) -> String {
    match cmd::<T>(con, args) {
        Ok(value) => panic!("{args:?} succeeded: {value:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn passwords_and_read_only_users_gate_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let flags = auth_flags(dir.path());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cluster = ProcCluster::start_kv(3, 1, 2, &flags);
    wait_until_ready(&cluster, 2, |addr| {
        connect_as(addr, "writer", WRITER_PASSWORD)
    });
    for (id, addr) in cluster.resp_addrs() {
        let key = format!("auth:{}", id.0);
        let mut anonymous = connect(addr);
        for args in [&["PING"][..], &["GET", "k"], &["SET", "k", "v"], &["INFO"]] {
            let refused = error_of::<RedisValue>(&mut anonymous, args);
            assert!(
                refused.contains("Authentication required"),
                "{args:?}: {refused}"
            );
        }
        let hello = error_of::<RedisValue>(&mut anonymous, &["HELLO", "2"]);
        assert!(hello.contains("HELLO must be called with the client already authenticated"));
        for args in [
            &["AUTH", "wrong"][..],
            &["AUTH", "writer", READER_PASSWORD],
            &["AUTH", "nobody", "x"],
            &["HELLO", "2", "AUTH", "reader", "wrong"],
        ] {
            let refused = error_of::<RedisValue>(&mut anonymous, args);
            assert!(
                refused.contains("invalid username-password pair or user is disabled"),
                "{args:?}: {refused}"
            );
        }
        let refused = error_of::<RedisValue>(&mut anonymous, &["GET", "k"]);
        assert!(refused.contains("Authentication required"), "{refused}");
        // AUTH with the default user's password, then with a named user's.
        assert_eq!(
            cmd::<String>(&mut anonymous, &["AUTH", PASSWORD]).unwrap(),
            "OK"
        );
        assert_eq!(
            cmd::<String>(&mut anonymous, &["SET", &key, "1"]).unwrap(),
            "OK"
        );
        assert_eq!(
            cmd::<String>(&mut anonymous, &["AUTH", "reader", READER_PASSWORD]).unwrap(),
            "OK"
        );
        let refused = error_of::<RedisValue>(&mut anonymous, &["SET", &key, "2"]);
        assert!(
            refused.contains("User reader has no permissions to run the 'set' command"),
            "{refused}"
        );
        assert_eq!(cmd::<String>(&mut anonymous, &["GET", &key]).unwrap(), "1");
        // HELLO 2 AUTH on a fresh connection.
        let mut hello = connect(addr);
        let reply: Vec<RedisValue> = cmd(
            &mut hello,
            &["HELLO", "2", "AUTH", "writer", WRITER_PASSWORD],
        )
        .unwrap();
        assert!(
            reply.contains(&RedisValue::BulkString(b"ringraft".to_vec())),
            "{reply:?}"
        );
        assert_eq!(cmd::<i64>(&mut hello, &["INCR", &key]).unwrap(), 2);
        // The client library's own AUTH, as the URL asks for it.
        let mut reader = connect_as(addr, "reader", READER_PASSWORD);
        assert_eq!(cmd::<i64>(&mut reader, &["EXISTS", &key]).unwrap(), 1);
        let refused = error_of::<RedisValue>(&mut reader, &["DEL", &key]);
        assert!(
            refused.contains("has no permissions to run the 'del' command"),
            "{refused}"
        );
        // HELLO 3 AUTH, as a RESP3 client logs in: its replies are RESP3 (HELLO is a map).
        let mut resp3 = connect_as_resp3(addr, "reader", READER_PASSWORD);
        let hello = cmd::<RedisValue>(&mut resp3, &["HELLO"]).unwrap();
        assert!(matches!(hello, RedisValue::Map(_)), "{hello:?}");
        assert_eq!(cmd::<i64>(&mut resp3, &["TTL", &key]).unwrap(), -1);
        let refused = error_of::<RedisValue>(&mut resp3, &["EXPIRE", &key, "10"]);
        assert!(
            refused.contains("has no permissions to run the 'expire' command"),
            "{refused}"
        );
        let refused =
            error_of::<RedisValue>(&mut anonymous, &["HELLO", "3", "AUTH", "reader", "x"]);
        assert!(
            refused.contains("invalid username-password pair"),
            "{refused}"
        );
        let still_resp2 = cmd::<RedisValue>(&mut anonymous, &["HELLO"]).unwrap();
        assert!(
            matches!(still_resp2, RedisValue::Array(_)),
            "{still_resp2:?}"
        );
        let info: String = cmd(&mut reader, &["INFO"]).unwrap();
        for secret in [PASSWORD, WRITER_PASSWORD, READER_PASSWORD] {
            assert!(!info.contains(secret), "INFO shows a password: {info}");
        }
    }
}

/// Sends `count` wrong AUTHs in one write and checks each is answered WRONGPASS.
fn wrong_auths(stream: &mut TcpStream, count: usize) {
    let mut request = Vec::new();
    for i in 0..count {
        // Every other attempt names a user that does not exist (it may be a mistyped password,
        // which must not reach the log either).
        let attempt = if i % 2 == 0 {
            "AUTH pw-Wrong-0001\r\n".to_string()
        } else {
            "AUTH pw-Wrong-0002 pw-Wrong-0003\r\n".to_string()
        };
        request.extend_from_slice(attempt.as_bytes());
    }
    stream.write_all(&request).unwrap();
    let expected = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
    let mut replies = vec![0; expected.len() * count];
    stream.read_exact(&mut replies).unwrap();
    for reply in replies.chunks(expected.len()) {
        assert_eq!(reply, expected, "{}", String::from_utf8_lossy(reply));
    }
}

#[test]
fn a_flood_of_wrong_passwords_disturbs_no_one_and_is_logged_rarely() {
    const FLOOD: Duration = Duration::from_secs(4);
    let dir = tempfile::tempdir().unwrap();
    let flags = auth_flags(dir.path());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut cluster = ProcCluster::start_kv(3, 1, 1, &flags);
    // Node 1 again, logging everything to a file this test reads.
    cluster.stop(NodeId(1));
    cluster.spec.log_level = "debug".into();
    let log_path = dir.path().join("node-1.log");
    let log = std::fs::File::create(&log_path).unwrap();
    cluster
        .launch_with_stderr(NodeId(1), false, Stdio::from(log))
        .unwrap();
    let addr = cluster.resp_addrs()[0].1;
    let mut client = connect_as(addr, "writer", WRITER_PASSWORD);
    let _: String = retry(&mut client, &["SET", "flood:ready", "1"]);

    let flooder = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let begun = Instant::now();
        let mut attempts = 0;
        while begun.elapsed() < FLOOD {
            wrong_auths(&mut stream, 200);
            attempts += 200;
        }
        attempts
    });
    let begun = Instant::now();
    let (mut operations, mut slowest) = (0u64, Duration::ZERO);
    while begun.elapsed() < FLOOD {
        let started = Instant::now();
        let key = format!("flood:{}", operations % 16);
        let _: String = cmd(&mut client, &["SET", &key, &operations.to_string()])
            .unwrap_or_else(|e| panic!("a write failed during the flood: {e}"));
        let read: String = cmd(&mut client, &["GET", &key]).unwrap();
        assert_eq!(read, operations.to_string());
        slowest = slowest.max(started.elapsed());
        operations += 1;
    }
    let attempts = flooder.join().unwrap();
    eprintln!(
        "{attempts} wrong AUTHs in {FLOOD:?}; meanwhile {operations} SET+GET pairs, the slowest \
         {slowest:?}"
    );
    assert!(
        attempts >= 1000,
        "the flood was too thin to mean anything: {attempts}"
    );
    assert!(
        operations >= 20,
        "the authenticated client barely ran: {operations}"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "a SET+GET took {slowest:?}"
    );
    cluster.stop(NodeId(1));

    let log = std::fs::read_to_string(&log_path).unwrap();
    let reports: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("refused AUTH"))
        .collect();
    assert!(
        (1..=2).contains(&reports.len()),
        "{} reports of {attempts} failures: {reports:#?}",
        reports.len()
    );
    assert!(
        reports
            .iter()
            .any(|line| line.contains(" refused since the last such report")),
        "{reports:?}"
    );
    for secret in [
        PASSWORD,
        WRITER_PASSWORD,
        READER_PASSWORD,
        "pw-Wrong-0001",
        "pw-Wrong-0002",
        "pw-Wrong-0003",
    ] {
        assert!(!log.contains(secret), "the log holds a password ({secret})");
    }
}

fn raw_connection(addr: SocketAddr) -> RespConnection {
    RespConnection::connect(addr, Duration::from_secs(20)).unwrap()
}

/// One request on `con` and its reply.
fn call(con: &mut RespConnection, args: &[&[u8]]) -> Value {
    con.call(args).unwrap()
}

/// A connection to `addr` that proved, as kv node `node`, that it holds the secret in
/// `secret_file`.
fn peer_connection(addr: SocketAddr, secret_file: &Path, node: NodeId) -> RespConnection {
    let mut stream = raw_connection(addr);
    let Value::Bulk(nonce) = call(&mut stream, &[b"RINGRAFT.CHALLENGE"]) else {
        panic!("no nonce");
    };
    let proof = ClusterSecret::from_file(secret_file)
        .unwrap()
        .proof(&nonce, node);
    let id = node.0.to_string();
    assert_eq!(
        call(&mut stream, &[b"RINGRAFT.AUTH", id.as_bytes(), &proof]),
        Value::Simple("OK".into())
    );
    stream
}

fn entry(now_ms: u64, op: Op<'_>) -> Vec<u8> {
    Entry { now_ms, op }.encode().to_vec()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn is_error_containing(value: &Value, text: &str) -> bool {
    matches!(value, Value::Error(error) if error.contains(text))
}

#[test]
fn internal_commands_need_the_cluster_secret() {
    let cluster = ready_cluster(1, &[]);
    let addrs = cluster.resp_addrs();
    let leader = leader_on(&mut connect(addrs[0].1), 0).expect("group 0 has a leader");
    let leader_addr = addrs.iter().find(|(id, _)| *id == leader).unwrap().1;

    // A plain client: refused, and nothing is applied.
    let mut plain = raw_connection(leader_addr);
    let set = entry(
        now_ms(),
        Op::Set(ringraft::kv::op::SetOp {
            key: b"forged",
            value: b"x",
            condition: ringraft::kv::op::Condition::Always,
            expiry: ringraft::kv::op::Expiry::Never,
            return_old: false,
        }),
    );
    let get = entry(now_ms(), Op::Get(b"forged"));
    for args in [
        &[&b"RINGRAFT.PROPOSE"[..], b"0", &set][..],
        &[b"ringraft.read", b"0", b"linearizable", &get],
    ] {
        let refused = call(&mut plain, args);
        assert!(is_error_containing(&refused, "NOPERM"), "{refused:?}");
        assert!(
            is_error_containing(&refused, "internal to the cluster"),
            "{refused:?}"
        );
    }
    // A wrong proof changes nothing either.
    assert!(matches!(
        call(&mut plain, &[b"RINGRAFT.CHALLENGE"]),
        Value::Bulk(_)
    ));
    let wrong = call(&mut plain, &[b"RINGRAFT.AUTH", b"2", &[0; 32]]);
    assert!(
        is_error_containing(&wrong, "cluster secret mismatch"),
        "{wrong:?}"
    );
    let refused = call(&mut plain, &[b"RINGRAFT.PROPOSE", b"0", &set]);
    assert!(is_error_containing(&refused, "NOPERM"), "{refused:?}");
    for &(_, addr) in &addrs {
        let read: Option<String> = cmd(&mut connect(addr), &["GET", "forged"]).unwrap();
        assert_eq!(read, None, "a refused internal command was applied");
    }

    // Writes through every node, followers included, are forwarded and applied.
    for &(id, addr) in &addrs {
        let key = format!("via:{}", id.0);
        assert_eq!(
            cmd::<String>(&mut connect(addr), &["SET", &key, "v"]).unwrap(),
            "OK"
        );
        let read: Option<String> = cmd(&mut connect(leader_addr), &["GET", &key]).unwrap();
        assert_eq!(read.as_deref(), Some("v"));
    }

    // Issue 13, finding 6, now from a connection that proved the secret: an entry stamped ten
    // days ahead is re-stamped, so a key set with a one-hour TTL stays readable.
    const AHEAD_MS: u64 = 10 * 24 * 3_600_000;
    let mut con = connect(addrs[0].1);
    let _: String = retry(&mut con, &["SET", "ttl", "v", "EX", "3600"]);
    let secret_file = cluster
        .cluster_secret_file()
        .expect("kv clusters have a secret");
    let mut peer = peer_connection(leader_addr, secret_file, NodeId(99));
    let forged = entry(now_ms() + AHEAD_MS, Op::Del(vec![b"unrelated"]));
    assert_eq!(
        call(&mut peer, &[b"RINGRAFT.PROPOSE", b"0", &forged]),
        Value::Integer(0)
    );
    let ttl: Option<String> = cmd(&mut con, &["GET", "ttl"]).unwrap();
    assert_eq!(
        ttl.as_deref(),
        Some("v"),
        "the forged clock expired the key"
    );
    let _: String = retry(&mut con, &["SET", "later", "w", "EX", "3600"]);
    let later: Option<String> = cmd(&mut con, &["GET", "later"]).unwrap();
    assert_eq!(
        later.as_deref(),
        Some("w"),
        "a write after the forged entry vanished"
    );
}

#[test]
fn a_node_with_another_secret_cannot_forward_and_says_why_once() {
    let mut cluster = ready_cluster(1, &[]);
    let addrs = cluster.resp_addrs();
    let leader = leader_on(&mut connect(addrs[0].1), 0).expect("group 0 has a leader");
    let odd = addrs
        .iter()
        .map(|(id, _)| *id)
        .find(|&id| id != leader)
        .unwrap();
    let odd_addr = addrs.iter().find(|(id, _)| *id == odd).unwrap().1;
    cluster.stop(odd);
    let secret_file = cluster.cluster_secret_file().unwrap().to_path_buf();
    ClusterSecret::create_file(&secret_file).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("odd.log");
    let log = std::fs::File::create(&log_path).unwrap();
    cluster
        .launch_with_stderr(odd, false, Stdio::from(log))
        .unwrap();
    let mut con = connect(odd_addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        match leader_on(&mut con, 0) {
            Some(known) if known != odd => break known,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("node {odd} knows no other leader: {other:?}"),
        }
    };
    let leader_addr = addrs.iter().find(|(id, _)| *id == leader).unwrap().1;
    for i in 0..20 {
        let key = format!("odd:{i}");
        let refused = error_of::<RedisValue>(&mut con, &["SET", &key, "v"]);
        assert!(
            refused.contains("cluster secrets differ") && refused.contains("was not run"),
            "{refused}"
        );
        let read: Option<String> = cmd(&mut connect(leader_addr), &["GET", &key]).unwrap();
        assert_eq!(read, None, "a refused forward was applied");
    }
    cluster.stop(odd);
    let log = std::fs::read_to_string(&log_path).unwrap();
    let reports = log
        .lines()
        .filter(|line| line.contains("cannot forward commands to kv node"))
        .count();
    assert!((1..=2).contains(&reports), "{reports} reports in:\n{log}");
}
