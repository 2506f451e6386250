//! Where telemetry came from: the OTLP resource and instrumentation scope,
//! kept with every span and log record so they can be given back as sent.
//!
//! Each record carries its own resource and scope, because records are
//! stored and fetched one by one; export groups records that share both
//! again. In memory the records of one export share them ([`Arc`]): a
//! resource is often as large as a span, and copying it into every record at
//! conversion and at apply cost more than the rest of the record. Encoded,
//! each record still holds the value itself (see [`inline`]).

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::value::KeyValue;

/// OTLP `Resource` plus the `schema_url` of its `ResourceSpans`/`ResourceLogs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// Sorted by key, keys unique (see [`super::value::sort_unique`]).
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
    pub entity_refs: Vec<EntityRef>,
    pub schema_url: String,
}

/// OTLP `EntityRef` (a development-status part of the resource).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRef {
    pub schema_url: String,
    pub entity_type: String,
    pub id_keys: Vec<String>,
    pub description_keys: Vec<String>,
}

/// OTLP `InstrumentationScope` plus the `schema_url` of its `ScopeSpans`/`ScopeLogs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Scope {
    pub name: String,
    pub version: String,
    /// Sorted by key, keys unique.
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
    pub schema_url: String,
}

/// Serde for a shared value as the value itself: a record encodes the same
/// bytes whether or not its resource and scope are shared, so sharing is an
/// in-memory matter only and changes no stored or replicated format.
pub mod inline {
    use super::*;

    pub fn serialize<T: Serialize, S: Serializer>(value: &Arc<T>, s: S) -> Result<S::Ok, S::Error> {
        T::serialize(value, s)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<T>, D::Error> {
        T::deserialize(d).map(Arc::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Shared {
        #[serde(with = "inline")]
        resource: Arc<Resource>,
    }

    #[derive(Serialize)]
    struct Owned {
        resource: Resource,
    }

    #[test]
    fn a_shared_resource_encodes_as_the_resource_itself() {
        let resource = Resource {
            attributes: vec![KeyValue::string("service.name", "checkout")],
            dropped_attributes_count: 2,
            schema_url: "s".into(),
            ..Default::default()
        };
        let shared = Shared {
            resource: Arc::new(resource.clone()),
        };
        let bytes = crate::codec::encode(&shared);
        assert_eq!(bytes, crate::codec::encode(&Owned { resource }));
        assert_eq!(crate::codec::decode::<Shared>(&bytes).unwrap(), shared);
    }
}
