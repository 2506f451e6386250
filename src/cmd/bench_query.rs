//! `tael-raft bench-query`: latency of the queries people run most, against
//! a running node: trace search, attribute search, full-text over traces and
//! logs, and the one-hour summary. Queries run one at a time.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cmd::bench::PROMPT_WORDS;
use crate::http_client;

#[derive(Debug, Serialize)]
pub struct QueryLatency {
    pub name: String,
    pub path: String,
    pub runs: usize,
    pub errors: usize,
    /// Results in the last answer (spans or logs), when the answer has a list.
    pub last_result_count: Option<usize>,
    pub ms_p50: f64,
    pub ms_p99: f64,
    pub ms_max: f64,
}

const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

fn queries(consistency: &str, run: usize) -> Vec<(&'static str, String)> {
    let word = PROMPT_WORDS[run % PROMPT_WORDS.len()];
    let c = format!("consistency={consistency}");
    vec![
        (
            "trace search by service",
            format!("/api/v1/traces?service=checkout&last=1h&limit=100&{c}"),
        ),
        (
            "trace search by attribute",
            format!("/api/v1/traces?attribute=http.route%3D/api/pay&last=1h&limit=100&{c}"),
        ),
        (
            "trace search, errors",
            format!("/api/v1/traces?status=error&last=1h&limit=100&{c}"),
        ),
        (
            "full-text over LLM spans",
            format!("/api/v1/traces?text={word}&limit=100&{c}"),
        ),
        // Bench log bodies name a route and a user: a common and a rare term.
        (
            "full-text logs, common",
            format!("/api/v1/logs?text=pay&limit=100&{c}"),
        ),
        (
            "full-text logs, rare",
            format!("/api/v1/logs?text=%22user-{}%22&limit=100&{c}", 1000 + run),
        ),
        ("summary, last hour", format!("/api/v1/summary?last=1h&{c}")),
    ]
}

pub async fn run(
    server: &str,
    runs: usize,
    consistency: &str,
) -> Result<Vec<QueryLatency>, String> {
    let base = server.trim_end_matches('/');
    let names: Vec<(&str, String)> = queries(consistency, 0);
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); names.len()];
    let mut errors = vec![0usize; names.len()];
    let mut counts = vec![None; names.len()];
    for run in 0..runs {
        for (i, (_, path)) in queries(consistency, run).into_iter().enumerate() {
            let t0 = Instant::now();
            let r = http_client::request("GET", &format!("{base}{path}"), None, b"", QUERY_TIMEOUT)
                .await;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            match r {
                Ok(r) if r.status == 200 => {
                    samples[i].push(ms);
                    let v = r.json().ok();
                    counts[i] = v.and_then(|v| {
                        v["spans"]
                            .as_array()
                            .or(v["logs"].as_array())
                            .map(|a| a.len())
                    });
                }
                Ok(r) => {
                    errors[i] += 1;
                    if errors[i] == 1 {
                        eprintln!(
                            "{path}: HTTP {}: {}",
                            r.status,
                            String::from_utf8_lossy(&r.body)
                        );
                    }
                }
                Err(e) => {
                    errors[i] += 1;
                    if errors[i] == 1 {
                        eprintln!("{path}: {e}");
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    for (i, (name, path)) in names.into_iter().enumerate() {
        let s = &mut samples[i];
        s.sort_by(f64::total_cmp);
        let pct = |p: f64| super::quantile(s, p).unwrap_or(0.0);
        out.push(QueryLatency {
            name: name.to_string(),
            path,
            runs,
            errors: errors[i],
            last_result_count: counts[i],
            ms_p50: pct(0.50),
            ms_p99: pct(0.99),
            ms_max: s.last().copied().unwrap_or(0.0),
        });
    }
    Ok(out)
}
