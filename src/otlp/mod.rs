//! OpenTelemetry protocol ingest.

pub mod convert;
pub mod grpc;
