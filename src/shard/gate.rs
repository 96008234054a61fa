//! A bound on the requests of the embedding API a shard holds at once: queued for its event
//! loop, gathered in its engine, or waiting there for their answer.
//!
//! The channel from [`crate::api::Node`] to a shard is bounded, but the shard's mailbox is not:
//! a forwarder that moved every request from one to the other would leave the channel empty
//! and let proposers outrun a shard that cannot commit (no quorum) without limit. The forwarder
//! therefore takes a [`Permit`] before each request, and a permit is only released when the
//! request's answer has been sent (it travels with the reply), so once `limit` requests are
//! held the forwarder stops pulling, the channel fills, and proposers wait there. A batched
//! request ([`crate::api::Node::run_batch`]) holds one place per work: its permit is taken like
//! any other, once the gate has room, and then widened to the batch's size
//! ([`Permit::widen`]).
//!
//! Invariants: `held` is the sum of the live permits' places; it reaches `limit` only by
//! single requests and may pass it by less than one batch (at most
//! [`crate::api::node::BATCH_WORKS_MAX`] places); no request is let in while it is at or above
//! `limit`. At most one task (the forwarder) waits for a permit, and it is woken whenever one
//! is released. Single-threaded (one shard's executor): no locks, no atomics.

use std::cell::Cell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

pub struct RequestGate {
    limit: usize,
    held: Cell<usize>,
    waiting: Cell<Option<Waker>>,
}

/// One request held by the shard; dropping it (with the request's reply) frees its places.
pub struct Permit {
    gate: Rc<RequestGate>,
    places: usize,
}

impl RequestGate {
    /// A gate that lets at most `limit` (at least one) requests in at once.
    pub fn new(limit: usize) -> Rc<RequestGate> {
        assert!(limit > 0, "a gate must let a request in");
        Rc::new(RequestGate {
            limit,
            held: Cell::new(0),
            waiting: Cell::new(None),
        })
    }

    /// Waits until fewer than `limit` requests are held, then holds one more.
    pub async fn acquire(self: &Rc<Self>) -> Permit {
        poll_fn(|cx| {
            if self.held.get() < self.limit {
                self.held.set(self.held.get() + 1);
                return Poll::Ready(Permit {
                    gate: self.clone(),
                    places: 1,
                });
            }
            self.waiting.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }

    /// Requests held now.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held.get()
    }
}

impl Permit {
    /// Holds `places` places in all (for a batch of that many works; at least the one taken).
    pub fn widen(&mut self, places: usize) {
        let more = places.saturating_sub(self.places);
        self.gate.held.set(self.gate.held.get() + more);
        self.places += more;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.held.set(self.gate.held.get() - self.places);
        if let Some(waker) = self.gate.waiting.take() {
            waker.wake();
        }
    }
}
