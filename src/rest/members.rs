//! Membership over REST: `GET/POST /api/v1/cluster/members`,
//! `POST /api/v1/cluster/members/{id}/promote`, `DELETE /api/v1/cluster/members/{id}`.
//!
//! Changes run on the leader. Any other node relays the request to the
//! leader's REST address once (marked, so a relay never loops).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, RestScheme};
use crate::cluster::{Cluster, ClusterError, MAX_CATCH_UP_WAIT};
use crate::http_client;

const RELAYED_HEADER: &str = "x-tael-relayed";
const DEFAULT_CATCH_UP_WAIT_SECS: u64 = 60;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddRequest {
    node_id: u64,
    raft_addr: String,
    /// How long to wait for the learner to catch up (0: don't wait).
    #[serde(default)]
    wait_secs: Option<u64>,
}

pub async fn list(State(cluster): State<Arc<Cluster>>) -> Result<Response, ApiError> {
    let members = cluster.members()?;
    Ok(Json(members).into_response())
}

pub async fn add(
    State(cluster): State<Arc<Cluster>>,
    State(scheme): State<RestScheme>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: AddRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"node_id\": N, \"raft_addr\": \"host:port\", \"wait_secs\"?: S}}: {e}"
        ))
    })?;
    let wait_secs = req.wait_secs.unwrap_or(DEFAULT_CATCH_UP_WAIT_SECS);
    if wait_secs > MAX_CATCH_UP_WAIT.as_secs() {
        return Err(ApiError::bad_request(format!(
            "wait_secs must be at most {}",
            MAX_CATCH_UP_WAIT.as_secs()
        )));
    }
    let wait = (wait_secs > 0).then(|| Duration::from_secs(wait_secs));
    match cluster.add_learner(req.node_id, &req.raft_addr, wait).await {
        Ok(caught_up) => Ok(Json(json!({
            "node_id": req.node_id,
            "raft_addr": req.raft_addr,
            "role": "learner",
            "caught_up": caught_up,
        }))
        .into_response()),
        Err(e) => {
            relay_or_fail(
                e,
                scheme,
                &headers,
                Method::POST,
                "/api/v1/cluster/members",
                &body,
            )
            .await
        }
    }
}

pub async fn promote(
    State(cluster): State<Arc<Cluster>>,
    State(scheme): State<RestScheme>,
    Path(id): Path<u64>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    match cluster.promote(id).await {
        Ok(()) => Ok(Json(json!({ "node_id": id, "role": "voter" })).into_response()),
        Err(e) => {
            let path = format!("/api/v1/cluster/members/{id}/promote");
            relay_or_fail(e, scheme, &headers, Method::POST, &path, b"").await
        }
    }
}

pub async fn remove(
    State(cluster): State<Arc<Cluster>>,
    State(scheme): State<RestScheme>,
    Path(id): Path<u64>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    match cluster.remove(id).await {
        Ok(()) => Ok(Json(json!({ "node_id": id, "removed": true })).into_response()),
        Err(e) => {
            let path = format!("/api/v1/cluster/members/{id}");
            relay_or_fail(e, scheme, &headers, Method::DELETE, &path, b"").await
        }
    }
}

/// A change refused for not being the leader goes to the leader, once.
async fn relay_or_fail(
    e: ClusterError,
    scheme: RestScheme,
    headers: &HeaderMap,
    method: Method,
    path: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let ClusterError::NotLeader { leader_rest } = &e else {
        return Err(e.into());
    };
    let (Some(leader_rest), false) = (leader_rest, headers.contains_key(RELAYED_HEADER)) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no leader is known (or leadership is moving); retry",
        ));
    };
    // Over TLS, the leader's certificate is checked against the CA named by
    // `--ca-cert` (http_client).
    let url = format!("{}://{leader_rest}{path}", scheme.0);
    // The caller's key goes along: the leader checks it again.
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut relay_headers = vec![("Content-Type", "application/json"), (RELAYED_HEADER, "1")];
    if !authorization.is_empty() {
        relay_headers.push(("Authorization", authorization));
    }
    let r = http_client::request_with_headers(
        method.as_str(),
        &url,
        &relay_headers,
        body,
        MAX_CATCH_UP_WAIT + Duration::from_secs(30),
    )
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("relaying to the leader at {leader_rest}: {e}"),
        )
    })?;
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_GATEWAY);
    Ok((
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        r.body,
    )
        .into_response())
}
