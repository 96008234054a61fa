//! The fault mix of one simulation run, drawn from its seed (swarm testing: each seed stresses
//! a different blend, so rare combinations appear across many seeds).

use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// Probabilities and ranges that drive the faults of one run.
#[derive(Clone, Debug)]
pub struct FaultMix {
    /// Chance that a message is lost.
    pub loss: f64,
    /// Chance that a message is delivered twice.
    pub duplication: f64,
    /// Message delay is drawn from `1 ..= delay_max_us` (reordering follows from the spread).
    pub delay_max_us: u64,
    /// Time a write + sync takes, drawn from `sync_min_us ..= sync_max_us`.
    pub sync_min_us: u64,
    pub sync_max_us: u64,
    /// Chance that a flush's sync fails (fatal for the node).
    pub sync_failure: f64,
    /// Per tick of simulated time: chance that a new network partition starts.
    pub partition_per_tick: f64,
    /// Per tick: chance that some node crashes.
    pub crash_per_tick: f64,
    /// Per tick: chance that a crashed node restarts.
    pub restart_per_tick: f64,
    /// Per tick: chance that the client asks the leader to hand over leadership.
    pub transfer_per_tick: f64,
    /// Per tick: chance that an idle client starts a command.
    pub propose_per_tick: f64,
    /// Chance that a message stalls (a connection that stops moving for a while): it arrives
    /// [`STALL_TICKS`] later than its delay says, long after messages sent after it.
    pub stall: f64,
    /// Chance that a message arrives garbled ([`crate::sim::garble`]).
    pub garble: f64,
}

/// How many ticks a stalled message is held, on top of its delay.
pub const STALL_TICKS: std::ops::RangeInclusive<u64> = 5..=40;

impl FaultMix {
    /// Draws a mix from the run's generator.
    pub fn draw(rng: &mut Xoshiro256PlusPlus) -> FaultMix {
        let sync_min_us = rng.random_range(50..=500);
        FaultMix {
            loss: pick(rng, 0.5, 0.0, 0.30),
            duplication: pick(rng, 0.5, 0.0, 0.30),
            delay_max_us: rng.random_range(100..=20_000),
            sync_min_us,
            sync_max_us: sync_min_us + rng.random_range(0..=5_000),
            sync_failure: pick(rng, 0.2, 0.0, 0.01),
            partition_per_tick: pick(rng, 0.7, 0.0, 0.03),
            crash_per_tick: pick(rng, 0.7, 0.0, 0.02),
            restart_per_tick: rng.random_range(0.02..0.2),
            transfer_per_tick: pick(rng, 0.3, 0.0, 0.01),
            propose_per_tick: rng.random_range(0.2..1.0),
            stall: pick(rng, 0.3, 0.0, 0.05),
            garble: pick(rng, 0.2, 0.0, 0.02),
        }
    }

    /// A calm network and disk, for the liveness phase.
    pub fn healed(&self) -> FaultMix {
        FaultMix {
            loss: 0.0,
            duplication: 0.0,
            delay_max_us: self.delay_max_us.min(2_000),
            partition_per_tick: 0.0,
            crash_per_tick: 0.0,
            restart_per_tick: 1.0,
            transfer_per_tick: 0.0,
            sync_failure: 0.0,
            stall: 0.0,
            garble: 0.0,
            ..self.clone()
        }
    }
}

/// With chance `enabled`, a value drawn from `low..high`; otherwise zero.
fn pick(rng: &mut Xoshiro256PlusPlus, enabled: f64, low: f64, high: f64) -> f64 {
    if rng.random_bool(enabled) {
        rng.random_range(low..high)
    } else {
        0.0
    }
}
