//! OpenTelemetry protocol ingest: gRPC and HTTP transports over one export path.

pub mod convert;
pub mod encode;
pub mod grpc;
pub mod http;
pub mod limits;
#[cfg(test)]
mod roundtrip_tests;

use std::sync::atomic::Ordering;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tael_consensus::Record;

use crate::cluster::ClusterError;
use crate::ingest::Ingest;
use crate::ingest::{Signal, Transport};
use crate::model::{LogRecord, MetricPoint, SpanRecord};
use crate::payload;
use convert::Converted;

/// Largest accepted export, after decompression (gRPC and HTTP), unless
/// `max_export_bytes` says otherwise.
pub const DEFAULT_MAX_EXPORT_BYTES: usize = 20 * 1024 * 1024;
/// The most `max_export_bytes` may be: an export's records travel in Raft
/// messages, which peers refuse above this size.
pub const MAX_EXPORT_BYTES_LIMIT: usize = tael_consensus::network::MAX_MESSAGE_BYTES / 4;

/// One OTLP signal: its request and response messages and how its records
/// are validated and carried in the log.
pub trait OtlpSignal: Send + Sync + 'static {
    const SIGNAL: Signal;
    /// The gRPC service name.
    const SERVICE: &'static str;
    /// What a record is called in messages ("spans", "log records", ...).
    const RECORDS: &'static str;
    type Req: prost::Message + Default + serde::de::DeserializeOwned + Send + 'static;
    type Resp: prost::Message + Default + serde::Serialize + Send + 'static;
    type Rec: Send + 'static;
    fn convert(req: Self::Req) -> Converted<Self::Rec>;
    fn log_record(records: Vec<Self::Rec>) -> Record;
    fn response(rejected: Option<(u64, String)>) -> Self::Resp;
}

pub struct Traces;
pub struct Logs;
pub struct Metrics;

impl OtlpSignal for Traces {
    const SIGNAL: Signal = Signal::Traces;
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const RECORDS: &'static str = "spans";
    type Req = ExportTraceServiceRequest;
    type Resp = ExportTraceServiceResponse;
    type Rec = SpanRecord;
    fn convert(req: Self::Req) -> Converted<SpanRecord> {
        convert::traces(req)
    }
    fn log_record(records: Vec<SpanRecord>) -> Record {
        payload::spans_record(records)
    }
    fn response(rejected: Option<(u64, String)>) -> Self::Resp {
        ExportTraceServiceResponse {
            partial_success: rejected.map(|(n, why)| ExportTracePartialSuccess {
                rejected_spans: n as i64,
                error_message: why,
            }),
        }
    }
}

impl OtlpSignal for Logs {
    const SIGNAL: Signal = Signal::Logs;
    const SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const RECORDS: &'static str = "log records";
    type Req = ExportLogsServiceRequest;
    type Resp = ExportLogsServiceResponse;
    type Rec = LogRecord;
    fn convert(req: Self::Req) -> Converted<LogRecord> {
        convert::logs(req)
    }
    fn log_record(records: Vec<LogRecord>) -> Record {
        payload::logs_record(records)
    }
    fn response(rejected: Option<(u64, String)>) -> Self::Resp {
        ExportLogsServiceResponse {
            partial_success: rejected.map(|(n, why)| ExportLogsPartialSuccess {
                rejected_log_records: n as i64,
                error_message: why,
            }),
        }
    }
}

impl OtlpSignal for Metrics {
    const SIGNAL: Signal = Signal::Metrics;
    const SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const RECORDS: &'static str = "metric data points";
    type Req = ExportMetricsServiceRequest;
    type Resp = ExportMetricsServiceResponse;
    type Rec = MetricPoint;
    fn convert(req: Self::Req) -> Converted<MetricPoint> {
        convert::metrics(req)
    }
    fn log_record(records: Vec<MetricPoint>) -> Record {
        payload::metrics_record(&records)
    }
    fn response(rejected: Option<(u64, String)>) -> Self::Resp {
        ExportMetricsServiceResponse {
            partial_success: rejected.map(|(n, why)| ExportMetricsPartialSuccess {
                rejected_data_points: n as i64,
                error_message: why,
            }),
        }
    }
}

/// Bodies up to this size are decoded on the async worker; larger ones on
/// the blocking pool (decoding 20 MiB takes tens of milliseconds of CPU,
/// which would delay the Raft heartbeats sharing the async workers).
pub const INLINE_DECODE_BYTES: usize = 64 * 1024;

/// Why a gzip body was not inflated.
#[derive(Debug, PartialEq, Eq)]
pub enum GunzipError {
    /// It inflates beyond the limit (a small body may inflate to gigabytes).
    TooLarge(String),
    /// It is not gzip.
    Invalid(String),
}

/// Inflates a gzip body, refusing to produce more than `limit` bytes.
pub fn gunzip_bounded(compressed: &[u8], limit: usize) -> Result<Vec<u8>, GunzipError> {
    use std::io::Read;
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    let mut decoder = flate2::read::GzDecoder::new(compressed).take(limit as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| GunzipError::Invalid(format!("invalid gzip body: {e}")))?;
    if out.len() > limit {
        return Err(GunzipError::TooLarge(format!(
            "body inflates beyond the {limit}-byte limit"
        )));
    }
    Ok(out)
}

/// An export validated and encoded for the log, not yet committed.
pub struct Prepared<S: OtlpSignal> {
    /// `None` when nothing in the request was valid (or it was empty).
    record: Option<(Record, u64)>,
    rejected: u64,
    first_error: Option<String>,
    _signal: std::marker::PhantomData<fn() -> S>,
}

/// Validates one decoded export and encodes its valid records as one log
/// entry: CPU work, which callers run off the async workers when large.
pub fn prepare<S: OtlpSignal>(req: S::Req) -> Prepared<S> {
    let converted = S::convert(req);
    let record = (!converted.records.is_empty()).then(|| {
        let n = converted.records.len() as u64;
        (S::log_record(converted.records), n)
    });
    Prepared {
        record,
        rejected: converted.rejected,
        first_error: converted.first_error,
        _signal: std::marker::PhantomData,
    }
}

/// Commits a prepared export. A request with nothing valid in it is
/// `Invalid`; one with some invalid records is answered with a partial
/// success.
pub async fn commit_prepared<S: OtlpSignal>(
    ingest: &Ingest,
    transport: Transport,
    prepared: Prepared<S>,
) -> Result<S::Resp, ClusterError> {
    let counters = ingest.metrics.get(S::SIGNAL, transport);
    counters.requests.fetch_add(1, Ordering::Relaxed);
    counters
        .rejected
        .fetch_add(prepared.rejected, Ordering::Relaxed);
    let Some((record, n)) = prepared.record else {
        return match prepared.first_error {
            Some(why) => Err(ClusterError::Invalid(format!(
                "no valid {}: {why}",
                S::RECORDS
            ))),
            None => Ok(S::response(None)),
        };
    };
    ingest.commit(S::SIGNAL, transport, record, n).await?;
    Ok(S::response(
        prepared.first_error.map(|why| (prepared.rejected, why)),
    ))
}

/// Validates one decoded export and commits its valid records as one log
/// entry (see [`prepare`] and [`commit_prepared`]).
pub async fn export<S: OtlpSignal>(
    ingest: &Ingest,
    transport: Transport,
    req: S::Req,
) -> Result<S::Resp, ClusterError> {
    commit_prepared::<S>(ingest, transport, prepare::<S>(req)).await
}
