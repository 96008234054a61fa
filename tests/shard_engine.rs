//! The shard engine over the in-memory log, three nodes wired in one thread: proposals are
//! gathered into one batch per turn, commit, reach the state machine and answer their
//! proposers; vote grants wait for the flush that makes the vote durable; reads of one turn
//! share one heartbeat round, lease reads skip it while the lease holds, stale reads answer at
//! once; requests of a client session apply once however often they are proposed, across
//! leaders, restarts and snapshots.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::Duration;

use bytes::Bytes;
use ringraft::api::{CommittedEntries, ReadConsistency, SnapshotJob, StateMachine};
use ringraft::batch::BatchKind;
use ringraft::core::{Config, Membership, Message, Role, SnapshotMeta};
use ringraft::engine::sessions::SessionLimits;
use ringraft::engine::snapshot_due::SnapshotPolicy;
use ringraft::engine::{
    Committed, EngineConfig, ProposalError, ShardEngine, UNCOMMITTED_BYTES_MAX_DEFAULT,
};
use ringraft::log::{LogStore, MemLog};
use ringraft::snapshot::MemSnapshots;
use ringraft::types::{GroupId, LogIndex, NodeId, SessionId, SessionRefusal, SessionRequest};

const GROUP: GroupId = GroupId(0);

/// Answers each entry with its payload reversed, and remembers what it applied.
#[derive(Default)]
struct Reverser {
    applied: Vec<(LogIndex, Vec<u8>)>,
    /// Whether snapshots are written off the shard's thread, from a copy
    /// ([`StateMachine::snapshot_job`]).
    in_jobs: bool,
}

/// Writes what a [`Reverser`] applied: per entry, its index, length and payload.
fn write_applied(applied: &[(LogIndex, Vec<u8>)], out: &mut dyn Write) -> io::Result<()> {
    for (index, payload) in applied {
        out.write_all(&index.0.to_le_bytes())?;
        out.write_all(&(payload.len() as u64).to_le_bytes())?;
        out.write_all(payload)?;
    }
    Ok(())
}

impl StateMachine for Reverser {
    fn apply(&mut self, _group: GroupId, entries: CommittedEntries<'_>, outputs: &mut Vec<Bytes>) {
        for (index, payload) in entries.iter() {
            self.applied.push((index, payload.to_vec()));
            outputs.push(payload.iter().rev().copied().collect::<Vec<u8>>().into());
        }
    }

    /// Whether `query` was applied: "yes" or "no".
    fn query(&self, _group: GroupId, query: &[u8]) -> Bytes {
        let seen = self.applied.iter().any(|(_, payload)| payload == query);
        Bytes::from_static(if seen { b"yes" } else { b"no" })
    }

    fn snapshot(&self, _group: GroupId, out: &mut dyn Write) -> io::Result<()> {
        write_applied(&self.applied, out)
    }

    fn snapshot_job(&self, _group: GroupId) -> Option<SnapshotJob> {
        let applied = self.applied.clone();
        self.in_jobs.then(|| {
            Box::new(move |out: &mut dyn Write| write_applied(&applied, out)) as SnapshotJob
        })
    }

    fn restore(&mut self, _group: GroupId, input: &mut dyn Read) -> io::Result<()> {
        let mut bytes = Vec::new();
        input.read_to_end(&mut bytes)?;
        self.applied.clear();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let word = |at: usize| u64::from_le_bytes(rest[at..at + 8].try_into().unwrap());
            let (index, len) = (word(0), word(8) as usize);
            self.applied
                .push((LogIndex(index), rest[16..16 + len].to_vec()));
            rest = &rest[16 + len..];
        }
        Ok(())
    }
}

type Engine = ShardEngine<MemLog, Reverser, u32, MemSnapshots>;

/// Node `id` of a three-node group, over `log` and `snapshots` (which may hold what an earlier
/// life of the node left).
fn start_engine(
    id: u64,
    log: MemLog,
    snapshots: Option<MemSnapshots>,
    uncommitted_bytes_max: usize,
) -> Engine {
    let policy = SnapshotPolicy {
        entries: 0,
        log_ratio: 0,
    };
    let machine = Reverser::default();
    start_engine_with(id, log, snapshots, uncommitted_bytes_max, policy, machine)
}

/// [`start_engine`] taking snapshots by `policy`, with `machine` as state machine.
fn start_engine_with(
    id: u64,
    log: MemLog,
    snapshots: Option<MemSnapshots>,
    uncommitted_bytes_max: usize,
    policy: SnapshotPolicy,
    machine: Reverser,
) -> Engine {
    let voters = vec![NodeId(1), NodeId(2), NodeId(3)];
    ShardEngine::new(
        NodeId(id),
        [GROUP],
        log,
        machine,
        snapshots,
        EngineConfig {
            proposal_timeout_ticks: 1_000,
            read_lease: Some(Duration::from_secs(1)),
            snapshots: policy,
            uncommitted_bytes_max,
            sessions: SessionLimits::default(),
            broken_rule: None,
        },
        |_| {
            let mut config = Config::new(NodeId(id), voters.clone());
            config.rng_seed = id;
            config.check_expensive_invariants = true;
            // Only the candidate ticks here, so the others' quiet start would never end.
            config.quiet_start = false;
            config
        },
    )
    .unwrap()
}

struct Trio {
    engines: Vec<Engine>,
    wire: VecDeque<(NodeId, NodeId, GroupId, Message)>,
}

impl Trio {
    /// The answers node `id` has ready, in the order of their reply tags.
    fn completions_by_reply(&mut self, id: u64) -> Vec<(u32, Result<Committed, ProposalError>)> {
        let mut completions = self.engine(id).drain_completions().collect::<Vec<_>>();
        completions.sort_by_key(|(reply, _)| *reply);
        completions
    }

    fn new() -> Trio {
        Trio::with_uncommitted_bytes_max(UNCOMMITTED_BYTES_MAX_DEFAULT)
    }

    fn with_uncommitted_bytes_max(uncommitted_bytes_max: usize) -> Trio {
        Trio {
            engines: (1..=3)
                .map(|id| start_engine(id, MemLog::new(), None, uncommitted_bytes_max))
                .collect(),
            wire: VecDeque::new(),
        }
    }

    fn engine(&mut self, id: u64) -> &mut Engine {
        &mut self.engines[id as usize - 1]
    }

    /// Ends a turn on every engine: flushes complete at once, messages go on the wire.
    fn settle(&mut self) {
        for _ in 0..50 {
            for engine in &mut self.engines {
                engine.end_turn().unwrap();
                if engine.wants_flush() {
                    let mut pending = engine.start_flush().unwrap().unwrap();
                    let done = pending.try_take().expect("MemLog flushes complete at once");
                    engine.flush_done(done).unwrap();
                }
                let from = engine.node();
                for (to, messages) in engine.take_outbox() {
                    for (group, message) in messages {
                        self.wire.push_back((from, to, group, message));
                    }
                }
            }
            if self.wire.is_empty() {
                return;
            }
            while let Some((from, to, group, message)) = self.wire.pop_front() {
                self.engine(to.0).receive(from, group, message).unwrap();
            }
        }
        panic!("messages kept flowing");
    }

    fn elect(&mut self, id: u64) {
        for _ in 0..40 {
            self.engine(id).tick().unwrap();
            self.settle();
            if self.engine(id).status()[0].summary.role == Role::Leader {
                return;
            }
        }
        panic!("n{id} was not elected");
    }
}

#[test]
fn proposals_of_one_turn_share_a_batch_and_answer_with_outputs() {
    let mut trio = Trio::new();
    trio.elect(1);
    trio.engine(1)
        .propose(GROUP, Bytes::from_static(b"abc"), 10);
    trio.engine(1).propose(GROUP, Bytes::from_static(b"xy"), 11);
    trio.settle();
    let completions = trio.completions_by_reply(1);
    // Index 1 is the leader's no-op; the two proposals follow in one batch.
    assert_eq!(
        completions,
        vec![
            (
                10,
                Ok(Committed {
                    index: LogIndex(2),
                    output: Bytes::from_static(b"cba")
                })
            ),
            (
                11,
                Ok(Committed {
                    index: LogIndex(3),
                    output: Bytes::from_static(b"yx")
                })
            ),
        ]
    );
    let batches = trio
        .engine(1)
        .log_mut()
        .read(GROUP, LogIndex(2), LogIndex(3))
        .unwrap();
    assert_eq!(batches.len(), 1, "one batch for the turn's proposals");
    for follower in [2, 3] {
        let status = &trio.engine(follower).status()[0].summary;
        assert_eq!(status.leader, Some(NodeId(1)));
        assert_eq!(status.last_index, LogIndex(3));
    }
}

#[test]
fn followers_refuse_proposals_with_the_leader_and_unknown_groups_are_refused() {
    let mut trio = Trio::new();
    trio.elect(1);
    trio.engine(2).propose(GROUP, Bytes::from_static(b"p"), 1);
    trio.engine(2)
        .propose(GroupId(9), Bytes::from_static(b"q"), 2);
    trio.settle();
    let completions = trio.completions_by_reply(2);
    assert_eq!(
        completions,
        vec![
            (
                1,
                Err(ProposalError::NotLeader {
                    leader: Some(NodeId(1))
                })
            ),
            (2, Err(ProposalError::UnknownGroup(GroupId(9)))),
        ]
    );
}

#[test]
fn a_vote_grant_waits_for_the_flush_of_the_vote() {
    let mut trio = Trio::new();
    // Let n1 campaign until its real vote requests reach n2.
    let mut vote_requests = Vec::new();
    for _ in 0..40 {
        trio.engine(1).tick().unwrap();
        trio.engine(1).end_turn().unwrap();
        if trio.engine(1).wants_flush() {
            let mut pending = trio.engine(1).start_flush().unwrap().unwrap();
            let done = pending.try_take().unwrap();
            trio.engine(1).flush_done(done).unwrap();
        }
        for (to, messages) in trio.engine(1).take_outbox() {
            for (group, message) in messages {
                match message {
                    Message::VoteRequest { pre_vote: true, .. } => {
                        // Answer the pre-vote round as a follower would.
                        trio.engine(to.0)
                            .receive(NodeId(1), group, message)
                            .unwrap();
                        for (_, answers) in trio.engine(to.0).take_outbox() {
                            for (group, answer) in answers {
                                trio.engine(1).receive(to, group, answer).unwrap();
                            }
                        }
                    }
                    Message::VoteRequest { .. } if to == NodeId(2) => vote_requests.push(message),
                    _ => {}
                }
            }
        }
        if !vote_requests.is_empty() {
            break;
        }
    }
    let request = vote_requests.pop().expect("n1 asked n2 for its vote");
    let voter = trio.engine(2);
    voter.receive(NodeId(1), GROUP, request).unwrap();
    voter.end_turn().unwrap();
    assert!(
        voter.take_outbox().is_empty(),
        "no vote reply before the vote is durable"
    );
    let mut pending = voter.start_flush().unwrap().expect("the vote is staged");
    let done = pending.try_take().unwrap();
    voter.flush_done(done).unwrap();
    let outbox = voter.take_outbox();
    let replies = &outbox[&NodeId(1)];
    assert!(
        matches!(
            replies.as_slice(),
            [(
                GROUP,
                Message::VoteResponse {
                    granted: true,
                    pre_vote: false,
                    ..
                }
            )]
        ),
        "{replies:?}"
    );
}

#[test]
fn oversized_payloads_are_refused_before_they_reach_the_log() {
    let mut trio = Trio::new();
    trio.elect(1);
    let max = ringraft::constants::CLIENT_PAYLOAD_BYTES_MAX;
    trio.engine(1)
        .propose(GROUP, Bytes::from(vec![7u8; max + 1]), 3);
    trio.engine(1)
        .propose(GROUP, Bytes::from(vec![7u8; max]), 4);
    trio.settle();
    let completions = trio.completions_by_reply(1);
    assert_eq!(
        completions[0],
        (
            3,
            Err(ProposalError::TooLarge {
                bytes: max + 1,
                max
            })
        )
    );
    assert!(completions[1].1.is_ok(), "{:?}", completions[1]);
}

/// Issue 13, finding 5b: a leader whose followers never answer holds every proposal in memory
/// until it commits. Beyond the cap it refuses them (certainly not placed), so what it holds
/// stays bounded; once the followers answer and the entries apply, it accepts again.
#[test]
fn a_leader_cut_off_from_its_followers_refuses_proposals_beyond_the_unapplied_cap() {
    const CAP: usize = 16 << 10;
    const PAYLOAD: usize = 1_000;
    const TURNS: u32 = 100;
    let mut trio = Trio::with_uncommitted_bytes_max(CAP);
    trio.elect(1);
    assert_eq!(
        trio.engine(1).unapplied_bytes(GROUP),
        0,
        "the no-op applied"
    );
    let leader = trio.engine(1);
    let mut refused = 0;
    let mut high_water = 0;
    for turn in 0..TURNS {
        leader.propose(GROUP, Bytes::from(vec![turn as u8; PAYLOAD]), turn);
        leader.end_turn().unwrap();
        if leader.wants_flush() {
            let mut pending = leader.start_flush().unwrap().unwrap();
            leader.flush_done(pending.try_take().unwrap()).unwrap();
        }
        // The followers never hear of it.
        leader.take_outbox();
        for (reply, result) in leader.drain_completions().collect::<Vec<_>>() {
            match result {
                Err(ProposalError::Overloaded { bytes, max }) => {
                    assert_eq!(max, CAP);
                    assert!(bytes + PAYLOAD > CAP, "refused with room: {bytes}");
                    refused += 1;
                }
                other => panic!("proposal {reply}: {other:?}"),
            }
        }
        high_water = high_water.max(leader.unapplied_bytes(GROUP));
    }
    let placed = TURNS - refused;
    assert!(
        refused > 0 && placed > 0,
        "placed {placed}, refused {refused}"
    );
    assert!(high_water <= CAP, "held {high_water} bytes, cap {CAP}");
    assert!(
        high_water + PAYLOAD > CAP,
        "refused too early: {high_water}"
    );
    // The followers answer again: the leader's heartbeats find them behind, it sends the
    // entries, they commit and apply, and the count falls to nothing.
    let mut answered = Vec::new();
    for _ in 0..50 {
        trio.engine(1).tick().unwrap();
        trio.settle();
        answered.extend(trio.engine(1).drain_completions().collect::<Vec<_>>());
        if answered.len() == placed as usize {
            break;
        }
    }
    assert_eq!(answered.len(), placed as usize, "{answered:?}");
    assert!(
        answered.iter().all(|(_, result)| result.is_ok()),
        "{answered:?}"
    );
    assert_eq!(trio.engine(1).unapplied_bytes(GROUP), 0);
    trio.engine(1)
        .propose(GROUP, Bytes::from(vec![1u8; PAYLOAD]), 1_000);
    trio.settle();
    let again = trio.engine(1).drain_completions().collect::<Vec<_>>();
    assert!(matches!(again[..], [(1_000, Ok(_))]), "{again:?}");
    // Followers count what they hold unapplied the same way: the last entry, until a
    // heartbeat tells them it committed.
    assert!(trio.engine(2).unapplied_bytes(GROUP) > 0);
    for _ in 0..10 {
        trio.engine(1).tick().unwrap();
        trio.settle();
    }
    for id in 1..=3 {
        assert_eq!(trio.engine(id).unapplied_bytes(GROUP), 0, "n{id}");
    }
}

#[test]
fn shutting_down_answers_every_outstanding_proposal() {
    let mut trio = Trio::new();
    trio.elect(1);
    trio.engine(1)
        .propose(GROUP, Bytes::from_static(b"late"), 7);
    trio.engine(1).end_turn().unwrap();
    trio.engine(1).shut_down();
    assert_eq!(
        trio.engine(1).drain_completions().collect::<Vec<_>>(),
        vec![(7, Err(ProposalError::ShuttingDown))]
    );
}

/// Node 1 leads and has committed "abc" at index 2.
fn trio_with_a_write() -> Trio {
    let mut trio = Trio::new();
    trio.elect(1);
    trio.engine(1).propose(GROUP, Bytes::from_static(b"abc"), 1);
    trio.settle();
    assert!(matches!(
        trio.engine(1).drain_completions().collect::<Vec<_>>()[..],
        [(
            1,
            Ok(Committed {
                index: LogIndex(2),
                ..
            })
        )]
    ));
    trio
}

fn answer(index: u64, output: &'static [u8]) -> Result<Committed, ProposalError> {
    Ok(Committed {
        index: LogIndex(index),
        output: Bytes::from_static(output),
    })
}

/// Messages node `id` would send at the end of its turn, per peer; then they are delivered.
fn end_turn_and_count_messages(trio: &mut Trio, id: u64) -> Vec<usize> {
    trio.engine(id).end_turn().unwrap();
    let outbox = trio.engine(id).take_outbox();
    let counts = outbox.values().map(Vec::len).collect();
    for (to, messages) in outbox {
        for (group, message) in messages {
            trio.wire.push_back((NodeId(id), to, group, message));
        }
    }
    counts
}

#[test]
fn linearizable_reads_of_one_turn_share_one_heartbeat_round() {
    let mut trio = trio_with_a_write();
    let leader = trio.engine(1);
    leader.read(
        GROUP,
        Bytes::from_static(b"abc"),
        ReadConsistency::Linearizable,
        20,
    );
    leader.read(
        GROUP,
        Bytes::from_static(b"zzz"),
        ReadConsistency::Linearizable,
        21,
    );
    assert_eq!(end_turn_and_count_messages(&mut trio, 1), vec![1, 1]);
    assert!(
        trio.engine(1)
            .drain_completions()
            .collect::<Vec<_>>()
            .is_empty(),
        "not served before a majority confirmed the leadership"
    );
    trio.settle();
    let completions = trio.completions_by_reply(1);
    assert_eq!(
        completions,
        vec![(20, answer(2, b"yes")), (21, answer(2, b"no"))]
    );
}

#[test]
fn a_follower_refuses_linearizable_reads_and_answers_stale_ones_at_once() {
    let mut trio = trio_with_a_write();
    // Heartbeats carry the commit index to the followers.
    for _ in 0..2 {
        trio.engine(1).tick().unwrap();
    }
    trio.settle();
    let follower = trio.engine(2);
    follower.read(
        GROUP,
        Bytes::from_static(b"abc"),
        ReadConsistency::Stale,
        30,
    );
    assert_eq!(
        follower.drain_completions().collect::<Vec<_>>(),
        vec![(30, answer(2, b"yes"))]
    );
    follower.read(
        GROUP,
        Bytes::from_static(b"abc"),
        ReadConsistency::Linearizable,
        31,
    );
    follower.read(
        GROUP,
        Bytes::from_static(b"abc"),
        ReadConsistency::Lease,
        32,
    );
    follower.read(GroupId(9), Bytes::new(), ReadConsistency::Stale, 33);
    trio.settle();
    let completions = trio.completions_by_reply(2);
    let not_leader = Err(ProposalError::NotLeader {
        leader: Some(NodeId(1)),
    });
    assert_eq!(
        completions,
        vec![
            (31, not_leader.clone()),
            (32, not_leader),
            (33, Err(ProposalError::UnknownGroup(GroupId(9)))),
        ]
    );
}

#[test]
fn lease_reads_skip_the_round_trip_only_while_the_lease_holds() {
    let mut trio = trio_with_a_write();
    let start_us = 1_000;
    trio.engine(1).begin_turn(start_us, 0);
    // Confirm a round so that the lease starts.
    trio.engine(1).read(
        GROUP,
        Bytes::from_static(b"abc"),
        ReadConsistency::Linearizable,
        40,
    );
    trio.settle();
    assert_eq!(
        trio.engine(1).drain_completions().collect::<Vec<_>>(),
        vec![(40, answer(2, b"yes"))]
    );

    trio.engine(1).read(
        GROUP,
        Bytes::from_static(b"abc"),
        ReadConsistency::Lease,
        41,
    );
    assert_eq!(
        end_turn_and_count_messages(&mut trio, 1),
        Vec::<usize>::new(),
        "served from the lease, nothing sent"
    );
    assert_eq!(
        trio.engine(1).drain_completions().collect::<Vec<_>>(),
        vec![(41, answer(2, b"yes"))]
    );

    // The Trio's lease is one second: two seconds later it has run out.
    trio.engine(1).begin_turn(start_us + 2_000_000, 0);
    trio.engine(1).read(
        GROUP,
        Bytes::from_static(b"abc"),
        ReadConsistency::Lease,
        42,
    );
    assert_eq!(end_turn_and_count_messages(&mut trio, 1), vec![1, 1]);
    assert!(trio
        .engine(1)
        .drain_completions()
        .collect::<Vec<_>>()
        .is_empty());
    trio.settle();
    assert_eq!(
        trio.engine(1).drain_completions().collect::<Vec<_>>(),
        vec![(42, answer(2, b"yes"))]
    );
}

#[test]
fn an_install_snapshot_whose_file_is_absent_is_dropped() {
    let mut trio = trio_with_a_write();
    let before = trio.engine(2).status();
    let term = before[0].summary.term;
    let forged = Message::InstallSnapshot {
        term,
        snapshot: SnapshotMeta {
            index: LogIndex(100),
            term,
            membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
            context: Bytes::new(),
        },
    };
    // Restoring would need a file this node does not hold (it keeps no snapshots at all).
    trio.engine(2).receive(NodeId(1), GROUP, forged).unwrap();
    assert_eq!(trio.engine(2).status(), before);
    assert!(trio.engine(2).take_outbox().is_empty());
}

/// Moves the leadership of `GROUP` from node `from` to node `to`.
fn hand_over(trio: &mut Trio, from: u64, to: u64) {
    for _ in 0..40 {
        trio.engine(from)
            .transfer_leadership(GROUP, NodeId(to))
            .unwrap();
        trio.settle();
        if trio.engine(to).status()[0].summary.role == Role::Leader {
            return;
        }
        trio.engine(from).tick().unwrap();
    }
    panic!("n{from} could not hand leadership to n{to}");
}

/// Registers a session of `GROUP` at node `leader` (reply 100); returns its id.
fn register(trio: &mut Trio, leader: u64) -> SessionId {
    trio.engine(leader).register_session(GROUP, 100);
    trio.settle();
    match &trio.engine(leader).drain_completions().collect::<Vec<_>>()[..] {
        [(100, Ok(committed))] => SessionId(committed.index.0),
        other => panic!("registration answered {other:?}"),
    }
}

fn request(session: SessionId, seq: u64, lowest_unanswered: u64) -> SessionRequest {
    SessionRequest::new(session, seq, lowest_unanswered).unwrap()
}

/// What each node's state machine applied of `payload`, by index.
fn applied_at(trio: &mut Trio, payload: &[u8]) -> Vec<Vec<LogIndex>> {
    (1..=3)
        .map(|id| {
            let machine = trio.engine(id).state_machine();
            machine
                .applied
                .iter()
                .filter(|(_, applied)| applied == payload)
                .map(|(index, _)| *index)
                .collect()
        })
        .collect()
}

#[test]
fn a_session_request_applies_once_however_often_and_wherever_it_is_proposed() {
    let mut trio = Trio::new();
    trio.elect(1);
    let session = register(&mut trio, 1);
    assert_eq!(
        session,
        SessionId(2),
        "the registration's index, after the no-op"
    );
    // A request and a retry of it in the same turn (so in the same batch), then another.
    trio.engine(1)
        .propose_in_session(GROUP, request(session, 1, 1), Bytes::from_static(b"ab"), 1);
    trio.engine(1)
        .propose_in_session(GROUP, request(session, 1, 1), Bytes::from_static(b"ab"), 2);
    trio.engine(1)
        .propose_in_session(GROUP, request(session, 2, 1), Bytes::from_static(b"cd"), 3);
    trio.settle();
    let completions = trio.completions_by_reply(1);
    assert_eq!(
        completions,
        vec![
            (1, answer(3, b"ba")),
            (2, answer(3, b"ba")),
            (3, answer(5, b"dc"))
        ]
    );
    // Leadership moves; the retry of request 1 on the new leader gets the same answer.
    hand_over(&mut trio, 1, 2);
    trio.engine(2)
        .propose_in_session(GROUP, request(session, 1, 1), Bytes::from_static(b"ab"), 4);
    trio.settle();
    assert_eq!(
        trio.engine(2).drain_completions().collect::<Vec<_>>(),
        vec![(4, answer(3, b"ba"))]
    );
    assert_eq!(applied_at(&mut trio, b"ab"), vec![vec![LogIndex(3)]; 3]);
    assert_eq!(applied_at(&mut trio, b"cd"), vec![vec![LogIndex(5)]; 3]);
    // Once the client acknowledged request 1 (it waits for 3 and up), a late copy is refused.
    trio.engine(2)
        .propose_in_session(GROUP, request(session, 3, 3), Bytes::from_static(b"ef"), 5);
    trio.engine(2)
        .propose_in_session(GROUP, request(session, 1, 1), Bytes::from_static(b"ab"), 6);
    let stranger = SessionId(77);
    trio.engine(2)
        .propose_in_session(GROUP, request(stranger, 1, 1), Bytes::from_static(b"gh"), 7);
    trio.settle();
    let completions = trio.completions_by_reply(2);
    let refused = |refusal| Err(ProposalError::Session(refusal));
    assert_eq!(
        completions,
        vec![
            (5, answer(8, b"fe")),
            (6, refused(SessionRefusal::Acknowledged { session, seq: 1 })),
            (7, refused(SessionRefusal::Unknown(stranger))),
        ]
    );
    assert_eq!(applied_at(&mut trio, b"ab"), vec![vec![LogIndex(3)]; 3]);
    assert!(applied_at(&mut trio, b"gh").iter().all(Vec::is_empty));
    for id in 1..=3 {
        assert_eq!(trio.engine(id).sessions(GROUP).unwrap().len(), 1);
    }
}

#[test]
fn proposals_with_and_without_sessions_keep_their_order_in_the_log() {
    let mut trio = Trio::new();
    trio.elect(1);
    let session = register(&mut trio, 1);
    trio.engine(1).propose(GROUP, Bytes::from_static(b"1"), 1);
    trio.engine(1)
        .propose_in_session(GROUP, request(session, 1, 1), Bytes::from_static(b"2"), 2);
    trio.engine(1).propose(GROUP, Bytes::from_static(b"3"), 3);
    trio.engine(1).propose(GROUP, Bytes::from_static(b"4"), 4);
    trio.settle();
    let completions = trio.completions_by_reply(1);
    let indexes: Vec<u64> = completions
        .iter()
        .map(|(_, result)| result.as_ref().unwrap().index.0)
        .collect();
    assert_eq!(indexes, vec![3, 4, 5, 6]);
    let kinds: Vec<BatchKind> = trio
        .engine(1)
        .log_mut()
        .read(GROUP, LogIndex(3), LogIndex(6))
        .unwrap()
        .iter()
        .map(|batch| batch.kind())
        .collect();
    assert_eq!(
        kinds,
        vec![BatchKind::Command, BatchKind::Session, BatchKind::Command],
        "a change of kind starts a batch; same-kind proposals share one"
    );
}

#[test]
fn sessions_survive_a_restart_from_a_snapshot() {
    let mut trio = Trio::new();
    trio.engines[0] = start_engine(
        1,
        MemLog::new(),
        Some(MemSnapshots::new()),
        UNCOMMITTED_BYTES_MAX_DEFAULT,
    );
    trio.elect(1);
    let session = register(&mut trio, 1);
    trio.engine(1)
        .propose_in_session(GROUP, request(session, 1, 1), Bytes::from_static(b"ab"), 1);
    trio.settle();
    assert_eq!(
        trio.engine(1).drain_completions().collect::<Vec<_>>(),
        vec![(1, answer(3, b"ba"))]
    );
    let index = trio.engine(1).snapshot(GROUP).unwrap();
    assert_eq!(index, Some(LogIndex(3)));
    let store = trio.engine(1).snapshot_store().unwrap().clone();
    for pending in trio.engine(1).take_pending_snapshots() {
        let (index, term) = (pending.index, pending.term);
        let result = pending.store();
        trio.engine(1)
            .snapshot_stored(GROUP, index, term, result)
            .unwrap();
    }
    // Node 1 restarts: the registration and request 1 are covered by the snapshot, so the
    // session can only come back from it.
    hand_over(&mut trio, 1, 2);
    let old = std::mem::replace(
        &mut trio.engines[0],
        start_engine(2, MemLog::new(), None, UNCOMMITTED_BYTES_MAX_DEFAULT),
    );
    trio.engines[0] = start_engine(
        1,
        old.into_log(),
        Some(store),
        UNCOMMITTED_BYTES_MAX_DEFAULT,
    );
    assert!(trio.engine(1).sessions(GROUP).unwrap().knows(session));
    hand_over(&mut trio, 2, 1);
    trio.engine(1)
        .propose_in_session(GROUP, request(session, 1, 1), Bytes::from_static(b"ab"), 2);
    trio.settle();
    assert_eq!(
        trio.engine(1).drain_completions().collect::<Vec<_>>(),
        vec![(2, answer(3, b"ba"))]
    );
    assert_eq!(applied_at(&mut trio, b"ab")[0], vec![LogIndex(3)]);
}

/// The indexes at which node 1, leading, snapshots while 60 entries of 100 bytes are committed
/// one at a time under `policy`.
fn snapshot_indexes(policy: SnapshotPolicy) -> Vec<u64> {
    let mut trio = Trio::new();
    trio.engines[0] = start_engine_with(
        1,
        MemLog::new(),
        Some(MemSnapshots::new()),
        UNCOMMITTED_BYTES_MAX_DEFAULT,
        policy,
        Reverser::default(),
    );
    trio.elect(1);
    let mut indexes = Vec::new();
    for reply in 0..60 {
        trio.engine(1)
            .propose(GROUP, Bytes::from(vec![7; 100]), reply);
        trio.settle();
        for pending in trio.engine(1).take_pending_snapshots() {
            let (index, term) = (pending.index, pending.term);
            let result = pending.store();
            indexes.push(index.0);
            trio.engine(1)
                .snapshot_stored(GROUP, index, term, result)
                .unwrap();
        }
    }
    indexes
}

#[test]
fn snapshots_wait_until_the_log_outgrows_the_last_one_by_the_ratio() {
    // By count alone: a snapshot every 4 entries.
    let by_count = snapshot_indexes(SnapshotPolicy {
        entries: 4,
        log_ratio: 0,
    });
    assert!(by_count.len() >= 12, "{by_count:?}");
    assert!(
        by_count.windows(2).all(|w| w[1] - w[0] <= 5),
        "{by_count:?}"
    );
    // The Reverser's snapshot holds every entry applied (116 bytes each here), about as much as
    // the log since the start: with a ratio of 1 each snapshot waits for about as many new
    // entries as the last one covered, so the gaps roughly double.
    let by_ratio = snapshot_indexes(SnapshotPolicy {
        entries: 4,
        log_ratio: 1,
    });
    assert!(by_ratio.len() >= 3, "{by_ratio:?}");
    assert!(
        by_ratio.windows(2).all(|w| w[1] >= w[0] * 17 / 10),
        "{by_ratio:?}"
    );
}

#[test]
fn a_snapshot_written_off_the_thread_holds_the_state_at_its_index() {
    let mut trio = Trio::new();
    let never = SnapshotPolicy {
        entries: 0,
        log_ratio: 0,
    };
    let in_jobs = Reverser {
        in_jobs: true,
        ..Reverser::default()
    };
    let max = UNCOMMITTED_BYTES_MAX_DEFAULT;
    let snapshots = Some(MemSnapshots::new());
    trio.engines[0] = start_engine_with(1, MemLog::new(), snapshots, max, never, in_jobs);
    trio.elect(1);
    trio.engine(1)
        .propose(GROUP, Bytes::from_static(b"before"), 1);
    trio.settle();
    let index = trio.engine(1).snapshot(GROUP).unwrap().expect("a snapshot");
    let pending = trio.engine(1).take_pending_snapshots();
    // Applied after the snapshot's point, before its job runs.
    trio.engine(1)
        .propose(GROUP, Bytes::from_static(b"after"), 2);
    trio.settle();
    assert_eq!(applied_at(&mut trio, b"after")[0].len(), 1);
    let store = trio.engine(1).snapshot_store().unwrap().clone();
    for pending in pending {
        let (index, term) = (pending.index, pending.term);
        let result = pending.store();
        assert!(matches!(result, Ok(bytes) if bytes > 0), "{result:?}");
        trio.engine(1)
            .snapshot_stored(GROUP, index, term, result)
            .unwrap();
    }
    let restored = start_engine_with(
        1,
        MemLog::new(),
        Some(store),
        max,
        never,
        Reverser::default(),
    );
    let applied = &restored.state_machine().applied;
    assert_eq!(
        applied
            .iter()
            .map(|(_, payload)| &payload[..])
            .collect::<Vec<_>>(),
        [&b"before"[..]],
        "the snapshot at {index} holds what was applied through it, and nothing after"
    );
    assert!(applied.iter().all(|(at, _)| *at <= index));
}
