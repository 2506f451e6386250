//! Every analytics endpoint against hand-computed expectations on a fixed
//! data set, served by a real 3-node cluster (reads on a follower).

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, Gauge, Metric, NumberDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};
use serde_json::{json, Value as J};

const MS: u64 = 1_000_000;
const MIN: u64 = 60_000 * MS;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

struct S {
    service: &'static str,
    op: &'static str,
    trace: u64,
    span: u64,
    parent: Option<u64>,
    start: u64,
    ms: u64,
    error: bool,
}

fn export_req(spans: &[S]) -> ExportTraceServiceRequest {
    let resource_spans = spans
        .iter()
        .map(|s| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s.service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: trace_id(s.trace).to_vec(),
                    span_id: span_id(s.trace, s.span).to_vec(),
                    parent_span_id: s
                        .parent
                        .map(|p| span_id(s.trace, p).to_vec())
                        .unwrap_or_default(),
                    name: s.op.into(),
                    start_time_unix_nano: s.start,
                    end_time_unix_nano: s.start + s.ms * MS,
                    status: Some(Status {
                        code: if s.error {
                            StatusCode::Error as i32
                        } else {
                            StatusCode::Ok as i32
                        },
                        message: String::new(),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            schema_url: String::new(),
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

fn log(at: u64, severity: i32, trace: Option<u64>) -> LogRecord {
    LogRecord {
        time_unix_nano: at,
        observed_time_unix_nano: at,
        severity_number: severity,
        body: Some(AnyValue {
            value: Some(Value::StringValue(format!("log at {at}"))),
        }),
        trace_id: trace.map(|t| trace_id(t).to_vec()).unwrap_or_default(),
        ..Default::default()
    }
}

fn gauge(name: &str, at: u64) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                time_unix_nano: at,
                value: Some(number_data_point::Value::AsDouble(1.0)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

fn close(a: &J, b: f64) -> bool {
    (a.as_f64().unwrap_or(f64::NAN) - b).abs() < 1e-6
}

/// A percentile: within 1% of the exact nearest-rank value (docs/api.md).
fn near(a: &J, exact: f64) -> bool {
    (a.as_f64().unwrap_or(f64::NAN) - exact).abs() <= exact * 0.01
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_endpoints_match_hand_computed_results() {
    let c = TestCluster::start(3, &[]);
    c.init().await;
    let leader = c.wait_leader().await;
    let f = (1..=3).find(|&n| n != leader).unwrap();
    let t0 = now() - 10 * MIN; // current window (last 1h)
    let old = now() - 120 * MIN; // baseline window (the 6h before it)

    let mut spans = vec![
        // trace 1: web -> api (the call fails)
        S {
            service: "web",
            op: "GET /checkout",
            trace: 1,
            span: 0,
            parent: None,
            start: t0,
            ms: 100,
            error: false,
        },
        S {
            service: "api",
            op: "charge",
            trace: 1,
            span: 1,
            parent: Some(0),
            start: t0 + 10 * MS,
            ms: 40,
            error: true,
        },
        // trace 2: web fails, its api call succeeds
        S {
            service: "web",
            op: "GET /checkout",
            trace: 2,
            span: 0,
            parent: None,
            start: t0,
            ms: 300,
            error: true,
        },
        S {
            service: "api",
            op: "charge",
            trace: 2,
            span: 1,
            parent: Some(0),
            start: t0,
            ms: 20,
            error: false,
        },
        // trace 3: api calling itself: no edge
        S {
            service: "api",
            op: "charge",
            trace: 3,
            span: 0,
            parent: None,
            start: t0,
            ms: 10,
            error: false,
        },
        S {
            service: "api",
            op: "cache",
            trace: 3,
            span: 1,
            parent: Some(0),
            start: t0,
            ms: 10,
            error: false,
        },
    ];
    for i in 0..10 {
        // pay: slower and failing now; calm: unchanged.
        spans.push(S {
            service: "pay",
            op: "authorize",
            trace: 100 + i,
            span: 0,
            parent: None,
            start: t0,
            ms: 40,
            error: i < 5,
        });
        spans.push(S {
            service: "calm",
            op: "noop",
            trace: 200 + i,
            span: 0,
            parent: None,
            start: t0,
            ms: 10,
            error: false,
        });
        spans.push(S {
            service: "pay",
            op: "authorize",
            trace: 300 + i,
            span: 0,
            parent: None,
            start: old,
            ms: 10,
            error: false,
        });
        spans.push(S {
            service: "calm",
            op: "noop",
            trace: 400 + i,
            span: 0,
            parent: None,
            start: old,
            ms: 10,
            error: false,
        });
    }
    let mut client = c.otlp_client(leader).await;
    export(&mut client, export_req(&spans)).await.unwrap();

    let mut logs = LogsServiceClient::connect(format!("http://{}", c.node(leader).otlp))
        .await
        .unwrap();
    let records = vec![
        log(t0, 17, Some(1)),
        log(t0 + 1, 18, Some(1)), // fatal counts as error
        log(t0 + 2, 13, None),
        log(t0 + 3, 9, None),
        log(t0 + 4, 9, None),
        log(t0 + 5, 10, None),
        log(t0 + 6, 5, None),
        log(old, 17, None), // outside the window
    ];
    logs.export(logs_request(Some("web"), records))
        .await
        .unwrap();
    let mut metrics = MetricsServiceClient::connect(format!("http://{}", c.node(leader).otlp))
        .await
        .unwrap();
    metrics
        .export(metrics_request(
            "web",
            vec![gauge("cpu", t0), gauge("cpu", t0 + MS), gauge("cpu", old)],
        ))
        .await
        .unwrap();
    metrics
        .export(metrics_request("api", vec![gauge("mem", t0 + 2 * MS)]))
        .await
        .unwrap();

    // --- summary ---
    let v = c.get(f, "/api/v1/summary?last=1h").await.json().unwrap();
    let t = &v["traces"];
    assert_eq!(
        (
            t["span_count"].as_u64(),
            t["trace_count"].as_u64(),
            t["error_count"].as_u64()
        ),
        (Some(26), Some(23), Some(7)),
        "{v}"
    );
    assert!(close(&t["avg_ms"], 980.0 / 26.0), "{t}");
    assert!(
        near(&t["p50_ms"], 20.0)
            && near(&t["p95_ms"], 100.0)
            && near(&t["p99_ms"], 300.0)
            && close(&t["max_ms"], 300.0),
        "{t}"
    );
    let top: Vec<&str> = v["top_services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(top, ["calm", "pay", "api", "web"]);
    let ops: Vec<(String, u64)> = v["top_error_operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                format!(
                    "{}/{}",
                    o["service"].as_str().unwrap(),
                    o["operation"].as_str().unwrap()
                ),
                o["error_count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("pay/authorize".to_string(), 5),
            ("api/charge".to_string(), 1),
            ("web/GET /checkout".to_string(), 1)
        ]
    );
    assert_eq!(
        v["logs"],
        json!({"total": 7, "error": 2, "warn": 1, "info": 3, "debug": 1})
    );
    assert_eq!(v["metrics"], json!({"point_count": 3, "unique_names": 2}));
    assert_eq!(v["window_seconds"], 3600);

    let v = c
        .get(f, "/api/v1/summary?last=1h&service=web")
        .await
        .json()
        .unwrap();
    let t = &v["traces"];
    assert_eq!(
        (t["span_count"].as_u64(), t["error_count"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(
        close(&t["error_rate"], 0.5)
            && close(&t["avg_ms"], 200.0)
            && near(&t["p50_ms"], 100.0)
            && near(&t["p99_ms"], 300.0),
        "{t}"
    );
    assert_eq!(v["service_filter"], "web");
    assert_eq!(v["metrics"]["point_count"], 2);

    // --- topology ---
    let v = c.get(f, "/api/v1/topology?last=1h").await.json().unwrap();
    assert_eq!(
        v["edges"],
        json!([{"from": "web", "to": "api", "calls": 2, "errors": 1, "error_rate": 0.5, "avg_duration_ms": 30.0}]),
        "{v}"
    );
    assert_eq!(v["services"].as_array().unwrap().len(), 4);

    // --- diff ---
    let v = c
        .get(f, "/api/v1/diff?last=1h&service=pay")
        .await
        .json()
        .unwrap();
    assert_eq!(v["baseline_seconds"], 6 * 3600);
    assert_eq!(v["current"]["span_count"], 10);
    assert_eq!(v["baseline"]["span_count"], 10);
    assert!(close(&v["current"]["rate_per_sec"], 10.0 / 3600.0));
    assert!(close(&v["baseline"]["rate_per_sec"], 10.0 / 21600.0));
    assert!(
        close(&v["delta"]["error_rate"], 0.5)
            // Each p95 within 1%: of 40 ms now, of 10 ms before.
            && (v["delta"]["p95_ms"].as_f64().unwrap() - 30.0).abs() <= 0.5
            && close(&v["delta"]["avg_ms"], 30.0),
        "{v}"
    );

    // --- anomalies ---
    let v = c.get(f, "/api/v1/anomalies?last=1h").await.json().unwrap();
    let a = v["anomalies"].as_array().unwrap();
    assert_eq!(a.len(), 2, "{v}");
    assert!(
        a.iter()
            .all(|x| x["service"] == "pay" && x["severity"] == "critical"),
        "{v}"
    );
    let kinds: Vec<&str> = a.iter().map(|x| x["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"error_rate") && kinds.contains(&"p95_latency"));
    let v = c
        .get(f, "/api/v1/anomalies?last=1h&service=calm")
        .await
        .json()
        .unwrap();
    assert_eq!(v["anomalies"], json!([]));

    // --- correlate ---
    let v = c
        .get(f, &format!("/api/v1/correlate?trace={}", trace_hex(1)))
        .await
        .json()
        .unwrap();
    assert_eq!(v["span_count"], 2);
    assert_eq!(v["services"], json!(["api", "web"]));
    assert_eq!(v["error_count"], 1);
    assert!(close(&v["duration_ms"], 100.0), "{v}");
    assert_eq!(v["logs"].as_array().unwrap().len(), 2, "the trace's logs");
    assert_eq!(
        v["metrics"].as_array().unwrap().len(),
        3,
        "its services' points around it"
    );

    // --- bad input ---
    assert_eq!(
        c.get(f, &format!("/api/v1/correlate?trace={}", trace_hex(999)))
            .await
            .status,
        404
    );
    for path in [
        "/api/v1/correlate",
        "/api/v1/correlate?trace=xyz",
        "/api/v1/summary?last=forever",
        "/api/v1/diff?baseline=0",
        "/api/v1/anomalies?last=1h&last=2h",
        "/api/v1/topology?limit=0",
        "/api/v1/summary?consistency=eventual",
    ] {
        let r = c.get(f, path).await;
        assert_eq!(
            r.status,
            400,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(r.json().unwrap()["error"].is_string());
    }

    // The histograms operators need are exported.
    let m = String::from_utf8(c.get(f, "/metrics").await.body).unwrap();
    assert!(
        metric(&m, "tael_apply_batch_seconds_count") > 0,
        "apply latency histogram"
    );
    assert!(
        metric(&m, "tael_wal_fsync_seconds_count") > 0,
        "fsync latency histogram"
    );
    assert!(m.contains("tael_apply_batch_seconds_bucket{le=\"+Inf\"}"));
}
