//! The REST API (API.md): queries, cluster status and administration.

//!
//! Handlers receive the narrow services they use (axum sub-states of
//! [`RestState`]): the [`QueryService`] for reads, [`Ingest`] for writes, the
//! [`Cluster`] and [`KeyAdmin`] for administration, [`SelfMetrics`] for
//! `/metrics`. Every route but the health checks is behind [`Guard`]. They parse
//! requests into domain queries and shape domain results into JSON; they
//! know nothing of storage.

mod analytics;
mod blobs;
mod cluster;
mod comments;
mod error;
#[cfg(feature = "fault-injection")]
mod fault;
mod guard;
mod jaeger;
mod jaeger_model;
mod keys;
mod live;
mod loki;
mod loki_json;
mod loki_params;
mod members;
mod metric_steps;
mod otlp_export;
mod params;
mod prometheus;
mod prometheus_labels;
mod signals;
mod storage;
mod tempo;
mod tempo_search;
mod tempo_tags;
mod traces;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::admin::KeyAdmin;
use crate::cluster::{Cluster, ReadBarrier};
use crate::ingest::Ingest;
use crate::query::{QueryService, Read};
use crate::self_metrics::SelfMetrics;

pub use error::ApiError;
pub use guard::Guard;
pub use params::{parse_duration_secs, Params};

/// Everything the REST API may use.
#[derive(Clone)]
pub struct RestState {
    pub query: Arc<QueryService>,
    pub ingest: Arc<Ingest>,
    pub cluster: Arc<Cluster>,
    pub keys: Arc<KeyAdmin>,
    pub self_metrics: Arc<SelfMetrics>,
    /// Applied spans and logs, for the live-tail routes.
    pub tail: Arc<crate::live_tail::LiveTail>,
    /// How this node's REST listener is reached, and so every node's (a
    /// cluster serves REST either all over TLS or all in the clear):
    /// membership changes are relayed to the leader with it.
    pub rest_scheme: RestScheme,
    /// Retention settings, for `/api/v1/storage`.
    pub lifecycle: crate::retention::Lifecycle,
    /// The OTLP edges' bounds on bodies and commits in progress, shared
    /// with Prometheus remote write (one budget for all ingest).
    pub ingest_limits: Arc<crate::otlp::limits::OtlpLimits>,
}

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestScheme(pub &'static str);

impl FromRef<RestState> for RestScheme {
    fn from_ref(s: &RestState) -> Self {
        s.rest_scheme
    }
}

impl FromRef<RestState> for crate::retention::Lifecycle {
    fn from_ref(s: &RestState) -> Self {
        s.lifecycle
    }
}

impl FromRef<RestState> for Arc<KeyAdmin> {
    fn from_ref(s: &RestState) -> Self {
        s.keys.clone()
    }
}

impl FromRef<RestState> for Arc<QueryService> {
    fn from_ref(s: &RestState) -> Self {
        s.query.clone()
    }
}

impl FromRef<RestState> for Arc<Ingest> {
    fn from_ref(s: &RestState) -> Self {
        s.ingest.clone()
    }
}

impl FromRef<RestState> for Arc<Cluster> {
    fn from_ref(s: &RestState) -> Self {
        s.cluster.clone()
    }
}

impl FromRef<RestState> for Arc<crate::live_tail::LiveTail> {
    fn from_ref(s: &RestState) -> Self {
        s.tail.clone()
    }
}

impl FromRef<RestState> for Arc<SelfMetrics> {
    fn from_ref(s: &RestState) -> Self {
        s.self_metrics.clone()
    }
}

/// Request bodies on the REST API are small JSON documents.
const MAX_REST_BODY_BYTES: usize = 1024 * 1024;

/// The REST API; every route but the health checks behind `guard`.
pub fn router(state: RestState, guard: Guard) -> Router {
    api_routes()
        .merge(fault_routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(MAX_REST_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(guard, guard::check))
        .with_state(state)
}

/// The fault harness's routes: only in `fault-injection` builds.
fn fault_routes() -> Router<RestState> {
    let routes = Router::new();
    #[cfg(feature = "fault-injection")]
    let routes = routes.route("/api/v1/fault/poison", post(fault::poison));
    routes
}

fn api_routes() -> Router<RestState> {
    Router::new()
        .route("/api/v1/traces", get(traces::search))
        .route("/api/v1/traces/live", get(live::traces))
        .route("/api/v1/logs/live", get(live::logs))
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
        .route("/api/v1/storage", get(storage::report))
        .route("/api/v1/cluster", get(cluster::status))
        .route("/api/v1/cluster/init", post(cluster::init))
        .route(
            "/api/v1/cluster/check",
            get(cluster::last_check).post(cluster::check),
        )
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
        .route("/api/v1/keys", get(keys::list).post(keys::create))
        .route("/api/v1/keys/{key_id}", axum::routing::delete(keys::revoke))
        .nest("/tempo", tempo::router())
        .nest("/jaeger", jaeger::router())
        .nest("/loki", loki::router())
        .nest("/prometheus", prometheus::router())
        .route("/api/v1/write", post(prometheus::write))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(cluster::ready))
        .route("/metrics", get(cluster::prometheus))
}

/// A query answer, marked with the node that served it and the applied
/// index it reflects.
pub fn answer(barrier: ReadBarrier, body: serde_json::Value) -> Response {
    let mut resp = Json(body).into_response();
    mark_served(&mut resp, barrier);
    resp
}

/// [`answer`] for a query service result shaped by `json`.
pub fn answer_read<T>(read: Read<T>, json: impl FnOnce(T) -> serde_json::Value) -> Response {
    answer(read.barrier, json(read.value))
}

/// Marks a response with the node that served it and the applied index.
pub fn mark_served(resp: &mut Response, barrier: ReadBarrier) {
    let h = resp.headers_mut();
    h.insert("x-tael-served-by", HeaderValue::from(barrier.node_id));
    h.insert(
        "x-tael-applied-index",
        HeaderValue::from(barrier.applied_index),
    );
}
