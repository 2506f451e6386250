//! OTLP/gRPC collector services.
//!
//! Hand-routed and hand-framed rather than generated. Hand-routed so that a
//! request that is not valid protobuf is answered with INVALID_ARGUMENT
//! (tonic's stock codec says INTERNAL, which OTLP clients would retry
//! forever). Hand-framed so that the message is received within the OTLP
//! limits (`limits`: a body budget and read timeout, then an export slot)
//! and inflated and decoded on the blocking pool: tonic's codec path would
//! inflate and decode a 20 MiB message on the async workers that also carry
//! Raft's heartbeats. A unary call is one length-prefixed message each way
//! and a `grpc-status` trailer, which is all this needs.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use prost::Message;
use tonic::Status;

use crate::auth::{AuthError, Authenticator, Role};
use crate::cluster::ClusterError;
use crate::ingest::Ingest;
use crate::ingest::Transport;
use crate::otlp::limits::{declared_len, OtlpLimits, Refusal, RETRY_AFTER_SECS};
use crate::otlp::{
    commit_prepared, gunzip_bounded, prepare, GunzipError, Logs, Metrics, OtlpSignal, Prepared,
    Traces, INLINE_DECODE_BYTES,
};

/// A gRPC message's prefix: a compressed flag and a big-endian length.
const FRAME_HEADER_BYTES: usize = 5;

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The collector service of one signal.
pub struct OtlpService<S> {
    ingest: Arc<Ingest>,
    auth: Arc<Authenticator>,
    limits: Arc<OtlpLimits>,
    _signal: PhantomData<fn() -> S>,
}

impl<S> Clone for OtlpService<S> {
    fn clone(&self) -> Self {
        OtlpService {
            ingest: self.ingest.clone(),
            auth: self.auth.clone(),
            limits: self.limits.clone(),
            _signal: PhantomData,
        }
    }
}

impl<S: OtlpSignal> tonic::server::NamedService for OtlpService<S> {
    const NAME: &'static str = S::SERVICE;
}

impl<S, B> tower_service::Service<http::Request<B>> for OtlpService<S>
where
    S: OtlpSignal,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let ingest = self.ingest.clone();
        let limits = self.limits.clone();
        // Checked before the message is read: a caller without a writer key
        // costs no decoding.
        let presented = req.headers().get(http::header::AUTHORIZATION);
        let allowed = self
            .auth
            .check(presented.map(|v| v.as_bytes()), Role::Writer);
        let is_export = req
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(S::SERVICE))
            == Some("/Export");
        Box::pin(async move {
            if let Err(e) = allowed {
                return Ok(auth_status(e).into_http());
            }
            if !is_export {
                return Ok(Status::unimplemented("unknown method").into_http());
            }
            Ok(match unary_export::<S, B>(&ingest, &limits, req).await {
                Ok(resp) => ok_response(&resp),
                Err(status) => status.into_http(),
            })
        })
    }
}

/// Receives, decodes, validates and commits one export.
async fn unary_export<S, B>(
    ingest: &Ingest,
    limits: &OtlpLimits,
    req: http::Request<B>,
) -> Result<S::Resp, Status>
where
    S: OtlpSignal,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError> + Send + 'static,
{
    let gzip = request_compression(req.headers())?;
    let declared = declared_len(req.headers());
    let body = Box::pin(
        req.into_body()
            .map_frame(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining())))
            .map_err(Into::<BoxError>::into),
    );
    let max_export_bytes = limits.max_export_bytes();
    let max_bytes = FRAME_HEADER_BYTES + max_export_bytes;
    let shed = |r: Refusal| {
        if let Some(reason) = r.shed_reason() {
            ingest.metrics.record_shed(Transport::Grpc, reason);
        }
        status_of_refusal(r)
    };
    let raw = limits
        .receive(body, declared, max_bytes, max_bytes)
        .await
        .map_err(shed)?;
    // Only now, with the whole message in, an export slot.
    let _slot = limits.admit_export().await.map_err(shed)?;
    let prepared = decode_and_prepare::<S>(gzip, raw.bytes, max_export_bytes).await?;
    commit_prepared::<S>(ingest, Transport::Grpc, prepared)
        .await
        .map_err(status_from)
}

/// Whether messages may arrive gzip-compressed (`grpc-encoding`).
fn request_compression(headers: &http::HeaderMap) -> Result<bool, Status> {
    match headers
        .get("grpc-encoding")
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None | Some("identity") => Ok(false),
        Some("gzip") => Ok(true),
        Some(other) => Err(Status::unimplemented(format!(
            "unsupported grpc-encoding {other:?}; use gzip or none"
        ))),
    }
}

/// The one message of a unary request: `(compressed, bytes)`.
fn unframe(raw: &[u8]) -> Result<(bool, &[u8]), Status> {
    if raw.len() < FRAME_HEADER_BYTES {
        return Err(Status::invalid_argument("missing request message"));
    }
    let compressed = match raw[0] {
        0 => false,
        1 => true,
        flag => {
            return Err(Status::invalid_argument(format!(
                "malformed gRPC frame: compressed flag {flag}"
            )))
        }
    };
    let len = u32::from_be_bytes(raw[1..FRAME_HEADER_BYTES].try_into().unwrap()) as usize;
    if raw.len() - FRAME_HEADER_BYTES != len {
        return Err(Status::invalid_argument(format!(
            "malformed gRPC request: one message of {len} bytes announced, {} bytes sent",
            raw.len() - FRAME_HEADER_BYTES
        )));
    }
    Ok((compressed, &raw[FRAME_HEADER_BYTES..]))
}

fn decode_message<S: OtlpSignal>(
    gzip: bool,
    raw: &[u8],
    max_export_bytes: usize,
) -> Result<Prepared<S>, Status> {
    let (compressed, message) = unframe(raw)?;
    let inflated;
    let message = match (compressed, gzip) {
        (false, _) => message,
        (true, true) => {
            inflated = gunzip_bounded(message, max_export_bytes).map_err(|e| match e {
                GunzipError::TooLarge(why) => Status::resource_exhausted(why),
                GunzipError::Invalid(why) => Status::invalid_argument(why),
            })?;
            &inflated[..]
        }
        (true, false) => {
            return Err(Status::invalid_argument(
                "a compressed message without a grpc-encoding header",
            ))
        }
    };
    let req = S::Req::decode(message)
        .map_err(|e| Status::invalid_argument(format!("malformed protobuf: {e}")))?;
    Ok(prepare::<S>(req))
}

/// Decodes and validates off the async workers unless the message is small.
async fn decode_and_prepare<S: OtlpSignal>(
    gzip: bool,
    raw: Bytes,
    max_export_bytes: usize,
) -> Result<Prepared<S>, Status> {
    if raw.len() <= INLINE_DECODE_BYTES && raw.first() != Some(&1) {
        return decode_message::<S>(gzip, &raw, max_export_bytes);
    }
    tokio::task::spawn_blocking(move || decode_message::<S>(gzip, &raw, max_export_bytes))
        .await
        .map_err(|e| Status::internal(format!("decoding task: {e}")))?
}

/// A unary response: one uncompressed message, then `grpc-status: 0`.
fn ok_response<M: Message>(message: &M) -> http::Response<tonic::body::Body> {
    let len = message.encoded_len();
    let mut framed = Vec::with_capacity(FRAME_HEADER_BYTES + len);
    framed.push(0);
    framed.extend_from_slice(&(len as u32).to_be_bytes());
    message
        .encode(&mut framed)
        .expect("a Vec grows to hold any message");
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let body = http_body_util::Full::new(Bytes::from(framed))
        .with_trailers(async move { Some(Ok::<_, Infallible>(trailers)) });
    let mut resp = http::Response::new(tonic::body::Body::new(body));
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert(
        "grpc-accept-encoding",
        http::HeaderValue::from_static("gzip"),
    );
    resp
}

/// A refused body or admission as a gRPC status. Shedding is
/// RESOURCE_EXHAUSTED with a RetryInfo, which OTLP exporters retry.
fn status_of_refusal(r: Refusal) -> Status {
    match r {
        Refusal::BodyBudgetFull(m) | Refusal::ExportsBusy(m) => {
            with_retry_info(tonic::Code::ResourceExhausted, m, RETRY_AFTER_SECS as i64)
        }
        Refusal::TooLarge(m) => Status::resource_exhausted(m),
        Refusal::Timeout(m) => Status::deadline_exceeded(m),
        Refusal::Unreadable(m) => Status::invalid_argument(m),
    }
}

/// A refused key: UNAUTHENTICATED or PERMISSION_DENIED (neither is retried
/// by OpenTelemetry exporters, which is right).
fn auth_status(e: AuthError) -> Status {
    match e {
        AuthError::Unauthenticated(m) => Status::unauthenticated(m),
        AuthError::Forbidden(m) => Status::permission_denied(m),
    }
}

/// The one place a [`ClusterError`] becomes a gRPC status.
pub fn status_from(e: ClusterError) -> Status {
    match e {
        ClusterError::Unavailable(m) => {
            with_retry_info(tonic::Code::Unavailable, m, RETRY_DELAY_SECS)
        }
        ClusterError::NotLeader { .. } => {
            with_retry_info(tonic::Code::Unavailable, e.to_string(), RETRY_DELAY_SECS)
        }
        ClusterError::Invalid(m) => Status::invalid_argument(m),
        ClusterError::Conflict(m) => Status::failed_precondition(m),
        ClusterError::NotFound(m) => Status::not_found(m),
        ClusterError::Internal(m) => Status::internal(m),
    }
}

/// The retry delay suggested to clients when the cluster cannot commit.
const RETRY_DELAY_SECS: i64 = 1;

// google.rpc.Status with a google.rpc.RetryInfo detail: the retry hint OTLP
// exporters read from an UNAVAILABLE answer.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// A status carrying a google.rpc.RetryInfo: OTLP exporters retry
/// UNAVAILABLE, and RESOURCE_EXHAUSTED only with one.
fn with_retry_info(code: tonic::Code, message: String, delay_secs: i64) -> Status {
    let retry = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: delay_secs,
            nanos: 0,
        }),
    };
    let details = RpcStatus {
        code: code as i32,
        message: message.clone(),
        details: vec![ProtoAny {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: retry.encode_to_vec(),
        }],
    };
    Status::with_details(code, message, details.encode_to_vec().into())
}

fn service<S: OtlpSignal>(
    ingest: &Arc<Ingest>,
    auth: &Arc<Authenticator>,
    limits: &Arc<OtlpLimits>,
) -> OtlpService<S> {
    OtlpService {
        ingest: ingest.clone(),
        auth: auth.clone(),
        limits: limits.clone(),
        _signal: PhantomData,
    }
}

pub fn router(
    ingest: Arc<Ingest>,
    auth: Arc<Authenticator>,
    limits: Arc<OtlpLimits>,
) -> tonic::transport::server::Router {
    tonic::transport::Server::builder()
        .add_service(service::<Traces>(&ingest, &auth, &limits))
        .add_service(service::<Logs>(&ingest, &auth, &limits))
        .add_service(service::<Metrics>(&ingest, &auth, &limits))
}
