//! A record no replica could apply never stops the cluster: the leader
//! refuses a forwarded record it could not apply, before it reaches the log,
//! and the cluster keeps committing.

mod common;

use common::*;
use tael_consensus::pb::raft_transport_client::RaftTransportClient;
use tael_consensus::pb::ForwardRequest;
use tael_consensus::FIRST_APP_TAG;
use tael_raft::model::SpanRecord;
use tael_raft::payload;
use tonic::Code;

fn span(trace: u8, service: &str) -> SpanRecord {
    SpanRecord {
        trace_id: [trace; 16],
        span_id: [trace; 8],
        service: service.into(),
        operation: "op".into(),
        start_unix_nanos: 1_000_000_000,
        end_unix_nanos: 2_000_000_000,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forwarded_record_no_replica_could_apply_is_refused_and_the_cluster_keeps_committing() {
    let c = TestCluster::start(3, &[]);
    c.init().await;
    let leader = c.wait_leader().await;
    let status = c.cluster_status(leader).await.expect("cluster status");
    let cluster_id = status["cluster_id"].as_str().unwrap().to_string();
    let mut raft = RaftTransportClient::connect(format!("http://{}", c.node(leader).raft))
        .await
        .unwrap();

    let long_service = "s".repeat(payload::MAX_INDEX_NAME_BYTES + 1);
    let poison: Vec<(u32, Vec<u8>, &str)> = vec![
        (
            u32::from(FIRST_APP_TAG) + 60,
            b"from a newer version".to_vec(),
            "unknown record tag",
        ),
        (u32::from(payload::TAG_SPANS), vec![0xff; 9], "undecodable"),
        (u32::from(payload::TAG_LOGS), vec![0xff; 9], "undecodable"),
        (
            u32::from(payload::TAG_METRICS),
            vec![0xff; 9],
            "undecodable",
        ),
        (
            u32::from(payload::TAG_SPOOLED),
            vec![0xff; 9],
            "undecodable",
        ),
        (
            u32::from(payload::TAG_SPANS),
            payload::spans_record(vec![span(1, &long_service)]).payload,
            "service name",
        ),
        (
            // Past the ingest limit, though the store could hold it.
            u32::from(payload::TAG_SPANS),
            payload::spans_record(vec![span(1, &"s".repeat(300))]).payload,
            "characters",
        ),
        (
            u32::from(payload::RETIRED_TAGS[0]),
            vec![1, 2, 3],
            "no longer reads",
        ),
    ];
    for (tag, bytes, why) in poison {
        let refused = raft
            .forward(ForwardRequest {
                cluster_id: cluster_id.clone(),
                tag,
                batch_key: vec![1; 16],
                payload: bytes,
            })
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "tag {tag}: {refused:?}"
        );
        assert!(
            refused.message().contains(why),
            "tag {tag}: {}",
            refused.message()
        );
    }

    // A good forwarded record still commits, and so does an export.
    let good = raft
        .forward(ForwardRequest {
            cluster_id: cluster_id.clone(),
            tag: u32::from(payload::TAG_SPANS),
            batch_key: vec![2; 16],
            payload: payload::spans_record(vec![span(7, "forwarded")]).payload,
        })
        .await
        .expect("a valid forwarded record commits")
        .into_inner();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let mut otlp = c.otlp_client(follower).await;
    export(&mut otlp, trace_request("after-poison", 1, 3))
        .await
        .expect("the cluster still commits exports");
    let last = c.node_entry(leader, leader).await["last_log_index"]
        .as_u64()
        .unwrap();
    assert!(last > good.log_index);
    for id in 1..=3 {
        c.wait_applied(id, last).await;
        let spans = traces_of_service(&c, id, "after-poison", "local")
            .await
            .unwrap();
        assert_eq!(spans.len(), 3, "node {id}");
        let spans = traces_of_service(&c, id, "forwarded", "local")
            .await
            .unwrap();
        assert_eq!(spans.len(), 1, "node {id}");
        let metrics = c.get(id, "/metrics").await;
        let text = String::from_utf8_lossy(&metrics.body);
        assert_eq!(
            metric(&text, "tael_apply_rejected_entries_total"),
            0,
            "node {id}: nothing refused reached the log"
        );
    }
}
