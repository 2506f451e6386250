//! OpenTelemetry metric names and attributes as Prometheus names and labels,
//! after the OpenTelemetry-to-Prometheus compatibility rules (the
//! "underscore escaping with suffixes" translation):
//!
//! - A metric name is split into words at every character that is not an
//!   ASCII letter or digit, and the words are joined with `_`
//!   (`http.server.request.duration` → `http_server_request_duration`).
//! - The unit becomes a suffix word when the name does not have it yet:
//!   `s` → `seconds`, `By` → `bytes`, `ms` → `milliseconds`, ...; `x/y` →
//!   `x_per_y`; annotations in braces (`{requests}`) are dropped; a gauge
//!   of unit `1` gets `ratio`.
//! - A monotonic sum gets `_total` (a `total` word elsewhere in its name is
//!   moved to the end).
//! - A name starting with a digit gets a leading `_`.
//! - Attribute names: every character that is not an ASCII letter, digit or
//!   `_` becomes `_`; a name starting with a digit gets `key_`, one starting
//!   with a single `_` gets `key`. Attributes that end up with the same
//!   name have their values joined with `;`, in the order of their original
//!   names.
//! - `job` is the resource's `service.name`, `instance` its
//!   `service.instance.id` (OTLP conversion copies that resource attribute
//!   to every point); both replace attributes of those names.
//!
//! Histograms and summaries become several series (`super::series`).

use crate::model::{MetricPoint, MetricType, Temporality};

/// The attribute OTLP conversion copies from a metric's resource to its
/// points; it becomes the `instance` label.
pub const INSTANCE_ATTRIBUTE: &str = "service.instance.id";

/// The Prometheus name of an OTLP metric point, suffixes included (before
/// the `_bucket`, `_sum` and `_count` of histograms and summaries).
pub fn metric_name(p: &MetricPoint) -> String {
    let counter = is_counter(p);
    let mut words: Vec<String> = words(&p.name)
        .filter(|w| !(counter && *w == "total"))
        .map(str::to_string)
        .collect();
    for w in unit_words(&p.unit, p.metric_type) {
        if !words.contains(&w) {
            words.push(w);
        }
    }
    if counter {
        words.push("total".into());
    }
    let name = words.join("_");
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{name}")
    } else {
        name
    }
}

/// A monotonic cumulative sum: a Prometheus counter.
pub fn is_counter(p: &MetricPoint) -> bool {
    p.metric_type == MetricType::Sum
        && p.is_monotonic == Some(true)
        && p.temporality != Some(Temporality::Delta)
}

fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
}

/// The suffix words a UCUM unit adds.
fn unit_words(unit: &str, metric_type: MetricType) -> Vec<String> {
    // Annotations (`{requests}`) carry no unit.
    let mut plain = String::new();
    let mut depth = 0usize;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            c if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let plain = plain.trim();
    if plain == "1" {
        return if metric_type == MetricType::Gauge {
            vec!["ratio".into()]
        } else {
            vec![]
        };
    }
    let (main, per) = match plain.split_once('/') {
        Some((m, p)) => (m.trim(), Some(p.trim())),
        None => (plain, None),
    };
    let mut out: Vec<String> = words(&main_unit(main)).map(str::to_string).collect();
    if let Some(per) = per.filter(|p| !p.is_empty()) {
        out.push("per".into());
        out.extend(words(&per_unit(per)).map(str::to_string));
    }
    out
}

fn main_unit(u: &str) -> String {
    match u {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        other => other,
    }
    .to_string()
}

fn per_unit(u: &str) -> String {
    match u {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
    .to_string()
}

/// An attribute name as a label name.
pub fn label_name(key: &str) -> String {
    let s: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("key_{s}")
    } else if s.starts_with('_') && !s.starts_with("__") {
        format!("key{s}")
    } else {
        s
    }
}

/// The labels of an OTLP point (without `__name__` and the per-series
/// labels `le` and `quantile`), sorted by name.
pub fn labels(p: &MetricPoint) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(p.attributes.len() + 2);
    // Attributes are stored sorted by their original names, so colliding
    // values are joined in that order.
    let mut instance = None;
    for (k, v) in &p.attributes {
        if k == INSTANCE_ATTRIBUTE {
            instance = Some(v.clone());
            continue;
        }
        let name = label_name(k);
        if name == "job" || name == "instance" || v.is_empty() {
            continue;
        }
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, joined)) => {
                joined.push(';');
                joined.push_str(v);
            }
            None => out.push((name, v.clone())),
        }
    }
    if !p.service.is_empty() {
        out.push(("job".into(), p.service.clone()));
    }
    if let Some(i) = instance.filter(|i| !i.is_empty()) {
        out.push(("instance".into(), i));
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn otlp_point(name: &str, unit: &str, t: MetricType) -> MetricPoint {
        MetricPoint {
            timestamp_unix_nanos: 1,
            start_unix_nanos: 0,
            service: "checkout".into(),
            name: name.into(),
            metric_type: t,
            value: 1.0,
            unit: unit.into(),
            attributes: vec![],
            temporality: None,
            is_monotonic: None,
            histogram: None,
            quantiles: vec![],
        }
    }

    fn counter(name: &str, unit: &str) -> MetricPoint {
        let mut p = otlp_point(name, unit, MetricType::Sum);
        p.is_monotonic = Some(true);
        p.temporality = Some(Temporality::Cumulative);
        p
    }

    #[test]
    fn names_get_words_unit_suffixes_and_total() {
        let g = |n: &str, u: &str| metric_name(&otlp_point(n, u, MetricType::Gauge));
        let h = |n: &str, u: &str| metric_name(&otlp_point(n, u, MetricType::Histogram));
        assert_eq!(
            h("http.server.request.duration", "s"),
            "http_server_request_duration_seconds"
        );
        assert_eq!(
            g("process.memory.usage", "By"),
            "process_memory_usage_bytes"
        );
        assert_eq!(g("cpu.utilization", "1"), "cpu_utilization_ratio");
        assert_eq!(g("latency_seconds", "s"), "latency_seconds");
        assert_eq!(g("net.io", "By/s"), "net_io_bytes_per_second");
        assert_eq!(g("queue.size", "{items}"), "queue_size");
        assert_eq!(g("2xx.rate", ""), "_2xx_rate");
        assert_eq!(g("a..b--c", ""), "a_b_c");
        assert_eq!(
            metric_name(&counter("http.requests", "{request}")),
            "http_requests_total"
        );
        assert_eq!(
            metric_name(&counter("total.bytes.sent", "By")),
            "bytes_sent_total"
        );
        assert_eq!(metric_name(&counter("io", "By")), "io_bytes_total");
        let mut not_monotonic = counter("pool.size", "");
        not_monotonic.is_monotonic = Some(false);
        assert_eq!(metric_name(&not_monotonic), "pool_size");
        let mut delta = counter("hits", "");
        delta.temporality = Some(Temporality::Delta);
        assert_eq!(metric_name(&delta), "hits");
    }

    #[test]
    fn labels_are_sanitized_joined_on_collision_and_get_job_and_instance() {
        let mut p = otlp_point("x", "", MetricType::Gauge);
        p.attributes = vec![
            ("1st".into(), "a".into()),
            ("_private".into(), "b".into()),
            ("http.method".into(), "GET".into()),
            ("http_method".into(), "POST".into()),
            ("job".into(), "ignored".into()),
            ("service.instance.id".into(), "pod-1".into()),
        ];
        assert_eq!(
            labels(&p),
            vec![
                ("http_method".into(), "GET;POST".into()),
                ("instance".into(), "pod-1".into()),
                ("job".into(), "checkout".into()),
                ("key_1st".into(), "a".into()),
                ("key_private".into(), "b".into()),
            ]
        );
    }
}
