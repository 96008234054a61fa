//! Counts of the RESP commands a `ringraft kv` node received and of those answered with an
//! error, by command, exposed on the node's metrics endpoint ([`crate::metrics`]) as
//! `ringraft_resp_commands_total` and `ringraft_resp_command_errors_total`.
//!
//! Invariants: the `command` label takes only the command table's names plus `unknown` and
//! `protocol_error`, whatever clients send, so the number of series is fixed; counting is
//! one relaxed atomic add, shared by every connection without a lock.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;

use crate::kv::command;

#[derive(Debug, Default)]
struct Counts {
    received: AtomicU64,
    errors: AtomicU64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct RespStats {
    /// One slot per command of the table, then [`RespStats::UNKNOWN`] and
    /// [`RespStats::PROTOCOL_ERROR`].
    slots: Vec<Counts>,
}

impl Default for RespStats {
    fn default() -> Self {
        RespStats {
            slots: (0..command::names().count() + 2)
                .map(|_| Counts::default())
                .collect(),
        }
    }
}

impl RespStats {
    /// The slot of bytes that are not RESP.
    pub fn protocol_error_slot(&self) -> usize {
        self.slots.len() - 1
    }

    /// The slot of a command named `name` (any case; `unknown` for names not in the table).
    pub fn slot(&self, name: Option<&[u8]>) -> usize {
        name.and_then(command::index_of)
            .unwrap_or(self.slots.len() - 2)
    }

    /// A command of `slot` arrived.
    pub fn received(&self, slot: usize) {
        self.slots[slot].received.fetch_add(1, Ordering::Relaxed);
    }

    /// A command of `slot` was answered with `reply`.
    pub fn answered(&self, slot: usize, reply: &[u8]) {
        if reply.first() == Some(&b'-') {
            self.slots[slot].errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn labelled(&self) -> impl Iterator<Item = (String, &Counts)> {
        command::names()
            .map(|name| name.to_ascii_lowercase())
            .chain(["unknown".to_string(), "protocol_error".to_string()])
            .zip(&self.slots)
    }
}

impl Collector for RespStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        type Load = fn(&Counts) -> u64;
        let families: [(&str, &str, Load); 2] = [
            (
                "ringraft_resp_commands",
                "RESP commands received, by command",
                |counts| counts.received.load(Ordering::Relaxed),
            ),
            (
                "ringraft_resp_command_errors",
                "RESP commands answered with an error reply, by command",
                |counts| counts.errors.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in families {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (command, counts) in self.labelled() {
                let labels = [("command", command)];
                ConstCounter::new(value(counts)).encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_count_under_their_table_name_and_strangers_under_unknown() {
        let stats = RespStats::default();
        let get = stats.slot(Some(b"gEt"));
        assert_eq!(get, command::index_of(b"GET").unwrap());
        stats.received(get);
        stats.answered(get, b"$-1\r\n");
        let unknown = stats.slot(Some(b"FLUSHALL"));
        assert_eq!(unknown, stats.slot(None));
        stats.received(unknown);
        stats.answered(unknown, b"-ERR unknown command\r\n");
        let counted: Vec<(String, u64, u64)> = stats
            .labelled()
            .map(|(name, counts)| {
                let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
                (name, load(&counts.received), load(&counts.errors))
            })
            .filter(|(_, received, _)| *received > 0)
            .collect();
        assert_eq!(
            counted,
            vec![("get".into(), 1, 0), ("unknown".into(), 1, 1)]
        );
    }
}
