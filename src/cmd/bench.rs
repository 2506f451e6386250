//! `tael-raft bench`: an OTLP/gRPC load generator.
//!
//! Workers send export requests of realistic spans (attributes, events, some
//! errors) round-robin to the targets, optionally paced to a total rate, and
//! the report gives acknowledged spans/s and acknowledgement latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use serde::Serialize;
use tonic::transport::Channel;

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub targets: Vec<String>,
    pub concurrency: usize,
    pub spans_per_request: usize,
    pub duration: Duration,
    /// Total spans per second across workers; `None` sends as fast as acks come.
    pub rate_spans_per_sec: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub targets: Vec<String>,
    pub concurrency: usize,
    pub spans_per_request: usize,
    pub target_rate_spans_per_sec: Option<u64>,
    pub elapsed_secs: f64,
    pub requests_ok: u64,
    pub requests_failed: u64,
    pub acked_spans: u64,
    pub acked_spans_per_sec: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    pub errors: Vec<String>,
}

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        key_strindex: 0,
    }
}

const SERVICES: [&str; 6] = [
    "checkout",
    "cart",
    "payments",
    "inventory",
    "frontend",
    "auth",
];
const ROUTES: [&str; 5] = [
    "/api/cart",
    "/api/checkout",
    "/api/items/{id}",
    "/api/login",
    "/api/pay",
];

/// One request of `n` spans: a few traces of parent/child spans. Ids are
/// unique per (worker, sequence); `worker` carries a per-run random prefix so
/// that a second run sends new spans rather than replacing the first run's.
pub fn make_request(worker: u64, seq: u64, n: usize) -> ExportTraceServiceRequest {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let service = SERVICES[(seq as usize + worker as usize) % SERVICES.len()];
    let spans_per_trace = 10;
    let mut spans = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let trace_no = i / spans_per_trace;
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&(worker + 1).to_be_bytes());
        trace_id[8..].copy_from_slice(&(seq * 1_000_000 + trace_no + 1).to_be_bytes());
        let span_id = bench_span_id(worker, seq, i);
        let is_root = i % spans_per_trace == 0;
        let parent = if is_root {
            vec![]
        } else {
            bench_span_id(worker, seq, i - i % spans_per_trace).to_vec()
        };
        let error = (seq + i).is_multiple_of(50);
        let start = now - 5_000_000 - i * 1000;
        let duration = 200_000 + ((seq * 7919 + i * 104_729) % 40_000_000);
        let route = ROUTES[((seq + i) % ROUTES.len() as u64) as usize];
        spans.push(Span {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: parent,
            name: if is_root {
                format!("GET {route}")
            } else {
                format!("db.query {}", i % 4)
            },
            kind: if is_root { 2 } else { 3 },
            start_time_unix_nano: start,
            end_time_unix_nano: start + duration,
            attributes: vec![
                kv("http.method", Value::StringValue("GET".into())),
                kv("http.route", Value::StringValue(route.into())),
                kv(
                    "http.status_code",
                    Value::IntValue(if error { 500 } else { 200 }),
                ),
                kv(
                    "user.id",
                    Value::StringValue(format!("user-{}", (seq * 31 + i) % 10_000)),
                ),
                kv("db.system", Value::StringValue("postgresql".into())),
                kv(
                    "net.peer.name",
                    Value::StringValue(format!("db-{}.internal", i % 3)),
                ),
            ],
            events: if error {
                vec![span::Event {
                    time_unix_nano: start + duration / 2,
                    name: "exception".into(),
                    attributes: vec![kv(
                        "exception.message",
                        Value::StringValue("upstream timed out".into()),
                    )],
                    dropped_attributes_count: 0,
                }]
            } else {
                vec![]
            },
            status: Some(Status {
                code: if error { 2 } else { 1 },
                message: if error {
                    "internal error".into()
                } else {
                    String::new()
                },
            }),
            ..Default::default()
        });
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", Value::StringValue(service.into())),
                    kv("deployment.environment", Value::StringValue("bench".into())),
                ],
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

fn bench_span_id(worker: u64, seq: u64, i: u64) -> [u8; 8] {
    let mut id = [0u8; 8];
    id[..2].copy_from_slice(&((worker as u16) + 1).to_be_bytes());
    id[2..].copy_from_slice(&(seq * 10_000 + i + 1).to_be_bytes()[2..]);
    id
}

async fn connect(addr: &str) -> Result<TraceServiceClient<Channel>, String> {
    let ch = Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    Ok(TraceServiceClient::new(ch)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

pub async fn run(opts: BenchOptions) -> Result<BenchReport, String> {
    assert!(opts.concurrency > 0 && opts.spans_per_request > 0 && !opts.targets.is_empty());
    let mut clients = Vec::new();
    for t in &opts.targets {
        clients.push(connect(t).await?);
    }
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + opts.duration;
    // Pacing: each worker sends one request every `interval`.
    let interval = opts.rate_spans_per_sec.map(|rate| {
        let per_worker = rate as f64 / opts.concurrency as f64 / opts.spans_per_request as f64;
        Duration::from_secs_f64(1.0 / per_worker.max(1e-3))
    });
    let run_prefix = u64::from(rand::random::<u32>()) << 16;
    let mut handles = Vec::new();
    for w in 0..opts.concurrency {
        let mut client = clients[w % clients.len()].clone();
        let acked = acked.clone();
        let n = opts.spans_per_request;
        handles.push(tokio::spawn(async move {
            let mut latencies_us: Vec<u32> = Vec::new();
            let mut failed = 0u64;
            let mut errors: Vec<String> = Vec::new();
            let mut next = Instant::now()
                + interval.map_or(Duration::ZERO, |i| i.mul_f64(w as f64 / 16.0 % 1.0));
            let mut seq = 0u64;
            while Instant::now() < deadline {
                if let Some(i) = interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += i;
                }
                let req = make_request(run_prefix | w as u64, seq, n);
                seq += 1;
                let t0 = Instant::now();
                match client.export(req).await {
                    Ok(_) => {
                        latencies_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        acked.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(s) => {
                        failed += 1;
                        if errors.len() < 5 {
                            errors.push(format!("{:?}: {}", s.code(), s.message()));
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (latencies_us, failed, errors)
        }));
    }
    let mut all = Vec::new();
    let mut failed = 0;
    let mut errors = Vec::new();
    for h in handles {
        let (l, f, e) = h.await.map_err(|e| e.to_string())?;
        all.extend(l);
        failed += f;
        errors.extend(e);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let idx = ((p * all.len() as f64).ceil() as usize)
            .saturating_sub(1)
            .min(all.len() - 1);
        all[idx] as f64 / 1000.0
    };
    errors.truncate(10);
    let acked_spans = acked.load(Ordering::Relaxed);
    Ok(BenchReport {
        targets: opts.targets,
        concurrency: opts.concurrency,
        spans_per_request: opts.spans_per_request,
        target_rate_spans_per_sec: opts.rate_spans_per_sec,
        elapsed_secs: elapsed,
        requests_ok: all.len() as u64,
        requests_failed: failed,
        acked_spans,
        acked_spans_per_sec: acked_spans as f64 / elapsed,
        latency_ms_p50: pct(0.50),
        latency_ms_p99: pct(0.99),
        latency_ms_max: all.last().map_or(0.0, |&m| m as f64 / 1000.0),
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_unique_valid_ids() {
        let mut seen = std::collections::HashSet::new();
        for (w, seq) in [(0, 0), (0, 1), (1, 0)] {
            let r = make_request(w, seq, 100);
            for s in &r.resource_spans[0].scope_spans[0].spans {
                assert_eq!(s.trace_id.len(), 16);
                assert_eq!(s.span_id.len(), 8);
                assert!(
                    seen.insert((s.trace_id.clone(), s.span_id.clone())),
                    "duplicate span id"
                );
            }
        }
    }
}
