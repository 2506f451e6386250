//! The REST API (API.md): queries, cluster status and administration.

mod analytics;
mod blobs;
mod cluster;
mod comments;
mod members;
mod otlp_export;
mod params;
mod signals;
mod traces;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::node::{ClusterError, Node, ReadBarrier};

pub use params::{parse_duration_secs, Params};

/// Request bodies on the REST API are small JSON documents.
const MAX_REST_BODY_BYTES: usize = 1024 * 1024;

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/api/v1/traces", get(traces::search))
        .route("/api/v1/traces/{trace_id}", get(traces::by_id))
        .route("/api/v1/traces/{trace_id}/otlp", get(otlp_export::trace))
        .route(
            "/api/v1/traces/{trace_id}/comments",
            get(comments::list).post(comments::create),
        )
        .route("/api/v1/services", get(traces::services))
        .route("/api/v1/summary", get(analytics::summary))
        .route("/api/v1/anomalies", get(analytics::anomalies))
        .route("/api/v1/correlate", get(analytics::correlate))
        .route("/api/v1/topology", get(analytics::topology))
        .route("/api/v1/diff", get(analytics::diff))
        .route("/api/v1/blobs/{sha256}", get(blobs::get))
        .route("/api/v1/logs", get(signals::logs))
        .route("/api/v1/metrics", get(signals::metrics))
        .route("/api/v1/cluster", get(cluster::status))
        .route("/api/v1/cluster/init", post(cluster::init))
        .route(
            "/api/v1/cluster/members",
            get(members::list).post(members::add),
        )
        .route(
            "/api/v1/cluster/members/{node_id}/promote",
            post(members::promote),
        )
        .route(
            "/api/v1/cluster/members/{node_id}",
            axum::routing::delete(members::remove),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(cluster::ready))
        .route("/metrics", get(cluster::prometheus))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(MAX_REST_BODY_BYTES))
        .with_state(node)
}

/// An error answer: `{"error": "..."}` with a meaningful status; 503s carry
/// `Retry-After` because they are worth retrying.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn internal(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m),
            ClusterError::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
            ClusterError::Internal(m) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        resp
    }
}

/// A query answer, marked with the node that served it and the applied
/// index it reflects.
pub fn answer(barrier: ReadBarrier, body: serde_json::Value) -> Response {
    let mut resp = Json(body).into_response();
    let h = resp.headers_mut();
    h.insert("x-tael-served-by", HeaderValue::from(barrier.node_id));
    h.insert(
        "x-tael-applied-index",
        HeaderValue::from(barrier.applied_index),
    );
    resp
}

/// Runs storage work off the async workers.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::state::hot::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}
