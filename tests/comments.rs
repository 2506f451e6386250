//! Trace comments are replicated writes: the leader assigns id and time once,
//! every node returns the same list in commit order, and bad requests get a
//! clear 400 without touching what is stored.

mod common;

use common::*;
use tael_raft::http_client;

async fn post(c: &TestCluster, id: u64, trace: &str, body: &[u8]) -> http_client::HttpResponse {
    http_client::request(
        "POST",
        &c.node(id).url(&format!("/api/v1/traces/{trace}/comments")),
        Some("application/json"),
        body,
        std::time::Duration::from_secs(30),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_replicate_in_commit_order_with_leader_assigned_ids() {
    let c = TestCluster::start(3, &[]);
    c.init().await;
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let trace = trace_hex(42);

    let mut created = Vec::new();
    for (i, via) in [follower, leader, follower].into_iter().enumerate() {
        let body = serde_json::json!({
            "body": format!("note {i}: ünïcode and <b>markup</b> kept verbatim"),
            "author": "oncall",
            "span_id": "00000000000000aa",
            "unknown_field": true,
        });
        let r = post(&c, via, &trace, body.to_string().as_bytes()).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let comment = r.json().unwrap()["comment"].clone();
        assert!(
            comment["id"].as_str().is_some_and(|s| s.len() > 8),
            "{comment}"
        );
        assert_eq!(comment["trace_id"], trace.as_str());
        assert_eq!(comment["span_id"], "00000000000000aa");
        created.push(comment);
    }
    let ids: std::collections::HashSet<_> = created.iter().map(|c| c["id"].clone()).collect();
    assert_eq!(ids.len(), 3, "every comment gets its own id");

    for node in 1..=3 {
        let r = c
            .get(
                node,
                &format!("/api/v1/traces/{trace}/comments?consistency=linearizable"),
            )
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json().unwrap();
        assert_eq!(v["count"], 3, "node {node}: {v}");
        assert_eq!(
            v["comments"].as_array().unwrap(),
            &created,
            "node {node} returns the comments as created, in commit order"
        );
    }
    let r = c
        .get(
            follower,
            &format!("/api/v1/traces/{}/comments", trace_hex(43)),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json().unwrap()["count"],
        0,
        "a trace without comments has none"
    );

    // Bad requests: each a 400 naming the problem; nothing is stored.
    let big = "x".repeat(tael_raft::comments::MAX_BODY_BYTES + 1);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not-hex", br#"{"body":"x"}"#.to_vec(), "trace id"),
        (&trace, b"{not json".to_vec(), "JSON"),
        (&trace, br#"{"author":"a"}"#.to_vec(), "body"),
        (&trace, br#"{"body":"   "}"#.to_vec(), "empty"),
        (
            &trace,
            br#"{"body":"x","span_id":"zz"}"#.to_vec(),
            "span_id",
        ),
        (
            &trace,
            serde_json::json!({ "body": big }).to_string().into_bytes(),
            "limit",
        ),
        (&trace, vec![0xff, 0xfe, 0x00], "JSON"),
    ];
    for (t, body, needle) in cases {
        let r = post(&c, follower, t, &body).await;
        assert_eq!(
            r.status,
            400,
            "{needle}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let err = r.json().unwrap()["error"].as_str().unwrap().to_string();
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
    }
    let r = c
        .get(leader, &format!("/api/v1/traces/{trace}/comments?limit=0"))
        .await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let r = c
        .get(leader, &format!("/api/v1/traces/{trace}/comments"))
        .await;
    assert_eq!(r.json().unwrap()["count"], 3, "bad requests stored nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_retried_under_its_idempotency_key_is_stored_once() {
    let c = TestCluster::start(3, &[]);
    c.init().await;
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let trace = trace_hex(43);
    let send = |via: u64, key: &'static str| {
        let url = c.node(via).url(&format!("/api/v1/traces/{trace}/comments"));
        async move {
            let r = http_client::request_with_headers(
                "POST",
                &url,
                &[
                    ("content-type", "application/json"),
                    ("idempotency-key", key),
                ],
                br#"{"body": "rolled back the deploy"}"#,
                std::time::Duration::from_secs(30),
            )
            .await
            .unwrap();
            assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
            r.json().unwrap()["comment"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    // The retry may reach another node: the key, not the node, decides.
    let first = send(follower, "req-1").await;
    let retry = send(leader, "req-1").await;
    let other = send(follower, "req-2").await;
    assert_eq!(
        first, retry,
        "the retry is answered with the stored comment's id"
    );
    assert_ne!(first, other);
    for node in 1..=3 {
        let r = c
            .get(
                node,
                &format!("/api/v1/traces/{trace}/comments?consistency=linearizable"),
            )
            .await;
        let v = r.json().unwrap();
        let ids: Vec<&str> = v["comments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [first.as_str(), other.as_str()], "node {node}");
    }
}
