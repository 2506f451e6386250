//! Mutual TLS towards peers: a tonic connector that dials TCP and runs a
//! rustls handshake, presenting this node's certificate and checking the
//! peer's against the cluster CA (both in the `rustls::ClientConfig` the
//! node builds; its certificate resolver re-reads rotated files).
//!
//! Peers are addressed by IP, so the name verified is the IP address of the
//! peer's membership address: its certificate needs that IP as a SAN. The
//! name is the membership address even when a dial override sends the
//! connection elsewhere (a proxy): the certificate names the node, not the
//! route to it.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Dials one peer over TLS; `tower_service::Service<Uri>` for tonic's
/// `Endpoint::connect_with_connector_lazy`.
#[derive(Clone)]
pub struct PeerTlsConnector {
    config: Arc<rustls::ClientConfig>,
    /// The name the peer's certificate must carry.
    server_name: ServerName<'static>,
}

impl PeerTlsConnector {
    /// `membership_addr` is the peer's `ip:port` as the membership records it.
    pub fn new(config: Arc<rustls::ClientConfig>, membership_addr: &str) -> Result<Self, String> {
        let ip: IpAddr = membership_addr
            .parse::<SocketAddr>()
            .map_err(|e| {
                format!(
                    "peer address {membership_addr:?} is not IP:PORT ({e}); peer TLS verifies \
                     the peer's IP address against its certificate"
                )
            })?
            .ip();
        Ok(PeerTlsConnector {
            config,
            server_name: ServerName::IpAddress(ip.into()),
        })
    }
}

impl tower_service::Service<http::Uri> for PeerTlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connector = TlsConnector::from(self.config.clone());
        let server_name = self.server_name.clone();
        Box::pin(async move {
            let host = uri.host().ok_or("peer URI without a host")?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().ok_or("peer URI without a port")?;
            let tcp = TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}
