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

fn start_tls(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    what: &'static str,
) -> Result<TlsListener, String> {
    // The node-to-node listener is the only one called "raft".
    let failures = if what == "raft" {
        HandshakeFailures::Warn
    } else {
        HandshakeFailures::Debug
    };
    TlsListener::start(listener, config, what, failures)
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
    tls: Option<Arc<rustls::ServerConfig>>,
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
        Some(config) => {
            let incoming = start_tls(listener, config, what)?.into_stream();
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
    tls: Option<Arc<rustls::ServerConfig>>,
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
        Some(config) => {
            let listener = start_tls(listener, config, what)?;
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
