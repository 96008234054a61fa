//! The `ringraft` binary as a user runs it: exit codes and messages of `inspect` on real data
//! directories, `sim` sweeps and replays, and wrong flags.

mod log_helpers;

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::process::{Command, Output};

use log_helpers::{batch, block_on, config, record_spans, segment_path};
use ringraft::log::{shard_dir, DiskLog, LogStore};
use ringraft::types::{GroupId, ShardId};

fn ringraft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Asserts that `output` is a usage error (exit code 2) whose message contains `message`.
fn assert_usage_error(output: &Output, message: &str) {
    assert_eq!(output.status.code(), Some(2), "{}", text(output));
    assert!(text(output).contains(message), "{}", text(output));
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A data directory with one shard holding 20 records of group 3.
fn data_dir_with_records() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    let shard = shard_dir(data.path(), ShardId(0));
    let mut log = DiskLog::open(config(&shard, 1 << 20)).unwrap();
    for k in 0..20 {
        log.append(GroupId(3), &batch(GroupId(3), 1 + 2 * k, 2, 1, 0))
            .unwrap();
        block_on(log.sync()).unwrap();
    }
    data
}

#[test]
fn inspect_accepts_a_clean_data_dir_and_names_a_corrupt_record() {
    let data = data_dir_with_records();
    let clean = ringraft(&["inspect", data.path().to_str().unwrap()]);
    assert!(clean.status.success(), "{}", text(&clean));
    assert!(text(&clean).contains("g3"), "{}", text(&clean));

    let shard = shard_dir(data.path(), ShardId(0));
    let first_sequence = ringraft::log::segment::parse_segment_name(
        &std::fs::read_dir(&shard)
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".seg"))
            .min()
            .expect("a segment exists"),
    )
    .unwrap();
    let segment = segment_path(&shard, first_sequence);
    let (middle_offset, _) = record_spans(&segment)[10];
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&segment)
        .unwrap();
    let flip_at = middle_offset + 40;
    file.seek(SeekFrom::Start(flip_at)).unwrap();
    let mut byte = [0u8; 1];
    file.read_exact(&mut byte).unwrap();
    file.seek(SeekFrom::Start(flip_at)).unwrap();
    file.write_all(&[byte[0] ^ 0x10]).unwrap();
    drop(file);

    let corrupt = ringraft(&["inspect", data.path().to_str().unwrap()]);
    assert_eq!(corrupt.status.code(), Some(1), "{}", text(&corrupt));
    let file_name = segment.file_name().unwrap().to_str().unwrap();
    assert!(text(&corrupt).contains(file_name), "{}", text(&corrupt));
}

#[test]
fn inspect_refuses_what_is_not_a_data_dir() {
    let empty = tempfile::tempdir().unwrap();
    let output = ringraft(&["inspect", empty.path().to_str().unwrap()]);
    assert_usage_error(&output, "not a data directory");
    let missing = ringraft(&["inspect", "/nonexistent/ringraft-data"]);
    assert_usage_error(&missing, "No such file");
}

#[test]
fn sim_sweeps_and_replays_a_seed() {
    let sweep = ringraft(&["sim", "--seeds", "20", "--start", "100"]);
    assert!(sweep.status.success(), "{}", text(&sweep));
    assert!(text(&sweep).contains("20 seeds (100..120) passed, 0 violations"));
    let replay = ringraft(&["sim", "--seed", "7", "--nodes", "3", "--trace"]);
    assert!(replay.status.success(), "{}", text(&replay));
    assert!(text(&replay).contains("AppendLog"), "trace shows actions");
}

#[test]
fn wrong_flags_get_a_message_not_a_panic() {
    for args in [
        &["sim", "--seeds", "many"][..],
        &["sim", "--nodes", "0"],
        &["sim", "--trace"],
        &["bogus"],
    ] {
        let output = ringraft(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
        assert!(!text(&output).contains("panicked"), "{args:?}");
    }
}

#[test]
fn node_flags_and_config_files_are_checked_with_clear_messages() {
    let missing = ringraft(&["node", "--listen", "127.0.0.1:1"]);
    assert_usage_error(&missing, "--id is required");

    let dir = tempfile::tempdir().unwrap();
    let bad_peers = ringraft(&[
        "node",
        "--id",
        "1",
        "--listen",
        "127.0.0.1:1",
        "--peers",
        "1=nowhere",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_usage_error(&bad_peers, "'nowhere' is not HOST:PORT");

    let bad_drift = ringraft(&[
        "node",
        "--id",
        "1",
        "--listen",
        "127.0.0.1:1",
        "--peers",
        "1=127.0.0.1:1",
        "--clock-drift-percent",
        "100",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_usage_error(&bad_drift, "--clock-drift-percent must be below 100");

    // The hidden test flags are checked too.
    let small_segments = ringraft(&[
        "node",
        "--id",
        "1",
        "--listen",
        "127.0.0.1:1",
        "--peers",
        "1=127.0.0.1:1",
        "--segment-bytes",
        "1048576",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_usage_error(
        &small_segments,
        "--segment-bytes must be a multiple of 4096 and at least",
    );
    let help = text(&ringraft(&["node", "--help"]));
    assert!(
        !help.contains("--segment-bytes") && !help.contains("--fsync-delay-ms"),
        "{help}"
    );

    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        "id = 1\nlisten = \"127.0.0.1:1\"\ncolour = \"blue\"\n",
    )
    .unwrap();
    let unknown_key = ringraft(&["node", "--config", config.to_str().unwrap()]);
    assert_usage_error(&unknown_key, "colour");

    // A complete file: flags may complete it, and an empty data dir needs --init.
    std::fs::write(
        &config,
        format!(
            "id = 1\nlisten = \"127.0.0.1:1\"\npeers = \"1=127.0.0.1:1\"\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let uninitialised = ringraft(&["node", "--config", config.to_str().unwrap()]);
    assert_eq!(uninitialised.status.code(), Some(1));
    assert!(
        text(&uninitialised).contains("--init"),
        "{}",
        text(&uninitialised)
    );
    assert!(!text(&uninitialised).contains("panicked"));
}

#[test]
fn session_limits_are_checked_by_flag_and_config_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let node = [
        "node",
        "--id",
        "1",
        "--listen",
        "127.0.0.1:1",
        "--peers",
        "1=127.0.0.1:1",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    for (flag, message) in [
        ("--sessions-max", "--sessions-max must be positive"),
        (
            "--session-idle-expiry-ms",
            "--session-idle-expiry-ms must be longer than zero",
        ),
        (
            "--session-saved-bytes-max",
            "--session-saved-bytes-max must be positive",
        ),
    ] {
        let refused = ringraft(&[&node[..], &[flag, "0"]].concat());
        assert_usage_error(&refused, message);
    }

    // The same settings in a config file of `ringraft kv`, reported by their flags.
    let config = dir.path().join("kv.toml");
    std::fs::write(
        &config,
        format!(
            "id = 1\nlisten = \"127.0.0.1:1\"\npeers = \"1=127.0.0.1:1\"\ndata_dir = \"{}\"\n\
             sessions_max = 0\n",
            data.display()
        ),
    )
    .unwrap();
    let kv = [
        "kv",
        "--config",
        config.to_str().unwrap(),
        "--resp-listen",
        "127.0.0.1:3",
        "--resp-peers",
        "1=127.0.0.1:3",
    ];
    let refused = ringraft(&kv);
    assert_usage_error(&refused, "--sessions-max must be positive");
    assert!(
        !data.exists(),
        "a refused configuration created the data directory"
    );
}

#[test]
fn kv_flags_are_checked_with_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let base = [
        "kv",
        "--id",
        "1",
        "--listen",
        "127.0.0.1:1",
        "--peers",
        "1=127.0.0.1:1,2=127.0.0.1:2",
        "--resp-listen",
        "127.0.0.1:3",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let missing_peer = ringraft(&[&base[..], &["--resp-peers", "1=127.0.0.1:3"]].concat());
    assert_usage_error(&missing_peer, "--resp-peers lacks member 2");
    let bad_mode = ringraft(
        &[
            &base[..],
            &[
                "--resp-peers",
                "1=127.0.0.1:3,2=127.0.0.1:4",
                "--read",
                "eventual",
            ],
        ]
        .concat(),
    );
    assert_usage_error(&bad_mode, "linearizable");
    let peers = ["--resp-peers", "1=127.0.0.1:3,2=127.0.0.1:4"];
    let no_secret = ringraft(&[&base[..], &peers].concat());
    assert_usage_error(
        &no_secret,
        "--cluster-secret-file is required when the cluster has more",
    );
    let file = |name: &str, content: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.to_str().unwrap().to_string()
    };
    let short = file("short", "hunter2\n");
    let secret = file("secret", "0123456789abcdef0123456789abcdef\n");
    let users = file(
        "users.toml",
        "[[users]]\nname = \"a\"\npassword = \"hunter2\"\naccess = \"root\"\n",
    );
    let cases: [(&[&str], &str); 4] = [
        (&["--cluster-secret-file", &short], "at least 16"),
        (
            &["--cluster-secret-file", "/nonexistent/secret"],
            "--cluster-secret-file /nonexistent/secret",
        ),
        (
            &[
                "--cluster-secret-file",
                &secret,
                "--requirepass-file",
                "/nonexistent/pass",
            ],
            "--requirepass-file /nonexistent/pass",
        ),
        (
            &["--cluster-secret-file", &secret, "--users-file", &users],
            "unknown variant `root`",
        ),
    ];
    for (flags, expected) in cases {
        let refused = ringraft(&[&base[..], &peers, flags].concat());
        assert_eq!(refused.status.code(), Some(2), "{flags:?}");
        assert!(
            text(&refused).contains(expected),
            "{flags:?}: {}",
            text(&refused)
        );
        assert!(!text(&refused).contains("hunter2"), "{}", text(&refused));
    }
    let uninitialised =
        ringraft(&[&base[..], &peers, &["--cluster-secret-file", &secret]].concat());
    assert_eq!(uninitialised.status.code(), Some(1));
    assert!(
        text(&uninitialised).contains("--init"),
        "{}",
        text(&uninitialised)
    );
}
