//! A shard-local queue of events with one consumer that takes everything queued at once.
//!
//! Producers are tasks of the same executor (no locks, no atomics); the consumer, the shard's
//! event loop, wakes once per batch of events, not once per event — the batching that lets one
//! loop turn coalesce many messages into one log write and one send per peer.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Poll, Waker};

pub struct Mailbox<T> {
    queue: RefCell<VecDeque<T>>,
    waiting: Cell<Option<Waker>>,
    closed: Cell<bool>,
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Mailbox {
            queue: RefCell::new(VecDeque::new()),
            waiting: Cell::new(None),
            closed: Cell::new(false),
        }
    }
}

impl<T> Mailbox<T> {
    /// Queues an item and wakes the consumer.
    pub fn push(&self, item: T) {
        self.queue.borrow_mut().push_back(item);
        if let Some(waker) = self.waiting.take() {
            waker.wake();
        }
    }

    /// Wakes the consumer with nothing queued if it waits; later waits return `None` at once.
    pub fn close(&self) {
        self.closed.set(true);
        if let Some(waker) = self.waiting.take() {
            waker.wake();
        }
    }

    /// Waits until something is queued, then moves everything queued into `into`. Returns
    /// false once closed and empty.
    pub async fn take_all(&self, into: &mut VecDeque<T>) -> bool {
        poll_fn(|cx| {
            let mut queue = self.queue.borrow_mut();
            if !queue.is_empty() {
                into.append(&mut queue);
                return Poll::Ready(true);
            }
            if self.closed.get() {
                return Poll::Ready(false);
            }
            self.waiting.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }
}
