//! Where telemetry came from: the OTLP resource and instrumentation scope,
//! kept with every span and log record so they can be given back as sent.
//!
//! Each record carries its own copy, because records are stored and fetched
//! one by one; export groups records that share both again.

use serde::{Deserialize, Serialize};

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
