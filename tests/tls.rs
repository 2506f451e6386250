//! TLS on a real 3-node cluster run as production would: client listeners
//! over TLS, mutual TLS between peers, `--auth required` and a cluster
//! secret. Init, OTLP/gRPC exports and queries go over TLS with a key; plain
//! HTTP and plain gRPC to the TLS listeners fail; a node whose peer
//! certificate another CA signed cannot join, one with a good certificate
//! can (its addition relayed to the leader over HTTPS). Bad certificate
//! files stop `serve` with an error naming them.

mod common;

use std::path::Path;
use std::time::Duration;

use common::pki::Pki;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use serde_json::json;
use tael_raft::http_client;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

const SECRET: &str = "0123456789abcdef0123456789abcdef-tls-cluster-secret";

/// Every https:// request of this test process trusts `ca`. One CA for the
/// whole process: the trust is set once.
fn client_pki() -> &'static Pki {
    static PKI: std::sync::OnceLock<Pki> = std::sync::OnceLock::new();
    PKI.get_or_init(|| {
        let pki = Pki::new("client");
        http_client::set_ca_file(&pki.ca_cert).unwrap();
        pki
    })
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

async fn tls_otlp_client(c: &TestCluster, id: u64, ca_pem: &str) -> TraceServiceClient<Channel> {
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
    let channel = Channel::from_shared(format!("https://{}", c.node(id).otlp))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("connect to OTLP/gRPC over TLS");
    TraceServiceClient::new(channel)
}

async fn export_with_key(
    client: &mut TraceServiceClient<Channel>,
    key: Option<&str>,
    req: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
) -> Result<(), tonic::Status> {
    let mut r = tonic::Request::new(req);
    r.set_timeout(Duration::from_secs(15));
    if let Some(k) = key {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {k}").parse().unwrap());
    }
    client.export(r).await.map(|_| ())
}

async fn call(url: &str, method: &str, key: &str, body: &[u8]) -> http_client::HttpResponse {
    let auth = format!("Bearer {key}");
    http_client::request_with_headers(
        method,
        url,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        body,
        Duration::from_secs(60),
    )
    .await
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

fn is_member(status: &serde_json::Value, id: u64) -> bool {
    ["voters", "learners"].iter().any(|k| {
        status[k]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == id))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_over_tls_with_peer_mtls_and_keys() {
    let client_ca = client_pki();
    let (tls_cert, tls_key) = client_ca.issue("rest");
    let peer_ca = Pki::new("peer");
    let (peer_cert, peer_key) = peer_ca.issue("peer");
    let secret = client_ca.dir.path().join("cluster.secret");
    std::fs::write(&secret, SECRET).unwrap();

    let node_args = |peer_cert: &Path, peer_key: &Path| -> Vec<String> {
        [
            "--auth",
            "required",
            "--cluster-secret-file",
            &s(&secret),
            "--tls-cert",
            &s(&tls_cert),
            "--tls-key",
            &s(&tls_key),
            "--peer-tls-cert",
            &s(peer_cert),
            "--peer-tls-key",
            &s(peer_key),
            "--peer-tls-ca",
            &s(&peer_ca.ca_cert),
            // Membership changes sent to a follower are relayed to the
            // leader over HTTPS.
            "--ca-cert",
            &s(&client_ca.ca_cert),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let args = node_args(&peer_cert, &peer_key);
    let mut c = TestCluster::start(3, &args.iter().map(String::as_str).collect::<Vec<_>>());
    c.use_https();
    for id in 1..=3 {
        c.wait_healthy(id).await;
    }
    let members: Vec<(u64, String)> = c.nodes.iter().map(|n| (n.id, n.raft.clone())).collect();
    let init =
        tael_raft::cmd::init::run_with(&c.node(1).url(""), &members, Duration::from_secs(20), true)
            .await
            .expect("init over HTTPS");
    let admin = init.admin_key.expect("an admin key from init");
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|&n| n != leader).unwrap();

    // Plain HTTP and plain gRPC to the TLS listeners get nowhere.
    let plain = http_client::get(&format!("http://{}/healthz", c.node(1).rest)).await;
    assert!(
        plain.is_err(),
        "plain HTTP to the TLS REST listener: {plain:?}"
    );
    let plain = http_client::get(&format!("http://{}/v1/traces", c.node(1).otlp_http)).await;
    assert!(
        plain.is_err(),
        "plain HTTP to the TLS OTLP listener: {plain:?}"
    );
    let plain_grpc = TraceServiceClient::connect(format!("http://{}", c.node(1).otlp)).await;
    if let Ok(mut client) = plain_grpc {
        let r = export_with_key(&mut client, Some(&admin), trace_request("plain", 1, 1)).await;
        assert!(r.is_err(), "plain gRPC to the TLS OTLP listener");
    }

    // Exports over TLS: refused without a key, stored with one, to a
    // follower (forwarded to the leader over mutual TLS) and to the leader.
    let ca_pem = client_ca.ca_pem();
    let mut to_follower = tls_otlp_client(&c, follower, &ca_pem).await;
    let refused = export_with_key(&mut to_follower, None, trace_request("tls-svc", 1, 3))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    export_with_key(
        &mut to_follower,
        Some(&admin),
        trace_request("tls-svc", 1, 3),
    )
    .await
    .expect("export over TLS to a follower");
    let mut to_leader = tls_otlp_client(&c, leader, &ca_pem).await;
    export_with_key(&mut to_leader, Some(&admin), trace_request("tls-svc", 2, 4))
        .await
        .expect("export over TLS to the leader");

    // Queries over HTTPS on every node see all 7 spans.
    for id in 1..=3 {
        let r = call(
            &c.node(id)
                .url("/api/v1/traces?service=tls-svc&limit=100&consistency=linearizable"),
            "GET",
            &admin,
            b"",
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            r.json().unwrap()["spans"].as_array().unwrap().len(),
            7,
            "node {id}"
        );
    }
    let no_key = http_client::get(&c.node(1).url("/api/v1/traces?last=1h"))
        .await
        .unwrap();
    assert_eq!(no_key.status, 401);

    // A node whose peer certificate another CA signed cannot join.
    let rogue_ca = Pki::new("rogue");
    let (rogue_cert, rogue_key) = rogue_ca.issue("rogue-peer");
    let rogue_args = node_args(&rogue_cert, &rogue_key);
    // It trusts the cluster's CA, so only its own certificate is wrong.
    let rogue = c.add_node_with(&rogue_args.iter().map(String::as_str).collect::<Vec<_>>());
    c.wait_healthy(rogue).await;
    let add =
        json!({ "node_id": rogue, "raft_addr": c.node(rogue).raft, "wait_secs": 0 }).to_string();
    let r = call(
        &c.node(leader).url("/api/v1/cluster/members"),
        "POST",
        &admin,
        add.as_bytes(),
    )
    .await;
    assert!(
        r.status == 409 || r.status == 503,
        "adding a node with a certificate of another CA: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    let status = call(&c.node(leader).url("/api/v1/cluster"), "GET", &admin, b"").await;
    assert!(!is_member(&status.json().unwrap(), rogue));
    // The refused handshake is logged where it arrived, as a warning.
    assert!(
        (1..=rogue).any(|id| c.node(id).log_text().contains("TLS handshake failed")),
        "no node logged the refused peer handshake"
    );
    c.kill(rogue);

    // A node with a good certificate joins, its addition sent to a follower
    // and relayed to the leader over HTTPS.
    let (good_cert, good_key) = peer_ca.issue("peer-5");
    let good_args = node_args(&good_cert, &good_key);
    // (Before it starts: a node in no cluster agrees on no leader.)
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let good = c.add_node_with(&good_args.iter().map(String::as_str).collect::<Vec<_>>());
    c.wait_healthy(good).await;
    let add =
        json!({ "node_id": good, "raft_addr": c.node(good).raft, "wait_secs": 30 }).to_string();
    let r = call(
        &c.node(follower).url("/api/v1/cluster/members"),
        "POST",
        &admin,
        add.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json().unwrap()["caught_up"], true);
    let node = c.node(good);
    wait_until(
        Duration::from_secs(30),
        "the new node applied the spans",
        || async {
            let url = node.url("/api/v1/traces?service=tls-svc&limit=100&consistency=local");
            let r = call(&url, "GET", &admin, b"").await;
            r.status == 200 && r.json().unwrap()["spans"].as_array().unwrap().len() == 7
        },
    )
    .await;
}

/// `serve` with `args` exits at once with an error containing `expected`.
fn refused(args: &[&str], expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--rest-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"])
        .args([
            "--otlp-grpc-addr",
            "127.0.0.1:0",
            "--otlp-http-addr",
            "127.0.0.1:0",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} started");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(expected), "{args:?}: {stderr}");
}

#[test]
fn bad_certificate_files_stop_serve_with_an_error_naming_them() {
    let pki = Pki::new("files");
    let (cert, key) = pki.issue("node");
    let (_, other_key) = pki.issue("other");
    let garbage = pki.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = pki.dir.path().join("missing.pem");
    let (cert, key, other_key, garbage, missing) =
        (s(&cert), s(&key), s(&other_key), s(&garbage), s(&missing));

    refused(&["--tls-cert", &cert], "tls_key is not");
    refused(
        &["--tls-cert", &missing, "--tls-key", &key],
        &format!("reading {missing}"),
    );
    refused(
        &["--tls-cert", &garbage, "--tls-key", &key],
        "holds no PEM certificate",
    );
    refused(
        &["--tls-cert", &cert, "--tls-key", &garbage],
        "no usable PEM private key",
    );
    refused(
        &["--tls-cert", &cert, "--tls-key", &other_key],
        "does not belong to the certificate",
    );
    refused(
        &["--peer-tls-cert", &cert, "--peer-tls-key", &key],
        "missing: peer_tls_ca",
    );
    refused(
        &[
            "--peer-tls-cert",
            &cert,
            "--peer-tls-key",
            &key,
            "--peer-tls-ca",
            &garbage,
        ],
        "holds no PEM certificate",
    );
}

/// The leaf certificate (DER) a TLS server at `addr` presents.
async fn served_cert(addr: &str, ca: &Path) -> Vec<u8> {
    let roots = tael_raft::tls::load_roots(ca).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(tael_raft::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der_of(cert: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(cert)
        .unwrap()
        .to_vec()
}

/// A running node serves a certificate replaced on disk without a restart;
/// a broken replacement keeps the previous one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_served_without_a_restart() {
    let pki = client_pki();
    let live = tempfile::tempdir().unwrap();
    let (cert, key) = pki.issue_in(live.path(), "live");
    let mut c = TestCluster::start(1, &["--tls-cert", &s(&cert), "--tls-key", &s(&key)]);
    c.use_https();
    c.wait_healthy(1).await;
    let rest = c.node(1).rest.clone();
    assert_eq!(served_cert(&rest, &pki.ca_cert).await, der_of(&cert));

    // Rotate as an operator would: write the new pair aside, rename over.
    let staged = tempfile::tempdir_in(live.path()).unwrap();
    let (new_cert, new_key) = pki.issue_in(staged.path(), "live");
    let new_der = der_of(&new_cert);
    std::fs::rename(&new_key, &key).unwrap();
    std::fs::rename(&new_cert, &cert).unwrap();
    wait_until(
        Duration::from_secs(10),
        "the new certificate served",
        || async { served_cert(&rest, &pki.ca_cert).await == new_der },
    )
    .await;
    let other = c.node(1).otlp_http.clone();
    assert_eq!(
        served_cert(&other, &pki.ca_cert).await,
        new_der,
        "OTLP/HTTP serves it too"
    );

    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\ntruncated\n").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(served_cert(&rest, &pki.ca_cert).await, new_der);
    let r = http_client::get(&c.node(1).url("/healthz")).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(
        c.node(1).log_text().contains("cannot be loaded"),
        "{}",
        c.node(1).log_text()
    );
}
