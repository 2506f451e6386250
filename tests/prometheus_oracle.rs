//! Prometheus compatibility, checked against a real Prometheus: it scrapes a
//! target this test serves (counters with a reset, gauges, a series that
//! disappears, a classic histogram, label sets that collide in matching)
//! and remote-writes what it scrapes to a 3-node cluster. Once the cluster
//! holds every sample Prometheus holds, the same PromQL queries at the same
//! times go to both, and the answers must agree: same series, same values
//! (exact, or within a relative 1e-9).
//!
//! Needs the `prometheus` binary (scripts/install-test-deps installs it).

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, TestCluster};
use prost::Message;
use serde_json::Value;
use tael_raft::http_client;
use tael_raft::prom::remote_write::{Label, Sample, TimeSeries, WriteRequest, MAX_WRITE_BYTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long Prometheus scrapes before the answers are compared.
const SCRAPE_FOR: Duration = Duration::from_secs(40);
/// The scrape that resets the counters.
const RESET_AT_SCRAPE: u64 = 15;
/// `test_flaky{id="1"}` is exposed before this scrape only (then Prometheus
/// writes a staleness marker for it); `id="2"` from it on.
const FLAKY_SWITCH_AT_SCRAPE: u64 = 18;

// ---------------------------------------------------------------- target

/// The metrics page of scrape `n` (0-based): values are functions of `n`.
fn metrics_page(n: u64) -> String {
    let counter = |step: &dyn Fn(u64) -> u64| -> u64 {
        let from = if n >= RESET_AT_SCRAPE {
            RESET_AT_SCRAPE
        } else {
            0
        };
        (from..n).map(step).sum()
    };
    let a200 = counter(&|i| i % 5 + 1);
    let a500 = counter(&|i| i % 2);
    let b200 = (0..n).map(|i| i % 3 * 2 + 1).sum::<u64>();
    let kitchen = 20.0 + 3.0 * (n as f64 / 3.0).sin();
    let hall = 15.25 + (n % 7) as f64 * 0.5;
    let mut page = format!(
        "# TYPE test_requests_total counter\n\
         test_requests_total{{code=\"200\",path=\"/a\"}} {a200}\n\
         test_requests_total{{code=\"500\",path=\"/a\"}} {a500}\n\
         test_requests_total{{code=\"200\",path=\"/b\"}} {b200}\n\
         # TYPE test_temperature gauge\n\
         test_temperature{{room=\"kitchen\"}} {kitchen}\n\
         test_temperature{{room=\"hall\"}} {hall}\n\
         # TYPE test_info gauge\n\
         test_info{{path=\"/a\",version=\"v1\"}} 1\n\
         test_info{{path=\"/b\",version=\"v2\"}} 1\n"
    );
    page.push_str("# TYPE test_flaky gauge\n");
    if n < FLAKY_SWITCH_AT_SCRAPE {
        page.push_str(&format!("test_flaky{{id=\"1\"}} {}\n", n * 3));
    } else {
        page.push_str(&format!("test_flaky{{id=\"2\"}} {}\n", n / 2));
    }
    // A classic histogram: per scrape, i0 observations in (0, 0.1], i1 in
    // (0.1, 0.5], i2 in (0.5, 1], one above 1.
    let (mut b01, mut b05, mut b1, mut inf, mut sum) = (0u64, 0u64, 0u64, 0u64, 0.0f64);
    for i in 0..n {
        let (i0, i1, i2) = (i % 3, i % 2 + 1, i % 4);
        b01 += i0;
        b05 += i0 + i1;
        b1 += i0 + i1 + i2;
        inf += i0 + i1 + i2 + 1;
        sum += 0.05 * i0 as f64 + 0.3 * i1 as f64 + 0.7 * i2 as f64 + 2.0;
    }
    page.push_str(&format!(
        "# TYPE test_latency_seconds histogram\n\
         test_latency_seconds_bucket{{handler=\"/a\",le=\"0.1\"}} {b01}\n\
         test_latency_seconds_bucket{{handler=\"/a\",le=\"0.5\"}} {b05}\n\
         test_latency_seconds_bucket{{handler=\"/a\",le=\"1\"}} {b1}\n\
         test_latency_seconds_bucket{{handler=\"/a\",le=\"+Inf\"}} {inf}\n\
         test_latency_seconds_sum{{handler=\"/a\"}} {sum}\n\
         test_latency_seconds_count{{handler=\"/a\"}} {inf}\n"
    ));
    page
}

/// Serves [`metrics_page`] on loopback, one page per scrape.
async fn serve_target(listener: tokio::net::TcpListener, scrapes: Arc<AtomicU64>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        let scrapes = scrapes.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                }
            }
            let n = scrapes.fetch_add(1, Ordering::SeqCst);
            let body = metrics_page(n);
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}

// ------------------------------------------------------------ prometheus

/// A Prometheus process with its data in a temporary directory, killed on
/// drop (also when the test panics).
struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "===== prometheus log (end) =====\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

impl Prometheus {
    fn start(target: &str, remote_write_url: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: oracle\n    static_configs:\n      - targets: ['{target}']\n\
             remote_write:\n  - url: {remote_write_url}\n    remote_timeout: 10s\n\
             \x20   queue_config:\n      batch_send_deadline: 1s\n      max_samples_per_send: 500\n\
             \x20     min_backoff: 100ms\n      max_backoff: 1s\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start prometheus (scripts/install-test-deps installs it)");
        Prometheus { child, port, dir }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

// --------------------------------------------------------------- queries

fn encode_form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Asks `base` (`.../api/v1/...` prefix) by GET, or by a form POST.
async fn ask(base: &str, endpoint: &str, pairs: &[(&str, &str)], post: bool) -> (u16, Value) {
    let form = encode_form(pairs);
    let r = if post {
        http_client::request_with_headers(
            "POST",
            &format!("{base}{endpoint}"),
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
            Duration::from_secs(30),
        )
        .await
    } else {
        http_client::request_with_headers(
            "GET",
            &format!("{base}{endpoint}?{form}"),
            &[],
            b"",
            Duration::from_secs(30),
        )
        .await
    }
    .unwrap_or_else(|e| panic!("{endpoint} {pairs:?}: {e}"));
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        panic!(
            "{endpoint} {pairs:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&r.body)
        )
    });
    (r.status, v)
}

fn same_number(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) if x.is_finite() && y.is_finite() => {
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs())
        }
        _ => false,
    }
}

/// `[t, "v"]` pairs.
fn same_point(a: &Value, b: &Value) -> Result<(), String> {
    let ta = a[0].as_f64().ok_or("no time")?;
    let tb = b[0].as_f64().ok_or("no time")?;
    if (ta - tb).abs() > 1e-6 {
        return Err(format!("times differ: {a} vs {b}"));
    }
    let (va, vb) = (a[1].as_str().unwrap_or(""), b[1].as_str().unwrap_or(""));
    if !same_number(va, vb) {
        return Err(format!("values differ: {a} vs {b}"));
    }
    Ok(())
}

/// A result list keyed by its series' labels (order is not compared).
fn by_series<'a>(result: &'a Value, field: &str) -> BTreeMap<String, &'a Value> {
    result
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| (s["metric"].to_string(), &s[field]))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether Prometheus's answer has data: a scalar, or a non-empty result.
fn has_data(answer: &(u16, Value)) -> bool {
    let result = &answer.1["data"]["result"];
    answer.0 == 200 && result.as_array().is_none_or(|a| !a.is_empty())
}

/// Whether two answers agree; Prometheus's (`want`) first.
fn compare(want: &(u16, Value), got: &(u16, Value)) -> Result<(), String> {
    let ((ws, w), (gs, g)) = (want, got);
    if w["status"] != g["status"] || ws != gs {
        return Err(format!("status {ws} {w}\nvs {gs} {g}"));
    }
    if w["status"] == "error" {
        return if w["errorType"] == g["errorType"] {
            Ok(())
        } else {
            Err(format!("error types differ: {w} vs {g}"))
        };
    }
    let (wd, gd) = (&w["data"], &g["data"]);
    if wd["resultType"] != gd["resultType"] {
        return Err(format!("result types differ: {wd} vs {gd}"));
    }
    match wd["resultType"].as_str() {
        Some("scalar") | Some("string") => same_point(&wd["result"], &gd["result"]),
        Some("vector") => {
            let (a, b) = (
                by_series(&wd["result"], "value"),
                by_series(&gd["result"], "value"),
            );
            if a.keys().ne(b.keys()) {
                return Err(format!("series differ: {:?} vs {:?}", a.keys(), b.keys()));
            }
            for (k, v) in &a {
                same_point(v, b[k]).map_err(|e| format!("{k}: {e}"))?;
            }
            Ok(())
        }
        Some("matrix") => {
            let (a, b) = (
                by_series(&wd["result"], "values"),
                by_series(&gd["result"], "values"),
            );
            if a.keys().ne(b.keys()) {
                return Err(format!("series differ: {:?} vs {:?}", a.keys(), b.keys()));
            }
            for (k, v) in &a {
                let (pa, pb) = (v.as_array().unwrap(), b[k].as_array().unwrap());
                if pa.len() != pb.len() {
                    return Err(format!("{k}: {} points vs {}", pa.len(), pb.len()));
                }
                for (x, y) in pa.iter().zip(pb) {
                    same_point(x, y).map_err(|e| format!("{k}: {e}"))?;
                }
            }
            Ok(())
        }
        other => Err(format!("unexpected result type {other:?}")),
    }
}

/// Queries chosen for their edge cases.
const QUERIES: &[&str] = &[
    "1+1",
    "time()",
    "vector(1)",
    "test_temperature",
    "test_requests_total",
    "rate(test_requests_total[5s])",
    "rate(test_requests_total[10s])",
    "increase(test_requests_total[10s])",
    "irate(test_requests_total[5s])",
    "resets(test_requests_total[60s])",
    "sum by (code) (rate(test_requests_total[10s]))",
    "sum without (path) (test_requests_total)",
    "count(test_requests_total)",
    "test_flaky",
    "count_over_time(test_flaky[60s])",
    "histogram_quantile(0.9, rate(test_latency_seconds_bucket[10s]))",
    "histogram_quantile(0.5, sum by (le) (rate(test_latency_seconds_bucket[10s])))",
    "sum(rate(test_latency_seconds_sum[10s])) / sum(rate(test_latency_seconds_count[10s]))",
    "topk(2, test_requests_total)",
    "bottomk(1, test_temperature)",
    "test_temperature offset 10s",
    "rate(test_requests_total[10s] offset 5s)",
    "delta(test_temperature[10s])",
    "deriv(test_temperature[10s])",
    "avg_over_time(test_temperature[10s])",
    "max_over_time(test_temperature[30s])",
    "changes(test_temperature[30s])",
    "nonexistent_metric",
    "absent(nonexistent_metric)",
    "test_requests_total * on(path) group_left(version) test_info",
    "test_requests_total + on(path) test_requests_total",
    "test_requests_total - test_requests_total offset 5s",
    "test_requests_total > 10",
    "test_requests_total > bool 10",
    "test_requests_total unless test_requests_total{code=\"500\"}",
    "avg by (job) (test_temperature) and on(job) up",
    "quantile(0.5, test_temperature)",
    "stddev(test_temperature)",
    "label_replace(test_temperature, \"r2\", \"$1\", \"room\", \"(.*)\")",
    "predict_linear(test_temperature[20s], 60)",
    "up",
    "max_over_time(rate(test_requests_total[5s])[20s:2s])",
    "test_temperature @ end()",
    "count_values(\"v\", test_info)",
    "group by (path) (test_info)",
    "timestamp(test_flaky)",
    "absent_over_time(test_flaky{id=\"1\"}[5s])",
    "last_over_time(test_flaky[30s])",
    "sum_over_time(test_flaky[20s])",
    "histogram_quantile(0.99, rate(test_latency_seconds_bucket[30s]))",
    "label_join(test_info, \"pv\", \"-\", \"path\", \"version\")",
    "sum by (path) (test_requests_total) / on(path) test_info",
    "test_requests_total / on(path) group_right test_info",
];

/// Queries only asked at an instant (range vectors).
const INSTANT_ONLY: &[&str] = &["test_requests_total[10s]", "test_flaky[30s]"];

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// ----------------------------------------------------------------- tests

fn write_body(req: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        histograms: vec![],
    }
}

async fn remote_write(
    c: &TestCluster,
    node: u64,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let r = http_client::request_with_headers(
        "POST",
        &c.node(node).url("/api/v1/write"),
        headers,
        body,
        Duration::from_secs(30),
    )
    .await
    .expect("remote write");
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

const SNAPPY: &[(&str, &str)] = &[
    ("Content-Encoding", "snappy"),
    ("Content-Type", "application/x-protobuf"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_refuses_bad_bodies_and_stores_a_retried_batch_once() {
    let c = TestCluster::start(3, &[]);
    c.init().await;
    c.wait_leader().await;

    let (status, why) = remote_write(&c, 2, SNAPPY, b"certainly not snappy").await;
    assert_eq!(status, 400, "{why}");
    assert!(why.contains("snappy"), "{why}");

    let not_proto = snap::raw::Encoder::new()
        .compress_vec(b"\x0a\xff\xff\xff")
        .unwrap();
    let (status, why) = remote_write(&c, 2, SNAPPY, &not_proto).await;
    assert_eq!(status, 400, "{why}");
    assert!(why.contains("protobuf"), "{why}");

    let (status, why) = remote_write(&c, 2, SNAPPY, &vec![0u8; MAX_WRITE_BYTES + 1]).await;
    assert_eq!(status, 413, "{why}");

    let t = now_ms();
    let nameless = WriteRequest {
        timeseries: vec![series(&[("job", "x")], &[(t, 1.0)])],
        metadata: vec![],
    };
    let (status, why) = remote_write(&c, 2, SNAPPY, &write_body(&nameless)).await;
    assert_eq!(status, 400, "{why}");
    assert!(why.contains("__name__"), "{why}");

    let unsorted = WriteRequest {
        timeseries: vec![series(
            &[("__name__", "x"), ("job", "x"), ("a", "1")],
            &[(t, 1.0)],
        )],
        metadata: vec![],
    };
    let (status, why) = remote_write(&c, 2, SNAPPY, &write_body(&unsorted)).await;
    assert_eq!(status, 400, "{why}");

    let gzip = [("Content-Encoding", "gzip")];
    let (status, _) = remote_write(&c, 2, &gzip, &write_body(&unsorted)).await;
    assert_eq!(status, 415);

    // A batch sent twice (a retry after a lost answer) is stored once, its
    // staleness marker included.
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let batch = WriteRequest {
        timeseries: vec![series(
            &[("__name__", "retry_probe"), ("instance", "i"), ("job", "j")],
            &[(t - 2000, 1.0), (t - 1000, 2.0), (t, stale)],
        )],
        metadata: vec![],
    };
    for node in [2, 3] {
        let (status, why) = remote_write(&c, node, SNAPPY, &write_body(&batch)).await;
        assert_eq!(status, 204, "{why}");
    }
    let r = c.get(1, "/api/v1/metrics?name=retry_probe&limit=100").await;
    let v: Value = r.json().unwrap();
    assert_eq!(v["count"], 3, "{v}");
    // The label set comes back as written.
    let pairs = [
        ("match[]", "retry_probe"),
        ("start", &*secs(t - 5000)),
        ("end", &*secs(t + 1000)),
    ];
    let (status, got) = ask(
        &c.node(1).url("/prometheus/api/v1"),
        "/series",
        &pairs,
        false,
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        got["data"],
        serde_json::json!([{"__name__": "retry_probe", "instance": "i", "job": "j"}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_answers_match_a_real_prometheus() {
    let c = TestCluster::start(3, &[]);
    c.init().await;
    c.wait_leader().await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let scrapes = Arc::new(AtomicU64::new(0));
    let server = tokio::spawn(serve_target(listener, scrapes.clone()));
    let prom = Prometheus::start(&target, &c.node(2).url("/prometheus/api/v1/write"));

    // Prometheus is up and scraping.
    let deadline = Instant::now() + Duration::from_secs(30);
    while scrapes.load(Ordering::SeqCst) < 2 {
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the target"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started_ms = now_ms();
    tokio::time::sleep(SCRAPE_FOR).await;
    let cut_ms = now_ms() - 3000;
    assert!(
        scrapes.load(Ordering::SeqCst) > FLAKY_SWITCH_AT_SCRAPE + 5,
        "too few scrapes: {}",
        scrapes.load(Ordering::SeqCst)
    );

    let prom_api = prom.url("/api/v1");
    let node_api = |id: u64| c.node(id).url("/prometheus/api/v1");

    // Wait until the cluster holds every sample Prometheus holds up to the
    // cut: the raw samples of every series of the job agree.
    let raw = [("query", "{job=\"oracle\"}[60s]"), ("time", &*secs(cut_ms))];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let want = ask(&prom_api, "/query", &raw, false).await;
        let got = ask(&node_api(1), "/query", &raw, false).await;
        assert_eq!(want.0, 200, "{}", want.1);
        match compare(&want, &got) {
            Ok(()) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the cluster never caught up with Prometheus: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let instants = [
        cut_ms,
        cut_ms - 12_345,
        started_ms + 15_500,
        cut_ms - 25_000,
    ];
    let mut failures = Vec::new();
    let (mut asked, mut with_data, mut errors) = (0, 0, 0);
    for (i, q) in QUERIES.iter().chain(INSTANT_ONLY).enumerate() {
        for (j, t) in instants.iter().enumerate() {
            let pairs = [("query", *q), ("time", &*secs(*t))];
            let want = ask(&prom_api, "/query", &pairs, false).await;
            let node = 1 + ((i + j) % 3) as u64;
            let got = ask(&node_api(node), "/query", &pairs, (i + j) % 2 == 0).await;
            asked += 1;
            with_data += usize::from(has_data(&want));
            errors += usize::from(want.0 != 200);
            if let Err(e) = compare(&want, &got) {
                failures.push(format!("instant {q} at {}: {e}", secs(*t)));
            }
        }
    }
    let ranges = [
        (started_ms + 5_000, cut_ms, "1"),
        (started_ms + 2_500, cut_ms - 1_000, "3.7"),
    ];
    for (i, q) in QUERIES.iter().enumerate() {
        for (start, end, step) in ranges {
            let pairs = [
                ("query", *q),
                ("start", &*secs(start)),
                ("end", &*secs(end)),
                ("step", step),
            ];
            let want = ask(&prom_api, "/query_range", &pairs, false).await;
            let got = ask(
                &node_api(1 + (i % 3) as u64),
                "/query_range",
                &pairs,
                i % 2 == 1,
            )
            .await;
            asked += 1;
            with_data += usize::from(has_data(&want));
            errors += usize::from(want.0 != 200);
            if let Err(e) = compare(&want, &got) {
                failures.push(format!("range {q} [{start}..{end} step {step}]: {e}"));
            }
        }
    }
    // Discovery: labels, label values and series over the same window.
    let window = [("start", secs(started_ms)), ("end", secs(cut_ms))];
    let w: Vec<(&str, &str)> = window.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut p = w.clone();
        p.extend_from_slice(extra);
        p
    };
    for (endpoint, pairs) in [
        ("/labels", with(&[("match[]", "{job=\"oracle\"}")])),
        (
            "/label/room/values",
            with(&[("match[]", "test_temperature")]),
        ),
        (
            "/label/__name__/values",
            with(&[("match[]", "{__name__=~\"test_.*\"}")]),
        ),
        (
            "/series",
            with(&[
                ("match[]", "test_requests_total"),
                ("match[]", "test_flaky"),
            ]),
        ),
    ] {
        let want = ask(&prom_api, endpoint, &pairs, false).await;
        let got = ask(&node_api(3), endpoint, &pairs, false).await;
        asked += 1;
        let sorted = |v: &Value| {
            let mut a: Vec<String> = v["data"]
                .as_array()
                .map(|a| a.iter().map(|x| x.to_string()).collect())
                .unwrap_or_default();
            a.sort();
            a
        };
        if want.0 != got.0 || sorted(&want.1) != sorted(&got.1) {
            failures.push(format!("{endpoint}: {} vs {}", want.1, got.1));
        }
    }
    // A bad query is a 400 in Prometheus's envelope.
    let bad = ask(&node_api(1), "/query", &[("query", "sum(")], false).await;
    assert_eq!(bad.0, 400, "{}", bad.1);
    assert_eq!(bad.1["errorType"], "bad_data", "{}", bad.1);

    server.abort();
    eprintln!("{asked} answers compared: {with_data} with data, {errors} errors");
    // The comparison means something only if Prometheus mostly answered
    // with data (a few queries are about missing series and errors).
    assert!(asked >= 30);
    assert!(
        with_data * 10 >= asked * 8,
        "{with_data} of {asked} answers have data"
    );
    assert!(
        errors * 10 <= asked,
        "{errors} of {asked} answers are errors"
    );
    assert!(
        failures.is_empty(),
        "{} of {asked} answers differ from Prometheus's:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// OTLP metrics read as Prometheus series under the OpenTelemetry naming
/// rules: `job` and `instance` from the resource, unit suffixes, `_total`,
/// histogram buckets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_metrics_are_queried_under_prometheus_names() {
    use opentelemetry_proto::tonic::metrics::v1::{
        metric::Data, number_data_point, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
        Sum,
    };
    let c = TestCluster::start(3, &[]);
    c.init().await;
    c.wait_leader().await;
    let t_ms = now_ms() - 10_000;
    let t = t_ms as u64 * 1_000_000;
    let mut req = common::metrics_request(
        "checkout",
        vec![
            Metric {
                name: "http.requests".into(),
                unit: "{request}".into(),
                data: Some(Data::Sum(Sum {
                    data_points: vec![NumberDataPoint {
                        time_unix_nano: t,
                        value: Some(number_data_point::Value::AsInt(42)),
                        attributes: vec![common::kv("http.method", "GET")],
                        ..Default::default()
                    }],
                    aggregation_temporality: 2,
                    is_monotonic: true,
                })),
                ..Default::default()
            },
            Metric {
                name: "rpc.duration".into(),
                unit: "s".into(),
                data: Some(Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        time_unix_nano: t,
                        count: 6,
                        sum: Some(3.5),
                        bucket_counts: vec![1, 2, 3],
                        explicit_bounds: vec![0.1, 0.5],
                        ..Default::default()
                    }],
                    aggregation_temporality: 2,
                })),
                ..Default::default()
            },
        ],
    );
    req.resource_metrics[0]
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .push(common::kv("service.instance.id", "pod-7"));
    let r = common::post(
        &c,
        2,
        "/v1/metrics",
        &[("Content-Type", "application/x-protobuf")],
        &req.encode_to_vec(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    let at = secs(t_ms + 1000);
    let instant = |q: &'static str| {
        let at = at.clone();
        let url = c.node(3).url("/prometheus/api/v1");
        async move { ask(&url, "/query", &[("query", q), ("time", &at)], false).await }
    };
    let (status, v) = instant("http_requests_total").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["data"]["result"],
        serde_json::json!([{
            "metric": {"__name__": "http_requests_total", "http_method": "GET",
                       "instance": "pod-7", "job": "checkout"},
            "value": [(t_ms as f64) / 1e3 + 1.0, "42"],
        }])
    );
    let (status, v) = instant("rpc_duration_seconds_bucket").await;
    assert_eq!(status, 200, "{v}");
    let mut buckets: Vec<(String, String)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["metric"]["le"].as_str().unwrap().to_string(),
                s["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    buckets.sort();
    assert_eq!(
        buckets,
        [("+Inf", "6"), ("0.1", "1"), ("0.5", "3")].map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let (_, v) = instant("rpc_duration_seconds_sum / rpc_duration_seconds_count").await;
    assert_eq!(
        v["data"]["result"][0]["value"][1], "0.5833333333333334",
        "{v}"
    );
    check_probes_and_refusals(&c.node(2).url("/prometheus/api/v1")).await;
    // Discovery sees the same names.
    let (_, v) = ask(
        &c.node(1).url("/prometheus/api/v1"),
        "/label/__name__/values",
        &[("start", &*secs(t_ms - 1000)), ("end", &*secs(t_ms + 1000))],
        false,
    )
    .await;
    assert_eq!(
        v["data"],
        serde_json::json!([
            "http_requests_total",
            "rpc_duration_seconds_bucket",
            "rpc_duration_seconds_count",
            "rpc_duration_seconds_sum"
        ])
    );
}

/// The probes Grafana sends, and Prometheus's refusals of bad parameters.
async fn check_probes_and_refusals(api: &str) {
    let (status, v) = ask(api, "/status/buildinfo", &[], false).await;
    assert_eq!(
        (status, &v["status"]),
        (200, &Value::from("success")),
        "{v}"
    );
    assert!(
        v["data"]["version"].as_str().unwrap().starts_with("2."),
        "{v}"
    );
    let (status, v) = ask(api, "/query_exemplars", &[("query", "up")], true).await;
    assert_eq!((status, &v["data"]), (200, &serde_json::json!([])), "{v}");
    for (endpoint, pairs, why) in [
        ("/query", vec![("query", "sum(")], "parse"),
        (
            "/query",
            vec![("query", "up"), ("time", "yesterday")],
            "time",
        ),
        (
            "/query_range",
            vec![
                ("query", "up"),
                ("start", "10"),
                ("end", "5"),
                ("step", "1"),
            ],
            "end",
        ),
        (
            "/query_range",
            vec![("query", "up"), ("start", "1"), ("end", "5"), ("step", "0")],
            "step",
        ),
        (
            "/query_range",
            vec![
                ("query", "up"),
                ("start", "0"),
                ("end", "100000"),
                ("step", "1"),
            ],
            "11,000",
        ),
        ("/series", vec![], "match[]"),
        ("/series", vec![("match[]", "{a=\"\"}")], "non-empty"),
    ] {
        let (status, v) = ask(api, endpoint, &pairs, false).await;
        assert_eq!(status, 400, "{endpoint} {pairs:?}: {v}");
        assert_eq!(v["status"], "error", "{v}");
        assert_eq!(v["errorType"], "bad_data", "{v}");
        assert!(
            v["error"].as_str().unwrap().contains(why),
            "{endpoint} {pairs:?}: {v}"
        );
    }
}

/// The comparison itself catches a differing series, value or error.
#[test]
fn the_comparison_notices_differences() {
    let vector = |metric: Value, v: &str| {
        (
            200u16,
            serde_json::json!({"status": "success", "data": {"resultType": "vector",
                "result": [{"metric": metric, "value": [1.5, v]}]}}),
        )
    };
    let a = vector(serde_json::json!({"x": "1"}), "0.1");
    assert!(compare(&a, &a).is_ok());
    assert!(compare(
        &a,
        &vector(serde_json::json!({"x": "1"}), "0.1000000000000001")
    )
    .is_ok());
    assert!(compare(&a, &vector(serde_json::json!({"x": "1"}), "0.11")).is_err());
    assert!(compare(&a, &vector(serde_json::json!({"x": "2"}), "0.1")).is_err());
    let error = (
        422u16,
        serde_json::json!({"status": "error", "errorType": "execution"}),
    );
    assert!(compare(&a, &error).is_err());
    assert!(compare(&error, &error).is_ok());
}
