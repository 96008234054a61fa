//! Exact-action tests: put one core in a known state, step ONE input, and compare the whole
//! list of actions it emits. The inputs are the tricky ones: stale terms, duplicated and
//! reordered acknowledgements, durability reports that arrive after the world moved on, and
//! rejection hints.

mod core_helpers;

use core_helpers::*;
use ringraft::core::{Action, Input, MembershipChange, Message, ProposeError, Raft, Role};
use ringraft::types::{LogIndex, NodeId, Term};

/// Node 1 of 3, leader of term 1 with its no-op (index 1) committed and acknowledged by both
/// followers, which are in the replicate state.
fn settled_leader() -> Raft {
    let mut leader = Node::new(1, 3).build();
    elect_and_settle(&mut leader);
    assert_eq!(leader.commit_index(), i(1));
    leader
}

/// Node 1 of 3, just elected leader of term 5 over a log `t1 t1 t3 t3`; its no-op is index 5
/// and its first probe to each follower (prev = 4 @ t3) is out.
fn leader_over_two_terms() -> Raft {
    let mut leader = Node::new(1, 3).term(4).log(&[(1, 2), (3, 2)]).build();
    elect(&mut leader);
    assert_eq!((leader.term(), leader.last_index()), (t(5), i(5)));
    leader
}

// ---- stale terms ---------------------------------------------------------------------------

#[test]
fn follower_rejects_stale_term_append_with_its_own_term() {
    let mut follower = Node::new(2, 3).term(3).log(&[(1, 2), (2, 1)]).build();
    let out = deliver(&mut follower, 1, append(2, (3, 2), 3, vec![batch(2, 4, 1)]));
    assert_eq!(out, vec![send(1, rejected(3, 3, 3, None))]);
    assert_eq!(follower.last_index(), i(3));
    assert_eq!(follower.commit_index(), i(0));
    assert_eq!(follower.leader(), None);
}

#[test]
fn follower_refuses_stale_term_vote_request_without_persisting() {
    let mut follower = Node::new(2, 3).term(3).build();
    let out = deliver(&mut follower, 3, vote_request(2, (9, 2), false));
    assert_eq!(out, vec![send(3, vote_response(3, false, false))]);
    assert_eq!(follower.vote(), None);
}

#[test]
fn pre_vote_for_a_term_not_above_ours_is_refused() {
    let mut follower = Node::new(2, 3).term(3).build();
    let out = deliver(&mut follower, 3, vote_request(3, (9, 3), true));
    assert_eq!(out, vec![send(3, vote_response(3, true, false))]);
}

#[test]
fn leader_ignores_stale_term_append_responses() {
    let mut leader = leader_over_two_terms();
    assert_eq!(deliver(&mut leader, 2, accepted(4, 5)), vec![]);
    assert_eq!(
        deliver(&mut leader, 3, rejected(4, 4, 1, None)),
        vec![],
        "a stale rejection must not move the follower's progress"
    );
    let progress = leader.progress(n(2)).unwrap();
    assert_eq!((progress.match_index, progress.next_index), (i(0), i(5)));
    assert_eq!(leader.commit_index(), i(0));
}

#[test]
fn candidate_does_not_count_a_grant_from_an_earlier_term() {
    let mut candidate = Node::new(1, 3).term(4).without_pre_vote().build();
    tick_until_campaign(&mut candidate);
    assert_eq!(
        (candidate.role(), candidate.term()),
        (Role::Candidate, t(5))
    );
    assert_eq!(
        deliver(&mut candidate, 2, vote_response(4, false, true)),
        vec![]
    );
    assert_eq!(candidate.role(), Role::Candidate);
}

#[test]
fn leader_ignores_an_append_claiming_its_own_term() {
    let mut leader = settled_leader();
    let out = deliver(&mut leader, 2, append(1, (1, 1), 1, vec![batch(1, 2, 3)]));
    assert_eq!(out, vec![]);
    assert_eq!((leader.role(), leader.last_index()), (Role::Leader, i(1)));
}

// ---- term changes --------------------------------------------------------------------------

#[test]
fn leader_steps_down_on_higher_term_heartbeat_and_acks_the_new_leader() {
    let mut leader = settled_leader();
    let out = deliver(&mut leader, 2, heartbeat(2, 1, 1, 1));
    assert_eq!(
        out,
        vec![
            save(2, None, 1),
            role_changed(Role::Follower, 2, Some(2)),
            send(2, accepted(2, 1)),
        ]
    );
}

#[test]
fn leader_steps_down_on_higher_term_rejection() {
    let mut leader = settled_leader();
    let out = deliver(&mut leader, 3, rejected(4, 1, 0, None));
    assert_eq!(
        out,
        vec![save(4, None, 1), role_changed(Role::Follower, 4, None)]
    );
}

// ---- duplicated and reordered acknowledgements ---------------------------------------------

#[test]
fn duplicated_ack_does_nothing() {
    let mut leader = settled_leader();
    propose(&mut leader, &["a"]);
    assert_eq!(
        persisted(&mut leader, 2, 1),
        vec![],
        "one durable copy of three"
    );
    assert_eq!(
        deliver(&mut leader, 2, accepted(1, 2)),
        vec![commit(2), Action::Apply(placed(&["a"], 1, 2))]
    );
    assert_eq!(deliver(&mut leader, 2, accepted(1, 2)), vec![]);
    assert_eq!(leader.progress(n(2)).unwrap().match_index, i(2));
}

#[test]
fn ack_overtaken_by_a_later_one_does_nothing() {
    let mut leader = settled_leader();
    propose(&mut leader, &["a"]);
    propose(&mut leader, &["b"]);
    persisted(&mut leader, 3, 1);
    assert_eq!(
        deliver(&mut leader, 3, accepted(1, 3)),
        vec![
            commit(3),
            Action::Apply(placed(&["a"], 1, 2)),
            Action::Apply(placed(&["b"], 1, 3)),
        ]
    );
    assert_eq!(deliver(&mut leader, 3, accepted(1, 2)), vec![]);
    let progress = leader.progress(n(3)).unwrap();
    assert_eq!((progress.match_index, progress.next_index), (i(3), i(4)));
    assert_eq!(progress.inflight_messages(), 0);
}

#[test]
fn ack_beyond_the_leaders_log_is_ignored() {
    let mut leader = settled_leader();
    assert_eq!(deliver(&mut leader, 2, accepted(1, 7)), vec![]);
    assert_eq!(leader.progress(n(2)).unwrap().match_index, i(1));
}

// ---- the leader's own durability -----------------------------------------------------------

#[test]
fn follower_ack_alone_does_not_commit_until_the_leader_persists() {
    let mut leader = settled_leader();
    propose(&mut leader, &["a"]);
    assert_eq!(deliver(&mut leader, 2, accepted(1, 2)), vec![]);
    assert_eq!(
        persisted(&mut leader, 2, 1),
        vec![commit(2), Action::Apply(placed(&["a"], 1, 2))]
    );
}

#[test]
fn proposal_is_sent_before_the_leaders_write_is_durable() {
    let mut leader = settled_leader();
    let entries = placed(&["x", "y"], 1, 2);
    let request = append(1, (1, 1), 1, vec![entries.clone()]);
    assert_eq!(
        propose(&mut leader, &["x", "y"]),
        vec![
            Action::Accepted {
                first_index: i(2),
                last_index: i(3),
                term: t(1),
            },
            Action::AppendLog(entries),
            send(2, request.clone()),
            send(3, request),
        ]
    );
}

// ---- Persisted arriving late ---------------------------------------------------------------

#[test]
fn persisted_after_step_down_acks_nothing_and_commits_nothing() {
    let mut leader = Node::new(1, 3).build();
    elect(&mut leader);
    propose(&mut leader, &["a"]);
    assert_eq!(
        deliver(&mut leader, 2, heartbeat(2, 0, 0, 0)),
        vec![
            save(2, None, 0),
            role_changed(Role::Follower, 2, Some(2)),
            send(2, accepted(2, 0)),
        ]
    );
    // The write of the old term's entries completes now: they are durable but nothing of the
    // new leader's log is known to match them, so there is nothing to acknowledge.
    assert_eq!(persisted(&mut leader, 2, 1), vec![]);
    assert_eq!(leader.durable_index(), i(2));
    assert_eq!(leader.commit_index(), i(0));
}

#[test]
fn persisted_for_truncated_entries_is_ignored() {
    let mut follower = Node::new(2, 3).term(2).log(&[(1, 1)]).build();
    follow(&mut follower, 1, 2);
    assert_eq!(
        deliver(&mut follower, 1, append(2, (1, 1), 0, vec![batch(2, 2, 2)])),
        vec![Action::AppendLog(batch(2, 2, 2))],
        "no ack before the entries are durable"
    );
    assert_eq!(
        deliver(&mut follower, 3, append(3, (1, 1), 0, vec![batch(3, 2, 1)])),
        vec![
            save(3, None, 0),
            role_changed(Role::Follower, 3, Some(3)),
            Action::TruncateLog { from: i(2) },
            Action::AppendLog(batch(3, 2, 1)),
        ]
    );
    assert_eq!(
        persisted(&mut follower, 3, 2),
        vec![],
        "index no longer held"
    );
    assert_eq!(
        persisted(&mut follower, 2, 2),
        vec![],
        "index 2 now holds term 3"
    );
    assert_eq!(follower.durable_index(), i(1));
    assert_eq!(
        persisted(&mut follower, 2, 3),
        vec![send(3, accepted(3, 2))]
    );
}

// ---- rejection hints -----------------------------------------------------------------------

#[test]
fn follower_hint_names_the_conflicting_term_and_its_first_index() {
    let mut follower = Node::new(2, 3).term(4).log(&[(1, 2), (2, 3)]).build();
    follow(&mut follower, 1, 5);
    let out = deliver(&mut follower, 1, append(5, (4, 3), 0, vec![noop(5, 5)]));
    assert_eq!(out, vec![send(1, rejected(5, 4, 5, Some((2, 3))))]);
    assert_eq!(follower.last_index(), i(5), "a rejection truncates nothing");
}

#[test]
fn follower_hint_for_a_short_log_names_its_last_index() {
    let mut follower = Node::new(2, 3).term(4).log(&[(1, 2)]).build();
    follow(&mut follower, 1, 5);
    let out = deliver(&mut follower, 1, append(5, (4, 3), 0, vec![noop(5, 5)]));
    assert_eq!(out, vec![send(1, rejected(5, 4, 2, None))]);
}

#[test]
fn leader_skips_a_term_it_never_had() {
    let mut leader = leader_over_two_terms();
    let out = deliver(&mut leader, 2, rejected(5, 4, 5, Some((2, 3))));
    assert_eq!(
        out,
        vec![send(
            2,
            append(5, (2, 1), 0, vec![batch(3, 3, 2), noop(5, 5)])
        )]
    );
}

#[test]
fn leader_resumes_after_its_last_entry_of_the_conflicting_term() {
    let mut leader = Node::new(1, 3)
        .term(3)
        .log(&[(1, 2), (2, 1), (3, 1)])
        .build();
    elect(&mut leader);
    // The follower holds t1 t1 t2 t2 t2: it has term 2 at index 4, where the leader has 3.
    let out = deliver(&mut leader, 2, rejected(4, 4, 5, Some((2, 3))));
    assert_eq!(
        out,
        vec![send(
            2,
            append(4, (3, 2), 0, vec![batch(3, 4, 1), noop(4, 5)])
        )]
    );
}

#[test]
fn leader_resumes_after_a_short_followers_last_entry() {
    let mut leader = leader_over_two_terms();
    let out = deliver(&mut leader, 2, rejected(5, 4, 1, None));
    assert_eq!(
        out,
        vec![send(
            2,
            append(
                5,
                (1, 1),
                0,
                vec![batch(1, 2, 1), batch(3, 3, 2), noop(5, 5)]
            )
        )]
    );
}

#[test]
fn duplicated_rejection_does_not_trigger_a_second_probe() {
    let mut leader = leader_over_two_terms();
    let rejection = rejected(5, 4, 5, Some((2, 3)));
    assert_eq!(deliver(&mut leader, 2, rejection.clone()).len(), 1);
    assert_eq!(deliver(&mut leader, 2, rejection), vec![]);
    assert_eq!(leader.progress(n(2)).unwrap().next_index, i(3));
}

#[test]
fn rejection_below_the_acknowledged_match_is_ignored() {
    let mut leader = leader_over_two_terms();
    let rejection = rejected(5, 4, 5, Some((2, 3)));
    deliver(&mut leader, 2, rejection.clone());
    persist_all(&mut leader);
    assert_eq!(
        deliver(&mut leader, 2, accepted(5, 5)),
        vec![
            commit(5),
            Action::Apply(batch(1, 1, 2)),
            Action::Apply(batch(3, 3, 2)),
            Action::Apply(noop(5, 5))
        ]
    );
    assert_eq!(deliver(&mut leader, 2, rejection), vec![]);
    assert_eq!(leader.progress(n(2)).unwrap().match_index, i(5));
}

// ---- follower side -------------------------------------------------------------------------

#[test]
fn heartbeat_to_a_follower_commits_and_is_acked_at_once() {
    let mut follower = Node::new(2, 3).term(2).log(&[(1, 2), (2, 1)]).build();
    follow(&mut follower, 1, 2);
    let out = deliver(&mut follower, 1, heartbeat(2, 3, 2, 3));
    assert_eq!(
        out,
        vec![
            commit(3),
            Action::Apply(batch(1, 1, 2)),
            Action::Apply(batch(2, 3, 1)),
            send(1, accepted(2, 3)),
        ]
    );
}

#[test]
fn heartbeat_commit_is_capped_at_the_matched_prefix() {
    let mut follower = Node::new(2, 3).term(2).log(&[(1, 2), (2, 1)]).build();
    follow(&mut follower, 1, 2);
    let out = deliver(&mut follower, 1, heartbeat(2, 2, 1, 3));
    assert_eq!(
        out,
        vec![
            commit(2),
            Action::Apply(batch(1, 1, 2)),
            send(1, accepted(2, 2)),
        ]
    );
}

#[test]
fn follower_acks_appended_entries_only_as_they_become_durable() {
    let mut follower = Node::new(2, 3).term(2).log(&[(1, 1)]).build();
    follow(&mut follower, 1, 2);
    assert_eq!(
        deliver(&mut follower, 1, append(2, (1, 1), 1, vec![batch(2, 2, 2)])),
        vec![
            Action::AppendLog(batch(2, 2, 2)),
            commit(1),
            Action::Apply(batch(1, 1, 1)),
        ]
    );
    assert_eq!(
        persisted(&mut follower, 2, 2),
        vec![send(1, accepted(2, 2))]
    );
    assert_eq!(
        persisted(&mut follower, 3, 2),
        vec![send(1, accepted(2, 3))]
    );
    assert_eq!(persisted(&mut follower, 3, 2), vec![], "duplicate report");
}

#[test]
fn follower_with_everything_already_held_acks_at_once() {
    let mut follower = Node::new(2, 3).term(2).log(&[(1, 1), (2, 2)]).build();
    follow(&mut follower, 1, 2);
    let out = deliver(&mut follower, 1, append(2, (1, 1), 0, vec![batch(2, 2, 2)]));
    assert_eq!(out, vec![send(1, accepted(2, 3))]);
}

#[test]
fn follower_appends_only_the_new_tail_of_an_overlapping_batch() {
    let mut follower = Node::new(2, 3).term(2).log(&[(1, 1), (2, 1)]).build();
    follow(&mut follower, 1, 2);
    let out = deliver(&mut follower, 1, append(2, (1, 1), 0, vec![batch(2, 2, 3)]));
    assert_eq!(out, vec![Action::AppendLog(batch(2, 3, 2))]);
}

// ---- votes ---------------------------------------------------------------------------------

#[test]
fn vote_granted_in_a_new_term_is_persisted_before_the_reply() {
    let mut voter = Node::new(2, 3).term(1).log(&[(1, 1)]).build();
    let out = deliver(&mut voter, 3, vote_request(2, (1, 1), false));
    assert_eq!(
        out,
        vec![
            save(2, None, 0),
            role_changed(Role::Follower, 2, None),
            save(2, Some(3), 0),
            send_after_persist(3, vote_response(2, false, true)),
        ]
    );
}

#[test]
fn second_candidate_of_a_term_is_refused_and_the_first_may_ask_again() {
    let mut voter = Node::new(2, 3).term(2).build();
    assert_eq!(
        deliver(&mut voter, 3, vote_request(2, (0, 0), false)),
        vec![
            save(2, Some(3), 0),
            send_after_persist(3, vote_response(2, false, true)),
        ]
    );
    assert_eq!(
        deliver(&mut voter, 1, vote_request(2, (0, 0), false)),
        vec![send(1, vote_response(2, false, false))]
    );
    assert_eq!(
        deliver(&mut voter, 3, vote_request(2, (0, 0), false)),
        vec![
            save(2, Some(3), 0),
            send_after_persist(3, vote_response(2, false, true)),
        ],
        "a retried request from the same candidate is granted again"
    );
}

#[test]
fn pre_vote_grant_changes_and_persists_nothing() {
    let mut voter = Node::new(2, 3).term(1).log(&[(1, 1)]).build();
    let out = deliver(&mut voter, 3, vote_request(2, (1, 1), true));
    assert_eq!(out, vec![send(3, vote_response(2, true, true))]);
    assert_eq!((voter.term(), voter.vote()), (t(1), None));
}

#[test]
fn follower_in_a_leader_lease_refuses_pre_votes_and_ignores_votes() {
    let mut follower = Node::new(2, 3).term(1).log(&[(1, 1)]).build();
    follow(&mut follower, 1, 1);
    assert_eq!(
        deliver(&mut follower, 3, vote_request(2, (1, 1), true)),
        vec![send(3, vote_response(1, true, false))]
    );
    assert_eq!(
        deliver(&mut follower, 3, vote_request(2, (1, 1), false)),
        vec![]
    );
    assert_eq!(follower.term(), t(1));
}

// ---- elections -----------------------------------------------------------------------------

#[test]
fn election_timeout_starts_a_pre_vote_that_persists_nothing() {
    let mut node = Node::new(1, 3).term(1).log(&[(1, 1)]).build();
    for _ in 1..node.randomized_election_timeout() {
        assert_eq!(tick(&mut node), vec![]);
    }
    assert_eq!(
        tick(&mut node),
        vec![
            role_changed(Role::PreCandidate, 1, None),
            send(2, vote_request(2, (1, 1), true)),
            send(3, vote_request(2, (1, 1), true)),
        ]
    );
}

#[test]
fn pre_vote_majority_starts_the_real_election() {
    let mut node = Node::new(1, 3).term(1).log(&[(1, 1)]).build();
    tick_until_campaign(&mut node);
    assert_eq!(
        deliver(&mut node, 2, vote_response(2, true, true)),
        vec![
            save(2, Some(1), 0),
            role_changed(Role::Candidate, 2, None),
            send_after_persist(2, vote_request(2, (1, 1), false)),
            send_after_persist(3, vote_request(2, (1, 1), false)),
        ]
    );
}

/// Ticks `node` until a tick sends (pre-)vote requests and returns how many ticks that took.
fn ticks_until_vote_requests(node: &mut Raft) -> u32 {
    for ticks in 1..=2 * node.config().election_timeout_ticks {
        let asks = sends(&tick(node))
            .iter()
            .any(|(_, message)| matches!(message, Message::VoteRequest { .. }));
        if asks {
            return ticks;
        }
    }
    panic!("no vote requests within two election timeouts");
}

/// Delivers both voters' refusals of `node`'s pre-vote for term 2.
fn lose_pre_vote(node: &mut Raft) {
    deliver(node, 2, vote_response(1, true, false));
    deliver(node, 3, vote_response(1, true, false));
    assert_eq!(node.role(), Role::Follower);
}

#[test]
fn first_lost_pre_vote_after_leader_contact_is_retried_within_a_quarter_timeout() {
    let mut node = Node::new(1, 3).term(1).log(&[(1, 1)]).build();
    follow(&mut node, 2, 1);
    ticks_until_vote_requests(&mut node);
    lose_pre_vote(&mut node);
    let quarter = node.config().election_timeout_ticks / 4;
    assert!(
        ticks_until_vote_requests(&mut node) <= quarter,
        "the near miss is retried after at most {quarter} ticks"
    );
    lose_pre_vote(&mut node);
    assert!(
        ticks_until_vote_requests(&mut node) >= node.config().election_timeout_ticks,
        "a second loss in the same silence waits a full election timeout"
    );
    lose_pre_vote(&mut node);
    follow(&mut node, 2, 1);
    ticks_until_vote_requests(&mut node);
    lose_pre_vote(&mut node);
    assert!(
        ticks_until_vote_requests(&mut node) <= quarter,
        "hearing from a leader again re-arms the quick retry"
    );
}

#[test]
fn first_pre_vote_round_nobody_answers_is_asked_again_within_a_quarter_timeout() {
    let mut node = Node::new(1, 3).term(1).log(&[(1, 1)]).build();
    follow(&mut node, 2, 1);
    let timeout = node.config().election_timeout_ticks;
    assert!(ticks_until_vote_requests(&mut node) >= timeout);
    assert!(
        ticks_until_vote_requests(&mut node) <= timeout / 4,
        "a dead leader never answers: the first round is short"
    );
    assert!(
        ticks_until_vote_requests(&mut node) >= timeout,
        "the second round lasts a full election timeout"
    );
    assert_eq!(node.role(), Role::PreCandidate);
}

/// Delivers what `from` sent in `actions` between n2 and n3 (the leader, n1, is gone), and
/// everything that causes, until nothing is left in flight.
fn exchange(followers: &mut [Raft; 2], from: u64, actions: Vec<Action>) {
    let mut in_flight: Vec<(u64, NodeId, Message)> = sends(&actions)
        .into_iter()
        .map(|(to, message)| (from, to, message))
        .collect();
    while let Some((from, to, message)) = in_flight.pop() {
        let Some(node) = followers.iter_mut().find(|node| node.id() == to) else {
            continue;
        };
        let answers = deliver(node, from, message);
        in_flight.extend(
            sends(&answers)
                .into_iter()
                .map(|(next, message)| (to.0, next, message)),
        );
    }
}

/// n2 and n3 of a group whose leader died, n2 having counted one tick since the leader's last
/// message when n3 received its own. n2's timer fires at the bottom of the range and n3's well
/// after a quick retry would, so n2's first pre-vote reaches n3 one tick before n3's refusal
/// window ends.
fn followers_a_tick_apart() -> [Raft; 2] {
    let timeout = Node::new(2, 3).build().config().election_timeout_ticks;
    let following = |id: u64, seed: u64| {
        let mut node = Node::new(id, 3)
            .term(1)
            .log(&[(1, 1)])
            .configure(|config| config.rng_seed = seed)
            .build();
        follow(&mut node, 1, 1);
        node
    };
    let mut n2 = (0..1000)
        .map(|seed| following(2, seed))
        .find(|node| node.randomized_election_timeout() == timeout)
        .expect("a seed that draws the shortest timeout");
    assert_eq!(tick(&mut n2), vec![]);
    let n3 = (0..1000)
        .map(|seed| following(3, seed))
        .find(|node| node.randomized_election_timeout() > timeout + timeout / 4 + 2)
        .expect("a seed that draws a long timeout");
    [n2, n3]
}

#[test]
fn a_pre_vote_that_misses_a_voters_refusal_by_a_tick_wins_on_the_quick_retry() {
    let mut followers = followers_a_tick_apart();
    let timeout = followers[0].config().election_timeout_ticks;
    let mut ticks = 1; // n2's, counted from the leader's last message to it
    while followers.iter().all(|node| node.role() != Role::Leader) {
        assert!(ticks <= 3 * timeout, "no leader after {ticks} ticks");
        ticks += 1;
        for index in 0..2 {
            let out = tick(&mut followers[index]);
            let from = followers[index].id().0;
            exchange(&mut followers, from, out);
        }
    }
    assert_eq!(followers[0].role(), Role::Leader, "n2 campaigned first");
    assert!(
        ticks <= timeout + timeout / 4 + 1,
        "n2 led after {ticks} ticks; its first pre-vote was at {timeout}"
    );
}

#[test]
fn lost_real_vote_waits_a_full_election_timeout() {
    let mut node = Node::new(1, 3).without_pre_vote().build();
    tick_until_campaign(&mut node);
    deliver(&mut node, 2, vote_response(1, false, false));
    deliver(&mut node, 3, vote_response(1, false, false));
    assert_eq!(node.role(), Role::Follower);
    assert!(ticks_until_vote_requests(&mut node) >= node.config().election_timeout_ticks);
}

#[test]
fn vote_majority_makes_a_leader_that_appends_and_sends_its_noop() {
    let mut node = Node::new(1, 3).term(1).log(&[(1, 1)]).build();
    tick_until_campaign(&mut node);
    deliver(&mut node, 2, vote_response(2, true, true));
    let probe = append(2, (1, 1), 0, vec![noop(2, 2)]);
    assert_eq!(
        deliver(&mut node, 3, vote_response(2, false, true)),
        vec![
            role_changed(Role::Leader, 2, Some(1)),
            Action::AppendLog(noop(2, 2)),
            send(2, probe.clone()),
            send(3, probe),
        ]
    );
}

#[test]
fn candidate_refused_by_a_majority_returns_to_follower() {
    let mut node = Node::new(1, 3).without_pre_vote().build();
    tick_until_campaign(&mut node);
    assert_eq!(
        deliver(&mut node, 2, vote_response(1, false, false)),
        vec![]
    );
    assert_eq!(
        deliver(&mut node, 3, vote_response(1, false, false)),
        vec![role_changed(Role::Follower, 1, None)]
    );
    assert_eq!(node.vote(), Some(n(1)), "the vote of the term stays cast");
}

#[test]
fn leader_heartbeats_every_interval_with_its_commit() {
    let mut leader = settled_leader();
    assert_eq!(tick(&mut leader), vec![]);
    let round = leader.read_round();
    let out = tick(&mut leader);
    assert_eq!(
        leader.read_round(),
        round + 1,
        "every heartbeat opens a read round"
    );
    assert_eq!(
        out,
        vec![
            send(2, in_round(heartbeat(1, 1, 1, 1), round + 1)),
            send(3, in_round(heartbeat(1, 1, 1, 1), round + 1)),
        ]
    );
}

// ---- proposals and transfer ----------------------------------------------------------------

#[test]
fn proposal_on_a_follower_is_refused_with_the_known_leader() {
    let mut follower = Node::new(2, 3).build();
    follow(&mut follower, 3, 1);
    assert_eq!(
        propose(&mut follower, &["a"]),
        vec![Action::Rejected(ProposeError::NotLeader {
            leader: Some(n(3))
        })]
    );
    assert_eq!(follower.last_index(), i(0));
}

#[test]
fn proposal_on_a_candidate_is_refused_with_no_leader() {
    let mut node = Node::new(1, 3).build();
    tick_until_campaign(&mut node);
    assert_eq!(
        propose(&mut node, &["a"]),
        vec![Action::Rejected(ProposeError::NotLeader { leader: None })]
    );
}

#[test]
fn transfer_to_a_caught_up_follower_sends_timeout_now_and_refuses_proposals() {
    let mut leader = settled_leader();
    assert_eq!(
        step(&mut leader, Input::TransferLeadership { to: n(2) }),
        vec![send(2, Message::TimeoutNow { term: t(1) })]
    );
    assert_eq!(
        propose(&mut leader, &["a"]),
        vec![Action::Rejected(ProposeError::Transferring)]
    );
}

#[test]
fn timeout_now_from_the_leader_starts_an_election_at_once_skipping_pre_vote() {
    let mut follower = Node::new(2, 3).term(1).log(&[(1, 1)]).build();
    follow(&mut follower, 1, 1);
    let request = Message::VoteRequest {
        term: Term(2),
        last_index: LogIndex(1),
        last_term: Term(1),
        pre_vote: false,
        transfer: true,
    };
    assert_eq!(
        deliver(&mut follower, 1, Message::TimeoutNow { term: t(1) }),
        vec![
            save(2, Some(2), 0),
            role_changed(Role::Candidate, 2, None),
            send_after_persist(1, request.clone()),
            send_after_persist(3, request),
        ]
    );
}

#[test]
fn timeout_now_from_a_non_leader_is_ignored() {
    let mut follower = Node::new(2, 3).term(1).build();
    follow(&mut follower, 1, 1);
    assert_eq!(
        deliver(&mut follower, 3, Message::TimeoutNow { term: t(1) }),
        vec![]
    );
    assert_eq!(follower.role(), Role::Follower);
}

// ---- connection loss -----------------------------------------------------------------------

#[test]
fn unreachable_follower_is_sent_the_missing_entries_with_the_next_heartbeat() {
    let mut leader = settled_leader();
    propose(&mut leader, &["a"]);
    // The connection to n2 broke: the AppendEntries carrying index 2 may be lost.
    assert_eq!(step(&mut leader, Input::Unreachable { peer: n(2) }), vec![]);
    tick(&mut leader);
    let heartbeats = appends(&tick(&mut leader));
    let round = leader.read_round();
    let Message::Append(expected) =
        in_round(append(1, (1, 1), 1, vec![placed(&["a"], 1, 2)]), round)
    else {
        unreachable!()
    };
    assert_eq!(
        heartbeats[0],
        (n(2), expected),
        "the probing follower's heartbeat carries what it lacks"
    );
}

#[test]
fn an_acknowledgement_that_does_not_advance_sends_nothing_until_the_next_heartbeat() {
    let mut leader = settled_leader();
    propose(&mut leader, &["a"]);
    step(&mut leader, Input::Unreachable { peer: n(2) });
    tick(&mut leader);
    tick(&mut leader);
    // n2 got index 2 but is still syncing it: it acknowledges 1, then 1 again (a duplicate).
    assert_eq!(deliver(&mut leader, 2, accepted(1, 1)), vec![]);
    assert_eq!(
        deliver(&mut leader, 2, accepted(1, 1)),
        vec![],
        "no ping-pong while the follower syncs"
    );
    // Durable at last: the leader moves on.
    assert_eq!(leader.progress(n(2)).map(|p| p.match_index), Some(i(1)));
    deliver(&mut leader, 2, accepted(1, 2));
    assert_eq!(leader.progress(n(2)).map(|p| p.match_index), Some(i(2)));
}

#[test]
fn single_voter_elects_itself_and_commits_on_its_own_durability() {
    let mut node = Node::new(1, 1).term(1).build();
    assert_eq!(
        tick_until_campaign(&mut node),
        vec![
            role_changed(Role::PreCandidate, 1, None),
            save(2, Some(1), 0),
            role_changed(Role::Candidate, 2, None),
            role_changed(Role::Leader, 2, Some(1)),
            Action::AppendLog(noop(2, 1)),
        ]
    );
    assert_eq!(
        persisted(&mut node, 1, 2),
        vec![commit(1), Action::Apply(noop(2, 1))]
    );
}

// ---- pipelining windows --------------------------------------------------------------------

fn settled_leader_with(change: impl FnOnce(&mut ringraft::core::Config)) -> Raft {
    let mut leader = Node::new(1, 2).configure(change).build();
    elect_and_settle(&mut leader);
    leader
}

#[test]
fn full_message_window_holds_back_a_proposal_until_an_ack_frees_a_slot() {
    let mut leader = settled_leader_with(|config| config.inflight_messages_max = 2);
    assert_eq!(sends(&propose(&mut leader, &["a"])).len(), 1);
    assert_eq!(sends(&propose(&mut leader, &["b"])).len(), 1);
    assert_eq!(
        propose(&mut leader, &["c"]),
        vec![
            Action::Accepted {
                first_index: i(4),
                last_index: i(4),
                term: t(1),
            },
            Action::AppendLog(placed(&["c"], 1, 4)),
        ]
    );
    assert_eq!(leader.progress(n(2)).unwrap().inflight_messages(), 2);
    assert_eq!(
        deliver(&mut leader, 2, accepted(1, 2)),
        vec![send(2, append(1, (3, 1), 1, vec![placed(&["c"], 1, 4)]))]
    );
}

#[test]
fn full_byte_window_holds_back_a_proposal_until_an_ack_frees_it() {
    let mut leader = settled_leader_with(|config| config.inflight_bytes_max = 1);
    assert_eq!(sends(&propose(&mut leader, &["a"])).len(), 1);
    assert_eq!(sends(&propose(&mut leader, &["b"])), vec![]);
    assert_eq!(
        deliver(&mut leader, 2, accepted(1, 2)),
        vec![send(2, append(1, (2, 1), 1, vec![placed(&["b"], 1, 3)]))]
    );
}

#[test]
fn catch_up_is_cut_into_messages_of_at_most_the_byte_limit() {
    let mut leader = Node::new(1, 2)
        .term(1)
        .log(&[(1, 1), (1, 1), (1, 1)])
        .configure(|config| config.message_bytes_max = 1)
        .build();
    elect(&mut leader);
    // n2 holds nothing: the probe backs up to the start and sends one batch per message.
    assert_eq!(
        deliver(&mut leader, 2, rejected(2, 3, 0, None)),
        vec![send(2, append(2, (0, 0), 0, vec![batch(1, 1, 1)]))]
    );
    assert_eq!(
        deliver(&mut leader, 2, accepted(2, 1)),
        vec![
            send(2, append(2, (1, 1), 0, vec![batch(1, 2, 1)])),
            send(2, append(2, (2, 1), 0, vec![batch(1, 3, 1)])),
            send(2, append(2, (3, 1), 0, vec![noop(2, 4)])),
        ]
    );
}

/// A follower whose disk was replaced rejects below what it had acknowledged: the leader
/// forgets that match and probes from the follower's real end instead of retrying forever.
#[test]
fn leader_forgets_the_match_of_a_follower_that_lost_its_disk() {
    let mut leader = Node::new(1, 3).log(&[(1, 3)]).build();
    elect_and_settle(&mut leader);
    let (term, last) = (leader.term().0, leader.last_index().0);
    assert_eq!(leader.progress(n(2)).unwrap().match_index, i(last));
    let out = deliver(&mut leader, 2, rejected(term, last, 0, None));
    let progress = leader.progress(n(2)).unwrap();
    assert_eq!(progress.match_index, i(0));
    assert_eq!(progress.next_index, i(1));
    assert_eq!(
        out,
        vec![send(
            2,
            append(
                term,
                (0, 0),
                leader.commit_index().0,
                leader.entries(i(1), i(last))
            )
        )]
    );
}

// ---- membership changes that remove an acknowledging node or the leader --------------------

fn change(raft: &mut Raft, change: MembershipChange) -> Vec<Action> {
    step(
        raft,
        Input::ChangeMembership {
            change,
            context: bytes::Bytes::new(),
        },
    )
}

#[test]
fn an_ack_that_completes_the_removal_of_its_sender_sends_it_nothing() {
    // 4 voters; removing n4 needs 3 of {1,2,3,4} and 2 of {1,2,3}: n4's ack is the third.
    let mut leader = Node::new(1, 4).build();
    elect_and_settle(&mut leader);
    change(&mut leader, MembershipChange::Remove(n(4)));
    persisted(&mut leader, 2, 1);
    deliver(&mut leader, 2, accepted(1, 2));
    assert!(leader.membership().is_joint());
    let actions = deliver(&mut leader, 4, accepted(1, 2));
    assert!(commits(&actions).contains(&2), "{actions:?}");
    assert!(
        !leader.membership().is_joint(),
        "the final configuration follows"
    );
    assert_eq!(leader.membership().voters, vec![n(1), n(2), n(3)]);
    assert!(leader.progress(n(4)).is_none());
    assert!(
        sends(&actions).iter().all(|(to, _)| *to != n(4)),
        "{actions:?}"
    );
}

#[test]
fn a_leader_that_removes_itself_leads_until_the_final_configuration_commits() {
    let mut leader = settled_leader();
    change(&mut leader, MembershipChange::Remove(n(1)));
    persisted(&mut leader, 2, 1);
    deliver(&mut leader, 2, accepted(1, 2));
    deliver(&mut leader, 3, accepted(1, 2));
    // The joint configuration committed; the final one (without n1) is appended at 3 and n1
    // still leads.
    assert_eq!(leader.membership().voters, vec![n(2), n(3)]);
    assert!(!leader.membership().is_joint());
    assert_eq!((leader.role(), leader.last_index()), (Role::Leader, i(3)));
    persisted(&mut leader, 3, 1);
    deliver(&mut leader, 2, accepted(1, 3));
    assert_eq!(leader.role(), Role::Leader, "one of two new voters");
    let actions = deliver(&mut leader, 3, accepted(1, 3));
    assert!(commits(&actions).contains(&3), "{actions:?}");
    assert_eq!(leader.role(), Role::Follower, "steps down once it commits");
}
