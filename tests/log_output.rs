//! What a node process writes to stderr when it is not a terminal: text lines without ANSI
//! colour escapes, or with `--log-format json` one JSON object per line with a level and a
//! message (also through `ringraft cluster`, which passes the format on). Real processes;
//! stderr goes to a file.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use ringraft::procs::{free_port_block, stop_gracefully};

/// Runs a one-node cluster with `flags` until it is ready and has elected itself, stops it,
/// and returns what it wrote to stderr.
fn node_stderr(flags: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let port = free_port_block();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(["node", "--id", "1", "--listen", &listen, "--shards", "1"])
        .args(["--peers", &format!("1={listen}"), "--init", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(flags)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start a node");
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.contains("ready"), "{ready}");
    // Time to elect itself, which is logged.
    std::thread::sleep(Duration::from_millis(500));
    stop_gracefully(child);
    std::fs::read_to_string(&log).unwrap()
}

#[test]
fn text_logs_to_a_file_have_no_colour_escapes() {
    let text = node_stderr(&[]);
    assert!(text.contains("role changed"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape sequences in a log file:\n{text}"
    );
}

#[test]
fn json_logs_are_one_object_per_line_with_level_and_message() {
    let text = node_stderr(&["--log-format", "json"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3, "{text}");
    let mut messages = Vec::new();
    for line in lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(event["level"].is_string(), "{line}");
        let message = event["fields"]["message"].as_str();
        messages.push(
            message
                .unwrap_or_else(|| panic!("no message: {line}"))
                .to_string(),
        );
    }
    assert!(messages.iter().any(|m| m == "role changed"), "{messages:?}");
}

#[test]
fn a_bad_log_format_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(["node", "--log-format", "xml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--log-format"));
}

#[test]
fn ringraft_cluster_passes_the_log_format_on_and_prints_each_metrics_address() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let base = free_port_block();
    let mut cluster = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(["cluster", "--nodes", "2", "--log-format", "json"])
        .args(["--base-port", &base.to_string(), "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start a cluster");
    let mut lines = BufReader::new(cluster.stdout.take().unwrap()).lines();
    for node in 1..=2 {
        let line = lines.next().unwrap().unwrap();
        let metrics = format!("metrics http://127.0.0.1:{}", base + 220 + node);
        assert!(line.contains(&metrics), "{line}");
    }
    std::thread::sleep(Duration::from_millis(500));
    stop_gracefully(cluster);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.lines().count() >= 4, "{text}");
    for line in text.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(event["level"].is_string(), "{line}");
        assert!(event["fields"]["message"].is_string(), "{line}");
    }
}
