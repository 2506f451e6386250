//! `/api/v1/summary`, `/anomalies`, `/correlate`, `/topology`, `/diff`.
//!
//! Summary, anomalies and diff read per-minute rollups of the minutes that
//! start within the window (`View::window_rollups`); topology needs each
//! span's parent and reads span digests only.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::{answer, ApiError, Params};
use crate::analytics::{self, SpanDigest, SpanStats};
use crate::model::{hex_lower, now_unix_nanos, parse_hex, rfc3339_nanos, Severity, TraceId};
use crate::query::{LogQuery, MetricQuery, QueryService, StoreError, Text, View};
use crate::rollup::WindowRollups;

const DEFAULT_WINDOW_SECS: u64 = 3600;
/// The baseline window defaults to this many current windows before it.
const DEFAULT_BASELINE_FACTOR: u64 = 6;
/// Spans one window may hold in memory; beyond it the answer says `truncated`.
const MAX_WINDOW_SPANS: usize = 2_000_000;
/// Spans read for a window shorter than a minute (longer ones read
/// rollups); beyond it the answer says `truncated`.
const MAX_SUBMINUTE_SPANS: usize = MAX_WINDOW_SPANS;
const TOP_LIMIT: usize = 10;
const DEFAULT_EDGE_LIMIT: usize = 100;
const CORRELATE_MAX_LOGS: usize = 1_000;
const CORRELATE_MAX_METRICS: usize = 500;
/// Metric points this close to a trace count as its context.
const CORRELATE_MARGIN_NANOS: u64 = 60_000_000_000;
const NANOS_PER_SEC: u64 = 1_000_000_000;

struct Windows {
    /// The window asked about, unix nanoseconds, inclusive.
    from: u64,
    to: u64,
    /// Its length (at least a second), and the baseline's before it.
    current_secs: u64,
    baseline_secs: u64,
    service: Option<String>,
}

impl Windows {
    /// `start`/`end`, or `last` back from `end` (default: the last hour).
    fn parse(p: &Params) -> Result<Windows, ApiError> {
        let (since, until) = super::params::time_window(p, Some(DEFAULT_WINDOW_SECS))?;
        let to = until.unwrap_or_else(now_unix_nanos);
        let from = since.expect("a default window is given").min(to);
        let current_secs = ((to - from) / NANOS_PER_SEC).max(1);
        let baseline_secs = p
            .window_secs("baseline")?
            .unwrap_or(current_secs * DEFAULT_BASELINE_FACTOR);
        Ok(Windows {
            from,
            to,
            current_secs,
            baseline_secs,
            service: p.one("service")?.map(str::to_string),
        })
    }

    fn current(&self) -> (u64, u64) {
        (self.from, self.to)
    }

    /// The window just before the current one.
    fn baseline(&self) -> (u64, u64) {
        let end = self.current().0.saturating_sub(1);
        (end.saturating_sub(self.baseline_secs * NANOS_PER_SEC), end)
    }
}

fn digests(
    view: &View,
    window: (u64, u64),
    service: Option<&str>,
) -> Result<(Vec<SpanDigest>, bool), StoreError> {
    view.span_digests(window, service, MAX_WINDOW_SPANS)
}

fn rollups(
    view: &View,
    window: (u64, u64),
    service: Option<&str>,
) -> Result<WindowRollups, StoreError> {
    view.window_rollups(window, service, MAX_SUBMINUTE_SPANS)
}

/// Parses the window parameters, then runs `f` through the query service.
/// `limit` (default `default_limit`) bounds the lists `f` returns.
async fn windowed(
    queries: Arc<QueryService>,
    raw: Option<String>,
    default_limit: usize,
    f: impl FnOnce(&View, &Windows, usize) -> Result<Value, StoreError> + Send + 'static,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let consistency = p.consistency()?;
    let w = Windows::parse(&p)?;
    let limit = p.limit(default_limit)?;
    let read = queries
        .read(consistency, Text::NotUsed, move |v| f(v, &w, limit))
        .await?;
    Ok(answer(read.barrier, read.value))
}

pub async fn summary(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    windowed(queries, raw, TOP_LIMIT, |store, w, limit| {
        let svc = w.service.as_deref();
        let window = w.current();
        let spans = rollups(store, window, svc)?;
        let logs = store.log_severity_counts(window, svc)?;
        let (points, names) = store.metric_point_counts(window, svc)?;
        let count = |sevs: &[Severity]| -> u64 {
            sevs.iter().map(|s| logs.get(s).copied().unwrap_or(0)).sum()
        };
        Ok(json!({
            "window_seconds": w.current_secs,
            "service_filter": w.service,
            "traces": spans.total().stats(),
            "top_services": analytics::top_services(&spans, limit),
            "top_error_operations": analytics::top_error_operations(&spans, limit),
            "logs": {
                "total": logs.values().sum::<u64>(),
                "error": count(&[Severity::Error, Severity::Fatal]),
                "warn": count(&[Severity::Warn]),
                "info": count(&[Severity::Info]),
                "debug": count(&[Severity::Debug, Severity::Trace]),
            },
            "metrics": { "point_count": points, "unique_names": names },
            "truncated": spans.truncated,
        }))
    })
    .await
}

pub async fn anomalies(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    windowed(queries, raw, TOP_LIMIT, |store, w, _| {
        let svc = w.service.as_deref();
        let current = rollups(store, w.current(), svc)?;
        let baseline = rollups(store, w.baseline(), svc)?;
        Ok(json!({
            "current_seconds": w.current_secs,
            "baseline_seconds": w.baseline_secs,
            "service_filter": w.service,
            "anomalies": analytics::anomalies(&current, &baseline),
            "truncated": current.truncated || baseline.truncated,
        }))
    })
    .await
}

fn window_figures(spans: &WindowRollups, secs: u64) -> Value {
    let s = spans.total().stats();
    json!({
        "span_count": s.span_count,
        "rate_per_sec": s.span_count as f64 / secs.max(1) as f64,
        "error_rate": s.error_rate,
        "avg_ms": s.avg_ms,
        "p50_ms": s.p50_ms,
        "p95_ms": s.p95_ms,
        "p99_ms": s.p99_ms,
    })
}

pub async fn diff(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    windowed(queries, raw, TOP_LIMIT, |store, w, _| {
        let svc = w.service.as_deref();
        let current = rollups(store, w.current(), svc)?;
        let baseline = rollups(store, w.baseline(), svc)?;
        let cur = window_figures(&current, w.current_secs);
        let base = window_figures(&baseline, w.baseline_secs);
        let mut delta = serde_json::Map::new();
        for (k, v) in cur.as_object().expect("an object") {
            let b = base[k].as_f64().unwrap_or(0.0);
            delta.insert(k.clone(), json!(v.as_f64().unwrap_or(0.0) - b));
        }
        Ok(json!({
            "current_seconds": w.current_secs,
            "baseline_seconds": w.baseline_secs,
            "service_filter": w.service,
            "current": cur,
            "baseline": base,
            "delta": delta,
            "truncated": current.truncated || baseline.truncated,
        }))
    })
    .await
}

pub async fn topology(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    windowed(queries, raw, DEFAULT_EDGE_LIMIT, |store, w, limit| {
        let (spans, truncated) = digests(store, w.current(), None)?;
        let services: Vec<Value> = analytics::by_service(&spans)
            .into_iter()
            .map(|(name, list)| {
                let s = SpanStats::of(list);
                json!({ "name": name, "span_count": s.span_count, "error_count": s.error_count })
            })
            .collect();
        Ok(json!({
            "window_seconds": w.current_secs,
            "services": services,
            "edges": analytics::topology(&spans, limit),
            "truncated": truncated,
        }))
    })
    .await
}

pub async fn correlate(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let consistency = p.consistency()?;
    let raw_trace = p
        .one("trace")?
        .ok_or_else(|| ApiError::bad_request("trace is required (32 hex characters)"))?;
    let trace: TraceId = parse_hex(raw_trace).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid trace {raw_trace:?}: expected 32 hex characters"
        ))
    })?;
    let read = queries
        .read(consistency, Text::NotUsed, move |store| {
            let spans = store.trace(&trace)?;
            if spans.is_empty() {
                return Ok(None);
            }
            let start = spans.iter().map(|s| s.start_unix_nanos).min().unwrap();
            let end = spans.iter().map(|s| s.end_unix_nanos).max().unwrap();
            let mut services: Vec<String> = spans.iter().map(|s| s.service.clone()).collect();
            services.sort();
            services.dedup();
            let logs = store.search_logs(&LogQuery {
                service: None,
                severity: None,
                body_contains: None,
                trace_id: Some(trace),
                since_unix_nanos: None,
                until_unix_nanos: None,
                attributes: vec![],
                limit: CORRELATE_MAX_LOGS,
                max_scanned: CORRELATE_MAX_LOGS * 10,
            })?;
            let mut metrics = Vec::new();
            for svc in &services {
                let found = store.search_metrics(&MetricQuery {
                    service: Some(svc.clone()),
                    name: None,
                    metric_type: None,
                    since_unix_nanos: Some(start.saturating_sub(CORRELATE_MARGIN_NANOS)),
                    until_unix_nanos: Some(end.saturating_add(CORRELATE_MARGIN_NANOS)),
                    limit: CORRELATE_MAX_METRICS,
                    max_scanned: CORRELATE_MAX_METRICS * 20,
                })?;
                metrics.extend(found.records);
            }
            metrics.sort_by_key(|m| std::cmp::Reverse(m.timestamp_unix_nanos));
            metrics.truncate(CORRELATE_MAX_METRICS);
            let errors = spans
                .iter()
                .filter(|s| s.status == crate::model::SpanStatus::Error)
                .count();
            Ok(Some(json!({
                "trace_id": hex_lower(&trace),
                "span_count": spans.len(),
                "services": services,
                "start_time": rfc3339_nanos(start),
                "end_time": rfc3339_nanos(end),
                "duration_ms": (end - start) as f64 / 1e6,
                "error_count": errors,
                "logs": logs.records.iter().map(|l| l.to_json()).collect::<Vec<_>>(),
                "metrics": metrics.iter().map(|m| m.to_json()).collect::<Vec<_>>(),
            })))
        })
        .await?;
    match read.value {
        Some(b) => Ok(answer(read.barrier, b)),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "trace not found")),
    }
}
