//! Grafana's Jaeger data source (`http://NODE:7701/jaeger`): Jaeger's query
//! API (services, operations, trace search, trace by id, dependencies) in
//! its envelope `{"data", "total", "limit", "offset", "errors"}`, through
//! the query service.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::jaeger_model::{has_tag, trace_json};
use super::tempo::lenient_trace_id;
use super::{answer_read, mark_served, ApiError, Params, RestState};
use crate::model::{now_unix_nanos, SpanRecord, TraceId};
use crate::query::{QueryService, SpanWalk, Text};

const DEFAULT_LIMIT: usize = 20;
/// Spans a trace search may visit; past it, the answer says so in `errors`.
pub const MAX_SCANNED_SPANS: usize = 200_000;
/// Most operations listed for one service (from the tag index).
pub const MAX_OPERATIONS: usize = 1_000;
/// Spans a dependency graph may read.
pub const MAX_DEPENDENCY_SPANS: usize = 500_000;
const DEFAULT_LOOKBACK_MS: u64 = 86_400_000;
const MAX_TAGS_BYTES: usize = 8 * 1024;

pub fn router() -> Router<RestState> {
    Router::new()
        .route("/api/services", get(services))
        .route("/api/services/{service}/operations", get(operations))
        .route("/api/traces", get(search))
        .route("/api/traces/{trace_id}", get(by_id))
        .route("/api/dependencies", get(dependencies))
}

/// Jaeger's envelope around `data`.
fn envelope(data: Value, total: usize, errors: Vec<String>) -> Value {
    let errors: Value = if errors.is_empty() {
        Value::Null
    } else {
        errors
            .into_iter()
            .map(|msg| json!({ "code": 500, "msg": msg }))
            .collect()
    };
    json!({ "data": data, "total": total, "limit": 0, "offset": 0, "errors": errors })
}

async fn services(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let read = queries
        .read(p.consistency()?, Text::NotUsed, |v| v.services())
        .await?;
    Ok(answer_read(read, |list| {
        let names: BTreeSet<String> = list.into_iter().map(|(name, _)| name).collect();
        let n = names.len();
        envelope(json!(names), n, Vec::new())
    }))
}

async fn operations(
    State(queries): State<Arc<QueryService>>,
    Path(service): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let read = queries
        .read(p.consistency()?, Text::NotUsed, move |v| {
            v.operations(&service, MAX_OPERATIONS)
        })
        .await?;
    Ok(answer_read(read, |names| {
        let n = names.len();
        envelope(json!(names), n, Vec::new())
    }))
}

/// A Go-style duration: `1.2s`, `150ms`, `1m30s`, `500us`; nanoseconds.
pub fn parse_go_duration(s: &str) -> Option<u64> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let unit_len = rest[num_len..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len() - num_len);
        let n: f64 = rest[..num_len].parse().ok()?;
        let per = match &rest[num_len..num_len + unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * per;
        rest = &rest[num_len + unit_len..];
    }
    (total.is_finite() && total <= u64::MAX as f64).then(|| total.round() as u64)
}

fn duration_param(p: &Params, name: &str) -> Result<Option<u64>, ApiError> {
    match p.one(name)? {
        None | Some("") => Ok(None),
        Some(s) => parse_go_duration(s).map(Some).ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name} must be a duration like 1.2s or 150ms, not {s:?}"
            ))
        }),
    }
}

fn u64_param(p: &Params, name: &str, unit: &str) -> Result<Option<u64>, ApiError> {
    match p.one(name)? {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("{name} must be {unit}, not {s:?}"))),
    }
}

/// `tags={"k":"v",...}`: values compared by their string form.
fn tags_param(p: &Params) -> Result<Vec<(String, String)>, ApiError> {
    let Some(raw) = p.one("tags")?.filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    if raw.len() > MAX_TAGS_BYTES {
        return Err(ApiError::bad_request(format!(
            "tags is longer than {MAX_TAGS_BYTES} bytes"
        )));
    }
    let map: serde_json::Map<String, Value> = serde_json::from_str(raw).map_err(|e| {
        ApiError::bad_request(format!("tags must be a JSON object of strings: {e}"))
    })?;
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect())
}

/// What a span must be for its trace to be found.
struct SpanFilter {
    operation: Option<String>,
    tags: Vec<(String, String)>,
    min_duration_nanos: Option<u64>,
    max_duration_nanos: Option<u64>,
}

impl SpanFilter {
    fn matches(&self, s: &SpanRecord) -> bool {
        self.operation.as_ref().is_none_or(|o| s.name() == o)
            && self
                .min_duration_nanos
                .is_none_or(|m| s.duration_nanos() >= m)
            && self
                .max_duration_nanos
                .is_none_or(|m| s.duration_nanos() <= m)
            && self.tags.iter().all(|(k, v)| has_tag(s, k, v))
    }
}

async fn search(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let consistency = p.consistency()?;
    let service = p
        .one("service")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("parameter 'service' is required"))?
        .to_string();
    let filter = SpanFilter {
        operation: p
            .one("operation")?
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        tags: tags_param(&p)?,
        min_duration_nanos: duration_param(&p, "minDuration")?,
        max_duration_nanos: duration_param(&p, "maxDuration")?,
    };
    let limit = p.limit(DEFAULT_LIMIT)?;
    let start = u64_param(&p, "start", "unix microseconds")?;
    let end = u64_param(&p, "end", "unix microseconds")?;
    let window = (
        start.map_or(0, |us| us.saturating_mul(1_000)),
        end.map_or(u64::MAX, |us| us.saturating_mul(1_000).saturating_add(999)),
    );
    if window.0 > window.1 {
        return Err(ApiError::bad_request("end is before start"));
    }
    let read = queries
        .read(consistency, Text::NotUsed, move |v| {
            let mut ids: Vec<TraceId> = Vec::new();
            let mut seen = HashSet::new();
            let walk = SpanWalk::Service(&service);
            let scan = v.visit_spans(window, walk, MAX_SCANNED_SPANS, |s| {
                if filter.matches(&s) && seen.insert(s.trace_id) {
                    ids.push(s.trace_id);
                }
                Ok(if ids.len() >= limit {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                })
            })?;
            let traces = ids
                .iter()
                .map(|id| v.trace(id))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((traces, scan.truncated))
        })
        .await?;
    Ok(answer_read(read, |(traces, truncated)| {
        let data: Vec<Value> = traces
            .iter()
            .filter(|t| !t.is_empty())
            .map(|t| trace_json(t))
            .collect();
        let errors = if truncated {
            vec![format!(
                "the search stopped after {MAX_SCANNED_SPANS} spans; narrow the time range for more"
            )]
        } else {
            Vec::new()
        };
        let n = data.len();
        envelope(Value::Array(data), n, errors)
    }))
}

async fn by_id(
    State(queries): State<Arc<QueryService>>,
    Path(trace_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let id = lenient_trace_id(&trace_id)?;
    let read = queries
        .read(p.consistency()?, Text::NotUsed, move |v| v.trace(&id))
        .await?;
    if read.value.is_empty() {
        let body = json!({
            "data": null, "total": 0, "limit": 0, "offset": 0,
            "errors": [{ "code": 404, "msg": "trace not found" }],
        });
        let mut resp = (StatusCode::NOT_FOUND, Json(body)).into_response();
        mark_served(&mut resp, read.barrier);
        return Ok(resp);
    }
    Ok(answer_read(read, |spans| {
        envelope(json!([trace_json(&spans)]), 1, Vec::new())
    }))
}

/// `GET /api/dependencies?endTs=&lookback=` (milliseconds): calls between
/// services, from parent-child pairs whose services differ.
async fn dependencies(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let end_ms = u64_param(&p, "endTs", "unix milliseconds")?
        .unwrap_or_else(|| now_unix_nanos() / 1_000_000);
    let lookback_ms = u64_param(&p, "lookback", "milliseconds")?.unwrap_or(DEFAULT_LOOKBACK_MS);
    let until = end_ms.saturating_mul(1_000_000);
    let since = until.saturating_sub(lookback_ms.saturating_mul(1_000_000));
    let read = queries
        .read(p.consistency()?, Text::NotUsed, move |v| {
            v.span_digests((since, until), None, MAX_DEPENDENCY_SPANS)
        })
        .await?;
    Ok(answer_read(read, |(digests, truncated)| {
        let service_of: HashMap<([u8; 16], [u8; 8]), &str> = digests
            .iter()
            .map(|d| ((d.trace_id, d.span_id), d.service.as_str()))
            .collect();
        let mut calls: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for d in &digests {
            let Some(parent) = d.parent_span_id else {
                continue;
            };
            if let Some(&from) = service_of.get(&(d.trace_id, parent)) {
                if from != d.service {
                    *calls.entry((from, d.service.as_str())).or_default() += 1;
                }
            }
        }
        let data: Vec<Value> = calls
            .into_iter()
            .map(|((parent, child), n)| json!({ "parent": parent, "child": child, "callCount": n }))
            .collect();
        let errors = if truncated {
            vec![format!(
                "the graph covers the first {MAX_DEPENDENCY_SPANS} spans of the window only"
            )]
        } else {
            Vec::new()
        };
        let n = data.len();
        envelope(Value::Array(data), n, errors)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1.2s"), Some(1_200_000_000));
        assert_eq!(parse_go_duration("150ms"), Some(150_000_000));
        assert_eq!(parse_go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_go_duration("500us"), Some(500_000));
        assert_eq!(parse_go_duration("7ns"), Some(7));
        for bad in ["", "5", "s", "1.2x", "-1s", "1..2s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }
}
