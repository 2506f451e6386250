//! `init` is retryable: a member that is not up yet makes it fail clearly,
//! with nothing adopted, and a later init (or the same one, waiting)
//! completes; an init that got partway is completed by a retry.

mod common;

use std::time::Duration;

use common::*;
use tael_consensus::pb::raft_transport_client::RaftTransportClient;
use tael_consensus::pb::AdoptClusterRequest;

fn members(c: &TestCluster) -> Vec<(u64, String)> {
    (1..=3).map(|id| (id, c.node(id).raft.clone())).collect()
}

fn server(c: &TestCluster) -> String {
    format!("http://{}", c.node(1).rest)
}

#[tokio::test(flavor = "multi_thread")]
async fn init_with_a_member_down_fails_clearly_and_a_retry_completes_it() {
    let mut c = TestCluster::start(3, &[]);
    c.kill(3);
    c.wait_healthy(1).await;
    c.wait_healthy(2).await;

    let err = tael_raft::cmd::init::run(&server(&c), &members(&c), Duration::from_secs(2))
        .await
        .expect_err("init without member 3");
    assert!(err.contains("member 3"), "{err}");
    assert!(err.contains("unavailable"), "{err}");
    for id in [1, 2] {
        assert!(
            c.cluster_status(id)
                .await
                .is_none_or(|s| s["cluster_id"].is_null()),
            "node {id} adopted nothing"
        );
    }

    // Run at once after starting the last member: init waits for it.
    c.spawn(3);
    let cluster_id = tael_raft::cmd::init::run(&server(&c), &members(&c), Duration::from_secs(30))
        .await
        .expect("init once every member is up");
    let leader = c.wait_leader().await;
    let status = c.cluster_status(leader).await.unwrap();
    assert_eq!(status["cluster_id"], cluster_id.as_str());
    let mut otlp = c.otlp_client(leader).await;
    export(&mut otlp, trace_request("after-init", 1, 2))
        .await
        .expect("the cluster commits");

    let again = tael_raft::cmd::init::run(&server(&c), &members(&c), Duration::from_secs(2))
        .await
        .expect_err("a second init");
    assert!(err_is_conflict(&again), "{again}");
}

fn err_is_conflict(e: &str) -> bool {
    e.contains("409") && e.contains("already initialized")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_completes_an_init_that_got_partway() {
    let c = TestCluster::start(3, &[]);
    for id in 1..=3 {
        c.wait_healthy(id).await;
    }
    // As an earlier init leaves it when it stopped after adopting member 2.
    let earlier = "0123456789abcdef0123456789abcdef";
    let mut raft = RaftTransportClient::connect(format!("http://{}", c.node(2).raft))
        .await
        .unwrap();
    raft.adopt_cluster(AdoptClusterRequest {
        cluster_id: earlier.into(),
        node_id: 2,
    })
    .await
    .unwrap();

    let cluster_id = tael_raft::cmd::init::run(&server(&c), &members(&c), Duration::from_secs(20))
        .await
        .expect("the retry completes the earlier init");
    assert_eq!(cluster_id, earlier);
    let leader = c.wait_leader().await;
    for id in 1..=3 {
        assert_eq!(
            c.node_entry(leader, id).await["reachable"],
            true,
            "node {id}"
        );
    }
}
