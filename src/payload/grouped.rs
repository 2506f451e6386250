//! How spans and log records travel in the Raft log: each distinct resource
//! and scope once, the records pointing at them by index.
//!
//! Stored records carry their own resource and scope (see
//! `model::resource`), but the records of one export mostly share one or a
//! few of each, and a resource is often as large as a span: repeating it in
//! every record would about double the bytes every replica writes.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::codec::encode;
use crate::model::{LogRecord, Resource, Scope, SpanRecord};

/// A record that carries its resource and scope.
pub trait HasOrigin {
    fn origin_mut(&mut self) -> (&mut Resource, &mut Scope);
}

impl HasOrigin for SpanRecord {
    fn origin_mut(&mut self) -> (&mut Resource, &mut Scope) {
        (&mut self.resource, &mut self.scope)
    }
}

impl HasOrigin for LogRecord {
    fn origin_mut(&mut self) -> (&mut Resource, &mut Scope) {
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
/// share the previous record's value, checked first).
struct Distinct<T> {
    values: Vec<T>,
    by_bytes: HashMap<Vec<u8>, u32>,
    last: Option<u32>,
}

impl<T: Serialize + PartialEq> Distinct<T> {
    fn new() -> Self {
        Distinct {
            values: Vec::new(),
            by_bytes: HashMap::new(),
            last: None,
        }
    }

    fn index_of(&mut self, value: T) -> u32 {
        if let Some(i) = self.last.filter(|&i| self.values[i as usize] == value) {
            return i;
        }
        let i = *self.by_bytes.entry(encode(&value)).or_insert_with(|| {
            self.values.push(value);
            (self.values.len() - 1) as u32
        });
        self.last = Some(i);
        i
    }
}

pub fn group<R: HasOrigin>(records: Vec<R>) -> Grouped<R> {
    let mut resources = Distinct::new();
    let mut scopes = Distinct::new();
    let records = records
        .into_iter()
        .map(|mut r| {
            let (resource, scope) = r.origin_mut();
            let ri = resources.index_of(std::mem::take(resource));
            let si = scopes.index_of(std::mem::take(scope));
            (ri, si, r)
        })
        .collect();
    Grouped {
        resources: resources.values,
        scopes: scopes.values,
        records,
    }
}

pub fn ungroup<R: HasOrigin>(grouped: Grouped<R>) -> Result<Vec<R>, String> {
    let Grouped {
        resources,
        scopes,
        records,
    } = grouped;
    records
        .into_iter()
        .map(|(ri, si, mut r)| {
            let (resource, scope) = r.origin_mut();
            *resource = resources
                .get(ri as usize)
                .ok_or_else(|| bad_index("resource", ri, resources.len()))?
                .clone();
            *scope = scopes
                .get(si as usize)
                .ok_or_else(|| bad_index("scope", si, scopes.len()))?
                .clone();
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
            resource: Resource {
                attributes: vec![KeyValue::string("service.name", service)],
                ..Default::default()
            },
            scope: Scope {
                name: scope.into(),
                ..Default::default()
            },
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
