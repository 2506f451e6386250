//! Trace comments: `GET/POST /api/v1/traces/{id}/comments`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{answer_read, ApiError, Params};
use crate::comments::{self, Comment};
use crate::ingest::Ingest;
use crate::model::parse_hex;
use crate::query::{QueryService, Text};

const DEFAULT_LIMIT: usize = 1_000;

/// What a client sends. Unknown fields are ignored, like the rest of the API.
#[derive(Deserialize)]
struct NewComment {
    body: String,
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    span_id: Option<String>,
}

/// The client's name for this request: a retry under the same name (and
/// trace) stores the comment once.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(s) if !s.is_empty() && s.len() <= MAX_IDEMPOTENCY_KEY_BYTES => Ok(Some(s.to_string())),
        _ => Err(ApiError::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} visible ASCII characters"
        ))),
    }
}

/// Longest `Idempotency-Key` header accepted.
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

pub async fn create(
    State(ingest): State<Arc<Ingest>>,
    Path(raw_trace): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers)?;
    let trace = super::params::trace_id_in_path(&raw_trace)?;
    let req: NewComment = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "comment must be a JSON object with a string \"body\": {e}"
        ))
    })?;
    let span_id = match req.span_id.as_deref() {
        None => None,
        Some(s) => Some(parse_hex::<8>(s).ok_or_else(|| {
            ApiError::bad_request(format!("invalid span_id {s:?}: expected 16 hex characters"))
        })?),
    };
    let draft = Comment {
        id: String::new(),
        trace_id: trace,
        span_id,
        author: req.author.unwrap_or_else(|| "anonymous".into()),
        body: req.body,
        created_at_unix_nanos: 0,
    };
    comments::validate(&draft).map_err(ApiError::bad_request)?;
    let stamped = ingest
        .add_comment(&draft, idempotency_key.as_deref())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "comment": stamped.to_json() })),
    )
        .into_response())
}

pub async fn list(
    State(queries): State<Arc<QueryService>>,
    Path(raw_trace): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let consistency = p.consistency()?;
    let limit = p.limit(DEFAULT_LIMIT)?.min(comments::MAX_LIST);
    let trace = super::params::trace_id_in_path(&raw_trace)?;
    let read = queries
        .read(consistency, Text::NotUsed, move |v| {
            v.trace_comments(&trace, limit)
        })
        .await?;
    Ok(answer_read(read, |list| {
        let json: Vec<serde_json::Value> = list.iter().map(Comment::to_json).collect();
        json!({ "comments": json, "count": json.len() })
    }))
}
