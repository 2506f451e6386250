//! Stored spans in Jaeger's JSON model (what the Jaeger query API returns
//! and Grafana's Jaeger data source reads): microsecond times, typed tags,
//! events as logs, the parent as a `CHILD_OF` reference, links as
//! `FOLLOWS_FROM`, resources as processes.

use serde_json::{json, Value};

use crate::model::{hex_lower, AnyValue, KeyValue, Resource, SpanKind, SpanRecord, SpanStatus};

/// One trace: its spans (ordered by start) and their processes.
pub fn trace_json(spans: &[SpanRecord]) -> Value {
    let mut processes: Vec<(&Resource, &str)> = Vec::new();
    let mut out = Vec::with_capacity(spans.len());
    for s in spans {
        let n = match processes
            .iter()
            .position(|(r, svc)| **r == *s.resource && *svc == s.service)
        {
            Some(n) => n,
            None => {
                processes.push((&*s.resource, s.service.as_str()));
                processes.len() - 1
            }
        };
        out.push(span_json(s, &format!("p{}", n + 1)));
    }
    let processes: serde_json::Map<String, Value> = processes
        .iter()
        .enumerate()
        .map(|(n, (resource, service))| {
            let tags: Vec<Value> = resource
                .attributes
                .iter()
                .filter(|kv| kv.key != "service.name")
                .map(tag)
                .collect();
            (
                format!("p{}", n + 1),
                json!({ "serviceName": service, "tags": tags }),
            )
        })
        .collect();
    json!({
        "traceID": spans.first().map(|s| hex_lower(&s.trace_id)).unwrap_or_default(),
        "spans": out,
        "processes": processes,
        "warnings": null,
    })
}

fn micros(unix_nanos: u64) -> u64 {
    unix_nanos / 1_000
}

fn span_json(s: &SpanRecord, process_id: &str) -> Value {
    let trace_id = hex_lower(&s.trace_id);
    let mut references: Vec<Value> = s
        .parent_span_id
        .iter()
        .map(|p| json!({ "refType": "CHILD_OF", "traceID": trace_id, "spanID": hex_lower(p) }))
        .collect();
    references.extend(s.links.iter().map(|l| {
        json!({
            "refType": "FOLLOWS_FROM",
            "traceID": hex_lower(&l.trace_id),
            "spanID": hex_lower(&l.span_id),
        })
    }));
    let logs: Vec<Value> = s
        .events
        .iter()
        .map(|e| {
            let mut fields = vec![typed("event", "string", json!(e.name))];
            fields.extend(e.attributes.iter().map(tag));
            json!({ "timestamp": micros(e.time_unix_nanos), "fields": fields })
        })
        .collect();
    json!({
        "traceID": trace_id,
        "spanID": hex_lower(&s.span_id),
        "operationName": s.name(),
        "references": references,
        "startTime": micros(s.start_unix_nanos),
        "duration": micros(s.duration_nanos()),
        "tags": span_tags(s),
        "logs": logs,
        "processID": process_id,
        "warnings": null,
        "flags": s.flags,
    })
}

/// The span's attributes, then what Jaeger's OTLP translation adds: kind,
/// status, the error flag and the instrumentation scope.
fn span_tags(s: &SpanRecord) -> Vec<Value> {
    let mut tags: Vec<Value> = s.attributes.iter().map(tag).collect();
    if s.kind != SpanKind::Unspecified {
        tags.push(typed("span.kind", "string", json!(s.kind.as_str())));
    }
    match s.status {
        SpanStatus::Unset => {}
        SpanStatus::Ok => tags.push(typed("otel.status_code", "string", json!("OK"))),
        SpanStatus::Error => {
            tags.push(typed("otel.status_code", "string", json!("ERROR")));
            tags.push(typed("error", "bool", json!(true)));
        }
    }
    if !s.status_message.is_empty() {
        tags.push(typed(
            "otel.status_description",
            "string",
            json!(s.status_message),
        ));
    }
    if !s.scope.name.is_empty() {
        tags.push(typed("otel.scope.name", "string", json!(s.scope.name)));
    }
    if !s.scope.version.is_empty() {
        tags.push(typed(
            "otel.scope.version",
            "string",
            json!(s.scope.version),
        ));
    }
    tags
}

fn typed(key: &str, ty: &str, value: Value) -> Value {
    json!({ "key": key, "type": ty, "value": value })
}

/// An attribute as a typed Jaeger tag; bytes, arrays and maps as their
/// string form.
fn tag(kv: &KeyValue) -> Value {
    match &kv.value {
        Some(AnyValue::Bool(b)) => typed(&kv.key, "bool", json!(b)),
        Some(AnyValue::Int(i)) => typed(&kv.key, "int64", json!(i)),
        Some(AnyValue::Double(d)) if d.is_finite() => typed(&kv.key, "float64", json!(d)),
        _ => typed(&kv.key, "string", json!(kv.string_form())),
    }
}

/// Whether a span carries tag `key` with string form `value`, as Jaeger's
/// tag filter matches: span attributes, process (resource) attributes, and
/// the tags [`span_tags`] adds.
pub fn has_tag(s: &SpanRecord, key: &str, value: &str) -> bool {
    let attr = |attrs: &[KeyValue]| {
        crate::model::value::find(attrs, key).is_some_and(|kv| kv.string_form() == value)
    };
    if attr(&s.attributes) || attr(&s.resource.attributes) {
        return true;
    }
    match key {
        "error" => (s.status == SpanStatus::Error) == (value == "true"),
        "span.kind" => s.kind != SpanKind::Unspecified && s.kind.as_str() == value,
        "otel.status_code" => match s.status {
            SpanStatus::Ok => value == "OK",
            SpanStatus::Error => value == "ERROR",
            SpanStatus::Unset => false,
        },
        "otel.status_description" => !s.status_message.is_empty() && s.status_message == value,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SpanEvent, SpanLink};

    fn span() -> SpanRecord {
        SpanRecord {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: Some([3; 8]),
            service: "checkout".into(),
            operation: "charge".into(),
            start_unix_nanos: 1_700_000_000_123_456_789,
            end_unix_nanos: 1_700_000_000_125_456_789,
            status: SpanStatus::Error,
            kind: SpanKind::Client,
            attributes: vec![
                KeyValue::new("http.response.status_code", AnyValue::Int(500)),
                KeyValue::new("retry", AnyValue::Bool(false)),
            ],
            events: vec![SpanEvent {
                name: "exception".into(),
                time_unix_nanos: 1_700_000_000_124_000_000,
                attributes: vec![KeyValue::string("exception.type", "Timeout")],
                dropped_attributes_count: 0,
            }],
            links: vec![SpanLink {
                trace_id: vec![9; 16],
                span_id: vec![8; 8],
                ..Default::default()
            }],
            resource: std::sync::Arc::new(Resource {
                attributes: vec![
                    KeyValue::string("host.name", "h1"),
                    KeyValue::string("service.name", "checkout"),
                ],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_span_in_jaegers_model() {
        let t = trace_json(&[span()]);
        let s = &t["spans"][0];
        assert_eq!(s["startTime"], 1_700_000_000_123_456u64);
        assert_eq!(s["duration"], 2_000);
        assert_eq!(s["operationName"], "charge");
        assert_eq!(s["references"][0]["refType"], "CHILD_OF");
        assert_eq!(s["references"][0]["spanID"], "0303030303030303");
        assert_eq!(s["references"][1]["refType"], "FOLLOWS_FROM");
        assert_eq!(
            s["tags"][0],
            json!({"key": "http.response.status_code", "type": "int64", "value": 500})
        );
        assert!(s["tags"]
            .as_array()
            .unwrap()
            .contains(&json!({"key": "error", "type": "bool", "value": true})));
        assert_eq!(s["logs"][0]["timestamp"], 1_700_000_000_124_000u64);
        assert_eq!(s["logs"][0]["fields"][0]["value"], "exception");
        assert_eq!(s["processID"], "p1");
        assert_eq!(t["processes"]["p1"]["serviceName"], "checkout");
        assert_eq!(
            t["processes"]["p1"]["tags"],
            json!([{"key": "host.name", "type": "string", "value": "h1"}])
        );
    }

    #[test]
    fn tag_filters_match_the_string_form() {
        let s = span();
        assert!(has_tag(&s, "http.response.status_code", "500"));
        assert!(!has_tag(&s, "http.response.status_code", "200"));
        assert!(has_tag(&s, "retry", "false"));
        assert!(has_tag(&s, "host.name", "h1"));
        assert!(has_tag(&s, "error", "true"));
        assert!(!has_tag(&s, "error", "false"));
        assert!(has_tag(&s, "span.kind", "client"));
        assert!(!has_tag(&s, "missing", ""));
    }
}
