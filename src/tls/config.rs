//! rustls configurations: the client-facing listeners, and both ends of the
//! node-to-node port.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::pem::{provider, TlsError};
use super::reload::ReloadingCert;

/// gRPC (OTLP/gRPC and the node-to-node transport) is HTTP/2 only; gRPC
/// clients insist on negotiating it by ALPN.
pub const ALPN_H2: &[u8] = b"h2";
/// The HTTP listeners (REST, OTLP/HTTP) speak HTTP/1.1.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

fn config_error(e: rustls::Error) -> TlsError {
    TlsError::Config(e.to_string())
}

/// A listener that any client may reach (clients prove who they are with
/// an API key, not a certificate).
pub fn client_listener_config(
    cert: Arc<ReloadingCert>,
    alpn: &[u8],
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// The node-to-node listener: a peer must present a certificate signed by
/// the cluster's CA.
pub fn peer_server_config(
    cert: Arc<ReloadingCert>,
    ca: Arc<RootCertStore>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(ca, provider())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// Dialing a peer: present this node's certificate, accept only a peer
/// whose certificate the CA signed for the address dialed.
pub fn peer_client_config(
    cert: Arc<ReloadingCert>,
    ca: Arc<RootCertStore>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_root_certificates(ca)
        .with_client_cert_resolver(cert);
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}
