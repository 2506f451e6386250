//! What a parsed TraceQL query is. Built by `parser`, run by `eval`.

use crate::model::{SpanKind, SpanStatus};

/// A whole query: a spanset expression, then pipeline stages.
#[derive(Clone, Debug)]
pub struct Query {
    pub sets: SetExpr,
    pub stages: Vec<Stage>,
}

/// Spansets combined: `{A}`, `{A} && {B}`, `{A} || {B}`.
#[derive(Clone, Debug)]
pub enum SetExpr {
    Filter(Expr),
    /// Both sides non-empty; the union of their spans.
    And(Box<SetExpr>, Box<SetExpr>),
    /// The union of both sides' spans.
    Or(Box<SetExpr>, Box<SetExpr>),
}

/// One pipeline stage, applied to a trace's spanset.
#[derive(Clone, Debug)]
pub enum Stage {
    /// `| { ... }`: keeps the spans that match.
    Filter(Expr),
    /// `| count() > 2`, `| avg(duration) > 1s`: keeps the spanset when the
    /// aggregate compares true.
    Aggregate {
        func: AggFunc,
        op: CmpOp,
        value: f64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum AggFunc {
    Count,
    /// Over a numeric field: a duration (nanoseconds) or a number attribute.
    Avg(Field),
    Min(Field),
    Max(Field),
    Sum(Field),
}

/// A condition on one span (and its trace's intrinsics).
#[derive(Clone, Debug)]
pub enum Expr {
    /// `{ }`, `{ true }`, `{ false }`.
    Static(bool),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(Comparison),
}

#[derive(Clone, Debug)]
pub struct Comparison {
    pub field: Field,
    pub op: CmpOp,
    pub value: Literal,
    /// For `=~` and `!~`: the literal compiled, anchored at both ends (a
    /// TraceQL regex matches the whole value).
    pub regex: Option<regex::Regex>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Re,
    NotRe,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Re => "=~",
            CmpOp::NotRe => "!~",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
        }
    }

    pub fn is_order(self) -> bool {
        matches!(self, CmpOp::Gt | CmpOp::Ge | CmpOp::Lt | CmpOp::Le)
    }

    /// Whether an ordering of the two sides passes this operator.
    pub fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            CmpOp::Eq => ord == Equal,
            CmpOp::Ne => ord != Equal,
            CmpOp::Gt => ord == Greater,
            CmpOp::Ge => ord != Less,
            CmpOp::Lt => ord == Less,
            CmpOp::Le => ord != Greater,
            CmpOp::Re | CmpOp::NotRe => false,
        }
    }
}

/// Where an attribute is looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Span,
    Resource,
    /// `.x`: the span's attribute or its resource's.
    Any,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    Attribute { scope: Scope, name: String },
    Intrinsic(Intrinsic),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Intrinsic {
    Name,
    Status,
    StatusMessage,
    Kind,
    Duration,
    TraceDuration,
    RootService,
    RootName,
}

impl Intrinsic {
    /// Whether the value belongs to the trace rather than the span.
    pub fn is_trace_level(self) -> bool {
        matches!(
            self,
            Intrinsic::TraceDuration | Intrinsic::RootService | Intrinsic::RootName
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Nanoseconds.
    Duration(u64),
    Status(SpanStatus),
    Kind(SpanKind),
    /// `nil`: `!= nil` asks for presence, `= nil` for absence.
    Nil,
}
