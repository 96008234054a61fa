//! redis-py (version 8, whose default client speaks RESP3) against a 3-node `ringraft kv`
//! cluster: `tests/redis_py/check.py` runs its checks through every node.
//!
//! `.ci/run` installs redis-py from PyPI into the virtual environment `target/redis-py`. Without
//! that environment the test fails under CI (the `CI` variable set) and otherwise skips with a
//! message saying so.

mod procs;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use procs::output_within;
use procs::resp::ready_cluster;

/// Every check `check.py` makes through each node.
const CHECKS: &[&str] = &[
    "hello-protocol-3",
    "hello-map",
    "set",
    "get",
    "get-missing",
    "incr",
    "incrby",
    "mget",
    "set-nx-refused",
    "delete",
    "config-get",
    "info",
    "pipeline",
    "ttl-ex",
    "ttl-no-deadline",
    "ttl-missing",
    "expire",
    "expire-nx-refused",
    "expire-gt-refused",
    "expire-lt",
    "pexpire-xx",
    "pttl",
    "persist",
    "persist-again",
    "pttl-no-deadline",
    "expire-missing",
    "expired-is-missing",
    "expire-in-the-past-deletes",
    "error-reply",
];

fn venv_python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/redis-py/bin/python")
}

#[test]
fn redis_py_default_client_works_through_every_node() {
    let python = venv_python();
    if !python.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is missing: .ci/run installs redis-py there",
            python.display()
        );
        eprintln!(
            "\n*** SKIPPED redis_py_default_client_works_through_every_node: no redis-py venv at \
             {} (run .ci/run, or: python3 -m venv target/redis-py && \
             target/redis-py/bin/pip install 'redis>=8') ***\n",
            python.display()
        );
        return;
    }
    let cluster = ready_cluster(3, &[]);
    let addrs: Vec<String> = cluster
        .resp_addrs()
        .iter()
        .map(|(_, addr)| addr.to_string())
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/redis_py/check.py");
    let child = Command::new(&python)
        .arg(&script)
        .args(&addrs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the venv's python runs");
    let output = output_within(child, Duration::from_secs(120), "check.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = format!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "check.py failed:\n{report}");
    let version = stdout
        .lines()
        .find_map(|line| line.strip_prefix("redis-py "))
        .unwrap_or_else(|| panic!("no version line:\n{report}"));
    assert!(
        version
            .split('.')
            .next()
            .and_then(|major| major.parse::<u32>().ok())
            >= Some(8),
        "redis-py {version} is older than 8:\n{report}"
    );
    for addr in &addrs {
        for check in CHECKS {
            let line = format!("ok {check} {addr}");
            assert!(
                stdout.lines().any(|l| l == line),
                "missing '{line}':\n{report}"
            );
        }
    }
    assert_eq!(stdout.lines().last(), Some("all checks passed"), "{report}");
}
