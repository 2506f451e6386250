//! OTLP/HTTP: `POST /v1/{traces,logs,metrics}` with binary protobuf or OTLP
//! JSON bodies, optionally gzip-compressed. Answers in the request's content
//! type; errors carry a `google.rpc.Status` body as the spec asks.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use prost::Message;

use crate::auth::{AuthError, Authenticator, Role};
use crate::cluster::ClusterError;
use crate::ingest::Ingest;
use crate::ingest::Transport;
use crate::otlp::limits::{declared_len, OtlpLimits, Refusal, RETRY_AFTER_SECS};
use crate::otlp::GunzipError;
use crate::otlp::{
    commit_prepared, prepare, Logs, Metrics, OtlpSignal, Prepared, Traces, INLINE_DECODE_BYTES,
};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => PROTOBUF,
            Format::Json => JSON,
        }
    }
}

#[derive(Clone)]
struct HttpState {
    ingest: Arc<Ingest>,
    auth: Arc<Authenticator>,
    limits: Arc<OtlpLimits>,
}

pub fn router(ingest: Arc<Ingest>, auth: Arc<Authenticator>, limits: Arc<OtlpLimits>) -> Router {
    let state = HttpState {
        ingest,
        auth,
        limits,
    };
    Router::new()
        .route("/v1/traces", post(handle::<Traces>))
        .route("/v1/logs", post(handle::<Logs>))
        .route("/v1/metrics", post(handle::<Metrics>))
        .fallback(|| async {
            error(
                Format::Json,
                StatusCode::NOT_FOUND,
                "no such route; OTLP/HTTP serves /v1/traces, /v1/logs and /v1/metrics".into(),
            )
        })
        // The body is read (and bounded) by the handler itself.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// google.rpc.Status without details, the OTLP/HTTP error body.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn error(format: Format, status: StatusCode, message: String) -> Response {
    let grpc_code = match status {
        StatusCode::BAD_REQUEST => tonic::Code::InvalidArgument,
        StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
        StatusCode::PAYLOAD_TOO_LARGE => tonic::Code::ResourceExhausted,
        StatusCode::TOO_MANY_REQUESTS => tonic::Code::ResourceExhausted,
        StatusCode::REQUEST_TIMEOUT => tonic::Code::DeadlineExceeded,
        StatusCode::NOT_FOUND => tonic::Code::NotFound,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => tonic::Code::InvalidArgument,
        _ => tonic::Code::Internal,
    } as i32;
    let body = match format {
        Format::Protobuf => RpcStatus {
            code: grpc_code,
            message,
        }
        .encode_to_vec(),
        Format::Json => serde_json::to_vec(&serde_json::json!({
            "code": grpc_code,
            "message": message,
        }))
        .expect("json"),
    };
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    resp
}

fn request_format(headers: &HeaderMap) -> Result<Format, String> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .ok_or_else(|| format!("missing Content-Type; use {PROTOBUF} or {JSON}"))?;
    let text = raw.to_str().unwrap_or("");
    let media = text.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case(PROTOBUF) {
        Ok(Format::Protobuf)
    } else if media.eq_ignore_ascii_case(JSON) {
        Ok(Format::Json)
    } else {
        Err(format!(
            "unsupported Content-Type {text:?}; use {PROTOBUF} or {JSON}"
        ))
    }
}

/// Bytes of an oversized body read and dropped before answering 413, so the
/// client (still sending) gets the answer instead of a reset connection: this
/// many times the largest export.
const DRAIN_FACTOR: usize = 4;

/// The HTTP answer to a refused body or admission (shedding is counted).
fn refused(ingest: &Ingest, format: Format, r: Refusal) -> Response {
    if let Some(reason) = r.shed_reason() {
        ingest.metrics.record_shed(Transport::Http, reason);
    }
    match r {
        Refusal::BodyBudgetFull(m) | Refusal::ExportsBusy(m) => {
            error(format, StatusCode::TOO_MANY_REQUESTS, m)
        }
        Refusal::TooLarge(m) => error(format, StatusCode::PAYLOAD_TOO_LARGE, m),
        Refusal::Timeout(m) => error(format, StatusCode::REQUEST_TIMEOUT, m),
        Refusal::Unreadable(m) => error(format, StatusCode::BAD_REQUEST, m),
    }
}

/// The one decode of a request body: gunzip (bounded) then protobuf or JSON.
fn decode_body<S: OtlpSignal>(
    format: Format,
    gzip: bool,
    raw: &[u8],
    max_export_bytes: usize,
) -> Result<S::Req, (StatusCode, String)> {
    let inflated;
    let body = if gzip {
        inflated = super::gunzip_bounded(raw, max_export_bytes).map_err(|e| match e {
            GunzipError::TooLarge(why) => (StatusCode::PAYLOAD_TOO_LARGE, why),
            GunzipError::Invalid(why) => (StatusCode::BAD_REQUEST, why),
        })?;
        &inflated[..]
    } else {
        raw
    };
    match format {
        Format::Protobuf => S::Req::decode(body)
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("malformed protobuf: {e}"))),
        Format::Json => serde_json::from_slice(body)
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("malformed OTLP JSON: {e}"))),
    }
}

async fn handle<S: OtlpSignal>(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let format = match request_format(&headers) {
        Ok(f) => f,
        Err(why) => return error(Format::Json, StatusCode::UNSUPPORTED_MEDIA_TYPE, why),
    };
    // Before the body is read: a caller without a writer key costs nothing.
    let presented = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if let Err(e) = state.auth.check(presented, Role::Writer) {
        let (status, why) = match e {
            AuthError::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, m),
            AuthError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
        };
        return error(format, status, why);
    }
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => false,
        Some("gzip") => true,
        Some(other) => {
            return error(
                format,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding {other:?}; use gzip or none"),
            )
        }
    };
    // The body first, within its budget and read timeout, holding no
    // export slot: a slow sender must not keep fast ones from committing.
    let max_export_bytes = state.limits.max_export_bytes();
    let raw = match state
        .limits
        .receive(
            body,
            declared_len(&headers),
            max_export_bytes,
            max_export_bytes.saturating_mul(DRAIN_FACTOR),
        )
        .await
    {
        Ok(raw) => raw,
        Err(r) => return refused(&state.ingest, format, r),
    };
    let _slot = match state.limits.admit_export().await {
        Ok(permit) => permit,
        Err(r) => return refused(&state.ingest, format, r),
    };
    let prepared = match decode_and_prepare::<S>(format, gzip, raw.bytes, max_export_bytes).await {
        Ok(p) => p,
        Err((status, why)) => return error(format, status, why),
    };
    match commit_prepared::<S>(&state.ingest, Transport::Http, prepared).await {
        Ok(resp) => {
            let body = match format {
                Format::Protobuf => resp.encode_to_vec(),
                Format::Json => {
                    // An unset partial success is omitted, as proto3 JSON does.
                    let mut v = serde_json::to_value(&resp).expect("response serializes");
                    if let Some(o) = v.as_object_mut() {
                        o.retain(|_, x| !x.is_null());
                    }
                    serde_json::to_vec(&v).expect("json")
                }
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, format.content_type())],
                body,
            )
                .into_response()
        }
        Err(e) => error(format, status_of(&e), e.to_string()),
    }
}

/// Decodes and validates a body: on the blocking pool when it is large.
async fn decode_and_prepare<S: OtlpSignal>(
    format: Format,
    gzip: bool,
    raw: bytes::Bytes,
    max_export_bytes: usize,
) -> Result<Prepared<S>, (StatusCode, String)> {
    let small = raw_len_is_small(gzip, &raw);
    let work = move || decode_body::<S>(format, gzip, &raw, max_export_bytes).map(prepare::<S>);
    if small {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// A gzip body may inflate a thousandfold: only a small plain one is
/// decoded inline.
fn raw_len_is_small(gzip: bool, raw: &[u8]) -> bool {
    !gzip && raw.len() <= INLINE_DECODE_BYTES
}

/// The one place a [`ClusterError`] becomes an OTLP/HTTP status.
fn status_of(e: &ClusterError) -> StatusCode {
    match e {
        ClusterError::Invalid(_) => StatusCode::BAD_REQUEST,
        ClusterError::Unavailable(_) | ClusterError::NotLeader { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ClusterError::Conflict(_) => StatusCode::CONFLICT,
        ClusterError::NotFound(_) => StatusCode::NOT_FOUND,
        ClusterError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_is_bounded() {
        use crate::otlp::{gunzip_bounded, GunzipError};
        let small = gzip(b"hello");
        assert_eq!(gunzip_bounded(&small, 5).unwrap(), b"hello");
        assert!(matches!(
            gunzip_bounded(&small, 4),
            Err(GunzipError::TooLarge(_))
        ));
        // A bomb: 64 MiB of zeros compresses to ~64 KiB.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 1 << 20);
        assert!(matches!(
            gunzip_bounded(&bomb, 1 << 20),
            Err(GunzipError::TooLarge(_))
        ));
        assert!(matches!(
            gunzip_bounded(b"not gzip", 100),
            Err(GunzipError::Invalid(_))
        ));
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(request_format(&h).is_err());
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(request_format(&h) == Ok(Format::Json));
        h.insert(
            header::CONTENT_TYPE,
            "Application/X-Protobuf".parse().unwrap(),
        );
        assert!(request_format(&h) == Ok(Format::Protobuf));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(request_format(&h).is_err());
    }
}

#[cfg(test)]
mod json_tests {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};

    // OTLP JSON as the spec writes it: hex ids, integer enums, 64-bit
    // integers as strings, lowerCamelCase, plus fields this version does not know.
    #[test]
    fn otlp_json_spec_examples_decode() {
        let traces: ExportTraceServiceRequest = serde_json::from_str(
            r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
            "futureField":{"x":1},
            "scopeSpans":[{"scope":{"name":"s"},"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C",
            "spanId":"EEE19B7EC3C1B174","parentSpanId":"","name":"op","kind":2,
            "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,
            "attributes":[{"key":"n","value":{"intValue":"42"}},{"key":"d","value":{"doubleValue":1.5}}],
            "status":{"code":2},"unknownSpanField":true}]}]}]}"#,
        )
        .unwrap();
        let span = &traces.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id.len(), 16);
        assert_eq!(span.span_id[0], 0xee);
        assert_eq!(span.kind, 2);
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
        assert_eq!(
            span.attributes[0].value.as_ref().unwrap().value,
            Some(Value::IntValue(42))
        );
        assert_eq!(span.status.as_ref().unwrap().code, 2);

        let logs: ExportLogsServiceRequest = serde_json::from_str(
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"observedTimeUnixNano":"7",
            "severityNumber":17,"severityText":"ERROR","body":{"stringValue":"boom"},
            "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}]}"#,
        )
        .unwrap();
        let rec = &logs.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(rec.observed_time_unix_nano, 7);
        assert_eq!(rec.severity_number, 17);

        let metrics: ExportMetricsServiceRequest = serde_json::from_str(
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
            {"name":"g","unit":"1","gauge":{"dataPoints":[{"asInt":"5","timeUnixNano":"9"}]}},
            {"name":"s","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[{"asDouble":2.5}]}},
            {"name":"h","histogram":{"aggregationTemporality":1,"dataPoints":[{"count":"3","sum":6,
              "bucketCounts":["1","2"],"explicitBounds":[1.0]}]}}]}]}]}"#,
        )
        .unwrap();
        let ms = &metrics.resource_metrics[0].scope_metrics[0].metrics;
        match &ms[0].data {
            Some(metric::Data::Gauge(g)) => assert_eq!(
                g.data_points[0].value,
                Some(number_data_point::Value::AsInt(5))
            ),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&ms[1].data, Some(metric::Data::Sum(s)) if s.is_monotonic && s.aggregation_temporality == 2)
        );
        match &ms[2].data {
            Some(metric::Data::Histogram(h)) => {
                assert_eq!(h.data_points[0].bucket_counts, vec![1, 2]);
                assert_eq!(h.data_points[0].count, 3);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_hex_ids_fail_to_decode() {
        for bad in [r#""zz""#, r#""abc""#] {
            let doc = format!(
                r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":{bad},"spanId":"eee19b7ec3c1b174"}}]}}]}}]}}"#
            );
            assert!(
                serde_json::from_str::<ExportTraceServiceRequest>(&doc).is_err(),
                "{bad}"
            );
        }
    }
}
