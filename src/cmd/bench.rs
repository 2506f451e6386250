//! `tael-raft bench`: an OTLP load generator.
//!
//! Workers send export requests of realistic spans (attributes, events, some
//! errors) or log records round-robin to the targets, over OTLP/gRPC or
//! OTLP/HTTP (protobuf), optionally paced to a total rate, and the report
//! gives acknowledged records/s and acknowledgement latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde::Serialize;
use tonic::transport::Channel;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchSignal {
    Traces,
    Logs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchTransport {
    Grpc,
    /// OTLP/HTTP with protobuf bodies, one connection per request.
    Http,
}

#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// OTLP/gRPC or OTLP/HTTP `host:port` addresses, per `transport`.
    pub targets: Vec<String>,
    pub signal: BenchSignal,
    pub transport: BenchTransport,
    pub concurrency: usize,
    pub records_per_request: usize,
    pub duration: Duration,
    /// Total records per second across workers; `None` sends as fast as acks come.
    pub rate_records_per_sec: Option<u64>,
    /// Share of spans (percent) that are LLM spans carrying a prompt and a
    /// completion.
    pub llm_percent: u32,
    /// Probe this directory's disk during the run (see
    /// [`super::disk_check`]) and report its stalls next to slow seconds.
    pub disk_witness_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub targets: Vec<String>,
    pub signal: BenchSignal,
    pub transport: BenchTransport,
    pub concurrency: usize,
    pub records_per_request: usize,
    pub target_rate_records_per_sec: Option<u64>,
    pub elapsed_secs: f64,
    pub requests_ok: u64,
    pub requests_failed: u64,
    pub acked_records: u64,
    pub acked_records_per_sec: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    /// Seconds of the run in which some request took over
    /// [`SLOW_SECOND_THRESHOLD_MS`]: where the tail comes from, with wall
    /// clock times to match against node logs.
    pub slow_seconds: Vec<SlowSecond>,
    /// Stretches of at least [`ACK_GAP_THRESHOLD_MS`] in which no request
    /// was acknowledged (a failover shows as one), longest first.
    pub ack_gaps: Vec<AckGap>,
    /// The disk probe run alongside, when asked for.
    pub disk_witness: Option<super::disk_check::DiskCheckReport>,
    pub errors: Vec<String>,
}

/// A stretch without acknowledgements at least this long is reported.
pub const ACK_GAP_THRESHOLD_MS: u64 = 200;
/// At most this many gaps are reported.
const MAX_ACK_GAPS: usize = 100;

#[derive(Debug, Serialize, PartialEq)]
pub struct AckGap {
    /// When the last acknowledgement before the gap came (unix ms).
    pub from_unix_ms: u64,
    pub gap_ms: u64,
}

/// A request sent in this second took over this long.
pub const SLOW_SECOND_THRESHOLD_MS: f64 = 100.0;

#[derive(Debug, Serialize)]
pub struct SlowSecond {
    /// Seconds since the run started.
    pub second: u64,
    /// Wall clock at that second's start, Unix milliseconds.
    pub unix_ms: u64,
    pub requests: u64,
    pub slow_requests: u64,
    pub max_ms: f64,
    /// The slowest fdatasync of the disk witness in progress during this
    /// second, if a witness ran.
    pub disk_max_sync_ms: Option<f64>,
}

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        key_strindex: 0,
    }
}

pub const SERVICES: [&str; 6] = [
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
pub fn make_request(
    worker: u64,
    seq: u64,
    n: usize,
    llm_percent: u32,
) -> ExportTraceServiceRequest {
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
        let mut attributes = vec![
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
        ];
        if (seq.wrapping_mul(n as u64) + i) % 100 < u64::from(llm_percent) {
            attributes.extend(llm_attributes(seq, i));
        }
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
            attributes,
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

/// Words the generated prompts are made of (and full-text benchmarks query).
pub const PROMPT_WORDS: [&str; 16] = [
    "refund",
    "invoice",
    "latency",
    "outage",
    "shipping",
    "password",
    "discount",
    "warranty",
    "kubernetes",
    "timeout",
    "checkout",
    "database",
    "replica",
    "quorum",
    "billing",
    "upgrade",
];

/// GenAI attributes of an LLM call: a ~1 KiB prompt and a shorter completion.
fn llm_attributes(seq: u64, i: u64) -> Vec<KeyValue> {
    let word =
        |k: u64| PROMPT_WORDS[((seq * 131 + i * 31 + k * 7) % PROMPT_WORDS.len() as u64) as usize];
    let mut prompt = String::from("You are a support agent. Customer message: ");
    for k in 0..120 {
        prompt.push_str(word(k));
        prompt.push(' ');
    }
    let mut completion = String::from("Answer: ");
    for k in 0..40 {
        completion.push_str(word(k + 500));
        completion.push(' ');
    }
    vec![
        kv("gen_ai.provider.name", Value::StringValue("openai".into())),
        kv(
            "gen_ai.request.model",
            Value::StringValue("gpt-4o-mini".into()),
        ),
        kv("gen_ai.operation.name", Value::StringValue("chat".into())),
        kv("gen_ai.usage.input_tokens", Value::IntValue(300)),
        kv("gen_ai.usage.output_tokens", Value::IntValue(60)),
        kv("gen_ai.prompt", Value::StringValue(prompt)),
        kv("gen_ai.completion", Value::StringValue(completion)),
    ]
}

const LEVELS: [(i32, &str); 4] = [(9, "INFO"), (9, "INFO"), (13, "WARN"), (17, "ERROR")];

/// One request of `n` log records, unique per (worker, sequence) like
/// [`make_request`], some inside a trace.
pub fn make_logs_request(worker: u64, seq: u64, n: usize) -> ExportLogsServiceRequest {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let service = SERVICES[(seq as usize + worker as usize) % SERVICES.len()];
    let records = (0..n as u64)
        .map(|i| {
            let (severity, text) = LEVELS[((seq + i) % LEVELS.len() as u64) as usize];
            let route = ROUTES[((seq + i) % ROUTES.len() as u64) as usize];
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&(worker + 1).to_be_bytes());
            trace_id[8..].copy_from_slice(&(seq * 1_000_000 + i / 10 + 1).to_be_bytes());
            LogRecord {
                time_unix_nano: now - i * 1000,
                observed_time_unix_nano: now,
                severity_number: severity,
                severity_text: text.into(),
                body: Some(AnyValue {
                    value: Some(Value::StringValue(format!(
                        "{text} handled {route} for user-{} in {} ms (worker {worker} seq {seq} #{i})",
                        (seq * 31 + i) % 10_000,
                        (seq * 7919 + i * 104_729) % 400
                    ))),
                }),
                attributes: vec![
                    kv("http.route", Value::StringValue(route.into())),
                    kv("thread.id", Value::IntValue((i % 16) as i64)),
                ],
                trace_id: if i % 2 == 0 {
                    trace_id.to_vec()
                } else {
                    vec![]
                },
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Value::StringValue(service.into()))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
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

/// Where one worker sends its requests.
#[derive(Clone)]
enum Sender {
    GrpcTraces(TraceServiceClient<Channel>),
    GrpcLogs(LogsServiceClient<Channel>),
    Http { url: String },
}

pub(super) async fn channel(addr: &str) -> Result<Channel, String> {
    Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))
}

async fn sender(opts: &BenchOptions, addr: &str) -> Result<Sender, String> {
    Ok(match (opts.transport, opts.signal) {
        (BenchTransport::Grpc, BenchSignal::Traces) => Sender::GrpcTraces(
            TraceServiceClient::new(channel(addr).await?)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
        ),
        (BenchTransport::Grpc, BenchSignal::Logs) => Sender::GrpcLogs(
            LogsServiceClient::new(channel(addr).await?)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
        ),
        (BenchTransport::Http, signal) => Sender::Http {
            url: format!(
                "http://{addr}/v1/{}",
                match signal {
                    BenchSignal::Traces => "traces",
                    BenchSignal::Logs => "logs",
                }
            ),
        },
    })
}

const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

impl Sender {
    async fn send(
        &mut self,
        signal: BenchSignal,
        worker: u64,
        seq: u64,
        n: usize,
        llm_percent: u32,
    ) -> Result<(), String> {
        match self {
            Sender::GrpcTraces(c) => c
                .export(make_request(worker, seq, n, llm_percent))
                .await
                .map(drop)
                .map_err(|s| format!("{:?}: {}", s.code(), s.message())),
            Sender::GrpcLogs(c) => c
                .export(make_logs_request(worker, seq, n))
                .await
                .map(drop)
                .map_err(|s| format!("{:?}: {}", s.code(), s.message())),
            Sender::Http { url } => {
                let body = match signal {
                    BenchSignal::Traces => {
                        make_request(worker, seq, n, llm_percent).encode_to_vec()
                    }
                    BenchSignal::Logs => make_logs_request(worker, seq, n).encode_to_vec(),
                };
                let r = crate::http_client::request_with_headers(
                    "POST",
                    url,
                    &[("Content-Type", "application/x-protobuf")],
                    &body,
                    HTTP_TIMEOUT,
                )
                .await?;
                if r.status == 200 {
                    Ok(())
                } else {
                    Err(format!("HTTP {}", r.status))
                }
            }
        }
    }
}

pub async fn run(opts: BenchOptions) -> Result<BenchReport, String> {
    assert!(opts.concurrency > 0 && opts.records_per_request > 0 && !opts.targets.is_empty());
    let mut senders = Vec::new();
    for t in &opts.targets {
        senders.push(sender(&opts, t).await?);
    }
    let witness = match &opts.disk_witness_dir {
        // Slack over the run's own length: the last requests may still be
        // waiting when the deadline passes.
        Some(dir) => Some(super::disk_check::Witness::start(
            dir.clone(),
            opts.duration + Duration::from_secs(60),
        )?),
        None => None,
    };
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + opts.duration;
    // Pacing: each worker sends one request every `interval`.
    let interval = opts.rate_records_per_sec.map(|rate| {
        let per_worker = rate as f64 / opts.concurrency as f64 / opts.records_per_request as f64;
        Duration::from_secs_f64(1.0 / per_worker.max(1e-3))
    });
    let run_prefix = u64::from(rand::random::<u32>()) << 16;
    let mut handles = Vec::new();
    for w in 0..opts.concurrency {
        let mut sender = senders[w % senders.len()].clone();
        let acked = acked.clone();
        let n = opts.records_per_request;
        let signal = opts.signal;
        let llm_percent = opts.llm_percent;
        handles.push(tokio::spawn(async move {
            // (send time since start in ms, latency in µs)
            let mut latencies_us: Vec<(u32, u32)> = Vec::new();
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
                let t0 = Instant::now();
                let result = sender
                    .send(signal, run_prefix | w as u64, seq, n, llm_percent)
                    .await;
                seq += 1;
                match result {
                    Ok(()) => {
                        let sent_ms = (t0 - started).as_millis().min(u32::MAX as u128) as u32;
                        let took_us = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
                        latencies_us.push((sent_ms, took_us));
                        acked.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failed += 1;
                        if errors.len() < 5 {
                            errors.push(e);
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
    let disk_witness = match witness {
        Some(w) => Some(w.finish()?),
        None => None,
    };
    let ack_gaps = ack_gaps(&all, started, deadline);
    let mut slow_seconds = slow_seconds(&all, started);
    if let Some(disk) = &disk_witness {
        for s in &mut slow_seconds {
            s.disk_max_sync_ms = Some(disk.max_sync_ms_between(s.unix_ms, s.unix_ms + 1000));
        }
    }
    let mut all: Vec<u32> = all.into_iter().map(|(_, us)| us).collect();
    all.sort_unstable();
    let pct = |p: f64| super::quantile(&all, p).map_or(0.0, |us| f64::from(us) / 1000.0);
    errors.truncate(10);
    let acked_records = acked.load(Ordering::Relaxed);
    Ok(BenchReport {
        targets: opts.targets,
        signal: opts.signal,
        transport: opts.transport,
        concurrency: opts.concurrency,
        records_per_request: opts.records_per_request,
        target_rate_records_per_sec: opts.rate_records_per_sec,
        elapsed_secs: elapsed,
        requests_ok: all.len() as u64,
        requests_failed: failed,
        acked_records,
        acked_records_per_sec: acked_records as f64 / elapsed,
        latency_ms_p50: pct(0.50),
        latency_ms_p99: pct(0.99),
        latency_ms_max: all.last().map_or(0.0, |&m| m as f64 / 1000.0),
        slow_seconds,
        ack_gaps,
        disk_witness,
        errors,
    })
}

/// The stretches of the run, from its start to `deadline`, of at least
/// [`ACK_GAP_THRESHOLD_MS`] without an acknowledgement, longest first.
/// Samples are `(sent ms since start, latency µs)`.
fn ack_gaps(samples: &[(u32, u32)], started: Instant, deadline: Instant) -> Vec<AckGap> {
    let started_unix_ms = (crate::model::now_unix_nanos() / 1_000_000)
        .saturating_sub(started.elapsed().as_millis() as u64);
    let end_ms = (deadline - started).as_millis() as u64;
    let mut acks: Vec<u64> = samples
        .iter()
        .map(|&(sent_ms, took_us)| u64::from(sent_ms) + u64::from(took_us) / 1000)
        .collect();
    acks.sort_unstable();
    let mut gaps: Vec<AckGap> = std::iter::once(0)
        .chain(acks.iter().copied())
        .zip(acks.iter().copied().chain(std::iter::once(end_ms)))
        .filter(|(from, to)| to.saturating_sub(*from) >= ACK_GAP_THRESHOLD_MS)
        .map(|(from, to)| AckGap {
            from_unix_ms: started_unix_ms + from,
            gap_ms: to - from,
        })
        .collect();
    gaps.sort_by(|a, b| b.gap_ms.cmp(&a.gap_ms));
    gaps.truncate(MAX_ACK_GAPS);
    gaps
}

/// Groups `(sent ms, latency µs)` samples by the second they were sent in
/// and keeps the seconds with a request over the threshold.
fn slow_seconds(samples: &[(u32, u32)], started: Instant) -> Vec<SlowSecond> {
    use std::collections::BTreeMap;
    let started_unix_ms = (crate::model::now_unix_nanos() / 1_000_000)
        .saturating_sub(started.elapsed().as_millis() as u64);
    let mut by_second: BTreeMap<u64, SlowSecond> = BTreeMap::new();
    for &(sent_ms, took_us) in samples {
        let second = u64::from(sent_ms) / 1000;
        let s = by_second.entry(second).or_insert(SlowSecond {
            second,
            unix_ms: started_unix_ms + second * 1000,
            requests: 0,
            slow_requests: 0,
            max_ms: 0.0,
            disk_max_sync_ms: None,
        });
        let took_ms = f64::from(took_us) / 1000.0;
        s.requests += 1;
        s.slow_requests += u64::from(took_ms > SLOW_SECOND_THRESHOLD_MS);
        s.max_ms = s.max_ms.max(took_ms);
    }
    by_second
        .into_values()
        .filter(|s| s.slow_requests > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_gaps_are_the_long_stretches_without_an_acknowledgement() {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(3000);
        // Acks at 100, 150, 900 (sent 800 + 100 ms) and 1000 ms; the run
        // ends at 3000 ms.
        let samples = [(90, 10_000), (150, 0), (800, 100_000), (1000, 0)];
        let gaps: Vec<u64> = ack_gaps(&samples, started, deadline)
            .iter()
            .map(|g| g.gap_ms)
            .collect();
        assert_eq!(gaps, vec![2000, 750]);
        assert!(ack_gaps(&[], started, deadline)[0].gap_ms == 3000);
    }

    #[test]
    fn requests_have_unique_valid_ids() {
        let mut seen = std::collections::HashSet::new();
        for (w, seq) in [(0, 0), (0, 1), (1, 0)] {
            let r = make_request(w, seq, 100, 10);
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

    #[test]
    fn log_requests_are_valid_and_distinct() {
        let a = make_logs_request(0, 0, 50);
        let b = make_logs_request(0, 1, 50);
        let conv_a = crate::otlp::convert::logs(a);
        assert_eq!((conv_a.records.len(), conv_a.rejected), (50, 0));
        let conv_b = crate::otlp::convert::logs(b);
        let bodies: std::collections::HashSet<String> = conv_a
            .records
            .iter()
            .chain(&conv_b.records)
            .map(|l| l.body_text().into_owned())
            .collect();
        assert_eq!(bodies.len(), 100, "content-keyed records must not collide");
    }
}
