//! Accepting and serving client connections on one listener: plain TCP or
//! rustls (ALPN picks h2 or HTTP/1.1; in clear text, h2 with prior knowledge is
//! detected from the preface), at most `max_connections` at once, each served
//! by hyper with upgrades enabled. When draining begins, the accept loop stops
//! and each connection closes gracefully after its current request.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::{ConnectionInfo, Proxy};
use crate::config::{Limits, ListenerConfig};
use crate::shutdown::Shutdown;

/// Time a client has to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after an accept error (out of file descriptors, say) before retrying.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// A bound listener, ready to serve.
pub struct Listener {
    name: Arc<str>,
    socket: TcpListener,
    tls: Option<TlsAcceptor>,
    trust_forwarded: bool,
    slots: Arc<Semaphore>,
}

/// Dropped by each connection when it ends; the server waits for all of them.
pub type ConnectionToken = mpsc::Sender<()>;

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("name", &self.name)
            .field("socket", &self.socket)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Listener {
    /// Wraps a bound socket with its settings.
    pub fn new(config: &ListenerConfig, socket: TcpListener, tls: Option<TlsAcceptor>) -> Self {
        Self {
            name: config.name.as_str().into(),
            socket,
            tls,
            trust_forwarded: config.trust_forwarded,
            slots: Arc::new(Semaphore::new(config.max_connections)),
        }
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.socket.local_addr()
    }

    /// Accepts connections until draining begins.
    pub async fn serve(
        self,
        proxy: Arc<Proxy>,
        http: Arc<auto::Builder<TokioExecutor>>,
        shutdown: Shutdown,
        token: ConnectionToken,
    ) {
        loop {
            let slot = tokio::select! {
                slot = self.slots.clone().acquire_owned() => slot,
                () = shutdown.draining() => break,
            };
            let Ok(slot) = slot else { break };
            let accepted = tokio::select! {
                accepted = self.socket.accept() => accepted,
                () = shutdown.draining() => break,
            };
            let (stream, remote) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(listener = %self.name, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let info = ConnectionInfo {
                listener: self.name.clone(),
                trust_forwarded: self.trust_forwarded,
                tls: self.tls.is_some(),
                remote,
                forwarded_for: http::HeaderValue::try_from(remote.ip().to_string())
                    .unwrap_or_else(|_| http::HeaderValue::from_static("unknown")),
                client_certificates: None,
            };
            let (proxy, http, shutdown, token, tls) = (
                proxy.clone(),
                http.clone(),
                shutdown.clone(),
                token.clone(),
                self.tls.clone(),
            );
            tokio::spawn(async move {
                let _slot = slot;
                let _token = token;
                match tls {
                    None => serve_connection(stream, info, proxy, &http, shutdown).await,
                    Some(acceptor) => {
                        if let Some((stream, info)) = handshake(acceptor, stream, info).await {
                            serve_connection(stream, info, proxy, &http, shutdown).await;
                        }
                    }
                }
            });
        }
        tracing::info!(listener = %self.name, "stopped accepting connections");
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    mut info: ConnectionInfo,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, ConnectionInfo)> {
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            info.client_certificates = stream
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect());
            Some((stream, info))
        }
        Ok(Err(e)) => {
            tracing::debug!(remote = %info.remote, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(remote = %info.remote, "TLS handshake timed out");
            None
        }
    }
}

async fn serve_connection<I>(
    io: I,
    info: ConnectionInfo,
    proxy: Arc<Proxy>,
    http: &auto::Builder<TokioExecutor>,
    shutdown: Shutdown,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = Arc::new(info);
    let remote = info.remote;
    let service = service_fn(move |request| {
        let (proxy, info) = (proxy.clone(), info.clone());
        async move { Ok::<_, Infallible>(proxy.handle(&info, request).await) }
    });
    let connection = http.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.draining() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}

/// The hyper connection settings every listener shares, from the limits.
pub fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper refuses a request head larger than its read buffer with 431.
        .max_buf_size(limits.max_header_bytes.max(8192) as usize);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes.min(u64::from(u32::MAX)) as u32)
        .max_concurrent_streams(256);
    builder
}
