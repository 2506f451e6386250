//! SIGKILL the leader while clients export logs (OTLP/HTTP) and metrics
//! (OTLP/gRPC) and retry refused exports as OTLP clients do: every
//! acknowledged record is readable on every survivor exactly once, and a
//! retried record never appears twice.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, Gauge, Metric, NumberDataPoint,
};
use prost::Message;

const SERVICE: &str = "sigfail";
const WRITERS: u64 = 2;
/// Upper bounds so the load loops always end.
const MAX_EXPORTS_PER_WRITER: u64 = 300;
const MAX_ATTEMPTS_PER_EXPORT: u32 = 100;
const T0: u64 = 1_700_000_000_000_000_000;

fn log_export(w: u64, i: u64) -> Vec<u8> {
    logs_request(
        Some(SERVICE),
        vec![LogRecord {
            time_unix_nano: T0 + w * 1_000_000 + i,
            severity_number: 9,
            body: Some(AnyValue {
                value: Some(Value::StringValue(format!("w{w}-{i}"))),
            }),
            ..Default::default()
        }],
    )
    .encode_to_vec()
}

fn metric_export(
    w: u64,
    i: u64,
) -> opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
    metrics_request(
        SERVICE,
        vec![Metric {
            name: format!("fail.w{w}"),
            data: Some(Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    time_unix_nano: T0 + i,
                    value: Some(number_data_point::Value::AsInt(i as i64)),
                    ..Default::default()
                }],
            })),
            ..Default::default()
        }],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_with_retries_loses_and_duplicates_nothing() {
    let mut c = TestCluster::start(3, &[]);
    c.init().await;
    let old_leader = c.wait_leader().await;
    let http_urls: Vec<String> = c.nodes.iter().map(|n| n.otlp_url("/v1/logs")).collect();
    let grpc_addrs: Vec<String> = c.nodes.iter().map(|n| n.otlp.clone()).collect();

    let acked_logs: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let acked_points: Arc<Mutex<Vec<(String, i64, Instant)>>> = Arc::default();
    let stop = Arc::new(Mutex::new(false));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        // Logs over HTTP, each export retried (same bytes) until acknowledged.
        let (acked, stop_w, urls) = (acked_logs.clone(), stop.clone(), http_urls.clone());
        tasks.push(tokio::spawn(async move {
            let mut retries = 0u64;
            for i in 0..MAX_EXPORTS_PER_WRITER {
                if *stop_w.lock().unwrap() {
                    break;
                }
                let body = log_export(w, i);
                for attempt in 0..MAX_ATTEMPTS_PER_EXPORT {
                    let url = &urls[((i + attempt as u64) % 3) as usize];
                    let r = tael_raft::http_client::request_with_headers(
                        "POST",
                        url,
                        &[("Content-Type", "application/x-protobuf")],
                        &body,
                        Duration::from_secs(15),
                    )
                    .await;
                    match r {
                        Ok(r) if r.status == 200 => {
                            acked
                                .lock()
                                .unwrap()
                                .push((format!("w{w}-{i}"), Instant::now()));
                            break;
                        }
                        Ok(r) => assert!(
                            r.status == 503,
                            "only 503 is expected, got {}: {}",
                            r.status,
                            String::from_utf8_lossy(&r.body)
                        ),
                        Err(_) => {} // the node is down: try another
                    }
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            retries
        }));
        // Metric points over gRPC, retried the same way.
        let (acked, stop_w, addrs) = (acked_points.clone(), stop.clone(), grpc_addrs.clone());
        tasks.push(tokio::spawn(async move {
            let mut retries = 0u64;
            for i in 0..MAX_EXPORTS_PER_WRITER {
                if *stop_w.lock().unwrap() {
                    break;
                }
                for attempt in 0..MAX_ATTEMPTS_PER_EXPORT {
                    let addr = &addrs[((i + attempt as u64 + 1) % 3) as usize];
                    let ok = match MetricsServiceClient::connect(format!("http://{addr}")).await {
                        Ok(mut client) => {
                            let mut req = tonic::Request::new(metric_export(w, i));
                            req.set_timeout(Duration::from_secs(15));
                            match client.export(req).await {
                                Ok(_) => true,
                                Err(s) => {
                                    // A node killed mid-request shows up as a
                                    // client-side transport error.
                                    let transport = s.code() == tonic::Code::Unknown
                                        && s.message() == "transport error";
                                    assert!(
                                        transport
                                            || matches!(
                                                s.code(),
                                                tonic::Code::Unavailable
                                                    | tonic::Code::DeadlineExceeded
                                            ),
                                        "only retryable errors are expected: {s:?}"
                                    );
                                    false
                                }
                            }
                        }
                        Err(_) => false,
                    };
                    if ok {
                        acked.lock().unwrap().push((
                            format!("fail.w{w}"),
                            i as i64,
                            Instant::now(),
                        ));
                        break;
                    }
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            retries
        }));
    }

    wait_until(
        Duration::from_secs(30),
        "some writes acknowledged",
        || async {
            acked_logs.lock().unwrap().len() >= 30 && acked_points.lock().unwrap().len() >= 30
        },
    )
    .await;
    let killed_at = Instant::now();
    c.kill(old_leader);
    let new_leader = c.wait_leader().await;
    assert_ne!(new_leader, old_leader);
    wait_until(
        Duration::from_secs(20),
        "writes acknowledged after the kill",
        || async {
            acked_logs
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, t)| *t > killed_at)
                .count()
                >= 20
                && acked_points
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(_, _, t)| *t > killed_at)
                    .count()
                    >= 20
        },
    )
    .await;
    *stop.lock().unwrap() = true;
    let mut retries = 0;
    for t in tasks {
        retries += t.await.unwrap();
    }
    let acked_logs: BTreeSet<String> = acked_logs
        .lock()
        .unwrap()
        .iter()
        .map(|(b, _)| b.clone())
        .collect();
    let acked_points: BTreeSet<(String, i64)> = acked_points
        .lock()
        .unwrap()
        .iter()
        .map(|(n, v, _)| (n.clone(), *v))
        .collect();
    eprintln!(
        "{} logs and {} metric points acknowledged, {retries} retried exports",
        acked_logs.len(),
        acked_points.len()
    );

    for n in (1..=3).filter(|&n| n != old_leader) {
        let logs = c
            .get(n, &format!("/api/v1/logs?service={SERVICE}&limit=10000"))
            .await
            .json()
            .unwrap();
        let mut seen = BTreeMap::new();
        for l in logs["logs"].as_array().unwrap() {
            *seen
                .entry(l["body"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
        let dup: Vec<_> = seen.iter().filter(|(_, &k)| k > 1).collect();
        assert!(dup.is_empty(), "node {n}: logs stored twice: {dup:?}");
        let missing: Vec<_> = acked_logs
            .iter()
            .filter(|b| !seen.contains_key(*b))
            .collect();
        assert!(
            missing.is_empty(),
            "node {n}: acknowledged logs missing: {missing:?}"
        );

        let points = c
            .get(n, &format!("/api/v1/metrics?service={SERVICE}&limit=10000"))
            .await
            .json()
            .unwrap();
        let mut seen = BTreeMap::new();
        for p in points["metrics"].as_array().unwrap() {
            let key = (
                p["name"].as_str().unwrap().to_string(),
                p["value"].as_f64().unwrap() as i64,
            );
            *seen.entry(key).or_insert(0) += 1;
        }
        let dup: Vec<_> = seen.iter().filter(|(_, &k)| k > 1).collect();
        assert!(
            dup.is_empty(),
            "node {n}: metric points stored twice: {dup:?}"
        );
        let missing: Vec<_> = acked_points
            .iter()
            .filter(|p| !seen.contains_key(*p))
            .collect();
        assert!(
            missing.is_empty(),
            "node {n}: acknowledged points missing: {missing:?}"
        );
    }
}
