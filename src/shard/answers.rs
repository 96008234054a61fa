//! [`BatchAnswers`]: the answers of one batched API request ([`crate::api::Node::run_batch`]),
//! gathered as the engine gives them and sent back together, so a batch costs its caller one
//! channel message and one wake-up however many works it holds.
//!
//! Invariants:
//! - The answers are sent exactly once, in the order of the batch's works: when the last one
//!   is in, or, if the engine drops some without answering (a shard stopping), when the last
//!   [`Rc`] goes, with those answered "shutting down" (an unknown outcome, as a single
//!   request's dropped reply channel is read).
//! - The batch's place in the shard ([`Permit`]) is held until its answers are sent.
//! - Single-threaded (one shard's executor): no locks, no atomics.

use std::cell::RefCell;
use std::rc::Rc;

use crate::engine::{Committed, ProposalError};
use crate::shard::gate::Permit;

/// One work's answer.
pub type Answer = Result<Committed, ProposalError>;

/// See the module documentation.
pub struct BatchAnswers {
    inner: RefCell<Gathered>,
}

struct Gathered {
    answers: Vec<Option<Answer>>,
    missing: usize,
    /// Taken when the answers are sent.
    reply: Option<(flume::Sender<Vec<Answer>>, Permit)>,
}

impl BatchAnswers {
    /// Gathers `works` answers for `reply`, holding `permit` until they are sent.
    pub fn new(works: usize, reply: flume::Sender<Vec<Answer>>, permit: Permit) -> Rc<Self> {
        Rc::new(BatchAnswers {
            inner: RefCell::new(Gathered {
                answers: (0..works).map(|_| None).collect(),
                missing: works,
                reply: Some((reply, permit)),
            }),
        })
    }

    /// The answer of the work at `slot`; sends every answer once it is the last one missing.
    /// A second answer for a slot is ignored.
    pub fn answer(&self, slot: usize, answer: Answer) {
        let mut inner = self.inner.borrow_mut();
        let Some(place) = inner.answers.get_mut(slot).filter(|place| place.is_none()) else {
            return;
        };
        *place = Some(answer);
        inner.missing -= 1;
        if inner.missing == 0 {
            inner.send();
        }
    }
}

impl Gathered {
    fn send(&mut self) {
        if let Some((reply, _permit)) = self.reply.take() {
            let answers = self
                .answers
                .drain(..)
                .map(|answer| answer.unwrap_or(Err(ProposalError::ShuttingDown)))
                .collect();
            // A caller that went away is no longer waiting.
            let _ = reply.send(answers);
        }
    }
}

impl Drop for BatchAnswers {
    fn drop(&mut self) {
        self.inner.get_mut().send();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::gate::RequestGate;
    use crate::types::LogIndex;
    use bytes::Bytes;

    /// A batch of `works` holding a permit of its gate, and where its answers go.
    fn batch_of(
        works: usize,
    ) -> (
        Rc<RequestGate>,
        Rc<BatchAnswers>,
        flume::Receiver<Vec<Answer>>,
    ) {
        let gate = RequestGate::new(4);
        let permit = futures_lite::future::block_on(gate.acquire());
        let (reply, answers) = flume::bounded(1);
        (gate, BatchAnswers::new(works, reply, permit), answers)
    }

    fn done(index: u64) -> Answer {
        Ok(Committed {
            index: LogIndex(index),
            output: Bytes::from_static(b"+OK\r\n"),
        })
    }

    /// Answers arrive out of order and are sent once, in slot order, with the last one; the
    /// batch's place in the shard is freed only then.
    #[test]
    fn answers_are_sent_together_in_slot_order_when_the_last_arrives() {
        let (gate, batch, answers) = batch_of(3);
        batch.answer(2, done(9));
        batch.answer(0, done(7));
        batch.answer(0, done(99));
        assert!(answers.try_recv().is_err(), "sent before the last answer");
        assert_eq!(gate.held(), 1);
        batch.answer(1, Err(ProposalError::Timeout));
        assert_eq!(gate.held(), 0, "the permit goes with the answers");
        let got = answers.try_recv().expect("sent with the last answer");
        assert_eq!(got, vec![done(7), Err(ProposalError::Timeout), done(9)]);
        drop(batch);
        assert!(answers.try_recv().is_err(), "sent exactly once");
    }

    /// Works the engine drops unanswered come back "shutting down" (an unknown outcome), and
    /// the answers given before are kept.
    #[test]
    fn a_batch_dropped_unfinished_answers_the_rest_shutting_down() {
        let (gate, batch, answers) = batch_of(2);
        batch.answer(1, done(3));
        drop(batch);
        assert_eq!(
            answers.try_recv().unwrap(),
            vec![Err(ProposalError::ShuttingDown), done(3)]
        );
        assert_eq!(gate.held(), 0);
    }
}
