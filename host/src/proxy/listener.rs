//! One of the proxy's listeners: plain TCP or rustls (ALPN picks h2 or
//! HTTP/1.1; in clear text, h2 with prior knowledge is detected from the
//! preface), its connections bounded and timed as [`crate::accept`] says,
//! each request handed to [`Proxy::handle`] with what is known of its
//! connection.

use std::convert::Infallible;
use std::sync::Arc;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::hygiene::ClientTrust;
use super::{ConnectionInfo, Proxy};
use crate::accept::{Acceptor, ConnectionBounds, ConnectionToken, RequestGuard};
use crate::config::{Limits, ListenerConfig};
use crate::shutdown::Shutdown;

/// A bound listener, ready to serve.
#[derive(Debug)]
pub struct Listener {
    name: Arc<str>,
    acceptor: Acceptor,
    trust: ClientTrust,
}

impl Listener {
    /// Wraps a bound socket with its settings.
    pub fn new(
        config: &ListenerConfig,
        limits: &Limits,
        socket: TcpListener,
        tls: Option<TlsAcceptor>,
    ) -> Self {
        let bounds = ConnectionBounds {
            max_connections: config.max_connections,
            max_per_client: config.connections_per_client(),
            idle_timeout: limits.idle_timeout,
            first_request_timeout: limits.header_read_timeout,
        };
        Self {
            name: config.name.as_str().into(),
            acceptor: Acceptor::new(&config.name, socket, tls, bounds),
            trust: ClientTrust {
                forwarded: config.trust_forwarded,
                underscores: config.underscores_in_headers,
            },
        }
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.acceptor.local_addr()
    }

    /// Accepts connections until draining begins.
    pub async fn serve(
        self,
        proxy: Arc<Proxy>,
        http: Arc<auto::Builder<TokioExecutor>>,
        shutdown: Shutdown,
        token: ConnectionToken,
    ) {
        let (name, trust) = (self.name, self.trust);
        self.acceptor
            .serve(http, shutdown, Some(token), move |accepted| {
                let info = Arc::new(ConnectionInfo {
                    listener: name.clone(),
                    trust,
                    tls: accepted.tls,
                    remote: accepted.remote,
                    forwarded_for: http::HeaderValue::try_from(accepted.remote.ip().to_string())
                        .unwrap_or_else(|_| http::HeaderValue::from_static("unknown")),
                    client_certificates: accepted.client_certificates,
                });
                let proxy = proxy.clone();
                move |request, guard: RequestGuard| {
                    let (proxy, info) = (proxy.clone(), info.clone());
                    async move { Ok::<_, Infallible>(guard.track(proxy.handle(&info, request).await)) }
                }
            })
            .await;
    }
}
