//! Set-full checker for the span-set workload.
//!
//! Operations: `add` (key = trace, input = element ids, each a span) and
//! `read` (key = trace, output = the span ids the node returned, in order,
//! duplicates kept). Reads are linearizable, so once an element is *known*
//! to be present — its add was acknowledged, or a read returned it — every
//! read of its key that begins afterwards must contain it.
//!
//! Per element:
//! * **lost**: known, and the last read that began after it was known
//!   misses it.
//! * **stale**: known, some later read misses it but the last one has it.
//! * **never-read**: acknowledged, never seen, and no read began after the
//!   acknowledgement (says nothing either way).
//! * **fail-visible**: every add of it failed definitely, yet a read saw it.
//! * **duplicated** (per read): a read returned the same id twice.
//! * **phantom** (per read): a read returned an id never added to that key.
//!
//! Latency-to-stable is measured from the first add invocation to the
//! invocation of the first read from which on every read contains it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::json;

use super::{first, percentiles, Check};
use crate::events::{ids, Outcome, Paired};

const LISTED: usize = 50;

#[derive(Default)]
struct Element {
    key: String,
    invoke_ns: u64,
    ack_ns: Option<u64>,
    adds: usize,
    fails: usize,
}

struct Read<'a> {
    call_ns: u64,
    ret_ns: u64,
    op: &'a Paired,
    set: BTreeSet<u64>,
}

pub fn check(ops: &[Paired], add_f: &str, read_f: &str) -> Check {
    let mut elements: BTreeMap<u64, Element> = BTreeMap::new();
    let mut reads_by_key: HashMap<&str, Vec<Read>> = HashMap::new();
    for op in ops {
        let Some(key) = op.key.as_deref() else {
            continue;
        };
        if op.f == add_f {
            for id in ids(&op.input) {
                let e = elements.entry(id).or_insert_with(|| Element {
                    key: key.to_string(),
                    invoke_ns: op.call_ns,
                    ..Default::default()
                });
                e.invoke_ns = e.invoke_ns.min(op.call_ns);
                e.adds += 1;
                match op.outcome {
                    Outcome::Ok => {
                        let ret = op.ret_ns.expect("ok has a return");
                        e.ack_ns = Some(e.ack_ns.map_or(ret, |a| a.min(ret)));
                    }
                    Outcome::Fail => e.fails += 1,
                    Outcome::Unknown => {}
                }
            }
        } else if op.f == read_f && op.outcome == Outcome::Ok {
            reads_by_key.entry(key).or_default().push(Read {
                call_ns: op.call_ns,
                ret_ns: op.ret_ns.expect("ok has a return"),
                op,
                set: ids(&op.output).into_iter().collect(),
            });
        }
    }
    for reads in reads_by_key.values_mut() {
        reads.sort_by_key(|r| r.call_ns);
    }

    let mut duplicated = Vec::new();
    let mut phantom = Vec::new();
    for (key, reads) in &reads_by_key {
        for r in reads {
            let listed = ids(&r.op.output);
            if listed.len() != r.set.len() {
                let mut seen = BTreeSet::new();
                for id in &listed {
                    if !seen.insert(id) {
                        duplicated.push(json!({"id": id, "key": key, "read_index": r.op.call_index, "node": r.op.node}));
                    }
                }
            }
            for id in &r.set {
                if elements.get(id).is_none_or(|e| e.key != *key) {
                    phantom.push(json!({"id": id, "key": key, "read_index": r.op.call_index, "node": r.op.node}));
                }
            }
        }
    }

    let (mut lost, mut stale, mut never_read, mut fail_visible) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut acknowledged, mut unknown, mut failed, mut seen_count) = (0, 0, 0, 0);
    let mut latencies_ms = Vec::new();
    let no_reads = Vec::new();
    for (&id, e) in &elements {
        let reads = reads_by_key.get(e.key.as_str()).unwrap_or(&no_reads);
        if e.ack_ns.is_some() {
            acknowledged += 1;
        } else if e.fails == e.adds {
            failed += 1;
        } else {
            unknown += 1;
        }
        let first_seen_ret = reads
            .iter()
            .filter(|r| r.set.contains(&id))
            .map(|r| r.ret_ns)
            .min();
        if first_seen_ret.is_some() {
            seen_count += 1;
            if e.fails == e.adds {
                fail_visible.push(json!({"id": id, "key": e.key}));
            }
        }
        let known = match (e.ack_ns, first_seen_ret) {
            (Some(a), Some(s)) => Some(a.min(s)),
            (a, s) => a.or(s),
        };
        let Some(known) = known else { continue };
        let later: Vec<&Read> = reads.iter().filter(|r| r.call_ns > known).collect();
        if later.is_empty() {
            if first_seen_ret.is_none() {
                never_read.push(id);
            }
            continue;
        }
        let missing: Vec<&&Read> = later.iter().filter(|r| !r.set.contains(&id)).collect();
        if let Some(miss) = missing.first() {
            let detail = json!({
                "id": id, "key": e.key, "known_ms": known as f64 / 1e6,
                "first_missing_read_index": miss.op.call_index, "node": miss.op.node,
                "missing_reads": missing.len(), "later_reads": later.len(),
            });
            if !later.last().expect("non-empty").set.contains(&id) {
                lost.push(detail);
            } else {
                stale.push(detail);
            }
            continue;
        }
        // Stable from the first read (of all reads of the key) after which
        // every read has it.
        let stable_from = reads
            .iter()
            .rposition(|r| !r.set.contains(&id))
            .map_or(0, |i| i + 1);
        if let Some(r) = reads.get(stable_from) {
            latencies_ms.push(r.call_ns.saturating_sub(e.invoke_ns) as f64 / 1e6);
        }
    }

    let read_count: usize = reads_by_key.values().map(Vec::len).sum();
    let anomalies =
        lost.len() + stale.len() + duplicated.len() + phantom.len() + fail_visible.len();
    let valid = if anomalies > 0 {
        Some(false)
    } else if read_count == 0 || (acknowledged > 0 && acknowledged == never_read.len()) {
        None
    } else {
        Some(true)
    };
    let summary = format!(
        "attempted {} acked {} unknown {} failed {} | lost {} stale {} dup {} phantom {} fail-visible {} never-read {} | reads {}",
        elements.len(),
        acknowledged,
        unknown,
        failed,
        lost.len(),
        stale.len(),
        duplicated.len(),
        phantom.len(),
        fail_visible.len(),
        never_read.len(),
        read_count
    );
    Check {
        name: format!("set({add_f}/{read_f})"),
        valid,
        summary,
        details: json!({
            "attempted": elements.len(),
            "acknowledged": acknowledged,
            "unknown_outcome": unknown,
            "failed": failed,
            "seen": seen_count,
            "reads": read_count,
            "lost_count": lost.len(),
            "stale_count": stale.len(),
            "duplicated_count": duplicated.len(),
            "phantom_count": phantom.len(),
            "fail_visible_count": fail_visible.len(),
            "never_read_count": never_read.len(),
            "lost": first(&lost, LISTED),
            "stale": first(&stale, LISTED),
            "duplicated": first(&duplicated, LISTED),
            "phantom": first(&phantom, LISTED),
            "fail_visible": first(&fail_visible, LISTED),
            "never_read": first(&never_read, LISTED),
            "stable_latency_ms": percentiles(latencies_ms),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{pair, Recorder};
    use crate::history::OpKind::{self, *};
    use serde_json::Value;
    use std::time::Instant;

    /// A tiny history builder: events are recorded in call order.
    struct H(Recorder);
    impl H {
        fn new() -> H {
            H(Recorder::new(Instant::now()))
        }
        fn ev(&self, p: i64, kind: OpKind, f: &str, value: Value) -> &H {
            self.0.record(p, kind, f, Some("k"), value, Some(1), None);
            std::thread::sleep(std::time::Duration::from_micros(50));
            self
        }
        fn check(&self) -> Check {
            check(&pair(&self.0.snapshot(), |_| true).unwrap(), "add", "read")
        }
    }

    #[test]
    fn clean_history_is_valid_with_latency() {
        let h = H::new();
        h.ev(0, Invoke, "add", json!([1, 2]))
            .ev(0, Ok, "add", json!([1, 2]))
            .ev(1, Invoke, "read", Value::Null)
            .ev(1, Ok, "read", json!([1, 2]));
        let c = h.check();
        assert_eq!(c.valid, Some(true), "{}", c.summary);
        assert_eq!(c.details["stable_latency_ms"]["count"], 2);
    }

    #[test]
    fn lost_write() {
        let h = H::new();
        h.ev(0, Invoke, "add", json!([1]))
            .ev(0, Ok, "add", json!([1]))
            .ev(1, Invoke, "read", Value::Null)
            .ev(1, Ok, "read", json!([]));
        let c = h.check();
        assert_eq!(c.valid, Some(false));
        assert_eq!(c.details["lost_count"], 1);
    }

    #[test]
    fn stale_read_then_recovered() {
        let h = H::new();
        h.ev(0, Invoke, "add", json!([1]))
            .ev(0, Ok, "add", json!([1]))
            .ev(1, Invoke, "read", Value::Null)
            .ev(1, Ok, "read", json!([]))
            .ev(1, Invoke, "read", Value::Null)
            .ev(1, Ok, "read", json!([1]));
        let c = h.check();
        assert_eq!(c.valid, Some(false));
        assert_eq!(
            (
                c.details["stale_count"].as_u64(),
                c.details["lost_count"].as_u64()
            ),
            (Some(1), Some(0))
        );
    }

    #[test]
    fn read_concurrent_with_add_may_miss_it() {
        let h = H::new();
        h.ev(0, Invoke, "add", json!([1]))
            .ev(1, Invoke, "read", Value::Null)
            .ev(1, Ok, "read", json!([]))
            .ev(0, Ok, "add", json!([1]))
            .ev(1, Invoke, "read", Value::Null)
            .ev(1, Ok, "read", json!([1]));
        assert_eq!(h.check().valid, Some(true));
    }

    #[test]
    fn seen_unknown_add_must_stay() {
        // An unknown add that a read returned is known from then on.
        let h = H::new();
        h.ev(0, Invoke, "add", json!([1]))
            .ev(0, Info, "add", json!([1]))
            .ev(1, Invoke, "read", Value::Null)
            .ev(1, Ok, "read", json!([1]))
            .ev(1, Invoke, "read", Value::Null)
            .ev(1, Ok, "read", json!([]));
        let c = h.check();
        assert_eq!(c.valid, Some(false));
        assert_eq!(c.details["lost_count"], 1);
    }

    #[test]
    fn unknown_add_never_seen_is_fine() {
        let h = H::new();
        h.ev(0, Invoke, "add", json!([1]))
            .ev(0, Info, "add", json!([1]))
            .ev(2, Invoke, "add", json!([2]))
            .ev(2, Ok, "add", json!([2]))
            .ev(1, Invoke, "read", Value::Null)
            .ev(1, Ok, "read", json!([2]));
        let c = h.check();
        assert_eq!(c.valid, Some(true), "{}", c.summary);
        assert_eq!(c.details["unknown_outcome"], 1);
    }

    #[test]
    fn duplicated_phantom_and_fail_visible() {
        let h = H::new();
        h.ev(0, Invoke, "add", json!([1]))
            .ev(0, Ok, "add", json!([1]))
            .ev(1, Invoke, "read", Value::Null)
            .ev(1, Ok, "read", json!([1, 1]));
        let c = h.check();
        assert_eq!(c.valid, Some(false));
        assert_eq!(c.details["duplicated_count"], 1);

        let h = H::new();
        h.ev(0, Invoke, "add", json!([1]))
            .ev(0, Ok, "add", json!([1]))
            .ev(1, Invoke, "read", Value::Null)
            .ev(1, Ok, "read", json!([1, 99]));
        let c = h.check();
        assert_eq!(c.details["phantom_count"], 1);
        assert_eq!(c.valid, Some(false));

        let h = H::new();
        h.ev(0, Invoke, "add", json!([1]))
            .ev(0, Fail, "add", json!([1]))
            .ev(1, Invoke, "read", Value::Null)
            .ev(1, Ok, "read", json!([1]));
        let c = h.check();
        assert_eq!(c.details["fail_visible_count"], 1);
        assert_eq!(c.valid, Some(false));
    }

    #[test]
    fn never_read_and_no_reads_are_unknown() {
        let h = H::new();
        h.ev(1, Invoke, "read", Value::Null)
            .ev(1, Ok, "read", json!([]))
            .ev(0, Invoke, "add", json!([1]))
            .ev(0, Ok, "add", json!([1]));
        let c = h.check();
        assert_eq!(c.details["never_read_count"], 1);
        assert_eq!(c.valid, None);
        let h = H::new();
        h.ev(0, Invoke, "add", json!([1]))
            .ev(0, Ok, "add", json!([1]));
        assert_eq!(h.check().valid, None);
    }

    #[test]
    fn retried_add_counts_once_and_ack_of_retry_counts() {
        let h = H::new();
        h.ev(0, Invoke, "add", json!([1]))
            .ev(0, Info, "add", json!([1]))
            .ev(3, Invoke, "add", json!([1]))
            .ev(3, Ok, "add", json!([1]))
            .ev(1, Invoke, "read", Value::Null)
            .ev(1, Ok, "read", json!([1]));
        let c = h.check();
        assert_eq!(c.valid, Some(true));
        assert_eq!(c.details["acknowledged"], 1);
    }
}
