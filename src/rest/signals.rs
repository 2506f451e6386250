//! Log and metric queries.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde_json::json;

use super::traces::parse_attribute_filter;
use super::{answer_read, ApiError, Params};
use crate::model::{parse_hex, LogRecord, MetricType, Severity, TraceId};
use crate::query::{LogQuery, MetricQuery, QueryService, Text};

const DEFAULT_LOG_LIMIT: usize = 100;
const DEFAULT_METRIC_LIMIT: usize = 500;
/// Candidates one search may examine before it answers with what it found.
const MAX_SCANNED: usize = 2_000_000;

pub async fn logs(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let consistency = p.consistency()?;
    let severity = match p.one("severity")? {
        None => None,
        Some(s) => Some(Severity::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "severity must be trace, debug, info, warn, error, fatal or unspecified, not {s:?}"
            ))
        })?),
    };
    let trace_id = match p.one("trace_id")? {
        None => None,
        Some(s) => Some(parse_hex::<16>(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid trace_id {s:?}: expected 32 hex characters"
            ))
        })? as TraceId),
    };
    let text = p.text()?;
    let (since, until) = super::params::time_window(&p, None)?;
    let query = LogQuery {
        service: p.one("service")?.map(str::to_string),
        severity,
        body_contains: p.one("body_contains")?.map(str::to_string),
        trace_id,
        since_unix_nanos: since,
        until_unix_nanos: until,
        attributes: p
            .all("attribute")
            .map(parse_attribute_filter)
            .collect::<Result<_, _>>()?,
        limit: p.limit(DEFAULT_LOG_LIMIT)?,
        max_scanned: MAX_SCANNED,
    };
    let Some(text) = text else {
        let read = queries
            .read(consistency, Text::NotUsed, move |v| v.search_logs(&query))
            .await?;
        return Ok(answer_read(read, |found| {
            logs_json(&found.records, found.truncated)
        }));
    };
    let read = queries
        .read(consistency, Text::Used, move |v| {
            v.search_logs_text(&text, &query)
        })
        .await?;
    Ok(answer_read(read, |logs| logs_json(&logs, false)))
}

fn logs_json(logs: &[LogRecord], truncated: bool) -> serde_json::Value {
    let logs: Vec<serde_json::Value> = logs.iter().map(|l| l.to_json()).collect();
    json!({ "logs": logs, "count": logs.len(), "truncated": truncated })
}

pub async fn metrics(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let consistency = p.consistency()?;
    let metric_type = match p.one("metric_type")? {
        None => None,
        Some(s) => Some(MetricType::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "metric_type must be gauge, sum, histogram, summary or unknown, not {s:?}"
            ))
        })?),
    };
    if let Some(step_secs) = p.window_secs("step")? {
        let Some(name) = p.one("name")? else {
            return Err(ApiError::bad_request(
                "a query with step reads one metric's rollups: give name".to_string(),
            ));
        };
        let (since, until) =
            super::params::time_window(&p, Some(super::metric_steps::DEFAULT_STEP_WINDOW_SECS))?;
        let until = until.unwrap_or_else(crate::model::now_unix_nanos);
        let q = super::metric_steps::StepQuery {
            name: name.to_string(),
            service: p.one("service")?.map(str::to_string),
            metric_type,
            since_unix_nanos: since.unwrap_or(0).min(until),
            until_unix_nanos: until,
            step_nanos: step_secs.saturating_mul(1_000_000_000),
        };
        return super::metric_steps::answer(queries, consistency, q).await;
    }
    let (since, until) = super::params::time_window(&p, None)?;
    let query = MetricQuery {
        service: p.one("service")?.map(str::to_string),
        name: p.one("name")?.map(str::to_string),
        metric_type,
        since_unix_nanos: since,
        until_unix_nanos: until,
        limit: p.limit(DEFAULT_METRIC_LIMIT)?,
        max_scanned: MAX_SCANNED,
    };
    let read = queries
        .read(consistency, Text::NotUsed, move |v| {
            v.search_metrics(&query)
        })
        .await?;
    Ok(answer_read(read, |found| {
        let metrics: Vec<serde_json::Value> = found.records.iter().map(|m| m.to_json()).collect();
        json!({ "metrics": metrics, "count": metrics.len(), "truncated": found.truncated })
    }))
}
