//! `GET /api/v1/traces/{trace_id}/otlp`: a stored trace given back as OTLP
//! `TracesData`, exactly as it was sent (see `otlp::encode`): protobuf by
//! default, OTLP/JSON when the client accepts `application/json`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{blocking, ApiError, Params};
use crate::llm::Sha256Digest;
use crate::model::{parse_hex, SpanRecord, TraceId};
use crate::node::{Node, ReadBarrier};
use crate::otlp::encode;
use crate::state::hot::{HotStore, StoreResult};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

pub async fn trace(
    State(node): State<Arc<Node>>,
    Path(trace_id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let consistency = p.consistency()?;
    let id: TraceId = parse_hex(&trace_id).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid trace id {trace_id:?}: expected 32 hex characters"
        ))
    })?;
    let barrier = node.read_barrier(consistency).await?;
    let store = node.sm.store();
    let data = blocking(move || {
        let spans = store.trace(&id)?;
        let blobs = llm_texts(&store, &spans)?;
        Ok((!spans.is_empty()).then(|| encode::traces_data(&spans, |sha| blobs.get(sha).cloned())))
    })
    .await?
    .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "trace not found"))?;
    let body = if wants_json(&headers) {
        let json = serde_json::to_vec(&data).map_err(ApiError::internal)?;
        (JSON, json)
    } else {
        (PROTOBUF, prost::Message::encode_to_vec(&data))
    };
    Ok(respond(barrier, body))
}

/// The LLM texts the spans' attributes were moved to, read up front so a
/// storage error fails the request instead of leaving attributes out.
fn llm_texts(
    store: &HotStore,
    spans: &[SpanRecord],
) -> StoreResult<HashMap<Sha256Digest, Vec<u8>>> {
    let mut out = HashMap::new();
    let shas = spans
        .iter()
        .filter_map(|s| s.llm.as_ref())
        .flat_map(|l| [l.prompt_sha256, l.completion_sha256])
        .flatten();
    for sha in shas {
        if let std::collections::hash_map::Entry::Vacant(slot) = out.entry(sha) {
            if let Some(bytes) = store.blob(&sha)? {
                slot.insert(bytes);
            }
        }
    }
    Ok(out)
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

fn respond(barrier: ReadBarrier, (content_type, body): (&'static str, Vec<u8>)) -> Response {
    let mut resp = (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert("x-tael-served-by", HeaderValue::from(barrier.node_id));
    h.insert(
        "x-tael-applied-index",
        HeaderValue::from(barrier.applied_index),
    );
    resp
}
