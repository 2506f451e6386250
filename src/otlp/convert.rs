//! OTLP messages to stored records, with validation.
//!
//! A record that cannot be stored (bad id, oversized value) is counted and
//! described for the OTLP partial-success response; the rest are stored.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};

use crate::model::{SpanEvent, SpanId, SpanKind, SpanRecord, SpanStatus, TraceId};

/// Largest attribute value (after flattening to text) a record may carry.
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1024 * 1024;
/// Largest attribute key.
pub const MAX_ATTRIBUTE_KEY_BYTES: usize = 1024;
/// Most attributes on one span or event.
pub const MAX_ATTRIBUTES: usize = 1024;
/// Most events on one span.
pub const MAX_EVENTS: usize = 1024;
/// Nesting depth of arrays/maps flattened into JSON text.
const MAX_VALUE_DEPTH: usize = 16;

#[derive(Debug)]
pub struct Converted<T> {
    pub records: Vec<T>,
    pub rejected: u64,
    /// The first reason a record was rejected, for the partial-success message.
    pub first_error: Option<String>,
}

impl<T> Default for Converted<T> {
    fn default() -> Self {
        Converted {
            records: Vec::new(),
            rejected: 0,
            first_error: None,
        }
    }
}

impl<T> Converted<T> {
    fn reject(&mut self, why: String) {
        self.rejected += 1;
        if self.first_error.is_none() {
            self.first_error = Some(why);
        }
    }
}

pub fn traces(req: ExportTraceServiceRequest) -> Converted<SpanRecord> {
    let mut out = Converted::default();
    for rs in req.resource_spans {
        let resource_attrs = rs.resource.map(|r| r.attributes).unwrap_or_default();
        let service = service_name(&resource_attrs);
        for ss in rs.scope_spans {
            for span in ss.spans {
                match span_record(&service, span) {
                    Ok(rec) => out.records.push(rec),
                    Err(why) => out.reject(why),
                }
            }
        }
    }
    out
}

pub fn service_name(resource_attrs: &[KeyValue]) -> String {
    resource_attrs
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) if !s.is_empty() => Some(clean_name(s)),
                _ => None,
            },
        )
        .unwrap_or_else(|| "unknown".to_string())
}

/// Service and operation names are index keys: bound them and drop control characters.
fn clean_name(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(256).collect()
}

fn span_record(
    service: &str,
    span: opentelemetry_proto::tonic::trace::v1::Span,
) -> Result<SpanRecord, String> {
    let trace_id: TraceId = id(&span.trace_id, "trace_id")?;
    let span_id: SpanId = id(&span.span_id, "span_id")?;
    let parent_span_id = if span.parent_span_id.is_empty() {
        None
    } else {
        Some(id(&span.parent_span_id, "parent_span_id")?)
    };
    if span.events.len() > MAX_EVENTS {
        return Err(format!(
            "span has {} events, the limit is {MAX_EVENTS}",
            span.events.len()
        ));
    }
    let status = match span.status.as_ref().map(|s| s.code) {
        Some(1) => SpanStatus::Ok,
        Some(2) => SpanStatus::Error,
        _ => SpanStatus::Unset,
    };
    let kind = match span.kind {
        2 => SpanKind::Server,
        3 => SpanKind::Client,
        4 => SpanKind::Producer,
        5 => SpanKind::Consumer,
        _ => SpanKind::Internal,
    };
    let mut events = Vec::with_capacity(span.events.len());
    for e in span.events {
        events.push(SpanEvent {
            name: e.name,
            time_unix_nanos: e.time_unix_nano,
            attributes: attributes(e.attributes)?,
        });
    }
    let mut record = SpanRecord {
        trace_id,
        span_id,
        parent_span_id,
        service: service.to_string(),
        operation: clean_name(&span.name),
        start_unix_nanos: span.start_time_unix_nano,
        end_unix_nanos: span.end_time_unix_nano.max(span.start_time_unix_nano),
        status,
        status_message: span.status.map(|s| s.message).unwrap_or_default(),
        kind,
        attributes: attributes(span.attributes)?,
        events,
        llm: None,
    };
    crate::llm::promote(&mut record);
    Ok(record)
}

fn id<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N], String> {
    let arr: [u8; N] = bytes
        .try_into()
        .map_err(|_| format!("{what} must be {N} bytes, got {}", bytes.len()))?;
    if arr.iter().all(|b| *b == 0) {
        return Err(format!("{what} must not be all zeros"));
    }
    Ok(arr)
}

/// Flattens OTLP attributes into sorted, unique string pairs (last value wins).
pub fn attributes(kvs: Vec<KeyValue>) -> Result<Vec<(String, String)>, String> {
    if kvs.len() > MAX_ATTRIBUTES {
        return Err(format!(
            "{} attributes, the limit is {MAX_ATTRIBUTES}",
            kvs.len()
        ));
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(kvs.len());
    for kv in kvs {
        if kv.key.len() > MAX_ATTRIBUTE_KEY_BYTES {
            return Err(format!(
                "attribute key of {} bytes exceeds {MAX_ATTRIBUTE_KEY_BYTES}",
                kv.key.len()
            ));
        }
        let value = kv.value.map(|v| flatten(&v, 0)).unwrap_or_default();
        if value.len() > MAX_ATTRIBUTE_VALUE_BYTES {
            return Err(format!(
                "attribute {:?} value of {} bytes exceeds {MAX_ATTRIBUTE_VALUE_BYTES}",
                kv.key,
                value.len()
            ));
        }
        out.push((kv.key, value));
    }
    // Stable sort keeps input order among equal keys; keep the last of each.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let mut dedup: Vec<(String, String)> = Vec::with_capacity(out.len());
    for (k, v) in out {
        match dedup.last_mut() {
            Some(last) if last.0 == k => last.1 = v,
            _ => dedup.push((k, v)),
        }
    }
    Ok(dedup)
}

fn flatten(v: &AnyValue, depth: usize) -> String {
    match &v.value {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => tael_consensus::hex(b),
        Some(Value::StringValueStrindex(i)) => i.to_string(),
        Some(_) => to_json(v, depth).to_string(),
    }
}

fn to_json(v: &AnyValue, depth: usize) -> serde_json::Value {
    use serde_json::Value as J;
    if depth >= MAX_VALUE_DEPTH {
        return J::String("<nested too deep>".into());
    }
    match &v.value {
        Some(Value::ArrayValue(a)) => {
            J::Array(a.values.iter().map(|x| to_json(x, depth + 1)).collect())
        }
        Some(Value::KvlistValue(kv)) => J::Object(
            kv.values
                .iter()
                .map(|p| {
                    (
                        p.key.clone(),
                        p.value.as_ref().map_or(J::Null, |x| to_json(x, depth + 1)),
                    )
                })
                .collect(),
        ),
        Some(Value::BoolValue(b)) => J::Bool(*b),
        Some(Value::IntValue(i)) => J::from(*i),
        Some(Value::DoubleValue(d)) => serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
        _ => J::String(flatten(v, depth + 1)),
    }
}
