//! Bad input on the log, metric and OTLP/HTTP surfaces gets a clear 4xx (or
//! INVALID_ARGUMENT), and nothing else is lost or changed; no quorum is a
//! retryable 503 / UNAVAILABLE.

mod common;

use std::marker::PhantomData;

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
};
use prost::Message;
use serde_json::json;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Code;

/// Sends arbitrary bytes as the request message; ignores the response body.
#[derive(Default)]
struct RawCodec(PhantomData<()>);
struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = ();
    type Error = tonic::Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        use bytes::Buf;
        buf.advance(buf.remaining());
        Ok(Some(()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

async fn export_raw(addr: &str, service: &'static str, body: Vec<u8>) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(service);
    grpc.unary(tonic::Request::new(body), path, RawCodec::default())
        .await
        .map(|r| r.into_inner())
}

const LOGS_EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const METRICS_EXPORT: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

fn log(body: &str) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000,
        severity_number: 9,
        body: Some(AnyValue {
            value: Some(Value::StringValue(body.into())),
        }),
        ..Default::default()
    }
}

fn gauge(name: &str, v: f64) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                time_unix_nano: 1_700_000_000_000_000_000,
                value: Some(number_data_point::Value::AsDouble(v)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

fn bad_histogram(name: &str) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                bucket_counts: vec![1, 2, 3],
                explicit_bounds: vec![5.0],
                ..Default::default()
            }],
            aggregation_temporality: 1,
        })),
        ..Default::default()
    }
}

/// A placeholder attribute value, replaced in the encoded message by bytes
/// that are not UTF-8 (which no protobuf encoder would produce).
const MARKER: &str = "@@NON-UTF8@@";

fn with_attr(mut rec: LogRecord, value: &str) -> LogRecord {
    rec.attributes.push(kv("k", value));
    rec
}

fn non_utf8_attribute(mut encoded: Vec<u8>) -> Vec<u8> {
    let at = encoded
        .windows(MARKER.len())
        .position(|w| w == MARKER.as_bytes())
        .expect("marker in the encoded message");
    encoded[at..at + MARKER.len()].copy_from_slice(&[0xff; 12]);
    encoded
}

/// The google.rpc.Status an OTLP/HTTP error carries.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

async fn count(c: &TestCluster, n: u64, path: &str) -> u64 {
    let r = c.get(n, path).await;
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json().unwrap()["count"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signal_input_is_refused_clearly_and_harms_nothing() {
    let mut c = TestCluster::start(3, &[]);
    c.init().await;
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let otlp = c.node(follower).otlp.clone();
    let mut logs_client = LogsServiceClient::connect(format!("http://{otlp}"))
        .await
        .unwrap();
    let mut metrics_client = MetricsServiceClient::connect(format!("http://{otlp}"))
        .await
        .unwrap();

    // Good data first.
    logs_client
        .export(logs_request(
            Some("good"),
            (0..5).map(|i| log(&format!("good {i}"))).collect(),
        ))
        .await
        .unwrap();
    metrics_client
        .export(metrics_request(
            "good",
            vec![gauge("good.g", 1.0), gauge("good.h", 2.0)],
        ))
        .await
        .unwrap();

    // --- gRPC ---
    for (service, body) in [
        (LOGS_EXPORT, vec![0xff, 0xff, 0xff, 0xff, 0x0f]),
        (METRICS_EXPORT, vec![0xff, 0xff, 0xff, 0xff, 0x0f]),
        // resource_logs { scope_logs { log_records { severity_text: <invalid UTF-8> } } }
        (
            LOGS_EXPORT,
            vec![0x0a, 0x08, 0x12, 0x06, 0x12, 0x04, 0x1a, 0x02, 0xff, 0xfe],
        ),
    ] {
        let err = export_raw(&otlp, service, body).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("malformed protobuf"), "{err:?}");
    }

    // A non-UTF-8 attribute value inside an otherwise valid export.
    let non_utf8_logs = non_utf8_attribute(
        logs_request(Some("bad"), vec![with_attr(log("non-utf8"), MARKER)]).encode_to_vec(),
    );
    let err = export_raw(&otlp, LOGS_EXPORT, non_utf8_logs.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let mut g = gauge("bad.g", 1.0);
    if let Some(Data::Gauge(gg)) = &mut g.data {
        gg.data_points[0].attributes.push(kv("k", MARKER));
    }
    let non_utf8_metrics = non_utf8_attribute(metrics_request("bad", vec![g]).encode_to_vec());
    let err = export_raw(&otlp, METRICS_EXPORT, non_utf8_metrics.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // An invalid trace id alone is INVALID_ARGUMENT; next to a valid record
    // it is a partial success.
    let mut bad = log("bad id");
    bad.trace_id = vec![1; 15];
    let err = logs_client
        .export(logs_request(Some("bad"), vec![bad.clone()]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("trace_id must be 16 bytes"),
        "{err:?}"
    );
    let resp = logs_client
        .export(logs_request(Some("mixed"), vec![bad, log("valid half")]))
        .await
        .unwrap()
        .into_inner();
    let ps = resp.partial_success.expect("partial success");
    assert_eq!(ps.rejected_log_records, 1);
    assert!(ps.error_message.contains("trace_id"), "{ps:?}");

    let err = metrics_client
        .export(metrics_request("bad", vec![bad_histogram("bad.h")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("bucket counts"), "{err:?}");
    let resp = metrics_client
        .export(metrics_request(
            "mixed",
            vec![bad_histogram("bad.h"), gauge("mixed.g", 3.0)],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.partial_success.unwrap().rejected_data_points, 1);

    // A huge attribute value and a huge body.
    let mut huge = log("huge attr");
    huge.attributes.push(KeyValue {
        key: "blob".into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue("x".repeat(2 * 1024 * 1024))),
        }),
        key_strindex: 0,
    });
    let err = logs_client
        .export(logs_request(Some("bad"), vec![huge]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("exceeds"), "{err:?}");
    let err = logs_client
        .export(logs_request(
            Some("bad"),
            vec![log(&"y".repeat(2 * 1024 * 1024))],
        ))
        .await
        .unwrap_err();
    assert!(err.message().contains("log body"), "{err:?}");

    // --- OTLP/HTTP ---
    let pb = [("Content-Type", "application/x-protobuf")];
    let js = [("Content-Type", "application/json")];
    // Malformed protobuf: 400 with a protobuf google.rpc.Status.
    let r = post(
        &c,
        follower,
        "/v1/logs",
        &pb,
        &[0xff, 0xff, 0xff, 0xff, 0x0f],
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    let st = RpcStatus::decode(&r.body[..]).unwrap();
    assert_eq!(st.code, Code::InvalidArgument as i32);
    assert!(st.message.contains("malformed protobuf"), "{st:?}");
    // Non-UTF-8 inside a protobuf string.
    let r = post(
        &c,
        follower,
        "/v1/logs",
        &pb,
        &[0x0a, 0x08, 0x12, 0x06, 0x12, 0x04, 0x1a, 0x02, 0xff, 0xfe],
    )
    .await;
    assert_eq!(r.status, 400);
    for (path, body) in [
        ("/v1/logs", &non_utf8_logs),
        ("/v1/metrics", &non_utf8_metrics),
    ] {
        let r = post(&c, follower, path, &pb, body).await;
        assert_eq!(r.status, 400, "{path}");
        let st = RpcStatus::decode(&r.body[..]).unwrap();
        assert!(st.message.contains("malformed protobuf"), "{st:?}");
    }
    // Malformed JSON, non-UTF-8 JSON, invalid hex ids: 400 with a JSON status.
    for (path, body) in [
        ("/v1/logs", b"{\"resourceLogs\": [".to_vec()),
        ("/v1/metrics", b"[1,2,3]".to_vec()),
        ("/v1/traces", b"{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"k\",\"value\":{\"stringValue\":\"\xff\xfe\"}}]}}]}".to_vec()),
        ("/v1/logs", serde_json::to_vec(&json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "not-hex"}]}]}]})).unwrap()),
        ("/v1/traces", serde_json::to_vec(&json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "abc", "spanId": "0102030405060708"}]}]}]})).unwrap()),
    ] {
        let r = post(&c, follower, path, &js, &body).await;
        assert_eq!(r.status, 400, "{path}: {}", String::from_utf8_lossy(&r.body));
        let v = r.json().unwrap();
        assert_eq!(v["code"], Code::InvalidArgument as i32);
        assert!(v["message"].as_str().unwrap().contains("malformed OTLP JSON"), "{v}");
    }
    // Valid hex of the wrong length: decodes, then the record is invalid.
    let r = post(
        &c,
        follower,
        "/v1/traces",
        &js,
        &serde_json::to_vec(&json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "abcd", "spanId": "0102030405060708"}]}]}]})).unwrap(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.json().unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("trace_id must be 16 bytes"));
    // A huge attribute value over HTTP.
    let r = post(
        &c,
        follower,
        "/v1/logs",
        &js,
        &serde_json::to_vec(&json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{
            "body": {"stringValue": "x"},
            "attributes": [{"key": "blob", "value": {"stringValue": "z".repeat(2 * 1024 * 1024)}}]
        }]}]}]}))
        .unwrap(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.json().unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("exceeds"));
    // Partial success over HTTP JSON, answered in JSON.
    let r = post(
        &c,
        follower,
        "/v1/logs",
        &js,
        &serde_json::to_vec(&json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "mixed"}}]},
        "scopeLogs": [{"logRecords": [
            {"timeUnixNano": "1700000000000000001", "body": {"stringValue": "http valid half"}},
            {"body": {"stringValue": "bad"}, "spanId": "0102"}
        ]}]}]}))
        .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json().unwrap();
    assert_eq!(v["partialSuccess"]["rejectedLogRecords"], 1, "{v}");
    assert!(v["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap()
        .contains("span_id"));

    // Wrong or missing content type, unknown encoding: 415.
    for headers in [
        vec![("Content-Type", "text/plain")],
        vec![],
        vec![("Content-Type", "application/protobuf-ish")],
        vec![
            ("Content-Type", "application/json"),
            ("Content-Encoding", "br"),
        ],
    ] {
        let r = post(&c, follower, "/v1/metrics", &headers, b"{}").await;
        assert_eq!(r.status, 415, "{headers:?}");
    }
    // A gzip body inflating past 20 MiB: 413, without inflating it all.
    let bomb = gzip(&vec![b' '; 64 * 1024 * 1024]);
    assert!(bomb.len() < 1024 * 1024);
    let r = post(
        &c,
        follower,
        "/v1/logs",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &bomb,
    )
    .await;
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    // A raw body over the limit: 413.
    let r = post(&c, follower, "/v1/logs", &pb, &vec![0u8; 21 * 1024 * 1024]).await;
    assert_eq!(r.status, 413);
    // Not gzip at all.
    let r = post(
        &c,
        follower,
        "/v1/logs",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        b"{\"resourceLogs\": []}",
    )
    .await;
    assert_eq!(r.status, 400);
    // Wrong method and unknown route.
    let r = tael_raft::http_client::get(&c.node(follower).otlp_url("/v1/logs"))
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    let r = post(&c, follower, "/v1/profiles", &js, b"{}").await;
    assert_eq!(r.status, 404);

    // --- REST ---
    for (path, needle) in [
        ("/api/v1/logs?severity=loud", "severity"),
        ("/api/v1/logs?trace_id=xyz", "trace_id"),
        ("/api/v1/logs?trace_id=abcd", "trace_id"),
        ("/api/v1/logs?last=5x", "last"),
        ("/api/v1/logs?limit=0", "limit"),
        ("/api/v1/logs?consistency=strong", "consistency"),
        ("/api/v1/logs?attribute=novalue", "attribute filter"),
        ("/api/v1/logs?service=a&service=b", "more than once"),
        ("/api/v1/metrics?metric_type=bogus", "metric_type"),
        ("/api/v1/metrics?limit=abc", "limit"),
        ("/api/v1/metrics?last=-1h", "last"),
        ("/api/v1/metrics?name=a&name=b", "more than once"),
        ("/api/v1/metrics?limit=10001", "limit"),
    ] {
        let r = c.get(follower, path).await;
        assert_eq!(
            r.status,
            400,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let msg = r.json().unwrap()["error"].as_str().unwrap().to_string();
        assert!(
            msg.contains(needle),
            "{path}: {msg:?} should mention {needle:?}"
        );
    }

    // Nothing above disturbed the good data, on any node.
    for n in 1..=3 {
        assert_eq!(
            count(&c, n, "/api/v1/logs?service=good").await,
            5,
            "node {n}"
        );
        assert_eq!(
            count(&c, n, "/api/v1/logs?service=mixed").await,
            2,
            "node {n}"
        );
        assert_eq!(
            count(&c, n, "/api/v1/logs?service=bad").await,
            0,
            "node {n}"
        );
        assert_eq!(
            count(&c, n, "/api/v1/logs?service=unknown").await,
            0,
            "node {n}"
        );
        assert_eq!(
            count(&c, n, "/api/v1/metrics?service=good").await,
            2,
            "node {n}"
        );
        assert_eq!(
            count(&c, n, "/api/v1/metrics?service=mixed").await,
            1,
            "node {n}"
        );
        assert_eq!(
            count(&c, n, "/api/v1/metrics?service=bad").await,
            0,
            "node {n}"
        );
    }
    let text = String::from_utf8(c.get(follower, "/metrics").await.body).unwrap();
    let rejected = text
        .lines()
        .find(|l| l.starts_with("tael_ingest_records_total{signal=\"logs\",transport=\"grpc\",outcome=\"rejected\"}"))
        .unwrap();
    assert!(rejected.ends_with(" 4"), "{rejected}");

    // --- no quorum: retryable, with a retry hint ---
    let survivor = follower;
    for n in 1..=3 {
        if n != survivor {
            c.kill(n);
        }
    }
    let r = post(
        &c,
        survivor,
        "/v1/logs",
        &pb,
        &logs_request(Some("late"), vec![log("no quorum")]).encode_to_vec(),
    )
    .await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("retry-after"), Some("1"));
    let err = logs_client
        .export(logs_request(Some("late"), vec![log("no quorum")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let details = RpcStatusWithDetails::decode(err.details()).expect("google.rpc.Status details");
    assert_eq!(details.code, Code::Unavailable as i32);
    let retry = details
        .details
        .iter()
        .find(|d| d.type_url == "type.googleapis.com/google.rpc.RetryInfo")
        .expect("a RetryInfo detail");
    let retry = RetryInfo::decode(&retry.value[..]).unwrap();
    assert_eq!(retry.retry_delay.unwrap().seconds, 1);
}

#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatusWithDetails {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}
