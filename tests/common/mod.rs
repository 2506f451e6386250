//! A real cluster for integration tests: `tael-raft serve` processes on
//! loopback ports, each with its own data directory, killed on drop.

#![allow(dead_code)]

pub mod pki;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tael_raft::http_client::{self, HttpResponse};

pub const BIN: &str = env!("CARGO_BIN_EXE_tael-raft");

/// Node flags for cold-tier tests: a one-minute hot window, moves and
/// retention cuts every second, everything kept ten minutes, and no
/// background consistency checks (the tests ask for them when they want).
pub const ONE_MINUTE_HOT_WINDOW_ARGS: [&str; 14] = [
    "--hot-window",
    "1m",
    "--compaction-interval",
    "1s",
    "--retention-traces",
    "10m",
    "--retention-logs",
    "10m",
    "--retention-metrics",
    "10m",
    "--retention-llm-payloads",
    "10m",
    "--consistency-check-interval-secs",
    "0",
];

/// Test ports come from below Linux's ephemeral range (32768 and up). A port
/// picked by binding port 0 is an ephemeral one, and an outgoing connection
/// (a node dialing its peers) could take it before the node that should
/// listen on it starts: "Address already in use" at start-up.
const TEST_PORTS: std::ops::Range<u16> = 10_000..32_000;

pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let span = TEST_PORTS.end - TEST_PORTS.start;
    // Each test process starts at its own place, so two at once rarely meet.
    let start = (std::process::id() % u32::from(span)) as u16;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = TEST_PORTS.start + (start + n) % span;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {TEST_PORTS:?}");
}

pub struct TestNode {
    pub id: u64,
    pub rest: String,
    pub raft: String,
    pub otlp: String,
    pub otlp_http: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// `http`, or `https` for a node serving REST and OTLP/HTTP over TLS.
    pub scheme: &'static str,
    child: Option<Child>,
    extra_args: Vec<String>,
}

impl TestNode {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The running process's id (for signals such as SIGSTOP).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.rest, path)
    }

    /// An OTLP/HTTP URL on this node, e.g. `otlp_url("/v1/logs")`.
    pub fn otlp_url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.otlp_http, path)
    }

    pub fn wal_segments(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.data_dir.join("raft-log"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        v.sort();
        v
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<TestNode>,
}

/// Fast timeouts and small footprints: several nodes share two cores.
pub fn default_node_args() -> Vec<String> {
    [
        "--heartbeat-interval-ms",
        "100",
        "--election-timeout-min-ms",
        "700",
        "--election-timeout-max-ms",
        "1400",
        "--runtime-threads",
        "2",
        "--storage-threads",
        "1",
        "--cache-mb",
        "16",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl TestCluster {
    /// Starts `n` nodes (not yet initialized).
    pub fn start(n: u64, extra_args: &[&str]) -> TestCluster {
        Self::start_overriding(n, &[], extra_args)
    }

    /// Starts `n` nodes whose shared default arguments named in `overrides`
    /// (flag, value) take the given values instead. Nodes added later
    /// (`add_node`) get the unchanged defaults.
    pub fn start_overriding(
        n: u64,
        overrides: &[(&str, &str)],
        extra_args: &[&str],
    ) -> TestCluster {
        let mut defaults = default_node_args();
        for (flag, value) in overrides {
            let at = defaults
                .iter()
                .position(|a| a == flag)
                .unwrap_or_else(|| panic!("{flag} is not a default argument"));
            defaults[at + 1] = value.to_string();
        }
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for id in 1..=n {
            let mut args = defaults.clone();
            args.extend(extra_args.iter().map(|s| s.to_string()));
            nodes.push(TestNode {
                id,
                rest: format!("127.0.0.1:{}", free_port()),
                raft: format!("127.0.0.1:{}", free_port()),
                otlp: format!("127.0.0.1:{}", free_port()),
                otlp_http: format!("127.0.0.1:{}", free_port()),
                data_dir: dir.path().join(format!("node{id}")),
                log_path: dir.path().join(format!("node{id}.log")),
                scheme: "http",
                child: None,
                extra_args: args,
            });
        }
        let mut c = TestCluster { dir, nodes };
        for id in 1..=n {
            c.spawn(id);
        }
        c
    }

    /// Starts one more node (not part of the cluster until added) and
    /// returns its id.
    pub fn add_node(&mut self) -> u64 {
        let defaults = default_node_args().len();
        let extra: Vec<String> = self.nodes[0].extra_args[defaults..].to_vec();
        self.add_node_with(&extra.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// [`TestCluster::add_node`] with these flags instead of the first
    /// node's.
    pub fn add_node_with(&mut self, extra_args: &[&str]) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        let mut args = default_node_args();
        args.extend(extra_args.iter().map(|s| s.to_string()));
        self.nodes.push(TestNode {
            id,
            rest: format!("127.0.0.1:{}", free_port()),
            raft: format!("127.0.0.1:{}", free_port()),
            otlp: format!("127.0.0.1:{}", free_port()),
            otlp_http: format!("127.0.0.1:{}", free_port()),
            data_dir: self.dir.path().join(format!("node{id}")),
            log_path: self.dir.path().join(format!("node{id}.log")),
            scheme: self.nodes.first().map_or("http", |n| n.scheme),
            child: None,
            extra_args: args,
        });
        self.spawn(id);
        id
    }

    /// Creates an API key `name` with `role` through node 2, with the
    /// `admin` key; returns its id and its secret.
    pub async fn create_key(&self, admin: &str, name: &str, role: &str) -> (String, String) {
        let body = serde_json::json!({ "name": name, "role": role }).to_string();
        let auth = format!("Bearer {admin}");
        let r = http_client::request_with_headers(
            "POST",
            &self.node(2).url("/api/v1/keys"),
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &auth),
            ],
            body.as_bytes(),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json().unwrap();
        assert_eq!(v["role"], role);
        (
            v["id"].as_str().unwrap().to_string(),
            v["key"].as_str().unwrap().to_string(),
        )
    }

    /// Starts one more node, adds it as a learner through `via`'s REST API,
    /// and waits until it applied as far as `leader` had; returns its id.
    pub async fn join_learner(&mut self, via: u64, leader: u64) -> u64 {
        let new = self.add_node();
        self.wait_healthy(new).await;
        let r = http_client::request_with_headers(
            "POST",
            &self.node(via).url("/api/v1/cluster/members"),
            &[("content-type", "application/json")],
            serde_json::json!({"node_id": new, "raft_addr": self.node(new).raft})
                .to_string()
                .as_bytes(),
            Duration::from_secs(30),
        )
        .await
        .expect("POST /api/v1/cluster/members");
        assert!(
            r.status == 200 || r.status == 201,
            "adding node {new}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        wait_until(
            Duration::from_secs(30),
            "the new node catches up",
            || async {
                let applied = self.node_entry(leader, leader).await["applied_index"]
                    .as_u64()
                    .unwrap_or(0);
                self.node_entry(leader, new).await["applied_index"]
                    .as_u64()
                    .unwrap_or(0)
                    >= applied
            },
        )
        .await;
        new
    }

    /// Requests to every node (and nodes added later) go over `https://`.
    pub fn use_https(&mut self) {
        for n in &mut self.nodes {
            n.scheme = "https";
        }
    }

    pub fn node(&self, id: u64) -> &TestNode {
        &self.nodes[(id - 1) as usize]
    }

    pub fn spawn(&mut self, id: u64) {
        let n = &mut self.nodes[(id - 1) as usize];
        assert!(n.child.is_none(), "node {id} already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log_path)
            .unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--node-id", &id.to_string()])
            .arg("--data-dir")
            .arg(&n.data_dir)
            .args([
                "--raft-addr",
                &n.raft,
                "--rest-addr",
                &n.rest,
                "--otlp-grpc-addr",
                &n.otlp,
                "--otlp-http-addr",
                &n.otlp_http,
            ])
            .args(&n.extra_args)
            .env("TAEL_LOG", "info,openraft=warn")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn tael-raft");
        n.child = Some(child);
    }

    /// SIGKILL: the process dies at once, mid-whatever.
    pub fn kill(&mut self, id: u64) {
        let n = &mut self.nodes[(id - 1) as usize];
        let mut child = n.child.take().expect("node is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Waits for a node that is expected to exit by itself; returns its status.
    pub fn wait_exit(&mut self, id: u64, timeout: Duration) -> Option<std::process::ExitStatus> {
        let n = &mut self.nodes[(id - 1) as usize];
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = n.child.as_mut().unwrap().try_wait().unwrap() {
                n.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub async fn wait_healthy(&self, id: u64) {
        let n = self.node(id);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if matches!(http_client::get(&n.url("/healthz")).await, Ok(r) if r.status == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Say why: a port taken by another process, a refusal at start-up.
        let log = n.log_text();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        panic!(
            "node {id} not healthy within 30s; the end of its log:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }

    pub async fn init(&self) {
        for n in &self.nodes {
            self.wait_healthy(n.id).await;
        }
        let members: Vec<(u64, String)> =
            self.nodes.iter().map(|n| (n.id, n.raft.clone())).collect();
        tael_raft::cmd::init::run(&self.nodes[0].url(""), &members, Duration::from_secs(20))
            .await
            .expect("init");
    }

    pub async fn cluster_status(&self, id: u64) -> Option<serde_json::Value> {
        let r = http_client::get(&self.node(id).url("/api/v1/cluster"))
            .await
            .ok()?;
        (r.status == 200).then(|| r.json().ok()).flatten()
    }

    /// Node `id`'s own entry in node `via`'s `/api/v1/cluster` answer.
    pub async fn node_entry(&self, via: u64, id: u64) -> serde_json::Value {
        let status = self.cluster_status(via).await.expect("cluster status");
        status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .expect("node in status")
            .clone()
    }

    /// Waits until every running node agrees on one leader, and returns it.
    pub async fn wait_leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut leaders = Vec::new();
            for n in self.nodes.iter().filter(|n| n.is_running()) {
                let r = http_client::get(&n.url("/readyz"))
                    .await
                    .ok()
                    .and_then(|r| r.json().ok());
                leaders.push(r.and_then(|v| v["leader"].as_u64()));
            }
            if let Some(Some(l)) = leaders.first() {
                let running = self.node(*l).is_running();
                if running && leaders.iter().all(|x| *x == Some(*l)) {
                    return *l;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within 30s: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64) {
        let n = self.node(id);
        wait_until(
            Duration::from_secs(60),
            &format!("node {id} applied {index}"),
            || async {
                let r = http_client::get(&n.url("/readyz"))
                    .await
                    .ok()
                    .and_then(|r| r.json().ok());
                r.and_then(|v| v["applied_index"].as_u64())
                    .is_some_and(|a| a >= index)
            },
        )
        .await;
    }

    pub async fn get(&self, id: u64, path: &str) -> HttpResponse {
        http_client::get(&self.node(id).url(path))
            .await
            .expect("GET")
    }

    /// The value of node `id`'s unlabelled Prometheus sample `name`, read
    /// from its `/metrics` now.
    pub async fn metric_of(&self, id: u64, name: &str) -> u64 {
        let text = String::from_utf8(self.get(id, "/metrics").await.body).unwrap();
        metric(&text, name)
    }

    /// GETs `path` from node `id`, asserts it answered 200 (showing the
    /// body when not) and parses the answer as JSON.
    pub async fn get_json(&self, id: u64, path: &str) -> serde_json::Value {
        let r = self.get(id, path).await;
        assert_eq!(
            r.status,
            200,
            "node {id} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json().unwrap()
    }

    /// The answers node `id` gives to `paths`, each asserted 200 and kept
    /// as `body_text(path, body)` makes it (to compare answers across nodes
    /// or across time, without what legitimately varies).
    pub async fn answers_by_path(
        &self,
        id: u64,
        paths: &[String],
        body_text: impl Fn(&str, &[u8]) -> String,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for p in paths {
            let r = self.get(id, p).await;
            assert_eq!(
                r.status,
                200,
                "node {id} {p}: {}",
                String::from_utf8_lossy(&r.body)
            );
            out.insert(p.clone(), body_text(p, &r.body));
        }
        out
    }

    /// Asks node `via` to compare every replica's state and asserts they
    /// agree; `timeout` bounds the whole request.
    pub async fn assert_replicas_agree(&self, via: u64, timeout: Duration) {
        let r = http_client::request_with_headers(
            "POST",
            &self.node(via).url("/api/v1/cluster/check"),
            &[("content-type", "application/json")],
            b"",
            timeout,
        )
        .await
        .unwrap();
        let report: serde_json::Value = r.json().unwrap_or_default();
        assert_eq!(r.status, 200, "{report}");
        assert_eq!(report["agree"], true, "{report}");
    }

    pub async fn otlp_client(&self, id: u64) -> TraceServiceClient<tonic::transport::Channel> {
        TraceServiceClient::connect(format!("http://{}", self.node(id).otlp))
            .await
            .expect("connect OTLP")
    }

    pub fn dump_logs(&self) {
        for n in &self.nodes {
            eprintln!("===== node {} log =====\n{}", n.id, n.log_text());
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        key_strindex: 0,
    }
}

pub fn int_kv(k: &str, v: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(v)),
        }),
        key_strindex: 0,
    }
}

/// The wall clock in unix nanoseconds.
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// One trace of `spans` spans, ids derived from `trace_no`, for `service`.
pub fn trace_request(service: &str, trace_no: u64, spans: u64) -> ExportTraceServiceRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let spans = (0..spans)
        .map(|i| Span {
            trace_id: trace_id(trace_no).to_vec(),
            span_id: span_id(trace_no, i).to_vec(),
            parent_span_id: if i == 0 {
                vec![]
            } else {
                span_id(trace_no, 0).to_vec()
            },
            name: format!("op-{i}"),
            kind: 2,
            start_time_unix_nano: now - 1_000_000,
            end_time_unix_nano: now,
            attributes: vec![kv("test.trace_no", &trace_no.to_string())],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

pub fn trace_id(trace_no: u64) -> [u8; 16] {
    let mut t = [0u8; 16];
    t[0] = 0xab;
    t[8..].copy_from_slice(&trace_no.to_be_bytes());
    t
}

pub fn span_id(trace_no: u64, i: u64) -> [u8; 8] {
    ((trace_no << 8) | (i + 1)).to_be_bytes()
}

pub fn trace_hex(trace_no: u64) -> String {
    tael_consensus::hex(&trace_id(trace_no))
}

pub async fn export(
    client: &mut TraceServiceClient<tonic::transport::Channel>,
    req: ExportTraceServiceRequest,
) -> Result<ExportTraceServiceResponse, tonic::Status> {
    let mut r = tonic::Request::new(req);
    r.set_timeout(Duration::from_secs(15));
    client.export(r).await.map(|r| r.into_inner())
}

/// Trace ids (hex) of every span of `service` that node `id` returns.
pub async fn traces_of_service(
    c: &TestCluster,
    id: u64,
    service: &str,
    consistency: &str,
) -> Result<Vec<(String, String)>, String> {
    let r = http_client::get(&c.node(id).url(&format!(
        "/api/v1/traces?service={service}&limit=10000&consistency={consistency}"
    )))
    .await?;
    if r.status != 200 {
        return Err(format!(
            "status {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
    }
    let v = r.json()?;
    Ok(v["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["trace_id"].as_str().unwrap().to_string(),
                s["span_id"].as_str().unwrap().to_string(),
            )
        })
        .collect())
}

/// The value of an unlabelled Prometheus sample in `text`.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.trim().parse::<f64>().ok())
        })
        .unwrap_or_else(|| panic!("metric {name} missing")) as u64
}

pub fn resource(service: Option<&str>) -> Option<Resource> {
    Some(Resource {
        attributes: service
            .map(|s| vec![kv("service.name", s)])
            .unwrap_or_default(),
        ..Default::default()
    })
}

pub fn logs_request(service: Option<&str>, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(service),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

pub fn metrics_request(service: &str, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(Some(service)),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

pub async fn post(
    c: &TestCluster,
    id: u64,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> http_client::HttpResponse {
    http_client::request_with_headers(
        "POST",
        &c.node(id).otlp_url(path),
        headers,
        body,
        Duration::from_secs(20),
    )
    .await
    .expect("POST")
}

/// POSTs the OTLP protobuf message `msg` to node `id`'s OTLP HTTP `path`
/// (`/v1/logs`, `/v1/metrics`, ...) and asserts it was accepted, showing
/// the answer's body when not.
pub async fn post_protobuf_ok(c: &TestCluster, id: u64, path: &str, msg: &impl prost::Message) {
    let r = post(
        c,
        id,
        path,
        &[("content-type", "application/x-protobuf")],
        &msg.encode_to_vec(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// Trace `trace_no` of `spans` spans of `service`: span 0 starts
/// `age_nanos` ago, the others a millisecond apart after it, and span `i`
/// lasts `duration_nanos(i)`. For tests that place records before or
/// inside a retention or hot window.
pub fn aged_trace_request(
    service: &str,
    trace_no: u64,
    spans: u64,
    age_nanos: u64,
    duration_nanos: impl Fn(u64) -> u64,
) -> ExportTraceServiceRequest {
    let mut req = trace_request(service, trace_no, spans);
    let start = now_nanos() - age_nanos;
    for (i, span) in req.resource_spans[0].scope_spans[0]
        .spans
        .iter_mut()
        .enumerate()
    {
        span.start_time_unix_nano = start + i as u64 * 1_000_000;
        span.end_time_unix_nano = span.start_time_unix_nano + duration_nanos(i as u64);
    }
    req
}

/// Makes span 0 of `req` an LLM chat call whose prompt is `prompt` (the
/// server keeps the prompt as a payload blob, indexed for full text).
pub fn add_llm_prompt(req: &mut ExportTraceServiceRequest, prompt: &str) {
    req.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .extend([
            kv("gen_ai.operation.name", "chat"),
            kv("gen_ai.prompt", prompt),
        ]);
}

/// A log record at `time_unix_nano` whose body is the string `body`.
pub fn string_log(body: &str, time_unix_nano: u64, severity_number: i32) -> LogRecord {
    LogRecord {
        time_unix_nano,
        severity_number,
        body: Some(AnyValue {
            value: Some(Value::StringValue(body.into())),
        }),
        ..Default::default()
    }
}

/// A gauge `name` of one data point per `(time_unix_nano, value)`.
pub fn gauge_metric(name: &str, points: &[(u64, f64)]) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::Gauge(Gauge {
            data_points: points
                .iter()
                .map(|&(time_unix_nano, value)| NumberDataPoint {
                    time_unix_nano,
                    value: Some(number_data_point::Value::AsDouble(value)),
                    ..Default::default()
                })
                .collect(),
        })),
        ..Default::default()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}
