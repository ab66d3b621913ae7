//! Accepting and serving connections on a listening socket, for the proxy's
//! listeners and the admin listener alike, so both get the same protection
//! from clients that connect and do nothing: at most `max_connections` at
//! once (more wait in the kernel backlog) and at most
//! `max_connections_per_client` from one address (more are closed at once);
//! a TLS handshake within [`TLS_HANDSHAKE_TIMEOUT`]; a first request, and
//! an HTTP/1.1 request head, within `header_read_timeout` (for the head,
//! hyper's timer, which also ends a keep-alive connection waiting for its
//! next request); HTTP/2 pings every
//! `http2_keepalive_interval`, answered within as long; and any connection
//! on which no handler is at work and no response body has moved for
//! `idle_timeout`, HTTP/2 included (which has no head timer), closed
//! gracefully, and dropped if it does not finish closing: a client that
//! stops reading a response (an HTTP/2 window of zero) holds no slot. When `stop` begins draining, the accept
//! loop ends and each connection closes after its current requests.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::config::Limits;
use crate::shutdown::Shutdown;

/// Time a client has to complete the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after an accept error (out of file descriptors, say) before retrying.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Dropped by each connection when it ends; whoever holds the receiver
/// learns when all of them have.
pub type ConnectionToken = mpsc::Sender<()>;

/// A connection as accepted, before its first request.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The client's address.
    pub remote: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The client's verified certificate chain, where one was asked for.
    pub client_certificates: Option<Vec<CertificateDer<'static>>>,
}

/// How many connections a listener serves, and how long an idle one lives.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionBounds {
    /// Connections at once.
    pub max_connections: usize,
    /// Connections at once from one client address.
    pub max_per_client: usize,
    /// No request in flight for this long: the connection is closed.
    pub idle_timeout: Duration,
    /// No first request within this long (`header_read_timeout`): the
    /// connection is closed, HTTP/2 ones included, which have no head timer.
    pub first_request_timeout: Duration,
}

/// A bound socket and what it takes to serve it.
pub struct Acceptor {
    /// For logs: the listener's name, or `admin`.
    name: Arc<str>,
    socket: TcpListener,
    tls: Option<TlsAcceptor>,
    bounds: ConnectionBounds,
    slots: Arc<Semaphore>,
    clients: Arc<ClientCounts>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("name", &self.name)
            .field("socket", &self.socket)
            .field("tls", &self.tls.is_some())
            .field("bounds", &self.bounds)
            .finish_non_exhaustive()
    }
}

impl Acceptor {
    /// Wraps a bound socket.
    pub fn new(
        name: &str,
        socket: TcpListener,
        tls: Option<TlsAcceptor>,
        bounds: ConnectionBounds,
    ) -> Acceptor {
        Acceptor {
            name: name.into(),
            socket,
            tls,
            slots: Arc::new(Semaphore::new(bounds.max_connections)),
            clients: Arc::default(),
            bounds,
        }
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Accepts connections until `stop` begins draining, serving each
    /// request of a connection with the handler `connect` made for it once
    /// it was accepted (and its TLS handshake done). The handler answers
    /// through the request's [`RequestGuard`]. `token` is held by every
    /// connection until it ends.
    pub async fn serve<C, H, F, B>(
        self,
        http: Arc<auto::Builder<TokioExecutor>>,
        stop: Shutdown,
        token: Option<ConnectionToken>,
        connect: C,
    ) where
        C: Fn(Accepted) -> H + Send + Sync + 'static,
        H: Fn(Request<Incoming>, RequestGuard) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Response<Tracked<B>>, Infallible>> + Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let connect = Arc::new(connect);
        loop {
            let slot = tokio::select! {
                slot = self.slots.clone().acquire_owned() => slot,
                () = stop.draining() => break,
            };
            let Ok(slot) = slot else { break };
            let accepted = tokio::select! {
                accepted = self.socket.accept() => accepted,
                () = stop.draining() => break,
            };
            let (stream, remote) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(listener = %self.name, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            };
            let Some(client) = self.clients.admit(remote.ip(), self.bounds.max_per_client) else {
                tracing::debug!(listener = %self.name, %remote, "closed at once: this address holds max_connections_per_client");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let connection = Connection {
                _slot: slot,
                _client: client,
                _token: token.clone(),
                http: http.clone(),
                stop: stop.clone(),
                idle_timeout: self.bounds.idle_timeout,
                first_request_timeout: self.bounds.first_request_timeout,
            };
            let (tls, connect) = (self.tls.clone(), connect.clone());
            tokio::spawn(async move {
                let mut accepted = Accepted {
                    remote,
                    tls: tls.is_some(),
                    client_certificates: None,
                };
                match tls {
                    None => connection.serve(stream, (*connect)(accepted)).await,
                    Some(acceptor) => {
                        let Some(stream) = handshake(acceptor, stream, remote).await else {
                            return;
                        };
                        accepted.client_certificates =
                            stream.get_ref().1.peer_certificates().map(|chain| {
                                chain.iter().map(|c| c.clone().into_owned()).collect()
                            });
                        connection.serve(stream, (*connect)(accepted)).await;
                    }
                }
            });
        }
        tracing::info!(listener = %self.name, "stopped accepting connections");
    }
}

/// What one connection holds while it is served: its slot among the
/// listener's connections and its client's, and the drain token.
struct Connection {
    _slot: OwnedSemaphorePermit,
    _client: ClientSlot,
    _token: Option<ConnectionToken>,
    http: Arc<auto::Builder<TokioExecutor>>,
    stop: Shutdown,
    idle_timeout: Duration,
    first_request_timeout: Duration,
}

impl Connection {
    /// Serves requests with `handler` until the client leaves, the
    /// connection has been idle for `idle_timeout`, or draining closes it.
    async fn serve<I, H, F, B>(self, io: I, handler: H)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Fn(Request<Incoming>, RequestGuard) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Response<Tracked<B>>, Infallible>> + Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let activity = Arc::new(Activity::new());
        let service = {
            let activity = activity.clone();
            service_fn(move |request| handler(request, RequestGuard(activity.begin())))
        };
        let connection = self
            .http
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(connection);
        let result = loop {
            let idle_at = activity.idle_deadline(self.idle_timeout, self.first_request_timeout);
            tokio::select! {
                result = connection.as_mut() => break result,
                () = self.stop.draining() => {
                    connection.as_mut().graceful_shutdown();
                    break connection.await;
                }
                () = tokio::time::sleep_until(idle_at) => {
                    if activity.idle_deadline(self.idle_timeout, self.first_request_timeout) <= Instant::now() {
                        connection.as_mut().graceful_shutdown();
                        // An HTTP/2 client that never answers the goodbye's
                        // ping would hold it open: still idle a head timeout
                        // later, it is dropped.
                        let grace = self.first_request_timeout.min(self.idle_timeout);
                        break loop {
                            tokio::select! {
                                result = connection.as_mut() => break result,
                                () = tokio::time::sleep(grace) => {
                                    if activity.idle_deadline(self.idle_timeout, self.first_request_timeout) <= Instant::now() {
                                        break Ok(());
                                    }
                                }
                            }
                        };
                    }
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }
}

/// Whether a connection has requests in flight, and since when it has not.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    /// Requests whose handler has not answered yet (held for approval,
    /// waiting on the backend...): the connection is not idle meanwhile.
    handling: AtomicUsize,
    /// Milliseconds after `opened` of the last sign of life: a request
    /// answered, a piece of a response body sent or ended; [`NEVER`] before
    /// the first request.
    last_progress_ms: AtomicU64,
}

/// `last_progress_ms` of a connection that has asked nothing yet.
const NEVER: u64 = u64::MAX;

/// One request being handled; ends when dropped (answered or abandoned).
#[derive(Debug)]
struct Handling(Arc<Activity>);

/// A request being served: the connection is not idle while its handler
/// works. The handler answers through [`RequestGuard::track`]; from then on
/// the response body counts as life only while it moves, so a client that
/// stops reading it (an HTTP/2 window of zero, a full TCP window) leaves
/// the connection idle.
#[derive(Debug)]
pub struct RequestGuard(Handling);

impl RequestGuard {
    /// `response`, its body marking each piece sent as progress.
    pub fn track<B>(self, response: Response<B>) -> Response<Tracked<B>> {
        let activity = self.0 .0.clone();
        response.map(|body| Tracked {
            body,
            activity: Some(activity),
        })
    }
}

/// A response body whose pieces, as they go, keep its connection from
/// being idle (a long download is not idle; a stuck one is).
#[derive(Debug)]
pub struct Tracked<B> {
    body: B,
    activity: Option<Arc<Activity>>,
}

impl<B: http_body::Body + Unpin> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let std::task::Poll::Ready(piece) = &polled {
            if let Some(activity) = &self.activity {
                activity.progressed();
            }
            if piece.is_none() {
                self.activity = None;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            handling: AtomicUsize::new(0),
            last_progress_ms: AtomicU64::new(NEVER),
        }
    }

    fn begin(self: &Arc<Self>) -> Handling {
        // No time noted: while it is handled, the connection is not idle,
        // and its end is noted as progress.
        self.handling.fetch_add(1, Ordering::SeqCst);
        Handling(self.clone())
    }

    /// Notes a sign of life now.
    fn progressed(&self) {
        let now_ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(NEVER - 1);
        self.last_progress_ms.store(now_ms, Ordering::SeqCst);
    }

    /// When the connection will have been idle for `timeout` (or, before
    /// its first request, for `first_request`); while a handler works,
    /// `timeout` from now (to look again then).
    fn idle_deadline(&self, timeout: Duration, first_request: Duration) -> Instant {
        if self.handling.load(Ordering::SeqCst) > 0 {
            return Instant::now() + timeout;
        }
        match self.last_progress_ms.load(Ordering::SeqCst) {
            NEVER => self.opened + first_request.min(timeout),
            last => self.opened + Duration::from_millis(last) + timeout,
        }
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        // The time first, so a watcher that sees no handler sees it.
        self.0.progressed();
        self.0.handling.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Connections per client address.
#[derive(Debug, Default)]
struct ClientCounts(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place in its client's count; given back when dropped.
struct ClientSlot {
    counts: Arc<ClientCounts>,
    ip: IpAddr,
}

impl ClientCounts {
    /// A slot for one more connection from `ip`, unless it holds `max`.
    fn admit(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        let mut counts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    remote: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%remote, "TLS handshake timed out");
            None
        }
    }
}

/// The hyper connection settings a listener's connections share, from the
/// limits.
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
        .max_concurrent_streams(256)
        .keep_alive_interval(limits.http2_keepalive_interval)
        .keep_alive_timeout(limits.http2_keepalive_interval);
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_address_holds_at_most_its_share_and_gets_slots_back() {
        let counts = Arc::new(ClientCounts::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = counts.admit(a, 2).unwrap();
        let second = counts.admit(a, 2).unwrap();
        assert!(counts.admit(a, 2).is_none(), "a third from one address");
        assert!(
            counts.admit(b, 2).is_some(),
            "another address is not affected"
        );
        drop(first);
        assert!(
            counts.admit(a, 2).is_some(),
            "a slot given back is free again"
        );
        drop(second);
    }

    #[tokio::test(start_paused = true)]
    async fn idleness_counts_from_the_last_progress_and_not_while_a_handler_works() {
        use http_body::Body as _;
        let activity = Arc::new(Activity::new());
        let timeout = Duration::from_secs(60);
        let first_request = Duration::from_secs(10);
        assert_eq!(
            activity.idle_deadline(timeout, first_request),
            activity.opened + first_request,
            "a connection that never asked anything gets the head timeout"
        );
        assert_eq!(
            activity.idle_deadline(timeout, timeout),
            activity.opened + timeout
        );
        let request = RequestGuard(activity.begin());
        tokio::time::advance(Duration::from_secs(90)).await;
        assert!(
            activity.idle_deadline(timeout, timeout) > Instant::now(),
            "a connection whose handler works is not idle"
        );
        // Answered: from now on only the body's pieces are progress.
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(vec![Ok::<
            _,
            std::convert::Infallible,
        >(
            http_body::Frame::data(Bytes::from_static(b"x")),
        )]));
        let mut response = request.track(Response::new(body));
        let answered = Instant::now();
        assert_eq!(activity.idle_deadline(timeout, timeout), answered + timeout);
        tokio::time::advance(Duration::from_secs(70)).await;
        assert!(
            activity.idle_deadline(timeout, timeout) <= Instant::now(),
            "a response that does not move is idle"
        );
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let piece = std::pin::Pin::new(response.body_mut()).poll_frame(&mut cx);
        assert!(matches!(piece, std::task::Poll::Ready(Some(Ok(_)))));
        assert_eq!(
            activity.idle_deadline(timeout, timeout),
            Instant::now() + timeout
        );
    }
}
