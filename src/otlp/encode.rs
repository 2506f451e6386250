//! Stored records back to OTLP: the inverse of [`super::convert`].
//!
//! Records that share a resource and a scope are grouped under one
//! `ResourceSpans`/`ScopeSpans` (`ResourceLogs`/`ScopeLogs`), in order of
//! first appearance. What ingest and apply moved out of a record is put
//! back: LLM prompt and completion attributes (see [`crate::llm`]) and large
//! log bodies, read through `blob` (the blob store, by sha256).
//!
//! What does not come back exactly as sent, by design:
//! - attribute lists come back sorted by key, and a key sent twice comes
//!   back once, with its last value;
//! - an absent resource, scope or span status comes back present and empty;
//! - all-zero trace and span ids on a log come back absent;
//! - profiling-only string-table keys (`key_strindex`) are dropped.

use opentelemetry_proto::tonic::common::v1 as pc;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1 as pl;
use opentelemetry_proto::tonic::resource::v1 as pr;
use opentelemetry_proto::tonic::trace::v1 as pt;

use crate::llm::{LlmInfo, MovedValue, Sha256Digest, Text};
use crate::model::{
    AnyValue, KeyValue, LogRecord, Resource, Scope, SpanEvent, SpanLink, SpanRecord,
};

/// The spans as OTLP, grouped by resource and scope.
pub fn traces_data(
    spans: &[SpanRecord],
    blob: impl Fn(&Sha256Digest) -> Option<Vec<u8>>,
) -> pt::TracesData {
    let mut groups: Groups<pt::Span> = Groups::default();
    for s in spans {
        groups.push(&s.resource, &s.scope, span(s, &blob));
    }
    pt::TracesData {
        resource_spans: groups
            .0
            .into_iter()
            .map(|(resource, scopes)| pt::ResourceSpans {
                resource: Some(resource_otlp(&resource)),
                schema_url: resource.schema_url,
                scope_spans: scopes
                    .into_iter()
                    .map(|(scope, spans)| pt::ScopeSpans {
                        scope: Some(scope_otlp(&scope)),
                        schema_url: scope.schema_url,
                        spans,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The log records as OTLP, grouped by resource and scope.
pub fn logs_data(
    logs: &[LogRecord],
    blob: impl Fn(&Sha256Digest) -> Option<Vec<u8>>,
) -> pl::LogsData {
    let mut groups: Groups<pl::LogRecord> = Groups::default();
    for l in logs {
        groups.push(&l.resource, &l.scope, log_record(l, &blob));
    }
    pl::LogsData {
        resource_logs: groups
            .0
            .into_iter()
            .map(|(resource, scopes)| pl::ResourceLogs {
                resource: Some(resource_otlp(&resource)),
                schema_url: resource.schema_url,
                scope_logs: scopes
                    .into_iter()
                    .map(|(scope, log_records)| pl::ScopeLogs {
                        scope: Some(scope_otlp(&scope)),
                        schema_url: scope.schema_url,
                        log_records,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Items grouped by resource, then scope, in order of first appearance.
/// Groups are found by equality, scanning from the newest: records of one
/// resource and scope mostly come together, and there are few groups.
type ScopeGroup<T> = (Scope, Vec<T>);

struct Groups<T>(Vec<(Resource, Vec<ScopeGroup<T>>)>);

impl<T> Default for Groups<T> {
    fn default() -> Self {
        Groups(Vec::new())
    }
}

impl<T> Groups<T> {
    fn push(&mut self, resource: &Resource, scope: &Scope, item: T) {
        let r = match self.0.iter().rposition(|(r, _)| r == resource) {
            Some(i) => i,
            None => {
                self.0.push((resource.clone(), Vec::new()));
                self.0.len() - 1
            }
        };
        let scopes = &mut self.0[r].1;
        match scopes.iter_mut().rev().find(|(s, _)| s == scope) {
            Some((_, items)) => items.push(item),
            None => scopes.push((scope.clone(), vec![item])),
        }
    }
}

fn resource_otlp(r: &Resource) -> pr::Resource {
    pr::Resource {
        attributes: key_values(&r.attributes),
        dropped_attributes_count: r.dropped_attributes_count,
        entity_refs: r
            .entity_refs
            .iter()
            .map(|e| pc::EntityRef {
                schema_url: e.schema_url.clone(),
                r#type: e.entity_type.clone(),
                id_keys: e.id_keys.clone(),
                description_keys: e.description_keys.clone(),
            })
            .collect(),
    }
}

fn scope_otlp(s: &Scope) -> pc::InstrumentationScope {
    pc::InstrumentationScope {
        name: s.name.clone(),
        version: s.version.clone(),
        attributes: key_values(&s.attributes),
        dropped_attributes_count: s.dropped_attributes_count,
    }
}

fn span(s: &SpanRecord, blob: &impl Fn(&Sha256Digest) -> Option<Vec<u8>>) -> pt::Span {
    let mut attributes = s.attributes.clone();
    let mut events = s.events.clone();
    if let Some(llm) = &s.llm {
        put_back_llm_attributes(s, llm, &mut attributes, &mut events, blob);
    }
    pt::Span {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        trace_state: s.trace_state.clone(),
        parent_span_id: s.parent_span_id.map_or_else(Vec::new, |p| p.to_vec()),
        flags: s.flags,
        name: s.name().to_string(),
        kind: s.kind.to_otlp(),
        start_time_unix_nano: s.start_unix_nanos,
        end_time_unix_nano: s.raw_end_unix_nanos.unwrap_or(s.end_unix_nanos),
        attributes: key_values(&attributes),
        dropped_attributes_count: s.dropped_attributes_count,
        events: events.iter().map(event).collect(),
        dropped_events_count: s.dropped_events_count,
        links: s.links.iter().map(link).collect(),
        dropped_links_count: s.dropped_links_count,
        status: Some(pt::Status {
            message: s.status_message.clone(),
            code: s.status.to_otlp(),
        }),
    }
}

fn event(e: &SpanEvent) -> pt::span::Event {
    pt::span::Event {
        time_unix_nano: e.time_unix_nanos,
        name: e.name.clone(),
        attributes: key_values(&e.attributes),
        dropped_attributes_count: e.dropped_attributes_count,
    }
}

fn link(l: &SpanLink) -> pt::span::Link {
    pt::span::Link {
        trace_id: l.trace_id.clone(),
        span_id: l.span_id.clone(),
        trace_state: l.trace_state.clone(),
        attributes: key_values(&l.attributes),
        dropped_attributes_count: l.dropped_attributes_count,
        flags: l.flags,
    }
}

/// Puts the attributes LLM promotion took out back where they were
/// (attribute lists are sorted, so "where" is their key's place).
fn put_back_llm_attributes(
    s: &SpanRecord,
    llm: &LlmInfo,
    attributes: &mut Vec<KeyValue>,
    events: &mut [SpanEvent],
    blob: &impl Fn(&Sha256Digest) -> Option<Vec<u8>>,
) {
    let mut texts = LlmTexts {
        llm,
        blob,
        prompt: None,
        completion: None,
    };
    for moved in &llm.moved {
        let value = match &moved.value {
            MovedValue::Kept(v) => v.clone(),
            MovedValue::Slice { text, start, end } => {
                let slice = texts
                    .get(*text)
                    .and_then(|t| t.get(*start as usize..*end as usize));
                match slice {
                    Some(t) => Some(AnyValue::String(t.to_string())),
                    None => {
                        tracing::warn!(
                            trace_id = %crate::model::hex_lower(&s.trace_id),
                            span_id = %crate::model::hex_lower(&s.span_id),
                            key = %moved.key,
                            "the LLM text of a stored span is missing; the attribute is left out"
                        );
                        continue;
                    }
                }
            }
        };
        let list = match moved.event {
            None => &mut *attributes,
            Some(i) => match events.get_mut(i as usize) {
                Some(e) => &mut e.attributes,
                None => continue,
            },
        };
        let at = list.partition_point(|kv| kv.key < moved.key);
        list.insert(
            at,
            KeyValue {
                key: moved.key.clone(),
                value,
            },
        );
    }
}

/// The prompt and completion text of one span, each read at most once.
struct LlmTexts<'a, B> {
    llm: &'a LlmInfo,
    blob: &'a B,
    prompt: Option<Option<String>>,
    completion: Option<Option<String>>,
}

impl<B: Fn(&Sha256Digest) -> Option<Vec<u8>>> LlmTexts<'_, B> {
    fn get(&mut self, which: Text) -> Option<&str> {
        let (llm, blob) = (self.llm, self.blob);
        let slot = match which {
            Text::Prompt => &mut self.prompt,
            Text::Completion => &mut self.completion,
        };
        slot.get_or_insert_with(|| match llm.text_in_span(which) {
            // Before apply the text is still in the span.
            Some(t) => Some(t.to_string()),
            None => llm
                .sha256_of(which)
                .and_then(|sha| blob(&sha))
                .and_then(|bytes| String::from_utf8(bytes).ok()),
        })
        .as_deref()
    }
}

fn log_record(l: &LogRecord, blob: &impl Fn(&Sha256Digest) -> Option<Vec<u8>>) -> pl::LogRecord {
    let body = match (&l.body_value, l.body_sha256) {
        (Some(v), _) => Some(v.clone()),
        (None, Some(sha)) => match blob(&sha).and_then(|b| String::from_utf8(b).ok()) {
            Some(text) => Some(AnyValue::String(text)),
            None => {
                tracing::warn!(
                    sha256 = %crate::model::hex_lower(&sha),
                    "the body of a stored log record is missing from the blob store; \
                     giving back its beginning"
                );
                l.body.clone()
            }
        },
        (None, None) => l.body.clone(),
    };
    pl::LogRecord {
        time_unix_nano: l.time_unix_nanos,
        observed_time_unix_nano: l.observed_unix_nanos,
        severity_number: l.severity_number,
        severity_text: l
            .raw_severity_text
            .clone()
            .unwrap_or_else(|| l.severity_text.clone()),
        body: body.as_ref().map(any_value),
        attributes: key_values(&l.attributes),
        dropped_attributes_count: l.dropped_attributes_count,
        flags: l.flags,
        trace_id: l.trace_id.map_or_else(Vec::new, |t| t.to_vec()),
        span_id: l.span_id.map_or_else(Vec::new, |s| s.to_vec()),
        event_name: l.event_name.clone(),
    }
}

fn key_values(kvs: &[KeyValue]) -> Vec<pc::KeyValue> {
    kvs.iter().map(key_value).collect()
}

fn key_value(kv: &KeyValue) -> pc::KeyValue {
    pc::KeyValue {
        key: kv.key.clone(),
        value: kv.value.as_ref().map(any_value),
        key_strindex: 0,
    }
}

/// A stored value as OTLP.
pub fn any_value(v: &AnyValue) -> pc::AnyValue {
    let value = match v {
        AnyValue::Empty => None,
        AnyValue::String(s) => Some(Value::StringValue(s.clone())),
        AnyValue::Bool(b) => Some(Value::BoolValue(*b)),
        AnyValue::Int(i) => Some(Value::IntValue(*i)),
        AnyValue::Double(d) => Some(Value::DoubleValue(*d)),
        AnyValue::Bytes(b) => Some(Value::BytesValue(b.clone())),
        AnyValue::StrIndex(i) => Some(Value::StringValueStrindex(*i)),
        AnyValue::Array(items) => Some(Value::ArrayValue(pc::ArrayValue {
            values: items.iter().map(any_value).collect(),
        })),
        AnyValue::KvList(kvs) => Some(Value::KvlistValue(pc::KeyValueList {
            values: key_values(kvs),
        })),
    };
    pc::AnyValue { value }
}
