//! Grafana's Loki data source on a real 3-node cluster with keys required:
//! log records exported over OTLP to the leader are read back through
//! every Loki endpoint (log and metric queries, GET and POSTed forms, the
//! health check, labels, series, index stats) on every node, with Loki's
//! shapes and exact values; malformed or hostile requests get a plain 400
//! that says why, and a request without a key a 401.

mod common;

use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::{json, Value as J};
use tael_raft::http_client::{self, HttpResponse};

const SEC: u64 = 1_000_000_000;
const SECRET: &str = "a cluster secret of at least thirty-two bytes";

struct Loki<'a> {
    c: &'a TestCluster,
    auth: String,
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Loki<'_> {
    async fn call(
        &self,
        node: u64,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        let mut all = vec![("Authorization", self.auth.as_str())];
        all.extend_from_slice(headers);
        http_client::request_with_headers(
            method,
            &self.c.node(node).url(path),
            &all,
            body,
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    async fn get(&self, node: u64, path: &str) -> J {
        let r = self.call(node, "GET", path, &[], b"").await;
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json().unwrap()
    }

    /// A `query_range` over `[start, end]` with extra parameters.
    async fn range(&self, node: u64, query: &str, (start, end): (u64, u64), extra: &str) -> J {
        let path = format!(
            "/loki/api/v1/query_range?query={}&start={start}&end={end}{extra}",
            enc(query)
        );
        let v = self.get(node, &path).await;
        assert_eq!(v["status"], "success", "{v}");
        v
    }

    /// A plain-text 400 that contains `says`.
    async fn refused(&self, node: u64, path: &str, says: &str) {
        let r = self.call(node, "GET", path, &[], b"").await;
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(r.status, 400, "{path}: {body}");
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with("text/plain")),
            "{path}: {:?}",
            r.header("content-type")
        );
        assert!(
            body.contains(says),
            "{path}: {body:?} does not say {says:?}"
        );
    }
}

/// Grafana reads a query answer as a stream: `resultType` and
/// `encodingFlags` must come before `result`, and `result` before `stats`.
fn in_grafanas_order(body: &str) {
    let at = |key: &str| body.find(&format!("\"{key}\":"));
    let (kind, result, stats) = (at("resultType"), at("result"), at("stats"));
    assert!(
        kind.is_some() && result.is_some() && stats.is_some(),
        "{body}"
    );
    assert!(kind < result && result < stats, "{body}");
    if let Some(flags) = at("encodingFlags") {
        assert!(Some(flags) < result, "{body}");
    }
}

fn body(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Value::StringValue(s.into())),
    })
}

fn record(ts: u64, severity: i32, text: &str, trace: Option<u64>) -> LogRecord {
    LogRecord {
        time_unix_nano: ts,
        severity_number: severity,
        body: body(text),
        trace_id: trace.map_or_else(Vec::new, |t| trace_id(t).to_vec()),
        span_id: trace.map_or_else(Vec::new, |t| span_id(t, 0).to_vec()),
        ..Default::default()
    }
}

fn resource_logs(attrs: &[(&str, &str)], records: Vec<LogRecord>) -> ResourceLogs {
    ResourceLogs {
        resource: Some(Resource {
            attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: records,
            ..Default::default()
        }],
        schema_url: String::new(),
    }
}

const ERROR: i32 = 17;
const WARN: i32 = 13;
const INFO: i32 = 9;

/// Six records around `t0` (a whole minute):
/// checkout (prod, pod checkout-1): +1s error json 503 (trace 1), +2s info
/// json 200 (trace 1), +61s warn logfmt 429;
/// frontend (prod): +3s info "GET /checkout 200" (trace 2), +62s error
/// "GET /checkout 500" (trace 2), +125s no severity "healthcheck ok".
fn fixture(t0: u64) -> ExportLogsServiceRequest {
    let checkout = [
        ("service.name", "checkout"),
        ("deployment.environment", "prod"),
        ("k8s.pod.name", "checkout-1"),
    ];
    let frontend = [
        ("service.name", "frontend"),
        ("deployment.environment", "prod"),
    ];
    ExportLogsServiceRequest {
        resource_logs: vec![
            resource_logs(
                &checkout,
                vec![
                    record(t0 + SEC, ERROR, CHECKOUT_1, Some(1)),
                    record(t0 + 2 * SEC, INFO, CHECKOUT_2, Some(1)),
                    record(t0 + 61 * SEC, WARN, CHECKOUT_3, None),
                ],
            ),
            resource_logs(
                &frontend,
                vec![
                    record(t0 + 3 * SEC, INFO, "GET /checkout 200 12ms", Some(2)),
                    record(t0 + 62 * SEC, ERROR, "GET /checkout 500 340ms", Some(2)),
                    record(t0 + 125 * SEC, 0, "healthcheck ok", None),
                ],
            ),
        ],
    }
}

const CHECKOUT_1: &str = r#"{"status":503,"msg":"card declined","user":"ann"}"#;
const CHECKOUT_2: &str = r#"{"status":200,"msg":"paid","user":"bob"}"#;
const CHECKOUT_3: &str = r#"status=429 msg="slow down" user=ann"#;

/// (stream labels, [(ns, line)]) of a streams result, streams sorted.
fn streams(v: &J) -> Vec<(J, Vec<(u64, String)>)> {
    assert_eq!(v["data"]["resultType"], "streams", "{v}");
    let mut out: Vec<(J, Vec<(u64, String)>)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let values = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e[0].as_str().unwrap().parse().unwrap(),
                        e[1].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (s["stream"].clone(), values)
        })
        .collect();
    out.sort_by_key(|(l, _)| l.to_string());
    out
}

/// Every line of a streams result, newest first.
fn lines(v: &J) -> Vec<String> {
    let mut all: Vec<(u64, String)> = streams(v).into_iter().flat_map(|(_, e)| e).collect();
    all.sort_by_key(|e| std::cmp::Reverse(e.0));
    all.into_iter().map(|(_, l)| l).collect()
}

/// (labels, [(secs, value)]) of a matrix result.
fn matrix(v: &J) -> Vec<(J, Vec<(u64, String)>)> {
    assert_eq!(v["data"]["resultType"], "matrix", "{v}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let points = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_f64().unwrap() as u64,
                        p[1].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (s["metric"].clone(), points)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_reads_logs_through_the_loki_api_on_every_node() {
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let secret = secret.to_string_lossy().into_owned();
    let c = TestCluster::start(3, &["--auth", "required", "--cluster-secret-file", &secret]);
    for id in 1..=3 {
        c.wait_healthy(id).await;
    }
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
    let leader = c.wait_leader().await;
    key_works_everywhere(&c, &admin).await;
    let (_, reader) = c.create_key(&admin, "grafana", "reader").await;
    key_works_everywhere(&c, &reader).await;

    let t0 = (now_nanos() - 30 * 60 * SEC) / (60 * SEC) * (60 * SEC);
    let mut client = LogsServiceClient::connect(format!("http://{}", c.node(leader).otlp))
        .await
        .unwrap();
    let mut req = tonic::Request::new(fixture(t0));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {admin}").parse().unwrap());
    client.export(req).await.expect("export");

    let loki = Loki {
        c: &c,
        auth: format!("Bearer {reader}"),
    };
    let window = (t0, t0 + 180 * SEC);
    for node in 1..=3 {
        log_queries(&loki, node, t0, window).await;
        metric_queries(&loki, node, t0, window).await;
        health_check_and_instant_queries(&loki, node, t0).await;
        labels_series_and_stats(&loki, node, window).await;
        bad_input(&loki, node, window).await;
    }
    let r = http_client::request_with_headers(
        "GET",
        &c.node(2).url("/loki/api/v1/labels"),
        &[],
        b"",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401, "no key, no logs");
}

/// Keys replicate like everything else: wait until every node knows `key`.
async fn key_works_everywhere(c: &TestCluster, key: &str) {
    let auth = format!("Bearer {key}");
    for id in 1..=3 {
        wait_until(Duration::from_secs(10), "the key on every node", || async {
            http_client::request_with_headers(
                "GET",
                &c.node(id).url("/api/v1/cluster"),
                &[("Authorization", &auth)],
                b"",
                Duration::from_secs(5),
            )
            .await
            .is_ok_and(|r| r.status == 200)
        })
        .await;
    }
}

async fn log_queries(loki: &Loki<'_>, node: u64, t0: u64, window: (u64, u64)) {
    // Backward (the default): newest first, one stream per label set, the
    // trace id among the labels (Loki merges structured metadata in).
    let v = loki
        .range(node, r#"{service_name="checkout"}"#, window, "")
        .await;
    let s = streams(&v);
    assert_eq!(s.len(), 3, "{v}");
    let error = s.iter().find(|(l, _)| l["level"] == "error").unwrap();
    assert_eq!(
        error.0,
        json!({
            "service_name": "checkout",
            "level": "error",
            "deployment_environment": "prod",
            "k8s_pod_name": "checkout-1",
            "trace_id": trace_hex(1),
            "span_id": tael_consensus::hex(&span_id(1, 0)),
        })
    );
    assert_eq!(error.1, vec![(t0 + SEC, CHECKOUT_1.to_string())]);
    assert_eq!(lines(&v), [CHECKOUT_3, CHECKOUT_2, CHECKOUT_1]);
    let summary = &v["data"]["stats"]["summary"];
    assert_eq!(summary["totalEntriesReturned"], 3, "{summary}");
    assert!(summary["totalLinesProcessed"].as_u64().unwrap() >= 3);

    // Every consistency level a REST read takes.
    for level in ["local", "lease", "linearizable"] {
        let extra = format!("&consistency={level}");
        let v = loki
            .range(node, r#"{service_name="checkout"}"#, window, &extra)
            .await;
        assert_eq!(lines(&v).len(), 3, "{level}");
    }

    // The limit counts entries over all streams: backward keeps the
    // newest, forward the oldest.
    let v = loki
        .range(node, r#"{service_name="checkout"}"#, window, "&limit=1")
        .await;
    assert_eq!(lines(&v), [CHECKOUT_3]);
    let v = loki
        .range(
            node,
            r#"{service_name="checkout"}"#,
            window,
            "&limit=2&direction=forward",
        )
        .await;
    assert_eq!(lines(&v), [CHECKOUT_2, CHECKOUT_1]);
    // Within a stream, entries follow the direction.
    let v = loki
        .range(
            node,
            r#"{service_name="frontend", level=~"info|error"} |= "checkout""#,
            window,
            "&direction=forward",
        )
        .await;
    let s = streams(&v);
    assert_eq!(s.len(), 2, "one stream per level");
    // `end` is exclusive, `start` inclusive.
    let v = loki
        .range(
            node,
            r#"{service_name="checkout"}"#,
            (t0 + SEC, t0 + 61 * SEC),
            "",
        )
        .await;
    assert_eq!(lines(&v), [CHECKOUT_2, CHECKOUT_1]);

    // Chained line filters, regex filters, all four matchers.
    let prod = r#"{deployment_environment="prod"}"#;
    let q = format!(r#"{prod} |= "checkout" != "200""#);
    assert_eq!(
        lines(&loki.range(node, &q, window, "").await),
        ["GET /checkout 500 340ms"]
    );
    let q = format!(r#"{prod} |~ "5\\d\\d" !~ "^GET""#);
    assert_eq!(lines(&loki.range(node, &q, window, "").await), [CHECKOUT_1]);
    let q = r#"{service_name!="checkout", deployment_environment=~"pr.*", level!~"info|error"}"#;
    assert_eq!(
        lines(&loki.range(node, q, window, "").await),
        ["healthcheck ok"]
    );
    // Label regexes are anchored: "pro" matches no environment.
    let q = r#"{deployment_environment=~"pro"}"#;
    assert!(lines(&loki.range(node, q, window, "").await).is_empty());

    // Parsers and label filters, numeric and string.
    let q = r#"{service_name="checkout"} | json | status >= 500 and user="ann""#;
    let v = loki.range(node, q, window, "").await;
    assert_eq!(lines(&v), [CHECKOUT_1]);
    assert_eq!(streams(&v)[0].0["msg"], "card declined", "parsed labels");
    let q = r#"{service_name="checkout"} |= "status=" | logfmt | status < 500 | msg=~"slow.*""#;
    assert_eq!(lines(&loki.range(node, q, window, "").await), [CHECKOUT_3]);
    let q = r#"{service_name="checkout"} | json | __error__="" | drop __error__"#;
    assert_eq!(
        lines(&loki.range(node, q, window, "").await),
        [CHECKOUT_2, CHECKOUT_1]
    );
    // Trace ids are labels a filter (and Grafana's derived field) can use.
    let q = format!(r#"{prod} | trace_id="{}""#, trace_hex(2));
    assert_eq!(
        lines(&loki.range(node, &q, window, "").await),
        ["GET /checkout 500 340ms", "GET /checkout 200 12ms"]
    );

    // Categorized labels: structured metadata apart from the stream.
    let path = format!(
        "/loki/api/v1/query_range?query={}&start={}&end={}",
        enc(r#"{service_name="frontend", level="info"}"#),
        window.0,
        window.1
    );
    let r = loki
        .call(
            node,
            "GET",
            &path,
            &[("X-Loki-Response-Encoding-Flags", "categorize-labels")],
            b"",
        )
        .await;
    assert_eq!(r.status, 200);
    in_grafanas_order(&String::from_utf8_lossy(&r.body));
    let v = r.json().unwrap();
    assert_eq!(v["data"]["encodingFlags"], json!(["categorize-labels"]));
    let stream = &v["data"]["result"][0];
    assert!(stream["stream"].get("trace_id").is_none(), "{stream}");
    assert_eq!(
        stream["values"][0],
        json!([
            (t0 + 3 * SEC).to_string(),
            "GET /checkout 200 12ms",
            { "structuredMetadata": { "trace_id": trace_hex(2), "span_id": tael_consensus::hex(&span_id(2, 0)) } }
        ])
    );

    // A POSTed form, as Grafana may send; RFC 3339 and float-second times.
    let form = format!(
        "query={}&start={}&end={}.5&limit=1",
        enc(r#"{service_name="checkout"}"#),
        enc(&tael_raft::model::rfc3339_nanos(window.0)),
        window.1 / SEC
    );
    let r = loki
        .call(
            node,
            "POST",
            "/loki/api/v1/query_range",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(lines(&r.json().unwrap()), [CHECKOUT_3]);
}

async fn metric_queries(loki: &Loki<'_>, node: u64, t0: u64, window: (u64, u64)) {
    let at = |secs: u64| t0 / SEC + secs;
    // Grafana's log volume query, its step in milliseconds.
    let q = r#"sum by (level, detected_level) (count_over_time({deployment_environment="prod"} | drop __error__ [1m]))"#;
    let v = loki.range(node, q, window, "&step=60000ms").await;
    let mut got = matrix(&v);
    got.sort_by_key(|(l, _)| l.to_string());
    // (t0, t0+60]: error, info, info; (t0+60, t0+120]: warn, error;
    // (t0+120, t0+180]: unknown. No point where there is no entry.
    assert_eq!(
        got,
        vec![
            (
                json!({"level": "error"}),
                vec![(at(60), "1".into()), (at(120), "1".into())]
            ),
            (json!({"level": "info"}), vec![(at(60), "2".into())]),
            (json!({"level": "unknown"}), vec![(at(180), "1".into())]),
            (json!({"level": "warn"}), vec![(at(120), "1".into())]),
        ],
        "{v}"
    );
    // rate = count / range seconds; steps align to the step.
    let q = r#"sum(rate({deployment_environment="prod"}[2m]))"#;
    let v = loki
        .range(
            node,
            q,
            (window.0 + 7 * SEC, window.1 + 7 * SEC),
            "&step=60",
        )
        .await;
    assert_eq!(
        matrix(&v),
        vec![(
            json!({}),
            vec![
                (at(60), (3.0f64 / 120.0).to_string()),
                (at(120), (5.0f64 / 120.0).to_string()),
                (at(180), (3.0f64 / 120.0).to_string()),
            ]
        )]
    );
    let q = r#"bytes_over_time({service_name="checkout"} | json | status >= 500 [5m])"#;
    let v = loki
        .range(node, q, (at(60) * SEC, at(60) * SEC), "&step=60")
        .await;
    let got = matrix(&v);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, vec![(at(60), CHECKOUT_1.len().to_string())]);
    assert_eq!(got[0].0["user"], "ann", "parsed labels make the series");
    let q = r#"sum without (level) (count_over_time({deployment_environment="prod"}[3m]))"#;
    let v = loki
        .range(node, q, (at(180) * SEC, at(180) * SEC), "&step=60")
        .await;
    let mut got = matrix(&v);
    got.sort_by_key(|(l, _)| l.to_string());
    assert_eq!(
        got,
        vec![
            (
                json!({"service_name": "checkout", "deployment_environment": "prod", "k8s_pod_name": "checkout-1"}),
                vec![(at(180), "3".into())]
            ),
            (
                json!({"service_name": "frontend", "deployment_environment": "prod"}),
                vec![(at(180), "3".into())]
            ),
        ]
    );
    // A window holding one entry per stream: the max over them is 1.
    let q = r#"max by (service_name) (count_over_time({deployment_environment="prod"}[1m]))"#;
    let v = loki
        .range(node, q, (at(120) * SEC, at(120) * SEC), "&step=60")
        .await;
    let mut got = matrix(&v);
    got.sort_by_key(|(l, _)| l.to_string());
    assert_eq!(
        got,
        vec![
            (
                json!({"service_name": "checkout"}),
                vec![(at(120), "1".into())]
            ),
            (
                json!({"service_name": "frontend"}),
                vec![(at(120), "1".into())]
            ),
        ]
    );
}

async fn health_check_and_instant_queries(loki: &Loki<'_>, node: u64, t0: u64) {
    // Grafana's health check: an instant query at 4e9 nanoseconds, which
    // has ten digits and so is read as seconds (as Loki reads it); the
    // answer must be 2.
    let v = loki
        .get(
            node,
            &format!(
                "/loki/api/v1/query?query={}&time=4000000000&step=1s",
                enc("vector(1)+vector(1)")
            ),
        )
        .await;
    assert_eq!(
        v["data"]["result"],
        json!([{ "metric": {}, "value": [4_000_000_000.0, "2"] }]),
        "{v}"
    );
    assert_eq!(v["data"]["resultType"], "vector");
    let q = r#"sum by (service_name) (count_over_time({deployment_environment="prod"}[5m]))"#;
    let v = loki
        .get(
            node,
            &format!(
                "/loki/api/v1/query?query={}&time={}",
                enc(q),
                t0 + 180 * SEC
            ),
        )
        .await;
    let mut result = v["data"]["result"].as_array().unwrap().clone();
    result.sort_by_key(|r| r["metric"]["service_name"].as_str().unwrap().to_string());
    let t = (t0 / SEC + 180) as f64;
    assert_eq!(
        result,
        vec![
            json!({ "metric": { "service_name": "checkout" }, "value": [t, "3"] }),
            json!({ "metric": { "service_name": "frontend" }, "value": [t, "3"] }),
        ]
    );
    let v = loki
        .get(
            node,
            &format!("/loki/api/v1/query?query={}&time=10", enc("2 * 3")),
        )
        .await;
    assert_eq!(v["data"]["resultType"], "scalar");
    assert_eq!(v["data"]["result"], json!([10.0, "6"]));
}

async fn labels_series_and_stats(loki: &Loki<'_>, node: u64, (start, end): (u64, u64)) {
    let range = format!("start={start}&end={end}");
    let v = loki
        .get(node, &format!("/loki/api/v1/labels?{range}"))
        .await;
    assert_eq!(
        v,
        json!({ "status": "success", "data": ["deployment_environment", "k8s_pod_name", "level", "service_name"] })
    );
    let v = loki
        .get(
            node,
            &format!("/loki/api/v1/label/service_name/values?{range}"),
        )
        .await;
    assert_eq!(v["data"], json!(["checkout", "frontend"]));
    let v = loki
        .get(node, &format!("/loki/api/v1/label/level/values?{range}"))
        .await;
    assert_eq!(v["data"], json!(["error", "info", "unknown", "warn"]));
    let q = enc(r#"{service_name="frontend"}"#);
    let v = loki
        .get(
            node,
            &format!("/loki/api/v1/label/level/values?{range}&query={q}"),
        )
        .await;
    assert_eq!(v["data"], json!(["error", "info", "unknown"]));
    // An empty window has no labels.
    let v = loki.get(node, "/loki/api/v1/labels?start=1&end=2").await;
    assert_eq!(v["data"], json!([]));

    let v = loki
        .get(
            node,
            &format!("/loki/api/v1/series?{range}&match%5B%5D={q}"),
        )
        .await;
    let series = v["data"].as_array().unwrap();
    assert_eq!(series.len(), 3, "{v}");
    assert!(series.contains(&json!({
        "service_name": "frontend", "level": "unknown", "deployment_environment": "prod"
    })));
    let other = enc(r#"{k8s_pod_name=~"checkout-.+", level="warn"}"#);
    let v = loki
        .get(
            node,
            &format!("/loki/api/v1/series?{range}&match%5B%5D={q}&match%5B%5D={other}"),
        )
        .await;
    assert_eq!(
        v["data"].as_array().unwrap().len(),
        4,
        "a union of the matches"
    );

    let cq = enc(r#"{service_name="checkout"}"#);
    let v = loki
        .get(
            node,
            &format!("/loki/api/v1/index/stats?{range}&query={cq}"),
        )
        .await;
    let bytes = CHECKOUT_1.len() + CHECKOUT_2.len() + CHECKOUT_3.len();
    assert_eq!(
        v,
        json!({ "streams": 3, "chunks": 3, "entries": 3, "bytes": bytes })
    );
    // Volumes, largest first, grouped by the labels the selector names.
    let frontend_bytes = [
        "GET /checkout 200 12ms",
        "GET /checkout 500 340ms",
        "healthcheck ok",
    ]
    .iter()
    .map(|l| l.len())
    .sum::<usize>();
    let any = enc(r#"{service_name=~".+"}"#);
    let v = loki
        .get(
            node,
            &format!("/loki/api/v1/index/volume?{range}&query={any}"),
        )
        .await;
    let t = (end / SEC) as f64;
    let mut want = vec![
        (
            bytes,
            json!({ "metric": {"service_name": "checkout"}, "value": [t, bytes.to_string()] }),
        ),
        (
            frontend_bytes,
            json!({ "metric": {"service_name": "frontend"}, "value": [t, frontend_bytes.to_string()] }),
        ),
    ];
    want.sort_by_key(|(b, _)| std::cmp::Reverse(*b));
    let want: Vec<J> = want.into_iter().map(|(_, v)| v).collect();
    assert_eq!(v["data"]["result"], J::Array(want.clone()), "{v}");
    assert_eq!(v["data"]["resultType"], "vector");
    let v = loki
        .get(
            node,
            &format!("/loki/api/v1/index/volume?{range}&query={any}&limit=1"),
        )
        .await;
    assert_eq!(v["data"]["result"], json!([want[0]]));
    let v = loki
        .get(
            node,
            &format!("/loki/api/v1/index/volume?{range}&query={cq}&aggregateBy=labels&targetLabels=level,k8s_pod_name"),
        )
        .await;
    assert_eq!(
        v["data"]["result"],
        json!([
            { "metric": {"k8s_pod_name": ""}, "value": [t, bytes.to_string()] },
            { "metric": {"level": ""}, "value": [t, bytes.to_string()] },
        ])
    );
    let v = loki.get(node, "/loki/api/v1/status/buildinfo").await;
    assert!(v["version"].as_str().unwrap().starts_with('3'));
}

async fn bad_input(loki: &Loki<'_>, node: u64, (start, end): (u64, u64)) {
    let range = format!("start={start}&end={end}");
    let qr =
        |q: &str, extra: &str| format!("/loki/api/v1/query_range?query={}&{range}{extra}", enc(q));
    let sel = r#"{service_name="checkout"}"#;
    loki.refused(
        node,
        &qr(r#"{service_name="checkout""#, ""),
        "parse error at line 1",
    )
    .await;
    loki.refused(node, &qr("{}", ""), "unexpected }").await;
    loki.refused(
        node,
        &qr(r#"{a=~".*"}"#, ""),
        "at least one regexp or equality matcher",
    )
    .await;
    loki.refused(node, &qr(r#"{a="b"} |~ "(""#, ""), "invalid regex")
        .await;
    loki.refused(
        node,
        &qr(r#"{a="b"} | line_format "x""#, ""),
        "unsupported pipeline stage",
    )
    .await;
    loki.refused(node, &qr("", ""), "query parameter is required")
        .await;
    loki.refused(
        node,
        &qr(sel, "&limit=5001"),
        "max entries limit per query exceeded",
    )
    .await;
    loki.refused(node, &qr(sel, "&limit=0"), "limit must be a positive value")
        .await;
    loki.refused(node, &qr(sel, "&direction=up"), "invalid direction")
        .await;
    loki.refused(node, &qr(sel, "&step=0"), "zero or negative")
        .await;
    loki.refused(node, &qr(sel, "&step=often"), "cannot parse")
        .await;
    let count = format!("count_over_time({sel}[1m])");
    loki.refused(
        node,
        &qr(&count, "&step=1ms"),
        "exceeded maximum resolution of 11,000 points",
    )
    .await;
    loki.refused(
        node,
        &format!(
            "/loki/api/v1/query_range?query={}&start=0&end={end}&step=1d",
            enc(&count)
        ),
        "the query time range exceeds the limit",
    )
    .await;
    loki.refused(
        node,
        &format!(
            "/loki/api/v1/query_range?query={}&start=yesterday",
            enc(sel)
        ),
        "cannot parse \"yesterday\" to a valid timestamp",
    )
    .await;
    loki.refused(
        node,
        &format!(
            "/loki/api/v1/query_range?query={}&start={end}&end={start}",
            enc(sel)
        ),
        "end timestamp must not be before",
    )
    .await;
    // Hostile sizes: a huge query, deep nesting.
    let huge = format!(r#"{{service_name="{}"}}"#, "x".repeat(20_000));
    loki.refused(node, &qr(&huge, ""), "bytes long; the limit is 16384")
        .await;
    let deep = format!("{}vector(1){}", "(".repeat(200), ")".repeat(200));
    loki.refused(node, &qr(&deep, ""), "nests more than").await;
    loki.refused(
        node,
        &format!("/loki/api/v1/query?query={}", enc(sel)),
        "log queries are not supported as an instant query type",
    )
    .await;
    loki.refused(
        node,
        &format!("/loki/api/v1/series?{range}"),
        "at least one match[] argument required",
    )
    .await;
    loki.refused(
        node,
        &format!("/loki/api/v1/index/stats?{range}"),
        "query parameter is required",
    )
    .await;
    loki.refused(
        node,
        &format!(
            "/loki/api/v1/labels?{range}&query={}",
            enc("sum(vector(1))")
        ),
        "expected a stream selector",
    )
    .await;
}
