//! `tael-raft bench-query --prometheus`: what Grafana's Prometheus data
//! source and a Prometheus remote-writing into the cluster depend on:
//! - remote-write throughput: `--series` counter series of one hour at 15 s
//!   (240 samples each), `--samples-per-request` samples per snappy
//!   `WriteRequest`, `--concurrency` writers spread over `--write-targets`;
//! - `query_range` of `sum by (job) (rate(bench_requests_total[5m]))` over
//!   that hour at a 15 s step (Grafana's form POST), one at a time, `--runs`
//!   times, after a pause for the apply backlog to drain.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use serde::Serialize;

use super::bench_query::QueryLatency;
use crate::http_client;
use crate::prom::remote_write::{Label, Sample, TimeSeries, WriteRequest};

#[derive(Clone, Debug)]
pub struct PromBenchOptions {
    /// REST URLs remote writes go to, round robin.
    pub write_targets: Vec<String>,
    /// REST URL of the node to query.
    pub server: String,
    pub series: usize,
    /// Distinct `job` values (the query's groups).
    pub jobs: usize,
    pub samples_per_request: usize,
    pub concurrency: usize,
    pub runs: usize,
    pub settle: Duration,
}

#[derive(Debug, Serialize)]
pub struct PromBenchReport {
    pub samples: u64,
    pub write_secs: f64,
    pub samples_per_sec: f64,
    pub write_errors: u64,
    pub query: QueryLatency,
    /// Series in the last answer (one per job).
    pub result_series: usize,
}

/// One hour of samples at 15 s.
const SAMPLES_PER_SERIES: usize = 240;
const STEP_MS: i64 = 15_000;
const QUERY: &str = "sum by (job) (rate(bench_requests_total[5m]))";
const TIMEOUT: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    i64::try_from(crate::model::now_unix_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The labels of series `s`, sorted by name.
fn labels(s: usize, jobs: usize) -> Vec<Label> {
    let l = |n: &str, v: String| Label {
        name: n.into(),
        value: v,
    };
    vec![
        l("__name__", "bench_requests_total".into()),
        l("instance", format!("host-{s}:9100")),
        l("job", format!("job-{}", s % jobs)),
        l("path", format!("/api/{}", s % 10)),
    ]
}

/// Request `r` of the write: samples `[r * per, (r + 1) * per)` of the
/// series-major order (series 0's hour, then series 1's, ...).
fn request(r: usize, opts: &PromBenchOptions, first_ms: i64) -> Vec<u8> {
    let total = opts.series * SAMPLES_PER_SERIES;
    let (from, to) = (
        r * opts.samples_per_request,
        ((r + 1) * opts.samples_per_request).min(total),
    );
    let mut timeseries: Vec<TimeSeries> = Vec::new();
    for i in from..to {
        let (s, k) = (i / SAMPLES_PER_SERIES, i % SAMPLES_PER_SERIES);
        if k == 0 || i == from {
            timeseries.push(TimeSeries {
                labels: labels(s, opts.jobs),
                samples: Vec::new(),
                histograms: Vec::new(),
            });
        }
        let ts = timeseries.last_mut().expect("pushed above");
        ts.samples.push(Sample {
            // A counter growing by a series-dependent rate.
            value: (k * (1 + s % 7)) as f64,
            timestamp: first_ms + k as i64 * STEP_MS,
        });
    }
    let req = WriteRequest {
        timeseries,
        metadata: Vec::new(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy encodes any input")
}

pub async fn run(opts: &PromBenchOptions) -> Result<PromBenchReport, String> {
    if opts.series == 0
        || opts.jobs == 0
        || opts.runs == 0
        || opts.concurrency == 0
        || opts.samples_per_request == 0
        || opts.write_targets.is_empty()
    {
        return Err("series, jobs, runs, concurrency, samples per request and write targets must be positive".into());
    }
    let end_ms = now_ms();
    let first_ms = end_ms - (SAMPLES_PER_SERIES as i64 - 1) * STEP_MS;
    let total = opts.series * SAMPLES_PER_SERIES;
    let requests = total.div_ceil(opts.samples_per_request);
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..opts.concurrency {
        let (opts, next, errors) = (opts.clone(), next.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let r = next.fetch_add(1, Ordering::Relaxed);
                if r >= requests {
                    return;
                }
                let body = request(r, &opts, first_ms);
                let target = &opts.write_targets[(w + r) % opts.write_targets.len()];
                let url = format!("{}/api/v1/write", target.trim_end_matches('/'));
                // Retry what the cluster asks to retry, as Prometheus does.
                for attempt in 0..10 {
                    let resp = http_client::request_with_headers(
                        "POST",
                        &url,
                        &[
                            ("Content-Encoding", "snappy"),
                            ("Content-Type", "application/x-protobuf"),
                        ],
                        &body,
                        TIMEOUT,
                    )
                    .await;
                    match resp {
                        Ok(resp) if resp.status == 204 => break,
                        Ok(resp) if matches!(resp.status, 429 | 503) && attempt < 9 => {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        other => {
                            if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!(
                                    "{url}: {:?}",
                                    other.map(|r| (
                                        r.status,
                                        String::from_utf8_lossy(&r.body).into_owned()
                                    ))
                                );
                            }
                            break;
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| format!("writer task: {e}"))?;
    }
    let write_secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "wrote {total} samples in {write_secs:.1} s; settling {:?}",
        opts.settle
    );
    tokio::time::sleep(opts.settle).await;
    let (query, result_series) = time_queries(opts, first_ms, end_ms).await?;
    Ok(PromBenchReport {
        samples: total as u64,
        write_secs,
        samples_per_sec: total as f64 / write_secs.max(1e-9),
        write_errors: errors.load(Ordering::Relaxed),
        query,
        result_series,
    })
}

async fn time_queries(
    opts: &PromBenchOptions,
    start_ms: i64,
    end_ms: i64,
) -> Result<(QueryLatency, usize), String> {
    let path = "/prometheus/api/v1/query_range";
    let url = format!("{}{path}", opts.server.trim_end_matches('/'));
    let form = {
        let mut f = form_urlencoded::Serializer::new(String::new());
        f.append_pair("query", QUERY);
        f.append_pair("start", &format!("{:.3}", start_ms as f64 / 1e3));
        f.append_pair("end", &format!("{:.3}", end_ms as f64 / 1e3));
        f.append_pair("step", "15");
        f.finish()
    };
    let mut ms = Vec::with_capacity(opts.runs);
    let (mut errors, mut series) = (0usize, 0usize);
    for _ in 0..opts.runs {
        let t0 = Instant::now();
        let r = http_client::request_with_headers(
            "POST",
            &url,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
            TIMEOUT,
        )
        .await;
        let took = t0.elapsed().as_secs_f64() * 1e3;
        match r {
            Ok(r) if r.status == 200 => {
                ms.push(took);
                series = r
                    .json()
                    .ok()
                    .and_then(|v| v["data"]["result"].as_array().map(|a| a.len()))
                    .unwrap_or(0);
            }
            other => {
                errors += 1;
                if errors == 1 {
                    eprintln!(
                        "{path}: {:?}",
                        other.map(|r| (r.status, String::from_utf8_lossy(&r.body).into_owned()))
                    );
                }
            }
        }
    }
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| super::quantile(&ms, p).unwrap_or(0.0);
    Ok((
        QueryLatency {
            name: "query_range sum by job rate 5m, 1h at 15s".into(),
            path: path.into(),
            runs: opts.runs,
            errors,
            last_result_count: Some(series),
            ms_p50: pct(0.5),
            ms_p99: pct(0.99),
            ms_max: ms.last().copied().unwrap_or(0.0),
        },
        series,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_cover_every_sample_once() {
        let opts = PromBenchOptions {
            write_targets: vec!["http://x".into()],
            server: "http://x".into(),
            series: 3,
            jobs: 2,
            samples_per_request: 100,
            concurrency: 1,
            runs: 1,
            settle: Duration::ZERO,
        };
        let mut seen = std::collections::HashSet::new();
        for r in 0..(3 * SAMPLES_PER_SERIES).div_ceil(100) {
            let body = request(r, &opts, 0);
            let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
            let req = WriteRequest::decode(&raw[..]).unwrap();
            for ts in req.timeseries {
                for s in ts.samples {
                    assert!(seen.insert((ts.labels[1].value.clone(), s.timestamp)));
                }
            }
        }
        assert_eq!(seen.len(), 3 * SAMPLES_PER_SERIES);
    }
}
