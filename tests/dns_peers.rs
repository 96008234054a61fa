//! Members named by host name: `--peers` and `--resp-peers` given as `localhost:PORT` are
//! looked up when a connection is made, and a cluster so configured elects, replicates and
//! forwards like one given IP addresses. A name that cannot be a host name is a usage error.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringraft::procs::free_port_block;

struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One RESP command on a fresh connection; the raw reply (empty on a connection error).
fn resp(port: u16, args: &[&str]) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    if stream.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let mut reply = vec![0u8; 512];
    let read = stream.read(&mut reply).unwrap_or(0);
    String::from_utf8_lossy(&reply[..read]).into_owned()
}

#[test]
fn a_cluster_whose_members_are_named_by_host_name_replicates_and_forwards() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "a cluster secret of enough length, 32+ bytes").unwrap();
    let base = free_port_block();
    let peer = |i: u16| base + 20 * i;
    let resp_port = |i: u16| base + 200 + i;
    let peers = (1..=3)
        .map(|i| format!("{i}=localhost:{}", peer(i)))
        .collect::<Vec<_>>()
        .join(",");
    let resp_peers = (1..=3)
        .map(|i| format!("{i}=localhost:{}", resp_port(i)))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes = Nodes(Vec::new());
    for i in 1..=3u16 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringraft"))
            .args(["kv", "--id", &i.to_string(), "--init", "--shards", "1"])
            .args(["--listen", &format!("127.0.0.1:{}", peer(i))])
            .args(["--peers", &peers])
            .args(["--resp-listen", &format!("127.0.0.1:{}", resp_port(i))])
            .args(["--resp-peers", &resp_peers])
            .arg("--cluster-secret-file")
            .arg(&secret)
            .arg("--data-dir")
            .arg(dir.path().join(format!("node-{i}")))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert!(ready.contains("ready"), "{ready}");
        nodes.0.push(child);
    }
    // Every node takes a write (followers forward to the leader through its host name).
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 1..=3u16 {
        let key = format!("named:{i}");
        while resp(resp_port(i), &["SET", &key, "v"]) != "+OK\r\n" {
            assert!(
                Instant::now() < deadline,
                "node {i} took no write within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    for i in 1..=3u16 {
        assert_eq!(
            resp(resp_port(i), &["MGET", "named:1", "named:2", "named:3"]),
            "*3\r\n$1\r\nv\r\n$1\r\nv\r\n$1\r\nv\r\n"
        );
    }
}

#[test]
fn a_peer_address_that_is_no_host_name_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(["node", "--id", "1", "--listen", "127.0.0.1:1"])
        .args(["--peers", "1=127.0.0.1:1,2=bad_name!:7000"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad_name!"), "{stderr}");
}
