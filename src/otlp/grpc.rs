//! OTLP/gRPC collector services.
//!
//! Hand-routed rather than generated so that a request that is not valid
//! protobuf is answered with INVALID_ARGUMENT (tonic's stock codec says
//! INTERNAL, which OTLP clients would retry forever).

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Request, Response, Status};

use crate::auth::{AuthError, Authenticator, Role};
use crate::cluster::ClusterError;
use crate::ingest::Ingest;
use crate::ingest::Transport;
use crate::otlp::{export, Logs, Metrics, OtlpSignal, Traces, MAX_EXPORT_BYTES};

pub struct OtlpCodec<Resp, Req>(PhantomData<(Resp, Req)>);

impl<Resp, Req> Default for OtlpCodec<Resp, Req> {
    fn default() -> Self {
        OtlpCodec(PhantomData)
    }
}

pub struct MessageEncoder<T>(PhantomData<T>);
pub struct MessageDecoder<T>(PhantomData<T>);

impl<T: prost::Message> Encoder for MessageEncoder<T> {
    type Item = T;
    type Error = Status;
    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding response: {e}")))
    }
}

impl<T: prost::Message + Default> Decoder for MessageDecoder<T> {
    type Item = T;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<T>, Status> {
        T::decode(buf)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("malformed protobuf: {e}")))
    }
}

impl<Resp, Req> Codec for OtlpCodec<Resp, Req>
where
    Resp: prost::Message + Send + 'static,
    Req: prost::Message + Default + Send + 'static,
{
    type Encode = Resp;
    type Decode = Req;
    type Encoder = MessageEncoder<Resp>;
    type Decoder = MessageDecoder<Req>;
    fn encoder(&mut self) -> Self::Encoder {
        MessageEncoder(PhantomData)
    }
    fn decoder(&mut self) -> Self::Decoder {
        MessageDecoder(PhantomData)
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

/// The collector service of one signal.
pub struct OtlpService<S> {
    ingest: Arc<Ingest>,
    auth: Arc<Authenticator>,
    _signal: PhantomData<fn() -> S>,
}

impl<S> Clone for OtlpService<S> {
    fn clone(&self) -> Self {
        OtlpService {
            ingest: self.ingest.clone(),
            auth: self.auth.clone(),
            _signal: PhantomData,
        }
    }
}

impl<S: OtlpSignal> tonic::server::NamedService for OtlpService<S> {
    const NAME: &'static str = S::SERVICE;
}

struct Unary<S> {
    ingest: Arc<Ingest>,
    _signal: PhantomData<fn() -> S>,
}

impl<S: OtlpSignal> tonic::server::UnaryService<S::Req> for Unary<S> {
    type Response = S::Resp;
    type Future = BoxFuture<Response<S::Resp>, Status>;
    fn call(&mut self, request: Request<S::Req>) -> Self::Future {
        let ingest = self.ingest.clone();
        Box::pin(async move {
            export::<S>(&ingest, Transport::Grpc, request.into_inner())
                .await
                .map(Response::new)
                .map_err(status_from)
        })
    }
}

impl<S, B> tower_service::Service<http::Request<B>> for OtlpService<S>
where
    S: OtlpSignal,
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let ingest = self.ingest.clone();
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
            let mut grpc = tonic::server::Grpc::new(OtlpCodec::<S::Resp, S::Req>::default())
                .accept_compressed(CompressionEncoding::Gzip)
                .apply_max_message_size_config(Some(MAX_EXPORT_BYTES), Some(MAX_EXPORT_BYTES));
            let unary = Unary::<S> {
                ingest,
                _signal: PhantomData,
            };
            Ok(grpc.unary(unary, req).await)
        })
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
        ClusterError::Unavailable(m) => unavailable_with_retry_info(m, RETRY_DELAY_SECS),
        ClusterError::NotLeader { .. } => {
            unavailable_with_retry_info(e.to_string(), RETRY_DELAY_SECS)
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

fn unavailable_with_retry_info(message: String, delay_secs: i64) -> Status {
    use prost::Message;
    let retry = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: delay_secs,
            nanos: 0,
        }),
    };
    let details = RpcStatus {
        code: tonic::Code::Unavailable as i32,
        message: message.clone(),
        details: vec![ProtoAny {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: retry.encode_to_vec(),
        }],
    };
    Status::with_details(
        tonic::Code::Unavailable,
        message,
        details.encode_to_vec().into(),
    )
}

fn service<S: OtlpSignal>(ingest: &Arc<Ingest>, auth: &Arc<Authenticator>) -> OtlpService<S> {
    OtlpService {
        ingest: ingest.clone(),
        auth: auth.clone(),
        _signal: PhantomData,
    }
}

pub fn router(ingest: Arc<Ingest>, auth: Arc<Authenticator>) -> tonic::transport::server::Router {
    tonic::transport::Server::builder()
        .add_service(service::<Traces>(&ingest, &auth))
        .add_service(service::<Logs>(&ingest, &auth))
        .add_service(service::<Metrics>(&ingest, &auth))
}
