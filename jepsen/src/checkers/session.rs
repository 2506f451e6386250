//! Session guarantees for the trace-session workload.
//!
//! Each session is one client that owns one trace (the key): it writes
//! spans of that trace to one node (`add`, input = ids) and reads the trace
//! at other nodes (`read`, output = ids). Its operations are sequential.
//! For every `ok` read:
//! * **read-your-writes**: it contains every id of the session's adds that
//!   were acknowledged before the read began;
//! * **monotonic reads**: it contains everything an earlier read of the
//!   session returned (the set never shrinks).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::{first, Check};
use crate::events::{ids, Outcome, Paired};

pub fn check(ops: &[Paired], add_f: &str, read_f: &str) -> Check {
    let mut sessions: BTreeMap<&str, Vec<&Paired>> = BTreeMap::new();
    for op in ops {
        if op.f == add_f || op.f == read_f {
            if let Some(k) = op.key.as_deref() {
                sessions.entry(k).or_default().push(op);
            }
        }
    }
    let (mut ryw, mut monotonic) = (Vec::new(), Vec::new());
    let mut reads = 0usize;
    for (key, mut ops) in sessions {
        ops.sort_by_key(|o| o.call_ns);
        let mut acked: BTreeSet<u64> = BTreeSet::new();
        let mut seen: BTreeSet<u64> = BTreeSet::new();
        for op in ops {
            if op.f == add_f {
                if op.outcome == Outcome::Ok {
                    acked.extend(ids(&op.input));
                }
                continue;
            }
            if op.outcome != Outcome::Ok {
                continue;
            }
            reads += 1;
            let got: BTreeSet<u64> = ids(&op.output).into_iter().collect();
            let missing_own: Vec<u64> = acked.difference(&got).copied().collect();
            if !missing_own.is_empty() {
                ryw.push(json!({"key": key, "read_index": op.call_index, "node": op.node, "missing": first(&missing_own, 20)}));
            }
            let shrunk: Vec<u64> = seen.difference(&got).copied().collect();
            if !shrunk.is_empty() {
                monotonic.push(json!({"key": key, "read_index": op.call_index, "node": op.node, "missing": first(&shrunk, 20)}));
            }
            seen.extend(got);
        }
    }
    let valid = if !ryw.is_empty() || !monotonic.is_empty() {
        Some(false)
    } else if reads == 0 {
        None
    } else {
        Some(true)
    };
    Check {
        name: "session".into(),
        valid,
        summary: format!(
            "reads {reads} | read-your-writes violations {} monotonic-read violations {}",
            ryw.len(),
            monotonic.len()
        ),
        details: json!({
            "reads": reads,
            "read_your_writes_violations": first(&ryw, 50),
            "monotonic_read_violations": first(&monotonic, 50),
            "read_your_writes_count": ryw.len(),
            "monotonic_count": monotonic.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{pair, Recorder};
    use crate::history::OpKind::*;
    use serde_json::Value;
    use std::time::Instant;

    fn run(events: &[(i64, crate::history::OpKind, &str, Value)]) -> Check {
        let r = Recorder::new(Instant::now());
        for (p, k, f, v) in events {
            r.record(*p, *k, f, Some("s1"), v.clone(), Some(2), None);
            std::thread::sleep(std::time::Duration::from_micros(20));
        }
        check(&pair(&r.snapshot(), |_| true).unwrap(), "s-add", "s-read")
    }

    #[test]
    fn valid_session() {
        let c = run(&[
            (0, Invoke, "s-add", json!([1])),
            (0, Ok, "s-add", json!([1])),
            (0, Invoke, "s-read", Value::Null),
            (0, Ok, "s-read", json!([1])),
            (0, Invoke, "s-add", json!([2])),
            (0, Info, "s-add", json!([2])),
            (5, Invoke, "s-read", Value::Null),
            (5, Ok, "s-read", json!([1])),
        ]);
        assert_eq!(c.valid, Some(true), "{}", c.summary);
    }

    #[test]
    fn read_your_writes_violation() {
        let c = run(&[
            (0, Invoke, "s-add", json!([1])),
            (0, Ok, "s-add", json!([1])),
            (0, Invoke, "s-read", Value::Null),
            (0, Ok, "s-read", json!([])),
        ]);
        assert_eq!(c.valid, Some(false));
        assert_eq!(c.details["read_your_writes_count"], 1);
    }

    #[test]
    fn monotonic_violation() {
        // An unknown add seen once must not disappear again.
        let c = run(&[
            (0, Invoke, "s-add", json!([1])),
            (0, Info, "s-add", json!([1])),
            (5, Invoke, "s-read", Value::Null),
            (5, Ok, "s-read", json!([1])),
            (5, Invoke, "s-read", Value::Null),
            (5, Ok, "s-read", json!([])),
        ]);
        assert_eq!(c.valid, Some(false));
        assert_eq!(c.details["monotonic_count"], 1);
        assert_eq!(c.details["read_your_writes_count"], 0);
    }
}
