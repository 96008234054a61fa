//! `redis-cli` (Debian's redis-tools) against a 3-node `ringraft kv` cluster: the stock client
//! connects, runs commands through every node, and sees what the others wrote.
//!
//! `.ci/run` installs redis-tools. Elsewhere the test installs it with apt-get when it can, and
//! otherwise skips with a message saying so.

mod procs;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use procs::{output_within, ProcCluster};
use ringraft::tls::{generate_cluster_certs, CertValidity};
use ringraft::types::NodeId;

/// Whether `redis-cli` can be run, installing it if needed and possible.
fn have_redis_cli() -> bool {
    let present = || Command::new("redis-cli").arg("--version").output().is_ok();
    if present() {
        return true;
    }
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-qq", "redis-tools"])
        .status()
        .is_ok_and(|status| status.success());
    installed && present()
}

/// `redis-cli -h … -p … args…` with `input` on its standard input (and `password` in
/// `REDISCLI_AUTH`, if any): its trimmed standard output. Killed (and the test failed) after
/// 30 s.
fn redis_cli_full(addr: SocketAddr, password: Option<&str>, args: &[&str], input: &[u8]) -> String {
    let mut command = Command::new("redis-cli");
    if let Some(password) = password {
        command.env("REDISCLI_AUTH", password);
    }
    let mut child = command
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli runs");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input)
        .expect("redis-cli reads its input");
    let output = output_within(
        child,
        Duration::from_secs(30),
        &format!("redis-cli {args:?}"),
    );
    assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_string()
}

fn redis_cli_with_input(addr: SocketAddr, args: &[&str], input: &[u8]) -> String {
    redis_cli_full(addr, None, args, input)
}

fn redis_cli(addr: SocketAddr, args: &[&str]) -> String {
    redis_cli_with_input(addr, args, b"")
}

#[test]
fn redis_cli_talks_to_every_node() {
    if !have_redis_cli() {
        eprintln!(
            "\n*** SKIPPED redis_cli_talks_to_every_node: redis-cli is not installed and \
             `apt-get install redis-tools` failed ***\n"
        );
        return;
    }
    let cluster = ProcCluster::start_kv(3, 1, 2, &[]);
    let addrs = cluster.resp_addrs();
    let deadline = Instant::now() + Duration::from_secs(30);
    while redis_cli(addrs[0].1, &["SET", "ready", "1"]) != "OK" {
        assert!(Instant::now() < deadline, "no leader within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    for (id, addr) in &addrs {
        let key = format!("cli:{}", id.0);
        assert_eq!(redis_cli(*addr, &["PING"]), "PONG");
        assert_eq!(redis_cli(*addr, &["SET", &key, "hello world"]), "OK");
        assert_eq!(redis_cli(*addr, &["APPEND", &key, "!"]), "12");
        assert_eq!(redis_cli(*addr, &["INCRBY", &format!("{key}:n"), "5"]), "5");
        assert_eq!(redis_cli(*addr, &["MSET", "{t}a", "1", "{t}b", "2"]), "OK");
        assert_eq!(redis_cli(*addr, &["MGET", "{t}b", "{t}a"]), "2\n1");
        assert!(redis_cli(*addr, &["NOSUCHCOMMAND"]).contains("unknown command"));
        assert!(redis_cli(*addr, &["INFO"]).contains("group1:role="));
    }
    for (_, addr) in &addrs {
        for (writer, _) in &addrs {
            let key = format!("cli:{}", writer.0);
            assert_eq!(redis_cli(*addr, &["GET", &key]), "hello world!");
        }
        assert_eq!(redis_cli(*addr, &["DBSIZE"]), "9");
    }
    // Commands piped on standard input, as a script would.
    let piped = redis_cli_with_input(addrs[2].1, &[], b"SET piped 1\nINCR piped\nGET piped\n");
    assert_eq!(piped, "OK\n2\n2");
}

#[test]
fn redis_cli_speaks_tls_to_every_node_and_plaintext_gets_nothing() {
    if !have_redis_cli() {
        eprintln!("SKIPPED: redis-cli is not installed and could not be installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["127.0.0.1".to_string(), "localhost".to_string()];
    let nodes: Vec<NodeId> = (1..=3).map(NodeId).collect();
    let certs =
        generate_cluster_certs(dir.path(), &nodes, &hosts, CertValidity::days_from_now(1)).unwrap();
    let cluster = ProcCluster::start_tls(3, true, certs.clone(), &[]);
    let ca = certs.ca().to_string_lossy().to_string();
    let tls = ["--tls", "--cacert", ca.as_str()];
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = [&tls[..], &["SET", "ready", "1"]].concat();
    while redis_cli(cluster.nodes[0].resp_addr, &ready) != "OK" {
        assert!(Instant::now() < deadline, "no leader within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every node takes writes (those at followers are forwarded to the leader over TLS).
    for (i, node) in cluster.nodes.iter().enumerate() {
        let key = format!("tls:{i}");
        let set = [&tls[..], &["SET", key.as_str(), "sealed"]].concat();
        assert_eq!(redis_cli(node.resp_addr, &set), "OK");
    }
    for node in &cluster.nodes {
        let get = [&tls[..], &["MGET", "tls:0", "tls:1", "tls:2"]].concat();
        assert_eq!(redis_cli(node.resp_addr, &get), "sealed\nsealed\nsealed");
    }
    let plain = Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.nodes[0].resp_addr.port().to_string(),
        ])
        .args(["GET", "tls:0"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&plain.stdout).contains("sealed"),
        "{plain:?}"
    );
}

/// The README's Authentication commands, as redis-cli users type them.
#[test]
fn redis_cli_logs_in_as_the_readme_shows() {
    if !have_redis_cli() {
        eprintln!(
            "\n*** SKIPPED redis_cli_logs_in_as_the_readme_shows: redis-cli is not installed and \
             `apt-get install redis-tools` failed ***\n"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "change-me-default\n").unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        "[[users]]\nname = \"app\"\npassword = \"change-me-app\"\naccess = \"read-write\"\n\
         [[users]]\nname = \"reports\"\npassword = \"change-me-reports\"\naccess = \"read-only\"\n",
    )
    .unwrap();
    let (pass, users) = (pass.to_str().unwrap(), users.to_str().unwrap());
    let cluster = ProcCluster::start_kv(
        3,
        1,
        1,
        &["--requirepass-file", pass, "--users-file", users],
    );
    let addrs: Vec<SocketAddr> = cluster.resp_addrs().into_iter().map(|(_, a)| a).collect();
    let default = Some("change-me-default");
    let deadline = Instant::now() + Duration::from_secs(30);
    while redis_cli_full(addrs[0], default, &["SET", "greeting", "hello"], b"") != "OK" {
        assert!(Instant::now() < deadline, "no leader within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        redis_cli(addrs[0], &["GET", "greeting"]),
        "NOAUTH Authentication required."
    );
    let app = Some("change-me-app");
    assert_eq!(
        redis_cli_full(addrs[1], app, &["--user", "app", "INCR", "visits"], b""),
        "1"
    );
    let reports = Some("change-me-reports");
    let as_reports = |args: &[&str]| {
        redis_cli_full(
            addrs[2],
            reports,
            &[&["--user", "reports"][..], args].concat(),
            b"",
        )
    };
    assert_eq!(as_reports(&["GET", "greeting"]), "hello");
    assert_eq!(
        as_reports(&["SET", "greeting", "bye"]),
        "NOPERM User reports has no permissions to run the 'set' command"
    );
    assert_eq!(
        redis_cli_with_input(addrs[1], &[], b"AUTH app change-me-app\nGET visits\n"),
        "OK\n1"
    );
    assert!(redis_cli(addrs[0], &["RINGRAFT.PROPOSE", "0", "x"])
        .starts_with("NOPERM 'ringraft.propose' is internal to the cluster"));
}
