//! An outgoing byte buffer shared by the event loop (which appends frames) and the writer
//! task of one connection (which takes the whole buffer and writes it with one call).
//!
//! Invariant: the writer takes everything appended so far in one swap, so however many frames
//! a loop turn appends, they leave in one write. A buffer that grows past its cap (a peer that
//! does not read) is dropped and the connection is closed rather than growing without bound.
//! A finished buffer ([`Outgoing::finish`]) hands its writer what it holds, then reports closed.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

pub struct Outgoing {
    buffer: RefCell<Vec<u8>>,
    waiting: Cell<Option<Waker>>,
    closed: Cell<bool>,
    /// Closed once the buffer is empty (see [`Outgoing::finish`]).
    finishing: Cell<bool>,
    connected: Cell<bool>,
    /// Connections made so far: a change tells a sender that what it queued may be lost.
    generation: Cell<u64>,
    /// Bytes the writer took so far.
    taken_bytes: Cell<u64>,
    cap_bytes: usize,
}

impl Outgoing {
    pub fn new(cap_bytes: usize) -> Outgoing {
        Outgoing {
            buffer: RefCell::new(Vec::new()),
            waiting: Cell::new(None),
            closed: Cell::new(false),
            finishing: Cell::new(false),
            connected: Cell::new(false),
            generation: Cell::new(0),
            taken_bytes: Cell::new(0),
            cap_bytes,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected.get() && !self.closed.get()
    }

    /// Counts the connections made so far (it changes whenever a new one is made).
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Bytes the writer has taken to send so far (a broken connection may have lost some).
    pub fn taken_bytes(&self) -> u64 {
        self.taken_bytes.get()
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.set(connected);
        if connected {
            self.generation.set(self.generation.get() + 1);
        } else {
            self.buffer.borrow_mut().clear();
        }
    }

    /// Appends with `encode` and wakes the writer. Returns false (appending nothing) when the
    /// connection is down or the cap would be exceeded.
    pub fn append(&self, encode: impl FnOnce(&mut Vec<u8>)) -> bool {
        if !self.is_connected() {
            return false;
        }
        let mut buffer = self.buffer.borrow_mut();
        encode(&mut buffer);
        if buffer.len() > self.cap_bytes {
            buffer.clear();
            drop(buffer);
            self.close();
            return false;
        }
        drop(buffer);
        if let Some(waker) = self.waiting.take() {
            waker.wake();
        }
        true
    }

    pub fn close(&self) {
        self.closed.set(true);
        if let Some(waker) = self.waiting.take() {
            waker.wake();
        }
    }

    /// Ends the connection gracefully: the writer still takes what is buffered, then hears
    /// that the buffer is closed.
    pub fn finish(&self) {
        self.finishing.set(true);
        if let Some(waker) = self.waiting.take() {
            waker.wake();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Waits for bytes and swaps them into `spare` (which must be empty). Returns false once
    /// closed, or once finished and empty.
    pub async fn take(&self, spare: &mut Vec<u8>) -> bool {
        poll_fn(|cx| {
            if self.closed.get() {
                return Poll::Ready(false);
            }
            let mut buffer = self.buffer.borrow_mut();
            if !buffer.is_empty() {
                self.taken_bytes
                    .set(self.taken_bytes.get() + buffer.len() as u64);
                std::mem::swap(&mut *buffer, spare);
                return Poll::Ready(true);
            }
            if self.finishing.get() {
                return Poll::Ready(false);
            }
            self.waiting.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }
}
