//! The fault schedule: a list of faults drawn from a seed, each with its own duration and the
//! quiet gap that follows it.
//!
//! Invariants: the schedule is a pure function of (seed, nodes, length), so a seed replays the
//! same sequence of faults (which node is "the leader" is decided when the fault starts);
//! every fault lasts a bounded time and is healed before the next one starts; node choices are
//! node ids in `1..=nodes`; a split puts a strict minority on one side.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Which node a process fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Leader,
    Node(u64),
}

/// One fault and its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// kill -9, restart after `down`.
    Kill { target: Target, down: Duration },
    /// kill -9 of every node at once, restart after `down`.
    KillAll { down: Duration },
    /// SIGSTOP of the leader for `pause` (longer than an election timeout), then SIGCONT.
    PauseLeader { pause: Duration },
    /// Every link to and from the leader cut.
    IsolateLeader { stalling: bool, lasts: Duration },
    /// The nodes of `minority` cut from the others, both ways.
    Split {
        minority: Vec<u64>,
        stalling: bool,
        lasts: Duration,
    },
    /// The link `from → to` cut (only that direction).
    OneWay {
        from: u64,
        to: u64,
        stalling: bool,
        lasts: Duration,
    },
    /// The connections of both directions between `a` and `b` reset every `every`.
    Flap {
        a: u64,
        b: u64,
        every: Duration,
        lasts: Duration,
    },
    /// `delay` added to both directions of each listed link.
    Delay {
        links: Vec<(u64, u64)>,
        delay: Duration,
        lasts: Duration,
    },
    /// kill -9 of a node, a torn final write appended to its log (a copy of its last record
    /// cut before the `cut`-th last non-zero byte of its body), restart.
    TornTail { node: u64, cut: usize },
    /// kill -9 of a node, one bit of an old record flipped: it must refuse to start; then its
    /// data is wiped and it rejoins with `--init`.
    BitFlip { node: u64 },
    /// The filesystem of the node whose data directory is on the harness's tmpfs fills up
    /// (a filler file leaves less than a segment free, and large writes push the log past
    /// it): the node must stop with a clear "no space" error; then the filler is removed and
    /// the node restarted. Which node has the tmpfs is decided when the run starts; the fault
    /// is left out of runs that may not mount one.
    DiskFull,
    /// The node restarted (SIGTERM if `graceful`, else kill -9) with every data sync of its
    /// log delayed by `delay` (`--fsync-delay-ms`) for `lasts`, then restarted normally.
    SlowDisk {
        target: Target,
        delay: Duration,
        lasts: Duration,
        graceful: bool,
    },
}

impl Fault {
    /// The fault's kind, for counting.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Kill {
                target: Target::Leader,
                ..
            } => "kill -9 leader",
            Fault::Kill { .. } => "kill -9 node",
            Fault::KillAll { .. } => "kill -9 all",
            Fault::PauseLeader { .. } => "SIGSTOP leader",
            Fault::IsolateLeader { .. } => "isolate leader",
            Fault::Split { .. } => "majority/minority split",
            Fault::OneWay { .. } => "one-way cut",
            Fault::Flap { .. } => "flapping link",
            Fault::Delay { .. } => "link delay",
            Fault::TornTail { .. } => "torn log tail",
            Fault::BitFlip { .. } => "bit flip in committed record",
            Fault::DiskFull => "disk full",
            Fault::SlowDisk { .. } => "slow fsync",
        }
    }

    /// How long the fault can take, restarts included (a run starts a fault only if this
    /// much time is left).
    pub fn longest(&self) -> Duration {
        match self {
            Fault::DiskFull => Duration::from_secs(20),
            Fault::SlowDisk { lasts, .. } => *lasts + Duration::from_secs(12),
            _ => Duration::from_secs(10),
        }
    }
}

/// A fault and the quiet time after it heals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduled {
    pub fault: Fault,
    pub quiet: Duration,
}

fn ms(rng: &mut Xoshiro256PlusPlus, low: u64, high: u64) -> Duration {
    Duration::from_millis(rng.random_range(low..=high))
}

fn node(rng: &mut Xoshiro256PlusPlus, nodes: u64) -> u64 {
    rng.random_range(1..=nodes)
}

fn two_nodes(rng: &mut Xoshiro256PlusPlus, nodes: u64) -> (u64, u64) {
    let a = node(rng, nodes);
    let b = (a + rng.random_range(1..nodes) - 1) % nodes + 1;
    (a, b)
}

/// Draws one fault.
fn draw(rng: &mut Xoshiro256PlusPlus, nodes: u64) -> Fault {
    let stalling = rng.random_bool(0.5);
    match rng.random_range(0..14) {
        0 => Fault::Kill {
            target: Target::Node(node(rng, nodes)),
            down: ms(rng, 500, 3000),
        },
        1 | 2 => Fault::Kill {
            target: Target::Leader,
            down: ms(rng, 500, 3000),
        },
        3 => Fault::PauseLeader {
            pause: ms(rng, 1000, 2500),
        },
        4 => Fault::IsolateLeader {
            stalling,
            lasts: ms(rng, 1500, 4000),
        },
        5 => {
            let size = rng.random_range(1..=(nodes - 1) / 2);
            let mut minority = Vec::new();
            while minority.len() < size as usize {
                let id = node(rng, nodes);
                if !minority.contains(&id) {
                    minority.push(id);
                }
            }
            minority.sort_unstable();
            Fault::Split {
                minority,
                stalling,
                lasts: ms(rng, 1500, 4000),
            }
        }
        6 => {
            let (from, to) = two_nodes(rng, nodes);
            Fault::OneWay {
                from,
                to,
                stalling,
                lasts: ms(rng, 1500, 4000),
            }
        }
        7 => {
            let (a, b) = two_nodes(rng, nodes);
            Fault::Flap {
                a,
                b,
                every: ms(rng, 100, 400),
                lasts: ms(rng, 2000, 4000),
            }
        }
        8 => {
            let count = rng.random_range(1..=nodes);
            let links = (0..count).map(|_| two_nodes(rng, nodes)).collect();
            Fault::Delay {
                links,
                delay: ms(rng, 20, 200),
                lasts: ms(rng, 2000, 4000),
            }
        }
        9 => Fault::TornTail {
            node: node(rng, nodes),
            cut: rng.random_range(1..=8),
        },
        10 => Fault::BitFlip {
            node: node(rng, nodes),
        },
        11 => Fault::DiskFull,
        12 => Fault::SlowDisk {
            target: if rng.random_bool(0.5) {
                Target::Leader
            } else {
                Target::Node(node(rng, nodes))
            },
            delay: ms(rng, 20, 200),
            lasts: ms(rng, 3000, 6000),
            graceful: rng.random_bool(0.5),
        },
        _ => Fault::KillAll {
            down: ms(rng, 500, 2000),
        },
    }
}

/// The endless sequence of faults drawn from `seed` for a cluster of `nodes` (at least 3).
pub fn schedule(seed: u64, nodes: u64) -> impl Iterator<Item = Scheduled> {
    assert!(nodes >= 3, "faults need at least 3 nodes");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    std::iter::repeat_with(move || Scheduled {
        fault: draw(&mut rng, nodes),
        quiet: ms(&mut rng, 1000, 3000),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn nodes_of(fault: &Fault) -> Vec<u64> {
        match fault {
            Fault::Kill {
                target: Target::Node(id),
                ..
            }
            | Fault::TornTail { node: id, .. }
            | Fault::BitFlip { node: id }
            | Fault::SlowDisk {
                target: Target::Node(id),
                ..
            } => vec![*id],
            Fault::Split { minority, .. } => minority.clone(),
            Fault::OneWay { from, to, .. } => vec![*from, *to],
            Fault::Flap { a, b, .. } => vec![*a, *b],
            Fault::Delay { links, .. } => links.iter().flat_map(|&(a, b)| [a, b]).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn a_seed_replays_and_every_kind_appears_with_valid_nodes() {
        for nodes in [3, 5] {
            let take = |seed| schedule(seed, nodes).take(400).collect::<Vec<_>>();
            let faults = take(42);
            assert_eq!(faults, take(42));
            assert_ne!(faults, take(43));
            let kinds: BTreeSet<_> = faults.iter().map(|s| s.fault.kind()).collect();
            assert_eq!(kinds.len(), 13, "{kinds:?}");
            for scheduled in &faults {
                let fault = &scheduled.fault;
                assert!(
                    nodes_of(fault).iter().all(|id| (1..=nodes).contains(id)),
                    "{fault:?}"
                );
                match fault {
                    Fault::Split { minority, .. } => {
                        assert!(!minority.is_empty() && (minority.len() as u64) * 2 < nodes)
                    }
                    Fault::OneWay { from, to, .. } => assert_ne!(from, to),
                    Fault::Flap { a, b, .. } => assert_ne!(a, b),
                    Fault::Delay { links, delay, .. } => {
                        assert!(links.iter().all(|(a, b)| a != b));
                        assert!((20..=200).contains(&delay.as_millis()));
                    }
                    Fault::PauseLeader { pause } => assert!(pause.as_millis() >= 1000),
                    Fault::SlowDisk { delay, lasts, .. } => {
                        assert!((20..=200).contains(&delay.as_millis()));
                        assert!(*lasts <= Duration::from_secs(6));
                    }
                    _ => {}
                }
                assert!(scheduled.quiet <= Duration::from_secs(3));
            }
        }
    }
}
