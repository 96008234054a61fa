//! A checker for the logs that key-value nodes left on disk after a run, in time linear in
//! the total number of entries.
//!
//! Input: for every node and group, the command entries in index order, the index the log
//! starts after (entries up to it were compacted into a snapshot) and the node's durable
//! commit index (its hard state), plus the acknowledged writes and what the checker must know
//! of the workload ([`WorkloadView`]: how entries decode, which values a client sent, the group of
//! a key). The checker knows no entry format of its own. It reports:
//! - **disagreement**: two nodes whose commit indexes both cover an index hold different
//!   entries (term or payload) there;
//! - **lost write**: an acknowledged SET found in no log although no node compacted its group,
//!   or missing from the log of a node whose commit index covers the index where the other
//!   nodes hold it and whose log has not been compacted past it. A write every node compacted
//!   away is in the snapshots only as the key's value at the snapshot's index, which later
//!   writes may have replaced: the run's final linearizable reads of every key vouch for
//!   those (the report counts them as `compacted`);
//! - **duplicate**: one SET (its value is unique) at two indexes of one log, or at different
//!   indexes in different logs;
//! - **foreign value**: a SET of a value no client sent, and entries that are not SETs of the
//!   workload (or that do not decode as key-value entries at all).

use std::collections::HashMap;

/// What an entry's payload is, as the workload's decoder reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A write of `value` (unique per write) to `key`.
    Write { key: &'a [u8], value: &'a [u8] },
    /// A command that changes nothing (a read through the log).
    Read,
    /// A command the workload does not send, described.
    Unexpected(String),
    /// Bytes that are not an entry of the workload's format.
    Undecodable,
}

/// What the checker must know of the workload.
pub struct WorkloadView<'w> {
    /// Reads an entry's payload.
    pub decode: &'w dyn for<'a> Fn(&'a [u8]) -> Decoded<'a>,
    /// Whether a client sent this write (key, value).
    pub sent: &'w dyn Fn(&[u8], &[u8]) -> bool,
    /// The group a key belongs to.
    pub group_of: &'w dyn Fn(&[u8]) -> u64,
}

/// One command entry of a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub index: u64,
    pub term: u64,
    pub payload: Vec<u8>,
}

/// One group's log on one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupLog {
    pub group: u64,
    /// The index the log starts after: entries up to it are in the node's snapshot.
    pub log_base: u64,
    /// The durable commit index of the node's hard state.
    pub commit: u64,
    /// Command entries in increasing index order (no-op entries left out).
    pub entries: Vec<LogEntry>,
}

/// Every group's log on one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeLogs {
    pub node: u64,
    pub groups: Vec<GroupLog>,
}

/// What the check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogReport {
    pub entries: u64,
    pub acknowledged: usize,
    /// Acknowledged writes found in no log because every log of their group was compacted
    /// past them (see the module docs).
    pub compacted: usize,
    /// At most [`VIOLATIONS_SHOWN`] descriptions.
    pub violations: Vec<String>,
    pub violation_count: u64,
}

/// Violations described in a report (the rest are only counted).
pub const VIOLATIONS_SHOWN: usize = 20;

impl LogReport {
    fn violation(&mut self, text: String) {
        self.violation_count += 1;
        if self.violations.len() < VIOLATIONS_SHOWN {
            self.violations.push(text);
        }
    }
}

/// Where one node holds a SET's value.
struct Placement<'a> {
    node: u64,
    group: u64,
    index: u64,
    key: &'a [u8],
}

/// Checks the logs; see the module documentation.
pub fn check(
    nodes: &[NodeLogs],
    acknowledged: &[(Vec<u8>, Vec<u8>)],
    workload: &WorkloadView<'_>,
) -> LogReport {
    let mut report = LogReport {
        acknowledged: acknowledged.len(),
        ..LogReport::default()
    };
    let mut committed: HashMap<(u64, u64), (u64, &LogEntry)> = HashMap::new();
    let mut placements: HashMap<&[u8], Placement<'_>> = HashMap::new();
    let mut held: HashMap<(u64, &[u8]), (u64, u64)> = HashMap::new();
    let mut commits: HashMap<(u64, u64), u64> = HashMap::new();
    let mut bases: HashMap<(u64, u64), u64> = HashMap::new();
    for node in nodes {
        for log in &node.groups {
            commits.insert((node.node, log.group), log.commit);
            bases.insert((node.node, log.group), log.log_base);
            for entry in &log.entries {
                report.entries += 1;
                if entry.index <= log.commit {
                    match committed.get(&(log.group, entry.index)) {
                        Some((other, held))
                            if held.term != entry.term || held.payload != entry.payload =>
                        {
                            report.violation(format!(
                                "group {} index {}: node {} holds term {} and node {} term {} \
                                 (or other bytes), both committed",
                                log.group, entry.index, other, held.term, node.node, entry.term
                            ))
                        }
                        Some(_) => {}
                        None => {
                            committed.insert((log.group, entry.index), (node.node, entry));
                        }
                    }
                }
                let (key, value) = match (workload.decode)(&entry.payload) {
                    Decoded::Write { key, value } => (key, value),
                    Decoded::Read => continue,
                    Decoded::Unexpected(what) => {
                        report.violation(format!(
                            "node {} group {} index {}: unexpected command {what}",
                            node.node, log.group, entry.index
                        ));
                        continue;
                    }
                    Decoded::Undecodable => {
                        report.violation(format!(
                            "node {} group {} index {}: not a key-value entry",
                            node.node, log.group, entry.index
                        ));
                        continue;
                    }
                };
                if !(workload.sent)(key, value) {
                    report.violation(format!(
                        "node {} group {} index {}: SET {} {} was never sent",
                        node.node,
                        log.group,
                        entry.index,
                        String::from_utf8_lossy(key),
                        String::from_utf8_lossy(value)
                    ));
                }
                held.insert((node.node, value), (log.group, entry.index));
                let here = Placement {
                    node: node.node,
                    group: log.group,
                    index: entry.index,
                    key,
                };
                if let Some(seen) = placements.get(value) {
                    if seen.node == node.node
                        || (seen.group, seen.index, seen.key) != (here.group, here.index, here.key)
                    {
                        report.violation(format!(
                            "SET of {} at group {} index {} on node {} and at group {} \
                             index {} on node {}",
                            String::from_utf8_lossy(value),
                            seen.group,
                            seen.index,
                            seen.node,
                            here.group,
                            here.index,
                            here.node
                        ));
                    }
                } else {
                    placements.insert(value, here);
                }
            }
        }
    }
    for (key, value) in acknowledged {
        let Some(place) = placements.get(value.as_slice()) else {
            let group = (workload.group_of)(key);
            if bases.iter().any(|(&(_, g), &base)| g == group && base > 0) {
                report.compacted += 1;
                continue;
            }
            report.violation(format!(
                "acknowledged SET {} {} is in no log",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(value)
            ));
            continue;
        };
        if place.key != key.as_slice() {
            report.violation(format!(
                "acknowledged SET {} {} is logged for key {}",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(value),
                String::from_utf8_lossy(place.key)
            ));
        }
        for node in nodes {
            let covers = commits
                .get(&(node.node, place.group))
                .is_some_and(|&commit| commit >= place.index)
                && bases
                    .get(&(node.node, place.group))
                    .is_some_and(|&base| base < place.index);
            let holds =
                held.get(&(node.node, value.as_slice())) == Some(&(place.group, place.index));
            if covers && !holds {
                report.violation(format!(
                    "acknowledged SET {} {} (group {} index {}) is missing from node {}, \
                     whose commit covers it",
                    String::from_utf8_lossy(key),
                    String::from_utf8_lossy(value),
                    place.group,
                    place.index,
                    node.node
                ));
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests' entry format: `key=value` is a write, `?` a read.
    fn set(key: &str, value: &str) -> Vec<u8> {
        format!("{key}={value}").into_bytes()
    }

    fn decode(payload: &[u8]) -> Decoded<'_> {
        if payload == b"?" {
            return Decoded::Read;
        }
        match payload.iter().position(|&byte| byte == b'=') {
            Some(at) => Decoded::Write {
                key: &payload[..at],
                value: &payload[at + 1..],
            },
            None => Decoded::Undecodable,
        }
    }

    fn node(id: u64, commit: u64, values: &[(&str, &str)]) -> NodeLogs {
        NodeLogs {
            node: id,
            groups: vec![GroupLog {
                group: 0,
                log_base: 0,
                commit,
                entries: values
                    .iter()
                    .enumerate()
                    .map(|(i, (key, value))| LogEntry {
                        index: i as u64 + 1,
                        term: 1,
                        payload: set(key, value),
                    })
                    .collect(),
            }],
        }
    }

    fn acked(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    fn all_sent(_: &[u8], value: &[u8]) -> bool {
        value.starts_with(b"c")
    }

    fn one_group(_: &[u8]) -> u64 {
        0
    }

    const WORKLOAD: WorkloadView<'static> = WorkloadView {
        decode: &decode,
        sent: &all_sent,
        group_of: &one_group,
    };

    #[test]
    fn a_write_compacted_away_everywhere_is_excused_only_where_compaction_happened() {
        let acknowledged = acked(&[("a", "c1"), ("a", "c2")]);
        let mut nodes = vec![node(1, 2, &[("a", "c2")]), node(2, 2, &[("a", "c2")])];
        // Without compaction, c1 is lost.
        let report = check(&nodes, &acknowledged, &WORKLOAD);
        assert_eq!(report.violation_count, 1, "{:?}", report.violations);
        // Node 2 compacted through index 1: c1 may be in its snapshot, and node 2's log
        // needs to hold nothing at or below its base.
        for node in &mut nodes {
            node.groups[0].entries[0].index = 2;
        }
        nodes[1].groups[0].log_base = 1;
        let report = check(&nodes, &acknowledged, &WORKLOAD);
        assert_eq!(report.violations, Vec::<String>::new());
        assert_eq!(report.compacted, 1);
        // A node whose log was compacted past a write does not have to hold it.
        let nodes = [
            node(1, 1, &[("a", "c1")]),
            NodeLogs {
                node: 2,
                groups: vec![GroupLog {
                    group: 0,
                    log_base: 1,
                    commit: 1,
                    entries: vec![],
                }],
            },
        ];
        let report = check(&nodes, &acked(&[("a", "c1")]), &WORKLOAD);
        assert_eq!(report.violations, Vec::<String>::new());
    }

    #[test]
    fn agreeing_logs_pass_even_when_one_lags() {
        let nodes = [
            node(1, 3, &[("a", "c1"), ("b", "c2"), ("a", "c3")]),
            node(2, 3, &[("a", "c1"), ("b", "c2"), ("a", "c3")]),
            node(3, 1, &[("a", "c1")]),
        ];
        let report = check(&nodes, &acked(&[("a", "c1"), ("a", "c3")]), &WORKLOAD);
        assert_eq!(report.violations, Vec::<String>::new());
        assert_eq!((report.entries, report.acknowledged), (7, 2));
    }

    #[test]
    fn each_kind_of_violation_is_reported() {
        type Case = (Vec<NodeLogs>, Vec<(Vec<u8>, Vec<u8>)>, &'static str);
        let cases: [Case; 5] = [
            (
                vec![node(1, 1, &[("a", "c1")]), node(2, 1, &[("a", "c2")])],
                vec![],
                "both committed",
            ),
            (
                vec![node(1, 1, &[("a", "c1")]), node(2, 1, &[("a", "c1")])],
                acked(&[("a", "c9")]),
                "in no log",
            ),
            (
                vec![node(1, 2, &[("a", "c1"), ("a", "c1")])],
                vec![],
                "at group 0 index 1 on node 1 and at group 0 index 2",
            ),
            (vec![node(1, 1, &[("a", "x1")])], vec![], "never sent"),
            (
                vec![
                    node(1, 2, &[("a", "c1"), ("a", "c2")]),
                    node(2, 2, &[("a", "c1")]),
                ],
                acked(&[("a", "c2")]),
                "missing from node 2",
            ),
        ];
        for (nodes, acknowledged, expected) in cases {
            let report = check(&nodes, &acknowledged, &WORKLOAD);
            assert!(
                report.violations.iter().any(|v| v.contains(expected)),
                "{expected}: {:?}",
                report.violations
            );
        }
        let garbage = NodeLogs {
            node: 1,
            groups: vec![GroupLog {
                group: 0,
                log_base: 0,
                commit: 1,
                entries: vec![LogEntry {
                    index: 1,
                    term: 1,
                    payload: b"no equals sign".to_vec(),
                }],
            }],
        };
        let report = check(&[garbage], &[], &WORKLOAD);
        assert_eq!(report.violation_count, 1, "{:?}", report.violations);
    }
}
