//! `--max-export-bytes`: an export over the configured size is refused
//! (HTTP 413, gRPC RESOURCE_EXHAUSTED) on both OTLP edges, one under it is
//! stored.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tael_raft::http_client;
use tonic::Code;

/// Far below the 20 MiB default, so the test sends small bodies.
const LIMIT_BYTES: usize = 64 * 1024;

/// A one-trace export whose encoding is just above `bytes`.
fn export_over(trace_no: u64, bytes: usize) -> ExportTraceServiceRequest {
    let mut spans = 1;
    loop {
        let req = trace_request("big", trace_no, spans);
        if req.encoded_len() > bytes {
            return req;
        }
        spans += 1 + spans / 2;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_over_the_configured_limit_are_refused_and_smaller_ones_stored() {
    let limit = LIMIT_BYTES.to_string();
    let c = TestCluster::start(1, &["--max-export-bytes", &limit]);
    c.init().await;
    c.wait_leader().await;
    let node = c.node(1);
    let mut client = c.otlp_client(1).await;

    // gRPC: over the limit, then just under it.
    let big = export_over(1, LIMIT_BYTES);
    let err = export(&mut client, big).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let small = trace_request("small", 2, 3);
    assert!(small.encoded_len() < LIMIT_BYTES);
    export(&mut client, small).await.unwrap();

    // HTTP (protobuf): the same two bodies.
    let url = node.otlp_url("/v1/traces");
    let post = |body: Vec<u8>| {
        let url = url.clone();
        async move {
            http_client::request(
                "POST",
                &url,
                Some("application/x-protobuf"),
                &body,
                std::time::Duration::from_secs(15),
            )
            .await
            .unwrap()
        }
    };
    let r = post(export_over(3, LIMIT_BYTES).encode_to_vec()).await;
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    let r = post(trace_request("small", 4, 3).encode_to_vec()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // What was accepted is stored; what was refused is not.
    for (trace_no, stored) in [(1, false), (2, true), (3, false), (4, true)] {
        let r = c
            .get(1, &format!("/api/v1/traces/{}", trace_hex(trace_no)))
            .await;
        assert_eq!(r.status == 200, stored, "trace {trace_no}: {}", r.status);
    }
}
