//! Random sequences of append / truncate / compact / sync / reopen / crash against a simple
//! model, on the disk log (tiny segments, so rolls and segment deletion happen) and the
//! in-memory log.

mod log_helpers;

use std::collections::BTreeMap;

use log_helpers::{batch, payload, DiskFixture, Fixture, MemFixture};
use proptest::prelude::*;
use ringraft::log::LogStore;
use ringraft::types::{GroupId, HardState, LogIndex, NodeId, Term};

#[derive(Clone, Debug)]
enum Op {
    Append { g: u8, n: u8, bump: bool },
    Truncate { g: u8, back: u8 },
    Compact { g: u8, keep: u8 },
    Snapshot { g: u8, ahead: u8 },
    Hard { g: u8, term: u8 },
    Sync,
    Reopen,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..3u8, 1..6u8, any::<bool>()).prop_map(|(g, n, bump)| Op::Append { g, n, bump }),
        2 => (0..3u8, 0..8u8).prop_map(|(g, back)| Op::Truncate { g, back }),
        2 => (0..3u8, 0..12u8).prop_map(|(g, keep)| Op::Compact { g, keep }),
        1 => (0..3u8, 0..4u8).prop_map(|(g, ahead)| Op::Snapshot { g, ahead }),
        1 => (0..3u8, 0..20u8).prop_map(|(g, term)| Op::Hard { g, term }),
        4 => Just(Op::Sync),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

#[derive(Clone, Debug)]
struct ModelGroup {
    first: u64,
    prev_term: u64,
    /// (term, salt) of entries `first..`.
    entries: Vec<(u64, u64)>,
}

impl Default for ModelGroup {
    fn default() -> Self {
        ModelGroup {
            first: 1,
            prev_term: 0,
            entries: Vec::new(),
        }
    }
}

impl ModelGroup {
    fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }
    fn last_term(&self) -> u64 {
        self.entries.last().map_or(self.prev_term, |e| e.0)
    }
    fn term_at(&self, i: u64) -> u64 {
        if i + 1 == self.first {
            self.prev_term
        } else {
            self.entries[(i - self.first) as usize].0
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Model {
    groups: BTreeMap<u8, ModelGroup>,
    hard: BTreeMap<u8, HardState>,
}

struct Run<F: Fixture> {
    fixture: F,
    live: Model,
    durable: Model,
}

impl<F: Fixture> Run<F> {
    fn apply(&mut self, op: &Op, salt: u64) {
        match *op {
            Op::Append { g, n, bump } => {
                let m = self.live.groups.entry(g).or_default();
                let term = m.last_term().max(1) + u64::from(bump);
                let first = m.last() + 1;
                let b = batch(GroupId(g.into()), first, n.into(), term, salt);
                self.fixture.log().append(GroupId(g.into()), &b).unwrap();
                m.entries.extend((0..n).map(|_| (term, salt)));
            }
            Op::Truncate { g, back } => {
                let m = self.live.groups.entry(g).or_default();
                let from = (m.last() + 1).saturating_sub(back.into());
                if from < m.first {
                    return;
                }
                self.fixture
                    .log()
                    .truncate(GroupId(g.into()), LogIndex(from))
                    .unwrap();
                m.entries.truncate((from - m.first) as usize);
            }
            Op::Compact { g, keep } => {
                let m = self.live.groups.entry(g).or_default();
                let through = m.last().min(m.first - 1 + u64::from(keep));
                if through < m.first {
                    return;
                }
                let term = m.term_at(through);
                self.fixture
                    .log()
                    .compact(GroupId(g.into()), LogIndex(through), Term(term))
                    .unwrap();
                m.entries.drain(..(through + 1 - m.first) as usize);
                m.first = through + 1;
                m.prev_term = term;
            }
            Op::Snapshot { g, ahead } => {
                let m = self.live.groups.entry(g).or_default();
                let through = m.last() + u64::from(ahead);
                if through == 0 {
                    return;
                }
                let term = m.last_term().max(1);
                if through < m.first {
                    return;
                }
                self.fixture
                    .log()
                    .compact(GroupId(g.into()), LogIndex(through), Term(term))
                    .unwrap();
                m.entries.clear();
                m.first = through + 1;
                m.prev_term = term;
            }
            Op::Hard { g, term } => {
                let state = HardState {
                    term: Term(term.into()),
                    vote: (term % 3 == 0).then_some(NodeId(g.into())),
                    commit: LogIndex(salt),
                };
                self.fixture
                    .log()
                    .save_hard_state(GroupId(g.into()), state)
                    .unwrap();
                self.live.hard.insert(g, state);
            }
            Op::Sync => {
                let report = self.fixture.sync();
                for (group, position) in report.log {
                    let m = &self.live.groups[&(group.0 as u8)];
                    assert_eq!(position.index.0, m.last());
                    assert_eq!(position.term.0, m.last_term());
                }
                self.durable = self.live.clone();
            }
            Op::Reopen => {
                self.fixture.sync();
                self.durable = self.live.clone();
                self.fixture.reopen();
            }
            Op::Crash => {
                self.fixture.reopen();
                self.live = self.durable.clone();
            }
        }
    }

    fn check(&mut self) {
        let log = self.fixture.log();
        for (&g, m) in &self.live.groups {
            let group = GroupId(g.into());
            assert_eq!(log.first_index(group).0, m.first, "first index of {group}");
            assert_eq!(log.last_index(group).0, m.last(), "last index of {group}");
            if m.first > 1 {
                assert_eq!(
                    log.term_at(group, LogIndex(m.first - 1)),
                    Some(Term(m.prev_term))
                );
            }
            let mut index = m.first;
            for b in log
                .read(group, LogIndex(m.first), LogIndex(m.last()))
                .unwrap()
            {
                for p in b.payloads() {
                    let (term, salt) = m.entries[(index - m.first) as usize];
                    assert_eq!(b.term().0, term, "term of {group} {index}");
                    assert_eq!(p, payload(group, index, Term(term), salt).as_slice());
                    index += 1;
                }
            }
            assert_eq!(index, m.last() + 1);
        }
        for (&g, state) in &self.live.hard {
            assert_eq!(log.hard_state(GroupId(g.into())), *state);
        }
    }
}

fn run<F: Fixture>(fixture: F, ops: &[Op]) {
    let mut run = Run {
        fixture,
        live: Model::default(),
        durable: Model::default(),
    };
    for (salt, op) in ops.iter().enumerate() {
        run.apply(op, salt as u64);
        run.check();
    }
    run.apply(&Op::Reopen, 0);
    run.check();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn disk_log_matches_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(DiskFixture::new(4096), &ops);
    }

    #[test]
    fn mem_log_matches_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(MemFixture::new(), &ops);
    }
}
