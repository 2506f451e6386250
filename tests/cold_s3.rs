//! The shared cold store (`--cold-store s3://...`) against a real
//! S3-compatible server, moto's, started here: the leader writes one object
//! per move, every node answers from it as it answered from its hot tier,
//! the store becoming unreachable loses nothing (moves wait, queries that
//! need a cold range say which range, hot data still answers), and a node
//! that joins later reads the same objects.
//!
//! Needs moto (`pip install 'moto[server]'`, as `scripts/install-test-deps`
//! does); without it the test fails and says so.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tael_raft::http_client;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const SEC: u64 = 1_000_000_000;
const MINUTE: u64 = 60 * SEC;
const BUCKET: &str = "tael-cold";
const PREFIX: &str = "cluster-a";

const YOUNG_AGE: u64 = 40 * SEC;
const YOUNG_TRACES: u64 = 12;
const SPANS_PER_TRACE: u64 = 4;
const YOUNG_LOGS: u64 = 20;

/// moto's S3 server on a port of its own, killed when dropped.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    async fn start() -> Moto {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let probe = Command::new(&python)
            .args(["-c", "import moto.server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            probe.is_ok_and(|s| s.success()),
            "moto is missing: this test needs an S3-compatible server, moto's \
             ({python} -m moto.server). Install it with scripts/install-test-deps \
             (pip install 'moto[server]')"
        );
        let port = free_port();
        let child = Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto");
        let moto = Moto { child, port };
        wait_until(Duration::from_secs(30), "moto listening", || async {
            TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
        moto
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Sends `method` `path` to moto, asserts a 200 and returns the body.
    async fn request_ok(&self, method: &str, path: &str, what: &str) -> Vec<u8> {
        let r = http_client::request_with_headers(
            method,
            &self.url(path),
            &[],
            b"",
            Duration::from_secs(10),
        )
        .await
        .expect(what);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.body
    }

    async fn create_bucket(&self) {
        self.request_ok("PUT", &format!("/{BUCKET}"), "creating the bucket")
            .await;
    }

    /// The keys of the bucket's objects under the cluster's prefix.
    async fn objects(&self) -> Vec<String> {
        let body = self
            .request_ok(
                "GET",
                &format!("/{BUCKET}?list-type=2&prefix={PREFIX}/"),
                "listing the bucket",
            )
            .await;
        let xml = String::from_utf8_lossy(&body).into_owned();
        xml.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP relay in front of moto that can be cut: while closed, every
/// connection through it is dropped at once, as when the store is down
/// or unreachable (moto itself keeps its objects in memory, so stopping
/// it would lose them).
struct Gate {
    port: u16,
    open: Arc<watch::Sender<bool>>,
}

impl Gate {
    async fn start(target: u16) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*rx.borrow() {
                    continue; // dropped: the client sees the connection close
                }
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Gate {
            port,
            open: Arc::new(tx),
        }
    }

    fn set_open(&self, open: bool) {
        self.open.send_replace(open);
    }
}

/// A trace of `spans` spans of `service` that started `age` ago, the spans
/// a millisecond apart and half a millisecond long.
fn aged_trace(
    service: &str,
    trace_no: u64,
    spans: u64,
    age: u64,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    aged_trace_request(service, trace_no, spans, age, |_| 500_000)
}

fn log_at(body: &str, time: u64) -> opentelemetry_proto::tonic::logs::v1::LogRecord {
    string_log(body, time, 9)
}

/// Cold rows (spans, logs) and cold files, as node `node`'s manifest says.
async fn cold(c: &TestCluster, node: u64) -> (u64, u64, u64) {
    let v = c.get_json(node, "/api/v1/storage").await;
    let cold = &v["tiers"]["cold"];
    let n = |s: &str, f: &str| cold[s][f].as_u64().unwrap_or(0);
    let files = n("spans", "files") + n("logs", "files") + n("metric_points", "files");
    (n("spans", "rows"), n("logs", "rows"), files)
}

/// Node `node`'s answers to `paths`, as they came.
async fn answers(c: &TestCluster, node: u64, paths: &[String]) -> BTreeMap<String, String> {
    c.answers_by_path(node, paths, |_, body| {
        String::from_utf8_lossy(body).into_owned()
    })
    .await
}

/// Asserts node `node` answers `paths` exactly as it did in `before`.
async fn assert_answers_unchanged(
    c: &TestCluster,
    node: u64,
    paths: &[String],
    before: &BTreeMap<String, String>,
) {
    let after = answers(c, node, paths).await;
    assert_eq!(&after, before, "node {node}: answers changed");
}

fn window_paths((from, to): (u64, u64)) -> Vec<String> {
    let w = format!("start={}&end={}", from / SEC, to / SEC + 1);
    vec![
        format!("/api/v1/traces/{}", trace_hex(1)),
        format!("/api/v1/traces/{}", trace_hex(YOUNG_TRACES)),
        format!("/api/v1/traces?service=young-svc&limit=1000&{w}"),
        format!("/api/v1/traces?limit=5&{w}"),
        format!("/api/v1/logs?service=log-svc&limit=1000&{w}"),
        format!("/tempo/api/traces/{}", trace_hex(2)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_object_per_move_every_node_reads_it_and_an_outage_loses_nothing() {
    let moto = Moto::start().await;
    moto.create_bucket().await;
    let gate = Gate::start(moto.port).await;
    // The nodes inherit these: the standard settings of an S3 client.
    std::env::set_var(
        "AWS_ENDPOINT_URL",
        format!("http://127.0.0.1:{}", gate.port),
    );
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_ALLOW_HTTP", "true");
    let store = format!("s3://{BUCKET}/{PREFIX}");
    let mut args = ONE_MINUTE_HOT_WINDOW_ARGS.to_vec();
    args.extend([
        "--snapshot-every-entries",
        "20",
        "--log-entries-kept-after-snapshot",
        "5",
        "--cold-store",
        &store,
    ]);
    let mut c = TestCluster::start(3, &args);
    c.init().await;
    let leader = c.wait_leader().await;
    let mut client = c.otlp_client(leader).await;

    let young_start = now_nanos() - YOUNG_AGE;
    for t in 1..=YOUNG_TRACES {
        export(
            &mut client,
            aged_trace("young-svc", t, SPANS_PER_TRACE, YOUNG_AGE),
        )
        .await
        .unwrap();
    }
    let logs = (0..YOUNG_LOGS)
        .map(|i| log_at(&format!("young{i}"), young_start + i * 1_000))
        .collect();
    post_protobuf_ok(&c, leader, "/v1/logs", &logs_request(Some("log-svc"), logs)).await;
    export(&mut client, aged_trace("fresh-svc", 900, 2, 0))
        .await
        .unwrap();
    let young = (young_start - SEC, young_start + SEC);
    let paths = window_paths(young);

    // Hot everywhere: every node answers, and all the same.
    let mut before = Vec::new();
    for node in 1..=3 {
        before.push(answers(&c, node, &paths).await);
    }
    assert_eq!(before[0], before[1]);
    assert_eq!(before[0], before[2]);
    assert!(
        before[0][&paths[2]].contains("young-svc"),
        "{}",
        before[0][&paths[2]]
    );

    let spans = YOUNG_TRACES * SPANS_PER_TRACE;
    for node in 1..=3 {
        wait_until(Duration::from_secs(90), "young records cold", || async {
            let (s, l, _) = cold(&c, node).await;
            (s, l) == (spans, YOUNG_LOGS)
        })
        .await;
    }
    let files = cold(&c, leader).await.2;
    let objects = moto.objects().await;
    assert_eq!(
        objects.len() as u64,
        files,
        "one object per move, written once: {objects:?}"
    );
    assert!(
        objects.iter().all(|o| o.ends_with(".parquet")),
        "{objects:?}"
    );
    for node in 1..=3 {
        assert_answers_unchanged(&c, node, &paths, &before[node as usize - 1]).await;
        let storage = c.get_json(node, "/api/v1/storage").await;
        assert_eq!(
            storage["tiers"]["cold"]["missing_files"],
            serde_json::json!([])
        );
        // Nothing is kept locally: the objects are the only copy.
        let local = c.node(node).data_dir.join("cold");
        let local_files = walk_files(&local);
        assert!(local_files.is_empty(), "node {node}: {local_files:?}");
    }

    // The store becomes unreachable while more aged data arrives.
    gate.set_open(false);
    let late_start = now_nanos() - 2 * MINUTE;
    for t in 500..505 {
        export(&mut client, aged_trace("late-svc", t, 3, 2 * MINUTE))
            .await
            .unwrap();
    }
    let fresh_start = now_nanos();
    export(&mut client, aged_trace("fresh-svc", 901, 2, 0))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let leader = c.wait_leader().await;
    for node in 1..=3 {
        // Nothing moved, nothing lost: the late records answer from hot.
        assert_eq!(cold(&c, node).await.0, spans, "node {node}");
        let late = c
            .get_json(
                node,
                &format!(
                    "/api/v1/traces?service=late-svc&limit=100&start={}&end={}",
                    late_start / SEC - 1,
                    late_start / SEC + 2
                ),
            )
            .await;
        assert_eq!(
            late["spans"].as_array().unwrap().len(),
            15,
            "node {node}: {late}"
        );
        let fresh = c
            .get_json(
                node,
                &format!(
                    "/api/v1/traces?service=fresh-svc&limit=100&start={}",
                    fresh_start / SEC - 1
                ),
            )
            .await;
        assert_eq!(
            fresh["spans"].as_array().unwrap().len(),
            2,
            "node {node}: {fresh}"
        );
        // A query that needs the cold range says which.
        let r = c.get(node, &paths[2]).await;
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(r.status, 503, "node {node}: {body}");
        assert!(
            body.contains("cold spans data from") && body.contains("unavailable"),
            "node {node}: {body}"
        );
    }
    let log = c.node(leader).log_text();
    assert!(
        log.contains("cold move could not run"),
        "the leader tried and failed"
    );

    // Back: the moves resume, and everything answers as before.
    gate.set_open(true);
    for node in 1..=3 {
        wait_until(Duration::from_secs(60), "late records cold", || async {
            cold(&c, node).await.0 == spans + 15
        })
        .await;
    }
    let objects = moto.objects().await;
    assert_eq!(
        objects.len() as u64,
        cold(&c, leader).await.2,
        "{objects:?}"
    );
    for node in 1..=3 {
        assert_answers_unchanged(&c, node, &paths, &before[node as usize - 1]).await;
        let v = c
            .get_json(node, &format!("/api/v1/traces/{}", trace_hex(502)))
            .await;
        assert_eq!(v["span_count"], 3, "node {node}: {v}");
    }

    // A node that joins now (by snapshot: the log is purged) reads the
    // same objects.
    let new = c.join_learner(leader, leader).await;
    assert!(
        c.metric_of(new, "tael_snapshots_installed_total").await >= 1,
        "the new node caught up by snapshot"
    );
    assert_eq!(cold(&c, new).await, cold(&c, leader).await);
    assert_eq!(answers(&c, new, &paths).await, before[0]);
    assert!(walk_files(&c.node(new).data_dir.join("cold")).is_empty());
}

/// Every file under `dir` (none when it does not exist).
fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}
