//! `GET /api/v1/traces/{trace_id}/otlp`: a stored trace given back as OTLP
//! `TracesData`, exactly as it was sent (see `otlp::encode`): protobuf by
//! default, OTLP/JSON when the client accepts `application/json`.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{mark_served, ApiError, Params};
use crate::model::TraceId;
use crate::query::{QueryService, Text};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

pub async fn trace(
    State(queries): State<Arc<QueryService>>,
    Path(trace_id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let consistency = p.consistency()?;
    let id: TraceId = super::params::trace_id_in_path(&trace_id)?;
    let read = queries
        .read(consistency, Text::NotUsed, move |v| v.trace_as_otlp(&id))
        .await?;
    let barrier = read.barrier;
    let data = read
        .value
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "trace not found"))?;
    let body = if wants_json(&headers) {
        let json = serde_json::to_vec(&data).map_err(ApiError::internal)?;
        (JSON, json)
    } else {
        (PROTOBUF, prost::Message::encode_to_vec(&data))
    };
    Ok(respond(barrier, body))
}

/// JSON only when asked for by name: OTLP's default encoding is protobuf.
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.split(';').next().unwrap_or("").trim() == JSON)
}

fn respond(
    barrier: crate::cluster::ReadBarrier,
    (content_type, body): (&'static str, Vec<u8>),
) -> Response {
    let mut resp = (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response();
    mark_served(&mut resp, barrier);
    resp
}
