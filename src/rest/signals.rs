//! Log and metric queries.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde_json::json;

use super::traces::parse_attribute_filter;
use super::{answer, blocking, ApiError, Params};
use crate::fulltext::{DocKind, MAX_HITS};
use crate::model::now_unix_nanos;
use crate::model::{parse_hex, MetricType, Severity, TraceId};
use crate::node::Node;
use crate::state::hot::{LogQuery, MetricQuery, StoreError};

const DEFAULT_LOG_LIMIT: usize = 100;
const DEFAULT_METRIC_LIMIT: usize = 500;
/// Candidates one search may examine before it answers with what it found.
const MAX_SCANNED: usize = 2_000_000;

fn since(p: &Params) -> Result<Option<u64>, ApiError> {
    Ok(p.window_secs("last")?
        .map(|secs| now_unix_nanos().saturating_sub(secs * 1_000_000_000)))
}

pub async fn logs(
    State(node): State<Arc<Node>>,
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
    let query = LogQuery {
        service: p.one("service")?.map(str::to_string),
        severity,
        body_contains: p.one("body_contains")?.map(str::to_string),
        trace_id,
        since_unix_nanos: since(&p)?,
        until_unix_nanos: None,
        attributes: p
            .all("attribute")
            .map(parse_attribute_filter)
            .collect::<Result<_, _>>()?,
        limit: p.limit(DEFAULT_LOG_LIMIT)?,
        max_scanned: MAX_SCANNED,
    };
    let barrier = node.read_barrier(consistency).await?;
    if let Some(text) = text {
        super::traces::wait_text_index(&node, &barrier, consistency).await?;
        let ft = node.fulltext.clone();
        let store = node.sm.store();
        let logs = blocking(move || {
            let keys = ft
                .search(&text, DocKind::Log, MAX_HITS)
                .map_err(StoreError::Index)?;
            // Hits come newest first: stop loading at `limit` matches.
            let mut logs = Vec::new();
            for k in keys {
                if logs.len() == query.limit {
                    break;
                }
                if let Some(l) = store.get_log_by_key(&k)? {
                    let in_window = query
                        .since_unix_nanos
                        .is_none_or(|s| l.timestamp_unix_nanos >= s);
                    if in_window && query.matches(&l) {
                        logs.push(l);
                    }
                }
            }
            Ok(logs)
        })
        .await?;
        let logs: Vec<serde_json::Value> = logs.iter().map(|l| l.to_json()).collect();
        return Ok(answer(
            barrier,
            json!({ "logs": logs, "count": logs.len(), "truncated": false }),
        ));
    }
    let store = node.sm.store();
    let found = blocking(move || store.search_logs(&query)).await?;
    let logs: Vec<serde_json::Value> = found.records.iter().map(|l| l.to_json()).collect();
    Ok(answer(
        barrier,
        json!({ "logs": logs, "count": logs.len(), "truncated": found.truncated }),
    ))
}

pub async fn metrics(
    State(node): State<Arc<Node>>,
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
    let query = MetricQuery {
        service: p.one("service")?.map(str::to_string),
        name: p.one("name")?.map(str::to_string),
        metric_type,
        since_unix_nanos: since(&p)?,
        until_unix_nanos: None,
        limit: p.limit(DEFAULT_METRIC_LIMIT)?,
        max_scanned: MAX_SCANNED,
    };
    let barrier = node.read_barrier(consistency).await?;
    let store = node.sm.store();
    let found = blocking(move || store.search_metrics(&query)).await?;
    let metrics: Vec<serde_json::Value> = found.records.iter().map(|m| m.to_json()).collect();
    Ok(answer(
        barrier,
        json!({ "metrics": metrics, "count": metrics.len(), "truncated": found.truncated }),
    ))
}
