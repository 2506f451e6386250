//! Trace queries.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::{answer_read, ApiError, Params};
use crate::model::{SpanJson, SpanStatus, TraceId};
use crate::query::{AttributeFilter, QueryService, SpanQuery, Text};

const DEFAULT_LIMIT: usize = 100;
/// Candidates one search may examine before it answers with what it found.
const MAX_SCANNED: usize = 2_000_000;
const MAX_REGEX_BYTES: usize = 1024;
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// `k=v` exact, `k~=v` contains, `k=~re` regex.
pub fn parse_attribute_filter(s: &str) -> Result<AttributeFilter, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "attribute filter {s:?} must be k=v, k~=v or k=~regex"
        ))
    };
    let at = s.find(['=', '~']).ok_or_else(bad)?;
    let key = &s[..at];
    if key.is_empty() {
        return Err(bad());
    }
    let rest = &s[at..];
    if let Some(v) = rest.strip_prefix("~=") {
        Ok(AttributeFilter::Contains(key.into(), v.into()))
    } else if let Some(re) = rest.strip_prefix("=~") {
        if re.len() > MAX_REGEX_BYTES {
            return Err(ApiError::bad_request(format!(
                "regex longer than {MAX_REGEX_BYTES} bytes"
            )));
        }
        let re = regex::RegexBuilder::new(re)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| {
                ApiError::bad_request(format!("invalid regex in attribute filter: {e}"))
            })?;
        Ok(AttributeFilter::Regex(key.into(), re))
    } else if let Some(v) = rest.strip_prefix('=') {
        Ok(AttributeFilter::Exact(key.into(), v.into()))
    } else {
        Err(bad())
    }
}

pub async fn search(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let consistency = p.consistency()?;
    let text = p.text()?;
    let status = match p.one("status")? {
        None => None,
        Some(s) => Some(SpanStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("status must be ok, error or unset, not {s:?}"))
        })?),
    };
    let ms_to_nanos = |ms: f64| (ms * 1e6).min(u64::MAX as f64) as u64;
    let (since, until) = super::params::time_window(&p, None)?;
    let query = SpanQuery {
        service: p.one("service")?.map(str::to_string),
        operation_contains: p.one("operation")?.map(str::to_string),
        status,
        min_duration_nanos: p.millis("min_duration_ms")?.map(ms_to_nanos),
        max_duration_nanos: p.millis("max_duration_ms")?.map(ms_to_nanos),
        since_unix_nanos: since,
        until_unix_nanos: until,
        attributes: p
            .all("attribute")
            .map(parse_attribute_filter)
            .collect::<Result<_, _>>()?,
        limit: p.limit(DEFAULT_LIMIT)?,
        max_scanned: MAX_SCANNED,
    };
    let uses_text = if text.is_some() {
        Text::Used
    } else {
        Text::NotUsed
    };
    let read = queries
        .read(consistency, uses_text, move |v| match text {
            Some(text) => v.search_spans_text(&text, &query),
            None => v.search_spans(&query),
        })
        .await?;
    Ok(answer_read(read, |spans| {
        let spans: Vec<SpanJson> = spans.iter().map(SpanJson::from).collect();
        json!({ "spans": spans })
    }))
}

pub async fn by_id(
    State(queries): State<Arc<QueryService>>,
    Path(trace_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let consistency = p.consistency()?;
    let id: TraceId = super::params::trace_id_in_path(&trace_id)?;
    let read = queries
        .read(consistency, Text::NotUsed, move |v| v.trace(&id))
        .await?;
    if read.value.is_empty() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "trace not found"));
    }
    Ok(answer_read(read, |spans| {
        let json_spans: Vec<SpanJson> = spans.iter().map(SpanJson::from).collect();
        json!({ "trace_id": crate::model::hex_lower(&id), "span_count": json_spans.len(), "spans": json_spans })
    }))
}

pub async fn services(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let read = queries
        .read(p.consistency()?, Text::NotUsed, |v| v.services())
        .await?;
    Ok(answer_read(read, services_json))
}

fn services_json(services: Vec<(String, crate::query::ServiceStats)>) -> serde_json::Value {
    let list: Vec<serde_json::Value> = services
        .into_iter()
        .map(|(name, s)| {
            let spans = s.span_count.max(1) as f64;
            json!({
                "name": name,
                "span_count": s.span_count,
                "trace_count": s.trace_count,
                "avg_duration_ms": s.duration_sum_nanos as f64 / 1e6 / spans,
                "error_rate": s.error_count as f64 / spans,
            })
        })
        .collect();
    json!({ "services": list })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_filters() {
        assert!(
            matches!(parse_attribute_filter("http.method=GET").unwrap(), AttributeFilter::Exact(k, v) if k == "http.method" && v == "GET")
        );
        assert!(
            matches!(parse_attribute_filter("url~=/api").unwrap(), AttributeFilter::Contains(k, v) if k == "url" && v == "/api")
        );
        assert!(
            matches!(parse_attribute_filter("code=~^5..$").unwrap(), AttributeFilter::Regex(k, _) if k == "code")
        );
        assert!(
            matches!(parse_attribute_filter("k=").unwrap(), AttributeFilter::Exact(_, v) if v.is_empty())
        );
        for bad in ["", "novalue", "=v", "k~v", "k=~(unclosed"] {
            assert!(parse_attribute_filter(bad).is_err(), "{bad:?}");
        }
    }
}
