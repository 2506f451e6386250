//! Logs and metrics over OTLP/gRPC and OTLP/HTTP (protobuf, JSON, gzip),
//! sent to followers and the leader, read back field by field on every
//! node; re-sent exports never duplicate.

mod common;

use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile, ExponentialHistogram, ExponentialHistogramDataPoint,
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, Sum, Summary, SummaryDataPoint,
};
use prost::Message;
use serde_json::{json, Value as J};
use tael_raft::model::rfc3339_nanos;

fn body(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Value::StringValue(s.into())),
    })
}

async fn export_logs(
    c: &TestCluster,
    id: u64,
    req: ExportLogsServiceRequest,
) -> Result<ExportLogsServiceResponse, tonic::Status> {
    let mut client = LogsServiceClient::connect(format!("http://{}", c.node(id).otlp))
        .await
        .unwrap();
    let mut r = tonic::Request::new(req);
    r.set_timeout(Duration::from_secs(15));
    client.export(r).await.map(|r| r.into_inner())
}

async fn export_metrics(
    c: &TestCluster,
    id: u64,
    req: ExportMetricsServiceRequest,
) -> Result<ExportMetricsServiceResponse, tonic::Status> {
    let mut client = MetricsServiceClient::connect(format!("http://{}", c.node(id).otlp))
        .await
        .unwrap();
    let mut r = tonic::Request::new(req);
    r.set_timeout(Duration::from_secs(15));
    client.export(r).await.map(|r| r.into_inner())
}

async fn query(c: &TestCluster, id: u64, path: &str) -> J {
    let r = c.get(id, path).await;
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json().unwrap()
}

fn logs_of(v: &J) -> Vec<J> {
    let logs = v["logs"].as_array().unwrap().clone();
    assert_eq!(v["count"].as_u64().unwrap() as usize, logs.len());
    logs
}

fn find<'a>(list: &'a [J], field: &str, value: &str) -> &'a J {
    let matches: Vec<&J> = list.iter().filter(|x| x[field] == value).collect();
    assert_eq!(
        matches.len(),
        1,
        "exactly one with {field}={value}: {list:?}"
    );
    matches[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_metrics_over_grpc_and_http() {
    let c = TestCluster::start(3, &[]);
    c.init().await;
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let t0 = now_nanos() - 60_000_000_000;
    let trace = trace_id(77);
    let span = span_id(77, 0);

    // --- logs over gRPC, to a follower ---
    let grpc_logs = logs_request(
        Some("checkout"),
        vec![
            LogRecord {
                // No event time: the observed time stands in.
                time_unix_nano: 0,
                observed_time_unix_nano: t0 + 1,
                severity_number: 17,
                severity_text: "ERROR".into(),
                body: body("payment failed"),
                attributes: vec![kv("user", "u1"), int_kv("attempt", 3)],
                trace_id: trace.to_vec(),
                span_id: span.to_vec(),
                ..Default::default()
            },
            LogRecord {
                time_unix_nano: t0 + 2,
                observed_time_unix_nano: t0 + 3,
                severity_number: 9,
                body: Some(AnyValue {
                    value: Some(Value::IntValue(12)),
                }),
                ..Default::default()
            },
        ],
    );
    let resp = export_logs(&c, follower, grpc_logs.clone()).await.unwrap();
    assert_eq!(resp.partial_success, None);

    // --- logs over HTTP protobuf (leader), JSON (follower), gzip JSON ---
    let http_pb = logs_request(
        None,
        vec![LogRecord {
            time_unix_nano: t0 + 10,
            observed_time_unix_nano: t0 + 10,
            severity_number: 13,
            body: body("disk almost full"),
            ..Default::default()
        }],
    );
    let r = post(
        &c,
        leader,
        "/v1/logs",
        &[("Content-Type", "application/x-protobuf")],
        &http_pb.encode_to_vec(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    ExportLogsServiceResponse::decode(&r.body[..]).unwrap();

    let json_logs = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
        "scopeLogs": [{"scope": {"name": "x", "someNewField": 1}, "logRecords": [{
            "timeUnixNano": (t0 + 20).to_string(),
            "observedTimeUnixNano": (t0 + 21).to_string(),
            "severityNumber": 5,
            "severityText": "DEBUG",
            "body": {"stringValue": "json log"},
            "traceId": tael_consensus::hex(&trace),
            "spanId": tael_consensus::hex(&span_id(77, 1)),
            "attributes": [{"key": "flag", "value": {"boolValue": true}}],
            "unknownField": "ignored"
        }]}]
    }]});
    let json_bytes = serde_json::to_vec(&json_logs).unwrap();
    let r = post(
        &c,
        follower,
        "/v1/logs",
        &[("Content-Type", "application/json")],
        &json_bytes,
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json().unwrap(),
        json!({}),
        "full success: no partialSuccess"
    );

    let gz_logs = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": (t0 + 30).to_string(),
            "severityNumber": 21,
            "body": {"stringValue": "gzipped fatal"}
        }]}]
    }]});
    let r = post(
        &c,
        follower,
        "/v1/logs",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &gzip(&serde_json::to_vec(&gz_logs).unwrap()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // --- metrics over gRPC (leader) ---
    let attrs = vec![kv("host", "h1")];
    let grpc_metrics = metrics_request(
        "checkout",
        vec![
            Metric {
                name: "queue.depth".into(),
                unit: "1".into(),
                data: Some(Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint {
                        time_unix_nano: t0 + 100,
                        value: Some(number_data_point::Value::AsInt(42)),
                        attributes: attrs.clone(),
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            },
            Metric {
                name: "requests".into(),
                unit: "{request}".into(),
                data: Some(Data::Sum(Sum {
                    data_points: vec![
                        NumberDataPoint {
                            start_time_unix_nano: t0,
                            time_unix_nano: t0 + 101,
                            value: Some(number_data_point::Value::AsDouble(10.5)),
                            ..Default::default()
                        },
                        NumberDataPoint {
                            start_time_unix_nano: t0,
                            time_unix_nano: t0 + 102,
                            value: Some(number_data_point::Value::AsDouble(12.0)),
                            ..Default::default()
                        },
                    ],
                    aggregation_temporality: 2,
                    is_monotonic: true,
                })),
                ..Default::default()
            },
            Metric {
                name: "latency".into(),
                unit: "ms".into(),
                data: Some(Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        time_unix_nano: t0 + 103,
                        count: 6,
                        sum: Some(30.0),
                        bucket_counts: vec![1, 2, 3],
                        explicit_bounds: vec![1.0, 10.0],
                        min: Some(0.5),
                        max: Some(20.0),
                        ..Default::default()
                    }],
                    aggregation_temporality: 1,
                })),
                ..Default::default()
            },
            Metric {
                name: "size".into(),
                data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        time_unix_nano: t0 + 104,
                        count: 6,
                        sum: Some(9.0),
                        scale: 0,
                        zero_count: 1,
                        positive: Some(Buckets {
                            offset: 0,
                            bucket_counts: vec![2, 3],
                        }),
                        ..Default::default()
                    }],
                    aggregation_temporality: 2,
                })),
                ..Default::default()
            },
            Metric {
                name: "rtt".into(),
                data: Some(Data::Summary(Summary {
                    data_points: vec![SummaryDataPoint {
                        time_unix_nano: t0 + 105,
                        count: 4,
                        sum: 8.0,
                        quantile_values: vec![
                            ValueAtQuantile {
                                quantile: 0.5,
                                value: 1.5,
                            },
                            ValueAtQuantile {
                                quantile: 0.99,
                                value: 4.0,
                            },
                        ],
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            },
        ],
    );
    let resp = export_metrics(&c, leader, grpc_metrics.clone())
        .await
        .unwrap();
    assert_eq!(resp.partial_success, None);

    // --- metrics over HTTP: gzip JSON to a follower, protobuf to the leader ---
    let json_metrics = json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
        "scopeMetrics": [{"metrics": [{
            "name": "temp", "unit": "Cel",
            "gauge": {"dataPoints": [{"asDouble": 21.5, "timeUnixNano": (t0 + 200).to_string(),
                "attributes": [{"key": "room", "value": {"stringValue": "a"}}]}]}
        }]}]
    }]});
    let r = post(
        &c,
        follower,
        "/v1/metrics",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &gzip(&serde_json::to_vec(&json_metrics).unwrap()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let pb_metrics = metrics_request(
        "web",
        vec![Metric {
            name: "temp".into(),
            unit: "Cel".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    time_unix_nano: t0 + 201,
                    value: Some(number_data_point::Value::AsDouble(22.0)),
                    ..Default::default()
                }],
            })),
            ..Default::default()
        }],
    );
    let r = post(
        &c,
        leader,
        "/v1/metrics",
        &[("Content-Type", "application/x-protobuf")],
        &pb_metrics.encode_to_vec(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // --- traces over HTTP too (protobuf and JSON) ---
    let r = post(
        &c,
        follower,
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &trace_request("http-traces", 500, 2).encode_to_vec(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let json_trace = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "http-traces"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": trace_hex(501), "spanId": "00000000000001f5", "name": "json-op", "kind": 3,
            "startTimeUnixNano": (t0).to_string(), "endTimeUnixNano": (t0 + 5_000_000).to_string(),
            "status": {"code": 2}
        }]}]
    }]});
    let r = post(
        &c,
        leader,
        "/v1/traces",
        &[("Content-Type", "application/json")],
        &serde_json::to_vec(&json_trace).unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // --- read back, on every node ---
    for n in 1..=3 {
        let v = query(&c, n, "/api/v1/logs?limit=1000").await;
        let logs = logs_of(&v);
        assert_eq!(logs.len(), 5, "node {n}: {v}");
        let l = find(&logs, "body", "payment failed");
        assert_eq!(
            l["timestamp"],
            rfc3339_nanos(t0 + 1),
            "observed time stands in"
        );
        assert_eq!(l["observed_timestamp"], rfc3339_nanos(t0 + 1));
        assert_eq!(l["severity"], "error");
        assert_eq!(l["severity_text"], "ERROR");
        assert_eq!(l["service"], "checkout");
        assert_eq!(l["trace_id"], tael_consensus::hex(&trace));
        assert_eq!(l["span_id"], tael_consensus::hex(&span));
        assert_eq!(l["attributes"], json!({"user": "u1", "attempt": "3"}));
        let l = find(&logs, "body", "12");
        assert_eq!(l["severity"], "info");
        assert_eq!(l["timestamp"], rfc3339_nanos(t0 + 2));
        assert_eq!(l["trace_id"], J::Null);
        let l = find(&logs, "body", "disk almost full");
        assert_eq!(
            (l["severity"].as_str(), l["service"].as_str()),
            (Some("warn"), Some("unknown"))
        );
        let l = find(&logs, "body", "json log");
        assert_eq!(l["severity"], "debug");
        assert_eq!(l["severity_text"], "DEBUG");
        assert_eq!(l["service"], "web");
        assert_eq!(l["timestamp"], rfc3339_nanos(t0 + 20));
        assert_eq!(l["observed_timestamp"], rfc3339_nanos(t0 + 21));
        assert_eq!(l["span_id"], tael_consensus::hex(&span_id(77, 1)));
        assert_eq!(l["attributes"], json!({"flag": "true"}));
        assert_eq!(find(&logs, "body", "gzipped fatal")["severity"], "fatal");
        // Newest first.
        let times: Vec<&str> = logs
            .iter()
            .map(|l| l["timestamp"].as_str().unwrap())
            .collect();
        let mut sorted = times.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(times, sorted);

        let v = query(&c, n, "/api/v1/metrics").await;
        let metrics = v["metrics"].as_array().unwrap().clone();
        assert_eq!(metrics.len(), 8, "node {n}: {v}");
        assert_eq!(v["count"], 8);
        let g = find(&metrics, "name", "queue.depth");
        assert_eq!(g["metric_type"], "gauge");
        assert_eq!(g["value"], 42.0);
        assert_eq!(g["service"], "checkout");
        assert_eq!(g["unit"], "1");
        assert_eq!(g["attributes"], json!({"host": "h1"}));
        assert_eq!(g["timestamp"], rfc3339_nanos(t0 + 100));
        let sums: Vec<&J> = metrics.iter().filter(|m| m["name"] == "requests").collect();
        assert_eq!(sums.len(), 2, "one point per data point");
        assert_eq!(sums[0]["value"], 12.0);
        assert_eq!(sums[0]["temporality"], "cumulative");
        assert_eq!(sums[0]["is_monotonic"], true);
        assert_eq!(sums[1]["value"], 10.5);
        let h = find(&metrics, "name", "latency");
        assert_eq!(h["metric_type"], "histogram");
        assert_eq!(
            h["histogram"],
            json!({"bounds": [1.0, 10.0], "counts": [1, 2, 3], "count": 6, "sum": 30.0,
                   "min": 0.5, "max": 20.0, "temporality": "delta"})
        );
        let e = find(&metrics, "name", "size");
        assert_eq!(e["metric_type"], "histogram");
        assert_eq!(e["histogram"]["bounds"], json!([0.0, 2.0, 4.0]));
        assert_eq!(e["histogram"]["counts"], json!([1, 2, 3, 0]));
        assert_eq!(e["histogram"]["temporality"], "cumulative");
        let s = find(&metrics, "name", "rtt");
        assert_eq!(s["metric_type"], "summary");
        assert_eq!(s["value"], 8.0);
        assert_eq!(
            s["quantiles"],
            json!([{"quantile": 0.5, "value": 1.5}, {"quantile": 0.99, "value": 4.0}])
        );
        let temps: Vec<&J> = metrics.iter().filter(|m| m["name"] == "temp").collect();
        assert_eq!(temps.len(), 2);
        assert_eq!(temps[0]["value"], 22.0);
        assert_eq!(temps[1]["value"], 21.5);
        assert_eq!(temps[1]["attributes"], json!({"room": "a"}));
        assert_eq!(temps[1]["service"], "web");

        let spans = traces_of_service(&c, n, "http-traces", "linearizable")
            .await
            .unwrap();
        assert_eq!(spans.len(), 3, "node {n}");
    }
    let r = c
        .get(follower, &format!("/api/v1/traces/{}", trace_hex(501)))
        .await;
    let v = r.json().unwrap();
    assert_eq!(v["spans"][0]["operation"], "json-op");
    assert_eq!(v["spans"][0]["kind"], "client");
    assert_eq!(v["spans"][0]["status"], "error");
    assert_eq!(v["spans"][0]["duration_ms"], 5.0);

    // --- filters ---
    let count = |v: J| v["count"].as_u64().unwrap();
    let q = |p: &str| format!("/api/v1/logs?{p}");
    assert_eq!(count(query(&c, follower, &q("service=web")).await), 2);
    assert_eq!(count(query(&c, follower, &q("severity=error")).await), 1);
    assert_eq!(
        count(query(&c, follower, &q("severity=warn&consistency=lease")).await),
        1
    );
    assert_eq!(
        count(query(&c, leader, &q("severity=warn&consistency=lease")).await),
        1
    );
    assert_eq!(
        count(
            query(
                &c,
                follower,
                &q(&format!("trace_id={}", tael_consensus::hex(&trace)))
            )
            .await
        ),
        2
    );
    assert_eq!(
        count(query(&c, follower, &q("body_contains=full")).await),
        1
    );
    assert_eq!(
        count(query(&c, follower, &q("attribute=user%3Du1")).await),
        1
    );
    assert_eq!(
        count(query(&c, follower, &q("attribute=attempt~%3D3&service=checkout")).await),
        1
    );
    assert_eq!(
        count(query(&c, follower, &q("last=5m&consistency=local")).await),
        5
    );
    assert_eq!(count(query(&c, follower, &q("last=10s")).await), 0);
    assert_eq!(count(query(&c, follower, &q("limit=2")).await), 2);
    let m = |p: &str| format!("/api/v1/metrics?{p}");
    assert_eq!(count(query(&c, follower, &m("name=temp")).await), 2);
    assert_eq!(
        count(query(&c, follower, &m("name=temp&service=web")).await),
        2
    );
    assert_eq!(count(query(&c, follower, &m("service=checkout")).await), 6);
    assert_eq!(
        count(query(&c, follower, &m("metric_type=histogram")).await),
        2
    );
    assert_eq!(
        count(query(&c, follower, &m("metric_type=summary&last=1h")).await),
        1
    );
    assert_eq!(count(query(&c, follower, &m("limit=3")).await), 3);

    // --- re-sent exports (a client retry) change nothing ---
    export_logs(&c, leader, grpc_logs).await.unwrap();
    export_metrics(&c, follower, grpc_metrics).await.unwrap();
    let r = post(
        &c,
        leader,
        "/v1/logs",
        &[("Content-Type", "application/json")],
        &json_bytes,
    )
    .await;
    assert_eq!(r.status, 200);
    let r = post(
        &c,
        follower,
        "/v1/metrics",
        &[("Content-Type", "application/x-protobuf")],
        &pb_metrics.encode_to_vec(),
    )
    .await;
    assert_eq!(r.status, 200);
    for n in 1..=3 {
        assert_eq!(
            count(query(&c, n, "/api/v1/logs?limit=1000").await),
            5,
            "node {n}"
        );
        assert_eq!(count(query(&c, n, "/api/v1/metrics").await), 8, "node {n}");
    }

    // --- accepted records per signal and transport, summed over nodes ---
    let mut totals = std::collections::BTreeMap::new();
    for n in 1..=3 {
        let text = String::from_utf8(c.get(n, "/metrics").await.body).unwrap();
        for line in text
            .lines()
            .filter(|l| l.starts_with("tael_ingest_records_total{"))
        {
            let (labels, v) = line.rsplit_once(' ').unwrap();
            *totals.entry(labels.to_string()).or_insert(0.0) += v.parse::<f64>().unwrap();
        }
    }
    let get = |s: &str, t: &str, o: &str| {
        totals[&format!(
            "tael_ingest_records_total{{signal=\"{s}\",transport=\"{t}\",outcome=\"{o}\"}}"
        )]
    };
    assert_eq!(get("logs", "grpc", "accepted"), 4.0);
    assert_eq!(get("logs", "http", "accepted"), 4.0);
    assert_eq!(get("metrics", "grpc", "accepted"), 12.0);
    assert_eq!(get("metrics", "http", "accepted"), 3.0);
    assert_eq!(get("traces", "http", "accepted"), 3.0);
    assert_eq!(get("logs", "grpc", "rejected"), 0.0);
}
