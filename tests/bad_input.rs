//! Malformed, oversized and hostile input gets a clear error, and nothing
//! else is lost or changed.

mod common;

use std::marker::PhantomData;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use tael_raft::http_client;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Code;

/// Sends arbitrary bytes as the request message.
#[derive(Default)]
struct RawCodec(PhantomData<()>);
struct RawEncoder;
struct RespDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RespDecoder {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        use prost::Message;
        Ok(Some(
            ExportTraceServiceResponse::decode(buf)
                .map_err(|e| tonic::Status::internal(e.to_string()))?,
        ))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = RespDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RespDecoder {
        RespDecoder
    }
}

async fn export_raw(
    addr: &str,
    body: Vec<u8>,
) -> Result<ExportTraceServiceResponse, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(64 << 20);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    grpc.unary(tonic::Request::new(body), path, RawCodec::default())
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_harms_nothing() {
    let c = TestCluster::start(3, &[]);
    c.init().await;
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let mut client = c.otlp_client(follower).await;

    // Good data first, to check it survives everything below.
    for i in 0..5 {
        export(&mut client, trace_request("good", i, 3))
            .await
            .unwrap();
    }

    // --- OTLP/gRPC ---
    // Not protobuf at all; and protobuf with invalid UTF-8 in a string field.
    for body in [
        vec![0xff, 0xff, 0xff, 0xff, 0x0f],
        vec![0x0a, 0x04, 0x1a, 0x02, 0xff, 0xfe],
    ] {
        let err = export_raw(&c.node(follower).otlp, body).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("malformed protobuf"), "{err:?}");
    }

    // Invalid ids: wrong length and all zeros. Alone they are INVALID_ARGUMENT.
    let mut bad = trace_request("bad", 100, 1);
    bad.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![1; 15];
    let err = export(&mut client, bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("trace_id must be 16 bytes"),
        "{err:?}"
    );
    let mut bad = trace_request("bad", 101, 1);
    bad.resource_spans[0].scope_spans[0].spans[0].span_id = vec![0; 8];
    assert_eq!(
        export(&mut client, bad).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    // Mixed with a valid span: the valid one is stored, the other reported.
    let mut mixed = trace_request("mixed", 200, 2);
    mixed.resource_spans[0].scope_spans[0].spans[1].parent_span_id = vec![9; 3];
    let resp = export(&mut client, mixed).await.unwrap();
    let ps = resp.partial_success.expect("partial success reported");
    assert_eq!(ps.rejected_spans, 1);
    assert!(ps.error_message.contains("parent_span_id"), "{ps:?}");

    // A hostile attribute value over the per-value limit, inside a normal request.
    let mut huge = trace_request("huge", 300, 1);
    huge.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(KeyValue {
            key: "blob".into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue("x".repeat(2 * 1024 * 1024))),
            }),
            key_strindex: 0,
        });
    let err = export(&mut client, huge).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("exceeds"), "{err:?}");

    // An export over the 20 MiB limit.
    let mut big = vec![0x0a];
    let inner = vec![0u8; 21 * 1024 * 1024];
    prost::encoding::encode_varint(inner.len() as u64, &mut big);
    big.extend_from_slice(&inner);
    let err = export_raw(&c.node(follower).otlp, big).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{err:?}"
    );

    // Hostile strings are stored and returned verbatim, not interpreted.
    let mut hostile = trace_request("hostile", 400, 1);
    let nasty = "'; DROP TABLE spans; -- <script>\u{202e}\u{0}\\\"";
    hostile.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(kv("nasty", nasty));
    export(&mut client, hostile).await.unwrap();
    let r = c
        .get(follower, &format!("/api/v1/traces/{}", trace_hex(400)))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json().unwrap()["spans"][0]["attributes"]["nasty"], nasty);

    // --- REST ---
    let bad_queries = [
        ("/api/v1/traces?last=5x", "last"),
        ("/api/v1/traces?last=-1h", "last"),
        ("/api/v1/traces?limit=0", "limit"),
        ("/api/v1/traces?limit=abc", "limit"),
        ("/api/v1/traces?limit=1&limit=2", "more than once"),
        ("/api/v1/traces?status=broken", "status"),
        ("/api/v1/traces?min_duration_ms=-3", "min_duration_ms"),
        ("/api/v1/traces?max_duration_ms=NaN", "max_duration_ms"),
        ("/api/v1/traces?consistency=strong", "consistency"),
        ("/api/v1/traces?attribute=novalue", "attribute filter"),
        ("/api/v1/traces?attribute=k%3D~(unclosed", "regex"),
        ("/api/v1/traces/not-hex", "invalid trace id"),
        ("/api/v1/traces/abcd", "invalid trace id"),
        ("/api/v1/services?consistency=", "consistency"),
    ];
    for (path, needle) in bad_queries {
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
            "{path}: error {msg:?} should mention {needle:?}"
        );
    }
    let r = c
        .get(follower, &format!("/api/v1/traces/{}", "0".repeat(32)))
        .await;
    assert_eq!(
        (r.status, r.json().unwrap()["error"].as_str().unwrap()),
        (404, "trace not found")
    );
    let r = c.get(follower, "/api/v1/nope").await;
    assert_eq!(r.status, 404);
    assert!(r.json().unwrap()["error"].is_string());

    // Init: malformed JSON, unknown fields, and a second init are refused.
    let url = c.node(leader).url("/api/v1/cluster/init");
    let r = http_client::request(
        "POST",
        &url,
        Some("application/json"),
        b"{not json",
        std::time::Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    let r = http_client::post_json(
        &url,
        &serde_json::json!({"members": {"1": "127.0.0.1:1"}, "extra": 1}),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    let members: Vec<(u64, String)> = c.nodes.iter().map(|n| (n.id, n.raft.clone())).collect();
    let err = tael_raft::cmd::init::run(
        &format!("http://{}", c.node(follower).rest),
        &members,
        std::time::Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert!(err.contains("409") && err.contains("already"), "{err}");

    // Nothing above disturbed the good data, on any node.
    for n in 1..=3 {
        let spans = traces_of_service(&c, n, "good", "linearizable")
            .await
            .unwrap();
        assert_eq!(spans.len(), 15, "node {n}");
        let mixed = traces_of_service(&c, n, "mixed", "linearizable")
            .await
            .unwrap();
        assert_eq!(
            mixed.len(),
            1,
            "node {n}: the valid half of the mixed export"
        );
        assert!(traces_of_service(&c, n, "bad", "linearizable")
            .await
            .unwrap()
            .is_empty());
        assert!(traces_of_service(&c, n, "huge", "linearizable")
            .await
            .unwrap()
            .is_empty());
    }
}

/// `tael-raft disk-check` as an operator runs it: a report on a real
/// directory, and a clear refusal of a path that is not one.
#[test]
fn disk_check_reports_and_refuses_bad_paths() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "disk-check",
            "--duration-secs",
            "1",
            "--output",
            "json",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["syncs"].as_u64().unwrap() > 0, "{report}");
    assert!(report["sync_ms_max"].as_f64().unwrap() >= report["sync_ms_p50"].as_f64().unwrap());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "probe file left behind"
    );

    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    for args in [
        vec![
            "disk-check".into(),
            "--dir".into(),
            file.display().to_string(),
        ],
        vec!["disk-check".into(), "--duration-secs".into(), "0".into()],
        vec!["disk-check".into(), "--interval-ms".into(), "0".into()],
        vec!["disk-check".into(), "--duration-secs".into(), "-5".into()],
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("error"),
            "{args:?}: unclear error {stderr:?}"
        );
    }
}
