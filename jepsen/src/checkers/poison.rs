//! The poison-entry nemesis's checker: entries no replica can apply must
//! be rejected the same way everywhere, and must not stop the cluster.
//!
//! Valid when
//! - every member reports the same count of rejected entries
//!   (`tael_apply_rejected_entries_total`, replicated state), at least the
//!   number of poison entries the leader acknowledged;
//! - after every acknowledged poison entry, some write was acknowledged
//!   [`STALL_GRACE_NS`] later or more (the cluster kept committing and
//!   applying past it; writes proposed just before it may still be
//!   acknowledged, acknowledged at commit, while apply stops on it).
//!
//! Replica digests and unexpected process exits have checks of their own.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::Check;
use crate::events::{Event, OpKind, NEMESIS};

/// The nemesis event of one injection (its `installed` is the leader's
/// acknowledgement).
pub const POISON_EVENT: &str = "poison";
/// The nemesis event with every member's rejected-entry count, taken after
/// the final heal: `{"counts": {node: n}, "errors": {node: why}}`.
pub const REJECTED_EVENT: &str = "rejected-entries";
/// The node metric that counts them.
pub const REJECTED_METRIC: &str = "tael_apply_rejected_entries_total";

/// How long after a poison entry an acknowledged write proves the cluster
/// went on. A poison entry closer than this to the last write tried is not
/// judged by it.
pub const STALL_GRACE_NS: u64 = 3_000_000_000;

/// The value of `metric` (unlabelled) in a Prometheus text exposition.
pub fn metric_value(exposition: &str, metric: &str) -> Option<u64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(metric)?;
        let value = rest.strip_prefix(' ')?;
        value.trim().parse::<f64>().ok().map(|v| v as u64)
    })
}

/// Judges the run; `write_fs` are the client operations that write.
pub fn check(history: &[Event], write_fs: &[&str]) -> Check {
    let installed: Vec<&Event> = history
        .iter()
        .filter(|e| e.process == NEMESIS && e.f == POISON_EVENT && e.value["installed"] == true)
        .collect();
    let writes = |e: &&Event| e.process >= 0 && write_fs.contains(&e.f.as_str());
    let acks: Vec<u64> = history
        .iter()
        .filter(writes)
        .filter(|e| e.kind == OpKind::Ok)
        .map(|e| e.time_ns)
        .collect();
    let last_invoke = history
        .iter()
        .filter(writes)
        .filter(|e| e.kind == OpKind::Invoke)
        .map(|e| e.time_ns)
        .max()
        .unwrap_or(0);
    // A poison entry after which nothing was acknowledged again, though
    // writes went on being tried.
    let stalled: Vec<Value> = installed
        .iter()
        .filter(|p| p.time_ns + STALL_GRACE_NS <= last_invoke)
        .filter(|p| !acks.iter().any(|t| *t >= p.time_ns + STALL_GRACE_NS))
        .map(|p| {
            json!({"log_index": p.value["log_index"], "target": p.value["target"],
                        "time_s": p.time_ns as f64 / 1e9})
        })
        .collect();
    let report = history
        .iter()
        .rev()
        .find(|e| e.process == NEMESIS && e.f == REJECTED_EVENT)
        .map(|e| e.value.clone())
        .unwrap_or(Value::Null);
    let counts: BTreeMap<String, u64> = report["counts"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_u64().map(|n| (k.clone(), n)))
                .collect()
        })
        .unwrap_or_default();
    let errors = report["errors"].as_object().map_or(0, |e| e.len());
    let distinct: std::collections::BTreeSet<u64> = counts.values().copied().collect();
    let min = distinct.iter().next().copied();
    let mut problems = Vec::new();
    if !stalled.is_empty() {
        problems.push(format!(
            "{} poison entr(y/ies) with no write acknowledged after them",
            stalled.len()
        ));
    }
    if distinct.len() > 1 {
        problems.push(format!(
            "replicas count different rejected entries: {counts:?}"
        ));
    }
    if min.is_some_and(|m| m < installed.len() as u64) {
        problems.push(format!(
            "{} poison entries acknowledged but only {} counted as rejected",
            installed.len(),
            min.unwrap_or(0)
        ));
    }
    let valid = if !problems.is_empty() {
        Some(false)
    } else if installed.is_empty() || counts.is_empty() || errors > 0 {
        // Nothing injected, or some replica's count unread: no proof.
        None
    } else {
        Some(true)
    };
    let summary = if problems.is_empty() {
        format!(
            "injected {} | rejected per replica {:?} | unread {errors}",
            installed.len(),
            counts
        )
    } else {
        problems.join("; ")
    };
    Check {
        name: "poison".into(),
        valid,
        summary,
        details: json!({"installed": installed.len(), "counts": counts, "report": report,
                        "stalled": stalled}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(time_s: u64, process: i64, kind: OpKind, f: &str, value: Value) -> Event {
        Event {
            index: 0,
            time_ns: time_s * 1_000_000_000,
            process,
            kind,
            f: f.into(),
            key: None,
            value,
            node: None,
            error: None,
        }
    }

    fn poison(t: u64) -> Event {
        let v = json!({"installed": true, "log_index": t});
        ev(t, NEMESIS, OpKind::Info, POISON_EVENT, v)
    }

    fn ack(t: u64) -> Event {
        ev(t, 0, OpKind::Ok, "add", json!(1))
    }

    fn try_add(t: u64) -> Event {
        ev(t, 0, OpKind::Invoke, "add", json!(1))
    }

    fn counts(c: Value) -> Event {
        let v = json!({"counts": c, "errors": {}});
        ev(99, NEMESIS, OpKind::Info, REJECTED_EVENT, v)
    }

    fn verdict(h: &[Event]) -> Option<bool> {
        check(h, &["add"]).valid
    }

    #[test]
    fn equal_counts_covering_the_injections_with_acks_after_are_valid() {
        let h = [
            poison(1),
            ack(5),
            poison(6),
            try_add(9),
            ack(9),
            counts(json!({"1": 2, "2": 2, "3": 2})),
        ];
        assert_eq!(verdict(&h), Some(true));
        // Unacknowledged injections may also have landed: more is fine.
        let h = [
            poison(1),
            try_add(5),
            ack(5),
            counts(json!({"1": 3, "2": 3})),
        ];
        assert_eq!(verdict(&h), Some(true));
        // The last one is too close to the end of the writes to judge.
        let h = [
            poison(1),
            ack(5),
            poison(6),
            try_add(7),
            counts(json!({"1": 2, "2": 2})),
        ];
        assert_eq!(verdict(&h), Some(true));
    }

    #[test]
    fn a_stall_differing_or_missing_counts_are_invalid() {
        // Acknowledged just after (committed before apply stopped), then
        // nothing while writes went on.
        let stalled = [
            ack(0),
            poison(1),
            ack(2),
            try_add(8),
            counts(json!({"1": 1, "2": 1})),
        ];
        assert_eq!(verdict(&stalled), Some(false));
        let differ = [
            poison(1),
            try_add(5),
            ack(5),
            counts(json!({"1": 1, "2": 0})),
        ];
        assert_eq!(verdict(&differ), Some(false));
        let too_few = [
            poison(1),
            poison(2),
            try_add(6),
            ack(6),
            counts(json!({"1": 1, "2": 1})),
        ];
        assert_eq!(verdict(&too_few), Some(false));
        // A read is no acknowledged write.
        let read_only = [
            poison(1),
            try_add(8),
            ev(8, 0, OpKind::Ok, "read", json!([])),
            counts(json!({"1": 1})),
        ];
        assert_eq!(verdict(&read_only), Some(false));
    }

    #[test]
    fn nothing_injected_or_nothing_read_is_unknown() {
        assert_eq!(verdict(&[ack(1), counts(json!({"1": 0}))]), None);
        assert_eq!(verdict(&[poison(1), try_add(5), ack(5)]), None);
    }

    #[test]
    fn metric_values_are_read_from_the_exposition() {
        let text = "# HELP tael_apply_rejected_entries_total x\n\
                    # TYPE tael_apply_rejected_entries_total counter\n\
                    tael_apply_rejected_entries_total_other 9\n\
                    tael_apply_rejected_entries_total 4\n";
        assert_eq!(metric_value(text, REJECTED_METRIC), Some(4));
        assert_eq!(metric_value("", REJECTED_METRIC), None);
    }
}
