//! TLS for the client-facing listeners (`--tls-cert/--tls-key`) and mutual
//! TLS between peers (`--peer-tls-cert/--peer-tls-key/--peer-tls-ca`).
//!
//! rustls with the ring provider. Certificates and keys are PEM files; every
//! trust anchor is a CA file the operator names (no platform roots). A node's
//! own certificate is re-read when its files change on disk
//! ([`ReloadingCert`]), so rotating a certificate needs no restart.

mod config;
mod listener;
mod pem;
mod reload;

use std::path::PathBuf;

pub use config::{
    client_listener_config, peer_client_config, peer_server_config, ALPN_H2, ALPN_HTTP1,
};
pub use listener::{HandshakeFailures, TlsListener};
pub use pem::{install_process_default, load_certified_key, load_roots, provider, TlsError};
pub use reload::ReloadingCert;

/// A certificate chain and its private key, both PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// This node's certificate and key for the node-to-node port, and the CA
/// that every peer's certificate must be signed by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerTlsFiles {
    pub own: TlsFiles,
    pub ca: PathBuf,
}

/// The TLS configurations of one node, loaded at start-up (an error stops
/// it): `None` where that part runs in the clear.
#[derive(Default)]
pub struct NodeTls {
    /// OTLP/gRPC.
    pub grpc: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// REST and OTLP/HTTP.
    pub http: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// The node-to-node listener (mutual TLS).
    pub peer_server: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Dialing peers (mutual TLS).
    pub peer_client: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl NodeTls {
    pub fn load(client: Option<&TlsFiles>, peer: Option<&PeerTlsFiles>) -> Result<Self, TlsError> {
        let mut tls = NodeTls::default();
        if let Some(files) = client {
            let cert = std::sync::Arc::new(ReloadingCert::load(&files.cert, &files.key)?);
            tls.grpc = Some(client_listener_config(cert.clone(), ALPN_H2)?);
            tls.http = Some(client_listener_config(cert, ALPN_HTTP1)?);
        }
        if let Some(files) = peer {
            let cert = std::sync::Arc::new(ReloadingCert::load(&files.own.cert, &files.own.key)?);
            let ca = load_roots(&files.ca)?;
            tls.peer_server = Some(peer_server_config(cert.clone(), ca.clone())?);
            tls.peer_client = Some(peer_client_config(cert, ca)?);
        }
        Ok(tls)
    }
}
