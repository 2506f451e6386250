//! What a search asks for and what it answers (executed in `search.rs`).

use serde::{Deserialize, Serialize};

use crate::model::{LogRecord, MetricPoint, MetricType, Severity, SpanRecord, SpanStatus, TraceId};

/// One service's span totals, kept up to date by every apply (stored in
/// `svc_stats`, bincode).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceStats {
    pub span_count: u64,
    pub error_count: u64,
    pub duration_sum_nanos: u64,
    pub trace_count: u64,
}

#[derive(Debug, Clone)]
pub enum AttributeFilter {
    Exact(String, String),
    Contains(String, String),
    Regex(String, regex::Regex),
}

impl AttributeFilter {
    fn matches<'a>(&self, lookup: impl Fn(&str) -> Option<std::borrow::Cow<'a, str>>) -> bool {
        match self {
            AttributeFilter::Exact(k, v) => lookup(k).as_deref() == Some(v.as_str()),
            AttributeFilter::Contains(k, v) => lookup(k).is_some_and(|a| a.contains(v.as_str())),
            AttributeFilter::Regex(k, re) => lookup(k).is_some_and(|a| re.is_match(&a)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SpanQuery {
    pub service: Option<String>,
    pub operation_contains: Option<String>,
    pub status: Option<SpanStatus>,
    pub min_duration_nanos: Option<u64>,
    pub max_duration_nanos: Option<u64>,
    pub since_unix_nanos: Option<u64>,
    pub until_unix_nanos: Option<u64>,
    pub attributes: Vec<AttributeFilter>,
    pub limit: usize,
    pub max_scanned: usize,
}

impl SpanQuery {
    pub fn matches(&self, s: &SpanRecord) -> bool {
        self.service.as_ref().is_none_or(|svc| &s.service == svc)
            && self
                .operation_contains
                .as_ref()
                .is_none_or(|op| s.operation.contains(op.as_str()))
            && self.status.is_none_or(|st| s.status == st)
            && self
                .min_duration_nanos
                .is_none_or(|m| s.duration_nanos() >= m)
            && self
                .max_duration_nanos
                .is_none_or(|m| s.duration_nanos() <= m)
            && self
                .attributes
                .iter()
                .all(|f| f.matches(|k| s.attribute(k)))
    }
}

#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub service: Option<String>,
    pub severity: Option<Severity>,
    pub body_contains: Option<String>,
    pub trace_id: Option<TraceId>,
    pub since_unix_nanos: Option<u64>,
    pub until_unix_nanos: Option<u64>,
    pub attributes: Vec<AttributeFilter>,
    pub limit: usize,
    pub max_scanned: usize,
}

impl LogQuery {
    pub fn matches(&self, l: &LogRecord) -> bool {
        self.service.as_ref().is_none_or(|svc| &l.service == svc)
            && self.severity.is_none_or(|s| l.severity == s)
            && self
                .body_contains
                .as_ref()
                .is_none_or(|b| l.body_text().contains(b.as_str()))
            && self.trace_id.is_none_or(|t| l.trace_id == Some(t))
            && self
                .attributes
                .iter()
                .all(|f| f.matches(|k| l.attribute(k)))
    }
}

#[derive(Debug, Clone, Default)]
pub struct MetricQuery {
    pub service: Option<String>,
    pub name: Option<String>,
    pub metric_type: Option<MetricType>,
    pub since_unix_nanos: Option<u64>,
    pub until_unix_nanos: Option<u64>,
    pub limit: usize,
    pub max_scanned: usize,
}

impl MetricQuery {
    pub fn matches(&self, m: &MetricPoint) -> bool {
        self.service.as_ref().is_none_or(|svc| &m.service == svc)
            && self.name.as_ref().is_none_or(|n| &m.name == n)
            && self.metric_type.is_none_or(|t| m.metric_type == t)
    }
}

/// Records found by a log or metric search, newest first.
#[derive(Debug)]
pub struct Found<T> {
    pub records: Vec<T>,
    /// Each record's key (time ++ content key), in the same order.
    pub keys: Vec<Vec<u8>>,
    pub scanned: usize,
    /// The scan budget ran out before the window was exhausted.
    pub truncated: bool,
}

#[derive(Debug, Default)]
pub struct SearchResult {
    pub spans: Vec<SpanRecord>,
    pub scanned: usize,
    /// The scan budget ran out before the window was exhausted.
    pub truncated: bool,
}
