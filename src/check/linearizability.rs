//! A linearizability checker for histories of registers (one register per key), after Wing and
//! Gong, with the memoization of Lowe: a search over the orders in which the operations could
//! have taken effect, remembering every (set of operations taken effect, register value) pair
//! already explored so that no configuration is searched twice.
//!
//! A history is a list of [`Operation`]s, each with its invocation time and, when the client
//! learnt the outcome, its completion time and result. An operation whose outcome is unknown
//! (timed out, connection lost) may have taken effect at any moment after its invocation, or
//! never: it is given an infinite completion time, and a write that never took effect is the
//! same as one that took effect after everything else. A read with an unknown result
//! constrains nothing and is left out.
//!
//! Keys are independent registers, so the history is checked key by key (each key's search is
//! exponential only in its own concurrency). When a key fails, the checker shrinks its
//! history to a minimal failing sub-history: removing any single operation of the reported
//! one makes it linearizable.

use std::collections::{BTreeMap, HashSet};

/// What a client did to a key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Set the register.
    Write(u64),
    /// Read the register: `Some(value)` as returned (`None` inside: never written), or `None`
    /// when the result is unknown.
    Read(Option<Option<u64>>),
}

/// One operation of a history. Times are in any monotonic unit shared by all clients.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Operation {
    pub client: u64,
    pub key: u64,
    pub action: Action,
    pub invoked: u64,
    /// `None`: the outcome is unknown.
    pub completed: Option<u64>,
}

/// A key whose operations admit no linearization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterExample {
    pub key: u64,
    /// A minimal sub-history of the key that is not linearizable, by invocation time.
    pub operations: Vec<Operation>,
}

impl std::fmt::Display for CounterExample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "key {} is not linearizable; minimal history:", self.key)?;
        for op in &self.operations {
            let completed = op
                .completed
                .map_or_else(|| "unknown".to_string(), |t| t.to_string());
            writeln!(
                f,
                "  client {} {:?} invoked {} completed {}",
                op.client, op.action, op.invoked, completed
            )?;
        }
        Ok(())
    }
}

/// What a check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub keys: usize,
    pub operations: usize,
    pub counter_examples: Vec<CounterExample>,
}

/// Checks every key of `history`; each key that fails yields a minimal counter-example.
pub fn check(history: &[Operation]) -> Report {
    let mut by_key: BTreeMap<u64, Vec<Operation>> = BTreeMap::new();
    for op in history {
        if op.action != Action::Read(None) {
            by_key.entry(op.key).or_default().push(op.clone());
        }
    }
    let mut report = Report {
        keys: by_key.len(),
        operations: by_key.values().map(Vec::len).sum(),
        counter_examples: Vec::new(),
    };
    for (key, operations) in by_key {
        if !linearizable(&operations) {
            report.counter_examples.push(CounterExample {
                key,
                operations: shrink(operations),
            });
        }
    }
    report
}

/// Removes operations one at a time as long as the rest still fails.
fn shrink(mut operations: Vec<Operation>) -> Vec<Operation> {
    let mut position = 0;
    while position < operations.len() {
        let mut without = operations.clone();
        without.remove(position);
        if linearizable(&without) {
            position += 1;
        } else {
            operations = without;
        }
    }
    operations.sort_by_key(|op| op.invoked);
    operations
}

/// One call or return event, in a doubly linked list ordered by time.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// For a call: the position of its return event.
    partner: usize,
    prev: usize,
    next: usize,
}

/// The list's head sentinel lives at position 0.
const HEAD: usize = 0;

/// Whether the operations of one register admit a linearization.
pub fn linearizable(operations: &[Operation]) -> bool {
    // Events sorted by time; at equal times calls come first (operations that touch in time
    // are treated as concurrent).
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(operations.len() * 2);
    for (index, op) in operations.iter().enumerate() {
        order.push((op.invoked, false, index));
        order.push((op.completed.unwrap_or(u64::MAX), true, index));
    }
    order.sort();
    let mut events = vec![Event {
        op: usize::MAX,
        is_call: false,
        partner: 0,
        prev: HEAD,
        next: 1,
    }];
    let mut call_at = vec![0; operations.len()];
    for (position, &(_, is_return, op)) in order.iter().enumerate() {
        let slot = position + 1;
        events.push(Event {
            op,
            is_call: !is_return,
            partner: 0,
            prev: slot - 1,
            next: if position + 1 == order.len() {
                HEAD
            } else {
                slot + 1
            },
        });
        if is_return {
            events[call_at[op]].partner = slot;
        } else {
            call_at[op] = slot;
        }
    }
    if order.is_empty() {
        return true;
    }
    events[HEAD].next = 1;
    events[HEAD].prev = order.len();

    let words = operations.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, Option<u64>)> = HashSet::new();
    let mut state: Option<u64> = None;
    // Stack of (call position, state before it).
    let mut stack: Vec<(usize, Option<u64>)> = Vec::new();
    let mut cursor = events[HEAD].next;
    while events[HEAD].next != HEAD {
        let event = events[cursor];
        if event.is_call {
            let op = &operations[event.op];
            let after = match &op.action {
                Action::Write(value) => Some(Some(*value)),
                Action::Read(Some(value)) if *value == state => Some(state),
                Action::Read(Some(_)) => None,
                // A read with an unknown result fits anywhere.
                Action::Read(None) => Some(state),
            };
            if let Some(after) = after {
                let mut next_set = linearized.clone();
                next_set[event.op / 64] |= 1 << (event.op % 64);
                if seen.insert((next_set.clone(), after)) {
                    stack.push((cursor, state));
                    linearized = next_set;
                    state = after;
                    lift(&mut events, cursor);
                    cursor = events[HEAD].next;
                    continue;
                }
            }
            cursor = event.next;
        } else {
            // A return before its call was linearized: undo the last choice.
            let Some((call, previous)) = stack.pop() else {
                return false;
            };
            let op = events[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            state = previous;
            unlift(&mut events, call);
            cursor = events[call].next;
        }
    }
    true
}

/// Takes a call and its return out of the list.
fn lift(events: &mut [Event], call: usize) {
    for position in [call, events[call].partner] {
        let Event { prev, next, .. } = events[position];
        events[prev].next = next;
        events[next].prev = prev;
    }
}

/// Puts a lifted call and its return back (in reverse order of removal).
fn unlift(events: &mut [Event], call: usize) {
    for position in [events[call].partner, call] {
        let Event { prev, next, .. } = events[position];
        events[prev].next = position;
        events[next].prev = position;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(client: u64, value: u64, invoked: u64, completed: u64) -> Operation {
        Operation {
            client,
            key: 1,
            action: Action::Write(value),
            invoked,
            completed: Some(completed),
        }
    }

    fn read(client: u64, value: Option<u64>, invoked: u64, completed: u64) -> Operation {
        Operation {
            client,
            key: 1,
            action: Action::Read(Some(value)),
            invoked,
            completed: Some(completed),
        }
    }

    #[test]
    fn sequential_histories_follow_the_register() {
        assert!(linearizable(&[]));
        assert!(linearizable(&[read(1, None, 0, 1)]));
        assert!(linearizable(&[write(1, 5, 0, 1), read(2, Some(5), 2, 3)]));
        assert!(!linearizable(&[write(1, 5, 0, 1), read(2, None, 2, 3)]));
        assert!(!linearizable(&[write(1, 5, 0, 1), read(2, Some(6), 2, 3)]));
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // The read overlaps the write: both old and new values are fine.
        assert!(linearizable(&[write(1, 5, 0, 10), read(2, None, 1, 2)]));
        assert!(linearizable(&[write(1, 5, 0, 10), read(2, Some(5), 1, 2)]));
        // Two reads after an overlapping write cannot go back in time.
        assert!(!linearizable(&[
            write(1, 5, 0, 10),
            read(2, Some(5), 1, 2),
            read(3, None, 3, 4),
        ]));
    }

    #[test]
    fn an_unknown_write_may_take_effect_late_or_never() {
        let mut pending = write(1, 7, 0, 0);
        pending.completed = None;
        assert!(linearizable(&[pending.clone(), read(2, None, 5, 6)]));
        assert!(linearizable(&[
            pending.clone(),
            read(2, None, 5, 6),
            read(3, Some(7), 20, 21)
        ]));
        // But not before it was invoked.
        let mut late = pending;
        late.invoked = 30;
        assert!(!linearizable(&[late, read(2, Some(7), 5, 6)]));
    }

    #[test]
    fn a_failing_key_is_shrunk_to_a_minimal_counter_example() {
        let mut history = vec![
            write(1, 1, 0, 1),
            write(2, 2, 2, 3),
            read(3, Some(2), 4, 5),
            write(1, 3, 6, 7),
            read(3, Some(1), 8, 9),
            read(2, Some(1), 10, 11),
        ];
        let mut other_key = write(4, 9, 0, 1);
        other_key.key = 2;
        history.push(other_key);
        let report = check(&history);
        assert_eq!((report.keys, report.operations), (2, 7));
        assert_eq!(report.counter_examples.len(), 1);
        let example = &report.counter_examples[0];
        assert_eq!(example.key, 1);
        assert!(!linearizable(&example.operations));
        for skip in 0..example.operations.len() {
            let mut fewer = example.operations.clone();
            fewer.remove(skip);
            assert!(linearizable(&fewer), "not minimal: {example}");
        }
        assert!(example.operations.len() <= 3, "{example}");
    }
}
