//! HTTP/1.1 to backends, driven by the request's own task.
//!
//! A [`ConnectionPool`] keeps, per backend, a stack of idle keep-alive
//! connections (most recently used first, so a warm few carry the load). A
//! request takes one (or opens one) and runs an *exchange* on it: the head and
//! body are written while the response head is read, so a backend that answers
//! before reading the whole body (or echoes it as it reads) cannot deadlock us.
//! The response body is read from the socket as the client consumes it, with
//! the framing RFC 9112 section 6.3 prescribes (none, length, chunked, or until
//! close), and the connection goes back to the pool when both sides are
//! complete and the backend did not ask to close.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Method, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::AsyncWrite;

use super::body::{self, BoxError, ProxyBody};
use super::{Connector, Reply, Stream, Upgraded, UpstreamError};

/// Largest response head accepted from a backend.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Most response headers accepted from a backend.
const MAX_RESPONSE_HEADERS: usize = 128;
/// Longest chunk-size or trailer line accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
/// Idle connections kept per backend; more are closed.
const MAX_IDLE_PER_BACKEND: usize = 512;

/// Idle keep-alive connections, per backend of one pool.
#[derive(Debug)]
pub struct ConnectionPool {
    idle: Box<[Mutex<Vec<Idle>>]>,
    connector: Connector,
    idle_timeout: Duration,
}

#[derive(Debug)]
struct Idle {
    connection: Connection,
    since: Instant,
}

/// One connection to a backend and what has been read from it.
#[derive(Debug)]
struct Connection {
    io: Stream,
    read_buf: BytesMut,
}

impl ConnectionPool {
    /// A pool for `backends` backends.
    pub fn new(backends: usize, connector: Connector, idle_timeout: Duration) -> Self {
        Self {
            idle: (0..backends).map(|_| Mutex::new(Vec::new())).collect(),
            connector,
            idle_timeout,
        }
    }

    /// Runs one exchange with backend `index` and returns its response head,
    /// the body streaming behind it.
    pub async fn send(
        self: &Arc<Self>,
        index: usize,
        authority: &Authority,
        head: &http::request::Parts,
        body: ProxyBody,
    ) -> Result<Reply, UpstreamError> {
        let replayable = super::replayable(head, &body);
        let Some(pooled) = self.checkout(index) else {
            let fresh = self.connect(authority).await?;
            return self.exchange(index, fresh, authority, head, body).await;
        };
        match self.exchange(index, pooled, authority, head, body).await {
            // The backend closed a kept-alive connection as the request went
            // out (the idle probe narrows this window but cannot shut it): a
            // replayable request tries once more on a fresh connection.
            Err(UpstreamError::Closed | UpstreamError::Io(_)) if replayable => {
                let fresh = self.connect(authority).await?;
                self.exchange(index, fresh, authority, head, body::empty())
                    .await
            }
            other => other,
        }
    }

    async fn connect(&self, authority: &Authority) -> Result<Connection, UpstreamError> {
        Ok(Connection {
            io: self.connector.connect(authority).await?,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
        })
    }

    /// One request/response exchange on `connection`.
    async fn exchange(
        self: &Arc<Self>,
        index: usize,
        connection: Connection,
        authority: &Authority,
        head: &http::request::Parts,
        body: ProxyBody,
    ) -> Result<Reply, UpstreamError> {
        let head_request = head.method == Method::HEAD;
        let mut exchange = Exchange::start(connection, head, body, authority);
        let mut head = std::future::poll_fn(|cx| exchange.poll_response_head(cx)).await?;

        if head.status == StatusCode::SWITCHING_PROTOCOLS {
            let leftover = exchange.connection.read_buf.split().freeze();
            let (parts, ()) = head.into_response(()).into_parts();
            return Ok(Reply::Switched(
                parts,
                Upgraded::new(exchange.connection.io, leftover),
            ));
        }
        let framing = response_framing(&head, head_request)?;
        if head.headers.contains_key(header::TRANSFER_ENCODING) {
            // Transfer-Encoding overrides Content-Length (RFC 9112 6.3): a
            // length sent beside it is wrong for what the client will get.
            head.headers.remove(header::CONTENT_LENGTH);
        }
        let reusable = head.keep_alive && !matches!(framing, Framing::UntilClose);
        let mut body = ResponseBody {
            exchange: Some(exchange),
            framing,
            reusable,
            pool: self.clone(),
            index,
        };
        let body: ProxyBody = if body.is_end_stream() {
            // Nothing to read: hand the connection back now (if the request
            // side is complete too) and answer with an empty body.
            body.finish();
            body::empty()
        } else {
            body.boxed()
        };
        Ok(Reply::Response(head.into_response(body)))
    }

    /// The most recently used idle connection that is still good, if any.
    /// The lock is held only to pop; the probe (a syscall) runs outside it.
    fn checkout(&self, index: usize) -> Option<Connection> {
        loop {
            let Idle { connection, since } = self.idle[index]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()?;
            if since.elapsed() < self.idle_timeout && connection.is_quiet() {
                return Some(connection);
            }
        }
    }

    fn checkin(&self, index: usize, connection: Connection) {
        let mut idle = self.idle[index].lock().unwrap_or_else(|p| p.into_inner());
        // The bottom of the stack is the longest idle: let it go once stale.
        if idle
            .first()
            .is_some_and(|i| i.since.elapsed() >= self.idle_timeout)
        {
            idle.remove(0);
        }
        if idle.len() < MAX_IDLE_PER_BACKEND {
            idle.push(Idle {
                connection,
                since: Instant::now(),
            });
        }
    }
}

impl Connection {
    /// Whether an idle connection is still usable: the backend has neither
    /// closed it nor sent anything unasked. A non-blocking peek at the socket
    /// decides (a FIN the reactor has not seen yet is seen by the kernel), so a
    /// POST is not sent down a connection the backend already closed.
    fn is_quiet(&self) -> bool {
        if !self.read_buf.is_empty() {
            return false;
        }
        let tcp = match &self.io {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        };
        let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        matches!(socket2::SockRef::from(tcp).peek(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Reads more into the buffer; `Ok(0)` is the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, UpstreamError>> {
        if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK / 4 {
            self.read_buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read_buf)
            .map_err(UpstreamError::Io)
    }
}

/// How a request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestFraming {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length,
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// One request/response exchange on a connection.
#[derive(Debug)]
struct Exchange {
    connection: Connection,
    /// Request bytes not yet written.
    out: VecDeque<Bytes>,
    /// The rest of the request body, still coming from the client.
    body: Option<ProxyBody>,
    chunked: bool,
    /// Every request byte has been written.
    request_done: bool,
}

impl Exchange {
    fn start(
        connection: Connection,
        parts: &http::request::Parts,
        body: ProxyBody,
        authority: &Authority,
    ) -> Self {
        let framing = if body.is_end_stream() {
            RequestFraming::Empty
        } else if body.size_hint().exact().is_some() {
            RequestFraming::Length
        } else {
            RequestFraming::Chunked
        };
        let head = encode_request_head(parts, authority, framing, body.size_hint().exact());
        let has_body = framing != RequestFraming::Empty;
        Self {
            connection,
            out: VecDeque::from([head]),
            body: has_body.then_some(body),
            chunked: framing == RequestFraming::Chunked,
            request_done: false,
        }
    }

    /// Writes the request, pulling the body from the client as the backend
    /// takes it. Ready when every byte is written.
    fn poll_write_request(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        loop {
            while !self.out.is_empty() {
                let mut slices = [IoSlice::new(&[]); 16];
                let n = self.out.len().min(slices.len());
                for (slice, bytes) in slices.iter_mut().zip(&self.out) {
                    *slice = IoSlice::new(bytes);
                }
                let written =
                    ready!(Pin::new(&mut self.connection.io).poll_write_vectored(cx, &slices[..n]))
                        .map_err(UpstreamError::Io)?;
                if written == 0 {
                    return Poll::Ready(Err(UpstreamError::Closed));
                }
                advance(&mut self.out, written);
            }
            let Some(body) = self.body.as_mut() else {
                ready!(Pin::new(&mut self.connection.io).poll_flush(cx))
                    .map_err(UpstreamError::Io)?;
                self.request_done = true;
                return Poll::Ready(Ok(()));
            };
            match ready!(Pin::new(body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // Trailers are not forwarded upstream.
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            if self.chunked {
                                self.out
                                    .push_back(Bytes::from(format!("{:X}\r\n", data.len())));
                                self.out.push_back(data);
                                self.out.push_back(Bytes::from_static(b"\r\n"));
                            } else {
                                self.out.push_back(data);
                            }
                        }
                    }
                }
                Some(Err(e)) => return Poll::Ready(Err(UpstreamError::RequestBody(e))),
                None => {
                    self.body = None;
                    if self.chunked {
                        self.out.push_back(Bytes::from_static(b"0\r\n\r\n"));
                    }
                }
            }
        }
    }

    /// Drives the request and reads until a final (non-1xx, or 101) response
    /// head has arrived.
    fn poll_response_head(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<ResponseHead, UpstreamError>> {
        if !self.request_done {
            if let Poll::Ready(Err(e)) = self.poll_write_request(cx) {
                return Poll::Ready(Err(e));
            }
        }
        loop {
            while let Some(head) = parse_response_head(&mut self.connection.read_buf)? {
                // 100 Continue, 103 Early Hints and kin are informational.
                if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS
                {
                    continue;
                }
                return Poll::Ready(Ok(head));
            }
            if ready!(self.connection.poll_fill(cx))? == 0 {
                return Poll::Ready(Err(UpstreamError::Closed));
            }
        }
    }
}

/// Drops `n` written bytes from the front of the queue.
fn advance(out: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = out.front_mut() else { return };
        if n >= front.len() {
            n -= front.len();
            out.pop_front();
        } else {
            let _ = front.split_to(n);
            n = 0;
        }
    }
}

/// The request line and headers, ready to write.
fn encode_request_head(
    parts: &http::request::Parts,
    authority: &Authority,
    framing: RequestFraming,
    length: Option<u64>,
) -> Bytes {
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut buf = BytesMut::with_capacity(64 + target.len() + parts.headers.len() * 48);
    buf.put_slice(parts.method.as_str().as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(target.as_bytes());
    buf.put_slice(b" HTTP/1.1\r\n");
    if !parts.headers.contains_key(header::HOST) {
        put_header(&mut buf, b"host", authority.as_str().as_bytes());
    }
    for (name, value) in &parts.headers {
        // Framing is ours to state, below.
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        put_header(&mut buf, name.as_str().as_bytes(), value.as_bytes());
    }
    match (framing, length) {
        (RequestFraming::Length, Some(n)) => {
            put_header(&mut buf, b"content-length", n.to_string().as_bytes())
        }
        (RequestFraming::Chunked, _) => put_header(&mut buf, b"transfer-encoding", b"chunked"),
        // A bodiless request keeps an explicit `Content-Length: 0`.
        _ if parts.headers.contains_key(header::CONTENT_LENGTH) => {
            put_header(&mut buf, b"content-length", b"0")
        }
        _ => {}
    }
    buf.put_slice(b"\r\n");
    buf.freeze()
}

fn put_header(buf: &mut BytesMut, name: &[u8], value: &[u8]) {
    buf.put_slice(name);
    buf.put_slice(b": ");
    buf.put_slice(value);
    buf.put_slice(b"\r\n");
}

/// A parsed response head.
#[derive(Debug)]
struct ResponseHead {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    /// The backend allows the connection to be reused.
    keep_alive: bool,
}

impl ResponseHead {
    fn into_response<B>(self, body: B) -> Response<B> {
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.version_mut() = self.version;
        *response.headers_mut() = self.headers;
        response
    }
}

/// Parses a response head off the front of `buf`; `None`: not complete yet.
fn parse_response_head(buf: &mut BytesMut) -> Result<Option<ResponseHead>, UpstreamError> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut parsed = httparse::Response::new(&mut storage);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_RESPONSE_HEAD => len,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_RESPONSE_HEAD => return Ok(None),
        // However the head arrived, in one read or many: the same bound.
        Ok(_) => {
            return Err(UpstreamError::Protocol(format!(
                "response head larger than {MAX_RESPONSE_HEAD} bytes"
            )));
        }
        Err(e) => {
            return Err(UpstreamError::Protocol(format!(
                "unparsable response head: {e}"
            )))
        }
    };
    let status = parsed
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| UpstreamError::Protocol("invalid status code".into()))?;
    let version = if parsed.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Names are read while the head is borrowed; values are sliced out of it
    // afterwards, without copying.
    let base = buf.as_ptr() as usize;
    let mut fields: Vec<(HeaderName, std::ops::Range<usize>)> =
        Vec::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| UpstreamError::Protocol("invalid header name".into()))?;
        let start = h.value.as_ptr() as usize - base;
        fields.push((name, start..start + h.value.len()));
    }
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(fields.len());
    for (name, range) in fields {
        let value = HeaderValue::from_maybe_shared(head.slice(range))
            .map_err(|_| UpstreamError::Protocol(format!("invalid value for header `{name}`")))?;
        headers.append(name, value);
    }
    let close = has_token(&headers, header::CONNECTION, "close");
    // RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty
    // framing; the connection is closed after it.
    let keep_alive = match version {
        Version::HTTP_10 => {
            has_token(&headers, header::CONNECTION, "keep-alive")
                && !close
                && !headers.contains_key(header::TRANSFER_ENCODING)
        }
        _ => !close,
    };
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
        keep_alive,
    }))
}

fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// How a response body is delimited (RFC 9112 6.3).
#[derive(Debug)]
enum Framing {
    /// This many bytes remain.
    Length(u64),
    /// Chunked transfer coding.
    Chunked(ChunkState),
    /// Until the backend closes the connection.
    UntilClose,
}

fn response_framing(head: &ResponseHead, head_request: bool) -> Result<Framing, UpstreamError> {
    if head_request
        || head.status.is_informational()
        || head.status == StatusCode::NO_CONTENT
        || head.status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Length(0));
    }
    // The codings of every Transfer-Encoding field, in order (empty list
    // elements aside): the body is chunked only if the last one is.
    let fields = head.headers.get_all(header::TRANSFER_ENCODING);
    if fields.iter().next().is_some() {
        let last = fields
            .iter()
            .flat_map(|field| field.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .rfind(|coding| !coding.is_empty())
            .unwrap_or_default();
        return Ok(if last.eq_ignore_ascii_case(b"chunked") {
            Framing::Chunked(ChunkState::Size)
        } else {
            Framing::UntilClose
        });
    }
    let mut lengths = head.headers.get_all(header::CONTENT_LENGTH).iter();
    match lengths.next() {
        None => Ok(Framing::UntilClose),
        Some(first) => {
            let parse = |v: &HeaderValue| digits(v.as_bytes().trim_ascii(), 10);
            let n = parse(first)
                .ok_or_else(|| UpstreamError::Protocol("invalid Content-Length".into()))?;
            if lengths.any(|v| parse(v) != Some(n)) {
                return Err(UpstreamError::Protocol(
                    "conflicting Content-Length headers".into(),
                ));
            }
            Ok(Framing::Length(n))
        }
    }
}

/// A number written only in digits of `radix` (no sign, no space, no
/// prefix), as RFC 9112 writes `Content-Length` and `chunk-size`; `None`
/// if it is anything else or does not fit in a `u64`.
fn digits(text: &[u8], radix: u32) -> Option<u64> {
    if text.is_empty() || !text.iter().all(|&b| char::from(b).is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(text).ok()?, radix).ok()
}

/// Where a chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// Reading trailer lines until an empty one.
    Trailers,
    /// The body is complete.
    Done,
}

/// One step of chunked decoding over what is buffered.
#[derive(Debug, PartialEq, Eq)]
enum Decoded {
    Data(Bytes),
    NeedMore,
    End,
}

fn decode_chunked(state: &mut ChunkState, buf: &mut BytesMut) -> Result<Decoded, UpstreamError> {
    loop {
        match *state {
            ChunkState::Size | ChunkState::Trailers => {
                let end = buf.windows(2).position(|w| w == b"\r\n");
                // However the line arrived, in one read or many: the same bound.
                if end.unwrap_or(buf.len()) > MAX_CHUNK_LINE {
                    return Err(UpstreamError::Protocol("chunk line too long".into()));
                }
                let Some(end) = end else {
                    return Ok(Decoded::NeedMore);
                };
                let line = buf.split_to(end + 2);
                let line = &line[..end];
                if *state == ChunkState::Trailers {
                    if line.is_empty() {
                        *state = ChunkState::Done;
                    }
                    continue;
                }
                // chunk-size [BWS ";" extension]
                let size = line.split(|&b| b == b';').next().unwrap_or_default();
                let size = digits(size.trim_ascii_end(), 16)
                    .ok_or_else(|| UpstreamError::Protocol("invalid chunk size".into()))?;
                *state = if size == 0 {
                    ChunkState::Trailers
                } else {
                    ChunkState::Data(size)
                };
            }
            ChunkState::Data(left) => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let take = (buf.len() as u64).min(left) as usize;
                let data = buf.split_to(take).freeze();
                *state = if left == take as u64 {
                    ChunkState::DataEnd
                } else {
                    ChunkState::Data(left - take as u64)
                };
                return Ok(Decoded::Data(data));
            }
            ChunkState::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Decoded::NeedMore);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(UpstreamError::Protocol(
                        "missing CRLF after chunk data".into(),
                    ));
                }
                let _ = buf.split_to(2);
                *state = ChunkState::Size;
            }
            ChunkState::Done => return Ok(Decoded::End),
        }
    }
}

/// The fuzz oracle for a backend's response bytes ([`crate::oracles`]):
/// a head Airlock accepts is the head `httparse` reads (length, status,
/// fields); its framing is RFC 9112 6.3's, written out again here; and a
/// chunked body decodes the same fed whole or a byte at a time, and as a
/// strict decoder written from the grammar decodes it (both refuse, or
/// both give the same bytes and agree on whether it ended).
#[cfg(any(test, fuzzing))]
pub(crate) fn check_response(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let Ok(Some(head)) = parse_response_head(&mut buf) else {
        return;
    };
    let mut storage = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut reference = httparse::Response::new(&mut storage);
    let Ok(httparse::Status::Complete(len)) = reference.parse(data) else {
        panic!("accepted a head httparse does not complete");
    };
    assert_eq!(len, data.len() - buf.len(), "head length");
    assert_eq!(reference.code, Some(head.status.as_u16()), "status");
    let fields: Vec<(String, &[u8])> = reference
        .headers
        .iter()
        .map(|field| (field.name.to_ascii_lowercase(), field.value))
        .collect();
    let mut theirs = fields.clone();
    let mut ours: Vec<(String, &[u8])> = head
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes()))
        .collect();
    theirs.sort();
    ours.sort();
    assert_eq!(ours, theirs, "fields");

    let framing = response_framing(&head, false).map(|framing| format!("{framing:?}"));
    let expected = rfc_9112_framing(head.status.as_u16(), &fields);
    assert_eq!(framing.as_deref().ok(), expected.as_deref(), "framing");
    if framing.as_deref().ok() != Some("Chunked(Size)") {
        return;
    }
    let decode = |pieces: &mut dyn Iterator<Item = &[u8]>| {
        let mut state = ChunkState::Size;
        let mut pending = BytesMut::new();
        let mut out = Vec::new();
        for piece in pieces {
            pending.extend_from_slice(piece);
            loop {
                match decode_chunked(&mut state, &mut pending) {
                    Ok(Decoded::Data(data)) => out.extend_from_slice(&data),
                    Ok(Decoded::NeedMore) => break,
                    Ok(Decoded::End) => return Some((out, true)),
                    Err(_) => return None,
                }
            }
        }
        Some((out, false))
    };
    let whole = decode(&mut std::iter::once(&buf[..]));
    assert_eq!(decode(&mut buf.chunks(1)), whole, "byte at a time");
    assert_eq!(strict_chunked(&buf), whole, "strict decoder");
}

/// RFC 9112 6.3 for a response to a GET, from the fields as `httparse`
/// read them (names lower-cased): `Debug` of the expected [`Framing`], or
/// `None` where the response must be refused.
#[cfg(any(test, fuzzing))]
fn rfc_9112_framing(status: u16, fields: &[(String, &[u8])]) -> Option<String> {
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Some("Length(0)".into());
    }
    fn values<'a>(
        fields: &'a [(String, &'a [u8])],
        name: &'a str,
    ) -> impl Iterator<Item = &'a [u8]> {
        fields
            .iter()
            .filter(move |(field, _)| field == name)
            .map(|(_, value)| value.trim_ascii())
    }
    let codings: Vec<&[u8]> = values(fields, "transfer-encoding").collect();
    if !codings.is_empty() {
        let joined = codings.join(&b","[..]);
        let last = joined
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .rfind(|coding| !coding.is_empty())
            .unwrap_or_default();
        return Some(if last.eq_ignore_ascii_case(b"chunked") {
            "Chunked(Size)".into()
        } else {
            "UntilClose".into()
        });
    }
    let lengths: Vec<Option<u64>> = values(fields, "content-length")
        .map(|value| {
            let digits = value.iter().all(u8::is_ascii_digit) && !value.is_empty();
            digits
                .then(|| std::str::from_utf8(value).ok()?.parse().ok())
                .flatten()
        })
        .collect();
    match lengths.first() {
        None => Some("UntilClose".into()),
        Some(Some(n)) if lengths.iter().all(|length| *length == Some(*n)) => {
            Some(format!("Length({n})"))
        }
        Some(_) => None,
    }
}

/// A chunked body decoded straight from RFC 9112 7.1's grammar, with
/// Airlock's bound on a line: the bytes and whether the body ended, or
/// `None` where it breaks the grammar.
#[cfg(any(test, fuzzing))]
fn strict_chunked(mut wire: &[u8]) -> Option<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let line = |wire: &mut &[u8]| -> Option<Option<Vec<u8>>> {
        match wire.windows(2).position(|pair| pair == b"\r\n") {
            Some(end) if end <= MAX_CHUNK_LINE => {
                let line = wire[..end].to_vec();
                *wire = &wire[end + 2..];
                Some(Some(line))
            }
            None if wire.len() <= MAX_CHUNK_LINE => Some(None),
            _ => None,
        }
    };
    loop {
        let Some(size_line) = line(&mut wire)? else {
            return Some((out, false));
        };
        let size = size_line.split(|&b| b == b';').next().unwrap_or_default();
        let size = size.trim_ascii_end();
        if size.is_empty() || !size.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let significant = size
            .iter()
            .position(|&b| b != b'0')
            .map_or(&[][..], |at| &size[at..]);
        if significant.len() > 16 {
            return None;
        }
        let size = usize::from_str_radix(std::str::from_utf8(size).ok()?, 16).ok()?;
        if size == 0 {
            loop {
                match line(&mut wire)? {
                    None => return Some((out, false)),
                    Some(trailer) if trailer.is_empty() => return Some((out, true)),
                    Some(_) => {}
                }
            }
        }
        if wire.len() < size {
            out.extend_from_slice(wire);
            return Some((out, false));
        }
        out.extend_from_slice(&wire[..size]);
        wire = &wire[size..];
        // Like Airlock, refuse what follows the data only once two bytes
        // of it are there.
        match wire {
            [b'\r', b'\n', rest @ ..] => wire = rest,
            [] | [_] => return Some((out, false)),
            _ => return None,
        }
    }
}

/// A response body read from the backend as the client takes it.
#[derive(Debug)]
struct ResponseBody {
    /// `None` once finished.
    exchange: Option<Exchange>,
    framing: Framing,
    reusable: bool,
    pool: Arc<ConnectionPool>,
    index: usize,
}

impl ResponseBody {
    /// The body is complete: the connection goes back to the pool if both
    /// directions finished cleanly, else it is closed.
    fn finish(&mut self) {
        if let Some(exchange) = self.exchange.take() {
            if self.reusable && exchange.request_done && exchange.connection.read_buf.is_empty() {
                self.pool.checkin(self.index, exchange.connection);
            }
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(exchange) = this.exchange.as_mut() else {
            return Poll::Ready(None);
        };
        if !exchange.request_done {
            // The backend answered before the client finished sending: keep
            // feeding it, but a failure there only means no reuse.
            if let Poll::Ready(Err(_)) = exchange.poll_write_request(cx) {
                this.reusable = false;
                exchange.request_done = true;
                exchange.body = None;
            }
        }
        loop {
            let buffered = &mut exchange.connection.read_buf;
            let frame = match &mut this.framing {
                Framing::Length(0) => None,
                Framing::Length(left) if !buffered.is_empty() => {
                    let take = (buffered.len() as u64).min(*left) as usize;
                    *left -= take as u64;
                    let data = buffered.split_to(take).freeze();
                    if *left == 0 {
                        // The client's side may stop polling once it has every
                        // byte (`is_end_stream`): hand the connection back now.
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked(state) => match decode_chunked(state, buffered) {
                    Ok(Decoded::Data(data)) => Some(data),
                    Ok(Decoded::End) => None,
                    Ok(Decoded::NeedMore) => Some(Bytes::new()),
                    Err(e) => return Poll::Ready(Some(Err(e.into()))),
                },
                Framing::UntilClose if !buffered.is_empty() => Some(buffered.split().freeze()),
                Framing::Length(_) | Framing::UntilClose => Some(Bytes::new()),
            };
            match frame {
                None => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Some(data) if !data.is_empty() => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Some(_) => {}
            }
            // Nothing buffered: read more.
            match ready!(exchange.connection.poll_fill(cx)) {
                Ok(0) if matches!(this.framing, Framing::UntilClose) => {
                    this.reusable = false;
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(0) => return Poll::Ready(Some(Err(UpstreamError::Closed.into()))),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(e.into()))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.exchange.is_none()
            || matches!(
                self.framing,
                Framing::Length(0) | Framing::Chunked(ChunkState::Done)
            )
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn head(raw: &str) -> ResponseHead {
        let mut buf = BytesMut::from(raw.as_bytes());
        parse_response_head(&mut buf).unwrap().unwrap()
    }

    #[test]
    fn response_heads_parse_and_leave_the_body() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello"[..],
        );
        let h = parse_response_head(&mut buf).unwrap().unwrap();
        assert_eq!(h.status, 201);
        assert_eq!(h.headers.get_all("x-a").iter().count(), 2);
        assert!(h.keep_alive);
        assert_eq!(&buf[..], b"hello");
        let mut partial = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Le"[..]);
        assert!(parse_response_head(&mut partial).unwrap().is_none());
        let mut garbage = BytesMut::from(&b"SSH-2.0-OpenSSH\r\n\r\n"[..]);
        assert!(parse_response_head(&mut garbage).is_err());
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        assert!(!head("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!head("HTTP/1.0 200 OK\r\n\r\n").keep_alive);
        assert!(head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let framing = |raw: &str, head_request: bool| {
            response_framing(&head(raw), head_request).map(|f| format!("{f:?}"))
        };
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", false).unwrap(),
            "Length(7)"
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", true).unwrap(),
            "Length(0)"
        );
        assert_eq!(
            framing("HTTP/1.1 204 No Content\r\n\r\n", false).unwrap(),
            "Length(0)"
        );
        assert_eq!(
            framing(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false
            )
            .unwrap(),
            "Length(0)"
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
                false
            )
            .unwrap(),
            "Chunked(Size)"
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false).unwrap(),
            "UntilClose"
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\n\r\n", false).unwrap(),
            "UntilClose"
        );
        assert!(framing(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            false
        )
        .is_err());
        assert!(framing("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
    }

    /// RFC 9112: `Content-Length = 1*DIGIT`, and the transfer codings are
    /// those of every `Transfer-Encoding` field, in order. Rust's integer
    /// parsing takes a leading `+`, and the first field alone hid a
    /// `chunked` in a second one (found while writing the fuzz oracle).
    #[test]
    fn framing_reads_only_digits_and_every_transfer_encoding_field() {
        let framing = |raw: &str| response_framing(&head(raw), false).map(|f| format!("{f:?}"));
        assert!(framing("HTTP/1.1 200 OK\r\nContent-Length: +7\r\n\r\n").is_err());
        assert!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: +7\r\n\r\n").is_err()
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            .unwrap(),
            "Chunked(Size)"
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"
            )
            .unwrap(),
            "UntilClose"
        );
        // Empty list elements are not codings (RFC 9110 5.6.1).
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\nTransfer-Encoding: ,\r\n\r\n"
            )
            .unwrap(),
            "Chunked(Size)"
        );
        // An HTTP/1.0 response with Transfer-Encoding closes its connection.
        let old =
            head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(!old.keep_alive);
    }

    #[test]
    fn chunked_decoding_across_arbitrary_splits() {
        let wire = b"5;ext=1\r\nhello\r\n6 ; e\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
        for split in 1..wire.len() {
            let mut state = ChunkState::Size;
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            let mut ended = false;
            for piece in [&wire[..split], &wire[split..]] {
                buf.extend_from_slice(piece);
                loop {
                    match decode_chunked(&mut state, &mut buf).unwrap() {
                        Decoded::Data(d) => out.extend_from_slice(&d),
                        Decoded::NeedMore => break,
                        Decoded::End => {
                            ended = true;
                            break;
                        }
                    }
                }
            }
            assert!(ended, "split at {split}");
            assert_eq!(out, b"hello world", "split at {split}");
        }
    }

    #[test]
    fn broken_chunks_are_refused() {
        // RFC 9112 7.1: chunk-size = 1*HEXDIG (whitespace only before a
        // `;` extension); `+5` and ` 5` were read as 5.
        for wire in [
            &b"zz\r\n"[..],
            b"3\r\nabcX\r\n",
            b"+5\r\nhello\r\n",
            b" 5\r\nhello\r\n",
            b"\r\n",
            b"0x5\r\nhello\r\n",
        ] {
            let mut state = ChunkState::Size;
            let mut buf = BytesMut::from(wire);
            let mut result = Ok(Decoded::NeedMore);
            for _ in 0..4 {
                result = decode_chunked(&mut state, &mut buf);
                if !matches!(result, Ok(Decoded::Data(_))) {
                    break;
                }
            }
            assert!(result.is_err(), "{:?}", String::from_utf8_lossy(wire));
        }
    }

    /// The bounds on a response head and on a chunk line hold however
    /// the bytes arrive: a head or a line over the bound that came in one
    /// read was accepted, the same bytes in several reads refused.
    #[test]
    fn bounds_do_not_depend_on_how_the_bytes_arrive() {
        let mut head = format!(
            "HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n",
            "a".repeat(MAX_RESPONSE_HEAD)
        )
        .into_bytes();
        assert!(parse_response_head(&mut BytesMut::from(&head[..])).is_err());
        head.truncate(MAX_RESPONSE_HEAD / 2);
        assert!(parse_response_head(&mut BytesMut::from(&head[..]))
            .unwrap()
            .is_none());

        let line = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(MAX_CHUNK_LINE));
        let mut state = ChunkState::Size;
        let mut buf = BytesMut::from(line.as_bytes());
        assert!(decode_chunked(&mut state, &mut buf).is_err());
    }

    #[test]
    fn request_heads_state_their_own_framing() {
        let authority: Authority = "10.0.0.1:80".parse().unwrap();
        let (parts, ()) = Request::post("/upload?x=1")
            .header("transfer-encoding", "chunked")
            .header("content-length", "99")
            .header("x-a", "1")
            .body(())
            .unwrap()
            .into_parts();
        let text = |framing, length| {
            String::from_utf8(encode_request_head(&parts, &authority, framing, length).to_vec())
                .unwrap()
        };
        assert_eq!(
            text(RequestFraming::Length, Some(7)),
            "POST /upload?x=1 HTTP/1.1\r\nhost: 10.0.0.1:80\r\nx-a: 1\r\ncontent-length: 7\r\n\r\n"
        );
        assert_eq!(text(RequestFraming::Chunked, None), "POST /upload?x=1 HTTP/1.1\r\nhost: 10.0.0.1:80\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!(
            text(RequestFraming::Empty, None),
            "POST /upload?x=1 HTTP/1.1\r\nhost: 10.0.0.1:80\r\nx-a: 1\r\ncontent-length: 0\r\n\r\n"
        );
    }
}
