//! The client sessions a kv node forwards writes in: one per group, shared by all its client
//! connections, so that a forwarded write whose reply was lost can be sent again with the
//! same sequence number and the group applies it at most once (see
//! [client sessions](crate#client-sessions)).
//!
//! Invariants:
//! - sequence numbers of a group only grow (one counter for the node's life, across the
//!   sessions it registers), so a number is never reused within a session;
//! - a number is in flight from [`ForwardingSessions::start`] until its [`InFlight`] is
//!   dropped (the write answered, or given up); the lowest number in flight is what every
//!   request says is its lowest unanswered one, so the group keeps exactly the outputs of the
//!   writes still being tried;
//! - at most one registration per group runs at a time ([`ForwardingSessions::registering`]):
//!   writes that find no session wait for it instead of each registering one.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

use crate::api::SESSION_UNANSWERED_MAX;
use crate::types::{GroupId, SessionId};

/// See the module documentation.
pub struct ForwardingSessions {
    groups: Vec<GroupSessions>,
}

struct GroupSessions {
    state: Mutex<State>,
    registering: tokio::sync::Mutex<()>,
    /// Signalled whenever the lowest number in flight leaves it (the window moved).
    room: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    session: Option<SessionId>,
    next_seq: u64,
    in_flight: BTreeSet<u64>,
}

/// A write's sequence number, in flight until dropped.
pub struct InFlight<'a> {
    group: &'a GroupSessions,
    seq: u64,
}

impl InFlight<'_> {
    /// The write's sequence number in this node's client session of the group.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut state = self.group.state();
        let was_lowest = state.in_flight.first() == Some(&self.seq);
        state.in_flight.remove(&self.seq);
        drop(state);
        // Only the lowest leaving moves the window; waking every waiter on each answer would
        // cost a full window of wake-ups per answer just when the window is full.
        if was_lowest {
            self.group.room.notify_waiters();
        }
    }
}

impl GroupSessions {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ForwardingSessions {
    /// No sessions yet, for `groups` groups.
    pub fn new(groups: u32) -> ForwardingSessions {
        ForwardingSessions {
            groups: (0..groups)
                .map(|_| GroupSessions {
                    state: Mutex::new(State {
                        next_seq: 1,
                        ..State::default()
                    }),
                    registering: tokio::sync::Mutex::new(()),
                    room: tokio::sync::Notify::new(),
                })
                .collect(),
        }
    }

    fn group(&self, group: GroupId) -> &GroupSessions {
        &self.groups[group.0 as usize]
    }

    /// The session writes to `group` are forwarded in, if one is registered.
    pub fn current(&self, group: GroupId) -> Option<SessionId> {
        self.group(group).state().session
    }

    /// `session` was registered for `group`.
    pub fn set(&self, group: GroupId, session: SessionId) {
        self.group(group).state().session = Some(session);
    }

    /// `group` no longer knows `session`: forgets it, unless another has replaced it already.
    pub fn forget(&self, group: GroupId, session: SessionId) {
        let mut state = self.group(group).state();
        if state.session == Some(session) {
            state.session = None;
        }
    }

    /// Held while registering a session of `group`.
    pub async fn registering(&self, group: GroupId) -> tokio::sync::MutexGuard<'_, ()> {
        self.group(group).registering.lock().await
    }

    /// A new sequence number for a write to `group`, once it fits in the session's window:
    /// less than [`SESSION_UNANSWERED_MAX`] above the lowest number in flight. The group would
    /// refuse a number beyond it as busy, and the refused write would back off while the
    /// writes behind it met the same refusal.
    pub async fn start(&self, group: GroupId) -> InFlight<'_> {
        let sessions = self.group(group);
        loop {
            let room = sessions.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut state = sessions.state();
                let seq = state.next_seq;
                let lowest = state.in_flight.first().copied().unwrap_or(seq);
                if seq - lowest < SESSION_UNANSWERED_MAX as u64 {
                    state.next_seq += 1;
                    state.in_flight.insert(seq);
                    return InFlight {
                        group: sessions,
                        seq,
                    };
                }
            }
            room.await;
        }
    }

    /// The lowest number of `group` in flight (at most that of any [`InFlight`] alive), or the
    /// next one if none is.
    pub fn lowest_unanswered(&self, group: GroupId) -> u64 {
        let state = self.group(group).state();
        state.in_flight.first().copied().unwrap_or(state.next_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};

    fn start(sessions: &ForwardingSessions, group: GroupId) -> InFlight<'_> {
        block_on(sessions.start(group))
    }

    /// A number is handed out only while it is less than the window above the lowest one in
    /// flight, so the group never refuses it as busy; it comes once the lowest leaves flight.
    #[test]
    fn numbers_wait_for_room_in_the_window() {
        let sessions = ForwardingSessions::new(1);
        let g = GroupId(0);
        let window: Vec<InFlight<'_>> = (0..SESSION_UNANSWERED_MAX)
            .map(|_| start(&sessions, g))
            .collect();
        let mut next = Box::pin(sessions.start(g));
        assert!(
            block_on(poll_once(next.as_mut())).is_none(),
            "past the window"
        );
        let mut rest = window.into_iter();
        let lowest = rest.next().expect("a full window");
        let second = rest.next().expect("a full window");
        drop(second);
        assert!(
            block_on(poll_once(next.as_mut())).is_none(),
            "only the lowest leaving flight opens the window"
        );
        drop(lowest);
        let got = block_on(poll_once(next.as_mut())).expect("room after the lowest left");
        assert_eq!(got.seq(), SESSION_UNANSWERED_MAX as u64 + 1);
    }

    #[test]
    fn numbers_grow_and_the_lowest_in_flight_is_the_lowest_unanswered() {
        let sessions = ForwardingSessions::new(2);
        let g = GroupId(1);
        assert_eq!(sessions.lowest_unanswered(g), 1);
        let first = start(&sessions, g);
        let second = start(&sessions, g);
        assert_eq!((first.seq(), second.seq()), (1, 2));
        assert_eq!(sessions.lowest_unanswered(g), 1);
        drop(first);
        assert_eq!(sessions.lowest_unanswered(g), 2);
        drop(second);
        assert_eq!(sessions.lowest_unanswered(g), 3);
        assert_eq!(start(&sessions, g).seq(), 3);
        assert_eq!(
            start(&sessions, GroupId(0)).seq(),
            1,
            "each group counts for itself"
        );
        sessions.set(g, SessionId(9));
        sessions.forget(g, SessionId(8));
        assert_eq!(
            sessions.current(g),
            Some(SessionId(9)),
            "a stale loss forgets nothing"
        );
        sessions.forget(g, SessionId(9));
        assert_eq!(sessions.current(g), None);
    }
}
