//! `/api/v1/metrics?name=...&step=...`: one metric's series in steps, read
//! from the metric rollups (`crate::metric_rollup`) instead of raw points.
//!
//! A step of a whole number of minutes reads the minute rollups; of a whole
//! number of hours, the hour rollups. Rollups outlive raw points (they are
//! kept for `--retention-rollups`), so this answers windows whose raw
//! points retention already deleted. Without `step`, `/api/v1/metrics`
//! answers raw points as before.

use std::sync::Arc;

use axum::response::Response;
use serde_json::json;

use super::{answer_read, ApiError};
use crate::cluster::Consistency;
use crate::metric_rollup::{into_steps, MetricRollup, Resolution};
use crate::model::MetricType;
use crate::query::{QueryService, Text};

/// Rollups one step query reads at most; beyond, the answer is `truncated`.
const MAX_ROLLUPS_READ: usize = 200_000;
/// The window a step query covers when it gives no start.
pub(super) const DEFAULT_STEP_WINDOW_SECS: u64 = 86_400;

pub(super) struct StepQuery {
    pub name: String,
    pub service: Option<String>,
    pub metric_type: Option<MetricType>,
    pub since_unix_nanos: u64,
    pub until_unix_nanos: u64,
    pub step_nanos: u64,
}

/// The resolution a `step` (seconds) reads, or why it cannot be answered.
pub(super) fn resolution_for(step_secs: u64) -> Result<Resolution, ApiError> {
    Resolution::for_step(step_secs.saturating_mul(1_000_000_000)).ok_or_else(|| {
        ApiError::bad_request(format!(
            "step must be a whole number of minutes (1m, 5m, 1h, ...), not {step_secs}s; \
             leave it out for raw points"
        ))
    })
}

pub(super) async fn answer(
    queries: Arc<QueryService>,
    consistency: Consistency,
    q: StepQuery,
) -> Result<Response, ApiError> {
    let res = resolution_for(q.step_nanos / 1_000_000_000)?;
    let read = queries
        .read(consistency, Text::NotUsed, move |v| {
            let buckets = (
                res.bucket_of(q.since_unix_nanos),
                res.bucket_of(q.until_unix_nanos),
            );
            let (found, truncated) = v.metric_rollups(&q.name, res, buckets, MAX_ROLLUPS_READ)?;
            let raw_floor = v.metrics_retention_floor()?;
            let series: Vec<serde_json::Value> = found
                .into_values()
                .filter(|b| b.first().is_some_and(|(_, r)| matches(&q, r)))
                .map(|b| series_json(into_steps(b, res, q.step_nanos)))
                .collect();
            Ok(json!({
                "name": q.name,
                "resolution": res.name(),
                "step_seconds": q.step_nanos / 1_000_000_000,
                "series": series,
                "truncated": truncated,
                "raw_points_from": crate::model::rfc3339_nanos(raw_floor),
            }))
        })
        .await?;
    Ok(answer_read(read, |v| v))
}

/// Whether a series (told by one of its rollups) passes the query's filters.
fn matches(q: &StepQuery, r: &MetricRollup) -> bool {
    q.service.as_deref().is_none_or(|s| r.last.service == s)
        && q.metric_type.is_none_or(|t| r.last.metric_type == t)
}

fn series_json(steps: Vec<(u64, MetricRollup)>) -> serde_json::Value {
    let p = &steps.first().expect("a series has a bucket").1.last;
    let mut v = json!({
        "service": p.service,
        "metric_type": p.metric_type.as_str(),
        "unit": p.unit,
        "attributes": crate::model::json::text_attr_map(&p.attributes),
    });
    let o = v.as_object_mut().expect("object");
    if let Some(t) = p.temporality {
        o.insert("temporality".into(), t.as_str().into());
    }
    if let Some(m) = p.is_monotonic {
        o.insert("is_monotonic".into(), m.into());
    }
    let steps: Vec<_> = steps.iter().map(|(s, r)| r.to_json(*s)).collect();
    o.insert("steps".into(), steps.into());
    v
}
