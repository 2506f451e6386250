//! `GET /tempo/api/search?q=TRACEQL&limit=&spss=&start=&end=`: TraceQL
//! search (see `crate::traceql`), answered in Tempo's `SearchResponse`
//! JSON: 64-bit numbers as strings, as proto3 JSON writes them.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::params::seconds_param;
use super::{mark_served, ApiError, Params};
use crate::model::{hex_lower, AnyValue, SpanRecord};
use crate::query::{QueryService, Text};
use crate::traceql::ast::{Field, Scope};
use crate::traceql::eval::{attribute_values, root_span};
use crate::traceql::{self, SearchLimits, TraceMatch};

const DEFAULT_LIMIT: usize = 20;
const DEFAULT_SPANS_PER_SPANSET: usize = 3;
const MAX_SPANS_PER_SPANSET: usize = 1000;
/// Longest TraceQL query accepted.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;
/// Spans one search may visit, and traces it may load: a search over more
/// answers with what it found and says it was cut short (the header
/// [`TRUNCATED_HEADER`]).
pub const MAX_SCANNED_SPANS: usize = 200_000;
pub const MAX_LOADED_TRACES: usize = 20_000;
pub const TRUNCATED_HEADER: &str = "x-tael-search-truncated";
/// What Tempo shows for a trace whose root span is not stored.
const NO_ROOT: &str = "<root span not yet received>";

/// The TraceQL query in `q`: `{}` when absent or blank, a 400 when too long
/// or malformed.
pub fn query_param(p: &Params) -> Result<traceql::Query, ApiError> {
    let text = p.one("q")?.map(str::trim).filter(|q| !q.is_empty());
    let text = text.unwrap_or("{}");
    if text.len() > MAX_QUERY_BYTES {
        return Err(ApiError::bad_request(format!(
            "q is {} bytes; the limit is {MAX_QUERY_BYTES}",
            text.len()
        )));
    }
    traceql::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `[start, end]` in unix seconds as a window in nanoseconds (all time
/// when absent); `end` takes its whole second.
pub fn window(p: &Params) -> Result<(u64, u64), ApiError> {
    let start = seconds_param(p, "start")?;
    let end = seconds_param(p, "end")?;
    if let (Some(s), Some(e)) = (start, end) {
        if e < s {
            return Err(ApiError::bad_request("end is before start"));
        }
    }
    let from = start.map_or(0, |s| s.saturating_mul(1_000_000_000));
    let to = end.map_or(u64::MAX, |e| {
        e.saturating_mul(1_000_000_000).saturating_add(999_999_999)
    });
    Ok((from, to))
}

fn spans_per_spanset(p: &Params) -> Result<usize, ApiError> {
    match p.one("spss")? {
        None | Some("") => Ok(DEFAULT_SPANS_PER_SPANSET),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_SPANS_PER_SPANSET).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "spss must be an integer from 1 to {MAX_SPANS_PER_SPANSET}, not {s:?}"
            ))),
        },
    }
}

pub async fn search(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let consistency = p.consistency()?;
    if p.one("tags")?.is_some() {
        return Err(ApiError::bad_request(
            "the tags= search is not supported; use q= with a TraceQL query",
        ));
    }
    let query = query_param(&p)?;
    let window = window(&p)?;
    let spss = spans_per_spanset(&p)?;
    let limits = SearchLimits {
        max_traces: p.limit(DEFAULT_LIMIT)?,
        max_scanned_spans: MAX_SCANNED_SPANS,
        max_loaded_traces: MAX_LOADED_TRACES,
    };
    let shown = shown_attributes(&query);
    let read = queries
        .read(consistency, Text::NotUsed, move |v| {
            traceql::search(v, &query, window, limits)
        })
        .await?;
    let outcome = read.value;
    if outcome.truncated {
        tracing::warn!(
            scanned_spans = outcome.scan.scanned,
            loaded_traces = outcome.loaded_traces,
            "a TraceQL search hit its scan limit and answered with what it found"
        );
    }
    let traces: Vec<Value> = outcome
        .traces
        .iter()
        .map(|t| trace_json(t, spss, &shown))
        .collect();
    let body = json!({
        "traces": traces,
        "metrics": {
            "inspectedTraces": outcome.loaded_traces,
            "inspectedSpans": outcome.scan.scanned.to_string(),
            "completedJobs": 1,
            "totalJobs": 1,
        },
    });
    let mut resp = Json(body).into_response();
    if outcome.truncated {
        resp.headers_mut()
            .insert(TRUNCATED_HEADER, HeaderValue::from_static("true"));
    }
    mark_served(&mut resp, read.barrier);
    Ok(resp)
}

/// The attributes a query names, shown on the spans of its spansets (as
/// Tempo does), each with the scope it is looked up in.
fn shown_attributes(q: &traceql::Query) -> Vec<(Scope, String)> {
    let mut out: Vec<(Scope, String)> = Vec::new();
    q.visit_comparisons(&mut |c| {
        if let Field::Attribute { scope, name } = &c.field {
            if !out.iter().any(|(s, n)| s == scope && n == name) {
                out.push((*scope, name.clone()));
            }
        }
    });
    out
}

/// One `TraceSearchMetadata`.
fn trace_json(t: &TraceMatch, spss: usize, shown: &[(Scope, String)]) -> Value {
    let start = t
        .spans
        .iter()
        .map(|s| s.start_unix_nanos)
        .min()
        .unwrap_or(0);
    let end = t.spans.iter().map(|s| s.end_unix_nanos).max().unwrap_or(0);
    let root = root_span(&t.spans);
    let spans: Vec<Value> = t
        .matched
        .iter()
        .take(spss)
        .map(|&i| span_json(&t.spans[i], shown))
        .collect();
    let spanset = json!({ "spans": spans, "matched": t.matched.len() });
    json!({
        "traceID": hex_lower(&t.spans[0].trace_id),
        "rootServiceName": root.map_or(NO_ROOT, |r| r.service.as_str()),
        "rootTraceName": root.map_or(NO_ROOT, |r| r.name()),
        "startTimeUnixNano": start.to_string(),
        "durationMs": end.saturating_sub(start) / 1_000_000,
        "spanSet": spanset,
        "spanSets": [spanset],
    })
}

fn span_json(s: &SpanRecord, shown: &[(Scope, String)]) -> Value {
    // service.name first: Grafana shows it for every span of a spanset.
    let mut attrs: BTreeMap<&str, &AnyValue> = BTreeMap::new();
    let service = AnyValue::String(s.service.clone());
    let mut list = vec![json!({ "key": "service.name", "value": otlp_value(&service) })];
    for (scope, name) in shown {
        if name == "service.name" {
            continue;
        }
        if let Some(v) = attribute_values(s, *scope, name).next() {
            attrs.insert(name, v);
        }
    }
    list.extend(
        attrs
            .into_iter()
            .map(|(k, v)| json!({ "key": k, "value": otlp_value(v) })),
    );
    json!({
        "spanID": hex_lower(&s.span_id),
        "name": s.name(),
        "startTimeUnixNano": s.start_unix_nanos.to_string(),
        "durationNanos": s.duration_nanos().to_string(),
        "attributes": list,
    })
}

/// A value in OTLP JSON (`{"stringValue": ...}`, `{"intValue": "5"}`).
pub fn otlp_value(v: &AnyValue) -> Value {
    serde_json::to_value(crate::otlp::encode::any_value(v)).unwrap_or(Value::Null)
}
