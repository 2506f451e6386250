//! Metric data points as the state machine stores them (unchanged by the
//! lossless span and log formats: metrics are not given back as OTLP).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetricType {
    Gauge,
    Sum,
    Histogram,
    Summary,
    Unknown,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Gauge => "gauge",
            MetricType::Sum => "sum",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<MetricType> {
        [
            MetricType::Gauge,
            MetricType::Sum,
            MetricType::Histogram,
            MetricType::Summary,
            MetricType::Unknown,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Temporality {
    Unspecified,
    Delta,
    Cumulative,
}

impl Temporality {
    pub fn from_otlp(n: i32) -> Temporality {
        match n {
            1 => Temporality::Delta,
            2 => Temporality::Cumulative,
            _ => Temporality::Unspecified,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Temporality::Unspecified => "unspecified",
            Temporality::Delta => "delta",
            Temporality::Cumulative => "cumulative",
        }
    }
}

/// Explicit-bucket distribution of a histogram point (exponential
/// histograms are converted to this form at ingest).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistogramData {
    /// Upper bounds, strictly ascending; `counts` has one more entry.
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// One metric data point as the state machine stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    pub timestamp_unix_nanos: u64,
    pub start_unix_nanos: u64,
    pub service: String,
    pub name: String,
    pub metric_type: MetricType,
    /// Gauge/sum: the value; histogram and summary: the sum of observations.
    pub value: f64,
    pub unit: String,
    pub attributes: Vec<(String, String)>,
    pub temporality: Option<Temporality>,
    pub is_monotonic: Option<bool>,
    pub histogram: Option<HistogramData>,
    /// Summary points: (quantile, value) pairs.
    pub quantiles: Vec<(f64, f64)>,
}
