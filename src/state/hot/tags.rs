//! The tag index (`tags` keyspace): which attribute names, which of their
//! values and which operations of each service were ever stored, so tag
//! discovery (Grafana's TraceQL editor, Jaeger's operation list) reads a
//! few index keys instead of scanning spans.
//!
//! Three kinds of keys, all with an empty value (see [`super::keys`] for
//! the layout):
//! - a tag name of the span or resource scope;
//! - a (scope, name, type, value) seen on some span: span and resource
//!   attributes of scalar type, and the intrinsics `name`, `status`,
//!   `kind`, `statusMessage`, `rootServiceName`, `rootName`;
//! - a (service, operation) pair.
//!
//! Entries are only ever added: a replaced span leaves its old entries, so
//! the index tells what was seen, not what is stored now (without deletion
//! the two differ only by values a re-sent span dropped). Names longer than
//! [`MAX_INDEXED_NAME_BYTES`] and values longer than
//! [`MAX_INDEXED_VALUE_BYTES`] are not indexed: a truncated value would be
//! offered to the editor, and a query for it would find nothing. Every
//! distinct short value costs one key, so a high-cardinality attribute grows
//! the index with the data.
//!
//! Apply stages each key once per batch (spans of a batch share most of
//! their tags), and the keys depend on the span only, so every replica
//! writes the same bytes.

use std::collections::HashSet;

use super::keys::{
    operation_key_into, operations_prefix, tag_name_key_into, tag_names_prefix, tag_value_key_into,
    tag_values_prefix,
};
use super::{ApplyBatch, HotStore, StoreError, StoreResult};
use crate::model::{AnyValue, KeyValue, SpanKind, SpanRecord};

/// Tag names longer than this are not indexed.
pub const MAX_INDEXED_NAME_BYTES: usize = 256;
/// Values (in their string form) longer than this are not indexed.
pub const MAX_INDEXED_VALUE_BYTES: usize = 256;

/// The scope of an indexed tag, as a key byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagScope {
    Resource,
    Span,
    Intrinsic,
}

impl TagScope {
    pub(super) fn byte(self) -> u8 {
        match self {
            TagScope::Resource => b'r',
            TagScope::Span => b's',
            TagScope::Intrinsic => b'i',
        }
    }
}

/// A value's type in the index, as Tempo names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TagType {
    String,
    Int,
    Float,
    Bool,
    /// A fixed word of an intrinsic (`status`, `kind`).
    Keyword,
}

impl TagType {
    pub(super) fn byte(self) -> u8 {
        match self {
            TagType::String => b's',
            TagType::Int => b'i',
            TagType::Float => b'f',
            TagType::Bool => b'b',
            TagType::Keyword => b'k',
        }
    }

    fn from_byte(b: u8) -> Option<TagType> {
        Some(match b {
            b's' => TagType::String,
            b'i' => TagType::Int,
            b'f' => TagType::Float,
            b'b' => TagType::Bool,
            b'k' => TagType::Keyword,
            _ => return None,
        })
    }

    /// Tempo's name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            TagType::String => "string",
            TagType::Int => "int",
            TagType::Float => "float",
            TagType::Bool => "bool",
            TagType::Keyword => "keyword",
        }
    }

    /// The type of an attribute value the index holds; `None` for bytes,
    /// arrays and maps, which tag values do not offer.
    fn of(v: &AnyValue) -> Option<TagType> {
        Some(match v {
            AnyValue::String(_) => TagType::String,
            AnyValue::Int(_) => TagType::Int,
            AnyValue::Double(_) => TagType::Float,
            AnyValue::Bool(_) => TagType::Bool,
            _ => return None,
        })
    }
}

/// Intrinsic tag names as the index keys them (TraceQL's spellings).
pub mod intrinsic {
    pub const NAME: &str = "name";
    pub const STATUS: &str = "status";
    pub const KIND: &str = "kind";
    pub const STATUS_MESSAGE: &str = "statusMessage";
    pub const ROOT_SERVICE: &str = "rootServiceName";
    pub const ROOT_NAME: &str = "rootName";
}

/// TraceQL's word for a span kind (unspecified stays unspecified, unlike
/// the REST API's name).
pub fn kind_keyword(kind: SpanKind) -> &'static str {
    match kind {
        SpanKind::Unspecified => "unspecified",
        SpanKind::Internal => "internal",
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
    }
}

/// Calls `f` with every index key of one span, in a fixed order, built in
/// one buffer; without the resource's keys when `skip_resource`.
fn visit_span_tag_keys(s: &SpanRecord, skip_resource: bool, mut f: impl FnMut(&[u8])) {
    use intrinsic::*;
    let mut k = Vec::with_capacity(64);
    if !skip_resource {
        attribute_keys(TagScope::Resource, &s.resource.attributes, &mut k, &mut f);
    }
    attribute_keys(TagScope::Span, &s.attributes, &mut k, &mut f);
    let mut intrinsic = |name: &str, ty: TagType, value: &str| {
        if value.len() <= MAX_INDEXED_VALUE_BYTES {
            tag_value_key_into(&mut k, TagScope::Intrinsic.byte(), name, ty.byte(), value);
            f(&k);
        }
    };
    intrinsic(NAME, TagType::String, s.name());
    intrinsic(STATUS, TagType::Keyword, s.status.as_str());
    intrinsic(KIND, TagType::Keyword, kind_keyword(s.kind));
    if !s.status_message.is_empty() {
        intrinsic(STATUS_MESSAGE, TagType::String, &s.status_message);
    }
    if s.parent_span_id.is_none() {
        intrinsic(ROOT_SERVICE, TagType::String, &s.service);
        intrinsic(ROOT_NAME, TagType::String, s.name());
    }
    if s.name().len() <= MAX_INDEXED_VALUE_BYTES {
        operation_key_into(&mut k, &s.service, s.name());
        f(&k);
    }
}

/// Every index key of one span, in a fixed order.
#[cfg(test)]
fn span_tag_keys(s: &SpanRecord) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    visit_span_tag_keys(s, false, |k| keys.push(k.to_vec()));
    keys
}

fn attribute_keys(scope: TagScope, attrs: &[KeyValue], k: &mut Vec<u8>, f: &mut impl FnMut(&[u8])) {
    for kv in attrs {
        if kv.key.is_empty() || kv.key.len() > MAX_INDEXED_NAME_BYTES {
            continue;
        }
        tag_name_key_into(k, scope.byte(), &kv.key);
        f(k);
        let Some((ty, v)) = kv
            .value
            .as_ref()
            .and_then(|v| TagType::of(v).map(|t| (t, v)))
        else {
            continue;
        };
        let value = v.string_form();
        if value.len() <= MAX_INDEXED_VALUE_BYTES {
            tag_value_key_into(k, scope.byte(), &kv.key, ty.byte(), &value);
            f(k);
        }
    }
}

impl ApplyBatch<'_> {
    /// Stages the tag index entries of `s` not yet staged in this batch.
    /// The resource's keys are skipped when the span before had the same
    /// resource attributes (their keys are then staged already): spans of
    /// one request share their resource.
    pub(super) fn index_tags(&mut self, s: &SpanRecord) {
        let tags = &self.store.keyspaces.tags;
        let attrs = &s.resource.attributes;
        let skip_resource = self.tag_keys.last_resource.as_ref() == Some(attrs);
        if !skip_resource {
            self.tag_keys.last_resource = Some(attrs.clone());
        }
        let (batch, staged) = (&mut self.batch, &mut self.tag_keys.keys);
        let stored = self.store.stored_tag_keys.keys.lock().unwrap();
        visit_span_tag_keys(s, skip_resource, |k| {
            if !staged.contains(k) && !stored.contains(k) {
                batch.insert(tags, k.to_vec(), b"".to_vec());
                staged.insert(k.to_vec());
            }
        });
    }
}

/// The tag keys staged in one batch.
#[derive(Default)]
pub(super) struct StagedTagKeys {
    keys: HashSet<Vec<u8>>,
    /// The resource attributes of the last span indexed.
    last_resource: Option<Vec<KeyValue>>,
}

impl StagedTagKeys {
    pub(super) fn take_keys(&mut self) -> HashSet<Vec<u8>> {
        std::mem::take(&mut self.keys)
    }
}

/// Tag keys remembered as committed, at most this many (then forgotten all
/// at once): each is at most about 520 bytes, most a few dozen.
const MAX_STORED_TAG_KEYS: usize = 200_000;

/// Tag index keys this store has committed, so apply does not write them
/// again in every batch (most spans repeat the names and values of earlier
/// ones). Skipping a key that is already stored leaves the store exactly as
/// writing it would: index keys have empty values and are never removed.
/// Filled only after a batch commits; a snapshot install opens a new store,
/// and with it an empty set.
#[derive(Default)]
pub(super) struct StoredTagKeys {
    keys: std::sync::Mutex<HashSet<Vec<u8>>>,
}

impl StoredTagKeys {
    pub(super) fn remember(&self, committed: HashSet<Vec<u8>>) {
        let mut keys = self.keys.lock().unwrap();
        if keys.len() + committed.len() > MAX_STORED_TAG_KEYS {
            keys.clear();
        }
        keys.extend(committed);
    }
}

impl HotStore {
    /// Indexed tag names of `scope` (span or resource) in byte order, at
    /// most `max`.
    pub fn tag_names(&self, scope: TagScope, max: usize) -> StoreResult<Vec<String>> {
        let prefix = tag_names_prefix(scope.byte());
        let mut out = Vec::new();
        for g in self.keyspaces.tags.prefix(&prefix).take(max) {
            let k = g.key()?;
            out.push(utf8(&k[prefix.len()..])?);
        }
        Ok(out)
    }

    /// Indexed values of the tag `name` of `scope`, ordered by type then
    /// value bytes, at most `max`.
    pub fn tag_values(
        &self,
        scope: TagScope,
        name: &str,
        max: usize,
    ) -> StoreResult<Vec<(TagType, String)>> {
        let prefix = tag_values_prefix(scope.byte(), name);
        let mut out = Vec::new();
        for g in self.keyspaces.tags.prefix(&prefix).take(max) {
            let k = g.key()?;
            let rest = &k[prefix.len()..];
            let (&ty, value) = rest.split_first().ok_or_else(corrupt)?;
            let ty = TagType::from_byte(ty).ok_or_else(corrupt)?;
            out.push((ty, utf8(value)?));
        }
        Ok(out)
    }

    /// Indexed operations (span names) of `service` in byte order, at most
    /// `max`.
    pub fn operations(&self, service: &str, max: usize) -> StoreResult<Vec<String>> {
        let prefix = operations_prefix(service);
        let mut out = Vec::new();
        for g in self.keyspaces.tags.prefix(&prefix).take(max) {
            let k = g.key()?;
            out.push(utf8(&k[prefix.len()..])?);
        }
        Ok(out)
    }
}

fn corrupt() -> StoreError {
    StoreError::Corrupt("malformed tag index key".into())
}

fn utf8(b: &[u8]) -> StoreResult<String> {
    String::from_utf8(b.to_vec()).map_err(|_| corrupt())
}

#[cfg(test)]
mod tests {
    use super::super::keys::{operation_key, tag_name_key, tag_value_key};
    use super::super::test_support::{apply_spans, open_store, test_span};
    use super::*;
    use crate::model::{SpanStatus, TraceId};

    fn kv(k: &str, v: AnyValue) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(v),
        }
    }

    fn span(trace: u8, id: u8, service: &str, attrs: Vec<KeyValue>) -> SpanRecord {
        let mut s = test_span(trace, id, 100 + id as u64);
        s.service = service.into();
        std::sync::Arc::make_mut(&mut s.resource).attributes =
            vec![kv("service.name", AnyValue::String(service.into()))];
        s.attributes = attrs;
        s
    }

    fn values(store: &HotStore, scope: TagScope, name: &str) -> Vec<(&'static str, String)> {
        store
            .tag_values(scope, name, 100)
            .unwrap()
            .into_iter()
            .map(|(t, v)| (t.as_str(), v))
            .collect()
    }

    #[test]
    fn names_values_and_operations_are_found_by_scope() {
        let (_dir, store) = open_store();
        let mut root = span(
            1,
            1,
            "checkout",
            vec![kv("http.status_code", AnyValue::Int(500))],
        );
        root.status = SpanStatus::Error;
        root.status_message = "boom".into();
        let mut child = span(
            1,
            2,
            "checkout",
            vec![kv("db.system", AnyValue::String("pg".into()))],
        );
        child.parent_span_id = Some([1; 8]);
        child.operation = "query".into();
        child.kind = SpanKind::Client;
        apply_spans(&store, 1, vec![root, child]);
        let other = span(
            2,
            1,
            "cart",
            vec![kv("http.status_code", AnyValue::Double(2.5))],
        );
        apply_spans(&store, 2, vec![other]);

        assert_eq!(
            store.tag_names(TagScope::Span, 100).unwrap(),
            vec!["db.system", "http.status_code"]
        );
        assert_eq!(
            store.tag_names(TagScope::Resource, 100).unwrap(),
            vec!["service.name"]
        );
        assert_eq!(
            values(&store, TagScope::Span, "http.status_code"),
            vec![("float", "2.5".into()), ("int", "500".into())],
            "ordered by type byte (f < i), then value"
        );
        assert_eq!(
            values(&store, TagScope::Resource, "service.name"),
            vec![("string", "cart".into()), ("string", "checkout".into())]
        );
        assert_eq!(
            values(&store, TagScope::Intrinsic, intrinsic::STATUS),
            vec![("keyword", "error".into()), ("keyword", "ok".into())]
        );
        assert_eq!(
            values(&store, TagScope::Intrinsic, intrinsic::KIND),
            vec![("keyword", "client".into()), ("keyword", "server".into())]
        );
        assert_eq!(
            values(&store, TagScope::Intrinsic, intrinsic::ROOT_NAME),
            vec![("string", "pay".into())],
            "only root spans name traces"
        );
        assert_eq!(
            values(&store, TagScope::Intrinsic, intrinsic::STATUS_MESSAGE),
            vec![("string", "boom".into())]
        );
        assert_eq!(
            store.operations("checkout", 100).unwrap(),
            vec!["pay", "query"]
        );
        assert_eq!(store.operations("cart", 100).unwrap(), vec!["pay"]);
        assert!(store.operations("check", 100).unwrap().is_empty());
        assert_eq!(
            store.tag_names(TagScope::Span, 1).unwrap().len(),
            1,
            "bounded"
        );
    }

    #[test]
    fn long_names_and_values_and_nested_values_are_not_indexed() {
        let (_dir, store) = open_store();
        let long_value = "v".repeat(MAX_INDEXED_VALUE_BYTES + 1);
        let edge_value = "w".repeat(MAX_INDEXED_VALUE_BYTES);
        let long_name = "n".repeat(MAX_INDEXED_NAME_BYTES + 1);
        let s = span(
            1,
            1,
            "svc",
            vec![
                kv("a", AnyValue::String(long_value)),
                kv("a", AnyValue::String(edge_value.clone())),
                kv("b", AnyValue::Array(vec![AnyValue::Int(1)])),
                kv(&long_name, AnyValue::Int(1)),
            ],
        );
        apply_spans(&store, 1, vec![s]);
        assert_eq!(
            store.tag_names(TagScope::Span, 100).unwrap(),
            vec!["a", "b"]
        );
        assert_eq!(
            values(&store, TagScope::Span, "a"),
            vec![("string", edge_value)]
        );
        assert!(values(&store, TagScope::Span, "b").is_empty());
    }

    #[test]
    fn a_tag_name_that_prefixes_another_keeps_its_own_values() {
        let (_dir, store) = open_store();
        let s = span(
            1,
            1,
            "svc",
            vec![kv("a", AnyValue::Int(1)), kv("ab", AnyValue::Int(2))],
        );
        apply_spans(&store, 1, vec![s]);
        assert_eq!(
            values(&store, TagScope::Span, "a"),
            vec![("int", "1".into())]
        );
        assert!(values(&store, TagScope::Resource, "a").is_empty());
    }

    #[test]
    fn values_from_every_batch_stay_found() {
        let (_dir, store) = open_store();
        for i in 0..20u8 {
            let user = AnyValue::String(format!("user-{i:02}"));
            apply_spans(
                &store,
                1 + i as u64,
                vec![span(i, 1, "svc", vec![kv("user", user)])],
            );
        }
        let found = values(&store, TagScope::Span, "user");
        assert_eq!(found.len(), 20);
        assert_eq!(found[0].1, "user-00");
        // The same tags again add no key.
        let before = store.keyspaces.tags.len().unwrap();
        let again = span(
            0,
            9,
            "svc",
            vec![kv("user", AnyValue::String("user-00".into()))],
        );
        apply_spans(&store, 30, vec![again]);
        assert_eq!(store.keyspaces.tags.len().unwrap(), before);
    }

    #[test]
    fn resources_alternating_within_a_batch_are_all_indexed() {
        let (_dir, store) = open_store();
        let a = span(1, 1, "a", vec![]);
        let b = span(1, 2, "b", vec![]);
        let mut a2 = span(1, 3, "a", vec![]);
        std::sync::Arc::make_mut(&mut a2.resource)
            .attributes
            .push(kv("zone", AnyValue::String("z1".into())));
        let a3 = span(1, 4, "a", vec![]);
        apply_spans(&store, 1, vec![a, b, a2, a3]);
        assert_eq!(
            values(&store, TagScope::Resource, "service.name"),
            vec![("string", "a".into()), ("string", "b".into())]
        );
        assert_eq!(
            values(&store, TagScope::Resource, "zone"),
            vec![("string", "z1".into())]
        );
    }

    #[test]
    fn a_span_gets_the_same_keys_on_every_apply() {
        let s = span(1, 1, "svc", vec![kv("x", AnyValue::Bool(true))]);
        let t: TraceId = s.trace_id;
        assert_eq!(t, [1; 16]);
        assert_eq!(span_tag_keys(&s), span_tag_keys(&s.clone()));
        let keys = span_tag_keys(&s);
        assert!(keys.contains(&tag_name_key(TagScope::Span.byte(), "x")));
        assert!(keys.contains(&tag_name_key(TagScope::Resource.byte(), "service.name")));
        assert!(keys.contains(&operation_key("svc", "pay")));
        assert!(span_tag_keys(&s).contains(&tag_value_key(
            TagScope::Span.byte(),
            "x",
            TagType::Bool.byte(),
            "true"
        )));
    }
}
