//! Proposal throughput of the sans-IO core: one 3-voter leader, no IO, followers' acks fed back.
//!
//! Run with `cargo bench --bench core_step` (`-- --test` runs each benchmark once).
//!
//! Setup (untimed): node 1 of voters {1, 2, 3} ticks until it asks for pre-votes, receives one
//! granted pre-vote and one granted vote, and brings both followers into the replicate state by
//! acknowledging its no-op entry.
//!
//! One measured round, for a batch of N × 128-byte entries:
//! 1. `Propose(batch)`: the leader places the batch, emits `AppendLog` and one AppendEntries per
//!    follower;
//! 2. `Persisted` for that batch (the leader's own write is durable);
//! 3. an `AppendResponse { Accepted { match_index } }` from each follower: the first one makes
//!    a majority, so the leader emits `Commit` and `Apply`.
//!
//! Every action is drained after each step (the `Apply`s are counted, the rest dropped), and the
//! one `Vec<Action>` is reused. Two variants:
//! - `step_only`: the batch is encoded once, outside the measurement; each round proposes a
//!   clone of it (a reference-count increment on the shared body);
//! - `encode_and_step`: each round also encodes its batch with [`EntryBatch::encode`].
//!
//! The core keeps every entry in memory (it has no compaction yet), so the leader is rebuilt,
//! untimed, every [`ROUNDS_PER_LEADER_MAX`] rounds or once [`RETAINED_BODY_BYTES_MAX`] of
//! distinct bodies are held. That bounds memory and keeps the log depth, and with it the cost of
//! a lookup, the same for every sample. As in a release driver, only the cheap invariant checks
//! run (`Config::check_expensive_invariants` is off): in the measured rounds (no ticks, no role
//! change) that is the cursor and across-step checks after every step.
//!
//! The `quorum` group times [`quorum::committed_index`] alone for 3, 5 and 7 voters.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringraft::batch::{BatchKind, EntryBatch};
use ringraft::core::quorum;
use ringraft::core::{Action, AppendOutcome, Config, Input, Message, Raft, Recovered, Role};
use ringraft::types::{LogIndex, NodeId, Term};

const ENTRY_BYTES: usize = 128;
const BATCH_SIZES: [u64; 3] = [1, 64, 1024];
const LEADER: NodeId = NodeId(1);
const FOLLOWERS: [NodeId; 2] = [NodeId(2), NodeId(3)];
/// Rounds one leader runs before it is replaced (bounds its in-memory log).
const ROUNDS_PER_LEADER_MAX: u64 = 1 << 16;
/// Distinct encoded bodies one leader may hold before it is replaced (`encode_and_step`).
const RETAINED_BODY_BYTES_MAX: usize = 64 << 20;

/// A leader of term 2 with both followers replicating and its no-op committed and applied.
fn elected_leader(out: &mut Vec<Action>) -> Raft {
    let mut config = Config::new(LEADER, vec![LEADER, FOLLOWERS[0], FOLLOWERS[1]]);
    config.check_expensive_invariants = false;
    let mut raft = Raft::new(config, Recovered::default());
    let mut ticks = 0;
    while raft.role() != Role::PreCandidate {
        out.clear();
        raft.step(Input::Tick, out);
        ticks += 1;
        assert!(ticks < 1000, "the follower never campaigned");
    }
    let proposed_term = raft.term().next();
    out.clear();
    raft.step(
        message(Message::VoteResponse {
            term: proposed_term,
            pre_vote: true,
            granted: true,
        }),
        out,
    );
    assert_eq!(
        raft.role(),
        Role::Candidate,
        "pre-vote quorum starts the election"
    );
    out.clear();
    raft.step(
        message(Message::VoteResponse {
            term: raft.term(),
            pre_vote: false,
            granted: true,
        }),
        out,
    );
    assert_eq!(raft.role(), Role::Leader, "vote quorum elects the leader");
    // The no-op: persist it and let both followers acknowledge it (probe -> replicate).
    let noop = raft.last_index();
    let term = raft.term();
    out.clear();
    raft.step(Input::Persisted { index: noop, term }, out);
    for follower in FOLLOWERS {
        out.clear();
        raft.step(accepted(follower, term, noop), out);
    }
    out.clear();
    assert_eq!(raft.commit_index(), noop);
    assert_eq!(raft.applied_index(), noop);
    raft
}

fn message(message: Message) -> Input {
    Input::Message {
        from: FOLLOWERS[0],
        message,
    }
}

fn accepted(from: NodeId, term: Term, match_index: LogIndex) -> Input {
    Input::Message {
        from,
        message: Message::AppendResponse {
            term,
            outcome: AppendOutcome::Accepted {
                match_index,
                read_round: 0,
            },
        },
    }
}

fn encode(count: u64, payload: &[u8]) -> EntryBatch {
    EntryBatch::encode(
        BatchKind::Command,
        Term::ZERO,
        LogIndex::ZERO,
        (0..count).map(|_| payload),
    )
}

/// Drops every action in `out`, returning the number of entries handed to `Apply`.
fn drain_applied(out: &mut Vec<Action>) -> u64 {
    let mut applied = 0;
    for action in out.drain(..) {
        if let Action::Apply(batch) = action {
            applied += batch.len();
        }
    }
    applied
}

/// One proposal round; returns the number of entries applied by it.
fn round(raft: &mut Raft, batch: EntryBatch, out: &mut Vec<Action>) -> u64 {
    let term = raft.term();
    raft.step(Input::Propose(batch), out);
    let last = raft.last_index();
    let mut applied = drain_applied(out);
    raft.step(Input::Persisted { index: last, term }, out);
    applied += drain_applied(out);
    for follower in FOLLOWERS {
        raft.step(accepted(follower, term, last), out);
        applied += drain_applied(out);
    }
    applied
}

/// Runs `rounds` proposal rounds of `count` entries, timing only the rounds.
fn timed_rounds(rounds: u64, count: u64, encode_each: bool) -> Duration {
    let payload = vec![0xabu8; ENTRY_BYTES];
    let template = encode(count, &payload);
    let chunk_max = if encode_each {
        (RETAINED_BODY_BYTES_MAX / template.encoded_len()).max(1) as u64
    } else {
        ROUNDS_PER_LEADER_MAX
    }
    .min(ROUNDS_PER_LEADER_MAX);
    let mut out = Vec::with_capacity(16);
    let mut elapsed = Duration::ZERO;
    let mut remaining = rounds;
    while remaining > 0 {
        let chunk = remaining.min(chunk_max);
        let mut raft = elected_leader(&mut out);
        let applied_before = raft.applied_index();
        let mut applied = 0;
        let start = Instant::now();
        if encode_each {
            for _ in 0..chunk {
                let batch = encode(count, black_box(&payload));
                applied += round(&mut raft, batch, &mut out);
            }
        } else {
            for _ in 0..chunk {
                applied += round(&mut raft, template.clone(), &mut out);
            }
        }
        elapsed += start.elapsed();
        // Every proposed entry must have been committed and applied, or the figure is void.
        assert_eq!(black_box(applied), chunk * count);
        assert_eq!(raft.applied_index(), applied_before.plus(chunk * count));
        drop(raft); // untimed: freeing the log
        remaining -= chunk;
    }
    elapsed
}

fn core_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("core_step");
    for &count in &BATCH_SIZES {
        group.throughput(Throughput::Elements(count));
        group.bench_with_input(BenchmarkId::new("step_only", count), &count, |b, &count| {
            b.iter_custom(|rounds| timed_rounds(rounds, count, false))
        });
        group.bench_with_input(
            BenchmarkId::new("encode_and_step", count),
            &count,
            |b, &count| b.iter_custom(|rounds| timed_rounds(rounds, count, true)),
        );
    }
    group.finish();
}

fn quorum_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("quorum");
    for voters in [3usize, 5, 7] {
        // Distinct, unsorted match indexes, as a leader's progress map would hold them.
        let indexes: Vec<LogIndex> = (0..voters as u64)
            .map(|i| LogIndex(1_000_000 + (i * 7919) % 1000))
            .collect();
        group.bench_with_input(
            BenchmarkId::new("committed_index", voters),
            &indexes,
            |b, indexes| {
                b.iter(|| quorum::committed_index(black_box(indexes).iter().copied()));
            },
        );
    }
    group.finish();
}

criterion_group!(benches, core_step, quorum_commit);
criterion_main!(benches);
