//! Authentication and roles on every surface of a real 3-node cluster run
//! with `--auth required` and a cluster secret: REST routes, OTLP over gRPC
//! and HTTP, key revocation on every node, and peers that cannot prove the
//! secret.

mod common;

use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use serde_json::json;
use tael_raft::http_client;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-cluster-secret";

fn secret_file(dir: &std::path::Path, name: &str, secret: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, secret).unwrap();
    p.to_string_lossy().into_owned()
}

async fn call(url: &str, method: &str, key: Option<&str>, body: &[u8]) -> u16 {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    http_client::request_with_headers(method, url, &headers, body, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
        .status
}

/// (method, path, body, role needed or None for public).
fn routes(trace: &str) -> Vec<(&'static str, String, Vec<u8>, Option<&'static str>)> {
    let comment = json!({ "body": "looked at it" }).to_string().into_bytes();
    let r = |m, p: &str, b: Vec<u8>, role| (m, p.to_string(), b, role);
    vec![
        r("GET", "/healthz", vec![], None),
        r("GET", "/readyz", vec![], None),
        r("GET", "/metrics", vec![], Some("reader")),
        r("GET", "/api/v1/services", vec![], Some("reader")),
        r("GET", "/api/v1/storage", vec![], Some("reader")),
        r("GET", "/api/v1/traces?last=1h", vec![], Some("reader")),
        r(
            "GET",
            &format!("/api/v1/traces/{trace}"),
            vec![],
            Some("reader"),
        ),
        r(
            "GET",
            &format!("/api/v1/traces/{trace}/otlp"),
            vec![],
            Some("reader"),
        ),
        r(
            "GET",
            &format!("/api/v1/traces/{trace}/comments"),
            vec![],
            Some("reader"),
        ),
        r(
            "POST",
            &format!("/api/v1/traces/{trace}/comments"),
            comment,
            Some("writer"),
        ),
        r("GET", "/api/v1/logs?last=1h", vec![], Some("reader")),
        r("GET", "/api/v1/metrics?last=1h", vec![], Some("reader")),
        r("GET", "/api/v1/summary", vec![], Some("reader")),
        r("GET", "/api/v1/anomalies", vec![], Some("reader")),
        r("GET", "/api/v1/topology", vec![], Some("reader")),
        r("GET", "/api/v1/diff", vec![], Some("reader")),
        r(
            "GET",
            &format!("/api/v1/correlate?trace={trace}"),
            vec![],
            Some("reader"),
        ),
        r(
            "GET",
            &format!("/api/v1/blobs/{}", "0".repeat(64)),
            vec![],
            Some("reader"),
        ),
        r("GET", "/api/v1/cluster", vec![], Some("reader")),
        // Grafana's data sources: Tempo and Jaeger, probes included.
        r(
            "GET",
            &format!("/tempo/api/v2/traces/{trace}"),
            vec![],
            Some("reader"),
        ),
        r(
            "GET",
            &format!("/tempo/api/traces/{trace}"),
            vec![],
            Some("reader"),
        ),
        r("GET", "/tempo/api/search?q=%7B%7D", vec![], Some("reader")),
        r("GET", "/tempo/api/v2/search/tags", vec![], Some("reader")),
        r(
            "GET",
            "/tempo/api/v2/search/tag/resource.service.name/values",
            vec![],
            Some("reader"),
        ),
        r("GET", "/tempo/api/search/tags", vec![], Some("reader")),
        r(
            "GET",
            "/tempo/api/search/tag/service.name/values",
            vec![],
            Some("reader"),
        ),
        r("GET", "/tempo/api/echo", vec![], Some("reader")),
        r("GET", "/tempo/ready", vec![], Some("reader")),
        r("GET", "/tempo/api/status/buildinfo", vec![], Some("reader")),
        r("GET", "/jaeger/api/services", vec![], Some("reader")),
        r(
            "GET",
            "/loki/api/v1/query_range?query=%7Bservice_name%3D%22x%22%7D",
            vec![],
            Some("reader"),
        ),
        r(
            "POST",
            "/loki/api/v1/query",
            b"query=vector(1)%2Bvector(1)".to_vec(),
            Some("reader"),
        ),
        r("GET", "/loki/api/v1/labels", vec![], Some("reader")),
        r(
            "GET",
            "/loki/api/v1/label/service_name/values",
            vec![],
            Some("reader"),
        ),
        r(
            "GET",
            "/loki/api/v1/series?match%5B%5D=%7Bservice_name%3D%22x%22%7D",
            vec![],
            Some("reader"),
        ),
        r(
            "GET",
            "/loki/api/v1/index/stats?query=%7Bservice_name%3D%22x%22%7D",
            vec![],
            Some("reader"),
        ),
        r(
            "GET",
            "/loki/api/v1/index/volume?query=%7Bservice_name%3D%22x%22%7D",
            vec![],
            Some("reader"),
        ),
        r(
            "GET",
            "/loki/api/v1/status/buildinfo",
            vec![],
            Some("reader"),
        ),
        r(
            "GET",
            "/prometheus/api/v1/query?query=1%2B1",
            vec![],
            Some("reader"),
        ),
        r(
            "POST",
            "/prometheus/api/v1/query_range",
            b"query=up&start=0&end=60&step=15".to_vec(),
            Some("reader"),
        ),
        r("GET", "/prometheus/api/v1/labels", vec![], Some("reader")),
        r(
            "GET",
            "/prometheus/api/v1/label/job/values",
            vec![],
            Some("reader"),
        ),
        r(
            "GET",
            "/prometheus/api/v1/series?match%5B%5D=up",
            vec![],
            Some("reader"),
        ),
        r("GET", "/prometheus/api/v1/metadata", vec![], Some("reader")),
        r(
            "GET",
            "/prometheus/api/v1/status/buildinfo",
            vec![],
            Some("reader"),
        ),
        r("GET", "/prometheus/api/v1/rules", vec![], Some("reader")),
        // Remote write: refused after the key check (the body is not snappy).
        r("POST", "/api/v1/write", b"x".to_vec(), Some("writer")),
        r(
            "POST",
            "/prometheus/api/v1/write",
            b"x".to_vec(),
            Some("writer"),
        ),
        r(
            "GET",
            "/jaeger/api/services/checkout/operations",
            vec![],
            Some("reader"),
        ),
        r(
            "GET",
            "/jaeger/api/traces?service=checkout",
            vec![],
            Some("reader"),
        ),
        r(
            "GET",
            &format!("/jaeger/api/traces/{trace}"),
            vec![],
            Some("reader"),
        ),
        r("GET", "/jaeger/api/dependencies", vec![], Some("reader")),
        r("GET", "/api/v1/cluster/members", vec![], Some("reader")),
        r("GET", "/api/v1/cluster/check", vec![], Some("reader")),
        r(
            "POST",
            "/api/v1/cluster/check?wait_secs=100000",
            vec![],
            Some("admin"),
        ),
        // Admin routes, with requests that are refused after the check (a
        // node id that is not a member, a bad body), so the table changes
        // nothing.
        r(
            "POST",
            "/api/v1/cluster/init",
            b"{}".to_vec(),
            Some("admin"),
        ),
        r(
            "POST",
            "/api/v1/cluster/members",
            b"{}".to_vec(),
            Some("admin"),
        ),
        r(
            "POST",
            "/api/v1/cluster/members/99/promote",
            vec![],
            Some("admin"),
        ),
        r(
            "DELETE",
            "/api/v1/cluster/members/99",
            vec![],
            Some("admin"),
        ),
        r("GET", "/api/v1/keys", vec![], Some("admin")),
        r("POST", "/api/v1/keys", b"{}".to_vec(), Some("admin")),
        r(
            "DELETE",
            &format!("/api/v1/keys/{}", "f".repeat(16)),
            vec![],
            Some("admin"),
        ),
    ]
}

/// The status of a streaming (server-sent events) route: the status line
/// only, since an accepted stream never ends.
async fn stream_status(rest: &str, path: &str, key: Option<&str>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(rest).await.unwrap();
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: tael\r\n{auth}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut byte))
            .await
            .expect("a status line within 20s")
            .unwrap();
        assert_eq!(n, 1, "{path}: closed before the status line");
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head).into_owned();
    line.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{path}: bad status line {line:?}"))
}

/// Streaming routes and the role they need.
const STREAMING_ROUTES: &[(&str, &str)] = &[
    ("/api/v1/traces/live", "reader"),
    ("/api/v1/logs/live?severity=error", "reader"),
];

fn allows(key_role: &str, needed: &str) -> bool {
    key_role == "admin" || key_role == needed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_rpc_needs_the_right_key_and_peers_the_secret() {
    let secrets = tempfile::tempdir().unwrap();
    let good = secret_file(secrets.path(), "secret", SECRET);
    // With HMAC-protected log records: every write below replicates through them.
    let args = [
        "--auth",
        "required",
        "--cluster-secret-file",
        &good,
        "--log-integrity",
        "hmac",
    ];
    let mut c = TestCluster::start(3, &args);
    for id in 1..=3 {
        c.wait_healthy(id).await;
    }

    // Before init nothing but init and the health checks is open.
    assert_eq!(
        call(&c.node(1).url("/api/v1/services"), "GET", None, b"").await,
        401
    );

    let members: Vec<(u64, String)> = c.nodes.iter().map(|n| (n.id, n.raft.clone())).collect();
    let done = tael_raft::cmd::init::run_with(
        &format!("http://{}", c.node(1).rest),
        &members,
        Duration::from_secs(20),
        true,
    )
    .await
    .expect("init");
    let admin = done.admin_key.expect("an admin key");
    c.wait_leader().await;

    let (_, reader) = c.create_key(&admin, "grafana", "reader").await;
    let (_, writer) = c.create_key(&admin, "collector", "writer").await;
    let (revoked_id, revoked) = c.create_key(&admin, "old", "reader").await;
    let auth = format!("Bearer {admin}");
    let r = http_client::request_with_headers(
        "DELETE",
        &c.node(3).url(&format!("/api/v1/keys/{revoked_id}")),
        &[("Authorization", &auth)],
        b"",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // A revoked key stops working on every node within a second.
    let revoked_at = std::time::Instant::now();
    for id in 1..=3 {
        wait_until(Duration::from_secs(1), "revocation everywhere", || async {
            call(
                &c.node(id).url("/api/v1/services"),
                "GET",
                Some(&revoked),
                b"",
            )
            .await
                == 401
        })
        .await;
    }
    assert!(revoked_at.elapsed() < Duration::from_secs(2));

    let bad = format!("tael_{}_{}", "a".repeat(16), "b".repeat(64));
    let trace = "ab".repeat(16);
    for (method, path, body, needed) in routes(&trace) {
        let url = c.node(2).url(&path);
        for (who, key) in [
            ("none", None),
            ("bad", Some(bad.as_str())),
            ("revoked", Some(revoked.as_str())),
        ] {
            let status = call(&url, method, key, &body).await;
            match needed {
                None => assert!(
                    status != 401 && status != 403,
                    "{method} {path} {who}: {status}"
                ),
                Some(_) => assert_eq!(status, 401, "{method} {path} with {who} key"),
            }
        }
        for (role, key) in [("reader", &reader), ("writer", &writer), ("admin", &admin)] {
            let status = call(&url, method, Some(key), &body).await;
            match needed {
                Some(n) if !allows(role, n) => {
                    assert_eq!(status, 403, "{method} {path} with a {role} key")
                }
                _ => assert!(
                    status != 401 && status != 403,
                    "{method} {path} with a {role} key: {status}"
                ),
            }
        }
    }

    for (path, needed) in STREAMING_ROUTES {
        let rest = &c.node(2).rest;
        for key in [None, Some(bad.as_str()), Some(revoked.as_str())] {
            assert_eq!(stream_status(rest, path, key).await, 401, "{path} {key:?}");
        }
        for (role, key) in [("reader", &reader), ("writer", &writer), ("admin", &admin)] {
            let want = if allows(role, needed) { 200 } else { 403 };
            assert_eq!(
                stream_status(rest, path, Some(key)).await,
                want,
                "{path} with a {role} key"
            );
        }
    }

    // OTLP over gRPC: writer only; the refusals are not retryable codes.
    let endpoint = format!("http://{}", c.node(1).otlp);
    for (key, want) in [
        (None, Some(tonic::Code::Unauthenticated)),
        (Some(bad.as_str()), Some(tonic::Code::Unauthenticated)),
        (Some(reader.as_str()), Some(tonic::Code::PermissionDenied)),
        (Some(writer.as_str()), None),
        (Some(admin.as_str()), None),
    ] {
        let mut client = TraceServiceClient::connect(endpoint.clone()).await.unwrap();
        let mut req = tonic::Request::new(trace_request("checkout", 1, 2));
        if let Some(k) = key {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {k}").parse().unwrap());
        }
        let got = client.export(req).await.err().map(|s| s.code());
        assert_eq!(got, want, "OTLP/gRPC with {key:?}");
    }
    // OTLP over HTTP.
    let body = prost::Message::encode_to_vec(&trace_request("checkout", 2, 2));
    for (key, want) in [
        (None, 401),
        (Some(reader.as_str()), 403),
        (Some(writer.as_str()), 200),
    ] {
        let auth = key.map(|k| format!("Bearer {k}"));
        let mut headers = vec![("Content-Type", "application/x-protobuf")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let r = post(&c, 3, "/v1/traces", &headers, &body).await;
        assert_eq!(r.status, want, "OTLP/HTTP with {key:?}");
    }

    // A forged append with no proof of the secret is refused before it is read.
    let mut raft = tael_consensus::pb::raft_transport_client::RaftTransportClient::connect(
        format!("http://{}", c.node(1).raft),
    )
    .await
    .unwrap();
    let forged = raft
        .append(tael_consensus::pb::AppendRequest {
            cluster_id: done.cluster_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(forged.code(), tonic::Code::Unauthenticated, "{forged:?}");

    // A caller that has the secret but writes a record under another log
    // key (or none) is refused before the record reaches the log, and the
    // refusal is counted as a security event.
    use tael_consensus::frame::{encode_entry, RecordIntegrity};
    use tael_consensus::types::{Entry, EntryPayload, LeaderId, LogId, Record};
    let record = Entry {
        log_id: LogId::new(
            LeaderId {
                term: 1,
                node_id: 1,
            },
            1_000_000,
        ),
        payload: EntryPayload::Normal(Record {
            tag: tael_consensus::FIRST_APP_TAG,
            batch_key: [0; 16],
            payload: b"forged".to_vec(),
        }),
    };
    for integrity in [RecordIntegrity::Crc32c, RecordIntegrity::hmac([9; 32])] {
        let mut req = tonic::Request::new(tael_consensus::pb::AppendRequest {
            cluster_id: done.cluster_id.clone(),
            entries: vec![encode_entry(&record, &integrity)],
            ..Default::default()
        });
        let proof = tael_consensus::peer_auth::PeerSecret::from_bytes(SECRET.as_bytes()).proof();
        req.metadata_mut().insert(
            tael_consensus::peer_auth::PROOF_HEADER,
            proof.parse().unwrap(),
        );
        let refused = raft.append(req).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains("integrity"), "{refused:?}");
    }
    let auth = format!("Bearer {admin}");
    let text = http_client::request_with_headers(
        "GET",
        &c.node(1).url("/metrics"),
        &[("Authorization", &auth)],
        b"",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&text.body);
    assert_eq!(metric(&text, "tael_log_integrity_failures_total"), 2);

    // A fourth node with another secret can neither join nor vote.
    let other = secret_file(secrets.path(), "other", &SECRET.replace('0', "9"));
    let leader = c.wait_leader().await;
    let four = c.add_node_with(&["--auth", "required", "--cluster-secret-file", &other]);
    c.wait_healthy(four).await;
    let add =
        json!({ "node_id": four, "raft_addr": c.node(four).raft, "wait_secs": 0 }).to_string();
    let status = call(
        &c.node(leader).url("/api/v1/cluster/members"),
        "POST",
        Some(&admin),
        add.as_bytes(),
    )
    .await;
    assert!(
        status == 409 || status == 503,
        "adding a node with another secret: {status}"
    );
    let auth = format!("Bearer {admin}");
    let members = http_client::request_with_headers(
        "GET",
        &c.node(leader).url("/api/v1/cluster"),
        &[("Authorization", &auth)],
        b"",
        Duration::from_secs(10),
    )
    .await
    .unwrap()
    .json()
    .unwrap();
    assert!(
        !members["voters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == four)
            && !members["learners"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v == four),
        "{members}"
    );
    assert!(
        c.node(four)
            .log_text()
            .contains("refused a node-to-node call")
            || {
                // The refusal is logged where the call arrived: on node 4 (the
                // adopt call) or on the cluster's nodes (anything node 4 sent).
                (1..=3).any(|id| {
                    c.node(id)
                        .log_text()
                        .contains("refused a node-to-node call")
                })
            }
    );
}
