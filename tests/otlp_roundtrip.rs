//! What arrives over OTLP is given back as OTLP: a hand-built export using
//! every part of a span (typed values, two resources and scopes, events,
//! links, trace state, flags, dropped counts, LLM spans) is sent to one node
//! over gRPC and read back from another through
//! `GET /api/v1/traces/{trace_id}/otlp`, as protobuf and as OTLP/JSON.

mod common;
#[path = "fixtures/otlp_requests.rs"]
mod fixture;

use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message;
use tael_raft::http_client;

async fn get_otlp(
    c: &TestCluster,
    node: u64,
    path: &str,
    accept: &str,
) -> http_client::HttpResponse {
    http_client::request_with_headers(
        "GET",
        &c.node(node).url(path),
        &[("Accept", accept)],
        b"",
        Duration::from_secs(30),
    )
    .await
    .expect("GET")
}

fn header<'a>(r: &'a http_client::HttpResponse, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_comes_back_as_it_was_sent_from_another_node() {
    let c = TestCluster::start(3, &[]);
    c.init().await;
    let leader = c.wait_leader().await;
    let (sender, reader) = {
        let followers: Vec<u64> = (1..=3).filter(|&n| n != leader).collect();
        (followers[0], followers[1])
    };

    let req = fixture::trace_request();
    let sent = fixture::normalised_traces(fixture::traces_of(req.clone()));
    let mut client = c.otlp_client(sender).await;
    let resp = export(&mut client, req).await.unwrap();
    assert!(resp.partial_success.is_none(), "{resp:?}");

    let path = format!(
        "/api/v1/traces/{}/otlp?consistency=linearizable",
        tael_consensus::hex(&fixture::TRACE_ID)
    );
    let r = get_otlp(&c, reader, &path, "application/x-protobuf").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(header(&r, "content-type"), Some("application/x-protobuf"));
    assert_eq!(
        header(&r, "x-tael-served-by"),
        Some(reader.to_string().as_str())
    );
    let back = TracesData::decode(&r.body[..]).expect("protobuf TracesData");
    assert_eq!(fixture::normalised_traces(back), sent);

    // The same through OTLP/JSON.
    let r = get_otlp(&c, reader, &path, "text/html, application/json;q=0.9").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(header(&r, "content-type"), Some("application/json"));
    let back: TracesData = serde_json::from_slice(&r.body).expect("OTLP/JSON TracesData");
    assert_eq!(fixture::normalised_traces(back), sent);

    // The REST view of the same trace is unchanged: string forms, `llm` kind.
    let v = c
        .get(
            reader,
            &format!("/api/v1/traces/{}", tael_consensus::hex(&fixture::TRACE_ID)),
        )
        .await
        .json()
        .unwrap();
    let spans = v["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 8);
    let llm = spans
        .iter()
        .find(|s| s["operation"] == "chat gpt-4o")
        .unwrap();
    assert_eq!(llm["kind"], "llm");
    assert_eq!(llm["attributes"]["span.array"], r#"["a",2,3.25]"#);
    assert!(llm["attributes"].get("gen_ai.prompt").is_none());

    // Unknown and malformed trace ids.
    let r = get_otlp(
        &c,
        reader,
        "/api/v1/traces/00000000000000000000000000000001/otlp",
        "*/*",
    )
    .await;
    assert_eq!(r.status, 404);
    let r = get_otlp(&c, reader, "/api/v1/traces/xyz/otlp", "*/*").await;
    assert_eq!(r.status, 400);
}
