//! Bounded work at the OTLP edges: slow and excess senders are shed with a
//! retryable answer (429 + Retry-After, RESOURCE_EXHAUSTED + RetryInfo)
//! while a well-behaved client is still served.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Starts a POST that declares `declared` bytes and sends one.
async fn slow_post(addr: &str, path: &str, declared: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\n\
         Content-Length: {declared}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&[0x0a]).await.unwrap();
    s
}

/// The status code and headers (lowercase) of the answer on `s`.
async fn response_head(s: &mut TcpStream, within: Duration) -> (u16, String) {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed without an answer");
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(within, read)
        .await
        .expect("an answer in time");
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (status, text)
}

fn labelled(text: &str, name_and_labels: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels))
        .unwrap_or_else(|| panic!("{name_and_labels} missing"))
        .trim()
        .parse::<f64>()
        .unwrap() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_are_shed_and_time_out_while_a_fast_client_is_served() {
    let c = TestCluster::start(
        1,
        &[
            "--otlp-body-budget-mb",
            "4",
            "--otlp-body-read-timeout-ms",
            "3000",
            // As many export slots as slow senders: they must not hold any.
            "--otlp-max-inflight-exports",
            "2",
        ],
    );
    c.init().await;
    c.wait_leader().await;
    let addr = c.node(1).otlp_http.clone();

    // Two slow senders declaring 1.5 MiB each hold 3 MiB of the 4.
    let declared = 3 << 19;
    let mut slow = Vec::new();
    for _ in 0..2 {
        slow.push(slow_post(&addr, "/v1/traces", declared).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A third does not fit: shed at once, with a retry hint.
    let mut third = slow_post(&addr, "/v1/traces", declared).await;
    let (status, head) = response_head(&mut third, Duration::from_secs(5)).await;
    assert_eq!(status, 429, "{head}");
    assert!(head.contains("retry-after: 1"), "{head}");

    // A small export fits beside them and commits: the slow senders hold
    // budget, not export slots.
    let body = prost::Message::encode_to_vec(&trace_request("fast", 1, 2));
    let r = post(
        &c,
        1,
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // The slow ones run out of time and give their budget back.
    for s in &mut slow {
        let (status, head) = response_head(s, Duration::from_secs(10)).await;
        assert_eq!(status, 408, "{head}");
    }
    let mut after = slow_post(&addr, "/v1/traces", declared).await;
    let (status, _) = response_head(&mut after, Duration::from_secs(10)).await;
    assert_eq!(
        status, 408,
        "the budget came back, so it was read until its timeout"
    );

    let text = String::from_utf8(c.get(1, "/metrics").await.body).unwrap();
    assert_eq!(
        labelled(
            &text,
            "tael_ingest_shed_total{transport=\"http\",reason=\"body_budget\"}"
        ),
        1
    );
    assert_eq!(
        labelled(
            &text,
            "tael_ingest_shed_total{transport=\"http\",reason=\"body_timeout\"}"
        ),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_beyond_the_inflight_limit_are_shed_on_both_transports() {
    let mut c = TestCluster::start(3, &["--otlp-max-inflight-exports", "1"]);
    c.init().await;
    let leader = c.wait_leader().await;
    // Without a quorum an export waits for its commit, holding the one slot.
    for id in (1..=3).filter(|&id| id != leader) {
        c.kill(id);
    }
    let mut holder = c.otlp_client(leader).await;
    let held = tokio::spawn(async move { export(&mut holder, trace_request("held", 1, 1)).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !held.is_finished(),
        "the first export should wait for a quorum"
    );

    let mut client = c.otlp_client(leader).await;
    let err = export(&mut client, trace_request("shed", 2, 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(
        !err.details().is_empty(),
        "RESOURCE_EXHAUSTED carries a RetryInfo, or OTLP exporters drop the data"
    );
    let body = prost::Message::encode_to_vec(&trace_request("shed", 3, 1));
    let r = post(
        &c,
        leader,
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &body,
    )
    .await;
    assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        !held.is_finished(),
        "the shed requests did not wait for the slot"
    );

    // The quorum back: the held export commits, and the slot serves again.
    for id in (1..=3).filter(|&id| id != leader) {
        c.spawn(id);
    }
    held.await
        .unwrap()
        .expect("the held export commits once a quorum is back");
    export(&mut client, trace_request("after", 4, 1))
        .await
        .expect("export after recovery");
}
