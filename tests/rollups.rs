//! Span rollups over a 3-node cluster: `summary`, `anomalies` and `diff`
//! answer what the exact computation over the spans gives (counts, rates,
//! averages and maxima exactly, percentiles within 1%), every node answers
//! the same, and the answers stay after retention deleted the spans: the
//! per-minute rollups outlive them.

mod common;

use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};
use serde_json::Value as J;
use tael_raft::model::rfc3339_nanos;

const SEC: u64 = 1_000_000_000;
const MINUTE: u64 = 60 * SEC;
const SERVICES: [&str; 3] = ["web", "api", "db"];
/// Percentiles are promised within this relative error (docs/api.md).
const PERCENTILE_ERROR: f64 = 0.01;

/// Spans older than this are deleted by the cluster's retention.
const RETENTION_ARGS: [&str; 4] = ["--retention-traces", "30m", "--compaction-interval", "3s"];

#[derive(Clone, Debug)]
struct S {
    service: &'static str,
    op: String,
    trace: u64,
    span: u64,
    root: bool,
    start: u64,
    duration: u64,
    error: bool,
}

/// A deterministic generator (xorshift): a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `traces` traces of web → api → db, started at random in `[from, to)`.
/// Durations spread over three decades (and some zeros); `young` traces
/// fail more in api and are slower in db, which the anomalies must see.
fn traces(rng: &mut Rng, first: u64, traces: u64, from: u64, to: u64, young: bool) -> Vec<S> {
    let mut out = Vec::new();
    for t in first..first + traces {
        let start = from + rng.below(to - from);
        for (i, svc) in SERVICES.iter().enumerate() {
            let base_ms = [50, 20, 5][i] * if young && *svc == "db" { 4 } else { 1 };
            // Log-uniform factor in [1, 1000): 1000 values per decade.
            let factor = 10f64.powf(rng.below(3000) as f64 / 1000.0);
            let duration = if rng.below(50) == 0 {
                0
            } else {
                (base_ms as f64 * 1e6 * factor) as u64
            };
            let error_pct = if young && *svc == "api" { 40 } else { 5 };
            out.push(S {
                service: svc,
                op: format!("{svc}-op-{}", rng.below(2)),
                trace: t,
                span: i as u64,
                root: i == 0,
                start: start + i as u64 * 1000,
                duration,
                error: rng.below(100) < error_pct,
            });
        }
    }
    out
}

fn export_req(spans: &[S]) -> ExportTraceServiceRequest {
    let resource_spans = spans
        .iter()
        .map(|s| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s.service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: trace_id(s.trace).to_vec(),
                    span_id: span_id(s.trace, s.span).to_vec(),
                    parent_span_id: if s.root {
                        vec![]
                    } else {
                        span_id(s.trace, s.span - 1).to_vec()
                    },
                    name: s.op.clone(),
                    start_time_unix_nano: s.start,
                    end_time_unix_nano: s.start + s.duration,
                    status: Some(Status {
                        code: if s.error {
                            StatusCode::Error as i32
                        } else {
                            StatusCode::Ok as i32
                        },
                        message: String::new(),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            schema_url: String::new(),
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// The exact figures of a set of spans.
struct Exact {
    count: u64,
    errors: u64,
    roots: u64,
    sum_nanos: u128,
    max_nanos: u64,
    sorted_nanos: Vec<u64>,
}

impl Exact {
    fn of<'a>(spans: impl IntoIterator<Item = &'a S>) -> Exact {
        let mut e = Exact {
            count: 0,
            errors: 0,
            roots: 0,
            sum_nanos: 0,
            max_nanos: 0,
            sorted_nanos: Vec::new(),
        };
        for s in spans {
            e.count += 1;
            e.errors += s.error as u64;
            e.roots += s.root as u64;
            e.sum_nanos += u128::from(s.duration);
            e.max_nanos = e.max_nanos.max(s.duration);
            e.sorted_nanos.push(s.duration);
        }
        e.sorted_nanos.sort();
        e
    }

    /// Nearest-rank percentile, in ms.
    fn percentile_ms(&self, p: f64) -> f64 {
        let n = self.sorted_nanos.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.sorted_nanos[rank.clamp(1, n) - 1] as f64 / 1e6
    }

    fn error_rate(&self) -> f64 {
        self.errors as f64 / self.count as f64
    }

    fn avg_ms(&self) -> f64 {
        self.sum_nanos as f64 / 1e6 / self.count as f64
    }
}

fn num(v: &J) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn assert_exactly(v: &J, expected: f64, what: &str) {
    let got = num(v);
    assert!(
        (got - expected).abs() <= 1e-9 * expected.abs().max(1.0),
        "{what}: {got} != {expected}"
    );
}

fn assert_percentile(v: &J, exact_ms: f64, what: &str) {
    let got = num(v);
    assert!(
        (got - exact_ms).abs() <= exact_ms * PERCENTILE_ERROR,
        "{what}: {got} is not within 1% of {exact_ms}"
    );
}

/// Checks a `SpanStats`-shaped object against the exact figures.
fn assert_stats(t: &J, e: &Exact, what: &str) {
    assert_eq!(t["span_count"].as_u64(), Some(e.count), "{what}: {t}");
    assert_eq!(t["error_count"].as_u64(), Some(e.errors), "{what}: {t}");
    assert_eq!(t["trace_count"].as_u64(), Some(e.roots), "{what}: {t}");
    assert_exactly(
        &t["error_rate"],
        e.error_rate(),
        &format!("{what} error_rate"),
    );
    assert_exactly(&t["avg_ms"], e.avg_ms(), &format!("{what} avg_ms"));
    assert_exactly(
        &t["max_ms"],
        e.max_nanos as f64 / 1e6,
        &format!("{what} max_ms"),
    );
    for p in [50.0, 95.0, 99.0] {
        let key = format!("p{p}_ms");
        assert_percentile(&t[&key], e.percentile_ms(p), &format!("{what} {key}"));
    }
}

/// The spans a window counts: those whose minute starts within it
/// (docs/api.md, window analytics).
fn in_window(spans: &[S], (from, to): (u64, u64)) -> Vec<&S> {
    spans
        .iter()
        .filter(|s| {
            let minute_start = s.start / MINUTE * MINUTE;
            minute_start >= from && minute_start <= to
        })
        .collect()
}

fn window_query(path: &str, (from, to): (u64, u64), extra: &str) -> String {
    format!(
        "{path}?start={}&end={}{extra}",
        rfc3339_nanos(from),
        rfc3339_nanos(to)
    )
}

/// The same answer from every node; returns it.
async fn on_every_node(c: &TestCluster, path: &str) -> J {
    let mut answers = Vec::new();
    for node in 1..=3 {
        let r = c.get(node, path).await;
        assert_eq!(
            r.status,
            200,
            "node {node} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        answers.push(r.json().unwrap());
    }
    for (i, a) in answers.iter().enumerate().skip(1) {
        assert_eq!(
            a,
            &answers[0],
            "node {} differs from node 1 on {path}",
            i + 1
        );
    }
    answers.remove(0)
}

fn check_summary(v: &J, spans: &[&S]) {
    assert_eq!(v["truncated"], false, "{v}");
    assert_stats(&v["traces"], &Exact::of(spans.iter().copied()), "summary");
    for row in v["top_services"].as_array().unwrap() {
        let svc = row["service"].as_str().unwrap();
        let e = Exact::of(spans.iter().copied().filter(|s| s.service == svc));
        assert_stats(row, &e, &format!("service {svc}"));
    }
    assert_eq!(v["top_services"].as_array().unwrap().len(), SERVICES.len());
    for row in v["top_error_operations"].as_array().unwrap() {
        let (svc, op) = (
            row["service"].as_str().unwrap(),
            row["operation"].as_str().unwrap(),
        );
        let e = Exact::of(
            spans
                .iter()
                .copied()
                .filter(|s| s.service == svc && s.op == op),
        );
        assert_eq!(row["error_count"].as_u64(), Some(e.errors), "{svc}/{op}");
        assert_eq!(row["span_count"].as_u64(), Some(e.count), "{svc}/{op}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_analytics_answer_from_rollups_exactly_everywhere_and_after_retention() {
    let c = TestCluster::start(3, &RETENTION_ARGS);
    c.init().await;
    let leader = c.wait_leader().await;
    let t_gen = now_nanos();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    // Old traces (deleted by the 30 minute retention) and young ones.
    let old = traces(
        &mut rng,
        1,
        200,
        t_gen - 55 * MINUTE,
        t_gen - 36 * MINUTE,
        false,
    );
    let young = traces(&mut rng, 1000, 200, t_gen - 25 * MINUTE, t_gen - SEC, true);
    let all: Vec<S> = old.iter().chain(&young).cloned().collect();
    let mut client = c.otlp_client(leader).await;
    for chunk in all.chunks(150) {
        export(&mut client, export_req(chunk)).await.unwrap();
    }
    let query_end = now_nanos();
    // Not aligned to minutes: the window holds the minutes starting in it.
    let whole = (t_gen - 60 * MINUTE + 17 * SEC, query_end);
    let old_window = (t_gen - 58 * MINUTE, t_gen - 34 * MINUTE);
    let current = (t_gen - 30 * MINUTE, query_end);
    let summary_path = window_query("/api/v1/summary", whole, "");
    let first = on_every_node(&c, &summary_path).await;
    check_summary(&first, &in_window(&all, whole));

    // Retention deletes the old spans on every node.
    let old_count = old.len() as u64;
    wait_until(
        Duration::from_secs(60),
        "the cut of the old spans",
        || async {
            let v: J = c.get(leader, "/api/v1/storage").await.json().unwrap();
            v["last_cut"]["deleted_total"]["spans"].as_u64() == Some(old_count)
        },
    )
    .await;
    for node in 1..=3 {
        for t in [old[0].trace, old[old.len() - 1].trace] {
            let r = c
                .get(node, &format!("/api/v1/traces/{}", trace_hex(t)))
                .await;
            assert_eq!(r.status, 404, "node {node}: old trace {t} is deleted");
        }
    }

    // The rollups outlive the spans: the same answer as before the cut.
    let after = on_every_node(&c, &summary_path).await;
    assert_eq!(after, first, "the summary is unchanged by retention");
    // A window of deleted spans only still answers, from rollups.
    let v = on_every_node(&c, &window_query("/api/v1/summary", old_window, "")).await;
    let old_refs: Vec<&S> = old.iter().collect();
    assert_eq!(in_window(&all, old_window).len(), old.len());
    check_summary(&v, &old_refs);
    let v = on_every_node(
        &c,
        &window_query("/api/v1/summary", old_window, "&service=api"),
    )
    .await;
    assert_stats(
        &v["traces"],
        &Exact::of(old.iter().filter(|s| s.service == "api")),
        "old api",
    );

    // diff: the current half hour against the deleted one before it.
    let baseline = (current.0 - 30 * MINUTE - 1, current.0 - 1);
    for svc in SERVICES {
        let path = window_query(
            "/api/v1/diff",
            current,
            &format!("&baseline=30m&service={svc}"),
        );
        let v = on_every_node(&c, &path).await;
        for (key, window, secs) in [
            ("current", current, (current.1 - current.0) / SEC),
            ("baseline", baseline, 1800),
        ] {
            let spans = in_window(&all, window);
            let e = Exact::of(spans.into_iter().filter(|s| s.service == svc));
            let f = &v[key];
            assert_eq!(f["span_count"].as_u64(), Some(e.count), "{svc} {key}: {v}");
            assert_exactly(&f["rate_per_sec"], e.count as f64 / secs as f64, "rate");
            assert_exactly(&f["error_rate"], e.error_rate(), "error_rate");
            assert_exactly(&f["avg_ms"], e.avg_ms(), "avg_ms");
            for p in [50.0, 95.0, 99.0] {
                let k = format!("p{p}_ms");
                assert_percentile(&f[&k], e.percentile_ms(p), &format!("{svc} {key} {k}"));
            }
        }
    }

    // anomalies: api fails more, db is slower; web is unchanged.
    let path = window_query("/api/v1/anomalies", current, "&baseline=30m");
    let v = on_every_node(&c, &path).await;
    let found: Vec<(String, String)> = v["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["service"].as_str().unwrap().to_string(),
                a["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("api".to_string(), "error_rate".to_string()),
            ("db".to_string(), "p95_latency".to_string())
        ],
        "{v}"
    );
    for a in v["anomalies"].as_array().unwrap() {
        let svc = a["service"].as_str().unwrap();
        let cur = Exact::of(
            in_window(&all, current)
                .into_iter()
                .filter(|s| s.service == svc),
        );
        let base = Exact::of(
            in_window(&all, baseline)
                .into_iter()
                .filter(|s| s.service == svc),
        );
        if a["kind"] == "error_rate" {
            assert_exactly(&a["current"], cur.error_rate(), "current error rate");
            assert_exactly(&a["baseline"], base.error_rate(), "baseline error rate");
        } else {
            assert_percentile(&a["current"], cur.percentile_ms(95.0), "current p95");
            assert_percentile(&a["baseline"], base.percentile_ms(95.0), "baseline p95");
        }
    }
}
