//! How spans and log records travel in the Raft log: each distinct resource
//! and scope once, the records pointing at them by index.
//!
//! Stored records carry their own resource and scope (see
//! `model::resource`), but the records of one export mostly share one or a
//! few of each, and a resource is often as large as a span: repeating it in
//! every record would about double the bytes every replica writes. Decoded,
//! the records of one group share its resource and scope again (an [`Arc`]
//! each, not a copy per record).

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::codec::encode;
use crate::model::{LogRecord, Resource, Scope, SpanRecord};

/// A record that carries its resource and scope.
pub trait HasOrigin {
    fn origin_mut(&mut self) -> (&mut Arc<Resource>, &mut Arc<Scope>);
}

impl HasOrigin for SpanRecord {
    fn origin_mut(&mut self) -> (&mut Arc<Resource>, &mut Arc<Scope>) {
        (&mut self.resource, &mut self.scope)
    }
}

impl HasOrigin for LogRecord {
    fn origin_mut(&mut self) -> (&mut Arc<Resource>, &mut Arc<Scope>) {
        (&mut self.resource, &mut self.scope)
    }
}

/// The payload of `TAG_SPANS` and `TAG_LOGS` records.
#[derive(Debug, Serialize, Deserialize)]
pub struct Grouped<R> {
    resources: Vec<Resource>,
    scopes: Vec<Scope>,
    /// (index into `resources`, index into `scopes`, the record with an
    /// empty resource and scope)
    records: Vec<(u32, u32, R)>,
}

/// Distinct values, found by their encoding (records of one export mostly
/// share the previous record's value, checked first: by pointer, as records
/// converted from one group share it, then by value).
struct Distinct<T> {
    values: Vec<Arc<T>>,
    by_bytes: HashMap<Vec<u8>, u32>,
    last: Option<u32>,
    /// What a record's field holds once its value moved here: one shared
    /// empty value, so taking a value allocates nothing.
    empty: Arc<T>,
}

impl<T: Serialize + PartialEq + Default + Clone> Distinct<T> {
    fn new() -> Self {
        Distinct {
            values: Vec::new(),
            by_bytes: HashMap::new(),
            last: None,
            empty: Arc::default(),
        }
    }

    /// The index of the value in `field`, which is left holding the empty value.
    fn take_index(&mut self, field: &mut Arc<T>) -> u32 {
        let value = std::mem::replace(field, Arc::clone(&self.empty));
        if let Some(i) = self.last.filter(|&i| {
            let last = &self.values[i as usize];
            Arc::ptr_eq(last, &value) || **last == *value
        }) {
            return i;
        }
        let i = *self.by_bytes.entry(encode(&*value)).or_insert_with(|| {
            self.values.push(value);
            (self.values.len() - 1) as u32
        });
        self.last = Some(i);
        i
    }

    /// The distinct values, in order of first appearance.
    fn into_values(self) -> Vec<T> {
        self.values
            .into_iter()
            .map(|v| Arc::try_unwrap(v).unwrap_or_else(|shared| (*shared).clone()))
            .collect()
    }
}

pub fn group<R: HasOrigin>(records: Vec<R>) -> Grouped<R> {
    let mut resources = Distinct::new();
    let mut scopes = Distinct::new();
    let records = records
        .into_iter()
        .map(|mut r| {
            let (resource, scope) = r.origin_mut();
            let ri = resources.take_index(resource);
            let si = scopes.take_index(scope);
            (ri, si, r)
        })
        .collect();
    Grouped {
        resources: resources.into_values(),
        scopes: scopes.into_values(),
        records,
    }
}

pub fn ungroup<R: HasOrigin>(grouped: Grouped<R>) -> Result<Vec<R>, String> {
    let Grouped {
        resources,
        scopes,
        records,
    } = grouped;
    let resources: Vec<Arc<Resource>> = resources.into_iter().map(Arc::new).collect();
    let scopes: Vec<Arc<Scope>> = scopes.into_iter().map(Arc::new).collect();
    records
        .into_iter()
        .map(|(ri, si, mut r)| {
            let (resource, scope) = r.origin_mut();
            *resource = Arc::clone(
                resources
                    .get(ri as usize)
                    .ok_or_else(|| bad_index("resource", ri, resources.len()))?,
            );
            *scope = Arc::clone(
                scopes
                    .get(si as usize)
                    .ok_or_else(|| bad_index("scope", si, scopes.len()))?,
            );
            Ok(r)
        })
        .collect()
}

fn bad_index(what: &str, i: u32, len: usize) -> String {
    format!("record points at {what} {i} of a batch with {len}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KeyValue;

    fn span(n: u8, service: &str, scope: &str) -> SpanRecord {
        SpanRecord {
            span_id: [n; 8],
            resource: Arc::new(Resource {
                attributes: vec![KeyValue::string("service.name", service)],
                ..Default::default()
            }),
            scope: Arc::new(Scope {
                name: scope.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn each_resource_and_scope_travels_once_and_comes_back_on_every_record() {
        let spans = vec![
            span(1, "a", "x"),
            span(2, "a", "x"),
            span(3, "b", "x"),
            span(4, "a", "y"),
            span(5, "b", "y"),
        ];
        let grouped = group(spans.clone());
        assert_eq!(grouped.resources.len(), 2);
        assert_eq!(grouped.scopes.len(), 2);
        let bytes = encode(&grouped);
        let decoded: Grouped<SpanRecord> = crate::codec::decode(&bytes).unwrap();
        assert_eq!(ungroup(decoded).unwrap(), spans);
    }

    #[test]
    fn an_index_out_of_range_is_corrupt() {
        let mut grouped = group(vec![span(1, "a", "x")]);
        grouped.records[0].1 = 1;
        let err = ungroup(grouped).unwrap_err();
        assert!(
            err.to_string().contains("scope 1 of a batch with 1"),
            "{err}"
        );
    }
}
