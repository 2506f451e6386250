//! `tael-raft bench-query --tempo`: the two latencies Grafana's Tempo data
//! source depends on, over data this command ingests first:
//! - trace by id: `GET /tempo/api/v2/traces/{id}` with
//!   `Accept: application/protobuf`, for random ids among those ingested;
//! - TraceQL search with a service and an attribute filter:
//!   `{ resource.service.name = "S" && span.http.status_code = 500 }`,
//!   the service rotating over the generated ones.
//!
//! The spans are the load generator's ([`super::bench::make_request`]):
//! 10-span traces, 6 services, 2% errors carrying status code 500. Queries
//! run one at a time, after ingest and a pause for the apply backlog to
//! drain, so they measure reads alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use serde::Serialize;

use super::bench::{make_request, SERVICES};
use super::bench_query::QueryLatency;
use crate::http_client;

#[derive(Clone, Debug)]
pub struct TempoBenchOptions {
    /// OTLP/gRPC `host:port` to ingest through.
    pub otlp_target: String,
    /// REST URL of the node to query.
    pub server: String,
    /// Spans to ingest before querying (the lookups need known ids).
    pub spans: u64,
    pub spans_per_request: usize,
    pub concurrency: usize,
    /// Runs of each query.
    pub runs: usize,
    /// Pause between ingest and queries: a saturating ingest ends with an
    /// apply backlog, and a linearizable read waits for it.
    pub settle: Duration,
}

#[derive(Debug, Serialize)]
pub struct TempoBenchReport {
    pub ingested_spans: u64,
    pub ingest_secs: f64,
    pub queries: Vec<QueryLatency>,
}

const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Trace ids remembered for lookups: one per request is plenty.
const MAX_KNOWN_TRACES: usize = 100_000;

pub async fn run(opts: &TempoBenchOptions) -> Result<TempoBenchReport, String> {
    if opts.spans == 0 || opts.runs == 0 || opts.concurrency == 0 || opts.spans_per_request == 0 {
        return Err("spans, runs, concurrency and spans per request must be positive".into());
    }
    let t0 = Instant::now();
    let (ingested, known) = ingest(opts).await?;
    let ingest_secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "ingested {ingested} spans in {ingest_secs:.1} s; querying after {:?}",
        opts.settle
    );
    tokio::time::sleep(opts.settle).await;
    let base = opts.server.trim_end_matches('/');
    let mut by_id = measure(opts.runs, "trace by id (protobuf)", |run| {
        let id = tael_consensus::hex(&known[pick(run, known.len())]);
        let url = format!("{base}/tempo/api/v2/traces/{id}");
        async move {
            let r = http_client::request_with_headers(
                "GET",
                &url,
                &[("Accept", "application/protobuf")],
                b"",
                QUERY_TIMEOUT,
            )
            .await?;
            match r.status {
                200 if !r.body.is_empty() => Ok(None),
                s => Err(format!("{url}: HTTP {s}")),
            }
        }
    })
    .await;
    by_id.path = "/tempo/api/v2/traces/{id}, Accept: application/protobuf".into();
    let mut search = measure(opts.runs, "TraceQL service + attribute", |run| {
        let service = SERVICES[run % SERVICES.len()];
        let q =
            format!("{{ resource.service.name = \"{service}\" && span.http.status_code = 500 }}");
        let url = format!("{base}/tempo/api/search?q={}", url_encode(&q));
        async move {
            let r = http_client::request("GET", &url, None, b"", QUERY_TIMEOUT).await?;
            if r.status != 200 {
                return Err(format!("{url}: HTTP {}", r.status));
            }
            let v = r.json().map_err(|e| format!("{url}: {e}"))?;
            Ok(v["traces"].as_array().map(|a| a.len()))
        }
    })
    .await;
    search.path =
        "/tempo/api/search?q={ resource.service.name = \"S\" && span.http.status_code = 500 }"
            .into();
    Ok(TempoBenchReport {
        ingested_spans: ingested,
        ingest_secs,
        queries: vec![by_id, search],
    })
}

/// Sends `opts.spans` spans (rounded up to whole requests) from
/// `opts.concurrency` exporters; returns the spans acknowledged and one
/// trace id per request.
async fn ingest(opts: &TempoBenchOptions) -> Result<(u64, Vec<[u8; 16]>), String> {
    let requests = opts.spans.div_ceil(opts.spans_per_request as u64);
    let next_request = Arc::new(AtomicU64::new(0));
    let known = Arc::new(Mutex::new(Vec::new()));
    // A new prefix per run: a second run adds spans instead of replacing.
    let run_prefix = u64::from(rand::random::<u32>()) << 16;
    let mut handles = Vec::new();
    for w in 0..opts.concurrency {
        let channel = super::bench::channel(&opts.otlp_target).await?;
        let mut client = TraceServiceClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let (next_request, known) = (next_request.clone(), known.clone());
        let n = opts.spans_per_request;
        handles.push(tokio::spawn(async move {
            let mut acked = 0u64;
            let mut seq = 0u64;
            while next_request.fetch_add(1, Ordering::Relaxed) < requests {
                let req = make_request(run_prefix | w as u64, seq, n, 0);
                seq += 1;
                let first = &req.resource_spans[0].scope_spans[0].spans[0];
                let id: [u8; 16] = first.trace_id[..].try_into().expect("16-byte trace id");
                let mut attempts = 0;
                loop {
                    match client.export(req.clone()).await {
                        Ok(_) => break,
                        // Backpressure or a leader change: try again, a
                        // few times, so the data set is complete.
                        Err(e) if attempts < 20 => {
                            attempts += 1;
                            eprintln!("export: {:?}: {}; retrying", e.code(), e.message());
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => return Err(format!("export: {:?}: {}", e.code(), e.message())),
                    }
                }
                acked += n as u64;
                let mut known = known.lock().expect("not poisoned");
                if known.len() < MAX_KNOWN_TRACES {
                    known.push(id);
                }
            }
            Ok::<u64, String>(acked)
        }));
    }
    let mut acked = 0;
    for h in handles {
        acked += h.await.map_err(|e| e.to_string())??;
    }
    let known = std::mem::take(&mut *known.lock().expect("not poisoned"));
    Ok((acked, known))
}

/// A deterministic spread over `0..len` (no two runs in a row hit
/// neighbouring ids).
fn pick(run: usize, len: usize) -> usize {
    (run.wrapping_mul(2_654_435_761) ^ (run >> 3)) % len
}

/// Runs `query` `runs` times, one at a time; each returns how many results
/// it got (when its answer has a list).
async fn measure<F, Fut>(runs: usize, name: &str, mut query: F) -> QueryLatency
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<Option<usize>, String>>,
{
    let mut samples = Vec::with_capacity(runs);
    let mut errors = 0;
    let mut last_count = None;
    for run in 0..runs {
        let t0 = Instant::now();
        let r = query(run).await;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        match r {
            Ok(count) => {
                samples.push(ms);
                last_count = count;
            }
            Err(e) => {
                errors += 1;
                if errors == 1 {
                    eprintln!("{name}: {e}");
                }
            }
        }
    }
    samples.sort_by(f64::total_cmp);
    let pct = |p: f64| super::quantile(&samples, p).unwrap_or(0.0);
    QueryLatency {
        name: name.to_string(),
        path: String::new(),
        runs,
        errors,
        last_result_count: last_count,
        ms_p50: pct(0.50),
        ms_p99: pct(0.99),
        ms_max: samples.last().copied().unwrap_or(0.0),
    }
}

/// Percent-encodes everything but unreserved characters.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_stay_in_range_and_spread() {
        let picks: std::collections::HashSet<usize> = (0..100).map(|r| pick(r, 1000)).collect();
        assert!(picks.iter().all(|&p| p < 1000));
        assert!(picks.len() > 90, "{} distinct", picks.len());
    }

    #[test]
    fn url_encoding_keeps_only_unreserved_bytes() {
        assert_eq!(url_encode("{ a = \"b\" }"), "%7B%20a%20%3D%20%22b%22%20%7D");
        assert_eq!(url_encode("x.y-z_~"), "x.y-z_~");
    }
}
