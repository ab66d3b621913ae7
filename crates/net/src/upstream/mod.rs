//! Talking to backends. HTTP/1.1 pools use Airlock's own lean connection pool
//! ([`h1`]): the exchange runs inside the request's own task, with no channel
//! or connection task in between, which is most of the difference in CPU per
//! request against a general-purpose client (see BENCHMARKS.md). HTTP/2 pools
//! use hyper's client, whose multiplexing they need.
//!
//! Either way the caller gets a [`Reply`]: a streaming response, or, for an
//! `Upgrade` the backend accepted, the raw connection to tunnel.

pub mod body;
pub mod h1;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::tls::{self, TlsError};
use airlock_config::{Limits, PoolConfig, UpstreamTls};
use body::{BoxError, ProxyBody};

/// What a backend answered.
#[derive(Debug)]
pub enum Reply {
    /// A response, its body streaming from the backend.
    Response(Response<ProxyBody>),
    /// `101 Switching Protocols`: the response head and the raw connection.
    Switched(http::response::Parts, Upgraded),
}

impl Reply {
    /// The backend's status.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Reply::Response(response) => response.status(),
            Reply::Switched(head, _) => head.status,
        }
    }
}

/// Why an exchange with a backend failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The TCP connection could not be opened.
    #[error("connect: {0}")]
    Connect(#[source] io::Error),
    /// Opening the connection (and its TLS handshake) took too long.
    #[error("connect: no connection within {0:?}")]
    ConnectTimeout(Duration),
    /// The TLS handshake failed (untrusted certificate, wrong name...).
    #[error("TLS handshake: {0}")]
    Tls(#[source] io::Error),
    /// Reading or writing the connection failed.
    #[error("connection: {0}")]
    Io(#[source] io::Error),
    /// The backend closed the connection before a complete response.
    #[error("the backend closed the connection before a complete response")]
    Closed,
    /// The backend's response is not valid HTTP/1.1.
    #[error("invalid response: {0}")]
    Protocol(String),
    /// The client's request body failed (too large, or the client went away).
    #[error("request body: {0}")]
    RequestBody(#[source] BoxError),
    /// hyper's HTTP/2 client failed.
    #[error(transparent)]
    Http2(hyper_util::client::legacy::Error),
}

impl UpstreamError {
    /// Whether the backend (or the way to it) failed, as opposed to the
    /// client's request body: only the former counts toward passive ejection.
    pub fn is_backend_fault(&self) -> bool {
        !matches!(self, UpstreamError::RequestBody(_))
    }
}

/// Whether a request may be sent twice: an idempotent method (RFC 9110 9.2.2)
/// and no body, so nothing the client sent can be lost or doubled.
pub fn replayable(head: &http::request::Parts, body: &ProxyBody) -> bool {
    use http_body::Body as _;
    head.method.is_idempotent() && body.is_end_stream()
}

/// A pool's client. Cheap to clone; clones share connections.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    inner: Inner,
}

#[derive(Clone, Debug)]
enum Inner {
    Http1(Arc<h1::ConnectionPool>),
    Http2 {
        client: Box<Client<HttpsConnector<HttpConnector>, ProxyBody>>,
        scheme: Scheme,
    },
}

impl UpstreamClient {
    /// Builds the client for one pool.
    pub fn build(pool: &PoolConfig, limits: &Limits) -> Result<Self, TlsError> {
        let tls_settings = pool.tls.clone();
        let inner = if pool.http2 {
            Inner::Http2 {
                client: Box::new(http2_client(tls_settings.unwrap_or_default(), limits)?),
                scheme: if pool.tls.is_some() {
                    Scheme::HTTPS
                } else {
                    Scheme::HTTP
                },
            }
        } else {
            let tls = match &tls_settings {
                Some(settings) => {
                    let mut config = tls::upstream_client_config(settings)?;
                    config.alpn_protocols = vec![b"http/1.1".to_vec()];
                    Some(UpstreamTlsConnector {
                        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
                        server_name: server_name(settings),
                    })
                }
                None => None,
            };
            let connector = Connector {
                tls,
                connect_timeout: limits.connect_timeout,
            };
            Inner::Http1(Arc::new(h1::ConnectionPool::new(
                pool.backends.len(),
                connector,
                limits.upstream_idle_timeout,
            )))
        };
        Ok(Self { inner })
    }

    /// Sends a request (`head`, whose URI is the path and query, and `body`)
    /// to backend `index` of the pool, at `authority`, and waits for the
    /// response head. The head is borrowed, so a retry can send it again.
    pub async fn send(
        &self,
        index: usize,
        authority: &Authority,
        head: &http::request::Parts,
        body: ProxyBody,
    ) -> Result<Reply, UpstreamError> {
        match &self.inner {
            Inner::Http1(pool) => pool.send(index, authority, head, body).await,
            Inner::Http2 { client, scheme } => {
                let mut request = Request::from_parts(head.clone(), body);
                let mut uri = request.uri().clone().into_parts();
                uri.scheme = Some(scheme.clone());
                uri.authority = Some(authority.clone());
                *request.uri_mut() =
                    Uri::from_parts(uri).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
                *request.version_mut() = http::Version::HTTP_2;
                let response = client
                    .request(request)
                    .await
                    .map_err(UpstreamError::Http2)?;
                Ok(Reply::Response(
                    response.map(|b| b.map_err(BoxError::from).boxed()),
                ))
            }
        }
    }
}

fn http2_client(
    tls: UpstreamTls,
    limits: &Limits,
) -> Result<Client<HttpsConnector<HttpConnector>, ProxyBody>, TlsError> {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(limits.connect_timeout));
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(tls::upstream_client_config(&tls)?)
        .https_or_http();
    let builder = match server_name(&tls) {
        Some(name) => builder.with_server_name_resolver(FixedServerNameResolver::new(name)),
        None => builder,
    };
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(limits.upstream_idle_timeout)
        .http2_only(true)
        .http2_adaptive_window(true)
        .build(builder.enable_http2().wrap_connector(tcp)))
}

fn server_name(tls: &UpstreamTls) -> Option<ServerName<'static>> {
    // Validated by the config loader.
    tls.server_name
        .as_deref()
        .and_then(|n| ServerName::try_from(n.to_owned()).ok())
}

/// Opens connections to backends: TCP, then TLS where the pool asks for it.
#[derive(Debug)]
pub struct Connector {
    tls: Option<UpstreamTlsConnector>,
    connect_timeout: Duration,
}

struct UpstreamTlsConnector {
    connector: tokio_rustls::TlsConnector,
    /// Overrides the backend's host as SNI and verified name.
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for UpstreamTlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTlsConnector")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl Connector {
    /// Opens a connection (and its TLS session) within the connect timeout.
    pub async fn connect(&self, authority: &Authority) -> Result<Stream, UpstreamError> {
        let open = async {
            let tcp = TcpStream::connect(authority.as_str())
                .await
                .map_err(UpstreamError::Connect)?;
            let _ = tcp.set_nodelay(true);
            let Some(tls) = &self.tls else {
                return Ok(Stream::Plain(tcp));
            };
            let name = match &tls.server_name {
                Some(name) => name.clone(),
                None => ServerName::try_from(
                    authority
                        .host()
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_owned(),
                )
                .map_err(|e| UpstreamError::Tls(io::Error::new(io::ErrorKind::InvalidInput, e)))?,
            };
            let stream = tls
                .connector
                .connect(name, tcp)
                .await
                .map_err(UpstreamError::Tls)?;
            Ok(Stream::Tls(Box::new(stream)))
        };
        tokio::time::timeout(self.connect_timeout, open)
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(self.connect_timeout))?
    }
}

/// A connection to a backend, in clear text or TLS.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A backend connection after `101 Switching Protocols`: bytes the backend
/// sent after the response head come first, then the connection itself.
#[derive(Debug)]
pub struct Upgraded {
    /// Read past the response head before the switch.
    leftover: Bytes,
    io: Stream,
}

impl Upgraded {
    pub(crate) fn new(io: Stream, leftover: Bytes) -> Self {
        Self { leftover, io }
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.leftover.has_remaining() {
            let n = self.leftover.len().min(buf.remaining());
            buf.put_slice(&self.leftover[..n]);
            self.leftover.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
