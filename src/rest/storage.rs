//! `GET /api/v1/storage`: what each tier holds per signal, the retention
//! settings, and the last retention cut.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde_json::json;

use super::{answer_read, ApiError, Params};
use crate::query::{QueryService, Text};
use crate::retention::Lifecycle;

pub async fn report(
    State(queries): State<Arc<QueryService>>,
    State(lifecycle): State<Lifecycle>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let read = queries
        .read(p.consistency()?, Text::NotUsed, |view| view.storage_stats())
        .await?;
    Ok(answer_read(read, |(hot, cold)| {
        let p = lifecycle.retention;
        let r = &hot.retention;
        json!({
            "tiers": {
                "hot": {
                    "spans": hot.spans,
                    "logs": hot.logs,
                    "metric_points": hot.metric_points,
                    "blobs": hot.blobs,
                    "total_disk_bytes": hot.total_disk_bytes,
                },
                "cold": cold,
            },
            "retention": {
                "traces_secs": p.traces_secs,
                "logs_secs": p.logs_secs,
                "metrics_secs": p.metrics_secs,
                "llm_payloads_secs": p.llm_payloads_secs,
                "rollups_secs": p.rollups_secs,
                "compaction_interval_secs": lifecycle.compaction_interval_secs,
                "hot_window_secs": lifecycle.hot_window_secs,
            },
            "last_cut": {
                "log_index": r.last_cut_index,
                "stamped_unix_nanos": r.last_cut_unix_nanos,
                "floors_unix_nanos": r.floors,
                "pending": r.pending,
                "deleted_total": r.deleted,
            },
        })
    }))
}
