//! Grafana's trace data sources on a real 3-node cluster: the Tempo API
//! (trace by id in protobuf and JSON, TraceQL search, tag discovery,
//! probes) and the Jaeger query API, read on a follower after an OTLP
//! export to the leader; malformed requests get a 400 that says why.

mod common;

use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, ResourceSpans, ScopeSpans, Span, Status, TracesData,
};
use prost::Message;
use serde_json::{json, Value as J};
use tael_raft::http_client;

/// Tempo's `TraceByIDResponse`, as far as this test reads it: field 1 is the
/// trace, laid out as OTLP `TracesData`.
#[derive(Clone, PartialEq, prost::Message)]
struct TraceByIdResponse {
    #[prost(message, optional, tag = "1")]
    trace: Option<TracesData>,
}

const MS: u64 = 1_000_000;

fn resource_spans(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![
                kv("service.name", service),
                kv("deployment.environment", "prod"),
            ],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        schema_url: String::new(),
    }
}

/// Trace 1: `frontend GET /checkout` (300ms) calling `checkout charge`
/// (120ms, error, status code 500, an exception event). Trace 2:
/// `frontend GET /` (20ms, status code 200).
fn fixture(t0: u64) -> ExportTraceServiceRequest {
    let mk =
        |trace: u64, i: u64, parent: Option<u64>, name: &str, start_ms: u64, dur_ms: u64| Span {
            trace_id: trace_id(trace).to_vec(),
            span_id: span_id(trace, i).to_vec(),
            parent_span_id: parent.map_or_else(Vec::new, |p| span_id(trace, p).to_vec()),
            name: name.into(),
            kind: 2,
            start_time_unix_nano: t0 + start_ms * MS,
            end_time_unix_nano: t0 + (start_ms + dur_ms) * MS,
            ..Default::default()
        };
    let mut root1 = mk(1, 0, None, "GET /checkout", 0, 300);
    root1.attributes = vec![
        kv("http.request.method", "GET"),
        int_kv("http.response.status_code", 200),
    ];
    let mut charge = mk(1, 1, Some(0), "charge", 50, 120);
    charge.kind = 3;
    charge.attributes = vec![
        int_kv("http.response.status_code", 500),
        kv("payment.provider", "acme"),
    ];
    charge.status = Some(Status {
        code: 2,
        message: "card declined".into(),
    });
    charge.events = vec![span::Event {
        time_unix_nano: t0 + 100 * MS,
        name: "exception".into(),
        attributes: vec![kv("exception.type", "Declined")],
        dropped_attributes_count: 0,
    }];
    let mut root2 = mk(2, 0, None, "GET /", 10, 20);
    root2.attributes = vec![int_kv("http.response.status_code", 200)];
    ExportTraceServiceRequest {
        resource_spans: vec![
            resource_spans("frontend", vec![root1, root2]),
            resource_spans("checkout", vec![charge]),
        ],
    }
}

async fn get(c: &TestCluster, node: u64, path: &str, accept: &str) -> http_client::HttpResponse {
    http_client::request_with_headers(
        "GET",
        &c.node(node).url(path),
        &[("Accept", accept)],
        b"",
        Duration::from_secs(20),
    )
    .await
    .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

async fn get_json(c: &TestCluster, node: u64, path: &str) -> J {
    let r = get(c, node, path, "application/json").await;
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json().unwrap()
}

/// A 400 whose message contains `says`.
async fn refused(c: &TestCluster, node: u64, path: &str, says: &str) {
    let r = get(c, node, path, "application/json").await;
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 400, "{path}: {body}");
    assert!(body.contains(says), "{path}: {body} does not say {says:?}");
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn span_names(data: &TracesData) -> Vec<String> {
    let mut names: Vec<String> = data
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.clone())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_reads_traces_through_tempo_and_jaeger_apis() {
    let c = TestCluster::start(3, &[]);
    c.init().await;
    let leader = c.wait_leader().await;
    let f = (1..=3).find(|&n| n != leader).unwrap();
    let t0 = now_nanos() - 60_000 * MS;
    let mut client = c.otlp_client(leader).await;
    export(&mut client, fixture(t0)).await.expect("export");
    let (t1, t2) = (trace_hex(1), trace_hex(2));

    tempo_trace_by_id(&c, f, &t1).await;
    tempo_search(&c, f, &t1, &t2, t0).await;
    tempo_tags(&c, f).await;
    tempo_probes_and_bad_input(&c, f).await;
    jaeger(&c, f, &t1, t0).await;
    tags_beyond_the_newest_spans(&c, &mut client, f).await;
}

async fn tempo_trace_by_id(c: &TestCluster, f: u64, t1: &str) {
    // v2, protobuf: a TraceByIDResponse.
    let r = get(
        c,
        f,
        &format!("/tempo/api/v2/traces/{t1}"),
        "application/protobuf",
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/protobuf"));
    let resp = TraceByIdResponse::decode(&r.body[..]).unwrap();
    let data = resp.trace.expect("field 1");
    assert_eq!(span_names(&data), vec!["GET /checkout", "charge"]);
    let charge = data
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .find(|s| s.name == "charge")
        .unwrap();
    assert!(charge
        .attributes
        .contains(&int_kv("http.response.status_code", 500)));
    assert_eq!(charge.status.as_ref().unwrap().code, 2);
    assert_eq!(charge.events[0].name, "exception");

    // v1, protobuf: the bare Trace.
    let r = get(
        c,
        f,
        &format!("/tempo/api/traces/{t1}"),
        "application/protobuf",
    )
    .await;
    assert_eq!(r.status, 200);
    let bare = TracesData::decode(&r.body[..]).unwrap();
    assert_eq!(bare, data);

    // JSON: OTLP JSON under "trace" (v2) or bare (v1).
    let v = get_json(c, f, &format!("/tempo/api/v2/traces/{t1}")).await;
    let rs = v["trace"]["resourceSpans"].as_array().unwrap();
    assert_eq!(rs.len(), 2, "{v}");
    let v1 = get_json(c, f, &format!("/tempo/api/traces/{t1}")).await;
    assert_eq!(v1["resourceSpans"], v["trace"]["resourceSpans"]);
    let charge = rs
        .iter()
        .flat_map(|r| r["scopeSpans"][0]["spans"].as_array().unwrap())
        .find(|s| s["name"] == "charge")
        .unwrap();
    assert_eq!(charge["traceId"], t1);
    assert!(charge["attributes"]
        .as_array()
        .unwrap()
        .contains(&json!({"key": "http.response.status_code", "value": {"intValue": "500"}})));

    // Absent: 404; the id without its leading zeros finds the same trace.
    let absent = "0".repeat(31) + "7";
    let r = get(
        c,
        f,
        &format!("/tempo/api/v2/traces/{absent}"),
        "application/protobuf",
    )
    .await;
    assert_eq!(r.status, 404);
    let short = t1.trim_start_matches('0');
    let r = get(
        c,
        f,
        &format!("/tempo/api/traces/{short}?start=1&end=2"),
        "application/protobuf",
    )
    .await;
    assert_eq!(r.status, 200, "start/end are hints only");
}

async fn search(c: &TestCluster, f: u64, q: &str, extra: &str) -> J {
    get_json(c, f, &format!("/tempo/api/search?q={}{extra}", enc(q))).await
}

fn trace_ids(v: &J) -> Vec<String> {
    let mut ids: Vec<String> = v["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceID"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

async fn tempo_search(c: &TestCluster, f: u64, t1: &str, t2: &str, t0: u64) {
    let v = search(
        c,
        f,
        r#"{ resource.service.name = "checkout" && span.http.response.status_code >= 500 }"#,
        "",
    )
    .await;
    assert_eq!(trace_ids(&v), vec![t1.to_string()], "{v}");
    let t = &v["traces"][0];
    assert_eq!(t["rootServiceName"], "frontend");
    assert_eq!(t["rootTraceName"], "GET /checkout");
    assert_eq!(t["startTimeUnixNano"], t0.to_string());
    assert_eq!(t["durationMs"], 300);
    let set = &t["spanSets"][0];
    assert_eq!(set["matched"], 1);
    let s = &set["spans"][0];
    assert_eq!(s["name"], "charge");
    assert_eq!(s["spanID"], tael_consensus::hex(&span_id(1, 1)));
    assert_eq!(s["startTimeUnixNano"], (t0 + 50 * MS).to_string());
    assert_eq!(s["durationNanos"], (120 * MS).to_string());
    let attrs = s["attributes"].as_array().unwrap();
    assert!(
        attrs.contains(&json!({"key": "service.name", "value": {"stringValue": "checkout"}})),
        "{attrs:?}"
    );
    assert!(
        attrs.contains(&json!({"key": "http.response.status_code", "value": {"intValue": "500"}})),
        "{attrs:?}"
    );
    assert_eq!(t["spanSet"], *set);

    // Hand-computed answers over the two traces.
    let both = {
        let mut v = vec![t1.to_string(), t2.to_string()];
        v.sort();
        v
    };
    for (q, want) in [
        ("{}", both.clone()),
        ("{ status = error }", vec![t1.to_string()]),
        (r#"{ status = error } || { name = "GET /" }"#, both.clone()),
        (
            r#"{ .deployment.environment = "prod" } && { kind = client }"#,
            vec![t1.to_string()],
        ),
        ("{ trace:duration > 100ms }", vec![t1.to_string()]),
        ("{ duration < 50ms }", vec![t2.to_string()]),
        (
            r#"{ rootServiceName = "frontend" } | count() > 1"#,
            vec![t1.to_string()],
        ),
        (r#"{ span.http.response.status_code = "200" }"#, vec![]),
        (
            r#"{ name =~ "GET /.*" && span.http.response.status_code = 200 }"#,
            both.clone(),
        ),
        (
            r#"{ span."payment.provider" = "acme" }"#,
            vec![t1.to_string()],
        ),
    ] {
        let v = search(c, f, q, "").await;
        assert_eq!(trace_ids(&v), want, "{q}: {v}");
    }
    // limit, spss and a time window in seconds.
    let v = search(c, f, "{}", "&limit=1").await;
    assert_eq!(v["traces"].as_array().unwrap().len(), 1);
    let v = search(c, f, "{}", "&spss=1").await;
    for t in v["traces"].as_array().unwrap() {
        assert_eq!(t["spanSets"][0]["spans"].as_array().unwrap().len(), 1);
    }
    let secs = t0 / 1_000_000_000;
    let v = search(
        c,
        f,
        "{}",
        &format!("&start={}&end={}", secs + 3600, secs + 7200),
    )
    .await;
    assert_eq!(trace_ids(&v), Vec::<String>::new());
    let v = search(
        c,
        f,
        "{}",
        &format!("&start={}&end={}", secs - 10, secs + 10),
    )
    .await;
    assert_eq!(trace_ids(&v), both);
}

async fn tempo_tags(c: &TestCluster, f: u64) {
    let v = get_json(c, f, "/tempo/api/v2/search/tags?scope=span").await;
    assert_eq!(v["scopes"].as_array().unwrap().len(), 1);
    assert_eq!(v["scopes"][0]["name"], "span");
    let tags = v["scopes"][0]["tags"].as_array().unwrap();
    assert!(tags.contains(&json!("http.response.status_code")), "{v}");
    assert!(!tags.contains(&json!("service.name")), "{v}");
    let v = get_json(c, f, "/tempo/api/v2/search/tags").await;
    let names: Vec<&J> = v["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["name"])
        .collect();
    assert_eq!(names, vec!["span", "resource", "intrinsic"]);
    assert!(v["scopes"][1]["tags"]
        .as_array()
        .unwrap()
        .contains(&json!("service.name")));
    assert!(v["scopes"][2]["tags"]
        .as_array()
        .unwrap()
        .contains(&json!("status")));

    let v = get_json(
        c,
        f,
        "/tempo/api/v2/search/tag/resource.service.name/values",
    )
    .await;
    assert_eq!(
        v["tagValues"],
        json!([{"type": "string", "value": "checkout"}, {"type": "string", "value": "frontend"}])
    );
    let v = get_json(
        c,
        f,
        "/tempo/api/v2/search/tag/span.http.response.status_code/values",
    )
    .await;
    assert_eq!(
        v["tagValues"],
        json!([{"type": "int", "value": "200"}, {"type": "int", "value": "500"}])
    );
    let v = get_json(c, f, "/tempo/api/v2/search/tag/status/values").await;
    assert!(v["tagValues"]
        .as_array()
        .unwrap()
        .contains(&json!({"type": "keyword", "value": "error"})));
    let q = enc(r#"{ resource.service.name = "checkout" }"#);
    let v = get_json(c, f, &format!("/tempo/api/v2/search/tag/name/values?q={q}")).await;
    assert_eq!(
        v["tagValues"],
        json!([{"type": "string", "value": "charge"}])
    );

    let v = get_json(c, f, "/tempo/api/search/tags").await;
    let names = v["tagNames"].as_array().unwrap();
    assert!(names.contains(&json!("service.name")) && names.contains(&json!("payment.provider")));
    let v = get_json(c, f, "/tempo/api/search/tag/service.name/values").await;
    assert_eq!(v["tagValues"], json!(["checkout", "frontend"]));
}

/// Newer spans than tag discovery once scanned (it saw the newest 50,000),
/// none with the fixture's tags: the tag index still offers the fixture's
/// names and values, and the fixture service's operations.
async fn tags_beyond_the_newest_spans(
    c: &TestCluster,
    client: &mut opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient<
        tonic::transport::Channel,
    >,
    f: u64,
) {
    const NEWER_SPANS: u64 = 50_001;
    const PER_REQUEST: u64 = 1_000;
    let t = now_nanos();
    for first in (0..NEWER_SPANS).step_by(PER_REQUEST as usize) {
        let spans = (first..NEWER_SPANS.min(first + PER_REQUEST))
            .map(|n| {
                let trace = 1_000 + n / 10;
                Span {
                    trace_id: trace_id(trace).to_vec(),
                    span_id: span_id(trace, n % 10).to_vec(),
                    name: "fill".into(),
                    kind: 1,
                    start_time_unix_nano: t + n * 1_000,
                    end_time_unix_nano: t + n * 1_000 + 500,
                    attributes: vec![kv("filler", "yes")],
                    ..Default::default()
                }
            })
            .collect();
        let req = ExportTraceServiceRequest {
            resource_spans: vec![resource_spans("bulk", spans)],
        };
        export(client, req).await.expect("export filler spans");
    }
    let v = get_json(c, f, "/tempo/api/v2/search/tags?scope=span").await;
    let tags = v["scopes"][0]["tags"].as_array().unwrap();
    for name in ["filler", "payment.provider", "http.request.method"] {
        assert!(tags.contains(&json!(name)), "{name}: {v}");
    }
    let v = get_json(
        c,
        f,
        "/tempo/api/v2/search/tag/span.http.response.status_code/values",
    )
    .await;
    assert_eq!(
        v["tagValues"],
        json!([{"type": "int", "value": "200"}, {"type": "int", "value": "500"}])
    );
    let v = get_json(c, f, "/tempo/api/search/tag/service.name/values").await;
    assert_eq!(v["tagValues"], json!(["bulk", "checkout", "frontend"]));
    let v = get_json(c, f, "/tempo/api/v2/search/tag/statusMessage/values").await;
    assert_eq!(
        v["tagValues"],
        json!([{"type": "string", "value": "card declined"}])
    );
    let v = get_json(c, f, "/jaeger/api/services/frontend/operations").await;
    assert_eq!(v["data"], json!(["GET /", "GET /checkout"]));
    let q = enc("{}");
    let v = get_json(c, f, &format!("/tempo/api/v2/search/tag/name/values?q={q}")).await;
    assert_eq!(
        v["tagValues"],
        json!([
            {"type": "string", "value": "GET /"},
            {"type": "string", "value": "GET /checkout"},
            {"type": "string", "value": "charge"},
            {"type": "string", "value": "fill"}
        ])
    );
}

async fn tempo_probes_and_bad_input(c: &TestCluster, f: u64) {
    let r = get(c, f, "/tempo/api/echo", "*/*").await;
    assert_eq!((r.status, &r.body[..]), (200, &b"echo"[..]));
    assert_eq!(get(c, f, "/tempo/ready", "*/*").await.status, 200);
    let v = get_json(c, f, "/tempo/api/status/buildinfo").await;
    assert!(v["version"].as_str().is_some_and(|s| !s.is_empty()), "{v}");

    refused(c, f, "/tempo/api/v2/traces/xyz", "invalid trace id").await;
    refused(
        c,
        f,
        &format!("/tempo/api/traces/{}", "a".repeat(33)),
        "invalid trace id",
    )
    .await;
    refused(
        c,
        f,
        &format!("/tempo/api/search?q={}", enc("{ .a = ")),
        "TraceQL error",
    )
    .await;
    refused(
        c,
        f,
        &format!("/tempo/api/search?q={}", enc("{ .a = 1 } >> { .b = 2 }")),
        "structural operator `>>`",
    )
    .await;
    refused(
        c,
        f,
        &format!("/tempo/api/search?q={}", enc("{ .a = 1 } | select(.b)")),
        "unsupported construct: `select()`",
    )
    .await;
    let huge = format!("{{ .a = \"{}\" }}", "x".repeat(9000));
    refused(
        c,
        f,
        &format!("/tempo/api/search?q={}", enc(&huge)),
        "limit is 8192",
    )
    .await;
    refused(c, f, "/tempo/api/search?q=%7B%7D&limit=0", "limit").await;
    refused(c, f, "/tempo/api/search?q=%7B%7D&spss=x", "spss").await;
    refused(c, f, "/tempo/api/search?q=%7B%7D&start=yesterday", "start").await;
    refused(
        c,
        f,
        "/tempo/api/search?q=%7B%7D&start=10&end=5",
        "end is before start",
    )
    .await;
    refused(c, f, "/tempo/api/v2/search/tags?scope=event", "scope").await;
    refused(
        c,
        f,
        "/tempo/api/v2/search/tag/parent.x/values",
        "unsupported construct",
    )
    .await;
}

async fn jaeger(c: &TestCluster, f: u64, t1: &str, t0: u64) {
    let v = get_json(c, f, "/jaeger/api/services").await;
    assert_eq!(v["data"], json!(["checkout", "frontend"]));
    assert_eq!(v["total"], 2);
    assert_eq!(v["errors"], J::Null);
    let v = get_json(c, f, "/jaeger/api/services/frontend/operations").await;
    assert_eq!(v["data"], json!(["GET /", "GET /checkout"]));

    let start_us = t0 / 1_000 - 1_000_000;
    let end_us = t0 / 1_000 + 60_000_000;
    let tags = enc(r#"{"http.response.status_code":"500"}"#);
    let v = get_json(
        c,
        f,
        &format!("/jaeger/api/traces?service=checkout&tags={tags}&start={start_us}&end={end_us}&limit=20"),
    )
    .await;
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{v}");
    let trace = &data[0];
    assert_eq!(trace["traceID"], t1);
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    let charge = spans
        .iter()
        .find(|s| s["operationName"] == "charge")
        .unwrap();
    assert_eq!(
        charge["references"],
        json!([{"refType": "CHILD_OF", "traceID": t1, "spanID": tael_consensus::hex(&span_id(1, 0))}])
    );
    assert_eq!(charge["startTime"], (t0 + 50 * MS) / 1_000);
    assert_eq!(charge["duration"], 120_000);
    let tags = charge["tags"].as_array().unwrap();
    assert!(
        tags.contains(&json!({"key": "http.response.status_code", "type": "int64", "value": 500}))
    );
    assert!(tags.contains(&json!({"key": "error", "type": "bool", "value": true})));
    assert_eq!(
        charge["logs"][0]["fields"][0],
        json!({"key": "event", "type": "string", "value": "exception"})
    );
    let pid = charge["processID"].as_str().unwrap();
    assert_eq!(trace["processes"][pid]["serviceName"], "checkout");

    for (query, want) in [
        ("service=frontend".to_string(), 2),
        ("service=frontend&operation=GET%20%2F".to_string(), 1),
        ("service=frontend&minDuration=100ms".to_string(), 1),
        ("service=frontend&maxDuration=0.05s".to_string(), 1),
        ("service=frontend&limit=1".to_string(), 1),
        (
            format!("service=checkout&tags={}", enc(r#"{"error":"true"}"#)),
            1,
        ),
        (
            format!(
                "service=frontend&tags={}",
                enc(r#"{"http.response.status_code":"500"}"#)
            ),
            0,
        ),
        (
            format!("service=frontend&start={}&end={}", end_us + 1, end_us + 2),
            0,
        ),
    ] {
        let v = get_json(c, f, &format!("/jaeger/api/traces?{query}")).await;
        assert_eq!(v["data"].as_array().unwrap().len(), want, "{query}: {v}");
    }

    let v = get_json(c, f, &format!("/jaeger/api/traces/{t1}")).await;
    assert_eq!(v["data"][0]["spans"].as_array().unwrap().len(), 2);
    let r = get(
        c,
        f,
        &format!("/jaeger/api/traces/{}", "0".repeat(31) + "7"),
        "application/json",
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json().unwrap()["errors"][0]["code"], 404);

    let end_ms = now_nanos() / MS;
    let v = get_json(
        c,
        f,
        &format!("/jaeger/api/dependencies?endTs={end_ms}&lookback=3600000"),
    )
    .await;
    assert_eq!(
        v["data"],
        json!([{"parent": "frontend", "child": "checkout", "callCount": 1}])
    );

    refused(
        c,
        f,
        "/jaeger/api/traces?operation=x",
        "'service' is required",
    )
    .await;
    refused(
        c,
        f,
        "/jaeger/api/traces?service=a&minDuration=fast",
        "minDuration",
    )
    .await;
    refused(
        c,
        f,
        "/jaeger/api/traces?service=a&tags=%5B1%5D",
        "tags must be a JSON object",
    )
    .await;
    refused(c, f, "/jaeger/api/traces?service=a&start=now", "start").await;
    refused(c, f, "/jaeger/api/traces/nothex", "invalid trace id").await;
    refused(c, f, "/jaeger/api/dependencies?endTs=x", "endTs").await;
}

/// An open server-sent-events response, read as raw text.
struct Sse {
    stream: tokio::net::TcpStream,
    text: String,
}

impl Sse {
    async fn open(c: &TestCluster, node: u64, path: &str) -> Sse {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(&c.node(node).rest)
            .await
            .unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: tael\r\nAccept: text/event-stream\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut sse = Sse {
            stream,
            text: String::new(),
        };
        sse.read_until("text/event-stream").await;
        assert!(sse.text.starts_with("HTTP/1.1 200"), "{}", sse.text);
        sse
    }

    /// Reads until the text received so far contains `needle`.
    async fn read_until(&mut self, needle: &str) {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 8192];
        while !self.text.contains(needle) {
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no {needle:?} within 20s in {:?}", self.text))
                .unwrap();
            assert!(n > 0, "the stream ended before {needle:?}: {:?}", self.text);
            self.text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tail_streams_applied_records_on_a_follower() {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use tokio::io::AsyncBufReadExt;

    let c = TestCluster::start(3, &[]);
    c.init().await;
    let leader = c.wait_leader().await;
    let f = (1..=3).find(|&n| n != leader).unwrap();
    let mut spans = Sse::open(&c, f, "/api/v1/traces/live?service=checkout").await;
    let mut logs = Sse::open(&c, f, "/api/v1/logs/live?severity=error").await;

    let t0 = now_nanos() - 1_000 * MS;
    let mut client = c.otlp_client(leader).await;
    export(&mut client, fixture(t0)).await.expect("export");
    spans.read_until("\"operation\":\"charge\"").await;
    assert!(spans.text.contains("event: span"), "{}", spans.text);
    assert!(spans.text.contains(&trace_hex(1)), "{}", spans.text);
    assert!(
        !spans.text.contains("\"service\":\"frontend\""),
        "{}",
        spans.text
    );

    let record = |severity_number: i32, body: &str| LogRecord {
        time_unix_nano: t0,
        severity_number,
        body: Some(AnyValue {
            value: Some(Value::StringValue(body.into())),
        }),
        ..Default::default()
    };
    let mut log_client = LogsServiceClient::connect(format!("http://{}", c.node(leader).otlp))
        .await
        .unwrap();
    log_client
        .export(logs_request(
            Some("checkout"),
            vec![record(9, "all good"), record(17, "payment failed")],
        ))
        .await
        .expect("export logs");
    logs.read_until("payment failed").await;
    assert!(logs.text.contains("event: log"), "{}", logs.text);
    assert!(!logs.text.contains("all good"), "{}", logs.text);

    // `tael-raft tail traces` prints the spans it follows, one a line.
    let mut tail = tokio::process::Command::new(BIN)
        .args(["tail", "traces", "--service", "checkout", "--server"])
        .arg(c.node(f).url(""))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(tail.stdout.take().unwrap()).lines();
    // It may subscribe after an export: export until a line shows up.
    let mut printed = None;
    for n in 100..200 {
        export(&mut client, trace_request("checkout", n, 1))
            .await
            .expect("export");
        let next = tokio::time::timeout(Duration::from_millis(300), lines.next_line()).await;
        if let Ok(line) = next {
            printed = line.unwrap();
            break;
        }
    }
    let line = printed.expect("tael-raft tail printed a span");
    assert!(line.contains(" checkout op-0 "), "{line}");
    assert!(line.contains("ms unset ab000000"), "{line}");
    tail.kill().await.unwrap();

    refused(&c, f, "/api/v1/traces/live?status=broken", "status must be").await;
    refused(&c, f, "/api/v1/logs/live?severity=loud", "severity must be").await;
}
