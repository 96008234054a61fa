//! Simulated kv clients: the workload, its retry policy, and the checks on what clients saw.
//!
//! Each client has at most one command in flight: SET of a unique value to a register key,
//! GET of a register (linearizable or lease read), or INCR of a counter key. A command is
//! planned the way the kv service plans it ([`crate::kv::command::plan`], with the simulated
//! clock as `now_ms`), proposed or read through the engine of the node the client believes
//! leads the key's group, and every answer goes through the kv service's retry policies.
//!
//! Writes of most clients go in client sessions ([`crate::engine::sessions`]), as the kv
//! service forwards writes: a client registers a session of a group before its first write
//! there, numbers each write, and every attempt of the write carries its number; answers go
//! through [`decide_in_session`], which retries whatever did not end the write, including
//! unknown outcomes (a timeout, or a node that crashed under the attempt), so a write is
//! applied exactly once unless its deadline passes or its session is forgotten while it is in
//! doubt. A session the group forgot (expired or evicted: some seeds keep very few, for a very
//! short time) is replaced by a new one while nothing is in doubt.
//!
//! The other clients ([`SESSIONLESS_CLIENTS`], or all of them in seeds that run without
//! sessions, see [`Clients::new`]) write without sessions, as the kv service does
//! on the leader a client is connected to, with [`decide`]: `Done` ends the command,
//! `Redirect` and `Retry` try again after [`RETRY_DELAY_US`] (a retry only ever follows an
//! attempt that certainly did nothing, which `decide` guarantees), `Unknown` ends a write with
//! an unknown outcome, `Failed` ends it as certainly not applied. A node that crashes under an
//! attempt answers nothing: such a write's outcome is then unknown.
//!
//! A command that cannot be retried before its deadline gives up: a write as not applied if no
//! attempt may have applied it (else as unknown), a read as unknown. A read whose node crashed
//! is retried, as the kv service's forwarding does when a connection breaks.
//!
//! Checked as answers arrive: a write acknowledged at an index is the entry committed there
//! (see [`crate::sim::checker`]), and one of a session is the one application of its request
//! (the checker sees every request applied at most once, at the same index on every node); a write answered "not applied" because another entry was
//! applied at its index ([`ProposalError::Superseded`]) has that other entry applied there
//! already; a read reflects at least every entry of its group that was applied anywhere
//! before its attempt reached the node, which covers every write acknowledged before it
//! began (the index a read reflects comes with its answer); and no read is served by a leader
//! that, when the read reached it, a leader of a later term had already replaced.
//!
//! Checks after the run:
//! - registers: the history of SETs and GETs is linearizable
//!   ([`crate::check::linearizability`]; unknown writes may have taken effect or not);
//! - counters: the final value (read from a node that applied everything committed) lies
//!   between the acknowledged INCRs and the acknowledged plus unknown ones: an INCR answered
//!   "not applied" that was applied (and so perhaps retried and applied twice) exceeds it.

use std::collections::BTreeMap;

use bytes::Bytes;
use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::check::linearizability::{self, Action as RegisterAction, Operation};
use crate::engine::{Committed, ProposalError};
use crate::kv::command::{plan, Context, Plan};
use crate::kv::parse::{parse_value, REPLY_LIMITS};
use crate::kv::resp::Value;
use crate::kv::route::{decide, decide_in_session, Attempt, SessionAnswer};
use crate::kv::session::Standing;
use crate::sim::checker::{Checker, Violation};
use crate::types::ReadConsistency;
use crate::types::{GroupId, LogIndex, NodeId, SessionId, SessionRequest, Term};

/// Simulated clients.
pub const CLIENTS: usize = 8;
/// Clients `0 .. SESSIONLESS_CLIENTS` write without client sessions.
pub const SESSIONLESS_CLIENTS: usize = 2;
/// Register keys (SET/GET) and counter keys (INCR).
const REGISTERS: u64 = 2;
const COUNTERS: u64 = 2;
/// Pause before another attempt.
pub const RETRY_DELAY_US: u64 = 20_000;
/// Chance that an attempt goes to a node that claims to lead, whatever the client's hint:
/// for a read (a deposed leader may serve it stale) and for a write.
const CLAIMANT_CHANCE_READ: f64 = 0.5;
const CLAIMANT_CHANCE_WRITE: f64 = 0.1;
/// How long a command keeps trying.
const DEADLINE_US: u64 = 1_500_000;

/// What an attempt asks of the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    Read(ReadConsistency),
    Write,
    /// Open a client session of the group (before a write in a session).
    Register,
    /// A write, as this request of a client session.
    WriteInSession(SessionRequest),
}

/// One attempt to run, on `node`.
pub struct AttemptOn {
    pub node: NodeId,
    pub group: GroupId,
    pub entry: Bytes,
    pub ask: Ask,
    /// Identifies the answer: the client and its attempt number.
    pub reply: (usize, u64),
}

#[derive(Clone, Copy, Debug)]
enum Command {
    Set { register: u64, value: u64 },
    Get { register: u64 },
    Incr { counter: u64 },
}

struct InFlight {
    command: Command,
    group: GroupId,
    entry: Bytes,
    read: Option<ReadConsistency>,
    invoked_us: u64,
    /// For a read: the highest index of its group that was acknowledged when it was invoked
    /// or applied anywhere when its latest attempt reached a node; the state it reads must
    /// reflect at least that.
    required: LogIndex,
    deadline_us: u64,
    /// The node holding the current attempt, if one is out.
    on: Option<NodeId>,
    /// For a read: set when its current attempt reached a leader that a later term's leader
    /// had already replaced (no read may be served there; see [`Clients::reached`]).
    reached_deposed: Option<String>,
    /// For a write of a client that uses sessions: its session and number, once it has them.
    numbered: Option<SessionRequest>,
    /// Whether some attempt may have applied the write.
    in_doubt: bool,
    /// What the current (or last) attempt asked.
    asked: Option<Ask>,
}

struct Client {
    attempt: u64,
    command: Option<InFlight>,
    /// Whether its writes go in client sessions.
    uses_sessions: bool,
    /// Its session of each group, with the number of its next write there.
    sessions: BTreeMap<GroupId, (SessionId, u64)>,
}

/// What happened to a command, for the counters' bounds.
#[derive(Clone, Copy, Debug, Default)]
struct CounterTally {
    acknowledged: u64,
    unknown: u64,
}

pub struct Clients {
    groups: u32,
    clients: Vec<Client>,
    /// Per group: the node last named leader.
    leader_hints: BTreeMap<GroupId, NodeId>,
    next_value: u64,
    history: Vec<Operation>,
    counters: BTreeMap<u64, CounterTally>,
    /// Writes acknowledged, with the index and entry they were acknowledged at.
    acknowledged: Vec<(GroupId, LogIndex, Bytes)>,
    /// Per group: the highest index in `acknowledged`.
    highest_acknowledged: BTreeMap<GroupId, LogIndex>,
    reads_served: u64,
}

/// What a finished attempt asks of the cluster.
pub enum Next {
    Nothing,
    /// Run the client's next attempt after the delay.
    RetryAfter(usize, u64),
}

fn register_key(register: u64) -> Bytes {
    Bytes::from(format!("r{register}"))
}

fn counter_key(counter: u64) -> Bytes {
    Bytes::from(format!("c{counter}"))
}

impl Clients {
    /// Clients of `groups` groups; with `sessions`, all but [`SESSIONLESS_CLIENTS`] write in
    /// client sessions, without it none does.
    pub fn new(groups: u32, sessions: bool) -> Clients {
        let sessionless = if sessions {
            SESSIONLESS_CLIENTS
        } else {
            CLIENTS
        };
        Clients {
            groups,
            clients: (0..CLIENTS)
                .map(|client| Client {
                    attempt: 0,
                    command: None,
                    uses_sessions: client >= sessionless,
                    sessions: BTreeMap::new(),
                })
                .collect(),
            leader_hints: BTreeMap::new(),
            next_value: 0,
            history: Vec::new(),
            counters: BTreeMap::new(),
            acknowledged: Vec::new(),
            highest_acknowledged: BTreeMap::new(),
            reads_served: 0,
        }
    }

    /// Clients without a command in flight.
    pub fn idle(&self) -> Vec<usize> {
        (0..CLIENTS)
            .filter(|&c| self.clients[c].command.is_none())
            .collect()
    }

    /// Client `client` starts a random command at `now_us`.
    pub fn start(&mut self, client: usize, rng: &mut Xoshiro256PlusPlus, now_us: u64) {
        let command = match rng.random_range(0..10) {
            0..=3 => {
                self.next_value += 1;
                Command::Set {
                    register: rng.random_range(0..REGISTERS),
                    value: self.next_value,
                }
            }
            4..=6 => Command::Get {
                register: rng.random_range(0..REGISTERS),
            },
            _ => Command::Incr {
                counter: rng.random_range(0..COUNTERS),
            },
        };
        let args: Vec<Bytes> = match command {
            Command::Set { register, value } => vec![
                Bytes::from_static(b"SET"),
                register_key(register),
                Bytes::from(value.to_string()),
            ],
            Command::Get { register } => vec![Bytes::from_static(b"GET"), register_key(register)],
            Command::Incr { counter } => vec![Bytes::from_static(b"INCR"), counter_key(counter)],
        };
        let context = Context {
            groups: self.groups,
            now_ms: now_us / 1000,
            connection_id: client as u64,
            standing: Standing::DEFAULT,
            entries: None,
        };
        let Plan::Routed(routed) = plan(&context, &args) else {
            unreachable!("single-key commands are routed");
        };
        let (group, entry) = routed.parts.into_iter().next().expect("one part");
        let read = (!routed.write).then(|| {
            if rng.random_bool(0.5) {
                ReadConsistency::Lease
            } else {
                ReadConsistency::Linearizable
            }
        });
        self.clients[client].command = Some(InFlight {
            command,
            group,
            entry,
            read,
            invoked_us: now_us,
            required: self
                .highest_acknowledged
                .get(&group)
                .copied()
                .unwrap_or(LogIndex::ZERO),
            deadline_us: now_us + DEADLINE_US,
            on: None,
            reached_deposed: None,
            numbered: None,
            in_doubt: false,
            asked: None,
        });
    }

    /// The command `client` has in flight, for traces.
    pub fn describe(&self, client: usize) -> String {
        match &self.clients[client].command {
            Some(command) => format!("{:?} in {}", command.command, command.group),
            None => "nothing".into(),
        }
    }

    /// The next attempt of `client`: on the node it believes leads the command's group, else
    /// on one of `live`; but now and then (as a client whose connection is to another node)
    /// on one of the nodes that claim to lead the group, `claimants[group]`, deposed leaders
    /// included, since those are the nodes that can serve a stale read. `None` if no node is
    /// up (then the client waits: see [`Clients::retry_or_give_up`]).
    pub fn attempt(
        &mut self,
        client: usize,
        live: &[NodeId],
        claimants: &[Vec<NodeId>],
        checker: &Checker,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Option<AttemptOn> {
        let state = &mut self.clients[client];
        let command = state.command.as_mut()?;
        // A read must reflect everything of its group committed before it reaches the node
        // (anything applied anywhere was committed), not only the acknowledged writes.
        command.required = command
            .required
            .max(checker.highest_committed(command.group));
        let hint = self
            .leader_hints
            .get(&command.group)
            .filter(|hint| live.contains(hint));
        let claimant_chance = match command.read {
            Some(_) => CLAIMANT_CHANCE_READ,
            None => CLAIMANT_CHANCE_WRITE,
        };
        let node = match hint {
            Some(&hint) if !rng.random_bool(claimant_chance) => hint,
            _ => {
                let claimants = &claimants[command.group.0 as usize];
                let candidates = if claimants.is_empty() {
                    live
                } else {
                    claimants
                };
                if candidates.is_empty() {
                    return None;
                }
                candidates[rng.random_range(0..candidates.len())]
            }
        };
        let ask = match (command.read, command.numbered) {
            (Some(consistency), _) => Ask::Read(consistency),
            (None, _) if !state.uses_sessions => Ask::Write,
            (None, Some(request)) => Ask::WriteInSession(request),
            (None, None) => match state.sessions.get_mut(&command.group) {
                Some((session, next_seq)) => {
                    *next_seq += 1;
                    let seq = *next_seq - 1;
                    // One write at a time: every earlier one is answered or given up.
                    let request = SessionRequest::new(*session, seq, seq).expect("seq <= seq");
                    command.numbered = Some(request);
                    Ask::WriteInSession(request)
                }
                None => Ask::Register,
            },
        };
        state.attempt += 1;
        command.on = Some(node);
        command.reached_deposed = None;
        command.asked = Some(ask);
        Some(AttemptOn {
            node,
            group: command.group,
            entry: command.entry.clone(),
            ask,
            reply: (client, state.attempt),
        })
    }

    /// `client`'s attempt reached `node`, which leads the command's group in `term`, while
    /// `newer` (term and node) was already elected in a later term. Every majority that could
    /// confirm a ReadIndex round of `node` from now on, or that acknowledged the round its
    /// lease rests on, holds a voter of `newer`'s election in `newer`'s term or later (a
    /// lease's voters refuse to vote until it has run out): so a read served here may be stale
    /// and must not be served.
    pub fn reached(&mut self, client: usize, node: NodeId, term: Term, newer: (Term, NodeId)) {
        if let Some(command) = self.clients[client].command.as_mut() {
            command.reached_deposed = Some(format!(
                "{node} served a read of {} as leader of {term}, but {} had been elected \
                 leader of {} before the read reached {node}",
                command.group, newer.1, newer.0
            ));
        }
    }

    /// Whether `client` has a command waiting for an attempt to be scheduled.
    pub fn waiting(&self, client: usize) -> bool {
        self.clients[client]
            .command
            .as_ref()
            .is_some_and(|command| command.on.is_none())
    }

    /// The answer to attempt `reply` from `node`.
    pub fn answered(
        &mut self,
        reply: (usize, u64),
        node: NodeId,
        result: Result<Committed, ProposalError>,
        now_us: u64,
        checker: &Checker,
    ) -> Result<Next, Violation> {
        let (client, attempt) = reply;
        if self.clients[client].attempt != attempt {
            return Ok(Next::Nothing);
        }
        let Some(command) = self.clients[client].command.as_mut() else {
            return Ok(Next::Nothing);
        };
        command.on = None;
        let write = command.read.is_none();
        let asked = command.asked.expect("an attempt asked something");
        let group = command.group;
        if asked == Ask::Register {
            if let Err(ProposalError::NotLeader {
                leader: Some(leader),
            }) = &result
            {
                self.leader_hints.insert(group, *leader);
            }
            if let Ok(registered) = &result {
                let session = SessionId(registered.index.0);
                self.clients[client].sessions.insert(group, (session, 1));
            }
            // Whatever the answer, the write goes on: in the new session, or registering
            // again (a registration whose outcome is unknown leaves at most an unused session).
            return self.retry_or_give_up(client, now_us);
        }
        if let Err(ProposalError::Superseded { index }) = &result {
            let unique = matches!(command.command, Command::Set { .. }) && asked == Ask::Write;
            checker.superseded(command.group, *index, &command.entry, unique)?;
        }
        let index = result.as_ref().ok().map(|committed| committed.index);
        let decision = match asked {
            Ask::WriteInSession(_) => decide_in_session(
                SessionAnswer::of(result.map(|committed| committed.output), node),
                &mut command.in_doubt,
            ),
            _ => decide(result.map(|committed| committed.output), write, node),
        };
        match decision {
            Attempt::Done(output) => {
                let index = index.expect("a done attempt has an index");
                if write {
                    match asked {
                        Ask::WriteInSession(request) => {
                            checker.acknowledged_in_session(
                                command.group,
                                index,
                                request,
                                &command.entry,
                            )?;
                        }
                        _ => checker.acknowledged(command.group, index, &command.entry)?,
                    }
                    self.acknowledged
                        .push((command.group, index, command.entry.clone()));
                    let highest = self.highest_acknowledged.entry(command.group).or_default();
                    *highest = index.max(*highest);
                } else if let Some(stale) = command.reached_deposed.take() {
                    return Err(Violation(stale));
                } else if index < command.required {
                    return Err(Violation(format!(
                        "{node} served a read of {} at index {index}, but the entry at {} was \
                         committed (or a write there acknowledged) before the read reached it",
                        command.group, command.required
                    )));
                }
                self.finish(client, Outcome::Done(output), now_us)?;
                Ok(Next::Nothing)
            }
            Attempt::Redirect(leader) => {
                self.leader_hints.insert(command.group, leader);
                self.retry_or_give_up(client, now_us)
            }
            Attempt::Retry => {
                self.leader_hints.remove(&command.group);
                self.retry_or_give_up(client, now_us)
            }
            Attempt::NewSession => {
                // The group forgot the session and nothing is in doubt: a new session, and a
                // new number in it.
                command.numbered = None;
                self.clients[client].sessions.remove(&group);
                self.retry_or_give_up(client, now_us)
            }
            Attempt::Unknown(_) => {
                self.finish(client, Outcome::Unknown, now_us)?;
                Ok(Next::Nothing)
            }
            Attempt::Failed(_) => {
                self.finish(client, Outcome::NotApplied, now_us)?;
                Ok(Next::Nothing)
            }
        }
    }

    /// `node` crashed: the attempts it held get no answer (see the module documentation).
    pub fn crashed(&mut self, node: NodeId, now_us: u64) -> Result<Vec<Next>, Violation> {
        let mut next = Vec::new();
        for client in 0..CLIENTS {
            let Some(command) = self.clients[client].command.as_mut() else {
                continue;
            };
            if command.on != Some(node) {
                continue;
            }
            command.on = None;
            self.leader_hints.remove(&command.group);
            match command.asked {
                Some(Ask::Write) => self.finish(client, Outcome::Unknown, now_us)?,
                Some(Ask::WriteInSession(_)) => {
                    command.in_doubt = true;
                    next.push(self.retry_or_give_up(client, now_us)?);
                }
                _ => next.push(self.retry_or_give_up(client, now_us)?),
            }
        }
        Ok(next)
    }

    /// Another attempt after [`RETRY_DELAY_US`], unless that passes the deadline: then the
    /// command gives up (a write certainly not applied unless an attempt may have applied it,
    /// a read unknown).
    pub fn retry_or_give_up(&mut self, client: usize, now_us: u64) -> Result<Next, Violation> {
        let command = self.clients[client].command.as_ref().expect("in flight");
        if now_us + RETRY_DELAY_US > command.deadline_us {
            let outcome = if command.read.is_none() && !command.in_doubt {
                Outcome::NotApplied
            } else {
                Outcome::Unknown
            };
            self.finish(client, outcome, now_us)?;
            return Ok(Next::Nothing);
        }
        Ok(Next::RetryAfter(client, RETRY_DELAY_US))
    }

    fn finish(&mut self, client: usize, outcome: Outcome, now_us: u64) -> Result<(), Violation> {
        let command = self.clients[client].command.take().expect("in flight");
        let operation = |key, action, completed| Operation {
            client: client as u64,
            key,
            action,
            invoked: command.invoked_us,
            completed,
        };
        match (command.command, outcome) {
            (Command::Set { register, value }, Outcome::Done(_)) => self.history.push(operation(
                register,
                RegisterAction::Write(value),
                Some(now_us),
            )),
            (Command::Set { register, value }, Outcome::Unknown) => {
                self.history
                    .push(operation(register, RegisterAction::Write(value), None))
            }
            (Command::Get { register }, Outcome::Done(output)) => {
                let value = match parse_reply(&output) {
                    Some(Value::Nil) => None,
                    Some(Value::Bulk(bytes)) => Some(parse_number(&bytes)?),
                    other => return Err(unexpected("GET", other)),
                };
                self.reads_served += 1;
                self.history.push(operation(
                    register,
                    RegisterAction::Read(Some(value)),
                    Some(now_us),
                ));
            }
            (Command::Incr { counter }, Outcome::Done(output)) => match parse_reply(&output) {
                Some(Value::Integer(_)) => {
                    self.counters.entry(counter).or_default().acknowledged += 1
                }
                other => return Err(unexpected("INCR", other)),
            },
            (Command::Incr { counter }, Outcome::Unknown) => {
                self.counters.entry(counter).or_default().unknown += 1
            }
            (_, Outcome::NotApplied) | (Command::Get { .. }, Outcome::Unknown) => {}
        }
        Ok(())
    }

    /// Ends every command still in flight with an unknown outcome (the run is over).
    pub fn abandon(&mut self, now_us: u64) -> Result<(), Violation> {
        for client in 0..CLIENTS {
            if self.clients[client].command.is_some() {
                self.finish(client, Outcome::Unknown, now_us)?;
            }
        }
        Ok(())
    }

    pub fn acknowledged_writes(&self) -> usize {
        self.acknowledged.len()
    }

    pub fn reads_served(&self) -> u64 {
        self.reads_served
    }

    /// A read query for probes: a GET of a register (what it returns does not matter).
    pub fn probe_entry(&self) -> Bytes {
        let context = Context {
            groups: self.groups,
            now_ms: 0,
            connection_id: u64::MAX,
            standing: Standing::DEFAULT,
            entries: None,
        };
        let args = [Bytes::from_static(b"GET"), register_key(0)];
        let Plan::Routed(routed) = plan(&context, &args) else {
            unreachable!("GET is routed");
        };
        routed.parts.into_iter().next().expect("one part").1
    }

    /// The groups of the counter keys, with the GET entries that read them.
    pub fn counter_reads(&self, now_us: u64) -> Vec<(u64, GroupId, Bytes)> {
        let context = Context {
            groups: self.groups,
            now_ms: now_us / 1000,
            connection_id: u64::MAX,
            standing: Standing::DEFAULT,
            entries: None,
        };
        (0..COUNTERS)
            .map(|counter| {
                let args = [Bytes::from_static(b"GET"), counter_key(counter)];
                let Plan::Routed(routed) = plan(&context, &args) else {
                    unreachable!("GET is routed");
                };
                let (group, entry) = routed.parts.into_iter().next().expect("one part");
                (counter, group, entry)
            })
            .collect()
    }

    /// The checks after the run (see the module documentation). `final_counter(counter)` is
    /// the counter's GET reply on a node that applied everything committed in its group.
    pub fn check(&self, final_counter: impl Fn(u64) -> Bytes) -> Result<(), Violation> {
        let report = linearizability::check(&self.history);
        if let Some(example) = report.counter_examples.first() {
            return Err(Violation(format!("registers: {example}")));
        }
        for counter in 0..COUNTERS {
            let tally = self.counters.get(&counter).copied().unwrap_or_default();
            let value = match parse_reply(&final_counter(counter)) {
                Some(Value::Nil) => 0,
                Some(Value::Bulk(bytes)) => parse_number(&bytes)?,
                other => return Err(unexpected("GET of a counter", other)),
            };
            if value < tally.acknowledged || value > tally.acknowledged + tally.unknown {
                return Err(Violation(format!(
                    "counter c{counter} is {value}, but {} INCRs were acknowledged and {} have \
                     an unknown outcome",
                    tally.acknowledged, tally.unknown
                )));
            }
        }
        Ok(())
    }
}

enum Outcome {
    Done(Bytes),
    Unknown,
    NotApplied,
}

fn parse_reply(output: &[u8]) -> Option<Value> {
    match parse_value(output, &REPLY_LIMITS) {
        Ok(Some((value, used))) if used == output.len() => Some(value),
        _ => None,
    }
}

fn parse_number(bytes: &[u8]) -> Result<u64, Violation> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| Violation(format!("a register holds {bytes:?}, not a number")))
}

fn unexpected(what: &str, reply: Option<Value>) -> Violation {
    Violation(format!("unexpected reply to {what}: {reply:?}"))
}
