//! The history of a harness run: client operations, nemesis actions and
//! leader observations, as JSON lines.
//!
//! Unlike [`crate::history`] (integer registers, as in the golden
//! histories) these events carry arbitrary JSON values, because the
//! workloads read and write sets and lists of ids.
//!
//! Client operations follow Jepsen's completion semantics: `ok` took
//! effect, `fail` definitely did not, `info` is unknown (it may take effect
//! at any later time). A process whose operation ended in `info` never
//! invokes again; the client continues under a fresh process id.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::history::OpKind;

/// Process id of nemesis events.
pub const NEMESIS: i64 = -1;
/// Process id of leader observations (polls of `/api/v1/cluster`).
pub const OBSERVER: i64 = -2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the history.
    pub index: u64,
    /// Nanoseconds since the run started (monotonic clock of the harness).
    pub time_ns: u64,
    pub process: i64,
    #[serde(rename = "type")]
    pub kind: OpKind,
    pub f: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub value: Value,
    /// The node the operation was sent to, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u64>,
    /// Why an operation failed or is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Collects events from many tasks in one real-time order.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Vec<Event>>>,
    start: Instant,
}

impl Recorder {
    pub fn new(start: Instant) -> Recorder {
        Recorder {
            inner: Arc::new(Mutex::new(Vec::new())),
            start,
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Appends an event; the time is taken under the lock so that history
    /// order and time order agree.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        process: i64,
        kind: OpKind,
        f: &str,
        key: Option<&str>,
        value: Value,
        node: Option<u64>,
        error: Option<String>,
    ) -> u64 {
        let mut events = self.inner.lock().expect("recorder lock");
        let time_ns = self.now_ns();
        let index = events.len() as u64;
        events.push(Event {
            index,
            time_ns,
            process,
            kind,
            f: f.to_string(),
            key: key.map(str::to_string),
            value,
            node,
            error,
        });
        time_ns
    }

    pub fn nemesis(&self, f: &str, value: Value) {
        self.record(NEMESIS, OpKind::Info, f, None, value, None, None);
    }

    pub fn snapshot(&self) -> Vec<Event> {
        self.inner.lock().expect("recorder lock").clone()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("recorder lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub fn write_jsonl<W: Write>(events: &[Event], mut out: W) -> std::io::Result<()> {
    for e in events {
        serde_json::to_writer(&mut out, e)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

pub fn read_jsonl<R: BufRead>(input: R) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(|e| format!("line {}: {e}", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        events.push(serde_json::from_str(&line).map_err(|e| format!("line {}: {e}", n + 1))?);
    }
    Ok(events)
}

/// How a client operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Fail,
    /// `info`, or no completion before the history ended.
    Unknown,
}

/// A client invocation paired with its completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Paired {
    pub process: i64,
    pub f: String,
    pub key: Option<String>,
    pub node: Option<u64>,
    /// The invocation's value (what was asked).
    pub input: Value,
    /// The completion's value (what was observed); `Null` when unknown.
    pub output: Value,
    pub call_index: u64,
    pub call_ns: u64,
    /// `None` for an unknown outcome: it may take effect at any later time.
    pub ret_ns: Option<u64>,
    pub ret_index: Option<u64>,
    pub outcome: Outcome,
    pub error: Option<String>,
}

/// Pairs the client events (process >= 0) whose `f` satisfies `want`.
/// A completion without an invocation, or an invocation while one is
/// pending on the same process, is an error: the history is malformed.
pub fn pair(events: &[Event], want: impl Fn(&str) -> bool) -> Result<Vec<Paired>, String> {
    let mut pending: HashMap<i64, usize> = HashMap::new();
    let mut out: Vec<Paired> = Vec::new();
    for e in events.iter().filter(|e| e.process >= 0 && want(&e.f)) {
        match e.kind {
            OpKind::Invoke => {
                if pending.contains_key(&e.process) {
                    return Err(format!(
                        "event {}: process {} invoked while an operation is pending",
                        e.index, e.process
                    ));
                }
                pending.insert(e.process, out.len());
                out.push(Paired {
                    process: e.process,
                    f: e.f.clone(),
                    key: e.key.clone(),
                    node: e.node,
                    input: e.value.clone(),
                    output: Value::Null,
                    call_index: e.index,
                    call_ns: e.time_ns,
                    ret_ns: None,
                    ret_index: None,
                    outcome: Outcome::Unknown,
                    error: None,
                });
            }
            kind => {
                let i = pending.remove(&e.process).ok_or_else(|| {
                    format!(
                        "event {}: process {} completed without an invocation",
                        e.index, e.process
                    )
                })?;
                let op = &mut out[i];
                if op.f != e.f {
                    return Err(format!(
                        "event {}: completion {} of invocation {}",
                        e.index, e.f, op.f
                    ));
                }
                op.error = e.error.clone();
                match kind {
                    OpKind::Ok => {
                        op.outcome = Outcome::Ok;
                        op.output = e.value.clone();
                        op.ret_ns = Some(e.time_ns);
                        op.ret_index = Some(e.index);
                    }
                    OpKind::Fail => {
                        op.outcome = Outcome::Fail;
                        op.ret_ns = Some(e.time_ns);
                        op.ret_index = Some(e.index);
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

/// The integers of a JSON array (ids in add/read values); anything else
/// yields an empty list.
pub fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pairs_and_round_trips() {
        let r = Recorder::new(Instant::now());
        r.record(
            0,
            OpKind::Invoke,
            "add",
            Some("k"),
            json!([1]),
            Some(1),
            None,
        );
        r.record(
            1,
            OpKind::Invoke,
            "read",
            Some("k"),
            Value::Null,
            Some(2),
            None,
        );
        r.nemesis("kill", json!({"installed": true}));
        r.record(0, OpKind::Info, "add", Some("k"), json!([1]), Some(1), None);
        r.record(1, OpKind::Ok, "read", Some("k"), json!([1]), Some(2), None);
        let events = r.snapshot();
        let mut buf = Vec::new();
        write_jsonl(&events, &mut buf).unwrap();
        assert_eq!(read_jsonl(&buf[..]).unwrap(), events);
        let ops = pair(&events, |_| true).unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].outcome, Outcome::Unknown);
        assert_eq!(ops[0].ret_ns, None);
        assert_eq!(ops[1].outcome, Outcome::Ok);
        assert_eq!(ids(&ops[1].output), vec![1]);
        let bad = [events[3].clone()];
        assert!(pair(&bad, |_| true).is_err());
    }
}
