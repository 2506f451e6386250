//! One log record as the state machine stores it: everything OTLP sent,
//! typed, plus the index keys derived from it.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ids::{SpanId, TraceId};
use super::resource::{Resource, Scope};
use super::value::{find, AnyValue, KeyValue};

/// Log severity, from the OTLP severity number.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum Severity {
    #[default]
    Unspecified,
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Severity {
    pub const ALL: [Severity; 7] = [
        Severity::Unspecified,
        Severity::Trace,
        Severity::Debug,
        Severity::Info,
        Severity::Warn,
        Severity::Error,
        Severity::Fatal,
    ];

    /// OTLP severity numbers come in ranges of four per level (1-4 trace ... 21-24 fatal).
    pub fn from_number(n: i32) -> Severity {
        match n {
            1..=4 => Severity::Trace,
            5..=8 => Severity::Debug,
            9..=12 => Severity::Info,
            13..=16 => Severity::Warn,
            17..=20 => Severity::Error,
            21..=24 => Severity::Fatal,
            _ => Severity::Unspecified,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unspecified => "unspecified",
            Severity::Trace => "trace",
            Severity::Debug => "debug",
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Error => "error",
            Severity::Fatal => "fatal",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Stable one-byte code used in index keys.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// One log record as the state machine stores it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Index key: the event time, or the observed time when the event time
    /// is absent.
    pub timestamp_unix_nanos: u64,
    /// The event time as sent (0: absent).
    pub time_unix_nanos: u64,
    pub observed_unix_nanos: u64,
    /// Absent or all-zero ids in OTLP both mean "none".
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    /// Index key, from `severity_number`.
    pub severity: Severity,
    pub severity_number: i32,
    /// The severity text, cleaned like a name (see `otlp::convert`).
    pub severity_text: String,
    /// The severity text as sent, when cleaning changed it.
    pub raw_severity_text: Option<String>,
    /// `None`: OTLP sent no body.
    pub body: Option<AnyValue>,
    /// Set when a large body went to the blob store (as its string form,
    /// see `ApplyBatch::put_log`). `body` then holds the beginning of that
    /// text only, and `body_value` the body itself when it was not a string.
    pub body_sha256: Option<[u8; 32]>,
    pub body_value: Option<AnyValue>,
    /// Index key: the resource's `service.name`, cleaned.
    pub service: String,
    /// Sorted by key, keys unique.
    pub attributes: Vec<KeyValue>,
    pub dropped_attributes_count: u32,
    pub flags: u32,
    pub event_name: String,
    /// Shared by the records of one export in memory, encoded in full
    /// (see [`super::resource`]).
    #[serde(with = "super::resource::inline")]
    pub resource: Arc<Resource>,
    #[serde(with = "super::resource::inline")]
    pub scope: Arc<Scope>,
}

impl LogRecord {
    /// The string form of attribute `key` (what filters match on).
    pub fn attribute(&self, key: &str) -> Option<Cow<'_, str>> {
        find(&self.attributes, key).map(KeyValue::string_form)
    }

    /// The body's string form as stored: the beginning only when the body
    /// went to the blob store. What the REST API shows and filters match on.
    pub fn body_text(&self) -> Cow<'_, str> {
        self.body
            .as_ref()
            .map_or(Cow::Borrowed(""), AnyValue::string_form)
    }

    /// The record to store when its body (string form `text`, whose sha256
    /// is `sha`) goes to the blob store: the body shrinks to `preview`, the
    /// beginning of the text. A body that is not a string is kept whole in
    /// `body_value`, since its text alone cannot give it back.
    pub fn with_body_in_blob(&self, sha: [u8; 32], preview: String) -> LogRecord {
        let mut stored = self.clone();
        let body = stored.body.replace(AnyValue::String(preview));
        stored.body_sha256 = Some(sha);
        stored.body_value = body.filter(|b| !b.is_string());
        stored
    }
}
