//! The stored form of telemetry and its JSON form on the REST API.

use serde::{Deserialize, Serialize};

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpanStatus {
    Unset,
    Ok,
    Error,
}

impl SpanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanStatus::Unset => "unset",
            SpanStatus::Ok => "ok",
            SpanStatus::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<SpanStatus> {
        match s {
            "unset" => Some(SpanStatus::Unset),
            "ok" => Some(SpanStatus::Ok),
            "error" => Some(SpanStatus::Error),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpanKind {
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
    Llm,
}

impl SpanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
            SpanKind::Llm => "llm",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpanEvent {
    pub name: String,
    pub time_unix_nanos: u64,
    pub attributes: Vec<(String, String)>,
}

/// One span as the state machine stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpanRecord {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub service: String,
    pub operation: String,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub status: SpanStatus,
    pub status_message: String,
    pub kind: SpanKind,
    /// Flattened attributes, sorted by key, keys unique.
    pub attributes: Vec<(String, String)>,
    pub events: Vec<SpanEvent>,
    /// Set on LLM spans (kind `llm`), see [`crate::llm`].
    pub llm: Option<crate::llm::LlmInfo>,
}

impl SpanRecord {
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nanos.saturating_sub(self.start_unix_nanos)
    }

    pub fn duration_ms(&self) -> f64 {
        self.duration_nanos() as f64 / 1e6
    }

    pub fn attribute(&self, key: &str) -> Option<&str> {
        find_attribute(&self.attributes, key)
    }
}

/// Wall-clock time, in nanoseconds since the Unix epoch (0 before 1970).
pub fn now_unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub fn hex_lower(bytes: &[u8]) -> String {
    tael_consensus::hex(bytes)
}

/// Parses exactly `N` bytes of lowercase or uppercase hex.
pub fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16)?;
        let lo = (chunk[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// RFC 3339 with nanoseconds, UTC.
pub fn rfc3339_nanos(unix_nanos: u64) -> String {
    let secs = (unix_nanos / 1_000_000_000) as i64;
    let nanos = unix_nanos % 1_000_000_000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The REST representation of a span (API.md).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SpanJson {
    pub trace_id: String,
    pub span_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    pub service: String,
    pub operation: String,
    pub start_time: String,
    pub end_time: String,
    pub duration_ms: f64,
    pub status: String,
    pub kind: String,
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub events: Vec<EventJson>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub llm: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct EventJson {
    pub name: String,
    pub timestamp: String,
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

fn attr_map(attrs: &[(String, String)]) -> serde_json::Map<String, serde_json::Value> {
    attrs
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect()
}

impl From<&SpanRecord> for SpanJson {
    fn from(s: &SpanRecord) -> Self {
        SpanJson {
            trace_id: hex_lower(&s.trace_id),
            span_id: hex_lower(&s.span_id),
            parent_span_id: s.parent_span_id.map(|p| hex_lower(&p)),
            service: s.service.clone(),
            operation: s.operation.clone(),
            start_time: rfc3339_nanos(s.start_unix_nanos),
            end_time: rfc3339_nanos(s.end_unix_nanos),
            duration_ms: s.duration_ms(),
            status: s.status.as_str().to_string(),
            kind: s.kind.as_str().to_string(),
            attributes: attr_map(&s.attributes),
            events: s
                .events
                .iter()
                .map(|e| EventJson {
                    name: e.name.clone(),
                    timestamp: rfc3339_nanos(e.time_unix_nanos),
                    attributes: attr_map(&e.attributes),
                })
                .collect(),
            llm: s.llm.as_ref().map(|l| l.to_json()),
        }
    }
}

/// Log severity, from the OTLP severity number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    Unspecified,
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Severity {
    pub const ALL: [Severity; 7] = [
        Severity::Unspecified,
        Severity::Trace,
        Severity::Debug,
        Severity::Info,
        Severity::Warn,
        Severity::Error,
        Severity::Fatal,
    ];

    /// OTLP severity numbers come in ranges of four per level (1-4 trace ... 21-24 fatal).
    pub fn from_number(n: i32) -> Severity {
        match n {
            1..=4 => Severity::Trace,
            5..=8 => Severity::Debug,
            9..=12 => Severity::Info,
            13..=16 => Severity::Warn,
            17..=20 => Severity::Error,
            21..=24 => Severity::Fatal,
            _ => Severity::Unspecified,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unspecified => "unspecified",
            Severity::Trace => "trace",
            Severity::Debug => "debug",
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Error => "error",
            Severity::Fatal => "fatal",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Stable one-byte code used in index keys.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// One log record as the state machine stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Event time, or the observed time when the event time is absent.
    pub timestamp_unix_nanos: u64,
    pub observed_unix_nanos: u64,
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    pub severity: Severity,
    pub severity_text: String,
    pub body: String,
    /// Set when a large body went to the blob store; `body` then holds its
    /// beginning only (see `ApplyBatch::put_log`).
    pub body_sha256: Option<[u8; 32]>,
    pub service: String,
    /// Flattened attributes, sorted by key, keys unique.
    pub attributes: Vec<(String, String)>,
}

impl LogRecord {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        find_attribute(&self.attributes, key)
    }
}

fn find_attribute<'a>(attrs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    attrs
        .binary_search_by(|(k, _)| k.as_str().cmp(key))
        .ok()
        .map(|i| attrs[i].1.as_str())
}

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

fn json_f64(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

fn hex_opt<const N: usize>(id: &Option<[u8; N]>) -> serde_json::Value {
    id.map_or(serde_json::Value::Null, |b| {
        serde_json::Value::String(hex_lower(&b))
    })
}

impl LogRecord {
    /// The REST representation (API.md LogRecord).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "timestamp": rfc3339_nanos(self.timestamp_unix_nanos),
            "observed_timestamp": rfc3339_nanos(self.observed_unix_nanos),
            "trace_id": hex_opt(&self.trace_id),
            "span_id": hex_opt(&self.span_id),
            "severity": self.severity.as_str(),
            "severity_text": self.severity_text,
            "body": self.body,
            "body_sha256": hex_opt(&self.body_sha256),
            "service": self.service,
            "attributes": attr_map(&self.attributes),
        })
    }
}

impl MetricPoint {
    /// The REST representation (API.md MetricPoint).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "timestamp": rfc3339_nanos(self.timestamp_unix_nanos),
            "start_timestamp": rfc3339_nanos(self.start_unix_nanos),
            "service": self.service,
            "name": self.name,
            "metric_type": self.metric_type.as_str(),
            "value": json_f64(self.value),
            "unit": self.unit,
            "attributes": attr_map(&self.attributes),
        });
        let o = v.as_object_mut().expect("object");
        if let Some(t) = self.temporality {
            o.insert("temporality".into(), t.as_str().into());
        }
        if let Some(m) = self.is_monotonic {
            o.insert("is_monotonic".into(), m.into());
        }
        if let Some(h) = &self.histogram {
            let opt = |x: Option<f64>| x.map_or(serde_json::Value::Null, json_f64);
            o.insert(
                "histogram".into(),
                serde_json::json!({
                    "bounds": h.bounds.iter().map(|b| json_f64(*b)).collect::<Vec<_>>(),
                    "counts": h.counts,
                    "count": h.count,
                    "sum": opt(h.sum),
                    "min": opt(h.min),
                    "max": opt(h.max),
                    "temporality": self.temporality.unwrap_or(Temporality::Unspecified).as_str(),
                }),
            );
        }
        if self.metric_type == MetricType::Summary {
            o.insert(
                "quantiles".into(),
                self.quantiles
                    .iter()
                    .map(|(q, v)| serde_json::json!({"quantile": json_f64(*q), "value": json_f64(*v)}))
                    .collect::<Vec<_>>()
                    .into(),
            );
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_nanos(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            rfc3339_nanos(1_767_225_599_500_000_000),
            "2025-12-31T23:59:59.500000000Z"
        );
    }

    #[test]
    fn hex_round_trip_and_rejects() {
        let id: [u8; 8] = parse_hex("00ff10AbCdEf0001").unwrap();
        assert_eq!(hex_lower(&id), "00ff10abcdef0001");
        assert!(parse_hex::<8>("00ff10abcdef000").is_none());
        assert!(parse_hex::<8>("00ff10abcdef000g").is_none());
        assert!(parse_hex::<8>("ééééééé").is_none());
    }
}
