//! OTLP/gRPC collector services.
//!
//! Hand-routed rather than generated so that a request that is not valid
//! protobuf is answered with INVALID_ARGUMENT (tonic's stock codec says
//! INTERNAL, which OTLP clients would retry forever).

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Request, Response, Status};

use crate::node::{ClusterError, Node};
use crate::otlp::convert;

/// Largest accepted export, after decompression (the OTLP/HTTP limit too).
pub const MAX_EXPORT_BYTES: usize = 20 * 1024 * 1024;

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

/// One OTLP collector service: its gRPC name and how it handles an export.
pub trait ExportHandler: Send + Sync + 'static {
    const SERVICE: &'static str;
    type Req: prost::Message + Default + Send + 'static;
    type Resp: prost::Message + Send + 'static;
    fn export(&self, req: Self::Req) -> impl Future<Output = Result<Self::Resp, Status>> + Send;
}

pub struct OtlpService<H>(Arc<H>);

impl<H> Clone for OtlpService<H> {
    fn clone(&self) -> Self {
        OtlpService(self.0.clone())
    }
}

impl<H: ExportHandler> tonic::server::NamedService for OtlpService<H> {
    const NAME: &'static str = H::SERVICE;
}

struct Unary<H>(Arc<H>);

impl<H: ExportHandler> tonic::server::UnaryService<H::Req> for Unary<H> {
    type Response = H::Resp;
    type Future = BoxFuture<Response<H::Resp>, Status>;
    fn call(&mut self, request: Request<H::Req>) -> Self::Future {
        let h = self.0.clone();
        Box::pin(async move { h.export(request.into_inner()).await.map(Response::new) })
    }
}

impl<H, B> tower_service::Service<http::Request<B>> for OtlpService<H>
where
    H: ExportHandler,
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
        let h = self.0.clone();
        let is_export = req
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(H::SERVICE))
            == Some("/Export");
        Box::pin(async move {
            if !is_export {
                return Ok(Status::unimplemented("unknown method").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(OtlpCodec::<H::Resp, H::Req>::default())
                .accept_compressed(CompressionEncoding::Gzip)
                .apply_max_message_size_config(Some(MAX_EXPORT_BYTES), Some(MAX_EXPORT_BYTES));
            Ok(grpc.unary(Unary(h), req).await)
        })
    }
}

pub fn status_from(e: ClusterError) -> Status {
    match e {
        ClusterError::Unavailable(m) => Status::unavailable(m),
        ClusterError::Invalid(m) => Status::invalid_argument(m),
        ClusterError::Internal(m) => Status::internal(m),
    }
}

pub struct TraceHandler {
    pub node: Arc<Node>,
}

impl ExportHandler for TraceHandler {
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    type Req = ExportTraceServiceRequest;
    type Resp = ExportTraceServiceResponse;

    async fn export(
        &self,
        req: ExportTraceServiceRequest,
    ) -> Result<ExportTraceServiceResponse, Status> {
        let m = &self.node.ingest;
        m.requests_grpc.fetch_add(1, Ordering::Relaxed);
        let converted = convert::traces(req);
        m.spans_rejected_grpc
            .fetch_add(converted.rejected, Ordering::Relaxed);
        if converted.records.is_empty() {
            if let Some(why) = converted.first_error {
                return Err(Status::invalid_argument(format!("no valid spans: {why}")));
            }
            return Ok(ExportTraceServiceResponse {
                partial_success: None,
            });
        }
        crate::ingest::ingest_spans(&self.node, converted.records)
            .await
            .map_err(status_from)?;
        let partial_success = converted.first_error.map(|why| ExportTracePartialSuccess {
            rejected_spans: converted.rejected as i64,
            error_message: why,
        });
        Ok(ExportTraceServiceResponse { partial_success })
    }
}

pub fn router(node: Arc<Node>) -> tonic::transport::server::Router {
    tonic::transport::Server::builder().add_service(OtlpService(Arc::new(TraceHandler { node })))
}
