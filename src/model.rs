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
}

impl SpanRecord {
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nanos.saturating_sub(self.start_unix_nanos)
    }

    pub fn duration_ms(&self) -> f64 {
        self.duration_nanos() as f64 / 1e6
    }

    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.attributes[i].1.as_str())
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
        }
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
