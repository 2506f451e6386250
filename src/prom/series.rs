//! The Prometheus samples a stored metric point stands for.
//!
//! A point written by remote write (type [`MetricType::Unknown`], see
//! `super::remote_write`) is one sample whose labels are its attributes plus
//! `__name__`: exactly the label set that was written. An OTLP point is
//! named by `super::naming`; a histogram becomes `_bucket{le=...}` (one per
//! bound, cumulative, and `+Inf`), `_sum` and `_count` series, a summary
//! `{quantile=...}`, `_sum` and `_count` series.

use super::naming;
use crate::model::{MetricPoint, MetricType};

/// Labels sorted by name, `__name__` included.
pub type LabelSet = Vec<(String, String)>;

/// A point's time in Prometheus milliseconds.
pub fn t_ms(p: &MetricPoint) -> i64 {
    i64::try_from(p.timestamp_unix_nanos / 1_000_000).expect("u64 nanos / 1e6 fits i64")
}

/// Whether a point was written by remote write (its labels are verbatim).
pub fn is_verbatim(p: &MetricPoint) -> bool {
    p.metric_type == MetricType::Unknown
}

/// The metric names of the series a point belongs to.
pub fn names(p: &MetricPoint) -> Vec<String> {
    if is_verbatim(p) {
        return vec![p.name.clone()];
    }
    let base = naming::metric_name(p);
    match p.metric_type {
        MetricType::Histogram => vec![
            format!("{base}_bucket"),
            format!("{base}_sum"),
            format!("{base}_count"),
        ],
        MetricType::Summary => vec![base.clone(), format!("{base}_sum"), format!("{base}_count")],
        _ => vec![base],
    }
}

/// The labels of a remote-written point: its attributes and `__name__`.
pub fn verbatim_labels(attributes: Vec<(String, String)>, name: &str) -> LabelSet {
    with_name(attributes, name)
}

/// Every sample a point stands for: (labels, value).
pub fn samples(p: &MetricPoint) -> Vec<(LabelSet, f64)> {
    if is_verbatim(p) {
        return vec![(verbatim_labels(p.attributes.clone(), &p.name), p.value)];
    }
    let base = naming::metric_name(p);
    let labels = naming::labels(p);
    let one = |name: &str, extra: Option<(&str, String)>, v: f64| {
        let mut l = labels.clone();
        if let Some((k, val)) = extra {
            l.push((k.to_string(), val));
        }
        l.sort();
        (with_name(l, name), v)
    };
    match (p.metric_type, &p.histogram) {
        (MetricType::Histogram, Some(h)) => {
            let mut out = Vec::with_capacity(h.bounds.len() + 3);
            let bucket = format!("{base}_bucket");
            let mut cumulative = 0u64;
            for (bound, n) in h.bounds.iter().zip(&h.counts) {
                cumulative = cumulative.saturating_add(*n);
                out.push(one(
                    &bucket,
                    Some(("le", float_label(*bound))),
                    cumulative as f64,
                ));
            }
            out.push(one(&bucket, Some(("le", "+Inf".into())), h.count as f64));
            if let Some(sum) = h.sum {
                out.push(one(&format!("{base}_sum"), None, sum));
            }
            out.push(one(&format!("{base}_count"), None, h.count as f64));
            out
        }
        (MetricType::Summary, h) => {
            let mut out: Vec<_> = p
                .quantiles
                .iter()
                .map(|(q, v)| one(&base, Some(("quantile", float_label(*q))), *v))
                .collect();
            out.push(one(&format!("{base}_sum"), None, p.value));
            if let Some(h) = h {
                out.push(one(&format!("{base}_count"), None, h.count as f64));
            }
            out
        }
        _ => vec![one(&base, None, p.value)],
    }
}

/// A float as Prometheus writes it in `le` and `quantile` labels.
pub fn float_label(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's shortest round-trip form without exponent, like Go's
        // FormatFloat(v, 'f', -1, 64).
        format!("{v}")
    }
}

/// `labels` (sorted) with `__name__` put in its place.
fn with_name(mut labels: LabelSet, name: &str) -> LabelSet {
    let at = labels
        .binary_search_by(|(k, _)| k.as_str().cmp("__name__"))
        .unwrap_or_else(|i| i);
    labels.insert(at, ("__name__".into(), name.into()));
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HistogramData;

    fn point(t: MetricType) -> MetricPoint {
        MetricPoint {
            timestamp_unix_nanos: 1_700_000_000_123_456_789,
            start_unix_nanos: 0,
            service: "api".into(),
            name: "rpc.duration".into(),
            metric_type: t,
            value: 7.5,
            unit: "s".into(),
            attributes: vec![("Zone".into(), "b".into()), ("method".into(), "Get".into())],
            temporality: None,
            is_monotonic: None,
            histogram: None,
            quantiles: vec![],
        }
    }

    fn render(s: &[(LabelSet, f64)]) -> Vec<String> {
        s.iter()
            .map(|(l, v)| {
                let l: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{} {v}", l.join(","))
            })
            .collect()
    }

    #[test]
    fn remote_write_points_give_their_labels_back_unchanged() {
        let mut p = point(MetricType::Unknown);
        p.name = "up".into();
        // Upper-case names sort before `__name__`.
        assert_eq!(render(&samples(&p)), ["Zone=b,__name__=up,method=Get 7.5"]);
        assert_eq!(names(&p), ["up"]);
        assert_eq!(t_ms(&p), 1_700_000_000_123);
    }

    #[test]
    fn histograms_become_cumulative_buckets_sum_and_count() {
        let mut p = point(MetricType::Histogram);
        p.histogram = Some(HistogramData {
            bounds: vec![0.1, 1.0],
            counts: vec![2, 3, 4],
            count: 9,
            sum: Some(12.5),
            min: None,
            max: None,
        });
        assert_eq!(
            render(&samples(&p)),
            [
                "Zone=b,__name__=rpc_duration_seconds_bucket,job=api,le=0.1,method=Get 2",
                "Zone=b,__name__=rpc_duration_seconds_bucket,job=api,le=1,method=Get 5",
                "Zone=b,__name__=rpc_duration_seconds_bucket,job=api,le=+Inf,method=Get 9",
                "Zone=b,__name__=rpc_duration_seconds_sum,job=api,method=Get 12.5",
                "Zone=b,__name__=rpc_duration_seconds_count,job=api,method=Get 9",
            ]
        );
        assert_eq!(names(&p).len(), 3);
    }

    #[test]
    fn summaries_become_quantiles_sum_and_count() {
        let mut p = point(MetricType::Summary);
        p.attributes.clear();
        p.histogram = Some(HistogramData {
            bounds: vec![],
            counts: vec![],
            count: 4,
            sum: Some(7.5),
            min: None,
            max: None,
        });
        p.quantiles = vec![(0.5, 1.0), (0.99, 3.0)];
        assert_eq!(
            render(&samples(&p)),
            [
                "__name__=rpc_duration_seconds,job=api,quantile=0.5 1",
                "__name__=rpc_duration_seconds,job=api,quantile=0.99 3",
                "__name__=rpc_duration_seconds_sum,job=api 7.5",
                "__name__=rpc_duration_seconds_count,job=api 4",
            ]
        );
    }
}
