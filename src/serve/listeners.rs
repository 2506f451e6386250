//! Binding and serving the node's four listeners until shutdown, over plain
//! TCP or over TLS (`crate::tls`).

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::tls::{HandshakeFailures, TlsListener};

pub async fn bind(addr: &str, what: &str) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("binding the {what} address {addr}: {e}"))
}

/// TLS under one listener: its configuration, and how loudly a failed
/// handshake is logged there.
pub struct ListenerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub failures: HandshakeFailures,
}

impl ListenerTls {
    /// A client-facing listener.
    pub fn client(config: Option<Arc<rustls::ServerConfig>>) -> Option<ListenerTls> {
        config.map(|config| ListenerTls {
            config,
            failures: HandshakeFailures::Debug,
        })
    }

    /// The node-to-node listener.
    pub fn peer(config: Option<Arc<rustls::ServerConfig>>) -> Option<ListenerTls> {
        config.map(|config| ListenerTls {
            config,
            failures: HandshakeFailures::Warn,
        })
    }
}

fn start_tls(
    listener: tokio::net::TcpListener,
    tls: ListenerTls,
    what: &'static str,
) -> Result<TlsListener, String> {
    TlsListener::start(listener, tls.config, what, tls.failures)
        .map_err(|e| format!("starting the {what} TLS listener: {e}"))
}

fn spawn_served(
    served: BoxFuture<'static, Result<(), String>>,
    what: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = served.await {
            tracing::error!(error = %e, server = what, "server failed");
        }
    })
}

pub fn spawn_grpc(
    router: tonic::transport::server::Router,
    listener: tokio::net::TcpListener,
    tls: Option<ListenerTls>,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    let served: BoxFuture<'static, Result<(), String>> = match tls {
        None => {
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            Box::pin(async move {
                let r = router.serve_with_incoming_shutdown(incoming, stop).await;
                r.map_err(|e| e.to_string())
            })
        }
        Some(tls) => {
            let incoming = start_tls(listener, tls, what)?.into_stream();
            Box::pin(async move {
                let r = router.serve_with_incoming_shutdown(incoming, stop).await;
                r.map_err(|e| e.to_string())
            })
        }
    };
    Ok(spawn_served(served, what))
}

pub fn spawn_http(
    app: axum::Router,
    listener: tokio::net::TcpListener,
    tls: Option<ListenerTls>,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    let served: BoxFuture<'static, Result<(), String>> = match tls {
        None => Box::pin(async move {
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await;
            r.map_err(|e| e.to_string())
        }),
        Some(tls) => {
            let listener = start_tls(listener, tls, what)?;
            Box::pin(async move {
                let r = axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await;
                r.map_err(|e| e.to_string())
            })
        }
    };
    Ok(spawn_served(served, what))
}
