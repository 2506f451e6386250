//! Retention: what ages past each signal's retention disappears from every
//! node (spans with their service, logs from search and full text, metric
//! points, LLM payloads before their spans), what is younger stays, the
//! replicas agree afterwards, and a node that joins later holds the same.

mod common;

use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::metrics::v1::Metric;

const MINUTE: u64 = 60 * 1_000_000_000;

/// Every signal kept 10 minutes, LLM payloads 5, cuts every second.
const RETENTION_ARGS: [&str; 10] = [
    "--retention-traces",
    "10m",
    "--retention-logs",
    "10m",
    "--retention-metrics",
    "10m",
    "--retention-llm-payloads",
    "5m",
    "--compaction-interval",
    "1s",
];

/// One span of `service` that started `age_nanos` ago, as trace `trace_no`;
/// with a prompt when `prompt` is given.
fn aged_trace(
    service: &str,
    trace_no: u64,
    age_nanos: u64,
    prompt: Option<&str>,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    let mut req = aged_trace_request(service, trace_no, 1, age_nanos, |_| 1_000);
    if let Some(p) = prompt {
        add_llm_prompt(&mut req, p);
    }
    req
}

fn aged_log(body: &str, age_nanos: u64) -> opentelemetry_proto::tonic::logs::v1::LogRecord {
    string_log(body, now_nanos() - age_nanos, 9)
}

fn aged_gauge(name: &str, age_nanos: u64) -> Metric {
    gauge_metric(name, &[(now_nanos() - age_nanos, 1.0)])
}

/// What node `node` holds of the test's data, by linearizable reads.
async fn holdings(c: &TestCluster, node: u64, prompt_sha: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (trace_no, name) in [(1, "old trace"), (2, "llm trace"), (3, "new trace")] {
        let r = c
            .get(node, &format!("/api/v1/traces/{}", trace_hex(trace_no)))
            .await;
        match r.status {
            200 => out.push(name.to_string()),
            404 => {}
            s => panic!("node {node}: trace {trace_no}: status {s}"),
        }
    }
    let services = c.get_json(node, "/api/v1/services").await;
    for s in services["services"].as_array().unwrap() {
        out.push(format!("service {}", s["name"].as_str().unwrap()));
    }
    let r = c.get(node, &format!("/api/v1/blobs/{prompt_sha}")).await;
    if r.status == 200 {
        out.push("prompt".into());
    }
    for body in ["ancient-marker", "recent-marker"] {
        let v = c.get_json(node, &format!("/api/v1/logs?text={body}")).await;
        if !v["logs"].as_array().unwrap().is_empty() {
            out.push(format!("log {body}"));
        }
    }
    // The LLM span stays, but its prompt's full-text document went with
    // the payload.
    let v = c.get_json(node, "/api/v1/traces?text=aged").await;
    if !v["spans"].as_array().unwrap().is_empty() {
        out.push("span text".into());
    }
    for name in ["ancient_gauge", "recent_gauge"] {
        let v = c
            .get_json(node, &format!("/api/v1/metrics?name={name}"))
            .await;
        if !v["metrics"].as_array().unwrap().is_empty() {
            out.push(format!("metric {name}"));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aged_records_disappear_everywhere_and_the_rest_stays() {
    let mut c = TestCluster::start(3, &RETENTION_ARGS);
    c.init().await;
    let leader = c.wait_leader().await;
    let mut client = c.otlp_client(leader).await;
    export(&mut client, aged_trace("old-svc", 1, 20 * MINUTE, None))
        .await
        .unwrap();
    export(
        &mut client,
        aged_trace("llm-svc", 2, 7 * MINUTE, Some("an aged prompt")),
    )
    .await
    .unwrap();
    export(&mut client, aged_trace("new-svc", 3, MINUTE, None))
        .await
        .unwrap();
    let logs = logs_request(
        Some("log-svc"),
        vec![
            aged_log("ancient-marker", 20 * MINUTE),
            aged_log("recent-marker", MINUTE),
        ],
    );
    post_protobuf_ok(&c, leader, "/v1/logs", &logs).await;
    let metrics = metrics_request(
        "metric-svc",
        vec![
            aged_gauge("ancient_gauge", 20 * MINUTE),
            aged_gauge("recent_gauge", MINUTE),
        ],
    );
    post_protobuf_ok(&c, leader, "/v1/metrics", &metrics).await;

    let llm = c
        .get_json(leader, &format!("/api/v1/traces/{}", trace_hex(2)))
        .await;
    let prompt_sha = llm["spans"][0]["llm"]["prompt_sha256"]
        .as_str()
        .unwrap()
        .to_string();

    // Wait for a cut that saw everything: the old records' deletion shows.
    wait_until(Duration::from_secs(30), "a retention cut", || async {
        let v = c.get_json(leader, "/api/v1/storage").await;
        let d = &v["last_cut"]["deleted_total"];
        d["spans"] == 1 && d["logs"] == 1 && d["metric_points"] == 1 && d["blobs"] == 1
    })
    .await;

    let expected = vec![
        "llm trace".to_string(),
        "log recent-marker".into(),
        "metric recent_gauge".into(),
        "new trace".into(),
        "service llm-svc".into(),
        "service new-svc".into(),
    ];
    for node in 1..=3 {
        assert_eq!(
            holdings(&c, node, &prompt_sha).await,
            expected,
            "node {node}"
        );
    }
    // The LLM span outlives its payload and keeps the payload's hash.
    let llm = c
        .get_json(1, &format!("/api/v1/traces/{}", trace_hex(2)))
        .await;
    assert_eq!(llm["spans"][0]["llm"]["prompt_sha256"], prompt_sha.as_str());

    let storage = c.get_json(leader, "/api/v1/storage").await;
    assert_eq!(storage["retention"]["traces_secs"], 600, "{storage}");
    assert_eq!(storage["retention"]["llm_payloads_secs"], 300);
    assert_eq!(storage["last_cut"]["pending"], false);
    assert!(storage["tiers"]["hot"]["spans"]["disk_bytes"]
        .as_u64()
        .is_some());

    for node in 1..=3 {
        let m = String::from_utf8(c.get(node, "/metrics").await.body).unwrap();
        assert_eq!(
            metric(&m, "tael_retention_deleted_total{signal=\"spans\"}"),
            1,
            "node {node}"
        );
        assert!(metric(&m, "tael_retention_last_cut_timestamp_seconds") > 0);
        assert_eq!(metric(&m, "tael_query_shed_total"), 0);
    }

    // Every replica deleted exactly the same records.
    c.assert_replicas_agree(leader, Duration::from_secs(20))
        .await;

    // A node that joins later replays the cuts and holds the same.
    let new = c.join_learner(leader, leader).await;
    assert_eq!(holdings(&c, new, &prompt_sha).await, expected, "node {new}");
}
