//! The REST representations (API.md): views of the stored records. Their
//! bytes are part of the API, so every field here is derived exactly as
//! before records became lossless (attribute values as their string form).

use serde::{Deserialize, Serialize};

use super::ids::hex_lower;
use super::log::LogRecord;
use super::metric::{MetricPoint, MetricType, Temporality};
use super::span::SpanRecord;
use super::time::rfc3339_nanos;
use super::value::KeyValue;

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

/// Attributes as a JSON object of string forms.
fn attr_map(attrs: &[KeyValue]) -> serde_json::Map<String, serde_json::Value> {
    attrs
        .iter()
        .map(|kv| {
            let v = serde_json::Value::String(kv.string_form().into_owned());
            (kv.key.clone(), v)
        })
        .collect()
}

/// Metric attributes, still stored as text pairs.
pub(crate) fn text_attr_map(
    attrs: &[(String, String)],
) -> serde_json::Map<String, serde_json::Value> {
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
            kind: s.kind_label().to_string(),
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

pub(crate) fn json_f64(v: f64) -> serde_json::Value {
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
            "body": self.body_text(),
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
            "attributes": text_attr_map(&self.attributes),
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
