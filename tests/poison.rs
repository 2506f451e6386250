//! A record no replica could apply never stops the cluster: the leader
//! refuses a forwarded record it could not apply, before it reaches the log,
//! and the cluster keeps committing; an entry that is in the log anyway is
//! rejected by apply and the node carries on.

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

/// Appends `records` to a stopped node's log, in the term of its last entry,
/// as a leader of that term would have.
async fn append_to_log(node: &TestNode, records: Vec<tael_consensus::Record>) -> u64 {
    use openraft::storage::{IOFlushed, RaftLogStorage};
    use openraft::type_config::TypeConfigExt;
    use tael_consensus::{Entry, EntryPayload, LogId, LogStore, LogStoreOptions, TypeConfig};

    let mut log = LogStore::open(&node.data_dir.join("raft-log"), LogStoreOptions::default())
        .expect("open the stopped node's log");
    let last = log.bounds().1.expect("the log has entries");
    let entries: Vec<Entry> = records
        .into_iter()
        .zip(last.index + 1..)
        .map(|(record, index)| Entry {
            log_id: LogId::new(last.leader_id, index),
            payload: EntryPayload::Normal(record),
        })
        .collect();
    let appended = last.index + entries.len() as u64;
    let (tx, rx) = TypeConfig::oneshot();
    log.append(entries, IOFlushed::signal(tx)).await.unwrap();
    rx.await.unwrap().expect("appended and fsynced");
    appended
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_no_replica_can_apply_is_rejected_on_restart_and_the_node_carries_on() {
    let mut c = TestCluster::start(1, &[]);
    c.init().await;
    c.wait_leader().await;
    let mut otlp = c.otlp_client(1).await;
    export(&mut otlp, trace_request("before", 1, 2))
        .await
        .unwrap();
    c.kill(1);

    let unknown = tael_consensus::Record {
        tag: FIRST_APP_TAG + 60,
        batch_key: [3; 16],
        payload: b"from a newer version".to_vec(),
    };
    let garbage = tael_consensus::Record {
        tag: payload::TAG_SPANS,
        batch_key: [4; 16],
        payload: vec![0xff; 9],
    };
    let good = payload::spans_record(vec![span(9, "between")]);
    let last = append_to_log(c.node(1), vec![unknown, good, garbage]).await;

    // The restarted node commits and applies them (a one-node quorum).
    c.spawn(1);
    c.wait_healthy(1).await;
    c.wait_leader().await;
    c.wait_applied(1, last).await;
    let mut otlp = c.otlp_client(1).await;
    export(&mut otlp, trace_request("after", 2, 2))
        .await
        .expect("the node still commits");
    for (service, spans) in [("before", 2), ("between", 1), ("after", 2)] {
        let found = traces_of_service(&c, 1, service, "linearizable")
            .await
            .unwrap();
        assert_eq!(found.len(), spans, "{service}");
    }
    let metrics = c.get(1, "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert_eq!(metric(&text, "tael_apply_rejected_entries_total"), 2);
    let log = c.node(1).log_text();
    assert!(
        log.contains("log entry rejected"),
        "the rejection is logged"
    );
}
