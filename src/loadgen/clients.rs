//! The logical clients of one connection and when each may send: the credit logic, which
//! knows nothing of the protocol.
//!
//! - Closed loop: each client holds `pipeline` credits; sending spends one, an answer to that
//!   client gives it back, so a client never has more than `pipeline` requests in flight.
//! - Open loop: client `j` of `n` (numbered over the whole run) sends request `i` at
//!   `(j / n + i) / rate` seconds after the start, so the clients' send times interleave
//!   evenly; each request is stamped with that intended time.

use crate::loadgen::load::Pace;

/// The clients of one connection.
pub struct Clients {
    pace: Pace,
    members: Vec<Member>,
}

struct Member {
    /// Closed loop: requests this client may still send.
    credits: usize,
    /// Open loop: the next request's number and the client's phase (a fraction of one
    /// interval).
    next: u64,
    phase: f64,
}

impl Clients {
    /// Clients `indices` (numbers among `total` clients of the run), each at `pace`.
    pub fn new(pace: Pace, indices: &[usize], total: usize) -> Clients {
        let members = indices
            .iter()
            .map(|&index| Member {
                credits: match pace {
                    Pace::Closed { pipeline } => pipeline,
                    Pace::Open { .. } => 0,
                },
                next: 0,
                phase: index as f64 / total.max(1) as f64,
            })
            .collect();
        Clients { pace, members }
    }

    /// Offers every request ready at `now_ns` (since the start) to `send`, with the sending
    /// client's position on this connection and the request's stamp (send or intended time,
    /// ns since the start); stops at the first one `send` refuses (no room).
    pub fn take_ready(&mut self, now_ns: u64, mut send: impl FnMut(u32, u64) -> bool) {
        match self.pace {
            Pace::Closed { .. } => {
                for (position, member) in self.members.iter_mut().enumerate() {
                    while member.credits > 0 {
                        if !send(position as u32, now_ns) {
                            return;
                        }
                        member.credits -= 1;
                    }
                }
            }
            Pace::Open { per_second } => {
                for (position, member) in self.members.iter_mut().enumerate() {
                    loop {
                        let due = intended_ns(per_second, member.phase, member.next);
                        if due > now_ns {
                            break;
                        }
                        if !send(position as u32, due) {
                            return;
                        }
                        member.next += 1;
                    }
                }
            }
        }
    }

    /// A request of the client at `position` was answered.
    pub fn answered(&mut self, position: u32) {
        if let (Pace::Closed { .. }, Some(member)) =
            (self.pace, self.members.get_mut(position as usize))
        {
            member.credits += 1;
        }
    }

    /// Open loop: when the next request of any client is due (ns since the start).
    pub fn next_due_ns(&self) -> Option<u64> {
        match self.pace {
            Pace::Closed { .. } => None,
            Pace::Open { per_second } => self
                .members
                .iter()
                .map(|member| intended_ns(per_second, member.phase, member.next))
                .min(),
        }
    }
}

fn intended_ns(per_second: f64, phase: f64, request: u64) -> u64 {
    ((phase + request as f64) * 1e9 / per_second) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_loop_clients_keep_their_pipeline_in_flight() {
        let mut clients = Clients::new(Pace::Closed { pipeline: 2 }, &[0, 4], 8);
        let mut sent = Vec::new();
        clients.take_ready(7, |client, stamp| {
            sent.push((client, stamp));
            true
        });
        assert_eq!(sent, [(0, 7), (0, 7), (1, 7), (1, 7)]);
        sent.clear();
        clients.take_ready(8, |client, stamp| {
            sent.push((client, stamp));
            true
        });
        assert!(sent.is_empty(), "no credit left");
        clients.answered(1);
        clients.answered(9); // no such client: ignored
        clients.take_ready(9, |client, stamp| {
            sent.push((client, stamp));
            true
        });
        assert_eq!(sent, [(1, 9)]);
        assert_eq!(clients.next_due_ns(), None);
    }

    #[test]
    fn open_loop_clients_interleave_and_stop_when_refused() {
        // Two of four clients at 1,000/s: phases 1/4 and 3/4 of a millisecond.
        let mut clients = Clients::new(Pace::Open { per_second: 1000.0 }, &[1, 3], 4);
        assert_eq!(clients.next_due_ns(), Some(250_000));
        let mut sent = Vec::new();
        clients.take_ready(1_800_000, |client, stamp| {
            sent.push((client, stamp));
            true
        });
        assert_eq!(
            sent,
            [(0, 250_000), (0, 1_250_000), (1, 750_000), (1, 1_750_000)]
        );
        assert_eq!(clients.next_due_ns(), Some(2_250_000));
        let mut room = 1;
        sent.clear();
        clients.take_ready(3_000_000, |client, stamp| {
            sent.push((client, stamp));
            room -= 1;
            room >= 0
        });
        assert_eq!(
            sent,
            [(0, 2_250_000), (1, 2_750_000)],
            "the second was refused"
        );
        assert_eq!(
            clients.next_due_ns(),
            Some(2_750_000),
            "the refused one stays due"
        );
    }
}
