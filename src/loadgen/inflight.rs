//! The requests a connection has in flight, by request id.
//!
//! Ids are handed out in order from 0 on each connection; request `id` lives in slot
//! `id mod capacity`. A new request is admitted only when its slot is free, so a slow answer
//! holds back later requests instead of being overwritten, and an answer is matched only if its
//! slot holds exactly its id: an answer to an unknown or already-answered id is refused (the
//! server misbehaved, and the caller ends the connection).

/// One request awaiting its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The sending client's position on the connection.
    pub client: u32,
    /// Send (or intended) time, ns since the start of the connection's schedule.
    pub stamp_ns: u64,
}

pub struct InFlight {
    slots: Vec<Option<(u64, Pending)>>,
    next_id: u64,
    count: usize,
}

impl InFlight {
    /// Room for `capacity` requests (rounded up to a power of two).
    pub fn new(capacity: usize) -> InFlight {
        InFlight {
            slots: vec![None; capacity.max(1).next_power_of_two()],
            next_id: 0,
            count: 0,
        }
    }

    /// The id the next request gets.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Requests sent and not yet answered.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the next request can be admitted.
    pub fn has_room(&self) -> bool {
        self.slots[self.slot(self.next_id)].is_none()
    }

    /// Admits the next request (false, and nothing changes, if its slot is taken).
    pub fn push(&mut self, pending: Pending) -> bool {
        let slot = self.slot(self.next_id);
        if self.slots[slot].is_some() {
            return false;
        }
        self.slots[slot] = Some((self.next_id, pending));
        self.next_id += 1;
        self.count += 1;
        true
    }

    /// Takes the request answered by `id`, if it is in flight.
    pub fn take(&mut self, id: u64) -> Option<Pending> {
        let slot = self.slot(id);
        match self.slots[slot] {
            Some((held, pending)) if held == id => {
                self.slots[slot] = None;
                self.count -= 1;
                Some(pending)
            }
            _ => None,
        }
    }

    fn slot(&self, id: u64) -> usize {
        (id % self.slots.len() as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_answer_holds_its_slot_and_strangers_are_refused() {
        let pending = |client| Pending {
            client,
            stamp_ns: 5,
        };
        let mut inflight = InFlight::new(3);
        for client in 0..4 {
            assert!(inflight.push(pending(client)));
        }
        assert!(!inflight.has_room() && !inflight.push(pending(9)));
        assert_eq!(inflight.take(1), Some(pending(1)));
        assert_eq!(inflight.take(1), None, "answered twice");
        assert_eq!(inflight.take(4), None, "never sent");
        assert!(
            !inflight.has_room(),
            "id 4 needs slot 0, still held by id 0"
        );
        assert_eq!(inflight.take(0), Some(pending(0)));
        assert!(inflight.push(pending(4)));
        assert_eq!(inflight.next_id(), 5);
        for id in 2..5 {
            assert!(inflight.take(id).is_some());
        }
        assert!(inflight.is_empty());
    }
}
