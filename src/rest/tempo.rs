//! Grafana's Tempo data source (`http://NODE:7701/tempo`): trace by id,
//! TraceQL search ([`super::tempo_search`]), tag discovery
//! ([`super::tempo_tags`]) and the probes Grafana calls. Paths are Tempo's,
//! relative to the prefix; every read goes through the query service.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use opentelemetry_proto::tonic::trace::v1::TracesData;
use serde_json::json;

use super::params::seconds_param;
use super::{mark_served, tempo_search, tempo_tags, ApiError, Params, RestState};
use crate::model::TraceId;
use crate::query::{QueryService, Text};

/// What Tempo answers with for protobuf, and what Grafana asks for.
const PROTOBUF: &str = "application/protobuf";
const X_PROTOBUF: &str = "application/x-protobuf";

/// The Tempo API version reported to Grafana: the Tempo release whose query
/// API this one follows (Grafana turns features on by it).
pub const TEMPO_API_VERSION: &str = "2.6.0";

pub fn router() -> Router<RestState> {
    Router::new()
        .route("/api/v2/traces/{trace_id}", get(trace_v2))
        .route("/api/traces/{trace_id}", get(trace_v1))
        .route("/api/search", get(tempo_search::search))
        .route("/api/v2/search/tags", get(tempo_tags::tags_v2))
        .route(
            "/api/v2/search/tag/{tag}/values",
            get(tempo_tags::values_v2),
        )
        .route("/api/search/tags", get(tempo_tags::tags_v1))
        .route("/api/search/tag/{tag}/values", get(tempo_tags::values_v1))
        .route("/api/echo", get(|| async { "echo" }))
        .route("/ready", get(|| async { "ready" }))
        .route("/api/status/buildinfo", get(buildinfo))
}

async fn buildinfo() -> Json<serde_json::Value> {
    Json(json!({
        "version": TEMPO_API_VERSION,
        "revision": concat!("tael-raft ", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}

/// A trace id as Tempo and Jaeger take it: 1 to 32 hex characters, the
/// missing leading zeros implied (Tempo shows ids without them).
pub fn lenient_trace_id(raw: &str) -> Result<TraceId, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "invalid trace id {raw:?}: expected 1 to 32 hex characters"
        ))
    };
    if raw.is_empty() || raw.len() > 32 || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let padded = format!("{raw:0>32}");
    crate::model::parse_hex(&padded).ok_or_else(bad)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `TraceByIDResponse`: the trace under field 1 / `"trace"`.
    Wrapped,
    /// A bare `Trace`.
    Bare,
}

async fn trace_v2(
    State(queries): State<Arc<QueryService>>,
    Path(trace_id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    trace_by_id(queries, &trace_id, raw, &headers, Shape::Wrapped).await
}

async fn trace_v1(
    State(queries): State<Arc<QueryService>>,
    Path(trace_id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    trace_by_id(queries, &trace_id, raw, &headers, Shape::Bare).await
}

async fn trace_by_id(
    queries: Arc<QueryService>,
    trace_id: &str,
    raw: Option<String>,
    headers: &HeaderMap,
    shape: Shape,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let consistency = p.consistency()?;
    seconds_param(&p, "start")?;
    seconds_param(&p, "end")?;
    let id = lenient_trace_id(trace_id)?;
    let read = queries
        .read(consistency, Text::NotUsed, move |v| v.trace_as_otlp(&id))
        .await?;
    let barrier = read.barrier;
    let data = read
        .value
        .ok_or_else(|| ApiError::not_found("trace not found"))?;
    let (content_type, body) = if wants_protobuf(headers) {
        (PROTOBUF, encode_protobuf(&data, shape))
    } else {
        let trace = serde_json::to_value(&data).map_err(ApiError::internal)?;
        let doc = match shape {
            Shape::Wrapped => json!({ "trace": trace }),
            Shape::Bare => trace,
        };
        ("application/json", doc.to_string().into_bytes())
    };
    let mut resp = (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response();
    mark_served(&mut resp, barrier);
    Ok(resp)
}

/// Tempo's `Trace` has the wire layout of OTLP `TracesData` (field 1:
/// repeated `ResourceSpans`); `TraceByIDResponse` holds it in field 1.
fn encode_protobuf(data: &TracesData, shape: Shape) -> Vec<u8> {
    match shape {
        Shape::Bare => prost::Message::encode_to_vec(data),
        Shape::Wrapped => {
            let mut buf = Vec::with_capacity(prost::Message::encoded_len(data) + 8);
            prost::encoding::message::encode(1, data, &mut buf);
            buf
        }
    }
}

fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.split(';').next().unwrap_or("").trim())
        .any(|t| t == PROTOBUF || t == X_PROTOBUF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_trace_ids_are_padded_and_bad_ones_refused() {
        let id = lenient_trace_id("abc").unwrap();
        assert_eq!(crate::model::hex_lower(&id), format!("{:0>32}", "abc"));
        let full = "0123456789abcdefABCDEF0123456789";
        assert_eq!(
            crate::model::hex_lower(&lenient_trace_id(full).unwrap()),
            full.to_lowercase()
        );
        for bad in ["", "xyz", &"a".repeat(33), "12 4"] {
            assert!(lenient_trace_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_wrapped_trace_is_field_one_of_the_response() {
        let data = TracesData {
            resource_spans: vec![Default::default()],
        };
        let bare = encode_protobuf(&data, Shape::Bare);
        let wrapped = encode_protobuf(&data, Shape::Wrapped);
        // Tag: field 1, wire type 2 (length-delimited), then the length.
        assert_eq!(wrapped[0], 0x0a);
        assert_eq!(wrapped[1] as usize, bare.len());
        assert_eq!(&wrapped[2..], &bare[..]);
    }
}
