//! Running a [`Query`] over one trace's spans (the lossless span model).
//!
//! Semantics, as in Tempo:
//! - a spanset filter keeps the spans whose condition holds; a trace
//!   matches when the final spanset is not empty;
//! - `{A} && {B}` needs both spansets non-empty and keeps the spans of
//!   both; `{A} || {B}` keeps the spans of either;
//! - a comparison with an absent attribute is false (`!=` too), except
//!   `= nil`; values compare by type: strings with strings, numbers with
//!   numbers (integers and floats mix), booleans with booleans;
//! - `.x` holds when either the span's or the resource's `x` satisfies it.

use std::cmp::Ordering;

use super::ast::*;
use crate::model::{value::find, AnyValue, SpanRecord};

/// What a trace-level intrinsic reads: computed once per trace.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceFacts<'a> {
    pub duration_nanos: u64,
    pub root: Option<&'a SpanRecord>,
}

impl<'a> TraceFacts<'a> {
    pub fn of(spans: &'a [SpanRecord]) -> TraceFacts<'a> {
        let start = spans.iter().map(|s| s.start_unix_nanos).min().unwrap_or(0);
        let end = spans.iter().map(|s| s.end_unix_nanos).max().unwrap_or(0);
        TraceFacts {
            duration_nanos: end.saturating_sub(start),
            root: root_span(spans),
        }
    }
}

/// The trace's root: the earliest span without a parent.
pub fn root_span(spans: &[SpanRecord]) -> Option<&SpanRecord> {
    spans
        .iter()
        .filter(|s| s.parent_span_id.is_none())
        .min_by_key(|s| s.start_unix_nanos)
}

impl Query {
    /// The indexes of the spans in the trace's final spanset; empty when
    /// the trace does not match.
    pub fn matching_spans(&self, spans: &[SpanRecord]) -> Vec<usize> {
        let facts = TraceFacts::of(spans);
        let mut set = eval_set(&self.sets, spans, &facts);
        for stage in &self.stages {
            if set.is_empty() {
                break;
            }
            match stage {
                Stage::Filter(e) => set.retain(|&i| e.holds(&spans[i], &facts)),
                Stage::Aggregate { func, op, value } => {
                    let keep = aggregate(func, &set, spans, &facts)
                        .and_then(|v| v.partial_cmp(value))
                        .is_some_and(|ord| op.holds(ord));
                    if !keep {
                        set.clear();
                    }
                }
            }
        }
        set
    }

    /// Whether any condition reads the trace (its duration or root).
    pub fn uses_trace_facts(&self) -> bool {
        let mut uses = false;
        self.visit_comparisons(&mut |c| {
            uses |= matches!(c.field, Field::Intrinsic(i) if i.is_trace_level());
        });
        for s in &self.stages {
            if let Stage::Aggregate { func, .. } = s {
                uses |= matches!(func,
                    AggFunc::Avg(f) | AggFunc::Min(f) | AggFunc::Max(f) | AggFunc::Sum(f)
                    if matches!(f, Field::Intrinsic(i) if i.is_trace_level()));
            }
        }
        uses
    }

    /// Whether `span` alone could put its trace in the answer: it passes
    /// one of the spanset filters. Exact only for queries that do not
    /// [`Self::uses_trace_facts`]; for those it always says yes.
    pub fn span_may_match(&self, span: &SpanRecord) -> bool {
        self.uses_trace_facts() || self.span_passes_a_filter(span)
    }

    /// Whether `span` passes one of the spanset filters, read without its
    /// trace (trace-level intrinsics read as absent).
    pub fn span_passes_a_filter(&self, span: &SpanRecord) -> bool {
        fn any_leaf(s: &SetExpr, span: &SpanRecord) -> bool {
            match s {
                SetExpr::Filter(e) => e.holds(span, &TraceFacts::default()),
                SetExpr::And(a, b) | SetExpr::Or(a, b) => any_leaf(a, span) || any_leaf(b, span),
            }
        }
        any_leaf(&self.sets, span)
    }

    /// Every comparison in the query, stages included.
    pub fn visit_comparisons(&self, f: &mut impl FnMut(&Comparison)) {
        fn set(s: &SetExpr, f: &mut impl FnMut(&Comparison)) {
            match s {
                SetExpr::Filter(e) => e.visit(f),
                SetExpr::And(a, b) | SetExpr::Or(a, b) => {
                    set(a, f);
                    set(b, f);
                }
            }
        }
        set(&self.sets, f);
        for s in &self.stages {
            if let Stage::Filter(e) = s {
                e.visit(f);
            }
        }
    }

    /// A value every matching trace has a span with, found by `leaf` in the
    /// conditions every spanset filter requires (an index can then narrow
    /// the scan to spans that have it).
    pub fn required<T: PartialEq>(&self, leaf: &impl Fn(&Comparison) -> Option<T>) -> Option<T> {
        fn set<T: PartialEq>(s: &SetExpr, leaf: &impl Fn(&Comparison) -> Option<T>) -> Option<T> {
            match s {
                SetExpr::Filter(e) => e.required(leaf),
                // Every match has a span from the left side.
                SetExpr::And(a, b) => set(a, leaf).or_else(|| set(b, leaf)),
                SetExpr::Or(a, b) => match (set(a, leaf), set(b, leaf)) {
                    (Some(x), Some(y)) if x == y => Some(x),
                    _ => None,
                },
            }
        }
        set(&self.sets, leaf)
    }
}

impl Expr {
    pub fn holds(&self, span: &SpanRecord, facts: &TraceFacts) -> bool {
        match self {
            Expr::Static(b) => *b,
            Expr::And(a, b) => a.holds(span, facts) && b.holds(span, facts),
            Expr::Or(a, b) => a.holds(span, facts) || b.holds(span, facts),
            Expr::Cmp(c) => c.holds(span, facts),
        }
    }

    fn visit(&self, f: &mut impl FnMut(&Comparison)) {
        match self {
            Expr::Static(_) => {}
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.visit(f);
                b.visit(f);
            }
            Expr::Cmp(c) => f(c),
        }
    }

    fn required<T: PartialEq>(&self, leaf: &impl Fn(&Comparison) -> Option<T>) -> Option<T> {
        match self {
            Expr::Static(_) => None,
            Expr::Cmp(c) => leaf(c),
            Expr::And(a, b) => a.required(leaf).or_else(|| b.required(leaf)),
            Expr::Or(a, b) => match (a.required(leaf), b.required(leaf)) {
                (Some(x), Some(y)) if x == y => Some(x),
                _ => None,
            },
        }
    }
}

fn eval_set(s: &SetExpr, spans: &[SpanRecord], facts: &TraceFacts) -> Vec<usize> {
    match s {
        SetExpr::Filter(e) => (0..spans.len())
            .filter(|&i| e.holds(&spans[i], facts))
            .collect(),
        SetExpr::And(a, b) => {
            let (x, y) = (eval_set(a, spans, facts), eval_set(b, spans, facts));
            if x.is_empty() || y.is_empty() {
                Vec::new()
            } else {
                union(x, y)
            }
        }
        SetExpr::Or(a, b) => union(eval_set(a, spans, facts), eval_set(b, spans, facts)),
    }
}

fn union(mut x: Vec<usize>, y: Vec<usize>) -> Vec<usize> {
    x.extend(y);
    x.sort_unstable();
    x.dedup();
    x
}

fn aggregate(
    func: &AggFunc,
    set: &[usize],
    spans: &[SpanRecord],
    facts: &TraceFacts,
) -> Option<f64> {
    let field = match func {
        AggFunc::Count => return Some(set.len() as f64),
        AggFunc::Avg(f) | AggFunc::Min(f) | AggFunc::Max(f) | AggFunc::Sum(f) => f,
    };
    let values: Vec<f64> = set
        .iter()
        .filter_map(|&i| numeric(field, &spans[i], facts))
        .collect();
    if values.is_empty() {
        return None;
    }
    let sum: f64 = values.iter().sum();
    Some(match func {
        AggFunc::Avg(_) => sum / values.len() as f64,
        AggFunc::Min(_) => values.iter().copied().fold(f64::INFINITY, f64::min),
        AggFunc::Max(_) => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        _ => sum,
    })
}

/// A field's numeric value on a span: durations in nanoseconds, number
/// attributes as they are.
fn numeric(field: &Field, span: &SpanRecord, facts: &TraceFacts) -> Option<f64> {
    match field {
        Field::Intrinsic(Intrinsic::Duration) => Some(span.duration_nanos() as f64),
        Field::Intrinsic(Intrinsic::TraceDuration) => Some(facts.duration_nanos as f64),
        Field::Intrinsic(_) => None,
        Field::Attribute { scope, name } => {
            attribute_values(span, *scope, name).find_map(|v| match v {
                AnyValue::Int(i) => Some(*i as f64),
                AnyValue::Double(d) => Some(*d),
                _ => None,
            })
        }
    }
}

/// The values `scope`.`name` reads on a span: for [`Scope::Any`], the
/// span's then the resource's.
pub fn attribute_values<'a>(
    span: &'a SpanRecord,
    scope: Scope,
    name: &'a str,
) -> impl Iterator<Item = &'a AnyValue> + 'a {
    let in_span = matches!(scope, Scope::Span | Scope::Any);
    let in_resource = matches!(scope, Scope::Resource | Scope::Any);
    let span_value = in_span
        .then(|| find(&span.attributes, name))
        .flatten()
        .and_then(|kv| kv.value.as_ref());
    let resource_value = in_resource
        .then(|| find(&span.resource.attributes, name))
        .flatten()
        .and_then(|kv| kv.value.as_ref());
    span_value.into_iter().chain(resource_value)
}

impl Comparison {
    pub fn holds(&self, span: &SpanRecord, facts: &TraceFacts) -> bool {
        match &self.field {
            Field::Intrinsic(i) => self.intrinsic_holds(*i, span, facts),
            Field::Attribute { scope, name } => {
                if self.value == Literal::Nil {
                    let present = attribute_values(span, *scope, name).next().is_some()
                        || self.service_fallback(*scope, name, span).is_some();
                    return (self.op == CmpOp::Ne) == present;
                }
                let mut found = false;
                for v in attribute_values(span, *scope, name) {
                    found = true;
                    if self.value_holds(v) {
                        return true;
                    }
                }
                // Spans without `service.name` are stored under the service
                // `unknown`: the same name every other surface shows.
                !found
                    && self
                        .service_fallback(*scope, name, span)
                        .is_some_and(|s| self.str_holds(s))
            }
        }
    }

    fn service_fallback<'a>(
        &self,
        scope: Scope,
        name: &str,
        span: &'a SpanRecord,
    ) -> Option<&'a str> {
        (scope != Scope::Span && name == "service.name").then_some(span.service.as_str())
    }

    fn intrinsic_holds(&self, i: Intrinsic, span: &SpanRecord, facts: &TraceFacts) -> bool {
        match (i, &self.value) {
            (Intrinsic::Status, Literal::Status(s)) => self.op.holds(cmp_eq(span.status == *s)),
            (Intrinsic::Kind, Literal::Kind(k)) => self.op.holds(cmp_eq(span.kind == *k)),
            (Intrinsic::Duration, Literal::Duration(d)) => {
                self.op.holds(span.duration_nanos().cmp(d))
            }
            (Intrinsic::TraceDuration, Literal::Duration(d)) => {
                self.op.holds(facts.duration_nanos.cmp(d))
            }
            (Intrinsic::Name, Literal::Str(_)) => self.str_holds(span.name()),
            (Intrinsic::StatusMessage, Literal::Str(_)) => self.str_holds(&span.status_message),
            (Intrinsic::RootService, Literal::Str(_)) => {
                facts.root.is_some_and(|r| self.str_holds(&r.service))
            }
            (Intrinsic::RootName, Literal::Str(_)) => {
                facts.root.is_some_and(|r| self.str_holds(r.name()))
            }
            // The parser refuses every other pairing.
            _ => false,
        }
    }

    fn str_holds(&self, s: &str) -> bool {
        match (&self.value, self.op) {
            (Literal::Str(_), CmpOp::Re) => self.regex.as_ref().is_some_and(|r| r.is_match(s)),
            (Literal::Str(_), CmpOp::NotRe) => self.regex.as_ref().is_some_and(|r| !r.is_match(s)),
            (Literal::Str(lit), op) => op.holds(s.cmp(lit.as_str())),
            _ => false,
        }
    }

    fn value_holds(&self, v: &AnyValue) -> bool {
        match (&self.value, v) {
            (Literal::Str(_), AnyValue::String(s)) => self.str_holds(s),
            (Literal::Int(a), AnyValue::Int(b)) => self.op.holds(b.cmp(a)),
            (Literal::Duration(a), AnyValue::Int(b)) => {
                self.op.holds((*b as i128).cmp(&(*a as i128)))
            }
            (Literal::Int(a), AnyValue::Double(b)) => self.float_holds(*b, *a as f64),
            (Literal::Float(a), AnyValue::Double(b)) => self.float_holds(*b, *a),
            (Literal::Float(a), AnyValue::Int(b)) => self.float_holds(*b as f64, *a),
            (Literal::Bool(a), AnyValue::Bool(b)) => self.op.holds(cmp_eq(a == b)),
            _ => false,
        }
    }

    fn float_holds(&self, value: f64, literal: f64) -> bool {
        value
            .partial_cmp(&literal)
            .is_some_and(|ord| self.op.holds(ord))
    }
}

/// An ordering for an equality-only comparison.
fn cmp_eq(equal: bool) -> Ordering {
    if equal {
        Ordering::Equal
    } else {
        Ordering::Less
    }
}
