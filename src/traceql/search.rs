//! Running a TraceQL query over the stored spans: a bounded scan through a
//! [`View`], newest first.
//!
//! The scan visits spans in the time window (through the service or error
//! index when every match needs such a span, see [`Query::required`]); a
//! span that could put its trace in the answer ([`Query::span_may_match`])
//! has its whole trace loaded and evaluated, once per trace. It stops at
//! `limit` matching traces, or when a budget runs out: then the outcome
//! says it is truncated, and the caller says so to the client.

use std::collections::HashSet;
use std::ops::ControlFlow;

use super::ast::{CmpOp, Comparison, Field, Intrinsic, Literal, Query, Scope};
use crate::model::{SpanRecord, SpanStatus, TraceId};
use crate::query::{SpanScan, SpanWalk, StoreResult, View};

#[derive(Clone, Copy, Debug)]
pub struct SearchLimits {
    /// Matching traces to answer with.
    pub max_traces: usize,
    /// Spans the scan may visit.
    pub max_scanned_spans: usize,
    /// Traces the scan may load and evaluate.
    pub max_loaded_traces: usize,
}

/// A matching trace: all its spans, and which of them the query matched.
#[derive(Debug)]
pub struct TraceMatch {
    pub spans: Vec<SpanRecord>,
    /// Indexes into `spans`, ascending.
    pub matched: Vec<usize>,
}

#[derive(Debug, Default)]
pub struct SearchOutcome {
    /// Newest first (by the newest visited span of each trace).
    pub traces: Vec<TraceMatch>,
    pub scan: SpanScan,
    pub loaded_traces: usize,
    /// A budget ran out before the window was exhausted.
    pub truncated: bool,
}

/// The traces in `[from, to]` (unix nanoseconds) that match `q`.
pub fn search(
    view: &View,
    q: &Query,
    window: (u64, u64),
    limits: SearchLimits,
) -> StoreResult<SearchOutcome> {
    let service = q.required(&required_service);
    let walk = match (&service, q.required(&required_error)) {
        (Some(s), _) => SpanWalk::Service(s),
        (None, Some(())) => SpanWalk::Errors,
        (None, None) => SpanWalk::Time,
    };
    let mut out = SearchOutcome::default();
    let every_span_may_match = q.uses_trace_facts();
    let mut seen: HashSet<TraceId> = HashSet::new();
    let scan = view.visit_spans(window, walk, limits.max_scanned_spans, |span| {
        let may_match = every_span_may_match || q.span_passes_a_filter(&span);
        if !may_match || seen.contains(&span.trace_id) {
            return Ok(ControlFlow::Continue(()));
        }
        if out.loaded_traces >= limits.max_loaded_traces {
            out.truncated = true;
            return Ok(ControlFlow::Break(()));
        }
        seen.insert(span.trace_id);
        out.loaded_traces += 1;
        let spans = view.trace(&span.trace_id)?;
        let matched = q.matching_spans(&spans);
        if !matched.is_empty() {
            out.traces.push(TraceMatch { spans, matched });
        }
        Ok(if out.traces.len() >= limits.max_traces {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })?;
    out.truncated |= scan.truncated;
    out.scan = scan;
    Ok(out)
}

/// `resource.service.name = "x"`: only spans of service `x` can match.
fn required_service(c: &Comparison) -> Option<String> {
    match (&c.field, c.op, &c.value) {
        (Field::Attribute { scope, name }, CmpOp::Eq, Literal::Str(s))
            if *scope == Scope::Resource && name == "service.name" =>
        {
            Some(s.clone())
        }
        _ => None,
    }
}

/// `status = error`: only spans with status error can match.
fn required_error(c: &Comparison) -> Option<()> {
    match (&c.field, c.op, &c.value) {
        (Field::Intrinsic(Intrinsic::Status), CmpOp::Eq, Literal::Status(SpanStatus::Error)) => {
            Some(())
        }
        _ => None,
    }
}
