//! Grafana's Prometheus data source (`http://NODE:7701/prometheus`) and
//! Prometheus remote write (`POST /api/v1/write`, also under the prefix).
//!
//! Answers use Prometheus's envelope: `{"status":"success","data":...}`, or
//! `{"status":"error","errorType":...,"error":...}` with Prometheus's
//! statuses (400 for a bad query or parameter). Parameters come from the
//! query string or a form body (Grafana posts its queries). Every read goes
//! through the query service (the `consistency` parameter works as on the
//! other routes); PromQL is evaluated by `tael_promql` over
//! [`crate::prom::storage::ViewStorage`]. Label and series discovery is in
//! [`super::prometheus_labels`].

use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tael_promql::{EngineError, EngineLimits};

use super::{mark_served, prometheus_labels, ApiError, Params, RestState};
use crate::cluster::{ClusterError, Consistency};
use crate::ingest::{Signal, Transport};
use crate::otlp::limits::{declared_len, Refusal, RETRY_AFTER_SECS};
use crate::prom::remote_write::{self, WriteError, MAX_WRITE_BYTES};
use crate::prom::select::{SelectError, SelectLimits};
use crate::prom::storage::ViewStorage;
use crate::query::{QueryError, Read, Text};

/// The Prometheus release whose HTTP API this one follows (Grafana turns
/// features on by it).
pub const PROMETHEUS_API_VERSION: &str = "2.42.0";

pub fn router() -> Router<RestState> {
    Router::new()
        .route("/api/v1/write", post(write))
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route(
            "/api/v1/labels",
            get(prometheus_labels::labels).post(prometheus_labels::labels),
        )
        .route(
            "/api/v1/label/{name}/values",
            get(prometheus_labels::label_values),
        )
        .route(
            "/api/v1/series",
            get(prometheus_labels::series).post(prometheus_labels::series),
        )
        .route("/api/v1/metadata", get(prometheus_labels::metadata))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        // Grafana asks these too; there are no exemplars, rules or alerts
        // here, and an empty answer keeps its panels free of errors.
        .route(
            "/api/v1/query_exemplars",
            get(no_exemplars).post(no_exemplars),
        )
        .route("/api/v1/rules", get(|| empty(json!({ "groups": [] }))))
        .route("/api/v1/alerts", get(|| empty(json!({ "alerts": [] }))))
}

async fn no_exemplars() -> Json<serde_json::Value> {
    empty(json!([])).await
}

async fn empty(data: serde_json::Value) -> Json<serde_json::Value> {
    Json(json!({ "status": "success", "data": data }))
}

/// An error in Prometheus's envelope.
#[derive(Debug)]
pub struct PromError {
    status: StatusCode,
    error_type: &'static str,
    message: String,
}

impl PromError {
    pub fn bad_data(message: impl Into<String>) -> PromError {
        PromError {
            status: StatusCode::BAD_REQUEST,
            error_type: "bad_data",
            message: message.into(),
        }
    }
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        let body = json!({
            "status": "error",
            "errorType": self.error_type,
            "error": self.message,
        });
        let mut resp = (self.status, Json(body)).into_response();
        if matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        resp
    }
}

impl From<ApiError> for PromError {
    fn from(e: ApiError) -> Self {
        let error_type = match e.status() {
            StatusCode::BAD_REQUEST => "bad_data",
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => "unavailable",
            _ => "internal",
        };
        PromError {
            status: e.status(),
            error_type,
            message: e.message().to_string(),
        }
    }
}

impl From<QueryError> for PromError {
    fn from(e: QueryError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<EngineError> for PromError {
    fn from(e: EngineError) -> Self {
        PromError {
            status: StatusCode::from_u16(e.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            error_type: e.error_type(),
            message: e.to_string(),
        }
    }
}

impl From<SelectError> for PromError {
    fn from(e: SelectError) -> Self {
        match e {
            SelectError::TooLarge(m) => PromError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                error_type: "execution",
                message: m,
            },
            SelectError::Storage(e) => PromError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                error_type: "internal",
                message: e.to_string(),
            },
        }
    }
}

/// A success in Prometheus's envelope, marked with what it reflects.
pub fn success<T>(read: Read<T>, data: impl FnOnce(T) -> serde_json::Value) -> Response {
    let barrier = read.barrier;
    let mut resp = Json(json!({ "status": "success", "data": data(read.value) })).into_response();
    mark_served(&mut resp, barrier);
    resp
}

/// The parameters of a request: its query string and, for a form post,
/// its body (Prometheus takes both).
pub fn params(raw: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Result<Params, PromError> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let body = if form && !body.is_empty() {
        std::str::from_utf8(body).map_err(|_| PromError::bad_data("form body is not UTF-8"))?
    } else {
        ""
    };
    let joined = match (raw.unwrap_or(""), body) {
        ("", b) => b.to_string(),
        (q, "") => q.to_string(),
        (q, b) => format!("{q}&{b}"),
    };
    Ok(Params::parse(Some(&joined))?)
}

pub fn consistency(p: &Params) -> Result<Consistency, PromError> {
    Ok(p.consistency()?)
}

/// A time parameter (RFC 3339 or unix seconds), or `default` when absent.
pub fn time_param(p: &Params, name: &str, default: Option<i64>) -> Result<i64, PromError> {
    match p.one(name)? {
        None | Some("") => default
            .ok_or_else(|| PromError::bad_data(format!("invalid parameter \"{name}\": missing"))),
        Some(s) => tael_promql::parse_time_ms(s)
            .map_err(|e| PromError::bad_data(format!("invalid parameter \"{name}\": {e}"))),
    }
}

pub fn now_ms() -> i64 {
    i64::try_from(crate::model::now_unix_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn query_text(p: &Params) -> Result<String, PromError> {
    match p.one("query")? {
        Some(q) if !q.trim().is_empty() => Ok(q.to_string()),
        _ => Err(PromError::bad_data("invalid parameter \"query\": missing")),
    }
}

/// How an engine answer becomes a response.
fn evaluated(read: Read<Result<tael_promql::Value, EngineError>>) -> Result<Response, PromError> {
    let Read { barrier, value } = read;
    let value = value?;
    Ok(success(Read { barrier, value }, |v| {
        tael_promql::result_json(&v)
    }))
}

async fn query(
    State(s): State<RestState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PromError> {
    let p = params(raw.as_deref(), &headers, &body)?;
    let q = query_text(&p)?;
    let t = time_param(&p, "time", Some(now_ms()))?;
    let read = s
        .query
        .read(consistency(&p)?, Text::NotUsed, move |view| {
            let storage = ViewStorage::new(view, SelectLimits::default());
            Ok(tael_promql::instant_query(
                &storage,
                &q,
                t,
                &EngineLimits::default(),
            ))
        })
        .await?;
    evaluated(read)
}

async fn query_range(
    State(s): State<RestState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PromError> {
    let p = params(raw.as_deref(), &headers, &body)?;
    let q = query_text(&p)?;
    let start = time_param(&p, "start", None)?;
    let end = time_param(&p, "end", None)?;
    if end < start {
        return Err(PromError::bad_data(
            "end timestamp must not be before start time",
        ));
    }
    let step = match p.one("step")? {
        None | Some("") => return Err(PromError::bad_data("invalid parameter \"step\": missing")),
        Some(s) => tael_promql::parse_duration_ms(s)
            .map_err(|e| PromError::bad_data(format!("invalid parameter \"step\": {e}")))?,
    };
    if step <= 0 {
        return Err(PromError::bad_data(
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    let limits = EngineLimits::default();
    if (end - start) / step > limits.max_points_per_series as i64 {
        return Err(PromError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let read = s
        .query
        .read(consistency(&p)?, Text::NotUsed, move |view| {
            let storage = ViewStorage::new(view, SelectLimits::default());
            Ok(tael_promql::range_query(
                &storage, &q, start, end, step, &limits,
            ))
        })
        .await?;
    evaluated(read)
}

async fn buildinfo() -> Json<serde_json::Value> {
    Json(json!({
        "status": "success",
        "data": {
            "version": PROMETHEUS_API_VERSION,
            "revision": concat!("tael-raft ", env!("CARGO_PKG_VERSION")),
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
        }
    }))
}

/// A remote-write refusal: plain text, as Prometheus's own receiver
/// answers; 429 and 503 carry `Retry-After`.
fn write_error(status: StatusCode, message: String) -> Response {
    let mut resp = (status, message).into_response();
    if matches!(
        status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
    ) {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    resp
}

/// Bytes of an oversized body read and dropped before answering 413, so a
/// client still sending gets the answer instead of a reset.
const MAX_DRAIN_BYTES: usize = 4 * MAX_WRITE_BYTES;

/// `POST /api/v1/write`: Prometheus remote write 1.0. The body is received
/// within the OTLP edges' budget and read timeout, then decoded, checked
/// and committed as one log entry holding an export slot, like an OTLP
/// export. 204 once committed (or spooled, with `--ingest-ack spooled`).
pub async fn write(State(s): State<RestState>, headers: HeaderMap, body: Body) -> Response {
    let counters = s.ingest.metrics.get(Signal::Metrics, Transport::Http);
    counters.requests.fetch_add(1, Ordering::Relaxed);
    match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("snappy") => {}
        Some(other) => {
            return write_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding {other:?}; remote write bodies are snappy"),
            )
        }
    }
    let raw = match s
        .ingest_limits
        .receive(
            body,
            declared_len(&headers),
            MAX_WRITE_BYTES,
            MAX_DRAIN_BYTES,
        )
        .await
    {
        Ok(raw) => raw,
        Err(r) => return refused(&s, r),
    };
    let _slot = match s.ingest_limits.admit_export().await {
        Ok(permit) => permit,
        Err(r) => return refused(&s, r),
    };
    let bytes = raw.bytes.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        remote_write::decode(&bytes).and_then(remote_write::to_points)
    })
    .await;
    let points = match decoded {
        Ok(Ok(points)) => points,
        Ok(Err(e)) => {
            counters.rejected.fetch_add(1, Ordering::Relaxed);
            let status = match e {
                WriteError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                WriteError::Invalid(_) => StatusCode::BAD_REQUEST,
            };
            return write_error(status, e.to_string());
        }
        Err(e) => return write_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    // A request of metadata only (Prometheus sends those too) stores nothing.
    if points.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let n = points.len() as u64;
    let record = crate::payload::metrics_record(&points);
    match s
        .ingest
        .commit(Signal::Metrics, Transport::Http, record, n)
        .await
    {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            let status = match &e {
                ClusterError::Invalid(_) => StatusCode::BAD_REQUEST,
                ClusterError::Unavailable(_) | ClusterError::NotLeader { .. } => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            write_error(status, e.to_string())
        }
    }
}

fn refused(s: &RestState, r: Refusal) -> Response {
    if let Some(reason) = r.shed_reason() {
        s.ingest.metrics.record_shed(Transport::Http, reason);
    }
    match r {
        Refusal::BodyBudgetFull(m) | Refusal::ExportsBusy(m) => {
            write_error(StatusCode::TOO_MANY_REQUESTS, m)
        }
        Refusal::TooLarge(m) => write_error(StatusCode::PAYLOAD_TOO_LARGE, m),
        Refusal::Timeout(m) => write_error(StatusCode::REQUEST_TIMEOUT, m),
        Refusal::Unreadable(m) => write_error(StatusCode::BAD_REQUEST, m),
    }
}
