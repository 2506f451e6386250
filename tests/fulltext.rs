//! Full-text search over LLM prompts and completions: linearizable text
//! queries see every acknowledged span on every node, the index catches up
//! after a crash, and is rebuilt after a snapshot install.

mod common;

use common::*;

fn llm_request(
    trace_no: u64,
    prompt: &str,
    completion: &str,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    let mut req = trace_request(
        if trace_no.is_multiple_of(2) {
            "agent-even"
        } else {
            "agent-odd"
        },
        trace_no,
        1,
    );
    let span = &mut req.resource_spans[0].scope_spans[0].spans[0];
    span.attributes.extend([
        kv("gen_ai.system", "openai"),
        kv("gen_ai.request.model", "gpt-4o"),
        kv("gen_ai.prompt", prompt),
        kv("gen_ai.completion", completion),
    ]);
    req
}

async fn text_hits(c: &TestCluster, node: u64, query: &str) -> Vec<String> {
    let q: String = form_urlencoded_encode(query);
    let r = c
        .get(
            node,
            &format!("/api/v1/traces?text={q}&limit=1000&consistency=linearizable"),
        )
        .await;
    assert_eq!(
        r.status,
        200,
        "node {node}: {}",
        String::from_utf8_lossy(&r.body)
    );
    let mut ids: Vec<String> = r.json().unwrap()["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["trace_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn form_urlencoded_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_queries_are_linearizable_and_survive_crashes_and_snapshots() {
    let mut c = TestCluster::start(
        3,
        &[
            "--snapshot-every-entries",
            "20",
            "--log-entries-kept-after-snapshot",
            "5",
        ],
    );
    c.init().await;
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let other = (1..=3).find(|&n| n != leader && n != follower).unwrap();

    let mut client = c.otlp_client(follower).await;
    for i in 0..10u64 {
        let topic = if i < 3 {
            "quorum partition heals"
        } else {
            "kubernetes eviction storm"
        };
        export(
            &mut client,
            llm_request(i, &format!("explain the {topic} #{i}"), "sure"),
        )
        .await
        .unwrap();
    }
    // Read at once, on every node: linearizable text search waits for the index.
    let expect: Vec<String> = (0..3).map(trace_hex).collect();
    for n in 1..=3 {
        assert_eq!(text_hits(&c, n, "partition").await, expect, "node {n}");
    }
    // Other filters narrow the hits; completions are searched too.
    let r = c
        .get(leader, "/api/v1/traces?text=partition&service=agent-even")
        .await;
    let v = r.json().unwrap();
    let got: Vec<&str> = v["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        vec![trace_hex(2).as_str(), trace_hex(0).as_str()],
        "newest first"
    );
    assert_eq!(text_hits(&c, other, "sure").await.len(), 10);
    assert!(text_hits(&c, other, "nonexistentword").await.is_empty());

    // Hostile query syntax is parsed leniently; bad parameters are 400s.
    for q in ["\"unbalanced (", "AND OR NOT", "field:value^^", "*"] {
        let r = c
            .get(
                follower,
                &format!("/api/v1/traces?text={}", form_urlencoded_encode(q)),
            )
            .await;
        assert_eq!(r.status, 200, "{q}: {}", String::from_utf8_lossy(&r.body));
    }
    for q in ["", "%20%20", &"x".repeat(2000)] {
        let r = c.get(follower, &format!("/api/v1/traces?text={q}")).await;
        assert_eq!(r.status, 400, "{q:.20}");
    }

    // A node killed right after acknowledging catches its index up on restart.
    c.kill(other);
    for i in 10..60u64 {
        export(
            &mut client,
            llm_request(i, &format!("raft election timeout {i}"), "ok"),
        )
        .await
        .unwrap();
    }
    // The leader purged its log: `other` comes back by snapshot and rebuilds.
    c.spawn(other);
    c.wait_healthy(other).await;
    c.wait_leader().await;
    let expect: Vec<String> = {
        let mut v: Vec<String> = (10..60).map(trace_hex).collect();
        v.sort();
        v
    };
    assert_eq!(text_hits(&c, other, "election").await, expect);
    assert_eq!(
        text_hits(&c, other, "partition").await.len(),
        3,
        "old text is back too"
    );
    let m = String::from_utf8(c.get(other, "/metrics").await.body).unwrap();
    assert!(
        metric(&m, "tael_snapshots_installed_total") >= 1,
        "caught up by snapshot"
    );
    assert!(
        metric(&m, "tael_fulltext_rebuilds_total") >= 1,
        "rebuilt after the install"
    );

    // Kill the leader right after an ack: the new leader's index has it.
    export(
        &mut client,
        llm_request(99, "a zebra crossing the cluster", "ok"),
    )
    .await
    .unwrap();
    c.kill(leader);
    let new_leader = c.wait_leader().await;
    assert_eq!(
        text_hits(&c, new_leader, "zebra").await,
        vec![trace_hex(99)]
    );
    c.spawn(leader);
    c.wait_healthy(leader).await;
    // Until it hears from the leader it answers 503 (no leader known).
    c.wait_leader().await;
    assert_eq!(
        text_hits(&c, leader, "zebra").await,
        vec![trace_hex(99)],
        "restarted node"
    );
}

fn log_record(body: &str, at_nanos: u64) -> opentelemetry_proto::tonic::logs::v1::LogRecord {
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue};
    opentelemetry_proto::tonic::logs::v1::LogRecord {
        time_unix_nano: at_nanos,
        observed_time_unix_nano: at_nanos,
        severity_number: 9,
        body: Some(AnyValue {
            value: Some(Value::StringValue(body.into())),
        }),
        ..Default::default()
    }
}

/// Log bodies are searchable with `text=` on every node; a large body goes
/// to the blob store whole, and text at its very end is still found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_bodies_are_searchable_and_large_ones_move_to_blobs() {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    let c = TestCluster::start(3, &[]);
    c.init().await;
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let large = format!("{} needle-at-the-end", "lorem ipsum ".repeat(3000));
    assert!(large.len() > tael_raft::state::hot::LARGE_LOG_BODY_BYTES);
    let req = logs_request(
        Some("billing"),
        vec![
            log_record("invoice 17 rejected by the payment gateway", now - 3_000),
            log_record("invoice 18 paid", now - 2_000),
            log_record(&large, now - 1_000),
        ],
    );
    let mut client = LogsServiceClient::connect(format!("http://{}", c.node(follower).otlp))
        .await
        .unwrap();
    client.export(req.clone()).await.unwrap();
    // The same export again (a retry) must not show up twice.
    client.export(req).await.unwrap();

    for n in 1..=3 {
        let r = c
            .get(n, "/api/v1/logs?text=invoice&consistency=linearizable")
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json().unwrap();
        let bodies: Vec<&str> = v["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["body"].as_str().unwrap())
            .collect();
        assert_eq!(
            bodies,
            vec![
                "invoice 18 paid",
                "invoice 17 rejected by the payment gateway"
            ],
            "node {n}"
        );
    }
    let r = c
        .get(leader, "/api/v1/logs?text=gateway&service=other")
        .await;
    assert_eq!(r.json().unwrap()["count"], 0, "other filters still apply");

    let r = c.get(leader, "/api/v1/logs?text=needle-at-the-end").await;
    let v = r.json().unwrap();
    assert_eq!(v["count"], 1, "{v}");
    let log = &v["logs"][0];
    let sha = log["body_sha256"]
        .as_str()
        .expect("large body went to the blob store");
    assert!(
        log["body"].as_str().unwrap().len() < large.len(),
        "the record keeps a preview"
    );
    for n in 1..=3 {
        let r = c.get(n, &format!("/api/v1/blobs/{sha}")).await;
        assert_eq!(String::from_utf8(r.body).unwrap(), large, "node {n}");
    }
    let r = c.get(leader, "/api/v1/logs?text=").await;
    assert_eq!(r.status, 400);
}
