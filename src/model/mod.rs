//! The stored form of telemetry and its JSON form on the REST API.
//!
//! Spans and log records keep everything OTLP sent (typed values, resource,
//! scope, links, ...), so they can be given back as OTLP; see
//! [`crate::otlp::encode`]. The REST JSON is a view of them ([`json`]).

pub mod ids;
pub mod json;
pub mod limits;
pub mod llm;
pub mod log;
pub mod metric;
pub mod resource;
pub mod span;
pub mod time;
pub mod value;

pub use ids::{hex_lower, parse_hex, SpanId, TraceId};
pub use json::{EventJson, SpanJson};
pub use log::{LogRecord, Severity};
pub use metric::{HistogramData, MetricPoint, MetricType, Temporality};
pub use resource::{EntityRef, Resource, Scope};
pub use span::{SpanEvent, SpanKind, SpanLink, SpanRecord, SpanStatus};
pub use time::{now_unix_nanos, rfc3339_nanos};
pub use value::{AnyValue, KeyValue};
