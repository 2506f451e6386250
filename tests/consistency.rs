//! Replicas prove they agree: a consistency check on a real 3-node cluster
//! agrees after ordinary traffic, and names the replica whose data was
//! changed behind its back.

mod common;

use std::time::Duration;

use common::*;
use tael_raft::http_client;
use tael_raft::state::{StateMachine, StateMachineOptions};

async fn run_check(c: &TestCluster, via: u64) -> serde_json::Value {
    let r = http_client::request_with_headers(
        "POST",
        &c.node(via).url("/api/v1/cluster/check?wait_secs=30"),
        &[],
        b"",
        Duration::from_secs(60),
    )
    .await
    .expect("POST /api/v1/cluster/check");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json().unwrap()
}

/// Writes a key into node `id`'s state machine while it is stopped: the
/// kind of change no replica would make by applying the log.
fn tamper_with(c: &TestCluster, id: u64) {
    let sm = StateMachine::open(&c.node(id).data_dir, StateMachineOptions::default())
        .expect("open the stopped node's state machine");
    let store = sm.shared.store();
    store
        .keyspaces
        .svc_stats
        .insert(b"tampered-service".as_slice(), b"{}".as_slice())
        .unwrap();
    store.persist().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_agree_and_a_tampered_one_is_named() {
    let mut c = TestCluster::start(3, &[]);
    c.init().await;
    let leader = c.wait_leader().await;
    let mut client = c.otlp_client(leader).await;
    for t in 0..20 {
        export(&mut client, trace_request("checkout", t, 5))
            .await
            .unwrap();
    }

    // Through a follower: the check is forwarded to the leader like a write.
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let report = run_check(&c, follower).await;
    assert_eq!(report["agree"], true, "{report}");
    let digests = report["digests"].as_object().unwrap();
    assert_eq!(digests.len(), 3, "{report}");
    let first = digests.values().next().unwrap();
    assert!(digests.values().all(|d| d == first), "{report}");
    assert_eq!(first.as_str().unwrap().len(), 64, "a SHA-256 in hex");

    // More writes, then one replica is altered behind its back.
    for t in 20..30 {
        export(&mut client, trace_request("checkout", t, 5))
            .await
            .unwrap();
    }
    let victim = (1..=3).find(|&id| id != leader).unwrap();
    c.kill(victim);
    tamper_with(&c, victim);
    c.spawn(victim);
    c.wait_healthy(victim).await;
    let leader = c.wait_leader().await;

    let report = run_check(&c, leader).await;
    assert_eq!(report["agree"], false, "{report}");
    assert_eq!(report["differing"], serde_json::json!([victim]), "{report}");
    assert_eq!(report["missing"], serde_json::json!([]), "{report}");
    let index = report["index"].as_u64().unwrap();

    // The alarm: counted on the node that ran the check, kept in its status.
    let metrics = c.get(leader, "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert_eq!(metric(&text, "tael_consistency_mismatches_total"), 1);
    assert!(metric(&text, "tael_consistency_checks_total") >= 1);
    let status = c.get(leader, "/api/v1/cluster").await.json().unwrap();
    assert_eq!(status["last_check"]["index"], index, "{status}");
    assert_eq!(
        status["last_check"]["differing"],
        serde_json::json!([victim])
    );
}
