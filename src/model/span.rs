//! One span as the state machine stores it: everything OTLP sent, typed,
//! plus the index keys derived from it (`service`, `operation`).

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ids::{SpanId, TraceId};
use super::resource::{Resource, Scope};
use super::value::{find, KeyValue};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpanStatus {
    #[default]
    Unset,
    Ok,
    Error,
}

impl SpanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanStatus::Unset => "unset",
            SpanStatus::Ok => "ok",
            SpanStatus::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<SpanStatus> {
        match s {
            "unset" => Some(SpanStatus::Unset),
            "ok" => Some(SpanStatus::Ok),
            "error" => Some(SpanStatus::Error),
            _ => None,
        }
    }

    /// OTLP `Status.code`; codes this version does not know read as unset.
    pub fn from_otlp(code: i32) -> SpanStatus {
        match code {
            1 => SpanStatus::Ok,
            2 => SpanStatus::Error,
            _ => SpanStatus::Unset,
        }
    }

    pub fn to_otlp(self) -> i32 {
        match self {
            SpanStatus::Unset => 0,
            SpanStatus::Ok => 1,
            SpanStatus::Error => 2,
        }
    }
}

/// The OTLP span kind. Whether a span is an LLM span is not a kind of its
/// own: see [`SpanRecord::kind_label`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpanKind {
    #[default]
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    /// Kinds this version does not know read as unspecified.
    pub fn from_otlp(kind: i32) -> SpanKind {
        match kind {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    pub fn to_otlp(self) -> i32 {
        match self {
            SpanKind::Unspecified => 0,
            SpanKind::Internal => 1,
            SpanKind::Server => 2,
            SpanKind::Client => 3,
            SpanKind::Producer => 4,
            SpanKind::Consumer => 5,
        }
    }

    /// The REST name (API.md); an unspecified kind shows as `internal`.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified | SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpanEvent {
    pub name: String,
    pub time_unix_nanos: u64,
    /// Sorted by key, keys unique.
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
}

/// A link to another span. Its ids are kept as sent, unchecked: a link
/// with malformed ids does not make its span unstorable.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpanLink {
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub trace_state: String,
    /// Sorted by key, keys unique.
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
    pub flags: u32,
}

/// One span as the state machine stores it.
///
/// Attribute lists are sorted by key with unique keys (the last value of a
/// repeated key wins), which is all OTLP allows; everything else is kept as
/// sent, so [`crate::otlp::encode`] gives the span back unchanged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpanRecord {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    /// Index key: the resource's `service.name`, cleaned (see `otlp::convert`).
    pub service: String,
    /// Index key: the span name, cleaned.
    pub operation: String,
    /// The span name as sent, when cleaning changed it.
    pub raw_name: Option<String>,
    pub start_unix_nanos: u64,
    /// Never before the start.
    pub end_unix_nanos: u64,
    /// The end as sent, when it was before the start.
    pub raw_end_unix_nanos: Option<u64>,
    pub status: SpanStatus,
    pub status_message: String,
    pub kind: SpanKind,
    pub trace_state: String,
    pub flags: u32,
    /// Sorted by key, keys unique. LLM prompt and completion text is not
    /// here but in `llm` (see [`crate::llm`]).
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
    pub events: Vec<SpanEvent>,
    pub dropped_events_count: u32,
    pub links: Vec<SpanLink>,
    pub dropped_links_count: u32,
    /// Shared by the records of one export in memory, encoded in full
    /// (see [`super::resource`]).
    #[serde(with = "super::resource::inline")]
    pub resource: Arc<Resource>,
    #[serde(with = "super::resource::inline")]
    pub scope: Arc<Scope>,
    /// Set on LLM spans, see [`crate::llm`].
    pub llm: Option<super::llm::LlmInfo>,
}

impl SpanRecord {
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nanos.saturating_sub(self.start_unix_nanos)
    }

    pub fn duration_ms(&self) -> f64 {
        self.duration_nanos() as f64 / 1e6
    }

    /// The string form of span attribute `key` (what filters match on).
    pub fn attribute(&self, key: &str) -> Option<Cow<'_, str>> {
        find(&self.attributes, key).map(KeyValue::string_form)
    }

    /// The span name as sent.
    pub fn name(&self) -> &str {
        self.raw_name.as_deref().unwrap_or(&self.operation)
    }

    /// The kind the REST API shows: `llm` for LLM spans, else the OTLP kind.
    pub fn kind_label(&self) -> &'static str {
        if self.llm.is_some() {
            "llm"
        } else {
            self.kind.as_str()
        }
    }
}
