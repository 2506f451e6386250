//! Fault harness routes, compiled only into `fault-injection` builds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::ApiError;
use crate::cluster::Cluster;
use crate::faults::poison::PoisonKind;

#[derive(Deserialize)]
pub struct PoisonRequest {
    /// A [`PoisonKind`] name.
    kind: String,
}

/// Makes every injected entry distinct within this process; the process id
/// (in the high bits) across restarts.
static NONCE: AtomicU64 = AtomicU64::new(0);

/// `POST /api/v1/fault/poison` (admin, leader only): proposes one entry no
/// replica can apply, past the leader's check. Answers its log index.
pub async fn poison(
    State(cluster): State<Arc<Cluster>>,
    Json(req): Json<PoisonRequest>,
) -> Result<Json<Value>, ApiError> {
    let kind = PoisonKind::parse(&req.kind)
        .map_err(|e| ApiError::new(axum::http::StatusCode::BAD_REQUEST, e))?;
    let nonce = (u64::from(std::process::id()) << 32) | NONCE.fetch_add(1, Ordering::Relaxed);
    let log_index = cluster.propose_unchecked(kind.record(nonce)).await?;
    tracing::warn!(log_index, %kind, "fault injection: proposed a poison entry");
    Ok(Json(json!({"kind": kind.name(), "log_index": log_index})))
}
