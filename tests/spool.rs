//! `--ingest-ack spooled`: exports are acknowledged once in a node's local
//! spool and forwarded into the Raft log later; each is applied exactly once,
//! across a lost quorum and SIGKILLs of the spooling node.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use tael_raft::http_client;

const SPANS_PER_TRACE: u64 = 3;

async fn metrics_text(c: &TestCluster, id: u64) -> String {
    let r = c.get(id, "/metrics").await;
    assert_eq!(r.status, 200);
    String::from_utf8(r.body).unwrap()
}

/// Spooled records from `origin` applied, as node `id`'s state says (0 if none yet).
async fn applied_from(c: &TestCluster, id: u64, origin: u64) -> Option<u64> {
    let r = http_client::get(&c.node(id).url("/metrics")).await.ok()?;
    let text = String::from_utf8(r.body).ok()?;
    let name = format!("tael_spool_applied_records{{origin=\"{origin}\"}}");
    Some(
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&name)
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0) as u64,
    )
}

/// Distinct (trace, span) pairs of `service` on node `id`, and how many spans
/// were returned in all (a duplicate would make them differ).
async fn spans_on(c: &TestCluster, id: u64, service: &str) -> Option<(usize, usize)> {
    let spans = traces_of_service(c, id, service, "local").await.ok()?;
    let distinct: BTreeSet<_> = spans.iter().cloned().collect();
    Some((distinct.len(), spans.len()))
}

async fn export_traces(c: &TestCluster, id: u64, service: &str, trace_nos: std::ops::Range<u64>) {
    let mut client = c.otlp_client(id).await;
    for t in trace_nos {
        let started = std::time::Instant::now();
        export(&mut client, trace_request(service, t, SPANS_PER_TRACE))
            .await
            .unwrap_or_else(|e| panic!("spooled export {t} to node {id}: {e}"));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a spooled export is answered at once, not after a commit"
        );
    }
}

/// Every node ends with exactly the `traces` exported, each span once, and
/// the replicated count of applied spooled records from `origin` is
/// `spooled` (never more on the way: a duplicate apply fails at once).
async fn wait_exactly_once(c: &TestCluster, service: &str, origin: u64, traces: u64, spooled: u64) {
    let want = (traces * SPANS_PER_TRACE) as usize;
    for n in c.nodes.iter().filter(|n| n.is_running()) {
        let id = n.id;
        wait_until(
            Duration::from_secs(60),
            &format!("node {id} has all {traces} spooled traces of {service}"),
            || async {
                let applied = applied_from(c, id, origin).await;
                assert!(
                    applied.is_none_or(|a| a <= spooled),
                    "node {id} applied {applied:?} spooled records from node {origin}, more than the {spooled} exported"
                );
                spans_on(c, id, service).await == Some((want, want)) && applied == Some(spooled)
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_exports_to_a_follower_appear_exactly_once_on_every_node() {
    let c = TestCluster::start(3, &["--ingest-ack", "spooled"]);
    c.init().await;
    let leader = c.wait_leader().await;
    let follower = if leader == 1 { 2 } else { 1 };

    export_traces(&c, follower, "spooled-follower", 0..30).await;
    // Logs take the same path (gRPC logs service).
    let mut logs = LogsServiceClient::connect(format!("http://{}", c.node(follower).otlp))
        .await
        .unwrap();
    for i in 0..5 {
        let record = LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000 + i,
            severity_number: 9,
            body: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(
                    opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(format!(
                        "spooled log {i}"
                    )),
                ),
            }),
            ..Default::default()
        };
        logs.export(logs_request(Some("spooled-follower"), vec![record]))
            .await
            .unwrap();
    }

    wait_exactly_once(&c, "spooled-follower", follower, 30, 35).await;
    for id in 1..=3 {
        let r = c
            .get(
                id,
                "/api/v1/logs?service=spooled-follower&consistency=local&limit=100",
            )
            .await;
        let v = r.json().unwrap();
        assert_eq!(v["count"], 5, "node {id}: {v}");
    }
    let text = metrics_text(&c, follower).await;
    assert_eq!(metric(&text, "tael_spool_appended_total"), 35);
    assert_eq!(metric(&text, "tael_spool_forwarded_total"), 35);
    assert_eq!(metric(&text, "tael_spool_pending_records"), 0);
    assert_eq!(metric(&text, "tael_spool_failed"), 0);
    // Nothing went to the spools of the nodes that got no exports.
    assert_eq!(
        metric(&metrics_text(&c, leader).await, "tael_spool_appended_total"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_exports_survive_no_quorum_and_restarts_and_apply_exactly_once() {
    const SERVICE: &str = "spooled-outage";
    let mut c = TestCluster::start(3, &["--ingest-ack", "spooled"]);
    c.init().await;
    c.wait_leader().await;
    // Some records are forwarded while the cluster is whole...
    export_traces(&c, 3, SERVICE, 0..10).await;
    wait_until(Duration::from_secs(30), "10 records forwarded", || async {
        let r = http_client::get(&c.node(3).url("/metrics")).await;
        r.is_ok_and(|r| {
            metric(
                &String::from_utf8_lossy(&r.body),
                "tael_spool_forwarded_total",
            ) == 10
        })
    })
    .await;
    // ...then node 3 keeps running alone: no quorum, no leader.
    c.kill(1);
    c.kill(2);

    export_traces(&c, 3, SERVICE, 10..30).await;
    let text = metrics_text(&c, 3).await;
    assert_eq!(metric(&text, "tael_spool_appended_total"), 30);
    assert_eq!(metric(&text, "tael_spool_forwarded_total"), 10, "no quorum");
    assert_eq!(metric(&text, "tael_spool_pending_records"), 20);

    // SIGKILL the spooling node twice before the cluster is back, spooling
    // more in between: each start is a new spool generation, and walrus
    // renumbers its blocks at every start.
    for (round, more) in [(1, 30..40), (2, 40..45)] {
        c.kill(3);
        c.spawn(3);
        c.wait_healthy(3).await;
        let text = metrics_text(&c, 3).await;
        assert!(
            metric(&text, "tael_spool_pending_bytes") > 0,
            "restart {round}: the spooled records came back from disk"
        );
        // The spool re-reads its files from the start and skips the ten
        // forwarded before the outage (the rest wait for a leader).
        let skipped = || async {
            let r = http_client::get(&c.node(3).url("/metrics")).await;
            r.is_ok_and(|r| {
                metric(
                    &String::from_utf8_lossy(&r.body),
                    "tael_spool_skipped_forwarded_total",
                ) == 10
            })
        };
        wait_until(
            Duration::from_secs(10),
            "forwarded records skipped on replay",
            skipped,
        )
        .await;
        export_traces(&c, 3, SERVICE, more).await;
    }

    // The others come back: everything acknowledged appears once.
    c.spawn(1);
    c.spawn(2);
    c.wait_leader().await;
    wait_exactly_once(&c, SERVICE, 3, 45, 45).await;
    let text = metrics_text(&c, 3).await;
    assert_eq!(metric(&text, "tael_spool_pending_records"), 0);
    assert_eq!(metric(&text, "tael_spool_pending_bytes"), 0);

    // A restart after the drain replays nothing twice.
    c.kill(3);
    c.spawn(3);
    c.wait_healthy(3).await;
    export_traces(&c, 3, SERVICE, 45..50).await;
    wait_exactly_once(&c, SERVICE, 3, 50, 50).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for id in 1..=3 {
        assert_eq!(applied_from(&c, id, 3).await, Some(50), "node {id}");
    }
}
