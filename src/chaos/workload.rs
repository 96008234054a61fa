//! The register workload: client threads doing `SET key value` and `GET key` against random
//! nodes, recording a history for [`check::linearizability`](crate::check::linearizability).
//!
//! Keys are named `chaos:<id>`; a client uses the `keys` ids of the current epoch (`epoch`
//! long), so each register's history stays short enough to check while a long run covers many
//! registers. Client `c`'s `s`-th write sets the value `c<c>-<s>`, whose id is `c << 32 | s`.
//!
//! Invariants:
//! - Values are unique per write, so a read names the write it saw.
//! - A write is recorded when it may have been sent: answered `+OK` → completed; anything else
//!   (error reply, timeout, broken connection) → outcome unknown. A write whose connection
//!   could not be opened was never sent and is not recorded. A read is recorded only when
//!   answered with a value or nil; a value that no client wrote reads as [`FOREIGN_VALUE`].
//! - Times are µs since the workload started, one clock for all clients; every wait is bounded
//!   by the call timeout, and the threads stop within one call timeout of [`Workload::finish`].

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::chaos::resp_client::{CallError, RespConnection};
use crate::check::linearizability::{Action, Operation};
use crate::kv::resp::Value;

/// The id a read gets when it returned a value no client wrote (no write has it).
pub const FOREIGN_VALUE: u64 = u64::MAX;

/// How the clients run.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    pub clients: u64,
    pub keys: u64,
    pub epoch: Duration,
    pub call_timeout: Duration,
    /// Every node's RESP address.
    pub nodes: Vec<SocketAddr>,
    pub seed: u64,
}

/// What the clients did.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub operations: Vec<Operation>,
    /// (key, value) of every acknowledged write.
    pub acknowledged: Vec<(Vec<u8>, Vec<u8>)>,
    /// Every key id used.
    pub keys: BTreeSet<u64>,
}

pub fn key_name(id: u64) -> Vec<u8> {
    format!("chaos:{id}").into_bytes()
}

pub fn value_name(client: u64, seq: u64) -> Vec<u8> {
    format!("c{client}-{seq}").into_bytes()
}

/// The id of a value written by the workload, if it is one (`c<client>-<seq>`).
pub fn value_id(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?.strip_prefix('c')?;
    let (client, seq) = text.split_once('-')?;
    let (client, seq): (u64, u64) = (client.parse().ok()?, seq.parse().ok()?);
    (client < 1 << 31 && seq < 1 << 32 && value_name(client, seq) == value)
        .then_some(client << 32 | seq)
}

/// Running clients.
pub struct Workload {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicU64>,
    threads: Vec<JoinHandle<History>>,
    started: Instant,
    config: WorkloadConfig,
}

/// The outcome of one call.
enum Outcome {
    NotSent,
    Reply(Value),
    Unknown,
}

/// One client's connections, one per node, opened on demand.
struct Connections {
    open: HashMap<SocketAddr, RespConnection>,
    timeout: Duration,
}

impl Connections {
    fn call(&mut self, addr: SocketAddr, args: &[&[u8]]) -> Outcome {
        let connection = match self.open.entry(addr) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                match RespConnection::connect(addr, self.timeout) {
                    Ok(connection) => entry.insert(connection),
                    Err(_) => return Outcome::NotSent,
                }
            }
        };
        match connection.call(args) {
            Ok(value) => Outcome::Reply(value),
            Err(error) => {
                self.open.remove(&addr);
                match error {
                    CallError::Connect(_) => Outcome::NotSent,
                    _ => Outcome::Unknown,
                }
            }
        }
    }
}

/// A read's recorded result, or `None` when it is not recorded.
fn read_result(reply: Value) -> Option<Option<u64>> {
    match reply {
        Value::Nil => Some(None),
        Value::Bulk(value) => Some(Some(value_id(&value).unwrap_or(FOREIGN_VALUE))),
        _ => None,
    }
}

impl Workload {
    pub fn start(config: WorkloadConfig) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let threads = (0..config.clients)
            .map(|client| {
                let (config, stop, acknowledged) =
                    (config.clone(), stop.clone(), acknowledged.clone());
                std::thread::Builder::new()
                    .name(format!("chaos-client-{client}"))
                    .spawn(move || run_client(client, &config, started, &stop, &acknowledged))
                    .expect("spawn client")
            })
            .collect();
        Workload {
            stop,
            acknowledged,
            threads,
            started,
            config,
        }
    }

    /// Writes acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed)
    }

    /// Stops the clients, then reads every key used once more (through any node that answers,
    /// within `limit` per key) and returns the whole history.
    pub fn finish(self, limit: Duration) -> History {
        self.stop.store(true, Ordering::Relaxed);
        let mut history = History::default();
        for thread in self.threads {
            let part = thread.join().expect("client thread");
            history.operations.extend(part.operations);
            history.acknowledged.extend(part.acknowledged);
            history.keys.extend(part.keys);
        }
        let reader = self.config.clients;
        let mut connections = Connections {
            open: HashMap::new(),
            timeout: self.config.call_timeout,
        };
        let now = |started: Instant| started.elapsed().as_micros() as u64;
        for &key in &history.keys {
            let name = key_name(key);
            let deadline = Instant::now() + limit;
            for attempt in 0.. {
                if Instant::now() >= deadline {
                    break;
                }
                let addr = self.config.nodes[attempt % self.config.nodes.len()];
                let invoked = now(self.started);
                if let Outcome::Reply(reply) = connections.call(addr, &[b"GET", &name]) {
                    if let Some(result) = read_result(reply) {
                        history.operations.push(Operation {
                            client: reader,
                            key,
                            action: Action::Read(Some(result)),
                            invoked,
                            completed: Some(now(self.started)),
                        });
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        history
    }
}

fn run_client(
    client: u64,
    config: &WorkloadConfig,
    started: Instant,
    stop: &AtomicBool,
    acknowledged: &AtomicU64,
) -> History {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed ^ (client + 1) << 40);
    let mut connections = Connections {
        open: HashMap::new(),
        timeout: config.call_timeout,
    };
    let mut history = History::default();
    let mut seq = 0;
    let now = || started.elapsed().as_micros() as u64;
    while !stop.load(Ordering::Relaxed) {
        let epoch = (started.elapsed().as_nanos() / config.epoch.as_nanos().max(1)) as u64;
        let key = epoch * config.keys + rng.random_range(0..config.keys);
        let name = key_name(key);
        let addr = config.nodes[rng.random_range(0..config.nodes.len())];
        let invoked = now();
        if rng.random_bool(0.5) {
            let value = value_name(client, seq);
            let id = client << 32 | seq;
            seq += 1;
            let completed = match connections.call(addr, &[b"SET", &name, &value]) {
                Outcome::NotSent => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Outcome::Reply(Value::Simple(ok)) if ok == "OK" => {
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                    history.acknowledged.push((name, value));
                    Some(now())
                }
                Outcome::Reply(_) | Outcome::Unknown => None,
            };
            history.keys.insert(key);
            history.operations.push(Operation {
                client,
                key,
                action: Action::Write(id),
                invoked,
                completed,
            });
        } else if let Outcome::Reply(reply) = connections.call(addr, &[b"GET", &name]) {
            if let Some(result) = read_result(reply) {
                history.keys.insert(key);
                history.operations.push(Operation {
                    client,
                    key,
                    action: Action::Read(Some(result)),
                    invoked,
                    completed: Some(now()),
                });
            }
        }
    }
    history
}

/// The same history without what cannot matter to the linearizability check, and with every
/// unknown write bounded:
/// - an unknown write whose value no read returned is dropped (it may never have taken
///   effect, and dropping it is that choice: no read depends on it);
/// - an unknown write whose value was read is given, as completion, the latest completion
///   of a read that returned it (it must take effect before those reads do).
///
/// The result is linearizable exactly when the input is, and has no infinite operation.
pub fn bound_unknown_writes(history: &[Operation]) -> Vec<Operation> {
    let mut last_read: HashMap<(u64, u64), u64> = HashMap::new();
    for op in history {
        if let (Action::Read(Some(Some(value))), Some(completed)) = (&op.action, op.completed) {
            let latest = last_read.entry((op.key, *value)).or_default();
            *latest = (*latest).max(completed);
        }
    }
    history
        .iter()
        .filter_map(|op| match (&op.action, op.completed) {
            (Action::Write(value), None) => {
                let read = last_read.get(&(op.key, *value))?;
                Some(Operation {
                    completed: Some((*read).max(op.invoked)),
                    ..op.clone()
                })
            }
            _ => Some(op.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::linearizability::linearizable;

    fn op(action: Action, invoked: u64, completed: Option<u64>) -> Operation {
        Operation {
            client: 0,
            key: 1,
            action,
            invoked,
            completed,
        }
    }

    #[test]
    fn values_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(value_id(&value_name(3, 17)), Some(3 << 32 | 17));
        for foreign in [&b"c3-017"[..], b"x1-2", b"c1", b"c-1-2", b""] {
            assert_eq!(value_id(foreign), None, "{foreign:?}");
        }
    }

    #[test]
    fn bounding_unknown_writes_keeps_the_verdict() {
        let unknown = |value, invoked| op(Action::Write(value), invoked, None);
        let read =
            |value, invoked, completed| op(Action::Read(Some(value)), invoked, Some(completed));
        let cases = [
            // Never read: dropped; the history stays linearizable.
            vec![unknown(1, 0), read(None, 5, 6)],
            // Read, then an older value read back later: not linearizable either way.
            vec![
                op(Action::Write(2), 0, Some(1)),
                unknown(1, 2),
                read(Some(1), 5, 6),
                read(Some(2), 8, 9),
            ],
            // Read after it was invoked: fine either way.
            vec![unknown(1, 2), read(Some(1), 5, 6), read(Some(1), 8, 9)],
        ];
        for history in cases {
            let bounded = bound_unknown_writes(&history);
            assert!(bounded.iter().all(|op| op.completed.is_some()));
            assert_eq!(
                linearizable(&bounded),
                linearizable(&history),
                "{history:?}"
            );
        }
        assert_eq!(bound_unknown_writes(&[unknown(1, 0)]), vec![]);
    }
}
