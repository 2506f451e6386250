//! Jepsen-style histories of register operations.
//!
//! A history is a sequence of [`Op`] events in real-time order: every client
//! operation appears once as an `invoke` and (usually) once more as a
//! completion (`ok`, `fail` or `info`). [`pair_operations`] turns the events
//! into [`Operation`]s with a call and return position, which is what the
//! linearizability checker works on.
//!
//! Completion semantics follow Jepsen:
//! * `ok`   — the operation took effect, between its invocation and completion.
//! * `fail` — the operation definitely did not take effect.
//! * `info` — unknown: it may or may not have taken effect, at any point after
//!   its invocation (its return is treated as +infinity). The same holds for an
//!   invocation that never completes before the history ends.
//!
//! Histories serialize as JSON lines, one event per line:
//! `{"process":0,"type":"invoke","f":"cas","value":[1,4],"key":"k1"}`.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

/// Whether an event starts an operation or reports how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// The register function an operation calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum F {
    Read,
    Write,
    Cas,
}

/// An event's value: `nil`, an integer (a read result or a write), or a
/// `[from, to]` pair (a compare-and-set).
///
/// Serialized untagged, so JSON reads as `null`, `3` or `[1, 4]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    #[default]
    Nil,
    Int(i64),
    Pair(i64, i64),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => write!(f, "nil"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Pair(a, b) => write!(f, "[{a} {b}]"),
        }
    }
}

/// The key an operation addresses, for histories over many independent
/// registers. Jepsen keys are commonly integers; strings are accepted too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Key {
    Int(u64),
    Str(String),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Int(k) => write!(f, "{k}"),
            Key::Str(k) => write!(f, "{k:?}"),
        }
    }
}

/// One history event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub process: u64,
    #[serde(rename = "type")]
    pub kind: OpKind,
    pub f: F,
    /// Missing in JSON means `nil` (e.g. a read invocation).
    #[serde(default)]
    pub value: Value,
    /// Register key; `None` means the history has a single register.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Key>,
    /// Jepsen's `:index`, kept for reports only. The checker orders events by
    /// their position in the history, never by this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// Wall-clock time of the event in nanoseconds (Jepsen's `:time`), kept
    /// for reports only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ns: Option<u64>,
}

impl Op {
    /// A bare event without key, index or time: handy for building histories.
    pub fn new(process: u64, kind: OpKind, f: F, value: Value) -> Op {
        Op {
            process,
            kind,
            f,
            value,
            key: None,
            index: None,
            time_ns: None,
        }
    }

    /// The same event, addressed to `key`.
    pub fn with_key(mut self, key: Key) -> Op {
        self.key = Some(key);
        self
    }
}

/// How a paired operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Completed with `ok`: it took effect before its return.
    Ok,
    /// Completed with `fail`: it definitely did not take effect.
    Fail,
    /// Completed with `info`, or never completed: it may or may not have
    /// taken effect, at any point after its invocation.
    Unknown,
}

/// An invocation paired with its completion.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Operation {
    /// The process that invoked it (as written in the history).
    pub process: u64,
    /// Position of the invocation in the history.
    pub call_index: usize,
    /// Position of the completion; `None` when the outcome is unknown, which
    /// the checker reads as a return at +infinity.
    pub return_index: Option<usize>,
    pub f: F,
    /// What the client asked for: the written value, the CAS pair, or (for
    /// reads) whatever the invocation carried, which is ignored.
    pub input: Value,
    /// What the client observed: the value read by an `ok` read; for writes
    /// and CAS the input echoed back; `Nil` when nothing was observed.
    pub output: Value,
    pub outcome: Outcome,
    pub key: Option<Key>,
}

/// Why a history could not be paired into operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryError {
    /// Position of the offending event in the history.
    pub index: usize,
    pub message: String,
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event {}: {}", self.index, self.message)
    }
}

impl std::error::Error for HistoryError {}

/// Pairs every invocation with the next completion of the same process.
///
/// Rules (Jepsen semantics):
/// * `ok` → [`Outcome::Ok`], `fail` → [`Outcome::Fail`], `info` or no
///   completion at all → [`Outcome::Unknown`] with `return_index: None`.
/// * A process whose operation ended in `info` may be hung forever, so it is
///   not expected to invoke again; if it does, the new invocation is treated
///   as coming from a fresh logical process (it does not complete the old one).
/// * Malformed histories are rejected rather than guessed at: a completion
///   without a pending invocation, an invocation while the process still has
///   one pending, a completion whose `f` or key differs from its invocation,
///   and values of the wrong shape for their function.
///
/// The result is sorted by `call_index`. Failed operations are kept (with
/// `Outcome::Fail`); the checker is the one that drops them.
pub fn pair_operations(history: &[Op]) -> Result<Vec<Operation>, HistoryError> {
    // process -> index into `ops` of its pending (not yet completed) operation
    let mut pending: HashMap<u64, usize> = HashMap::new();
    let mut ops: Vec<Operation> = Vec::new();
    let err = |index: usize, message: String| HistoryError { index, message };

    for (index, event) in history.iter().enumerate() {
        match event.kind {
            OpKind::Invoke => {
                if let Some(&open) = pending.get(&event.process) {
                    return Err(err(
                        index,
                        format!(
                            "process {} invoked {:?} while its operation invoked at event {} \
                             has not completed",
                            event.process, event.f, ops[open].call_index
                        ),
                    ));
                }
                check_input_shape(event.f, event.value).map_err(|m| err(index, m))?;
                pending.insert(event.process, ops.len());
                ops.push(Operation {
                    process: event.process,
                    call_index: index,
                    return_index: None,
                    f: event.f,
                    input: event.value,
                    output: Value::Nil,
                    outcome: Outcome::Unknown,
                    key: event.key.clone(),
                });
            }
            OpKind::Ok | OpKind::Fail | OpKind::Info => {
                let Some(open) = pending.remove(&event.process) else {
                    return Err(err(
                        index,
                        format!(
                            "process {} completed {:?} ({:?}) without a pending invocation",
                            event.process, event.f, event.kind
                        ),
                    ));
                };
                let op = &mut ops[open];
                if op.f != event.f {
                    return Err(err(
                        index,
                        format!(
                            "process {} invoked {:?} at event {} but completed {:?}",
                            event.process, op.f, op.call_index, event.f
                        ),
                    ));
                }
                if event.key.is_some() && event.key != op.key {
                    return Err(err(
                        index,
                        format!(
                            "completion key {:?} differs from invocation key {:?}",
                            event.key, op.key
                        ),
                    ));
                }
                match event.kind {
                    OpKind::Ok => {
                        op.outcome = Outcome::Ok;
                        op.return_index = Some(index);
                        op.output = match op.f {
                            F::Read => match event.value {
                                Value::Nil | Value::Int(_) => event.value,
                                Value::Pair(..) => {
                                    return Err(err(
                                        index,
                                        format!("read returned a pair {}", event.value),
                                    ))
                                }
                            },
                            // A write or CAS has no result beyond success; the
                            // completion echoes the input and must agree with it.
                            F::Write | F::Cas => {
                                if event.value != op.input {
                                    return Err(err(
                                        index,
                                        format!(
                                            "{:?} completed with {} but was invoked with {}",
                                            op.f, event.value, op.input
                                        ),
                                    ));
                                }
                                op.input
                            }
                        };
                    }
                    OpKind::Fail => {
                        op.outcome = Outcome::Fail;
                        op.return_index = Some(index);
                    }
                    // Info: the return stays at +infinity and the outcome
                    // Unknown; the process no longer has a pending op, so a
                    // later invocation starts a fresh logical process.
                    OpKind::Info => {}
                    OpKind::Invoke => unreachable!("handled above"),
                }
            }
        }
    }
    // Invocations still pending at the end keep Outcome::Unknown / None.
    Ok(ops)
}

/// Checks that an invocation's value has the shape its function needs.
fn check_input_shape(f: F, value: Value) -> Result<(), String> {
    match (f, value) {
        // A read's invocation value carries no meaning; Jepsen writes nil.
        (F::Read, _) => Ok(()),
        (F::Write, Value::Int(_)) => Ok(()),
        (F::Cas, Value::Pair(..)) => Ok(()),
        (F::Write, v) => Err(format!("write needs an integer value, got {v}")),
        (F::Cas, v) => Err(format!("cas needs a [from to] value, got {v}")),
    }
}

/// Writes a history as JSON lines (one event per line).
pub fn write_jsonl<W: Write>(history: &[Op], mut out: W) -> std::io::Result<()> {
    for op in history {
        serde_json::to_writer(&mut out, op)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Reads a JSON-lines history; blank lines are skipped. Errors name the
/// 1-based line number.
pub fn read_jsonl<R: BufRead>(input: R) -> Result<Vec<Op>, String> {
    let mut history = Vec::new();
    for (line_no, line) in input.lines().enumerate() {
        let line = line.map_err(|e| format!("line {}: {e}", line_no + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let op: Op =
            serde_json::from_str(&line).map_err(|e| format!("line {}: {e}", line_no + 1))?;
        history.push(op);
    }
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(process: u64, kind: OpKind, f: F, value: Value) -> Op {
        Op::new(process, kind, f, value)
    }

    #[test]
    fn pairs_ok_fail_info_and_pending() {
        use OpKind::*;
        let h = vec![
            ev(0, Invoke, F::Write, Value::Int(1)),
            ev(1, Invoke, F::Read, Value::Nil),
            ev(0, Ok, F::Write, Value::Int(1)),
            ev(1, Ok, F::Read, Value::Int(1)),
            ev(2, Invoke, F::Cas, Value::Pair(1, 2)),
            ev(2, Fail, F::Cas, Value::Pair(1, 2)),
            ev(3, Invoke, F::Write, Value::Int(5)),
            ev(3, Info, F::Write, Value::Int(5)),
            ev(4, Invoke, F::Read, Value::Nil),
        ];
        let ops = pair_operations(&h).unwrap();
        assert_eq!(ops.len(), 5);
        assert_eq!(
            (ops[0].call_index, ops[0].return_index, ops[0].outcome),
            (0, Some(2), Outcome::Ok)
        );
        assert_eq!(ops[1].output, Value::Int(1));
        assert_eq!(
            (ops[2].return_index, ops[2].outcome),
            (Some(5), Outcome::Fail)
        );
        assert_eq!(
            (ops[3].return_index, ops[3].outcome),
            (None, Outcome::Unknown)
        );
        assert_eq!(
            (ops[4].return_index, ops[4].outcome),
            (None, Outcome::Unknown)
        );
    }

    #[test]
    fn process_reinvoking_after_info_is_a_fresh_logical_process() {
        use OpKind::*;
        let h = vec![
            ev(0, Invoke, F::Write, Value::Int(1)),
            ev(0, Info, F::Write, Value::Int(1)),
            ev(0, Invoke, F::Read, Value::Nil),
            ev(0, Ok, F::Read, Value::Int(1)),
        ];
        let ops = pair_operations(&h).unwrap();
        assert_eq!(ops.len(), 2);
        // The info write must stay open-ended, not be closed by the read.
        assert_eq!(
            (ops[0].return_index, ops[0].outcome),
            (None, Outcome::Unknown)
        );
        assert_eq!((ops[1].call_index, ops[1].return_index), (2, Some(3)));
    }

    #[test]
    fn rejects_malformed_histories() {
        use OpKind::*;
        // completion without invocation
        assert!(pair_operations(&[ev(0, Ok, F::Read, Value::Nil)]).is_err());
        // double invocation without completion
        let h = [
            ev(0, Invoke, F::Read, Value::Nil),
            ev(0, Invoke, F::Read, Value::Nil),
        ];
        assert_eq!(pair_operations(&h).unwrap_err().index, 1);
        // mismatched f
        let h = [
            ev(0, Invoke, F::Read, Value::Nil),
            ev(0, Ok, F::Write, Value::Int(1)),
        ];
        assert!(pair_operations(&h).is_err());
        // wrong value shapes
        assert!(pair_operations(&[ev(0, Invoke, F::Cas, Value::Int(1))]).is_err());
        assert!(pair_operations(&[ev(0, Invoke, F::Write, Value::Nil)]).is_err());
        let h = [
            ev(0, Invoke, F::Read, Value::Nil),
            ev(0, Ok, F::Read, Value::Pair(1, 2)),
        ];
        assert!(pair_operations(&h).is_err());
    }

    #[test]
    fn jsonl_round_trip_and_format() {
        use OpKind::*;
        let h = vec![
            ev(0, Invoke, F::Read, Value::Nil).with_key(Key::Str("a".into())),
            ev(0, Ok, F::Read, Value::Nil).with_key(Key::Str("a".into())),
            ev(1, Invoke, F::Cas, Value::Pair(1, 4)).with_key(Key::Int(7)),
            ev(1, Ok, F::Cas, Value::Pair(1, 4)).with_key(Key::Int(7)),
            ev(2, Invoke, F::Write, Value::Int(-3)),
        ];
        let mut buf = Vec::new();
        write_jsonl(&h, &mut buf).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        let first = text.lines().next().unwrap();
        assert_eq!(
            first,
            r#"{"process":0,"type":"invoke","f":"read","value":null,"key":"a"}"#
        );
        assert!(text.contains(r#""value":[1,4],"key":7"#));
        assert_eq!(read_jsonl(&buf[..]).unwrap(), h);
        // value may be omitted; unknown fields are ignored
        let parsed =
            read_jsonl(&br#"{"process":3,"type":"invoke","f":"read","extra":1}"#[..]).unwrap();
        assert_eq!(parsed[0].value, Value::Nil);
        // a bad line is reported with its number
        let e = read_jsonl(&b"\n{\"process\":1}\n"[..]).unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
    }
}
