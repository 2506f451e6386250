//! API keys: `GET/POST /api/v1/keys`, `DELETE /api/v1/keys/{id}` (admin).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{answer_read, ApiError, Params};
use crate::admin::KeyAdmin;
use crate::auth::{KeyInfo, Role};
use crate::model::rfc3339_nanos;
use crate::query::{QueryService, Text};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    role: String,
}

fn key_json(k: &KeyInfo) -> serde_json::Value {
    json!({
        "id": k.id,
        "name": k.name,
        "role": k.role.as_str(),
        "created_at": rfc3339_nanos(k.created_unix_nanos),
        "revoked": k.revoked,
        "revoked_at": k.revoked_unix_nanos.map(rfc3339_nanos),
    })
}

pub async fn create(State(admin): State<Arc<KeyAdmin>>, body: Bytes) -> Result<Response, ApiError> {
    let req: NewKey = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"name\": \"...\", \"role\": \"reader|writer|admin\"}}: {e}"
        ))
    })?;
    let role = Role::parse(&req.role).ok_or_else(|| {
        ApiError::bad_request(format!(
            "role must be reader, writer or admin, not {:?}",
            req.role
        ))
    })?;
    let (key, info) = admin.create(&req.name, role).await?;
    let mut body = key_json(&info);
    // The only time the whole key is ever shown.
    body["key"] = json!(key.reveal());
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn list(
    State(queries): State<Arc<QueryService>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref())?;
    let read = queries
        .read(p.consistency()?, Text::NotUsed, |v| v.keys())
        .await?;
    Ok(answer_read(read, |keys| {
        let list: Vec<serde_json::Value> = keys.list().iter().map(key_json).collect();
        json!({ "keys": list })
    }))
}

pub async fn revoke(
    State(admin): State<Arc<KeyAdmin>>,
    State(queries): State<Arc<QueryService>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = id.to_ascii_lowercase();
    let keys = queries
        .read(
            crate::cluster::Consistency::Linearizable,
            Text::NotUsed,
            |v| v.keys(),
        )
        .await?;
    if !keys.value.contains(&id) {
        return Err(ApiError::not_found(format!("no key {id}")));
    }
    admin.revoke(&id).await?;
    Ok(Json(json!({ "id": id, "revoked": true })).into_response())
}
