//! The cold tier: records older than the hot window move to Parquet files
//! on every node, every query answers the same JSON before and after the
//! move, retention drops cold files, and a node killed in the middle of
//! moves comes back with everything readable once, agreeing with the others.

mod common;

use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::metrics::v1::Metric;

const SEC: u64 = 1_000_000_000;
const MINUTE: u64 = 60 * SEC;

/// Young records are this old when sent: hot for the first ~20 s of the
/// test, cold after.
const YOUNG_AGE: u64 = 40 * SEC;
const YOUNG_TRACES: u64 = 20;
const SPANS_PER_TRACE: u64 = 5;
const YOUNG_LOGS: u64 = 30;
const YOUNG_POINTS: u64 = 10;

/// A trace of `spans` spans of `service` that started `age` ago (the
/// spans a millisecond apart, span `i` lasting `i + 1` half milliseconds);
/// span 0 carries `prompt` when given.
fn aged_trace(
    service: &str,
    trace_no: u64,
    spans: u64,
    age: u64,
    prompt: Option<&str>,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    let mut req = aged_trace_request(service, trace_no, spans, age, |i| 500_000 * (i + 1));
    if let Some(p) = prompt {
        add_llm_prompt(&mut req, p);
    }
    req
}

fn log_at(
    body: &str,
    time: u64,
    trace: Option<u64>,
) -> opentelemetry_proto::tonic::logs::v1::LogRecord {
    opentelemetry_proto::tonic::logs::v1::LogRecord {
        trace_id: trace.map(|t| trace_id(t).to_vec()).unwrap_or_default(),
        ..string_log(body, time, 13)
    }
}

/// A gauge whose `i`-th point, at `times[i]`, has the value `i`.
fn gauge(name: &str, times: &[u64]) -> Metric {
    let points: Vec<(u64, f64)> = times
        .iter()
        .enumerate()
        .map(|(i, &t)| (t, i as f64))
        .collect();
    gauge_metric(name, &points)
}

async fn cold_rows(c: &TestCluster, node: u64) -> (u64, u64, u64) {
    let v = c.get_json(node, "/api/v1/storage").await;
    let cold = &v["tiers"]["cold"];
    let rows = |s: &str| cold[s]["rows"].as_u64().unwrap_or(0);
    (rows("spans"), rows("logs"), rows("metric_points"))
}

/// Every endpoint whose answer must not change when records move, as
/// paths with fixed windows (no "last hour" relative to the clock).
fn stable_paths(window: (u64, u64), prompt_sha: &str) -> Vec<String> {
    let (from_s, to_s) = (window.0 / SEC, window.1 / SEC + 1);
    let (from_us, to_us) = (window.0 / 1_000, window.1 / 1_000 + 1);
    let w = format!("start={from_s}&end={to_s}");
    vec![
        format!("/api/v1/traces/{}", trace_hex(1)),
        format!("/api/v1/traces/{}", trace_hex(7)),
        format!("/api/v1/traces/{}/otlp", trace_hex(1)),
        format!("/api/v1/traces?service=young-svc&limit=1000&{w}"),
        format!("/api/v1/traces?limit=7&{w}"),
        format!("/api/v1/traces?status=ok&min_duration_ms=0&limit=1000&{w}"),
        "/api/v1/traces?text=youngprompt&limit=100".to_string(),
        "/api/v1/services".to_string(),
        format!("/api/v1/blobs/{prompt_sha}"),
        format!("/api/v1/logs?service=log-svc&limit=1000&{w}"),
        format!("/api/v1/logs?limit=5&{w}"),
        format!("/api/v1/logs?trace_id={}&limit=100&{w}", trace_hex(1)),
        "/api/v1/logs?text=youngmarker17&limit=100".to_string(),
        format!("/api/v1/metrics?name=young_gauge&limit=1000&{w}"),
        format!("/api/v1/metrics?limit=1000&{w}"),
        format!("/api/v1/summary?{w}"),
        // Three seconds around the first young spans: unless it happens to
        // hold a minute start, a window this short is read from the spans
        // themselves (in both tiers), not from minute rollups.
        format!("/api/v1/summary?start={}&end={}", from_s, from_s + 3),
        format!("/api/v1/topology?{w}"),
        format!("/jaeger/api/traces?service=young-svc&limit=50&start={from_us}&end={to_us}"),
        format!("/jaeger/api/traces/{}", trace_hex(3)),
        format!(
            "/jaeger/api/dependencies?endTs={}&lookback={}",
            to_us / 1_000,
            (to_us - from_us) / 1_000 + 1
        ),
        format!("/tempo/api/search?q=%7B%7D&limit=100&{w}"),
        format!("/tempo/api/traces/{}", trace_hex(2)),
        format!(
            "/loki/api/v1/query_range?query=%7Bservice_name%3D%22log-svc%22%7D&limit=1000&start={}&end={}",
            window.0,
            window.1 + 1
        ),
        format!(
            "/loki/api/v1/query_range?query=%7Bservice_name%3D%22log-svc%22%7D&limit=1000&direction=forward&start={}&end={}",
            window.0,
            window.1 + 1
        ),
        format!(
            "/loki/api/v1/query_range?query=sum%20by%20(level)%20(count_over_time(%7Bservice_name%3D%22log-svc%22%7D%5B1m%5D))&step=10&start={}&end={}",
            window.0,
            window.1 + 1
        ),
    ]
}

/// An answer without what depends on the moment (Loki's `stats` carry the
/// query's execution time).
fn stable_body(path: &str, body: &[u8]) -> String {
    if !path.starts_with("/loki/") {
        return String::from_utf8_lossy(body).into_owned();
    }
    let mut v: serde_json::Value = serde_json::from_slice(body).expect("Loki answers JSON");
    assert!(
        v["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{path} finds the test's logs: {v}"
    );
    if let Some(data) = v.get_mut("data").and_then(|d| d.as_object_mut()) {
        data.remove("stats");
    }
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aged_records_move_to_cold_files_and_every_answer_stays_the_same() {
    let mut c = TestCluster::start(3, &ONE_MINUTE_HOT_WINDOW_ARGS);
    c.init().await;
    let leader = c.wait_leader().await;
    let mut client = c.otlp_client(leader).await;

    // Past the retention: moved, then dropped by the next cut.
    export(
        &mut client,
        aged_trace("ancient-svc", 100, 2, 20 * MINUTE, None),
    )
    .await
    .unwrap();
    let ancient = now_nanos() - 20 * MINUTE;
    post_protobuf_ok(
        &c,
        leader,
        "/v1/logs",
        &logs_request(
            Some("log-svc"),
            vec![log_at("ancientmarker", ancient, None)],
        ),
    )
    .await;
    post_protobuf_ok(
        &c,
        leader,
        "/v1/metrics",
        &metrics_request("metric-svc", vec![gauge("ancient_gauge", &[ancient])]),
    )
    .await;

    // Young: hot now, cold in about twenty seconds.
    let young_start = now_nanos() - YOUNG_AGE;
    for t in 1..=YOUNG_TRACES {
        let prompt = (t == 1).then_some("a youngprompt to keep");
        export(
            &mut client,
            aged_trace("young-svc", t, SPANS_PER_TRACE, YOUNG_AGE, prompt),
        )
        .await
        .unwrap();
    }
    let logs = (0..YOUNG_LOGS)
        .map(|i| {
            log_at(
                &format!("youngmarker{i}"),
                young_start + i * 1_000,
                (i % 3 == 0).then_some(1),
            )
        })
        .collect();
    post_protobuf_ok(&c, leader, "/v1/logs", &logs_request(Some("log-svc"), logs)).await;
    let times: Vec<u64> = (0..YOUNG_POINTS).map(|i| young_start + i * 1_000).collect();
    post_protobuf_ok(
        &c,
        leader,
        "/v1/metrics",
        &metrics_request("metric-svc", vec![gauge("young_gauge", &times)]),
    )
    .await;
    // Fresh: stays hot.
    export(&mut client, aged_trace("fresh-svc", 50, 2, 0, None))
        .await
        .unwrap();
    let window = (young_start - SEC, now_nanos() + 5 * SEC);

    let llm = c
        .get_json(leader, &format!("/api/v1/traces/{}", trace_hex(1)))
        .await;
    let prompt_sha = llm["spans"][0]["llm"]["prompt_sha256"]
        .as_str()
        .expect("the prompt went to a blob")
        .to_string();
    let paths = stable_paths(window, &prompt_sha);
    // The ancient records go first (moved, then dropped by a cut).
    for node in 1..=3 {
        wait_until(
            Duration::from_secs(15),
            "ancient records dropped",
            || async {
                let r = c
                    .get(node, &format!("/api/v1/traces/{}", trace_hex(100)))
                    .await;
                let services = c.get_json(node, "/api/v1/services").await.to_string();
                r.status == 404 && !services.contains("ancient-svc")
            },
        )
        .await;
    }
    // Full text is indexed behind apply: wait for it before taking answers.
    for node in 1..=3 {
        wait_until(Duration::from_secs(15), "full-text indexed", || async {
            let logs = c.get_json(node, "/api/v1/logs?text=youngmarker17").await;
            let spans = c.get_json(node, "/api/v1/traces?text=youngprompt").await;
            !logs["logs"].as_array().unwrap().is_empty()
                && !spans["spans"].as_array().unwrap().is_empty()
        })
        .await;
    }
    let mut before = Vec::new();
    for node in 1..=3 {
        before.push(c.answers_by_path(node, &paths, stable_body).await);
    }
    // The young records were still hot when those answers were taken.
    let young = YOUNG_TRACES * SPANS_PER_TRACE;
    for node in 1..=3 {
        let (spans, logs, points) = cold_rows(&c, node).await;
        assert!(
            spans < young && logs < YOUNG_LOGS && points < YOUNG_POINTS,
            "node {node}: young records moved too early ({spans}, {logs}, {points})"
        );
    }
    assert!(
        now_nanos() - young_start < MINUTE,
        "answers taken within the hot window"
    );

    // Every node moves the young records, and drops the ancient ones.
    for node in 1..=3 {
        wait_until(Duration::from_secs(60), "young records cold", || async {
            cold_rows(&c, node).await == (young, YOUNG_LOGS, YOUNG_POINTS)
        })
        .await;
    }
    for node in 1..=3 {
        let after = c.answers_by_path(node, &paths, stable_body).await;
        for (path, answer) in &before[node as usize - 1] {
            assert_eq!(
                &after[path], answer,
                "node {node}: {path} changed with the move"
            );
        }
        let storage = c.get_json(node, "/api/v1/storage").await;
        let cold = &storage["tiers"]["cold"];
        assert!(cold["spans"]["files"].as_u64().unwrap() >= 1, "{storage}");
        assert!(cold["spans"]["bytes"].as_u64().unwrap() > 0, "{storage}");
        assert_eq!(cold["missing_files"], serde_json::json!([]));
        assert_eq!(storage["retention"]["hot_window_secs"], 60);
        let oldest = cold["spans"]["oldest_unix_nanos"].as_u64().unwrap();
        assert!(
            oldest >= young_start - SEC,
            "ancient spans were dropped: {storage}"
        );
        // Retention took the ancient records from the cold tier.
        let r = c
            .get(node, &format!("/api/v1/traces/{}", trace_hex(100)))
            .await;
        assert_eq!(r.status, 404, "node {node}: the ancient trace is gone");
        let v = c.get_json(node, "/api/v1/logs?text=ancientmarker").await;
        assert!(v["logs"].as_array().unwrap().is_empty(), "{v}");
        let v = c.get_json(node, "/api/v1/metrics?name=ancient_gauge").await;
        assert!(v["metrics"].as_array().unwrap().is_empty(), "{v}");
        let services = c.get_json(node, "/api/v1/services").await.to_string();
        assert!(!services.contains("ancient-svc"), "{services}");
    }
    // Cold files are the same bytes on every node.
    let manifests: Vec<serde_json::Value> = {
        let mut v = Vec::new();
        for node in 1..=3 {
            v.push(c.get_json(node, "/api/v1/storage").await["tiers"]["cold"].clone());
        }
        v
    };
    assert_eq!(manifests[0], manifests[1]);
    assert_eq!(manifests[0], manifests[2]);
    c.assert_replicas_agree(leader, Duration::from_secs(60))
        .await;

    // kill -9 in the middle of moves: a follower dies while bulk data
    // older than the window streams in and moves out.
    let bulk_exports = 30u64;
    let bulk_traces_per_export = 40u64;
    let bulk_spans = 3u64;
    let victim = if leader == 3 { 2 } else { 3 };
    for e in 0..bulk_exports {
        let mut req = aged_trace("bulk-svc", 1_000 + e * 1_000, bulk_spans, 2 * MINUTE, None);
        for t in 1..bulk_traces_per_export {
            let more = aged_trace(
                "bulk-svc",
                1_000 + e * 1_000 + t,
                bulk_spans,
                2 * MINUTE,
                None,
            );
            req.resource_spans[0].scope_spans[0]
                .spans
                .extend(more.resource_spans[0].scope_spans[0].spans.clone());
        }
        export(&mut client, req).await.unwrap();
        if e == bulk_exports / 2 {
            c.kill(victim);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.spawn(victim);
    c.wait_healthy(victim).await;
    let bulk_total = bulk_exports * bulk_traces_per_export * bulk_spans;
    for node in 1..=3 {
        wait_until(Duration::from_secs(90), "bulk records cold", || async {
            cold_rows(&c, node).await.0 == young + bulk_total
        })
        .await;
    }
    for node in 1..=3 {
        let services = c.get_json(node, "/api/v1/services").await;
        let bulk = services["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "bulk-svc")
            .cloned()
            .unwrap_or_default();
        assert_eq!(bulk["span_count"], bulk_total, "node {node}: {services}");
        for e in [0, bulk_exports / 2, bulk_exports - 1] {
            for t in [0, bulk_traces_per_export - 1] {
                let id = trace_hex(1_000 + e * 1_000 + t);
                let v = c.get_json(node, &format!("/api/v1/traces/{id}")).await;
                assert_eq!(v["span_count"], bulk_spans, "node {node}: trace {id} once");
            }
        }
        let v = c
            .get_json(
                node,
                &format!(
                    "/api/v1/traces?service=bulk-svc&limit=10000&start=0&end={}",
                    now_nanos() / SEC + 1
                ),
            )
            .await;
        assert_eq!(
            v["spans"].as_array().unwrap().len() as u64,
            bulk_total,
            "node {node}: no duplicates"
        );
        // The young records still answer as before the move.
        let after = c.answers_by_path(node, &paths[..3], stable_body).await;
        for (path, answer) in &after {
            assert_eq!(
                &before[node as usize - 1][path],
                answer,
                "node {node}: {path}"
            );
        }
        let cold = c.get_json(node, "/api/v1/storage").await["tiers"]["cold"].clone();
        assert_eq!(cold["missing_files"], serde_json::json!([]), "node {node}");
    }
    let leader = c.wait_leader().await;
    c.assert_replicas_agree(leader, Duration::from_secs(60))
        .await;
}

/// A node that joins after moves, when the log before them is purged,
/// catches up by snapshot: it receives the cold files with it and answers
/// from them as the others do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_installs_a_snapshot_receives_the_cold_files() {
    let mut args = ONE_MINUTE_HOT_WINDOW_ARGS.to_vec();
    args.extend([
        "--snapshot-every-entries",
        "20",
        "--log-entries-kept-after-snapshot",
        "5",
    ]);
    let mut c = TestCluster::start(3, &args);
    c.init().await;
    let leader = c.wait_leader().await;
    let mut client = c.otlp_client(leader).await;
    for t in 1..=10 {
        export(&mut client, aged_trace("old-svc", t, 3, 2 * MINUTE, None))
            .await
            .unwrap();
    }
    let old = now_nanos() - 2 * MINUTE;
    let logs = (0..8)
        .map(|i| log_at(&format!("oldlog{i}"), old + i, None))
        .collect();
    post_protobuf_ok(&c, leader, "/v1/logs", &logs_request(Some("log-svc"), logs)).await;
    for node in 1..=3 {
        wait_until(Duration::from_secs(30), "moved", || async {
            let (spans, logs, _) = cold_rows(&c, node).await;
            spans == 30 && logs == 8
        })
        .await;
    }
    // Enough entries that the leader purges the moves from its log.
    for t in 100..140 {
        export(&mut client, aged_trace("new-svc", t, 1, 0, None))
            .await
            .unwrap();
    }
    let me = c.node_entry(leader, leader).await;
    assert!(me["purged_index"].as_u64().unwrap() > 10, "{me}");

    let new = c.join_learner(leader, leader).await;
    assert!(
        c.metric_of(new, "tael_snapshots_installed_total").await >= 1,
        "the new node installed a snapshot"
    );
    assert_eq!(cold_rows(&c, new).await, cold_rows(&c, leader).await);
    let storage = c.get_json(new, "/api/v1/storage").await;
    assert_eq!(
        storage["tiers"]["cold"]["missing_files"],
        serde_json::json!([])
    );
    for path in [
        format!("/api/v1/traces/{}", trace_hex(4)),
        "/api/v1/traces?service=old-svc&limit=100&start=0".to_string(),
        "/api/v1/logs?service=log-svc&limit=100&start=0".to_string(),
    ] {
        let (a, b) = (
            c.get_json(leader, &path).await,
            c.get_json(new, &path).await,
        );
        assert_eq!(a, b, "{path}");
        assert!(a.to_string().contains("old"), "{path}: {a}");
    }
    c.assert_replicas_agree(leader, Duration::from_secs(60))
        .await;
}
