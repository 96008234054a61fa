//! Rate-limited reporting of events that can come in floods: those a client can cause at will
//! (failed AUTH attempts, refused peer proofs, failed TLS handshakes, rejected peer hellos), and
//! a shard's thread standing still on a starved machine. The first event is
//! reported at once, later ones at most once per interval, each report carrying how many
//! events it stands for.
//!
//! Invariants:
//! - [`LogLimiter::note`] returns `Some` at most once per interval, and the counts it returns
//!   add up to the events noted before the last report: an event is never counted twice.
//! - It never blocks for long: one short critical section per event.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LogLimiter {
    every: Duration,
    state: Mutex<State>,
}

struct State {
    last_report: Option<Instant>,
    unreported: u64,
}

impl LogLimiter {
    /// A limiter that reports at most once per `every`.
    pub const fn new(every: Duration) -> LogLimiter {
        LogLimiter {
            every,
            state: Mutex::new(State {
                last_report: None,
                unreported: 0,
            }),
        }
    }

    /// Counts one event at `now`; `Some(n)` when it is to be reported, `n` being the events since
    /// the last report, this one included.
    pub fn note(&self, now: Instant) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.unreported += 1;
        let due = state
            .last_report
            .is_none_or(|last| now.saturating_duration_since(last) >= self.every);
        if !due {
            return None;
        }
        state.last_report = Some(now);
        Some(std::mem::take(&mut state.unreported))
    }

    /// The reporting interval.
    #[cfg(feature = "kv")]
    pub fn every(&self) -> Duration {
        self.every
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_first_event_then_at_most_once_per_interval_with_a_count() {
        let limiter = LogLimiter::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(limiter.note(start), Some(1));
        for ms in 1..=999 {
            assert_eq!(limiter.note(start + Duration::from_millis(ms * 10)), None);
        }
        assert_eq!(limiter.note(start + Duration::from_secs(10)), Some(1000));
        assert_eq!(limiter.note(start + Duration::from_secs(11)), None);
        assert_eq!(limiter.note(start + Duration::from_secs(25)), Some(2));
    }
}
