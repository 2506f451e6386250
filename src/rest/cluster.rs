//! Cluster status, bootstrap, readiness and Prometheus metrics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::ApiError;
use crate::admin::KeyAdmin;
use crate::auth::Role;
use crate::cluster::status::{ClusterStatus, MemberStatus};
use crate::cluster::Cluster;
use crate::self_metrics::SelfMetrics;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitRequest {
    /// Node id → node-to-node address.
    pub members: BTreeMap<u64, String>,
    /// Also create the cluster's first admin key and answer with it.
    #[serde(default)]
    pub create_admin_key: bool,
}

/// How long init waits for a leader to take the first admin key.
const ADMIN_KEY_WAIT: Duration = Duration::from_secs(30);

pub async fn init(
    State(cluster): State<Arc<Cluster>>,
    State(keys): State<Arc<KeyAdmin>>,
    body: Result<Json<InitRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body
        .map_err(|e| ApiError::bad_request(format!("invalid init request: {}", e.body_text())))?;
    if req.members.is_empty() || req.members.len() > 9 {
        return Err(ApiError::bad_request("members must list 1 to 9 nodes"));
    }
    if req.members.contains_key(&0) {
        return Err(ApiError::bad_request("node ids start at 1"));
    }
    let cluster_id = cluster.init(req.members.clone()).await?;
    let mut body = json!({ "cluster_id": cluster_id, "members": req.members });
    if req.create_admin_key {
        match first_admin_key(&keys).await {
            Ok(key) => body["admin_key"] = key,
            Err(e) => body["admin_key_error"] = json!(e),
        }
    }
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// Creates the first admin key as soon as the new cluster has a leader.
async fn first_admin_key(keys: &KeyAdmin) -> Result<serde_json::Value, String> {
    let deadline = tokio::time::Instant::now() + ADMIN_KEY_WAIT;
    loop {
        match keys.create("admin", Role::Admin).await {
            Ok((key, info)) => return Ok(json!({ "id": info.id, "key": key.reveal() })),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(format!("the first admin key could not be created: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

pub async fn status(State(cluster): State<Arc<Cluster>>) -> Response {
    let mut body = status_json(cluster.status().await);
    body["last_check"] = json!(*cluster.check_stats().last.lock().unwrap());
    Json(body).into_response()
}

/// How long `POST /api/v1/cluster/check` waits for the members' digests,
/// by default and at most.
const CHECK_WAIT_DEFAULT_SECS: u64 = 60;
const CHECK_WAIT_MAX_SECS: u64 = 600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckParams {
    wait_secs: Option<u64>,
}

/// Runs a consistency check now and answers with its report (`agree`,
/// `differing`, `missing`, every member's digest).
pub async fn check(
    State(cluster): State<Arc<Cluster>>,
    params: Result<axum::extract::Query<CheckParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let axum::extract::Query(p) = params
        .map_err(|e| ApiError::bad_request(format!("invalid parameters: {}", e.body_text())))?;
    let wait_secs = p.wait_secs.unwrap_or(CHECK_WAIT_DEFAULT_SECS);
    if wait_secs > CHECK_WAIT_MAX_SECS {
        return Err(ApiError::bad_request(format!(
            "wait_secs may be at most {CHECK_WAIT_MAX_SECS}"
        )));
    }
    let report = cluster.run_check(Duration::from_secs(wait_secs)).await?;
    Ok(Json(report).into_response())
}

/// The last check this node ran (null when none).
pub async fn last_check(State(cluster): State<Arc<Cluster>>) -> Response {
    Json(json!(*cluster.check_stats().last.lock().unwrap())).into_response()
}

fn status_json(status: ClusterStatus) -> serde_json::Value {
    let leader_last_log = status.leader_last_log_index();
    let nodes: Vec<serde_json::Value> = status
        .members
        .into_iter()
        .map(|m| member_json(m, leader_last_log))
        .collect();
    json!({
        "cluster_id": status.cluster_id,
        "node_id": status.node_id,
        "leader": status.leader,
        "term": status.term,
        "voters": status.voters,
        "learners": status.learners,
        "nodes": nodes,
    })
}

fn member_json(m: MemberStatus, leader_last_log: Option<u64>) -> serde_json::Value {
    let (id, raft_addr) = (m.id, m.raft_addr);
    let role = if m.voter { "voter" } else { "learner" };
    match m.status {
        None => json!({ "id": id, "raft_addr": raft_addr, "role": role, "reachable": false }),
        Some(s) => json!({
            "id": id, "raft_addr": raft_addr, "rest_addr": s.rest_addr, "role": role, "reachable": true,
            "state": s.state, "term": s.term,
            "leader": if s.has_leader { Some(s.current_leader) } else { None },
            "last_log_index": s.last_log_index, "committed_index": s.committed_index,
            "applied_index": s.applied_index, "snapshot_index": s.snapshot_index, "purged_index": s.purged_index,
            "lag": leader_last_log.map(|l| l.saturating_sub(s.applied_index)),
            "state_digest_index": s.state_digest_index, "state_digest": s.state_digest,
        }),
    }
}

pub async fn ready(State(cluster): State<Arc<Cluster>>) -> Response {
    let r = cluster.readiness();
    let body = json!({ "ready": r.ready, "leader": r.leader, "committed_index": r.committed_index, "applied_index": r.applied_index, "recovered_committed_index": r.recovered_committed_index });
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub async fn prometheus(State(metrics): State<Arc<SelfMetrics>>) -> Response {
    let text = metrics.render().await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
