//! `GET /api/v1/blobs/{sha256}`: stored LLM prompt and completion text.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{blocking, ApiError, Params};
use crate::model::parse_hex;
use crate::node::Node;

pub async fn get(
    State(node): State<Arc<Node>>,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(query.as_deref())?;
    let consistency = p.consistency()?;
    let sha: [u8; 32] = parse_hex(&raw).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid blob id {raw:?}: expected a sha256 as 64 hex characters"
        ))
    })?;
    let barrier = node.read_barrier(consistency).await?;
    let store = node.sm.store();
    let bytes = blocking(move || store.blob(&sha))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "blob not found"))?;
    debug_assert_eq!(
        crate::llm::sha256(&bytes),
        sha,
        "blobs are content-addressed"
    );
    let content_type = if std::str::from_utf8(&bytes).is_ok() {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    };
    let mut resp = (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        bytes,
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert("x-tael-served-by", HeaderValue::from(barrier.node_id));
    h.insert(
        "x-tael-applied-index",
        HeaderValue::from(barrier.applied_index),
    );
    // Content-addressed: the bytes under a hash never change.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(resp)
}
