//! Trace comments: `GET/POST /api/v1/traces/{id}/comments`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{answer, blocking, ApiError, Params};
use crate::codec::decode;
use crate::comments::{self, Comment};
use crate::model::{parse_hex, TraceId};
use crate::node::Node;
use crate::payload;

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

fn trace_id(raw: &str) -> Result<TraceId, ApiError> {
    parse_hex(raw).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid trace id {raw:?}: expected 32 hex characters"
        ))
    })
}

pub async fn create(
    State(node): State<Arc<Node>>,
    Path(raw_trace): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let trace = trace_id(&raw_trace)?;
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
    let (_, response) = node
        .propose_for_response(payload::comment_record(&draft))
        .await?;
    let stamped: Comment = decode(&response).map_err(ApiError::internal)?;
    debug_assert!(stamped.is_stamped() && stamped.trace_id == trace);
    Ok((
        StatusCode::CREATED,
        Json(json!({ "comment": stamped.to_json() })),
    )
        .into_response())
}

pub async fn list(
    State(node): State<Arc<Node>>,
    Path(raw_trace): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let consistency = p.consistency()?;
    let limit = p.limit(DEFAULT_LIMIT)?.min(comments::MAX_LIST);
    let trace = trace_id(&raw_trace)?;
    let barrier = node.read_barrier(consistency).await?;
    let store = node.sm.store();
    let list = blocking(move || store.trace_comments(&trace, limit)).await?;
    let json: Vec<serde_json::Value> = list.iter().map(Comment::to_json).collect();
    Ok(answer(
        barrier,
        json!({ "comments": json, "count": json.len() }),
    ))
}
