//! The real OpenTelemetry Python SDK exports traces, logs and metrics over
//! OTLP/gRPC and OTLP/HTTP to a 3-node cluster (to followers and to the
//! leader), and everything it sent reads back: through the REST API, and
//! the spans also as OTLP, equal to what the SDK's exporters encoded.
//!
//! Needs the SDK (`scripts/install-test-deps`). Without it the test is
//! skipped on a developer machine, and fails when `CI=true`.

mod common;
#[path = "fixtures/otlp_requests.rs"]
mod fixture;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message;
use serde_json::Value as J;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otel_sdk/send.py");
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn sdk_available() -> bool {
    std::process::Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

async fn run_sdk(grpc: &str, http: &str, run_id: &str) -> J {
    run_sdk_with(grpc, &format!("http://{http}"), run_id, &[]).await
}

/// The script with `extra` arguments (TLS, key); `http` is a base URL.
async fn run_sdk_with(grpc: &str, http: &str, run_id: &str, extra: &[&str]) -> J {
    assert!(Path::new(SCRIPT).exists());
    let out = tokio::time::timeout(
        SCRIPT_TIMEOUT,
        tokio::process::Command::new("python3")
            .arg(SCRIPT)
            .args(["--grpc", grpc, "--http", http, "--run-id", run_id])
            .args(extra)
            // requests lets these override the CA an exporter configures
            // on its session (`certificate_file`).
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the SDK script finishes in time")
    .expect("run python3");
    assert!(
        out.status.success(),
        "SDK script failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "SDK script output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

async fn get_json(c: &TestCluster, id: u64, path: &str) -> J {
    let r = c.get(id, path).await;
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json().unwrap()
}

fn one<'a>(list: &'a [J], field: &str, value: &str) -> &'a J {
    let found: Vec<&J> = list.iter().filter(|x| x[field] == value).collect();
    assert_eq!(
        found.len(),
        1,
        "one record with {field}={value} in {list:?}"
    );
    found[0]
}

fn from_hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "even hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The trace as node `id` gives it back over OTLP equals what the SDK's
/// exporter encoded (modulo order).
async fn verify_otlp(c: &TestCluster, id: u64, sent: &J) {
    let trace_id = sent["trace_id"].as_str().unwrap();
    let encoded = from_hex(sent["otlp_traces_hex"].as_str().unwrap());
    let req = ExportTraceServiceRequest::decode(&encoded[..]).expect("the SDK's encoding");
    let spans: usize = req
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum();
    assert_eq!(spans as u64, sent["spans"].as_u64().unwrap());
    let r = c.get(id, &format!("/api/v1/traces/{trace_id}/otlp")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let back = TracesData::decode(&r.body[..]).expect("protobuf TracesData");
    assert_eq!(
        fixture::normalised_traces(back),
        fixture::normalised_traces(fixture::traces_of(req)),
        "node {id}, trace {trace_id}"
    );
}

/// Checks everything one SDK run sent over one transport, as node `id` sees it.
async fn verify(c: &TestCluster, id: u64, sent: &J) {
    let service = sent["service"].as_str().unwrap();
    let trace_id = sent["trace_id"].as_str().unwrap();

    let spans = traces_of_service(c, id, service, "linearizable")
        .await
        .unwrap();
    assert_eq!(
        spans.len() as u64,
        sent["spans"].as_u64().unwrap(),
        "{service}"
    );
    verify_otlp(c, id, sent).await;
    let t = get_json(c, id, &format!("/api/v1/traces/{trace_id}")).await;
    assert_eq!(t["span_count"], 5);
    let tspans = t["spans"].as_array().unwrap();
    let root = one(tspans, "operation", "sdk-root");
    assert_eq!(root["service"], service);
    assert_eq!(root["attributes"]["run.service"], service);
    assert!(root.get("parent_span_id").is_none());
    let child = one(tspans, "operation", "sdk-child-2");
    assert_eq!(child["kind"], "client");
    assert_eq!(child["parent_span_id"], root["span_id"]);
    assert_eq!(child["attributes"]["i"], "2");

    let logs = get_json(c, id, &format!("/api/v1/logs?service={service}")).await;
    let logs = logs["logs"].as_array().unwrap().clone();
    assert_eq!(
        logs.len() as u64,
        sent["logs"].as_u64().unwrap(),
        "{logs:?}"
    );
    let err = one(&logs, "body", "sdk error log");
    assert_eq!(err["severity"], "error");
    assert_eq!(err["severity_text"], "ERROR");
    assert_eq!(err["trace_id"], trace_id, "logged inside the root span");
    assert_eq!(err["attributes"]["order.id"], "o-1");
    assert_eq!(one(&logs, "body", "sdk warning log")["severity"], "warn");
    assert_eq!(one(&logs, "body", "sdk info log")["severity"], "info");
    let debug = one(&logs, "body", "sdk debug log outside any span");
    assert_eq!(debug["severity"], "debug");
    assert_eq!(debug["trace_id"], J::Null);
    let by_trace = get_json(c, id, &format!("/api/v1/logs?trace_id={trace_id}")).await;
    assert_eq!(by_trace["count"], 3);

    let m = get_json(c, id, &format!("/api/v1/metrics?service={service}")).await;
    let points = m["metrics"].as_array().unwrap().clone();
    let named = |n: &str| -> Vec<J> { points.iter().filter(|p| p["name"] == n).cloned().collect() };
    let requests = named("sdk.requests");
    assert_eq!(
        requests.len(),
        2,
        "one point per attribute set: {requests:?}"
    );
    let mut values: Vec<f64> = requests
        .iter()
        .map(|p| p["value"].as_f64().unwrap())
        .collect();
    values.sort_by(f64::total_cmp);
    assert_eq!(values, vec![3.0, 4.0]);
    assert!(requests.iter().all(|p| p["metric_type"] == "sum"
        && p["temporality"] == "cumulative"
        && p["is_monotonic"] == true
        && p["unit"] == "{request}"));
    let latency = named("sdk.latency");
    assert_eq!(latency.len(), 1);
    assert_eq!(latency[0]["metric_type"], "histogram");
    assert_eq!(latency[0]["histogram"]["count"], 4);
    assert_eq!(latency[0]["histogram"]["sum"], 556.0);
    assert_eq!(latency[0]["histogram"]["min"], 1.0);
    assert_eq!(latency[0]["histogram"]["max"], 500.0);
    let bounds = latency[0]["histogram"]["bounds"].as_array().unwrap().len();
    assert_eq!(
        latency[0]["histogram"]["counts"].as_array().unwrap().len(),
        bounds + 1
    );
    let size = named("sdk.size");
    assert_eq!(size.len(), 1, "exponential histogram");
    assert_eq!(size[0]["metric_type"], "histogram");
    assert_eq!(size[0]["histogram"]["count"], 4);
    assert_eq!(size[0]["histogram"]["sum"], 1007.0);
    let counts: u64 = size[0]["histogram"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(counts, 4, "every observation lands in an explicit bucket");
    let temp = named("sdk.temperature");
    assert_eq!(temp.len(), 1);
    assert_eq!(temp[0]["metric_type"], "gauge");
    assert_eq!(temp[0]["value"], 21.5);
    assert_eq!(temp[0]["attributes"]["room"], "lab");
    let inflight = named("sdk.inflight");
    assert_eq!(inflight[0]["value"], 3.0);
    assert_eq!(inflight[0]["is_monotonic"], false);
}

/// Whether the test can run; panics on CI without the SDK.
fn sdk_or_skip() -> bool {
    if sdk_available() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "the OpenTelemetry Python SDK is missing on CI; \
             scripts/install-test-deps installs it"
        );
    }
    eprintln!("SKIPPED: the OpenTelemetry Python SDK is not installed (scripts/install-test-deps)");
    false
}

/// Over TLS with `--auth required`: the SDK's exporters, trusting the
/// node's CA and sending a writer key, export all signals over gRPC and
/// HTTP; without the key they are refused (UNAUTHENTICATED, 401).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_python_sdk_exports_over_tls_with_a_key() {
    if !sdk_or_skip() {
        return;
    }
    let pki = common::pki::Pki::new("sdk");
    let (cert, key) = pki.issue("node");
    let secret = pki.dir.path().join("cluster.secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef-sdk-secret").unwrap();
    let (cert, key, secret, ca) = (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
        secret.to_string_lossy().into_owned(),
        pki.ca_cert.to_string_lossy().into_owned(),
    );
    let mut c = TestCluster::start(
        1,
        &[
            "--auth",
            "required",
            "--cluster-secret-file",
            &secret,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    );
    c.use_https();
    tael_raft::http_client::set_ca_file(&pki.ca_cert).unwrap();
    c.wait_healthy(1).await;
    let init = tael_raft::cmd::init::run_with(
        &c.node(1).url(""),
        &[(1, c.node(1).raft.clone())],
        Duration::from_secs(20),
        true,
    )
    .await
    .expect("init over HTTPS");
    let admin = init.admin_key.unwrap();
    // The reads in `verify` present it too.
    tael_raft::http_client::set_default_api_key(admin.clone());
    c.wait_leader().await;

    let n = c.node(1);
    let http = format!("https://{}", n.otlp_http);
    let refused = run_sdk_with(&n.otlp, &http, "tls-nokey", &["--ca", &ca, "--refused"]).await;
    for transport in ["grpc", "http"] {
        for signal in ["spans", "logs"] {
            let result = refused[transport][signal].as_str().unwrap();
            assert!(
                result.ends_with("FAILURE"),
                "{transport} {signal}: {refused}"
            );
        }
    }
    assert_eq!(refused["http"]["status"], 401, "{refused}");
    let grpc_messages = refused["log_messages"].to_string();
    assert!(grpc_messages.contains("UNAUTHENTICATED"), "{refused}");

    let sent = run_sdk_with(&n.otlp, &http, "tls", &["--ca", &ca, "--api-key", &admin]).await;
    verify(&c, 1, &sent["grpc"]).await;
    verify(&c, 1, &sent["http"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_python_sdk_exports_all_signals() {
    if !sdk_or_skip() {
        return;
    }
    let c = TestCluster::start(3, &[]);
    c.init().await;
    let leader = c.wait_leader().await;
    let followers: Vec<u64> = (1..=3).filter(|&n| n != leader).collect();

    // Run 1: gRPC to a follower, HTTP to the leader. Run 2: the other way
    // round, HTTP to the other follower.
    let run1 = run_sdk(&c.node(followers[0]).otlp, &c.node(leader).otlp_http, "r1").await;
    let run2 = run_sdk(&c.node(leader).otlp, &c.node(followers[1]).otlp_http, "r2").await;
    for n in 1..=3 {
        for run in [&run1, &run2] {
            verify(&c, n, &run["grpc"]).await;
            verify(&c, n, &run["http"]).await;
        }
    }
}
