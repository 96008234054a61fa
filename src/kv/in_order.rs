//! [`InOrder`]: futures that run concurrently and yield their outputs in the order they were
//! pushed.
//!
//! Invariants:
//! - Futures are first polled in the order they were pushed (within one `poll_next`), so
//!   whatever a future does on its first poll (sending a proposal to a shard, queueing a
//!   request on a forwarding link) happens in push order.
//! - An output is yielded only after the outputs of every future pushed before it.
//! - A future is never polled after it completed.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A boxed future that may move between threads.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

enum Slot<T> {
    Running(BoxFuture<T>),
    Done(T),
}

/// Futures that run concurrently and yield their outputs in push order (see the module docs).
pub struct InOrder<T> {
    slots: VecDeque<Slot<T>>,
}

impl<T> Default for InOrder<T> {
    fn default() -> Self {
        InOrder {
            slots: VecDeque::new(),
        }
    }
}

impl<T> InOrder<T> {
    /// Adds `future` after every future pushed before it; it is first polled by the next
    /// [`InOrder::poll_next`].
    pub fn push(&mut self, future: BoxFuture<T>) {
        self.slots.push_back(Slot::Running(future));
    }

    /// Futures pushed and not yet yielded.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether every future pushed has had its output yielded.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Polls every running future, then yields the oldest output if it is ready; `None` when
    /// nothing is left.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        for slot in &mut self.slots {
            if let Slot::Running(future) = slot {
                if let Poll::Ready(output) = future.as_mut().poll(cx) {
                    *slot = Slot::Done(output);
                }
            }
        }
        match self.slots.pop_front() {
            None => Poll::Ready(None),
            Some(Slot::Done(output)) => Poll::Ready(Some(output)),
            Some(running) => {
                self.slots.push_front(running);
                Poll::Pending
            }
        }
    }

    /// The next output in push order.
    pub async fn next(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }
}

/// Runs `futures` concurrently (first polled in order) and returns their outputs in order.
pub async fn join_in_order<T>(futures: Vec<BoxFuture<T>>) -> Vec<T> {
    let mut all = InOrder::default();
    let count = futures.len();
    futures.into_iter().for_each(|future| all.push(future));
    let mut outputs = Vec::with_capacity(count);
    while let Some(output) = all.next().await {
        outputs.push(output);
    }
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[tokio::test]
    async fn outputs_come_in_push_order_and_first_polls_too() {
        let started = Arc::new(Mutex::new(Vec::new()));
        let futures: Vec<BoxFuture<usize>> = (0..6usize)
            .map(|i| {
                let started = started.clone();
                Box::pin(async move {
                    started.lock().unwrap().push(i);
                    // Later futures finish first.
                    tokio::time::sleep(Duration::from_millis(30 - 5 * i as u64)).await;
                    i
                }) as BoxFuture<usize>
            })
            .collect();
        let begun = std::time::Instant::now();
        assert_eq!(join_in_order(futures).await, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(*started.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
        assert!(
            begun.elapsed() < Duration::from_millis(150),
            "they ran concurrently"
        );
    }
}
