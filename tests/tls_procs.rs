//! TLS on real node processes over loopback: members authenticate each other by certificate,
//! clients speak TLS to the client and RESP ports, and whatever fails a handshake (a plaintext
//! client, a stranger's certificate, an expired one, a certificate naming another member) is
//! refused without disturbing anyone else.

mod procs;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use procs::ProcCluster;
use ringraft::client::Client;
use ringraft::constants::PROTOCOL_VERSION;
use ringraft::net::{FrameDecoder, HandshakeError, Hello, HelloReply};
use ringraft::procs::free_port_block;
use ringraft::tls::{generate_cluster_certs, CertAuthority, CertValidity, ClientTls, ClusterCerts};
use ringraft::types::{GroupId, NodeId, ShardId};

const HOSTS: [&str; 2] = ["127.0.0.1", "localhost"];

fn hosts() -> Vec<String> {
    HOSTS.iter().map(|host| host.to_string()).collect()
}

fn nodes(count: u64) -> Vec<NodeId> {
    (1..=count).map(NodeId).collect()
}

fn three_node_certs(dir: &Path) -> ClusterCerts {
    generate_cluster_certs(dir, &nodes(3), &hosts(), CertValidity::days_from_now(1)).unwrap()
}

fn tls_client(cluster: &ProcCluster, tls: ClientTls, deadline: Duration) -> Client {
    Client::connect(cluster.client_addrs(), 1, deadline).with_tls(tls)
}

#[test]
fn a_tls_cluster_commits_for_tls_clients_and_turns_plaintext_ones_away() {
    let dir = tempfile::tempdir().unwrap();
    let certs = three_node_certs(dir.path());
    let cluster = ProcCluster::start_tls(3, false, certs.clone(), &[]);
    let tls = ClientTls::load(&certs.ca(), None).unwrap();
    let mut client = tls_client(&cluster, tls.clone(), Duration::from_secs(20));
    let first = client
        .propose(GroupId(0), b"over tls")
        .expect("TLS proposal commits");

    // A plaintext client on the same ports gets nowhere.
    let mut plain = Client::connect(cluster.client_addrs(), 1, Duration::from_secs(2));
    assert!(plain.propose(GroupId(0), b"in the clear").is_err());

    // A client that trusts another CA refuses the nodes.
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = three_node_certs(stranger_dir.path());
    let mut fooled = tls_client(
        &cluster,
        ClientTls::load(&stranger.ca(), None).unwrap(),
        Duration::from_secs(2),
    );
    assert!(fooled.propose(GroupId(0), b"to an impostor").is_err());

    // The cluster kept working for the TLS client all along.
    let second = client.propose(GroupId(0), b"still over tls").unwrap();
    assert!(second.index > first.index);

    // `ringraft admin` speaks TLS when told which node it reaches.
    let admin = |tls: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ringraft"))
            .args(["admin", "--node", &cluster.nodes[0].client_addr.to_string()])
            .args(["--timeout-secs", "5"])
            .args(tls)
            .arg("status")
            .output()
            .unwrap()
    };
    let ca = certs.ca().to_string_lossy().to_string();
    let status = admin(&["--tls-ca", &ca, "--node-id", "1"]);
    assert!(status.status.success(), "{status:?}");
    assert!(
        !admin(&[]).status.success(),
        "plaintext admin got an answer"
    );
}

#[test]
fn required_client_certificates_refuse_clients_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let certs = three_node_certs(dir.path());
    let cluster = ProcCluster::start_tls(3, false, certs.clone(), &["--client-certs", "required"]);
    let (cert, key) = certs.client();
    let with_cert = ClientTls::load(&certs.ca(), Some((&cert, &key))).unwrap();
    let mut client = tls_client(&cluster, with_cert, Duration::from_secs(20));
    client
        .propose(GroupId(0), b"certified")
        .expect("a certified client is served");
    let without_cert = ClientTls::load(&certs.ca(), None).unwrap();
    let mut anonymous = tls_client(&cluster, without_cert, Duration::from_secs(2));
    assert!(anonymous.propose(GroupId(0), b"anonymous").is_err());
}

/// Opens a TLS connection to node 1's peer port presenting `cert`/`key`, says hello as
/// `claimed`, and returns the node's answer (`None` when the connection fails instead).
fn peer_hello(
    cluster: &ProcCluster,
    ca: &Path,
    (cert, key): (&Path, &Path),
    claimed: NodeId,
) -> Option<HelloReply> {
    let tls = ClientTls::load(ca, Some((cert, key))).unwrap();
    let stream = TcpStream::connect(cluster.nodes[0].peer_addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut stream = tls.connect_blocking(stream, NodeId(1)).ok()?;
    let hello = Hello {
        cluster_id: cluster.cluster_id(),
        node_id: claimed,
        shard: ShardId(0),
        shard_count: 1,
        protocol_version: PROTOCOL_VERSION,
    };
    let mut out = Vec::new();
    hello.encode(&mut out);
    stream.write_all(&out).ok()?;
    let mut decoder = FrameDecoder::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Ok(Some(frame)) = decoder.next_frame() {
            return HelloReply::decode(&frame).ok();
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(read) => decoder.push(&buf[..read]),
        }
    }
}

#[test]
fn peers_must_hold_a_certificate_of_the_cluster_naming_the_member_they_claim() {
    let dir = tempfile::tempdir().unwrap();
    let authority = CertAuthority::new(CertValidity::days_from_now(1)).unwrap();
    let certs = authority
        .write_cluster(
            dir.path(),
            &nodes(3),
            &hosts(),
            CertValidity::days_from_now(1),
        )
        .unwrap();
    let cluster = ProcCluster::start_tls(3, false, certs.clone(), &[]);
    let node2 = certs.node(NodeId(2));
    let node2_files = (node2.cert.as_path(), node2.key.as_path());

    // Node 2's certificate is accepted for node 2 ...
    assert!(matches!(
        peer_hello(&cluster, &certs.ca(), node2_files, NodeId(2)),
        Some(HelloReply::Accepted(_))
    ));
    // ... but it cannot pass for node 3.
    assert_eq!(
        peer_hello(&cluster, &certs.ca(), node2_files, NodeId(3)),
        Some(HelloReply::Rejected(HandshakeError::NotCertified {
            node: NodeId(3)
        }))
    );

    // A client certificate of the same CA names no member.
    let (client_cert, client_key) = certs.client();
    assert_eq!(
        peer_hello(
            &cluster,
            &certs.ca(),
            (&client_cert, &client_key),
            NodeId(2)
        ),
        Some(HelloReply::Rejected(HandshakeError::NotCertified {
            node: NodeId(2)
        }))
    );

    // A certificate for node 2 from another CA gets no answer at all.
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = three_node_certs(stranger_dir.path()).node(NodeId(2));
    assert_eq!(
        peer_hello(
            &cluster,
            &certs.ca(),
            (&stranger.cert, &stranger.key),
            NodeId(2)
        ),
        None
    );

    // Nor does an expired certificate for node 2 from the right CA.
    let now = SystemTime::now();
    let expired = CertValidity {
        not_before: now - Duration::from_secs(10 * 86_400),
        not_after: now - Duration::from_secs(86_400),
    };
    let (expired_cert, expired_key) = (dir.path().join("old.pem"), dir.path().join("old-key.pem"));
    authority
        .issue_node(NodeId(2), &hosts(), expired)
        .unwrap()
        .write(&expired_cert, &expired_key)
        .unwrap();
    assert_eq!(
        peer_hello(
            &cluster,
            &certs.ca(),
            (&expired_cert, &expired_key),
            NodeId(2)
        ),
        None
    );

    // The members themselves still replicate.
    let tls = ClientTls::load(&certs.ca(), None).unwrap();
    tls_client(&cluster, tls, Duration::from_secs(20))
        .propose(GroupId(0), b"after the impostors")
        .expect("the cluster still commits");
}

#[test]
fn a_node_refuses_to_start_with_a_certificate_for_another_member() {
    let dir = tempfile::tempdir().unwrap();
    let certs = three_node_certs(dir.path());
    let node2 = certs.node(NodeId(2));
    let output = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(["node", "--id", "1", "--listen", "127.0.0.1:1"])
        .args(["--peers", "1=127.0.0.1:1"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(&node2.cert)
        .arg("--tls-key")
        .arg(&node2.key)
        .arg("--tls-ca")
        .arg(&node2.ca)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("does not name node 1") && stderr.contains("node-1.ringraft"),
        "{stderr}"
    );
}

/// Starts a one-node cluster with TLS on every port and its stderr in `log`; returns its
/// client address once it is ready.
fn single_tls_node(
    dir: &Path,
    certs: &ClusterCerts,
    log: &Path,
) -> (std::process::Child, SocketAddr) {
    let base = free_port_block();
    let (peer, client) = (
        SocketAddr::from(([127, 0, 0, 1], base)),
        SocketAddr::from(([127, 0, 0, 1], base + 10)),
    );
    let files = certs.node(NodeId(1));
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(["node", "--id", "1", "--init", "--shards", "1"])
        .args(["--listen", &peer.to_string()])
        .args(["--client-listen", &client.to_string()])
        .args(["--peers", &format!("1={peer}")])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--tls-cert")
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        .arg("--tls-ca")
        .arg(&files.ca)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut stdout, &mut ready).unwrap();
    assert!(ready.contains("ready"), "{ready}");
    (child, client)
}

#[test]
fn a_flood_of_plaintext_connections_is_logged_a_few_times_and_disturbs_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let certs = generate_cluster_certs(
        dir.path(),
        &nodes(1),
        &hosts(),
        CertValidity::days_from_now(1),
    )
    .unwrap();
    let log: PathBuf = dir.path().join("node.log");
    let (mut child, client_addr) = single_tls_node(dir.path(), &certs, &log);
    let tls = ClientTls::load(&certs.ca(), None).unwrap();
    let mut client =
        Client::connect(vec![(NodeId(1), client_addr)], 1, Duration::from_secs(20)).with_tls(tls);
    client.propose(GroupId(0), b"before").unwrap();
    for _ in 0..200 {
        let mut plain = TcpStream::connect(client_addr).unwrap();
        let _ = plain.write_all(b"*1\r\n$4\r\nPING\r\n");
        let _ = plain.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = plain.read(&mut [0u8; 64]);
        client
            .propose(GroupId(0), b"during")
            .expect("a TLS client is served during the flood");
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines = text
        .lines()
        .filter(|line| line.contains("TLS handshake failed"))
        .count();
    assert!(
        (1..=3).contains(&lines),
        "{lines} log lines for 200 failed handshakes:\n{text}"
    );
}
