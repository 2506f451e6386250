//! Linearizability of an append-only list per key (trace comments).
//!
//! `append` (input = an integer, unique per key) adds to the end of the
//! key's list; `read-list` (output = the whole list in commit order)
//! observes it. Each key is checked on its own, by the exact decision of
//! [`super::list_order`] when every appended value is unique (always, in
//! the harness's workload), else with the Wing–Gong search of
//! [`crate::linearizability`]; appends with an unknown outcome may be
//! linearized anywhere after their call or not at all.

use std::collections::BTreeMap;

use serde_json::json;

use super::Check;
use crate::events::{ids, Outcome, Paired};
use crate::linearizability::{check_timed, Budget, Model, TimedOp, Verdict};

pub use super::list_order::ListOp;

/// The sequential specification: state = the list so far.
pub struct AppendList;

impl Model for AppendList {
    type Op = ListOp;
    type State = Vec<u64>;

    fn init(&self) -> Vec<u64> {
        Vec::new()
    }

    fn step(&self, state: &Vec<u64>, op: &ListOp) -> Option<Vec<u64>> {
        match op {
            ListOp::Append(x) => {
                let mut next = state.clone();
                next.push(*x);
                Some(next)
            }
            ListOp::Read(seen) => (seen == state).then(|| state.clone()),
        }
    }
}

pub fn check(ops: &[Paired], append_f: &str, read_f: &str, budget: &Budget) -> Check {
    // (`budget` bounds the search, used only when values repeat.)
    let mut by_key: BTreeMap<&str, Vec<TimedOp<ListOp>>> = BTreeMap::new();
    for op in ops {
        let Some(key) = op.key.as_deref() else {
            continue;
        };
        let list_op = if op.f == append_f {
            match (op.outcome, op.input.as_u64()) {
                (Outcome::Fail, _) | (_, None) => continue,
                (_, Some(x)) => ListOp::Append(x),
            }
        } else if op.f == read_f && op.outcome == Outcome::Ok {
            ListOp::Read(ids(&op.output))
        } else {
            continue;
        };
        by_key.entry(key).or_default().push(TimedOp {
            id: op.call_index as usize,
            call: op.call_index,
            ret: op.ret_index,
            op: list_op,
        });
    }
    let mut failures = Vec::new();
    let mut unknown = Vec::new();
    let keys = by_key.len();
    let mut op_count = 0;
    for (key, timed) in &by_key {
        op_count += timed.len();
        match super::list_order::decide(timed) {
            Some(Ok(())) => continue,
            Some(Err(why)) => {
                failures.push(json!({"key": key, "reason": why}));
                continue;
            }
            None => {}
        }
        match check_timed(&AppendList, timed, budget) {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable {
                longest_prefix,
                stuck_op,
                state_after_prefix,
                ..
            } => failures.push(json!({
                "key": key, "stuck_op_index": stuck_op,
                "longest_prefix": longest_prefix, "state_after_prefix": state_after_prefix,
            })),
            Verdict::Unknown { reason, .. } => unknown.push(json!({"key": key, "reason": reason})),
        }
    }
    let valid = if !failures.is_empty() {
        Some(false)
    } else if !unknown.is_empty() || op_count == 0 {
        None
    } else {
        Some(true)
    };
    Check {
        name: format!("linearizable({append_f}/{read_f})"),
        valid,
        summary: format!(
            "keys {keys} ops {op_count} | non-linearizable keys {} unknown keys {}",
            failures.len(),
            unknown.len()
        ),
        details: json!({"keys": keys, "ops": op_count, "failures": failures, "unknown": unknown}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{pair, Recorder};
    use crate::history::OpKind::{self, *};
    use serde_json::Value;
    use std::time::Instant;

    fn run(events: &[(i64, OpKind, &str, Value)]) -> Check {
        let r = Recorder::new(Instant::now());
        for (p, k, f, v) in events {
            r.record(*p, *k, f, Some("t"), v.clone(), None, None);
        }
        let ops = pair(&r.snapshot(), |_| true).unwrap();
        check(&ops, "append", "read-list", &Budget::default())
    }

    /// The exact decision and the search agree on random small histories.
    #[test]
    fn the_exact_decision_agrees_with_the_search() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut disagreements = Vec::new();
        let mut verdicts = [0usize; 2];
        for case in 0..3000 {
            let ops = random_history(&mut rng);
            let search = check_timed(&AppendList, &ops, &Budget::unlimited()).as_bool();
            verdicts[usize::from(search == Some(true))] += 1;
            let exact = super::super::list_order::decide(&ops).map(|r| r.is_ok());
            if search != exact {
                disagreements.push((case, ops, search, exact));
            }
            let _ = rng.random::<u8>();
        }
        assert!(disagreements.is_empty(), "{:?}", &disagreements[..1]);
        assert!(
            verdicts.iter().all(|&n| n >= 300),
            "both verdicts are well represented: {verdicts:?}"
        );
    }

    /// Up to 4 appends (some unknown) and 3 reads of what some prefix of a
    /// random order would show, with random overlapping intervals.
    fn random_history(rng: &mut rand::rngs::StdRng) -> Vec<TimedOp<ListOp>> {
        use rand::Rng;
        let appends = rng.random_range(1..=4u64);
        let mut order: Vec<u64> = (1..=appends).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let mut ops = Vec::new();
        let mut id = 0;
        let interval = |rng: &mut rand::rngs::StdRng, unknown: bool| {
            let call = rng.random_range(0..20u64);
            let ret = (!unknown).then(|| call + 1 + rng.random_range(0..8u64));
            (call, ret)
        };
        for v in 1..=appends {
            let unknown = rng.random_bool(0.25);
            let (call, ret) = interval(rng, unknown);
            ops.push(TimedOp {
                id,
                call,
                ret,
                op: ListOp::Append(v),
            });
            id += 1;
        }
        for _ in 0..rng.random_range(1..=3) {
            let (call, ret) = interval(rng, false);
            let mut seen: Vec<u64> = order[..rng.random_range(0..=order.len())].to_vec();
            if rng.random_bool(0.1) && seen.len() > 1 {
                seen.swap(0, 1); // sometimes not a prefix of the others
            }
            ops.push(TimedOp {
                id,
                call,
                ret,
                op: ListOp::Read(seen),
            });
            id += 1;
        }
        // Distinct call and return indexes, as in a real history.
        for (i, op) in ops.iter_mut().enumerate() {
            op.call = op.call * 100 + i as u64;
            op.ret = op.ret.map(|r| r * 100 + 50 + i as u64);
        }
        ops
    }

    #[test]
    fn concurrent_appends_in_either_order() {
        let c = run(&[
            (0, Invoke, "append", json!(1)),
            (1, Invoke, "append", json!(2)),
            (0, Ok, "append", json!(1)),
            (1, Ok, "append", json!(2)),
            (2, Invoke, "read-list", Value::Null),
            (2, Ok, "read-list", json!([2, 1])),
        ]);
        assert_eq!(c.valid, Some(true), "{}", c.summary);
    }

    #[test]
    fn reordered_sequential_appends_are_invalid() {
        let c = run(&[
            (0, Invoke, "append", json!(1)),
            (0, Ok, "append", json!(1)),
            (1, Invoke, "append", json!(2)),
            (1, Ok, "append", json!(2)),
            (2, Invoke, "read-list", Value::Null),
            (2, Ok, "read-list", json!([2, 1])),
        ]);
        assert_eq!(c.valid, Some(false));
    }

    #[test]
    fn stale_read_is_invalid() {
        let c = run(&[
            (0, Invoke, "append", json!(1)),
            (0, Ok, "append", json!(1)),
            (2, Invoke, "read-list", Value::Null),
            (2, Ok, "read-list", json!([])),
        ]);
        assert_eq!(c.valid, Some(false));
    }

    #[test]
    fn unknown_append_may_or_may_not_appear() {
        let with = run(&[
            (0, Invoke, "append", json!(1)),
            (0, Info, "append", json!(1)),
            (2, Invoke, "read-list", Value::Null),
            (2, Ok, "read-list", json!([1])),
        ]);
        assert_eq!(with.valid, Some(true));
        let without = run(&[
            (0, Invoke, "append", json!(1)),
            (0, Info, "append", json!(1)),
            (2, Invoke, "read-list", Value::Null),
            (2, Ok, "read-list", json!([])),
            (2, Invoke, "read-list", Value::Null),
            (2, Ok, "read-list", json!([1])),
        ]);
        assert_eq!(without.valid, Some(true));
        // ...but once seen it cannot vanish, and a duplicate is not an append.
        let vanished = run(&[
            (0, Invoke, "append", json!(1)),
            (0, Info, "append", json!(1)),
            (2, Invoke, "read-list", Value::Null),
            (2, Ok, "read-list", json!([1])),
            (2, Invoke, "read-list", Value::Null),
            (2, Ok, "read-list", json!([])),
        ]);
        assert_eq!(vanished.valid, Some(false));
        let doubled = run(&[
            (0, Invoke, "append", json!(1)),
            (0, Ok, "append", json!(1)),
            (2, Invoke, "read-list", Value::Null),
            (2, Ok, "read-list", json!([1, 1])),
        ]);
        assert_eq!(doubled.valid, Some(false));
    }
}
