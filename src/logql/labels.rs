//! The labels LogQL sees on a log record, as Loki's OTLP ingestion would
//! give them:
//! - stream labels: `service_name` (the resource's `service.name`), `level`
//!   (from the severity number; `unknown` without one) and every other
//!   resource attribute, its name made a label name (`k8s.pod.name` →
//!   `k8s_pod_name`);
//! - structured metadata: `trace_id`, `span_id` (hex) and the record's own
//!   attributes, names cleaned the same way.

use std::collections::BTreeMap;

use crate::model::{hex_lower, LogRecord, Severity};

pub type Labels = BTreeMap<String, String>;

pub const SERVICE_NAME: &str = "service_name";
pub const LEVEL: &str = "level";
pub const TRACE_ID: &str = "trace_id";
pub const SPAN_ID: &str = "span_id";

/// Longest label value kept: a resource attribute holding a document would
/// otherwise become part of every stream's identity.
const MAX_LABEL_VALUE_BYTES: usize = 1024;

/// `level` as the record's severity gives it.
pub fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Unspecified => "unknown",
        other => other.as_str(),
    }
}

/// The severity a `level` value stands for (`None`: no record has it).
pub fn severity_of_level(level: &str) -> Option<Severity> {
    match level {
        "unknown" => Some(Severity::Unspecified),
        "unspecified" => None,
        other => Severity::parse(other),
    }
}

/// A label name from an attribute name: characters outside `[A-Za-z0-9_]`
/// become `_`, and a leading digit gets a `_` in front.
pub fn label_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 1);
    if key.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    out
}

fn bounded(mut v: String) -> String {
    if v.len() > MAX_LABEL_VALUE_BYTES {
        let mut end = MAX_LABEL_VALUE_BYTES;
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        v.truncate(end);
    }
    v
}

/// The record's stream labels.
pub fn stream_labels(l: &LogRecord) -> Labels {
    let mut out = Labels::new();
    for kv in &l.resource.attributes {
        if kv.key == "service.name" {
            continue;
        }
        out.insert(label_name(&kv.key), bounded(kv.string_form().into_owned()));
    }
    out.insert(SERVICE_NAME.into(), l.service.clone());
    out.insert(LEVEL.into(), level(l.severity).into());
    out
}

/// The record's structured metadata.
pub fn metadata(l: &LogRecord) -> Labels {
    let mut out = Labels::new();
    for kv in &l.attributes {
        out.insert(label_name(&kv.key), bounded(kv.string_form().into_owned()));
    }
    if let Some(t) = &l.trace_id {
        out.insert(TRACE_ID.into(), hex_lower(t));
    }
    if let Some(s) = &l.span_id {
        out.insert(SPAN_ID.into(), hex_lower(s));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{KeyValue, Resource};

    #[test]
    fn resource_attributes_become_stream_labels() {
        let l = LogRecord {
            service: "api".into(),
            severity: Severity::Warn,
            resource: Arc::new(Resource {
                attributes: vec![
                    KeyValue::string("service.name", "api"),
                    KeyValue::string("k8s.pod.name", "web-1"),
                    KeyValue::string("9lives", "x"),
                ],
                ..Default::default()
            }),
            attributes: vec![KeyValue::string("http.method", "GET")],
            trace_id: Some([0xab; 16]),
            ..Default::default()
        };
        let s = stream_labels(&l);
        assert_eq!(s["service_name"], "api");
        assert_eq!(s["level"], "warn");
        assert_eq!(s["k8s_pod_name"], "web-1");
        assert_eq!(s["_9lives"], "x");
        assert_eq!(s.len(), 4);
        let m = metadata(&l);
        assert_eq!(m["trace_id"], "ab".repeat(16));
        assert_eq!(m["http_method"], "GET");
        assert!(!m.contains_key("span_id"));
        assert_eq!(level(Severity::Unspecified), "unknown");
        assert_eq!(severity_of_level("unknown"), Some(Severity::Unspecified));
        assert_eq!(severity_of_level("error"), Some(Severity::Error));
        assert_eq!(severity_of_level("nope"), None);
    }
}
