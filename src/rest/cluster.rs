//! Cluster status, bootstrap, readiness and Prometheus metrics.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tael_consensus::pb;

use super::ApiError;
use crate::node::Node;

const PEER_STATUS_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitRequest {
    /// Node id → node-to-node address.
    pub members: BTreeMap<u64, String>,
}

pub async fn init(
    State(node): State<Arc<Node>>,
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
    match node.init_cluster(req.members.clone()).await {
        Ok(cluster_id) => Ok((
            StatusCode::OK,
            Json(json!({ "cluster_id": cluster_id, "members": req.members })),
        )
            .into_response()),
        Err(crate::node::ClusterError::Invalid(m))
            if m.contains("already initialized") || m.contains("already belongs") =>
        {
            Err(ApiError::new(StatusCode::CONFLICT, m))
        }
        Err(e) => Err(e.into()),
    }
}

fn local_status(node: &Node) -> pb::NodeStatusResponse {
    tael_consensus::server::node_status(&node.raft, node.id, &node.log, &node.config.rest_addr)
}

pub async fn status(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    let m = node.metrics();
    let membership = m.membership_config.membership().clone();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let learners: Vec<u64> = membership.learner_ids().collect();
    let cluster_id = node.identity.get();

    let mut statuses = Vec::new();
    for (id, addr) in membership.nodes() {
        let s = if *id == node.id {
            Some(local_status(&node))
        } else {
            match (cluster_id.clone(), node.peers.client(&addr.addr)) {
                (Some(cid), Ok(mut c)) => {
                    match tokio::time::timeout(
                        PEER_STATUS_TIMEOUT,
                        c.node_status(pb::NodeStatusRequest { cluster_id: cid }),
                    )
                    .await
                    {
                        Ok(Ok(r)) => Some(r.into_inner()),
                        _ => None,
                    }
                }
                _ => None,
            }
        };
        statuses.push((*id, addr.addr.clone(), s));
    }
    let leader_last_log = statuses
        .iter()
        .filter_map(|(id, _, s)| {
            s.as_ref()
                .filter(|_| Some(*id) == m.current_leader)
                .map(|s| s.last_log_index)
        })
        .next();
    let nodes: Vec<serde_json::Value> = statuses
        .into_iter()
        .map(|(id, raft_addr, s)| {
            let role = if voters.contains(&id) { "voter" } else { "learner" };
            match s {
                None => json!({ "id": id, "raft_addr": raft_addr, "role": role, "reachable": false }),
                Some(s) => json!({
                    "id": id, "raft_addr": raft_addr, "rest_addr": s.rest_addr, "role": role, "reachable": true,
                    "state": s.state, "term": s.term,
                    "leader": if s.has_leader { Some(s.current_leader) } else { None },
                    "last_log_index": s.last_log_index, "committed_index": s.committed_index,
                    "applied_index": s.applied_index, "snapshot_index": s.snapshot_index, "purged_index": s.purged_index,
                    "lag": leader_last_log.map(|l| l.saturating_sub(s.applied_index)),
                }),
            }
        })
        .collect();
    let body = json!({
        "cluster_id": cluster_id,
        "node_id": node.id,
        "leader": m.current_leader,
        "term": m.current_term,
        "voters": voters,
        "learners": learners,
        "nodes": nodes,
    });
    Ok(Json(body).into_response())
}

pub async fn ready(State(node): State<Arc<Node>>) -> Response {
    let m = node.metrics();
    let committed = m.local_committed.map_or(0, |l| l.index);
    let applied = m.last_applied.map_or(0, |l| l.index);
    let ready = m.current_leader.is_some() && applied >= committed;
    let body = json!({ "ready": ready, "leader": m.current_leader, "committed_index": committed, "applied_index": applied });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub async fn prometheus(State(node): State<Arc<Node>>) -> Response {
    let m = node.metrics();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let one = |v: u64| vec![(String::new(), v as f64)];
    let ing = &node.ingest;
    let mut records = Vec::new();
    let mut requests = Vec::new();
    for signal in crate::ingest::Signal::ALL {
        for transport in crate::ingest::Transport::ALL {
            let c = ing.get(signal, transport);
            let labels = format!(
                "signal=\"{}\",transport=\"{}\"",
                signal.as_str(),
                transport.as_str()
            );
            for (outcome, v) in [
                ("accepted", &c.accepted),
                ("rejected", &c.rejected),
                ("unavailable", &c.unavailable),
            ] {
                records.push((
                    format!("{{{labels},outcome=\"{outcome}\"}}"),
                    v.load(Ordering::Relaxed) as f64,
                ));
            }
            requests.push((
                format!("{{{labels}}}"),
                c.requests.load(Ordering::Relaxed) as f64,
            ));
        }
    }
    metric(
        "tael_ingest_records_total",
        "counter",
        "Telemetry records by signal, transport and outcome (accepted: committed; rejected: invalid; unavailable: refused for lack of leader or quorum).",
        &records,
    );
    metric(
        "tael_ingest_requests_total",
        "counter",
        "OTLP export requests by signal and transport.",
        &requests,
    );
    metric(
        "tael_raft_is_leader",
        "gauge",
        "1 on the leader.",
        &one((m.current_leader == Some(node.id)) as u64),
    );
    metric(
        "tael_raft_last_log_index",
        "gauge",
        "Last log index.",
        &one(m.last_log_index.unwrap_or(0)),
    );
    metric(
        "tael_raft_commit_index",
        "gauge",
        "Commit index known here.",
        &one(m.local_committed.map_or(0, |l| l.index)),
    );
    metric(
        "tael_raft_applied_index",
        "gauge",
        "Applied index.",
        &one(m.last_applied.map_or(0, |l| l.index)),
    );
    if let Some(repl) = &m.replication {
        let last = m.last_log_index.unwrap_or(0);
        let lags: Vec<(String, f64)> = repl
            .iter()
            .map(|(id, matched)| {
                (
                    format!("{{follower=\"{id}\"}}"),
                    last.saturating_sub(matched.map_or(0, |l| l.index)) as f64,
                )
            })
            .collect();
        metric(
            "tael_raft_replication_lag_entries",
            "gauge",
            "Entries a follower is behind the leader.",
            &lags,
        );
    }
    let ls = node.log.stats();
    metric(
        "tael_wal_fsyncs_total",
        "counter",
        "Raft log fsyncs.",
        &one(ls.fsync_latency.count()),
    );
    metric(
        "tael_wal_torn_tail_repairs_total",
        "counter",
        "Torn log tails cut off at start-up.",
        &one(ls.torn_tail_repairs.load(Ordering::Relaxed)),
    );
    let ft = &node.fulltext;
    metric(
        "tael_fulltext_watermark_index",
        "gauge",
        "Applied index up to which full-text search is complete.",
        &one(ft.watermark()),
    );
    metric(
        "tael_fulltext_docs_indexed_total",
        "counter",
        "Documents added to the full-text index.",
        &one(ft.docs_indexed.load(Ordering::Relaxed)),
    );
    metric(
        "tael_fulltext_rebuilds_total",
        "counter",
        "Full rebuilds of the full-text index (after snapshot installs).",
        &one(ft.rebuilds.load(Ordering::Relaxed)),
    );
    let ss = &node.sm.stats;
    metric(
        "tael_apply_entries_total",
        "counter",
        "Log entries applied.",
        &one(ss.entries_applied.load(Ordering::Relaxed)),
    );
    metric(
        "tael_snapshots_built_total",
        "counter",
        "Snapshots built.",
        &one(ss.snapshots_built.load(Ordering::Relaxed)),
    );
    metric(
        "tael_snapshots_installed_total",
        "counter",
        "Snapshots installed from the leader.",
        &one(ss.snapshots_installed.load(Ordering::Relaxed)),
    );
    metric(
        "tael_spool_applied_total",
        "counter",
        "Spooled records applied by this node's state machine (any origin).",
        &one(ss.spooled_applied.load(Ordering::Relaxed)),
    );
    metric(
        "tael_spool_duplicates_skipped_total",
        "counter",
        "Spooled records proposed again (after a crash or an unanswered forward) and skipped by this node's state machine.",
        &one(ss.spooled_duplicates_skipped.load(Ordering::Relaxed)),
    );
    let store = node.sm.store();
    if let Ok(Ok(by_origin)) =
        tokio::task::spawn_blocking(move || store.spooled_applied_by_origin()).await
    {
        let samples: Vec<(String, f64)> = by_origin
            .iter()
            .map(|(origin, f)| (format!("{{origin=\"{origin}\"}}"), f.applied_total as f64))
            .collect();
        metric(
            "tael_spool_applied_records",
            "gauge",
            "Spooled records ever applied, per origin node (replicated state: equal on every node at the same applied index).",
            &samples,
        );
    }
    if let Some(spool) = &node.spool {
        let sm = &spool.metrics;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        metric(
            "tael_spool_pending_records",
            "gauge",
            "Records spooled by this process and not yet committed (records left by an earlier process are counted in tael_spool_pending_bytes only).",
            &one(load(&sm.pending_records)),
        );
        metric(
            "tael_spool_pending_bytes",
            "gauge",
            "Spooled bytes not yet forwarded, including the on-disk size of files left by an earlier process until they are read through.",
            &one(load(&sm.pending_bytes) + load(&sm.recovered_bytes)),
        );
        metric(
            "tael_spool_appended_total",
            "counter",
            "Exports spooled (and acknowledged).",
            &one(load(&sm.appended_total)),
        );
        metric(
            "tael_spool_forwarded_total",
            "counter",
            "Spooled records whose proposal committed.",
            &one(load(&sm.forwarded_total)),
        );
        metric(
            "tael_spool_skipped_forwarded_total",
            "counter",
            "Spooled records read back after a restart that were already forwarded.",
            &one(load(&sm.skipped_forwarded_total)),
        );
        metric(
            "tael_spool_refused_full_total",
            "counter",
            "Exports refused because the spool was full.",
            &one(load(&sm.refused_full_total)),
        );
        metric(
            "tael_spool_bypassed_total",
            "counter",
            "Exports committed directly because the spool could not take them (too large, or the spool failed).",
            &one(load(&sm.bypassed_total)),
        );
        metric(
            "tael_spool_forward_retries_total",
            "counter",
            "Forward attempts that did not commit (no leader, no quorum, timeout) and were retried.",
            &one(load(&sm.forward_retries_total)),
        );
        metric(
            "tael_spool_failed",
            "gauge",
            "1 once the spool failed in this process (exports then bypass it).",
            &one(sm.failed.load(Ordering::Relaxed) as u64),
        );
    }
    ls.fsync_latency.render(
        &mut out,
        "tael_wal_fsync_seconds",
        "Raft log fsync latency.",
    );
    ss.apply_latency.render(
        &mut out,
        "tael_apply_batch_seconds",
        "Time to apply one batch of log entries to the state machine.",
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
