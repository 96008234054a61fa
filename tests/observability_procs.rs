//! Operating real node processes on loopback: the metrics and health endpoint and
//! `ringraft admin --json`.
//!
//! The whole `/metrics` exposition of a 3-node cluster is validated by a strict OpenMetrics
//! parser (the Python `prometheus_client` package's, which `.ci/run` installs), names, types
//! and labels are checked, values move with proposals made through the client, `/readyz`
//! answers 503 while a node of a 3-node cluster runs alone and 200 once the cluster is up,
//! `ringraft kv` counts RESP commands and errors by command (and a snapshot taken), the
//! endpoint's address comes from the flag or the config file, and `admin --json` reports every
//! subcommand's outcome and each group's health.

mod procs;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use procs::{http_get as get, ProcCluster};
use ringraft::client::Client;
use ringraft::types::{GroupId, NodeId};
use serde_json::Value;

/// The parser's Python; `/usr/bin/python3` is where Debian's `python3-prometheus-client` is.
const PYTHON: &str = "/usr/bin/python3";

/// Parses an exposition from stdin with the strict OpenMetrics parser and prints every
/// family as JSON: `{name: {"type": ..., "samples": [[name, labels, value], ...]}}`.
const VALIDATE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
families = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    families[family.name] = {
        "type": family.type,
        "samples": [[s.name, s.labels, s.value] for s in family.samples],
    }
print(json.dumps(families))
"#;

/// Every family of `addr`'s `/metrics`, as the strict parser read it. Panics if the
/// exposition does not parse (or, in CI, if the parser is missing).
fn scrape(addr: SocketAddr) -> Option<Families> {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    let child = Command::new(PYTHON)
        .args(["-c", VALIDATE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        return parser_missing("python3 is missing");
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("No module named 'prometheus_client'") {
        return parser_missing("python3-prometheus-client is missing");
    }
    assert!(
        output.status.success(),
        "the exposition does not parse: {stderr}\n{body}"
    );
    Some(Families(serde_json::from_slice(&output.stdout).unwrap()))
}

fn parser_missing(what: &str) -> Option<Families> {
    assert!(
        std::env::var_os("CI").is_none(),
        "{what}: .ci/run installs it"
    );
    eprintln!("SKIPPED: {what} (apt-get install python3-prometheus-client)");
    None
}

struct Families(BTreeMap<String, Value>);

impl Families {
    fn family(&self, name: &str) -> &Value {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("no family {name}"))
    }

    /// Checks `name`'s type and that every sample carries exactly `labels` (besides a
    /// histogram bucket's `le`).
    fn check(&self, name: &str, kind: &str, labels: &[&str]) {
        let family = self.family(name);
        assert_eq!(family["type"], kind, "type of {name}");
        let samples = family["samples"].as_array().unwrap();
        assert!(!samples.is_empty(), "{name} has no samples");
        for sample in samples {
            let mut keys: Vec<&str> = sample[1]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .filter(|key| *key != "le")
                .collect();
            keys.sort();
            let mut expected = labels.to_vec();
            expected.sort();
            assert_eq!(keys, expected, "labels of {sample}");
        }
    }

    /// The value of sample `sample` whose labels include every one of `labels`.
    fn value(&self, family: &str, sample: &str, labels: &[(&str, &str)]) -> f64 {
        self.family(family)["samples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s[0] == sample && labels.iter().all(|(key, value)| s[1][*key] == *value))
            .unwrap_or_else(|| panic!("no {sample} {labels:?}"))[2]
            .as_f64()
            .unwrap()
    }
}

/// Waits until `/readyz` of every node answers 200.
fn wait_ready(cluster: &ProcCluster, nodes: &[NodeId]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for &id in nodes {
        let addr = cluster.nodes[id.0 as usize - 1].metrics_addr;
        loop {
            let (status, body) = get(addr, "/readyz");
            if status == 200 {
                assert_eq!(body, "ready\n");
                break;
            }
            assert!(Instant::now() < deadline, "{id} not ready: {body}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_cluster_exposes_valid_metrics_that_move_with_proposals() {
    const GROUPS: u32 = 2;
    let cluster = ProcCluster::start(3, 2, GROUPS, &[]);
    let all = [NodeId(1), NodeId(2), NodeId(3)];
    wait_ready(&cluster, &all);
    let metrics_of = |id: NodeId| cluster.nodes[id.0 as usize - 1].metrics_addr;
    let (status, body) = get(metrics_of(NodeId(1)), "/livez");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(get(metrics_of(NodeId(1)), "/nowhere").0, 404);

    let mut client = Client::connect(cluster.client_addrs(), 2, Duration::from_secs(20));
    let leaders: Vec<NodeId> = (0..GROUPS as u64)
        .map(|group| client.leader_of(GroupId(group)).expect("a leader"))
        .collect();
    let Some(before) = scrape(metrics_of(leaders[0])) else {
        return;
    };
    for (family, kind, labels) in [
        ("ringraft_group_role", "gauge", &["group", "role"][..]),
        ("ringraft_group_term", "gauge", &["group"]),
        ("ringraft_group_leader", "gauge", &["group"]),
        ("ringraft_group_commit_index", "gauge", &["group"]),
        ("ringraft_group_applied_index", "gauge", &["group"]),
        ("ringraft_group_last_index", "gauge", &["group"]),
        ("ringraft_group_leader_changes", "counter", &["group"]),
        (
            "ringraft_group_follower_match_index",
            "gauge",
            &["group", "peer"],
        ),
        ("ringraft_shard_up", "gauge", &["shard"]),
        ("ringraft_proposals", "counter", &["shard"]),
        ("ringraft_proposals_failed", "counter", &["shard"]),
        ("ringraft_reads", "counter", &["shard"]),
        ("ringraft_reads_failed", "counter", &["shard"]),
        (
            "ringraft_proposal_duration_seconds",
            "histogram",
            &["shard"],
        ),
        ("ringraft_read_duration_seconds", "histogram", &["shard"]),
        (
            "ringraft_batch_stage_seconds",
            "histogram",
            &["shard", "stage"],
        ),
        ("ringraft_log_flushes", "counter", &["shard"]),
        ("ringraft_log_entries_written", "counter", &["shard"]),
        ("ringraft_log_written_bytes", "counter", &["shard"]),
        ("ringraft_log_flush_entries", "histogram", &["shard"]),
        ("ringraft_log_fdatasync_seconds", "histogram", &["shard"]),
        ("ringraft_log_compactions", "counter", &["shard"]),
        ("ringraft_snapshot_pause_seconds", "histogram", &["shard"]),
        (
            "ringraft_shard_tick_lateness_seconds",
            "histogram",
            &["shard"],
        ),
        ("ringraft_snapshots_created", "counter", &["shard"]),
        ("ringraft_snapshots_installed", "counter", &["shard"]),
        ("ringraft_snapshots_sent", "counter", &["shard"]),
        ("ringraft_session_duplicates", "counter", &["shard"]),
        ("ringraft_peer_connected", "gauge", &["shard", "peer"]),
        ("ringraft_peer_connections", "counter", &["shard", "peer"]),
        ("ringraft_peer_sent_bytes", "counter", &["shard", "peer"]),
        (
            "ringraft_peer_received_bytes",
            "counter",
            &["shard", "peer"],
        ),
    ] {
        before.check(family, kind, labels);
    }
    for shard in ["0", "1"] {
        assert_eq!(
            before.value(
                "ringraft_shard_up",
                "ringraft_shard_up",
                &[("shard", shard)]
            ),
            1.0
        );
    }
    // Every shard's link to each other member comes up (a link may still be dialling when the
    // client has found the leaders: the gauge must get there, not be there at once).
    let links_down = |families: &Families| -> Vec<(&str, u64)> {
        let mut down = Vec::new();
        for shard in ["0", "1"] {
            for peer in (1..=3).filter(|&peer| NodeId(peer) != leaders[0]) {
                let peer_label = peer.to_string();
                let labels = [("shard", shard), ("peer", peer_label.as_str())];
                let connected = "ringraft_peer_connected";
                if families.value(connected, connected, &labels) != 1.0 {
                    down.push((shard, peer));
                }
            }
        }
        down
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut current = scrape(metrics_of(leaders[0])).unwrap();
    while !links_down(&current).is_empty() {
        assert!(
            Instant::now() < deadline,
            "links (shard, peer) not connected after 10 s: {:?}",
            links_down(&current)
        );
        std::thread::sleep(Duration::from_millis(100));
        current = scrape(metrics_of(leaders[0])).unwrap();
    }

    // Proposals through the client: group 0's leader commits them and counts them.
    const PROPOSALS: u64 = 40;
    for round in 0..PROPOSALS {
        client
            .propose(GroupId(0), format!("entry {round}").as_bytes())
            .expect("committed");
    }
    let after = scrape(metrics_of(leaders[0])).unwrap();
    let group0 = [("group", "0")];
    let shard0 = [("shard", "0")];
    let commit = "ringraft_group_commit_index";
    assert!(
        after.value(commit, commit, &group0)
            >= before.value(commit, commit, &group0) + PROPOSALS as f64
    );
    let proposals = |families: &Families| {
        families.value("ringraft_proposals", "ringraft_proposals_total", &shard0)
    };
    assert!(proposals(&after) >= proposals(&before) + PROPOSALS as f64);
    let answered = |families: &Families| {
        let name = "ringraft_proposal_duration_seconds";
        families.value(name, &format!("{name}_count"), &shard0)
    };
    assert!(answered(&after) >= answered(&before) + PROPOSALS as f64);
    let flushes = |families: &Families| {
        families.value(
            "ringraft_log_flushes",
            "ringraft_log_flushes_total",
            &shard0,
        )
    };
    assert!(flushes(&after) > flushes(&before));
    let role = |families: &Families| {
        families.value(
            "ringraft_group_role",
            "ringraft_group_role",
            &[("group", "0"), ("role", "leader")],
        )
    };
    assert_eq!(role(&after), 1.0);
    // A follower's view: the same leader, and it applied what was committed.
    let follower = all.into_iter().find(|id| *id != leaders[0]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let view = scrape(metrics_of(follower)).unwrap();
        let leader = view.value("ringraft_group_leader", "ringraft_group_leader", &group0);
        assert_eq!(leader, leaders[0].0 as f64);
        let changes = "ringraft_group_leader_changes";
        let seen = view.value(changes, &format!("{changes}_total"), &group0);
        assert!(seen >= 1.0, "the follower saw no leader: {seen}");
        let applied = "ringraft_group_applied_index";
        if view.value(applied, applied, &group0) >= after.value(commit, commit, &group0) {
            break;
        }
        assert!(Instant::now() < deadline, "the follower does not catch up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn readyz_fails_while_a_node_runs_alone_and_passes_once_the_cluster_is_up() {
    let mut cluster = ProcCluster::start(3, 1, 1, &[]);
    cluster.stop_all();
    cluster.relaunch(NodeId(1), false);
    let addr = cluster.nodes[0].metrics_addr;
    assert_eq!(get(addr, "/livez"), (200, "ok\n".to_string()));
    // Alone, it never learns a leader: /readyz says so, again and again.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let (status, body) = get(addr, "/readyz");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("group 0 has no known leader"), "{body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    cluster.relaunch(NodeId(2), false);
    cluster.relaunch(NodeId(3), false);
    wait_ready(&cluster, &[NodeId(1), NodeId(2), NodeId(3)]);
}

#[test]
fn kv_nodes_count_resp_commands_and_errors_by_command() {
    let cluster = ProcCluster::start_kv(1, 1, 1, &[]);
    wait_ready(&cluster, &[NodeId(1)]);
    let node = &cluster.nodes[0];
    let client = redis::Client::open(format!("redis://{}/", node.resp_addr)).unwrap();
    let mut connection = client.get_connection().unwrap();
    for round in 0..5 {
        let _: () = redis::cmd("SET")
            .arg(format!("key{round}"))
            .arg("value")
            .query(&mut connection)
            .unwrap();
    }
    let refused: redis::RedisResult<()> = redis::cmd("FLUSHALL").query(&mut connection);
    assert!(refused.is_err());
    let wrong: redis::RedisResult<()> = redis::cmd("GET").query(&mut connection);
    assert!(wrong.is_err());
    let Some(families) = scrape(node.metrics_addr) else {
        return;
    };
    families.check("ringraft_resp_commands", "counter", &["command"]);
    families.check("ringraft_resp_command_errors", "counter", &["command"]);
    let count = |family: &str, command: &str| {
        families.value(family, &format!("{family}_total"), &[("command", command)])
    };
    assert_eq!(count("ringraft_resp_commands", "set"), 5.0);
    assert_eq!(count("ringraft_resp_command_errors", "set"), 0.0);
    assert_eq!(count("ringraft_resp_commands", "unknown"), 1.0);
    assert_eq!(count("ringraft_resp_command_errors", "unknown"), 1.0);
    assert_eq!(count("ringraft_resp_commands", "get"), 1.0);
    assert_eq!(count("ringraft_resp_command_errors", "get"), 1.0);
    // The five SETs went through the node's engine as proposals.
    let shard0 = [("shard", "0")];
    let proposals = families.value("ringraft_proposals", "ringraft_proposals_total", &shard0);
    assert!(proposals >= 5.0);
    // A snapshot taken on request is counted once it is durable.
    let created = |families: &Families| {
        let name = "ringraft_snapshots_created";
        families.value(name, &format!("{name}_total"), &shard0)
    };
    assert_eq!(created(&families), 0.0);
    let mut admin = Client::connect(cluster.client_addrs(), 1, Duration::from_secs(10));
    let index = admin.snapshot(NodeId(1), GroupId(0)).expect("snapshot");
    assert!(index.0 >= 5, "snapshot at {index}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while created(&scrape(node.metrics_addr).unwrap()) < 1.0 {
        assert!(Instant::now() < deadline, "the snapshot is never counted");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_metrics_address_comes_from_the_config_file_and_a_taken_one_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let base = ringraft::procs::free_port_block();
    let (listen, metrics) = (
        format!("127.0.0.1:{base}"),
        format!("127.0.0.1:{}", base + 1),
    );
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "id = 1\nlisten = \"{listen}\"\npeers = \"1={listen}\"\nshards = 1\n\
             metrics_listen = \"{metrics}\"\ninit = true\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut node = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .arg("node")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(node.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert!(
        ready.contains(&format!("metrics on http://{metrics}")),
        "{ready}"
    );
    assert_eq!(get(metrics.parse().unwrap(), "/livez").0, 200);
    let taken = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(["node", "--id", "1", "--peers", "1=127.0.0.1:1", "--listen"])
        .arg(format!("127.0.0.1:{}", base + 2))
        .args(["--data-dir", "/nonexistent", "--metrics-listen", &metrics])
        .output()
        .unwrap();
    assert_eq!(taken.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&taken.stderr);
    assert!(
        stderr.contains(&format!("--metrics-listen {metrics}")),
        "{stderr}"
    );
    ringraft::procs::stop_gracefully(node);
}

/// `ringraft admin --json --node <node's client address> <args>`: exit code and the JSON.
fn admin_json(cluster: &ProcCluster, node: NodeId, args: &[&str]) -> (Option<i32>, Value) {
    let addr = cluster.client_addrs()[node.0 as usize - 1].1.to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(["admin", "--json", "--node", &addr, "--timeout-secs", "20"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (output.status.code(), json)
}

#[test]
fn admin_json_reports_every_command_and_each_groups_health() {
    const GROUPS: u32 = 2;
    let mut cluster = ProcCluster::start(3, 1, GROUPS, &[]);
    wait_ready(&cluster, &[NodeId(1), NodeId(2), NodeId(3)]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let (code, status) = admin_json(&cluster, NodeId(1), &["status"]);
        assert_eq!(code, Some(0), "{status}");
        let groups = status["groups"].as_array().unwrap();
        assert_eq!(groups.len(), GROUPS as usize, "{status}");
        if groups
            .iter()
            .all(|group| group["health"]["healthy"] == true)
        {
            break status;
        }
        assert!(Instant::now() < deadline, "never healthy: {status}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["node"], 1);
    for group in status["groups"].as_array().unwrap() {
        assert_eq!(group["voters"], serde_json::json!([1, 2, 3]), "{group}");
        assert_eq!(group["health"]["leader_known"], true);
        assert_eq!(group["health"]["applied_is_commit"], true);
        let lags = group["health"]["lag"].as_array().unwrap();
        assert_eq!(lags.len(), 3, "{group}");
        assert!(lags.iter().all(|lag| lag["entries"] == 0), "{group}");
        let members = group["members"].as_array().unwrap();
        assert!(members.iter().all(|m| m["view"]["term"].as_u64().is_some()));
    }

    // Leadership of every group to node 2, then a snapshot on node 1.
    let (code, moved) = admin_json(&cluster, NodeId(1), &["transfer-leader", "--to", "2"]);
    assert_eq!(code, Some(0), "{moved}");
    for group in moved["groups"].as_array().unwrap() {
        assert_eq!(group["leader"], 2, "{moved}");
    }
    let (code, snapshots) = admin_json(&cluster, NodeId(1), &["snapshot"]);
    assert_eq!(code, Some(0), "{snapshots}");
    let snapshots = snapshots["groups"].as_array().unwrap();
    assert_eq!(snapshots.len(), GROUPS as usize);
    assert!(snapshots
        .iter()
        .all(|s| s["node"] == 1 && s.get("index").is_some()));

    // With node 3 down its views are unknown: no lag, an error, and the groups degraded.
    cluster.kill(NodeId(3));
    let (code, status) = admin_json(&cluster, NodeId(1), &["status"]);
    assert_eq!(code, Some(0), "{status}");
    for group in status["groups"].as_array().unwrap() {
        assert_eq!(group["health"]["healthy"], false, "{group}");
        let lag = group["health"]["lag"]
            .as_array()
            .unwrap()
            .iter()
            .find(|lag| lag["member"] == 3)
            .unwrap();
        assert!(lag["entries"].is_null(), "{group}");
        let member = group["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == 3)
            .unwrap();
        assert!(
            member["view"].is_null() && member["error"].is_string(),
            "{member}"
        );
    }

    // A refused change is an error document, with exit code 1.
    let (code, refused) = admin_json(&cluster, NodeId(1), &["promote", "--id", "9"]);
    assert_eq!(code, Some(1), "{refused}");
    assert!(refused["error"].is_string(), "{refused}");
}
