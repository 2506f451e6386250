//! `GET /api/v1/blobs/{sha256}`: stored LLM prompt and completion text.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{mark_served, ApiError, Params};
use crate::model::parse_hex;
use crate::query::{QueryService, Text};

pub async fn get(
    State(queries): State<Arc<QueryService>>,
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
    let read = queries
        .read(consistency, Text::NotUsed, move |v| v.blob(&sha))
        .await?;
    let barrier = read.barrier;
    let bytes = read
        .value
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
    mark_served(&mut resp, barrier);
    // Content-addressed: the bytes under a hash never change.
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(resp)
}
