//! One test per rule of the Raft paper (Ongaro & Ousterhout, "In Search of an Understandable
//! Consensus Algorithm", §5.1–§5.4), plus the extensions ringraft adopts from the Raft thesis
//! (pre-vote, check-quorum, leader lease, leadership transfer). Each test names its section and
//! states the rule it checks.

mod core_helpers;

use core_helpers::*;
use ringraft::core::{Action, AppendOutcome, BrokenRule, Input, Message, ProposeError, Raft, Role};
use ringraft::types::NodeId;

/// Node 1 of 3 over the log `t1 t2`, put in `role` (leader in term 3, others in term 2).
fn in_role(role: Role) -> Raft {
    let mut raft = Node::new(1, 3).term(2).log(&[(1, 1), (2, 1)]).build();
    match role {
        Role::Follower => {
            follow(&mut raft, 2, 2);
        }
        Role::PreCandidate => {
            tick_until_campaign(&mut raft);
        }
        Role::Candidate => {
            tick_until_campaign(&mut raft);
            deliver(&mut raft, 2, vote_response(3, true, true));
        }
        Role::Leader => {
            elect(&mut raft);
        }
    }
    assert_eq!(raft.role(), role);
    raft
}

const ROLES: [Role; 4] = [
    Role::Follower,
    Role::PreCandidate,
    Role::Candidate,
    Role::Leader,
];

/// The `prev_index` of every rejection `from` sent `to`, in delivery order.
fn rejected_prev_indexes_between(cluster: &Cluster, from: u64, to: u64) -> Vec<u64> {
    cluster
        .delivered_between(from, to)
        .into_iter()
        .filter_map(|message| match message {
            Message::AppendResponse {
                outcome: AppendOutcome::Rejected { prev_index, .. },
                ..
            } => Some(prev_index.0),
            _ => None,
        })
        .collect()
}

// ---- §5.1 Raft basics: terms ---------------------------------------------------------------

/// §5.1: whenever a server sees a term larger than its own in any request or response, it
/// adopts that term (durably, with no vote cast in it) and becomes a follower; if the message
/// was AppendEntries, its sender is the leader of that term.
#[test]
fn s5_1_higher_term_in_any_message_makes_any_role_adopt_it_as_follower() {
    let messages = [
        ("append", heartbeat(9, 0, 0, 0), Some(2)),
        ("append response", rejected(9, 2, 0, None), None),
        ("vote response", vote_response(9, false, false), None),
    ];
    for role in ROLES {
        for (kind, message, leader) in messages.clone() {
            let mut raft = in_role(role);
            let out = deliver(&mut raft, 2, message);
            assert_eq!(out[0], save(9, None, 0), "{role:?} got {kind}");
            assert_eq!(
                out[1],
                role_changed(Role::Follower, 9, leader),
                "{role:?} got {kind}"
            );
            assert_eq!(raft.role(), Role::Follower, "{role:?} got {kind}");
            assert_eq!(raft.term(), t(9));
            assert_eq!(raft.vote(), None);
            assert_eq!(raft.leader(), leader.map(NodeId));
        }
    }
}

/// §5.1: a request carrying a term older than the receiver's is rejected, and the reply
/// carries the receiver's term so the stale sender learns it is out of date. Nothing of the
/// receiver's state changes.
#[test]
fn s5_1_stale_term_requests_are_rejected_with_the_current_term() {
    for role in ROLES {
        let mut raft = in_role(role);
        let term = raft.term().0;
        let last = raft.last_index().0;
        let hard_state = raft.hard_state();
        let out = deliver(&mut raft, 3, append(1, (2, 1), 2, vec![batch(1, 3, 1)]));
        assert_eq!(
            out,
            vec![send(3, rejected(term, 2, last, None))],
            "{role:?}"
        );
        let out = deliver(&mut raft, 3, vote_request(1, (9, 9), false));
        assert_eq!(
            out,
            vec![send(3, vote_response(term, false, false))],
            "{role:?}"
        );
        assert_eq!(raft.hard_state(), hard_state, "{role:?}");
        assert_eq!(raft.last_index().0, last, "{role:?}");
        assert_eq!(raft.role(), role);
    }
}

/// §5.1: responses from an older term answer a question nobody is asking any more; they are
/// dropped, so stale votes never elect and stale acknowledgements never commit.
#[test]
fn s5_1_stale_term_responses_are_ignored() {
    let mut leader = in_role(Role::Leader);
    assert_eq!(deliver(&mut leader, 2, accepted(2, 3)), vec![]);
    assert_eq!(deliver(&mut leader, 3, accepted(2, 3)), vec![]);
    persist_all(&mut leader);
    assert_eq!(leader.commit_index(), i(0));
    assert_eq!(leader.progress(n(2)).unwrap().match_index, i(0));

    let mut candidate = in_role(Role::Candidate);
    assert_eq!(
        deliver(&mut candidate, 2, vote_response(2, false, true)),
        vec![]
    );
    assert_eq!(
        deliver(&mut candidate, 3, vote_response(2, false, true)),
        vec![]
    );
    assert_eq!(candidate.role(), Role::Candidate);
}

// ---- §5.2 Leader election ------------------------------------------------------------------

/// §5.2: a follower that hears nothing for an election timeout increments its term, votes for
/// itself and asks every other server for its vote. Its own vote must be durable before the
/// requests go out, so they wait for the hard state (`after_persist`).
#[test]
fn s5_2_follower_that_hears_nothing_becomes_candidate_and_votes_for_itself() {
    let mut raft = Node::new(1, 5)
        .term(3)
        .log(&[(2, 2), (3, 1)])
        .without_pre_vote()
        .build();
    let out = tick_until_campaign(&mut raft);
    let request = vote_request(4, (3, 3), false);
    assert_eq!(
        out,
        vec![
            save(4, Some(1), 0),
            role_changed(Role::Candidate, 4, None),
            send_after_persist(2, request.clone()),
            send_after_persist(3, request.clone()),
            send_after_persist(4, request.clone()),
            send_after_persist(5, request),
        ]
    );
}

/// §5.2: a follower stays a follower as long as it receives valid AppendEntries (heartbeats)
/// from a current leader; each one restarts its election timer.
#[test]
fn s5_2_heartbeats_keep_a_follower_from_campaigning() {
    let mut raft = Node::new(2, 3).build();
    follow(&mut raft, 1, 1);
    let timeout = raft.config().election_timeout_ticks;
    for _ in 0..10 {
        for _ in 0..timeout - 1 {
            assert_eq!(tick(&mut raft), vec![]);
        }
        deliver(&mut raft, 1, heartbeat(1, 0, 0, 0));
    }
    assert_eq!((raft.role(), raft.term()), (Role::Follower, t(1)));
}

/// §5.2: election timeouts are chosen at random from a fixed interval — here `[et, 2·et)` —
/// anew at every reset, and independently on each server, so split votes are rare.
#[test]
fn s5_2_election_timeouts_are_random_in_one_to_two_timeouts_and_differ_across_servers() {
    let mut sequences = Vec::new();
    for id in 1..=5 {
        let leader = if id == 1 { 2 } else { 1 };
        let mut raft = Node::new(id, 5).build();
        let base = raft.config().election_timeout_ticks;
        let mut drawn = Vec::new();
        for _ in 0..100 {
            deliver(&mut raft, leader, heartbeat(1, 0, 0, 0));
            let timeout = raft.randomized_election_timeout();
            assert!(
                (base..2 * base).contains(&timeout),
                "n{id}: timeout {timeout} outside [{base}, {})",
                2 * base
            );
            drawn.push(timeout);
        }
        let mut distinct = drawn.clone();
        distinct.sort();
        distinct.dedup();
        assert!(
            distinct.len() >= base as usize / 2,
            "n{id} drew {distinct:?}"
        );
        sequences.push(drawn);
    }
    for (a, b) in [(0, 1), (1, 2), (2, 3), (3, 4), (0, 4)] {
        assert_ne!(
            sequences[a], sequences[b],
            "two servers draw the same timeouts"
        );
    }
}

/// §5.2: a follower starts its election exactly when its randomized timeout has elapsed
/// without word from a leader.
#[test]
fn s5_2_follower_campaigns_exactly_when_its_randomized_timeout_elapses() {
    for id in 1..=3 {
        let mut raft = Node::new(id, 3).build();
        let timeout = raft.randomized_election_timeout();
        for _ in 1..timeout {
            tick(&mut raft);
        }
        assert_eq!(
            raft.role(),
            Role::Follower,
            "n{id} after {} ticks",
            timeout - 1
        );
        tick(&mut raft);
        assert_eq!(
            raft.role(),
            Role::PreCandidate,
            "n{id} after {timeout} ticks"
        );
    }
}

/// §5.2: a candidate that receives votes from a majority of the servers (itself included)
/// becomes leader, and at once sends AppendEntries to every other server to establish its
/// authority.
#[test]
fn s5_2_candidate_with_votes_from_a_majority_becomes_leader_and_announces_itself() {
    let mut raft = Node::new(1, 5).without_pre_vote().build();
    tick_until_campaign(&mut raft);
    deliver(&mut raft, 4, vote_response(1, false, true));
    assert_eq!(raft.role(), Role::Candidate, "two votes of five");
    let out = deliver(&mut raft, 2, vote_response(1, false, true));
    assert_eq!(raft.role(), Role::Leader, "three votes of five");
    assert_eq!(out[0], role_changed(Role::Leader, 1, Some(1)));
    let receivers: Vec<NodeId> = appends(&out).into_iter().map(|(to, _)| to).collect();
    assert_eq!(receivers, vec![n(2), n(3), n(4), n(5)]);
}

/// §5.2: a candidate that receives AppendEntries from a leader whose term is at least its own
/// recognises that leader and returns to follower (a pre-candidate too).
#[test]
fn s5_2_candidate_returns_to_follower_on_append_from_a_leader_of_its_term() {
    for role in [Role::PreCandidate, Role::Candidate] {
        let mut raft = in_role(role);
        let term = raft.term().0;
        let out = deliver(&mut raft, 3, heartbeat(term, 2, 2, 0));
        assert_eq!(
            out,
            vec![
                role_changed(Role::Follower, term, Some(3)),
                send(3, accepted(term, 2)),
            ],
            "{role:?}"
        );
        assert_eq!(raft.leader(), Some(n(3)));
    }
}

/// §5.2: a candidate that a majority refuses has lost the election and returns to follower.
#[test]
fn s5_2_candidate_refused_by_a_majority_loses_the_election() {
    let mut raft = Node::new(1, 5).without_pre_vote().build();
    tick_until_campaign(&mut raft);
    for voter in 2..=3 {
        deliver(&mut raft, voter, vote_response(1, false, false));
        assert_eq!(raft.role(), Role::Candidate);
    }
    deliver(&mut raft, 4, vote_response(1, false, false));
    assert_eq!(raft.role(), Role::Follower);
    assert_eq!((raft.term(), raft.leader()), (t(1), None));
}

/// §5.2: when no candidate wins (a split vote), each candidate times out and starts a new
/// election with a higher term; votes of the old term no longer count.
#[test]
fn s5_2_split_vote_times_out_into_a_new_election_with_a_higher_term() {
    let mut raft = Node::new(1, 5).without_pre_vote().build();
    tick_until_campaign(&mut raft);
    deliver(&mut raft, 2, vote_response(1, false, true));
    deliver(&mut raft, 3, vote_response(1, false, false));
    deliver(&mut raft, 4, vote_response(1, false, false));
    assert_eq!((raft.role(), raft.term()), (Role::Candidate, t(1)));

    let out = tick_until_campaign_again(&mut raft);
    assert_eq!(out[0], save(2, Some(1), 0));
    assert_eq!((raft.role(), raft.term()), (Role::Candidate, t(2)));
    deliver(&mut raft, 2, vote_response(2, false, true));
    assert_eq!(raft.role(), Role::Candidate, "two of five in term 2");
    deliver(&mut raft, 3, vote_response(2, false, true));
    assert_eq!(raft.role(), Role::Leader);
}

fn tick_until_campaign_again(raft: &mut Raft) -> Vec<Action> {
    let term = raft.term();
    for _ in 0..2 * raft.config().election_timeout_ticks {
        let out = tick(raft);
        if raft.term() != term {
            return out;
        }
    }
    panic!("no new election");
}

/// §5.2: each server votes for at most one candidate per term, first come first served, and
/// (Figure 2) the vote is on stable storage before the reply is sent.
#[test]
fn s5_2_each_server_votes_at_most_once_per_term_and_persists_the_vote_first() {
    let mut voter = Node::new(1, 5).term(1).build();
    let out = deliver(&mut voter, 2, vote_request(2, (0, 0), false));
    assert_eq!(
        &out[2..],
        &[
            save(2, Some(2), 0),
            send_after_persist(2, vote_response(2, false, true)),
        ]
    );
    for rival in 3..=5 {
        let out = deliver(&mut voter, rival, vote_request(2, (0, 0), false));
        assert_eq!(out, vec![send(rival, vote_response(2, false, false))]);
    }
    assert_eq!(voter.vote(), Some(n(2)));
    // A new term is a new vote.
    let out = deliver(&mut voter, 3, vote_request(3, (0, 0), false));
    assert_eq!(
        out.last(),
        Some(&send_after_persist(3, vote_response(3, false, true)))
    );
}

/// §5.2: a candidate has voted for itself in its term, so it refuses every rival of that term.
#[test]
fn s5_2_candidate_refuses_rivals_of_its_own_term() {
    let mut raft = in_role(Role::Candidate);
    let out = deliver(&mut raft, 3, vote_request(3, (9, 9), false));
    assert_eq!(out, vec![send(3, vote_response(3, false, false))]);
    assert_eq!(raft.vote(), Some(n(1)));
}

/// §5.2: once elected, a leader sends empty AppendEntries (heartbeats) to every follower at a
/// fixed interval shorter than the election timeout, carrying its commit index.
#[test]
fn s5_2_leader_sends_heartbeats_at_the_interval() {
    let mut leader = Node::new(1, 3).build();
    elect_and_settle(&mut leader);
    let interval = leader.config().heartbeat_interval_ticks;
    let mut heartbeats_at = Vec::new();
    for now in 1..=5 * interval {
        for (to, request) in appends(&tick(&mut leader)) {
            assert_eq!(request.batches, vec![]);
            assert_eq!((request.term, request.commit), (t(1), i(1)));
            heartbeats_at.push((now, to.0));
        }
    }
    let expected: Vec<(u32, u64)> = (1..=5)
        .flat_map(|round| [(round * interval, 2), (round * interval, 3)])
        .collect();
    assert_eq!(heartbeats_at, expected);
}

/// §5.2: elections in a cluster end with exactly one leader, which every server follows.
#[test]
fn s5_2_cluster_elects_exactly_one_leader() {
    let mut cluster = Cluster::fresh(5);
    let leader = cluster.elect_any();
    let term = cluster.node(leader.0).term();
    for raft in cluster.nodes.values() {
        assert_eq!(raft.term(), term);
        assert_eq!(raft.leader(), Some(leader));
        let expected = if raft.id() == leader {
            Role::Leader
        } else {
            Role::Follower
        };
        assert_eq!(raft.role(), expected);
    }
}

// ---- §5.3 Log replication ------------------------------------------------------------------

/// §5.3: the leader appends a client's command to its log as a new entry of its term, then
/// sends AppendEntries with it to every follower (without waiting for its own write).
#[test]
fn s5_3_leader_appends_a_proposal_and_sends_it_to_every_follower() {
    let mut leader = Node::new(1, 3).build();
    elect_and_settle(&mut leader);
    let out = propose(&mut leader, &["set x 1"]);
    let entry = placed(&["set x 1"], 1, 2);
    let request = append(1, (1, 1), 1, vec![entry.clone()]);
    assert_eq!(
        &out[1..],
        &[
            Action::AppendLog(entry),
            send(2, request.clone()),
            send(3, request)
        ]
    );
}

/// §5.3: the consistency check — a follower refuses AppendEntries when its log holds no entry
/// at the preceding index (here: its log is too short).
#[test]
fn s5_3_follower_rejects_append_whose_previous_entry_it_lacks() {
    let mut raft = Node::new(2, 3).term(2).log(&[(1, 2)]).build();
    follow(&mut raft, 1, 2);
    let out = deliver(&mut raft, 1, append(2, (3, 2), 0, vec![batch(2, 4, 1)]));
    assert_eq!(out, vec![send(1, rejected(2, 3, 2, None))]);
    assert_eq!(raft.last_index(), i(2));
}

/// §5.3: the consistency check — a follower refuses AppendEntries when its entry at the
/// preceding index has another term than the leader's.
#[test]
fn s5_3_follower_rejects_append_whose_previous_term_differs() {
    let mut raft = Node::new(2, 3).term(3).log(&[(1, 1), (2, 2)]).build();
    follow(&mut raft, 1, 3);
    let out = deliver(&mut raft, 1, append(3, (3, 3), 0, vec![batch(3, 4, 1)]));
    assert_eq!(out, vec![send(1, rejected(3, 3, 3, Some((2, 2))))]);
    assert_eq!(terms_of(&raft), vec![1, 2, 2]);
}

/// §5.3: if an existing entry conflicts with a new one (same index, other term), the follower
/// deletes it and everything after it, then appends the leader's entries.
#[test]
fn s5_3_follower_deletes_a_conflicting_entry_and_all_that_follow_it() {
    let mut raft = Node::new(2, 3).term(2).log(&[(1, 2), (2, 3)]).build();
    follow(&mut raft, 1, 3);
    let out = deliver(
        &mut raft,
        1,
        append(3, (2, 1), 0, vec![batch(1, 3, 1), batch(3, 4, 1)]),
    );
    assert_eq!(
        out,
        vec![
            Action::TruncateLog { from: i(3) },
            Action::AppendLog(batch(1, 3, 1)),
            Action::AppendLog(batch(3, 4, 1)),
        ]
    );
    assert_eq!(terms_of(&raft), vec![1, 1, 1, 3]);
}

/// §5.3 (Figure 2, AppendEntries rule 3): entries a follower already holds are left alone;
/// in particular a delayed, shorter AppendEntries never truncates entries that came after it.
#[test]
fn s5_3_follower_keeps_entries_it_already_holds() {
    let mut raft = Node::new(2, 3).term(2).log(&[(1, 1)]).build();
    follow(&mut raft, 1, 2);
    deliver(&mut raft, 1, append(2, (1, 1), 0, vec![batch(2, 2, 3)]));
    persist_all(&mut raft);
    let out = deliver(&mut raft, 1, append(2, (1, 1), 0, vec![batch(2, 2, 1)]));
    assert_eq!(
        out,
        vec![send(1, accepted(2, 4))],
        "acks all it knows to match"
    );
    assert_eq!(terms_of(&raft), vec![1, 2, 2, 2]);
}

/// §5.3: a follower sets its commit index to min(leader's commit, index of the last entry the
/// request made known to match) — never past what it knows agrees with the leader.
#[test]
fn s5_3_follower_commits_up_to_the_leader_commit_but_not_past_the_matched_entries() {
    let mut raft = Node::new(2, 3).term(2).log(&[(1, 2)]).build();
    follow(&mut raft, 1, 2);
    deliver(&mut raft, 1, append(2, (2, 1), 7, vec![batch(2, 3, 2)]));
    assert_eq!(raft.commit_index(), i(4), "min(7, 4)");
    deliver(&mut raft, 1, heartbeat(2, 3, 2, 4));
    assert_eq!(raft.commit_index(), i(4));
    let mut raft = Node::new(2, 3).term(2).log(&[(1, 4)]).build();
    follow(&mut raft, 1, 2);
    deliver(&mut raft, 1, heartbeat(2, 2, 1, 9));
    assert_eq!(
        raft.commit_index(),
        i(2),
        "entries 3..4 are not known to match"
    );
}

/// §5.3 with the durability rule of Figure 2 ("before responding to RPCs, update stable
/// storage"): a follower acknowledges entries only once they are durable.
#[test]
fn s5_3_follower_acknowledges_entries_only_once_durable() {
    let mut raft = Node::new(2, 3).term(2).build();
    follow(&mut raft, 1, 2);
    let out = deliver(&mut raft, 1, append(2, (0, 0), 0, vec![batch(2, 1, 2)]));
    assert_eq!(sends(&out), vec![]);
    assert_eq!(persisted(&mut raft, 1, 2), vec![send(1, accepted(2, 1))]);
    assert_eq!(persisted(&mut raft, 2, 2), vec![send(1, accepted(2, 2))]);
}

/// §5.3: the leader retries AppendEntries until every follower stores every entry, even when
/// the messages carrying them were lost — whether or not the transport reported the loss.
#[test]
fn s5_3_leader_retries_until_a_follower_that_missed_entries_has_them() {
    for reported in [false, true] {
        let mut cluster = Cluster::fresh(3);
        let leader = cluster.elect_any().0;
        let lagging = if leader == 3 { 2 } else { 3 };
        cluster.isolate(lagging);
        cluster.step(leader, Input::Propose(proposal(&["a"])));
        cluster.deliver_all();
        if reported {
            cluster.step(leader, Input::Unreachable { peer: n(lagging) });
        }
        cluster.rejoin(lagging);
        let last = cluster.node(leader).last_index();
        cluster.tick_until(20, |cluster| cluster.node(lagging).last_index() == last);
        assert_eq!(
            terms_of(cluster.node(lagging)),
            terms_of(cluster.node(leader))
        );
    }
}

/// §5.3 (Leader Append-Only): a leader never overwrites or deletes entries in its log; only
/// followers' logs are changed to match the leader's. A peer claiming to lead the same term is
/// ignored rather than obeyed.
#[test]
fn s5_3_leader_never_overwrites_its_own_log() {
    let mut leader = Node::new(1, 3).term(2).log(&[(1, 2), (2, 1)]).build();
    elect(&mut leader);
    let before = terms_of(&leader);
    let out = deliver(&mut leader, 2, append(3, (1, 1), 9, vec![batch(3, 2, 4)]));
    assert_eq!(out, vec![]);
    assert_eq!(terms_of(&leader), before);
    assert_eq!(leader.commit_index(), i(0));
    for (from, reply) in [
        (2, rejected(3, 3, 3, Some((1, 1)))),
        (3, rejected(3, 3, 0, None)),
    ] {
        let out = deliver(&mut leader, from, reply);
        assert!(!touches_storage(&out), "{out:?}");
    }
    assert_eq!(terms_of(&leader), before);
}

/// The logs of Figure 7: the leader of term 8 and followers (a)–(f) with missing, extra, or
/// both kinds of entries.
const FIGURE_7_LEADER: &[(u64, u64)] = &[(1, 3), (4, 2), (5, 2), (6, 3)];
const FIGURE_7_FOLLOWERS: [(&str, &[(u64, u64)]); 6] = [
    ("a", &[(1, 3), (4, 2), (5, 2), (6, 2)]),
    ("b", &[(1, 3), (4, 1)]),
    ("c", &[(1, 3), (4, 2), (5, 2), (6, 4)]),
    ("d", &[(1, 3), (4, 2), (5, 2), (6, 3), (7, 2)]),
    ("e", &[(1, 3), (4, 4)]),
    ("f", &[(1, 3), (2, 3), (3, 5)]),
];

/// The leader of Figure 7 elected in term 8 in a two-node group with `follower`, after all
/// messages have been delivered.
fn figure_7(follower: &[(u64, u64)]) -> Cluster {
    let leader = Node::new(1, 2).term(7).log(FIGURE_7_LEADER).build();
    let follower = Node::new(2, 2).log(follower).build();
    let mut cluster = Cluster::new(vec![leader, follower]);
    cluster.force_elect(1);
    assert_eq!(cluster.node(1).term(), t(8));
    cluster.deliver_all();
    cluster
}

/// §5.3, Figure 7: whatever a follower's log looks like — missing entries, extra uncommitted
/// entries, or both — the leader finds the latest entry where they agree, the follower deletes
/// everything after it, and ends with exactly the leader's log; then both commit it all.
#[test]
fn s5_3_figure_7_leader_brings_every_follower_into_agreement() {
    let mut expected = terms(FIGURE_7_LEADER);
    expected.push(8); // the new leader's no-op
    for (case, follower) in FIGURE_7_FOLLOWERS {
        let mut cluster = figure_7(follower);
        assert_eq!(terms_of(cluster.node(2)), expected, "case ({case})");
        assert_eq!(terms_of(cluster.node(1)), expected, "case ({case}): leader");
        for _ in 0..cluster.node(1).config().heartbeat_interval_ticks {
            cluster.step(1, Input::Tick);
        }
        cluster.deliver_all();
        assert_eq!(cluster.node(1).commit_index(), i(11), "case ({case})");
        assert_eq!(cluster.node(2).commit_index(), i(11), "case ({case})");
        let leader_actions = &cluster.actions[&n(1)];
        assert!(
            !leader_actions
                .iter()
                .any(|action| matches!(action, Action::TruncateLog { .. })),
            "case ({case}): the leader truncated its own log"
        );
    }
}

/// §5.3 (the optimisation at the end of the section): a rejection names the conflicting term
/// and its first index, so the leader skips a whole term per round trip instead of one entry.
/// Follower (f) of Figure 7 differs in 8 entries but costs two rejections; (e) also two.
#[test]
fn s5_3_rejection_hint_makes_the_leader_back_up_a_term_per_round_trip() {
    let rejected_prev_indexes: Vec<(&str, Vec<u64>)> = FIGURE_7_FOLLOWERS
        .iter()
        .map(|&(case, follower)| {
            (
                case,
                rejected_prev_indexes_between(&figure_7(follower), 2, 1),
            )
        })
        .collect();
    assert_eq!(
        rejected_prev_indexes,
        vec![
            ("a", vec![10]),
            ("b", vec![10]),
            ("c", vec![]),
            ("d", vec![]),
            ("e", vec![10, 7]),
            ("f", vec![10, 6]),
        ]
    );
}

// ---- §5.4 Safety ---------------------------------------------------------------------------

/// §5.4.1: a voter refuses a candidate whose last entry has an older term than its own, however
/// long the candidate's log is.
#[test]
fn s5_4_1_vote_refused_to_a_candidate_whose_last_term_is_older() {
    let mut voter = Node::new(2, 3).term(3).log(&[(1, 1), (3, 1)]).build();
    let out = deliver(&mut voter, 1, vote_request(4, (10, 2), false));
    assert_eq!(out.last(), Some(&send(1, vote_response(4, false, false))));
    assert_eq!(voter.vote(), None);
}

/// §5.4.1: with equal last terms, a voter refuses a candidate whose log is shorter than its
/// own.
#[test]
fn s5_4_1_vote_refused_to_a_candidate_with_a_shorter_log_of_the_same_last_term() {
    let mut voter = Node::new(2, 3).term(3).log(&[(1, 1), (3, 3)]).build();
    let out = deliver(&mut voter, 1, vote_request(4, (3, 3), false));
    assert_eq!(out.last(), Some(&send(1, vote_response(4, false, false))));
    assert_eq!(voter.vote(), None);
}

/// §5.4.1: a candidate is at least as up to date if its last term is newer (even with a
/// shorter log), or equal with a log at least as long.
#[test]
fn s5_4_1_vote_granted_to_an_at_least_as_up_to_date_candidate() {
    for (last_index, last_term) in [(2, 4), (4, 3), (6, 3)] {
        let mut voter = Node::new(2, 3).term(3).log(&[(1, 1), (3, 3)]).build();
        let out = deliver(
            &mut voter,
            1,
            vote_request(5, (last_index, last_term), false),
        );
        assert_eq!(
            out.last(),
            Some(&send_after_persist(1, vote_response(5, false, true))),
            "candidate log ending at {last_index}@t{last_term}"
        );
    }
}

/// §5.4.1 with pre-vote (thesis §9.6): a pre-vote applies the same up-to-date check, so a
/// server that could not win a real election cannot even start one.
#[test]
fn s5_4_1_pre_vote_applies_the_same_up_to_date_check() {
    for ((last_index, last_term), granted) in [((10, 2), false), ((3, 3), false), ((4, 3), true)] {
        let mut voter = Node::new(2, 3).term(3).log(&[(1, 1), (3, 3)]).build();
        let out = deliver(
            &mut voter,
            1,
            vote_request(4, (last_index, last_term), true),
        );
        let term = if granted { 4 } else { 3 };
        assert_eq!(out, vec![send(1, vote_response(term, true, granted))]);
    }
}

/// §5.4.2: an entry of the leader's current term is committed once it is stored (durably) on a
/// majority of servers; the leader then applies it.
#[test]
fn s5_4_2_leader_commits_a_current_term_entry_stored_on_a_majority() {
    let mut leader = Node::new(1, 5).build();
    elect_and_settle(&mut leader);
    propose(&mut leader, &["a"]);
    persisted(&mut leader, 2, 1);
    assert_eq!(deliver(&mut leader, 4, accepted(1, 2)), vec![]);
    assert_eq!(leader.commit_index(), i(1), "two copies of five");
    assert_eq!(
        deliver(&mut leader, 5, accepted(1, 2)),
        vec![commit(2), Action::Apply(placed(&["a"], 1, 2))]
    );
}

/// §5.4.2, Figure 8: a leader never commits an entry of an earlier term by counting replicas —
/// (c) S1, leader of term 4, has index 2 (term 2) on a majority, yet (d) S5 could still be
/// elected and overwrite it. Only (e) once an entry of term 4 is on a majority are both
/// committed, by the Log Matching property.
#[test]
fn s5_4_2_figure_8_old_term_entry_is_not_committed_by_counting_replicas() {
    let scenario = |s1: Node| {
        let mut s1 = s1.term(3).log(&[(1, 1), (2, 1)]).commit(1).build();
        elect(&mut s1);
        assert_eq!((s1.term(), s1.last_index()), (t(4), i(3)));
        persist_all(&mut s1);
        let mut out = deliver(&mut s1, 2, accepted(4, 2));
        out.extend(deliver(&mut s1, 3, accepted(4, 2)));
        (s1, out)
    };

    let (mut s1, out) = scenario(Node::new(1, 5));
    assert_eq!(
        commits(&out),
        Vec::<u64>::new(),
        "index 2 is on S1, S2, S3 but is of term 2"
    );
    assert_eq!(s1.commit_index(), i(1));

    // (d): S2, S3 and S4 would elect S5, whose last entry (index 2, term 3) is newer.
    for (voter, voter_log) in [
        (2, &[(1, 1), (2, 1)][..]),
        (3, &[(1, 1), (2, 1)]),
        (4, &[(1, 1)]),
    ] {
        let mut voter = Node::new(voter, 5).term(4).log(voter_log).build();
        let out = deliver(&mut voter, 5, vote_request(5, (2, 3), false));
        assert_eq!(
            out.last(),
            Some(&send_after_persist(5, vote_response(5, false, true)))
        );
    }

    // (e): the no-op of term 4 reaches a majority; it and index 2 commit.
    assert_eq!(
        commits(&deliver(&mut s1, 2, accepted(4, 3))),
        Vec::<u64>::new()
    );
    assert_eq!(commits(&deliver(&mut s1, 3, accepted(4, 3))), vec![3]);
    assert_eq!(s1.commit_index(), i(3));

    // The check above has teeth: counting replicas of an old-term entry commits it.
    let (broken, out) =
        scenario(Node::new(1, 5).breaking(BrokenRule::CommitPreviousTermByCounting));
    assert_eq!(commits(&out), vec![2]);
    assert_eq!(broken.commit_index(), i(2));
}

/// §5.4.2 with durable match indexes (thesis §10.2.1): the leader's own copy counts towards
/// the majority only once it is durable, not when it is appended.
#[test]
fn s5_4_2_leader_copy_counts_only_once_durable() {
    let mut leader = Node::new(1, 3).build();
    elect_and_settle(&mut leader);
    propose(&mut leader, &["a"]);
    assert_eq!(deliver(&mut leader, 2, accepted(1, 2)), vec![]);
    assert_eq!(leader.commit_index(), i(1), "one durable copy of three");
    assert_eq!(
        persisted(&mut leader, 2, 1),
        vec![commit(2), Action::Apply(placed(&["a"], 1, 2))]
    );
}

/// §5.4.2 with durable match indexes (thesis §10.2.1): two durable followers make a majority
/// of three without the leader's own write; the leader commits at once but applies the entry
/// only when its own copy is durable.
#[test]
fn s5_4_2_durable_followers_commit_before_the_leaders_own_write_completes() {
    let mut leader = Node::new(1, 3).build();
    elect_and_settle(&mut leader);
    propose(&mut leader, &["a"]);
    assert_eq!(deliver(&mut leader, 2, accepted(1, 2)), vec![]);
    assert_eq!(deliver(&mut leader, 3, accepted(1, 2)), vec![commit(2)]);
    assert_eq!(
        persisted(&mut leader, 2, 1),
        vec![Action::Apply(placed(&["a"], 1, 2))]
    );
    assert_eq!(leader.applied_index(), i(2));
}

/// §5.4.3 (Leader Completeness): a server missing a committed entry cannot be elected; the
/// next leader is one that holds every committed entry.
#[test]
fn s5_4_3_server_missing_a_committed_entry_cannot_become_leader() {
    let mut cluster = Cluster::fresh(3);
    let old = cluster.elect_any().0;
    let mut others = (1..=3).filter(|&id| id != old);
    let (holder, missing) = (others.next().unwrap(), others.next().unwrap());
    cluster.isolate(missing);
    cluster.step(old, Input::Propose(proposal(&["committed"])));
    cluster.deliver_all();
    let committed = cluster.node(old).last_index();
    assert_eq!(cluster.node(old).commit_index(), committed);

    cluster.isolate(old);
    cluster.rejoin(missing);
    let new = cluster.elect_any().0;
    assert_eq!(new, holder);
    assert_eq!(
        cluster.node(new).entries(committed, committed)[0]
            .payloads()
            .next(),
        Some(&b"committed"[..])
    );
    cluster.tick_until(10, |cluster| {
        cluster.node(missing).commit_index() > committed
    });
}

// ---- Thesis extensions: pre-vote, check-quorum, leader lease, transfer -------------------

/// Thesis §9.6 (pre-vote): a candidate first asks whether it could win, without changing or
/// persisting anything, so a server cut off from the cluster does not inflate its term and
/// does not depose the leader when it comes back.
#[test]
fn thesis_9_6_partitioned_server_rejoins_without_raising_terms() {
    let mut cluster = Cluster::fresh(3);
    let leader = cluster.elect_any();
    let term = cluster.node(leader.0).term();
    let lonely = if leader == n(3) { 2 } else { 3 };
    cluster.isolate(lonely);
    let seen = cluster.actions.get(&n(lonely)).map_or(0, Vec::len);
    for _ in 0..10 * cluster.node(lonely).config().election_timeout_ticks {
        cluster.tick_all();
    }
    let while_alone = &cluster.actions[&n(lonely)][seen..];
    assert!(
        while_alone.iter().any(|action| matches!(
            action,
            Action::RoleChanged {
                role: Role::PreCandidate,
                ..
            }
        )),
        "it kept trying"
    );
    assert!(!touches_storage(while_alone), "pre-votes persist nothing");
    assert_eq!(cluster.node(lonely).term(), term);

    cluster.heal();
    for _ in 0..5 * cluster.node(lonely).config().election_timeout_ticks {
        cluster.tick_all();
        assert_eq!(cluster.node(leader.0).role(), Role::Leader);
    }
    assert_eq!(cluster.agreed_leader(), Some(leader));
    assert!(cluster.nodes.values().all(|raft| raft.term() == term));
}

/// Thesis §6.2 (check-quorum): a leader that has not heard from a majority within an election
/// timeout steps down. Rounds are one election timeout long and a new leader gets the benefit
/// of the doubt for its first round, so an isolated leader is gone within two timeouts.
#[test]
fn thesis_6_2_leader_that_hears_from_no_majority_steps_down() {
    let mut leader = Node::new(1, 3).build();
    elect_and_settle(&mut leader);
    let timeout = leader.config().election_timeout_ticks;
    for _ in 0..timeout {
        tick(&mut leader);
    }
    assert_eq!(leader.role(), Role::Leader);
    let mut out = Vec::new();
    for _ in 0..timeout {
        out.extend(tick(&mut leader));
    }
    assert_eq!(leader.role(), Role::Follower);
    assert!(out.contains(&role_changed(Role::Follower, 1, None)));
    assert_eq!(leader.term(), t(1), "stepping down does not start a term");
}

/// Thesis §6.2: a leader that hears from a majority (itself and one follower of three) in
/// every round keeps its leadership.
#[test]
fn thesis_6_2_leader_that_hears_from_a_majority_stays() {
    let mut leader = Node::new(1, 3).build();
    elect_and_settle(&mut leader);
    for _ in 0..20 * leader.config().election_timeout_ticks {
        let out = tick(&mut leader);
        for (to, request) in appends(&out) {
            if to == n(2) {
                let matched = request.prev_index.0;
                deliver(&mut leader, 2, accepted(1, matched));
            }
        }
        assert_eq!(leader.role(), Role::Leader);
    }
}

/// Thesis §4.2.3 (leader lease): a server that heard from a current leader within the minimum
/// election timeout ignores vote requests of higher terms, so a server that was removed or cut
/// off cannot force an election.
#[test]
fn thesis_4_2_3_follower_in_a_lease_ignores_disruptive_vote_requests() {
    let mut follower = Node::new(2, 3).term(1).log(&[(1, 1)]).build();
    follow(&mut follower, 1, 1);
    assert_eq!(
        deliver(&mut follower, 3, vote_request(5, (9, 4), false)),
        vec![]
    );
    assert_eq!((follower.term(), follower.leader()), (t(1), Some(n(1))));
    for _ in 0..follower.config().election_timeout_ticks {
        tick(&mut follower);
    }
    let out = deliver(&mut follower, 3, vote_request(5, (9, 4), false));
    assert_eq!(
        out.last(),
        Some(&send_after_persist(3, vote_response(5, false, true))),
        "after the lease the request is heard"
    );
}

/// Thesis §3.10 (leadership transfer): the leader stops accepting proposals, brings the target
/// up to date, and sends it TimeoutNow; the target starts an election at once, which the
/// others (and the old leader) grant despite their leases. The target leads the next term.
#[test]
fn thesis_3_10_leadership_transfer_hands_over_to_the_target() {
    let mut cluster = Cluster::fresh(3);
    let old = cluster.elect_any();
    let term = cluster.node(old.0).term();
    let target = if old == n(2) { 3 } else { 2 };
    cluster.step(old.0, Input::TransferLeadership { to: n(target) });
    cluster.step(old.0, Input::Propose(proposal(&["late"])));
    assert_eq!(
        cluster.actions[&old].last(),
        Some(&Action::Rejected(ProposeError::Transferring))
    );
    cluster.deliver_all();
    assert_eq!(cluster.agreed_leader(), Some(n(target)));
    assert_eq!(cluster.node(target).term(), term.next());
}

/// Thesis §3.10: a target that lags behind is first sent the missing entries; TimeoutNow goes
/// out only once it has acknowledged the leader's whole log.
#[test]
fn thesis_3_10_transfer_to_a_lagging_target_waits_for_it_to_catch_up() {
    let mut leader = Node::new(1, 3).build();
    elect_and_settle(&mut leader);
    propose(&mut leader, &["a"]);
    let out = step(&mut leader, Input::TransferLeadership { to: n(2) });
    assert!(
        !sends(&out)
            .iter()
            .any(|(_, message)| matches!(message, Message::TimeoutNow { .. })),
        "{out:?}"
    );
    let out = deliver(&mut leader, 2, accepted(1, 2));
    assert_eq!(out, vec![send(2, Message::TimeoutNow { term: t(1) })]);
}

/// Thesis §3.10: a transfer that does not complete within an election timeout is abandoned
/// and the leader accepts proposals again.
#[test]
fn thesis_3_10_transfer_that_does_not_complete_is_abandoned() {
    let mut leader = Node::new(1, 3).build();
    elect_and_settle(&mut leader);
    propose(&mut leader, &["a"]);
    step(&mut leader, Input::TransferLeadership { to: n(2) });
    assert_eq!(leader.transfer_target(), Some(n(2)));
    for _ in 0..leader.config().election_timeout_ticks {
        tick(&mut leader);
    }
    assert_eq!(leader.transfer_target(), None);
    assert!(matches!(
        propose(&mut leader, &["b"])[0],
        Action::Accepted { .. }
    ));
}

/// §8 (client interaction): a server that is not the leader rejects a client's request and
/// names the most recent leader it knows, if any.
#[test]
fn s8_non_leader_refuses_proposals_naming_the_leader_it_knows() {
    let mut follower = in_role(Role::Follower);
    assert_eq!(
        propose(&mut follower, &["a"]),
        vec![Action::Rejected(ProposeError::NotLeader {
            leader: Some(n(2))
        })]
    );
    for role in [Role::PreCandidate, Role::Candidate] {
        let mut raft = in_role(role);
        assert_eq!(
            propose(&mut raft, &["a"]),
            vec![Action::Rejected(ProposeError::NotLeader { leader: None })]
        );
    }
}
