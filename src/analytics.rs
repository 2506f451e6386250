//! Analytics over a time window of spans: summaries, percentiles, service
//! topology, window-over-window diffs and anomalies.
//!
//! Summaries, diffs and anomalies read per-minute rollups
//! ([`crate::rollup`]) for a window's whole minutes and span digests for its
//! partial edges: counts, rates, averages are exact, percentiles within 1%.
//! Topology needs each span's parent, so it reads span digests: every span's
//! time-index entry carries a [`SpanDigest`] (duration, status, service,
//! operation, parent), so a window is one range scan of that index without
//! reading span bodies.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::model::{SpanRecord, SpanStatus};
use crate::rollup::{Rollup, WindowRollups};

/// What the time index stores per span.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpanDigest {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub start_unix_nanos: u64,
    pub duration_nanos: u64,
    pub is_error: bool,
    pub service: String,
    pub operation: String,
}

impl SpanDigest {
    pub fn of(s: &SpanRecord) -> SpanDigest {
        SpanDigest {
            trace_id: s.trace_id,
            span_id: s.span_id,
            parent_span_id: s.parent_span_id,
            start_unix_nanos: s.start_unix_nanos,
            duration_nanos: s.duration_nanos(),
            is_error: s.status == SpanStatus::Error,
            service: s.service.clone(),
            operation: s.operation.clone(),
        }
    }

    fn duration_ms(&self) -> f64 {
        self.duration_nanos as f64 / 1e6
    }
}

/// Exact nearest-rank percentile of sorted values (`p` in 0..=100).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    debug_assert!(sorted.windows(2).all(|w| w[0] <= w[1]), "sorted input");
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Latency and error figures for a set of spans.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SpanStats {
    pub span_count: u64,
    pub trace_count: u64,
    pub error_count: u64,
    pub error_rate: f64,
    pub avg_ms: f64,
    pub max_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

impl SpanStats {
    pub fn of<'a>(spans: impl IntoIterator<Item = &'a SpanDigest>) -> SpanStats {
        let mut durations = Vec::new();
        let mut traces = std::collections::HashSet::new();
        let mut errors = 0u64;
        for s in spans {
            durations.push(s.duration_ms());
            traces.insert(s.trace_id);
            errors += s.is_error as u64;
        }
        if durations.is_empty() {
            return SpanStats::default();
        }
        durations.sort_by(f64::total_cmp);
        let n = durations.len() as f64;
        SpanStats {
            span_count: durations.len() as u64,
            trace_count: traces.len() as u64,
            error_count: errors,
            error_rate: errors as f64 / n,
            avg_ms: durations.iter().sum::<f64>() / n,
            max_ms: *durations.last().unwrap(),
            p50_ms: percentile(&durations, 50.0),
            p95_ms: percentile(&durations, 95.0),
            p99_ms: percentile(&durations, 99.0),
        }
    }
}

/// Spans per service, in service-name order.
pub fn by_service(spans: &[SpanDigest]) -> BTreeMap<&str, Vec<&SpanDigest>> {
    let mut m: BTreeMap<&str, Vec<&SpanDigest>> = BTreeMap::new();
    for s in spans {
        m.entry(s.service.as_str()).or_default().push(s);
    }
    m
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ServiceRow {
    pub service: String,
    #[serde(flatten)]
    pub stats: SpanStats,
}

/// The busiest services first (ties by name), at most `limit`.
pub fn top_services(window: &WindowRollups, limit: usize) -> Vec<ServiceRow> {
    let mut rows: Vec<ServiceRow> = window
        .by_service()
        .into_iter()
        .map(|(svc, r)| ServiceRow {
            service: svc.to_string(),
            stats: r.stats(),
        })
        .collect();
    rows.sort_by(|a, b| {
        b.stats
            .span_count
            .cmp(&a.stats.span_count)
            .then(a.service.cmp(&b.service))
    });
    rows.truncate(limit);
    rows
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ErrorOperation {
    pub service: String,
    pub operation: String,
    pub error_count: u64,
    pub span_count: u64,
}

/// Operations with the most errors first, at most `limit`.
pub fn top_error_operations(window: &WindowRollups, limit: usize) -> Vec<ErrorOperation> {
    let mut rows: Vec<ErrorOperation> = window
        .by_operation
        .iter()
        .filter(|(_, r)| r.error_count > 0)
        .map(|((svc, op), r)| ErrorOperation {
            service: svc.clone(),
            operation: op.clone(),
            error_count: r.error_count,
            span_count: r.span_count,
        })
        .collect();
    rows.sort_by(|a, b| {
        b.error_count
            .cmp(&a.error_count)
            .then(a.service.cmp(&b.service))
            .then(a.operation.cmp(&b.operation))
    });
    rows.truncate(limit);
    rows
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub calls: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub avg_duration_ms: f64,
}

/// Service-to-service calls: a span whose parent (in the window) belongs to
/// another service is one call from the parent's service to its own. Errors
/// and durations are the callee span's. Busiest edges first, at most `limit`.
pub fn topology(spans: &[SpanDigest], limit: usize) -> Vec<Edge> {
    let service_of: HashMap<([u8; 16], [u8; 8]), &str> = spans
        .iter()
        .map(|s| ((s.trace_id, s.span_id), s.service.as_str()))
        .collect();
    let mut edges: HashMap<(&str, &str), (u64, u64, f64)> = HashMap::new();
    for s in spans {
        let Some(parent) = s.parent_span_id else {
            continue;
        };
        let Some(&from) = service_of.get(&(s.trace_id, parent)) else {
            continue;
        };
        if from == s.service {
            continue;
        }
        let e = edges.entry((from, &s.service)).or_default();
        e.0 += 1;
        e.1 += s.is_error as u64;
        e.2 += s.duration_ms();
    }
    let mut out: Vec<Edge> = edges
        .into_iter()
        .map(|((from, to), (calls, errors, total_ms))| Edge {
            from: from.into(),
            to: to.into(),
            calls,
            errors,
            error_rate: errors as f64 / calls as f64,
            avg_duration_ms: total_ms / calls as f64,
        })
        .collect();
    out.sort_by(|a, b| {
        b.calls
            .cmp(&a.calls)
            .then(a.from.cmp(&b.from))
            .then(a.to.cmp(&b.to))
    });
    out.truncate(limit);
    out
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Anomaly {
    pub service: String,
    /// `error_rate` or `p95_latency`.
    pub kind: &'static str,
    /// `warning` or `critical`.
    pub severity: &'static str,
    pub current: f64,
    pub baseline: f64,
    pub delta: f64,
    pub description: String,
}

/// Spans a service needs in each window before it can be called anomalous.
pub const MIN_SPANS_FOR_ANOMALY: u64 = 5;
/// Error rate rise (absolute) that is an anomaly, and one that is critical.
pub const ERROR_RATE_RISE_WARNING: f64 = 0.05;
pub const ERROR_RATE_RISE_CRITICAL: f64 = 0.25;
/// p95 growth factor that is an anomaly, and one that is critical.
pub const P95_FACTOR_WARNING: f64 = 1.5;
pub const P95_FACTOR_CRITICAL: f64 = 3.0;

/// Services whose error rate or p95 latency in `current` stands out against
/// `baseline`. Services with too few spans in either window are skipped.
pub fn anomalies(current: &WindowRollups, baseline: &WindowRollups) -> Vec<Anomaly> {
    let base: BTreeMap<&str, Rollup> = baseline.by_service();
    let mut out = Vec::new();
    for (svc, rollup) in current.by_service() {
        let Some(base_rollup) = base.get(svc) else {
            continue;
        };
        let cur = rollup.stats();
        let old = base_rollup.stats();
        if cur.span_count < MIN_SPANS_FOR_ANOMALY || old.span_count < MIN_SPANS_FOR_ANOMALY {
            continue;
        }
        let rise = cur.error_rate - old.error_rate;
        if rise >= ERROR_RATE_RISE_WARNING {
            out.push(Anomaly {
                service: svc.into(),
                kind: "error_rate",
                severity: if rise >= ERROR_RATE_RISE_CRITICAL {
                    "critical"
                } else {
                    "warning"
                },
                current: cur.error_rate,
                baseline: old.error_rate,
                delta: rise,
                description: format!(
                    "{svc}: error rate {:.1}% against {:.1}% before",
                    cur.error_rate * 100.0,
                    old.error_rate * 100.0
                ),
            });
        }
        if old.p95_ms > 0.0 && cur.p95_ms >= old.p95_ms * P95_FACTOR_WARNING {
            let factor = cur.p95_ms / old.p95_ms;
            out.push(Anomaly {
                service: svc.into(),
                kind: "p95_latency",
                severity: if factor >= P95_FACTOR_CRITICAL {
                    "critical"
                } else {
                    "warning"
                },
                current: cur.p95_ms,
                baseline: old.p95_ms,
                delta: cur.p95_ms - old.p95_ms,
                description: format!(
                    "{svc}: p95 latency {:.1} ms, {factor:.1}x the {:.1} ms before",
                    cur.p95_ms, old.p95_ms
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(
        trace: u8,
        span: u8,
        parent: Option<u8>,
        svc: &str,
        op: &str,
        ms: u64,
        err: bool,
    ) -> SpanDigest {
        SpanDigest {
            trace_id: [trace; 16],
            span_id: [span; 8],
            parent_span_id: parent.map(|p| [p; 8]),
            start_unix_nanos: 1,
            duration_nanos: ms * 1_000_000,
            is_error: err,
            service: svc.into(),
            operation: op.into(),
        }
    }

    fn window_of(spans: &[SpanDigest]) -> WindowRollups {
        let mut w = WindowRollups::default();
        spans.iter().for_each(|d| w.add_digest(d));
        w
    }

    /// Within the sketch's stated relative accuracy.
    fn near(estimate: f64, exact: f64) -> bool {
        (estimate - exact).abs() <= exact * crate::sketch::STATED_RELATIVE_ACCURACY
    }

    #[test]
    fn percentiles_are_nearest_rank_and_exact() {
        let v: Vec<f64> = (1..=100).map(|x| x as f64).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 95.0), 95.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), 2.0);
    }

    #[test]
    fn stats_topology_and_top_lists_match_hand_computed_values() {
        let spans = vec![
            d(1, 1, None, "web", "GET /", 100, false),
            d(1, 2, Some(1), "api", "load", 40, true),
            d(1, 3, Some(2), "api", "cache", 10, false), // same service: no edge
            d(2, 1, None, "web", "GET /", 300, true),
            d(2, 2, Some(1), "api", "load", 20, false),
        ];
        let s = SpanStats::of(&spans);
        assert_eq!((s.span_count, s.trace_count, s.error_count), (5, 2, 2));
        assert_eq!(s.error_rate, 0.4);
        assert_eq!(s.avg_ms, 94.0);
        assert_eq!((s.p50_ms, s.p95_ms, s.max_ms), (40.0, 300.0, 300.0));

        let edges = topology(&spans, 10);
        assert_eq!(
            edges,
            vec![Edge {
                from: "web".into(),
                to: "api".into(),
                calls: 2,
                errors: 1,
                error_rate: 0.5,
                avg_duration_ms: 30.0
            }]
        );
        let w = window_of(&spans);
        let top = top_services(&w, 1);
        assert_eq!(top[0].service, "api");
        assert_eq!(top[0].stats.span_count, 3);
        let ops = top_error_operations(&w, 10);
        assert_eq!(ops.len(), 2);
        assert_eq!(
            (ops[0].service.as_str(), ops[0].operation.as_str()),
            ("api", "load")
        );
    }

    #[test]
    fn anomalies_flag_error_rate_and_latency_jumps_only() {
        let base: Vec<SpanDigest> = (0..10)
            .map(|i| d(i, 1, None, "pay", "charge", 10, false))
            .chain((0..10).map(|i| d(i, 2, None, "calm", "x", 10, false)))
            .collect();
        let cur: Vec<SpanDigest> = (0..10)
            .map(|i| d(i, 1, None, "pay", "charge", 40, i < 5))
            .chain((0..10).map(|i| d(i, 2, None, "calm", "x", 11, false)))
            .collect();
        let a = anomalies(&window_of(&cur), &window_of(&base));
        assert_eq!(a.len(), 2, "{a:?}");
        assert!(a.iter().all(|x| x.service == "pay"));
        let err = a.iter().find(|x| x.kind == "error_rate").unwrap();
        assert_eq!(
            (err.current, err.baseline, err.severity),
            (0.5, 0.0, "critical")
        );
        let lat = a.iter().find(|x| x.kind == "p95_latency").unwrap();
        assert!(
            near(lat.current, 40.0) && near(lat.baseline, 10.0),
            "{lat:?}"
        );
        assert_eq!(lat.severity, "critical");
        assert!(
            anomalies(&window_of(&cur[..3]), &window_of(&base)).is_empty(),
            "too few spans"
        );
    }
}
