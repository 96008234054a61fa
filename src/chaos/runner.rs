//! One harness run: start the cluster, run the workload while faults from the schedule come
//! and go, heal everything, read every key once more, stop the nodes, and check the history
//! (linearizability) and the logs on disk.
//!
//! Invariants: faults run one at a time on the thread that owns the cluster, and each heals
//! before the next starts; the fault phase ends by the deadline (a fault starts only if the
//! run has time left), and every later phase has its own bound, so a run takes at most its
//! length plus about a minute. A node that exits by itself, fails to restart, or starts on a
//! corrupted log is a violation, as are counter-examples and log-checker findings; so is a
//! node that stops on a full disk with anything but a "no space" error.
//!
//! Disk: every node runs with small segments ([`SEGMENT_BYTES`]); one node, drawn from the
//! seed, keeps its data on a [`Tmpfs`] of its own (mounted before the cluster starts and
//! unmounted when the run ends, also on errors) for the disk-full fault. A run that may not
//! mount one says so once in its summary and leaves that fault out.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::batch::{BatchKind, EntryBatch, SessionEntry};
use crate::chaos::cluster::{ChaosCluster, ClusterSpec, GROUPS};
use crate::chaos::disk;
use crate::chaos::faults::{schedule, Fault, Target};
use crate::chaos::proxy::LinkState;
use crate::chaos::resp_client::RespConnection;
use crate::chaos::tmpfs::Tmpfs;
use crate::chaos::workload::{bound_unknown_writes, value_id, Workload, WorkloadConfig};
use crate::check::linearizability::{self, Action};
use crate::check::logs::{self, Decoded, GroupLog, LogEntry, NodeLogs, WorkloadView};
use crate::kv::hashing::group_of;
use crate::kv::op::{Entry, Op};
use crate::log::{shard_dir, DiskLog, LogConfig, LogStore};
use crate::types::{LogIndex, SessionRequest, ShardId};

/// How a run goes.
#[derive(Clone, Debug)]
pub struct ChaosOptions {
    pub exe: PathBuf,
    pub length: Duration,
    pub seed: u64,
    pub nodes: u64,
    /// Nodes run with `--fsync never`.
    pub no_fsync: bool,
    /// Instead of the schedule: kill -9 every node right after a burst of acknowledged
    /// writes and discard what they wrote during it (a power loss; needs `no_fsync`).
    pub lose_unsynced: bool,
    /// Nodes snapshot every this many applied entries per group (0: never); see
    /// [`SNAPSHOT_ENTRIES`].
    pub snapshot_entries: u64,
}

/// Default snapshot interval of the harness's nodes: small, so that a run of a few minutes
/// snapshots and compacts every group several times (the workload commits a few hundred
/// entries per second).
pub const SNAPSHOT_ENTRIES: u64 = 2_000;

/// What a run did and found.
#[derive(Debug, Default)]
pub struct Summary {
    pub writes_ok: u64,
    pub writes_unknown: u64,
    pub reads: u64,
    pub keys: usize,
    pub log_entries: u64,
    pub faults: BTreeMap<&'static str, u64>,
    pub skipped: Vec<String>,
    pub violations: Vec<String>,
    pub elapsed: Duration,
    pub data_dir: PathBuf,
}

const CLIENTS: u64 = 5;
const KEYS: u64 = 8;
const KEY_EPOCH: Duration = Duration::from_secs(30);
const CALL_TIMEOUT: Duration = Duration::from_millis(1500);
const LEADER_WAIT: Duration = Duration::from_secs(30);
/// `--segment-bytes` of every node.
pub const SEGMENT_BYTES: u64 = 4 << 20;
/// Initial size of the disk-full node's tmpfs (it grows as its log does).
const TMPFS_BYTES: u64 = 64 << 20;
/// Free space the disk-full fault leaves (less than a segment).
const FULL_DISK_LEAVES: u64 = SEGMENT_BYTES / 2;
/// How long the disk-full fault pushes writes before giving up on the node stopping.
const FULL_DISK_WAIT: Duration = Duration::from_secs(12);
/// How often a quiet period checks the tmpfs's headroom.
const HEADROOM_CHECK_EVERY: Duration = Duration::from_millis(100);
/// Size of the values the disk-full fault writes to push the log onto the full disk.
const FILL_VALUE_BYTES: usize = 256 << 10;
/// Keys of those writes (outside the workload's `chaos:` keys, few so the stores stay small).
const FILL_KEY_PREFIX: &str = "chaos-fill:";
const FILL_KEYS: u64 = 8;

/// The value of the disk-full fault's `n`-th write: unique, `FILL_VALUE_BYTES` long.
fn fill_value(n: u64) -> Vec<u8> {
    let mut value = format!("fill-{n}-").into_bytes();
    value.resize(FILL_VALUE_BYTES, b'.');
    value
}

/// `n` of a [`fill_value`].
fn fill_id(value: &[u8]) -> Option<u64> {
    let rest = value.strip_prefix(b"fill-")?;
    let end = rest.iter().position(|&b| b == b'-')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// The fault phase's state. (Fields drop in order: the nodes die before the tmpfs under one
/// of them is unmounted.)
struct Run {
    cluster: ChaosCluster,
    /// The node on a tmpfs and its mount, when mounting was allowed.
    tmpfs: Option<(u64, Tmpfs)>,
    /// Writes the disk-full fault sent so far.
    fills: u64,
    rng: Xoshiro256PlusPlus,
    summary: Summary,
}

impl Run {
    fn violation(&mut self, text: String) {
        eprintln!("chaos: VIOLATION: {text}");
        self.summary.violations.push(text);
    }

    fn restart(&mut self, id: u64) {
        if let Err(problem) = self.cluster.launch(id, false) {
            self.violation(format!("restart: {problem}"));
        }
    }

    fn resolve(&mut self, target: Target) -> u64 {
        match target {
            Target::Node(id) => id,
            Target::Leader => self.cluster.leader().unwrap_or_else(|| {
                let nodes = self.cluster.ids().count() as u64;
                self.rng.random_range(1..=nodes)
            }),
        }
    }

    fn cut_both(&self, a: u64, b: u64, stalling: bool) {
        let state = if stalling {
            LinkState::CutStalling
        } else {
            LinkState::CutResetting
        };
        self.cluster.set_link(a, b, state);
        self.cluster.set_link(b, a, state);
    }

    fn apply(&mut self, fault: &Fault) {
        let ids: Vec<u64> = self.cluster.ids().collect();
        match fault {
            Fault::Kill { target, down } => {
                let id = self.resolve(*target);
                self.cluster.kill(id);
                std::thread::sleep(*down);
                self.restart(id);
            }
            Fault::KillAll { down } => {
                ids.iter().for_each(|&id| self.cluster.kill(id));
                std::thread::sleep(*down);
                ids.iter().for_each(|&id| self.restart(id));
            }
            Fault::PauseLeader { pause } => {
                let id = self.resolve(Target::Leader);
                self.cluster.pause(id);
                std::thread::sleep(*pause);
                self.cluster.resume(id);
            }
            Fault::IsolateLeader { stalling, lasts } => {
                let leader = self.resolve(Target::Leader);
                for &other in ids.iter().filter(|&&id| id != leader) {
                    self.cut_both(leader, other, *stalling);
                }
                std::thread::sleep(*lasts);
            }
            Fault::Split {
                minority,
                stalling,
                lasts,
            } => {
                for &a in minority {
                    for &b in ids.iter().filter(|id| !minority.contains(id)) {
                        self.cut_both(a, b, *stalling);
                    }
                }
                std::thread::sleep(*lasts);
            }
            Fault::OneWay {
                from,
                to,
                stalling,
                lasts,
            } => {
                let state = if *stalling {
                    LinkState::CutStalling
                } else {
                    LinkState::CutResetting
                };
                self.cluster.set_link(*from, *to, state);
                std::thread::sleep(*lasts);
            }
            Fault::Flap { a, b, every, lasts } => {
                let until = Instant::now() + *lasts;
                while Instant::now() < until {
                    self.cluster.reset_link(*a, *b);
                    self.cluster.reset_link(*b, *a);
                    std::thread::sleep(*every);
                }
            }
            Fault::Delay {
                links,
                delay,
                lasts,
            } => {
                for &(a, b) in links {
                    self.cluster.set_delay(a, b, *delay);
                    self.cluster.set_delay(b, a, *delay);
                }
                std::thread::sleep(*lasts);
            }
            Fault::TornTail { node, cut } => self.torn_tail(*node, *cut),
            Fault::BitFlip { node } => self.bit_flip(*node),
            Fault::DiskFull => self.disk_full(),
            Fault::SlowDisk {
                target,
                delay,
                lasts,
                graceful,
            } => {
                let id = self.resolve(*target);
                self.bounce(id, *graceful, Some(*delay));
                std::thread::sleep(*lasts);
                self.bounce(id, *graceful, None);
            }
        }
        self.cluster.heal_links();
    }

    /// Stops node `id` (SIGTERM or kill -9) and starts it with `fsync_delay`.
    fn bounce(&mut self, id: u64, graceful: bool, fsync_delay: Option<Duration>) {
        if graceful {
            self.cluster.stop(id);
        } else {
            self.cluster.kill(id);
        }
        self.cluster.set_fsync_delay(id, fsync_delay);
        self.restart(id);
    }

    /// Fills the tmpfs node's filesystem, pushes large writes through the other nodes until
    /// it stops (or [`FULL_DISK_WAIT`] passes), checks why it stopped, frees the space and
    /// restarts it.
    fn disk_full(&mut self) {
        let Some((node, tmpfs)) = &self.tmpfs else {
            return;
        };
        let node = *node;
        if let Err(error) = tmpfs.fill(FULL_DISK_LEAVES) {
            self.summary
                .skipped
                .push(format!("disk full: fill: {error}"));
            let _ = tmpfs.unfill();
            return;
        }
        let others: Vec<u64> = self.cluster.ids().filter(|&id| id != node).collect();
        let until = Instant::now() + FULL_DISK_WAIT;
        let mut connection: Option<RespConnection> = None;
        let mut status = None;
        let mut turn = 0;
        while Instant::now() < until {
            if let Some(exit) = self.cluster.take_exit(node) {
                status = Some(exit);
                break;
            }
            if connection.is_none() {
                let addr = self.cluster.resp_addr(others[turn % others.len()]);
                turn += 1;
                connection = RespConnection::connect(addr, CALL_TIMEOUT).ok();
            }
            let Some(open) = connection.as_mut() else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            let n = self.fills;
            self.fills += 1;
            let key = format!("{FILL_KEY_PREFIX}{}", n % FILL_KEYS);
            if open
                .call(&[b"SET", key.as_bytes(), &fill_value(n)])
                .is_err()
            {
                connection = None;
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let tmpfs = &self.tmpfs.as_ref().expect("checked").1;
        if let Err(error) = tmpfs.unfill() {
            self.violation(format!("disk full: remove the filler: {error}"));
        }
        // The node comes back to catch up on everything written meanwhile: room first.
        self.keep_headroom();
        match status {
            Some(status) => {
                let tail = self.cluster.log_tail(node);
                if status.code() != Some(1) || !tail.contains("No space left on device") {
                    self.violation(format!(
                        "node {node} stopped on a full disk without a clear error ({status}): {}",
                        tail.trim_end()
                    ));
                }
            }
            None => {
                self.summary.skipped.push(format!(
                    "disk full: node {node} still ran {} s after its disk filled",
                    FULL_DISK_WAIT.as_secs()
                ));
                self.cluster.kill(node);
            }
        }
        self.restart(node);
    }

    /// Lets the workload run without faults for `period`, keeping the tmpfs's headroom all
    /// along: a node catching up after a fault can grow its log faster than one check per
    /// quiet period would follow.
    fn quiet_for(&mut self, period: Duration) {
        let until = Instant::now() + period;
        loop {
            self.keep_headroom();
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(HEADROOM_CHECK_EVERY));
        }
    }

    /// Grows the tmpfs when the log has eaten into its headroom.
    fn keep_headroom(&mut self) {
        if let Some((_, tmpfs)) = &mut self.tmpfs {
            if let Err(error) = tmpfs.keep_headroom() {
                self.summary.skipped.push(format!("grow tmpfs: {error}"));
            }
        }
    }

    /// Unmounts the tmpfs; with `keep`, its files first move to the node's directory on the
    /// real disk.
    fn release_tmpfs(&mut self, keep: bool) {
        let Some((_, tmpfs)) = self.tmpfs.take() else {
            return;
        };
        let path = tmpfs.path().to_path_buf();
        let copy = path.with_extension("copy");
        let copied = keep && tmpfs.copy_out(&copy).is_ok();
        drop(tmpfs);
        if copied {
            let _ = std::fs::remove_dir(&path).and_then(|()| std::fs::rename(&copy, &path));
        }
    }

    fn torn_tail(&mut self, node: u64, cut: usize) {
        self.cluster.kill(node);
        let dir = self.cluster.data_dir(node);
        match disk::tear_tail(&dir, cut) {
            Ok(_) => match crate::log::inspect(&dir) {
                Ok(report) if report.is_clean() => {
                    self.violation(format!("node {node}: inspect missed the torn tail"))
                }
                _ => {}
            },
            Err(problem) => self.summary.skipped.push(format!("torn tail: {problem}")),
        }
        self.restart(node);
    }

    fn bit_flip(&mut self, node: u64) {
        self.cluster.kill(node);
        let dir = self.cluster.data_dir(node);
        if let Err(problem) = disk::flip_bit(&dir, 100) {
            self.summary.skipped.push(format!("bit flip: {problem}"));
            self.restart(node);
            return;
        }
        match self.cluster.launch(node, false) {
            Ok(()) => {
                self.violation(format!("node {node} started on a log with a flipped bit"));
                self.cluster.kill(node);
            }
            Err(refusal) if !refusal.to_lowercase().contains("corrupt") => self.violation(format!(
                "node {node} refused a flipped bit unclearly: {refusal}"
            )),
            Err(_) => {}
        }
        // The operator's way back: wipe the member and let it rejoin empty. (The directory
        // stays: it may be the tmpfs mount point.)
        if let Err(error) = disk::wipe(&dir) {
            self.violation(format!("wipe {}: {error}", dir.display()));
        }
        if let Err(problem) = self.cluster.launch(node, true) {
            self.violation(format!("rejoin after wipe: {problem}"));
        }
    }

    /// The negative control: a burst of acknowledged writes, kill -9 of every node, and the
    /// loss of everything written since the burst began.
    fn lose_unsynced(&mut self, workload: &Workload) {
        std::thread::sleep(Duration::from_secs(3));
        let ids: Vec<u64> = self.cluster.ids().collect();
        let mut marks = Vec::new();
        for &id in &ids {
            match disk::mark_end(&self.cluster.data_dir(id)) {
                Ok(mark) => marks.push((id, mark)),
                Err(problem) => self
                    .summary
                    .skipped
                    .push(format!("mark node {id}: {problem}")),
            }
        }
        let before = workload.acknowledged();
        let until = Instant::now() + Duration::from_secs(10);
        while workload.acknowledged() < before + 200 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        ids.iter().for_each(|&id| self.cluster.kill(id));
        for (id, mark) in &marks {
            if let Err(problem) = disk::lose_after(&self.cluster.data_dir(*id), mark) {
                self.summary
                    .skipped
                    .push(format!("power loss node {id}: {problem}"));
            }
        }
        *self
            .summary
            .faults
            .entry("kill -9 all + power loss")
            .or_default() += 1;
        ids.iter().for_each(|&id| self.restart(id));
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// Every node's logs, read from disk (the nodes must be stopped): per group, its commands in
/// index order. A command batch's entries are commands. A session batch may repeat a request:
/// a forwarding node's retries of it land in the log after it, and the group applies only the
/// first (chaos runs keep the default session limits, far above what they use, so no request
/// is refused for its session); so of each request only the entry at the lowest index any
/// node holds is a command (a log compacted past that index holds none), without its session
/// header.
fn read_logs(cluster: &ChaosCluster, cluster_id: u64) -> Result<Vec<NodeLogs>, String> {
    let mut stored = Vec::new();
    for id in cluster.ids() {
        let dir = shard_dir(&cluster.data_dir(id), ShardId(0));
        let mut config = LogConfig::new(&dir, cluster_id, ShardId(0));
        config.segment_bytes = SEGMENT_BYTES;
        let log = DiskLog::open(config).map_err(|e| format!("node {id} log: {e}"))?;
        let mut groups = Vec::new();
        for group in log.groups() {
            let (first, last) = (log.first_index(group), log.last_index(group));
            let batches = if last >= first {
                log.read(group, first, last)
                    .map_err(|e| format!("node {id} group {}: {e}", group.0))?
            } else {
                Vec::new()
            };
            let commit = log.hard_state(group).commit.0;
            groups.push((group, first.prev().0, commit, batches));
        }
        stored.push((id, groups));
    }
    let mut first_entry_of_request = BTreeMap::new();
    for (_, groups) in &stored {
        for (group, _, _, batches) in groups {
            for (index, request, _) in batches.iter().flat_map(session_requests) {
                let first = first_entry_of_request
                    .entry((*group, request.session(), request.seq()))
                    .or_insert(index);
                *first = index.min(*first);
            }
        }
    }
    let is_first = |group, index, request: &SessionRequest| {
        first_entry_of_request.get(&(group, request.session(), request.seq())) == Some(&index)
    };
    let nodes = stored
        .into_iter()
        .map(|(node, groups)| NodeLogs {
            node,
            groups: groups
                .into_iter()
                .map(|(group, log_base, commit, batches)| GroupLog {
                    group: group.0,
                    log_base,
                    commit,
                    entries: batches
                        .iter()
                        .flat_map(|batch| {
                            commands(batch, |index, request| is_first(group, index, request))
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    Ok(nodes)
}

/// The commands of `batch`: every entry of a command batch; the requests of a session batch
/// that `keep` picks, without their session header.
fn commands<'a>(
    batch: &'a EntryBatch,
    keep: impl Fn(LogIndex, &SessionRequest) -> bool + 'a,
) -> Vec<LogEntry> {
    let entry = |index: LogIndex, command: &[u8]| LogEntry {
        index: index.0,
        term: batch.term().0,
        payload: command.to_vec(),
    };
    match batch.kind() {
        BatchKind::Command => batch
            .payloads()
            .enumerate()
            .map(|(offset, payload)| entry(batch.first_index().plus(offset as u64), payload))
            .collect(),
        BatchKind::Session => session_requests(batch)
            .filter(|(index, request, _)| keep(*index, request))
            .map(|(index, _, command)| entry(index, command))
            .collect(),
        BatchKind::Noop | BatchKind::Config => Vec::new(),
    }
}

/// The requests of a session batch: index, request and command (registrations left out).
fn session_requests(
    batch: &EntryBatch,
) -> impl Iterator<Item = (LogIndex, SessionRequest, &[u8])> + '_ {
    batch
        .payloads()
        .enumerate()
        .filter_map(
            move |(offset, payload)| match SessionEntry::decode(payload) {
                Ok((SessionEntry::Request { request, .. }, command)) => {
                    Some((batch.first_index().plus(offset as u64), request, command))
                }
                _ => None,
            },
        )
}

/// Runs the harness; `Err` when the harness itself could not run.
pub fn run(options: &ChaosOptions) -> Result<Summary, String> {
    let started = Instant::now();
    let root = tempfile::Builder::new()
        .prefix("ringraft-chaos-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    let cluster_id = 0xC4A0_0000_0000 ^ options.seed;
    let spec = ClusterSpec {
        exe: options.exe.clone(),
        nodes: options.nodes,
        cluster_id,
        root: root.path().to_path_buf(),
        no_fsync: options.no_fsync,
        segment_bytes: SEGMENT_BYTES,
        snapshot_entries: options.snapshot_entries,
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(options.seed.rotate_left(17));
    let mut skipped = Vec::new();
    // Dropped (unmounted) on every early return below, after the cluster's nodes died.
    let tmpfs = if options.lose_unsynced {
        None
    } else {
        let node = rng.random_range(1..=options.nodes);
        let dir = root.path().join(format!("node-{node}"));
        match Tmpfs::mount(&dir, TMPFS_BYTES) {
            Ok(mounted) => Some((node, mounted)),
            Err(error) => {
                skipped.push(format!(
                    "disk full: left out (cannot mount a tmpfs for node {node}: {error})"
                ));
                None
            }
        }
    };
    let cluster = ChaosCluster::start(spec)?;
    cluster
        .await_leader(LEADER_WAIT)
        .ok_or("no leader elected at start")?;
    let workload = Workload::start(WorkloadConfig {
        clients: CLIENTS,
        keys: KEYS,
        epoch: KEY_EPOCH,
        call_timeout: CALL_TIMEOUT,
        nodes: cluster.ids().map(|id| cluster.resp_addr(id)).collect(),
        seed: options.seed,
    });
    let mut run = Run {
        cluster,
        tmpfs,
        fills: 0,
        rng,
        summary: Summary {
            skipped,
            ..Summary::default()
        },
    };
    let deadline = started + options.length;
    if options.lose_unsynced {
        run.lose_unsynced(&workload);
    } else {
        std::thread::sleep(Duration::from_secs(2));
        for scheduled in schedule(options.seed, options.nodes) {
            if Instant::now() + scheduled.quiet + scheduled.fault.longest() > deadline {
                break;
            }
            if scheduled.fault == Fault::DiskFull && run.tmpfs.is_none() {
                continue; // Left out (said once at the start).
            }
            run.apply(&scheduled.fault);
            *run.summary
                .faults
                .entry(scheduled.fault.kind())
                .or_default() += 1;
            while let Some(exit) = run.cluster.exited() {
                run.violation(exit);
            }
            run.quiet_for(scheduled.quiet);
        }
        // The workload runs on, fault-free, until the run's length is up.
        run.quiet_for(deadline.saturating_duration_since(Instant::now()));
    }

    // Heal: every link up, every node running, a leader, then the final reads.
    run.cluster.heal_links();
    let ids: Vec<u64> = run.cluster.ids().collect();
    for &id in &ids {
        run.cluster.resume(id);
        if !run.cluster.is_up(id) {
            run.restart(id);
        }
    }
    if run.cluster.await_leader(LEADER_WAIT).is_none() {
        run.violation("no leader after healing".into());
    }
    std::thread::sleep(Duration::from_secs(2));
    let history = workload.finish(Duration::from_secs(20));
    while let Some(exit) = run.cluster.exited() {
        run.violation(exit);
    }
    ids.iter().for_each(|&id| run.cluster.stop(id));

    let summary = &mut run.summary;
    for op in &history.operations {
        match (&op.action, op.completed) {
            (Action::Write(_), Some(_)) => summary.writes_ok += 1,
            (Action::Write(_), None) => summary.writes_unknown += 1,
            _ => summary.reads += 1,
        }
    }
    summary.keys = history.keys.len();
    let report = linearizability::check(&bound_unknown_writes(&history.operations));
    for example in &report.counter_examples {
        summary
            .violations
            .push(format!("linearizability: {example}"));
    }
    let sent: HashSet<u64> = history
        .operations
        .iter()
        .filter_map(|op| match op.action {
            Action::Write(id) => Some(id),
            _ => None,
        })
        .collect();
    let logs = read_logs(&run.cluster, cluster_id)?;
    let fills = run.fills;
    let was_sent = |key: &[u8], value: &[u8]| {
        if key.starts_with(FILL_KEY_PREFIX.as_bytes()) {
            return fill_id(value).is_some_and(|n| n < fills);
        }
        key.starts_with(b"chaos:") && value_id(value).is_some_and(|id| sent.contains(&id))
    };
    let workload = WorkloadView {
        decode: &decode_kv_entry,
        sent: &was_sent,
        group_of: &|key| group_of(key, GROUPS).0,
    };
    let log_report = logs::check(&logs, &history.acknowledged, &workload);
    summary.log_entries = log_report.entries;
    for violation in log_report.violations {
        summary.violations.push(format!("logs: {violation}"));
    }
    if log_report.violation_count > logs::VIOLATIONS_SHOWN as u64 {
        summary.violations.push(format!(
            "logs: {} more violations",
            log_report.violation_count - logs::VIOLATIONS_SHOWN as u64
        ));
    }
    summary.elapsed = started.elapsed();
    summary.data_dir = root.path().to_path_buf();
    let keep = !summary.violations.is_empty();
    run.release_tmpfs(keep);
    if keep {
        let _ = root.keep();
    }
    Ok(run.summary)
}

/// Reads a key-value entry for the log checker: a SET is the workload's write.
fn decode_kv_entry(payload: &[u8]) -> Decoded<'_> {
    match Entry::decode(payload).map(|entry| entry.op) {
        Ok(Op::Set(set)) => Decoded::Write {
            key: set.key,
            value: set.value,
        },
        Ok(other) if other.is_read() => Decoded::Read,
        Ok(other) => Decoded::Unexpected(format!("{other:?}")),
        Err(_) => Decoded::Undecodable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_values_are_unique_sized_and_recognised() {
        let (a, b) = (fill_value(7), fill_value(70));
        assert_eq!(a.len(), FILL_VALUE_BYTES);
        assert_ne!(a, b);
        assert_eq!(fill_id(&a), Some(7));
        assert_eq!(fill_id(&b), Some(70));
        assert_eq!(fill_id(b"c1-5"), None);
        assert_eq!(fill_id(b"fill-x-"), None);
    }
}
