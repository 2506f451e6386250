//! Accepting TLS connections on a bound TCP listener.
//!
//! Handshakes run in their own tasks, each bounded in time, and finished
//! streams are handed over through a channel: a client that connects and
//! sends nothing (or plain HTTP) cannot hold up anyone else's handshake. The
//! same listener feeds axum (`axum::serve::Listener`) and tonic
//! (`serve_with_incoming`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A handshake not finished by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once, at most; further connections wait in the
/// kernel's accept queue.
const MAX_PENDING_HANDSHAKES: usize = 1024;
/// Finished connections waiting for the server to take them.
const ACCEPTED_QUEUE: usize = 64;

type Accepted = (TlsStream<TcpStream>, SocketAddr);

/// How loudly a failed handshake is logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeFailures {
    /// Client listeners: scanners and plain-HTTP clients are not the
    /// operator's problem, and each one would be a log line.
    Debug,
    /// The node-to-node port: a failure there is a misconfigured or foreign
    /// node (a certificate the CA did not sign), worth a warning.
    Warn,
}

/// TLS connections accepted on one address. Dropping it stops accepting.
pub struct TlsListener {
    accepted: mpsc::Receiver<Accepted>,
    local_addr: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener`; `what` names it in logs.
    pub fn start(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        what: &'static str,
        failures: HandshakeFailures,
    ) -> std::io::Result<TlsListener> {
        let local_addr = listener.local_addr()?;
        let (tx, accepted) = mpsc::channel(ACCEPTED_QUEUE);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(accept_loop(listener, acceptor, tx, what, failures));
        Ok(TlsListener {
            accepted,
            local_addr,
        })
    }

    /// The connections as a stream, for tonic's `serve_with_incoming`.
    pub fn into_stream(self) -> impl Stream<Item = std::io::Result<TlsStream<TcpStream>>> {
        futures::stream::unfold(self.accepted, |mut rx| async move {
            let (stream, _) = rx.recv().await?;
            Some((Ok(stream), rx))
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<Accepted>,
    what: &'static str,
    failures: HandshakeFailures,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            _ = tx.closed() => return,
            p = pending.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let (tcp, addr) = tokio::select! {
            _ = tx.closed() => return,
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: pause, go on.
                    tracing::warn!(error = %e, listener = what, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send((stream, addr)).await;
                }
                Ok(Err(e)) if failures == HandshakeFailures::Warn => {
                    tracing::warn!(error = %e, peer = %addr, listener = what, "TLS handshake failed")
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, peer = %addr, listener = what, "TLS handshake failed")
                }
                Err(_) => {
                    tracing::debug!(peer = %addr, listener = what, "TLS handshake timed out")
                }
            }
            drop(permit);
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept loop ends only once this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
