//! An exact, polynomial linearizability decision for one key's append-only
//! list whose appended values are unique.
//!
//! The general search (`crate::linearizability`) is exponential in the
//! number of concurrent operations, and a run with many unknown appends
//! (a killed leader) can exhaust its budget. This model needs no search:
//!
//! 1. Every read is a prefix of the longest read `L` (the list only
//!    grows), with no duplicates and only values some append wrote.
//! 2. So the appends in `L` are linearized in `L`'s order, every read of
//!    length `k` sits after the `k`-th of them and before the next, and
//!    every append missing from `L` comes after all reads (an unknown one
//!    may also never take effect: it is dropped). Each operation gets a
//!    *slot*: a read of length `k` is `2k`, the `i`-th append of `L` is
//!    `2i + 1`, an acknowledged append missing from `L` is `2|L| + 1`.
//! 3. A linearization exists exactly when real time agrees with the slots:
//!    whenever `x` returned before `y` was called, `slot(x) <= slot(y)`
//!    (operations sharing a slot can be ordered among themselves by real
//!    time, which is a partial order).

use std::collections::{HashMap, HashSet};

use crate::linearizability::TimedOp;

/// One operation on an append-only list.
#[derive(Debug, Clone)]
pub enum ListOp {
    Append(u64),
    /// Observed the whole list, in order.
    Read(Vec<u64>),
}

/// `Ok` when `ops` (one key) is linearizable, else why not. `None` when the
/// model does not apply (a value appended twice): use the search instead.
pub fn decide(ops: &[TimedOp<ListOp>]) -> Option<Result<(), String>> {
    let mut append_of: HashMap<u64, &TimedOp<ListOp>> = HashMap::new();
    let mut reads = Vec::new();
    for op in ops {
        match &op.op {
            ListOp::Append(v) => {
                if append_of.insert(*v, op).is_some() {
                    return None;
                }
            }
            ListOp::Read(list) => reads.push((op, list)),
        }
    }
    Some(check(&append_of, &reads))
}

fn check(
    append_of: &HashMap<u64, &TimedOp<ListOp>>,
    reads: &[(&TimedOp<ListOp>, &Vec<u64>)],
) -> Result<(), String> {
    let longest: &[u64] = reads
        .iter()
        .map(|(_, l)| l.as_slice())
        .max_by_key(|l| l.len())
        .unwrap_or(&[]);
    let mut seen = HashSet::new();
    for v in longest {
        if !seen.insert(*v) {
            return Err(format!("value {v} read twice in one list"));
        }
        if !append_of.contains_key(v) {
            return Err(format!("value {v} read but never (successfully) appended"));
        }
    }
    for (op, list) in reads {
        if !longest.starts_with(list) {
            return Err(format!(
                "read at history index {} is not a prefix of the longest read",
                op.call
            ));
        }
    }
    let position: HashMap<u64, u64> = longest
        .iter()
        .enumerate()
        .map(|(i, v)| (*v, i as u64))
        .collect();
    // (call, ret, slot) of every operation that must be linearized.
    let mut timed: Vec<(u64, Option<u64>, u64)> = Vec::new();
    for (op, list) in reads {
        timed.push((op.call, op.ret, 2 * list.len() as u64));
    }
    let after_all = 2 * longest.len() as u64 + 1;
    for (v, op) in append_of {
        match position.get(v) {
            Some(i) => timed.push((op.call, op.ret, 2 * i + 1)),
            None if op.ret.is_some() => timed.push((op.call, op.ret, after_all)),
            None => {} // unknown and never seen: it never took effect
        }
    }
    real_time_agrees(&mut timed)
}

/// Whether no operation that returned before another was called has a
/// later slot than it.
fn real_time_agrees(timed: &mut [(u64, Option<u64>, u64)]) -> Result<(), String> {
    let mut by_ret: Vec<(u64, u64)> = timed
        .iter()
        .filter_map(|(_, ret, slot)| ret.map(|r| (r, *slot)))
        .collect();
    by_ret.sort_unstable();
    timed.sort_unstable_by_key(|(call, _, _)| *call);
    let mut done = 0;
    // The highest slot, and its return index, among operations returned so far.
    let mut max_before: Option<(u64, u64)> = None;
    for &(call, _, slot) in timed.iter() {
        while done < by_ret.len() && by_ret[done].0 < call {
            let (ret, s) = by_ret[done];
            if max_before.is_none_or(|(m, _)| s > m) {
                max_before = Some((s, ret));
            }
            done += 1;
        }
        if let Some((m, ret)) = max_before {
            if m > slot {
                return Err(format!(
                    "the operation called at history index {call} must precede one that \
                     returned at index {ret} before it was called"
                ));
            }
        }
    }
    Ok(())
}
