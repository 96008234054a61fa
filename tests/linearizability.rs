//! The register linearizability checker of `ringraft::check`, cross-checked against an
//! independent implementation (stateright's `LinearizabilityTester`) on many small random
//! histories, linearizable by construction or deliberately damaged.

use proptest::prelude::*;
use ringraft::check::linearizability::{check, linearizable, Action, Operation};
use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

/// One client's operation before results are known: write or read, its duration, and
/// whether its outcome is lost (only a client's last operation may be).
#[derive(Clone, Debug)]
struct Planned {
    write: Option<u64>,
    gap: u64,
    length: u64,
    /// Where in its interval it takes effect, 0..=100 %.
    effect: u64,
    lost: bool,
}

fn planned() -> impl Strategy<Value = Planned> {
    (
        prop::option::of(1u64..4),
        0u64..5,
        1u64..8,
        0u64..=100,
        prop::bool::weighted(0.15),
    )
        .prop_map(|(write, gap, length, effect, lost)| Planned {
            write,
            gap,
            length,
            effect,
            lost,
        })
}

/// A history of up to four clients that a register really produced: every operation takes
/// effect at a point inside its interval (a lost write may also never take effect), reads
/// return what the register held then. `damage` then changes some read results.
fn history(clients: Vec<Vec<Planned>>, damage: Vec<(usize, u64)>) -> Vec<Operation> {
    let mut ops = Vec::new();
    let mut effects = Vec::new();
    for (client, plan) in clients.iter().enumerate() {
        // Distinct times across clients: client c uses times ≡ c (mod 8).
        let mut time = client as u64;
        for (position, step) in plan.iter().enumerate() {
            let invoked = time + step.gap * 8;
            let completed = invoked + step.length * 8;
            time = completed + 8;
            let lost = step.lost && position + 1 == plan.len();
            let effect = invoked * 100 + (completed - invoked) * step.effect;
            effects.push((effect, ops.len()));
            ops.push(Operation {
                client: client as u64,
                key: 1,
                action: match step.write {
                    Some(value) => Action::Write(value),
                    None => Action::Read(Some(None)),
                },
                invoked,
                completed: (!lost).then_some(completed),
            });
        }
    }
    effects.sort();
    let mut register = None;
    for (_, index) in effects {
        match &mut ops[index].action {
            Action::Write(value) => register = Some(*value),
            Action::Read(result) => *result = Some(register),
        }
    }
    for (index, value) in damage {
        if ops.is_empty() {
            break;
        }
        let len = ops.len();
        if let Action::Read(result) = &mut ops[index % len].action {
            *result = Some((value > 0).then_some(value));
        }
    }
    // A read whose outcome was lost has no result.
    for op in &mut ops {
        if op.completed.is_none() {
            if let Action::Read(result) = &mut op.action {
                *result = None;
            }
        }
    }
    ops
}

/// Stateright's verdict: events in time order (invocations before returns at equal times).
fn reference_verdict(ops: &[Operation]) -> bool {
    let mut events: Vec<(u64, bool, usize)> = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        events.push((op.invoked, false, index));
        if let Some(completed) = op.completed {
            events.push((completed, true, index));
        }
    }
    events.sort();
    let mut tester = LinearizabilityTester::new(Register(None::<u64>));
    for (_, is_return, index) in events {
        let op = &ops[index];
        let result = if is_return {
            match &op.action {
                Action::Write(_) => tester.on_return(op.client, RegisterRet::WriteOk),
                Action::Read(result) => tester.on_return(
                    op.client,
                    RegisterRet::ReadOk(result.expect("completed reads have results")),
                ),
            }
        } else {
            match &op.action {
                Action::Write(value) => {
                    tester.on_invoke(op.client, RegisterOp::Write(Some(*value)))
                }
                Action::Read(_) => tester.on_invoke(op.client, RegisterOp::Read),
            }
        };
        result.expect("a well-formed history");
    }
    tester.is_consistent()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn real_register_histories_are_linearizable(
        clients in prop::collection::vec(prop::collection::vec(planned(), 1..5), 1..5),
    ) {
        let ops = history(clients, Vec::new());
        prop_assert!(linearizable(&ops), "{ops:?}");
        prop_assert!(reference_verdict(&ops));
    }

    #[test]
    fn verdicts_agree_with_stateright_on_damaged_histories(
        clients in prop::collection::vec(prop::collection::vec(planned(), 1..5), 1..5),
        damage in prop::collection::vec((0usize..20, 0u64..4), 1..3),
    ) {
        let ops = history(clients, damage);
        let ours = linearizable(&ops);
        prop_assert_eq!(ours, reference_verdict(&ops), "{:?}", ops);
        let report = check(&ops);
        prop_assert_eq!(report.counter_examples.is_empty(), ours);
        for example in &report.counter_examples {
            prop_assert!(!reference_verdict(&example.operations), "{}", example);
        }
    }
}
