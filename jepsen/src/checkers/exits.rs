//! Node processes that exited, or Raft cores that stopped, with no fault to
//! explain it.
//!
//! The harness stops nodes only by SIGKILL (kill, power loss, membership,
//! corruption) and waits for the exits it expects (a node refusing to start
//! on damaged data); any other exit is the program stopping by itself: a
//! panic, an abort, a fatal error. A node whose process runs on but reports
//! its Raft state as `shutdown` has stopped as surely (openraft stops its
//! core on a fatal storage or apply error). Profiles whose faults never
//! make a node stop on purpose (no full disk, no corruption) judge these.

use serde_json::{json, Value};

use super::Check;
use crate::events::{Event, OBSERVER};
use crate::harness::cluster::UnexpectedExit;

/// The observer's event for a node that answered with Raft state `shutdown`.
pub const CORE_STOPPED: &str = "core-stopped";

pub fn check(exits: &[UnexpectedExit], history: &[Event]) -> Check {
    let stopped: Vec<Value> = history
        .iter()
        .filter(|e| e.process == OBSERVER && e.f == CORE_STOPPED)
        .map(|e| json!({"node": e.node, "time_s": e.time_ns as f64 / 1e9}))
        .collect();
    let mut problems = Vec::new();
    if let Some(first) = exits.first() {
        problems.push(format!(
            "{} unexpected exit(s); first: node {} (code {:?}, signal {:?}) noticed at {:.1}s",
            exits.len(),
            first.node,
            first.code,
            first.signal,
            first.noticed_ms as f64 / 1000.0
        ));
    }
    if let Some(first) = stopped.first() {
        problems.push(format!(
            "{} observation(s) of a stopped Raft core; first: node {} at {}s",
            stopped.len(),
            first["node"],
            first["time_s"]
        ));
    }
    Check {
        name: "node-exits".into(),
        valid: Some(problems.is_empty()),
        summary: if problems.is_empty() {
            "no node exited or stopped by itself".into()
        } else {
            problems.join("; ")
        },
        details: json!({"exits": super::first(exits, 20),
                        "core_stopped": super::first(&stopped, 20)}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::OpKind;

    #[test]
    fn an_exit_or_a_stopped_core_is_invalid() {
        let exit = UnexpectedExit {
            node: 2,
            code: Some(101),
            signal: None,
            noticed_ms: 12_000,
        };
        assert_eq!(check(&[], &[]).valid, Some(true));
        assert_eq!(check(&[exit], &[]).valid, Some(false));
        let stop = Event {
            index: 0,
            time_ns: 5,
            process: OBSERVER,
            kind: OpKind::Info,
            f: CORE_STOPPED.into(),
            key: None,
            value: json!({}),
            node: Some(3),
            error: None,
        };
        assert_eq!(check(&[], &[stop]).valid, Some(false));
    }
}
