//! The bodies the proxy wraps: the one body type that flows through it in
//! both directions and its constructors (from [`crate::upstream::body`],
//! re-exported), the in-flight count a response body holds, the `_method`
//! guard, the request-body size limit, and the lingering close that lets a
//! client read an early answer.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::hygiene::MethodFieldScanner;
use crate::balance::figures::InFlight;

pub use crate::upstream::body::{empty, full, BoxError, ProxyBody};

/// A backend's response body that keeps its request counted as in flight
/// until the last byte has gone to the client (or the client went away).
pub fn counted(body: ProxyBody, in_flight: InFlight) -> ProxyBody {
    Counted {
        body,
        _in_flight: in_flight,
    }
    .boxed()
}

struct Counted {
    body: ProxyBody,
    _in_flight: InFlight,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body carried a `_method` field on a route with policies.
#[derive(Debug, thiserror::Error)]
#[error("the `_method` form field is not accepted on this route: send the real method instead")]
pub struct MethodFieldRefused;

/// A request body that fails with [`MethodFieldRefused`] as soon as a
/// `_method` field shows (the piece holding it does not go on).
pub fn method_field_guarded(body: ProxyBody) -> ProxyBody {
    Guarded {
        body,
        scanner: MethodFieldScanner::new(),
        finished: false,
        ended: false,
    }
    .boxed()
}

struct Guarded {
    body: ProxyBody,
    scanner: MethodFieldScanner,
    /// The scanner has seen the body's end.
    finished: bool,
    ended: bool,
}

impl Guarded {
    fn finish(&mut self) -> bool {
        self.finished = true;
        self.scanner.finish()
    }
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let polled = std::task::ready!(Pin::new(&mut self.body).poll_frame(cx));
        let refused = match &polled {
            Some(Ok(frame)) => {
                let found = frame.data_ref().is_some_and(|data| self.scanner.feed(data));
                // The last piece of a body of known length: its end is
                // judged before the piece goes on, since with it the backend
                // has the whole request (found in review: a field only the
                // end showed reached the backend whole).
                found || (self.body.is_end_stream() && !self.finished && self.finish())
            }
            Some(Err(_)) => false,
            None => {
                self.ended = true;
                !self.finished && self.finish()
            }
        };
        if refused {
            self.ended = true;
            return Poll::Ready(Some(Err(MethodFieldRefused.into())));
        }
        Poll::Ready(polled)
    }

    // Never ends early: the end is where the last field is looked at.
    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Whether a whole body carries a `_method` field.
pub fn has_method_field(body: &[u8]) -> bool {
    let mut scanner = MethodFieldScanner::new();
    scanner.feed(body) || scanner.finish()
}

/// How long an unread request body is drained after Airlock answered early.
const DISCARD_TIME: Duration = Duration::from_secs(5);

/// How much of an unread request body is drained after Airlock answered early;
/// past it the connection is closed.
const DISCARD_BYTES: u64 = 16 * 1024 * 1024;

/// The request body grew past `limits.max_body_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("request body is larger than {limit} bytes")]
pub struct BodyTooLarge {
    /// The limit.
    pub limit: u64,
}

/// A request body that fails with [`BodyTooLarge`] past `limit` bytes, and then
/// hands the rest of the client's body to [`discard`].
pub fn limited(body: Incoming, limit: u64) -> ProxyBody {
    Limited {
        body: Some(body),
        remaining: limit,
        limit,
    }
    .boxed()
}

struct Limited {
    body: Option<Incoming>,
    remaining: u64,
    limit: u64,
}

impl Body for Limited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match std::task::ready!(Pin::new(body).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            None => return Poll::Ready(None),
        };
        let len = frame.data_ref().map_or(0, |d| d.len() as u64);
        if len > self.remaining {
            if let Some(rest) = self.body.take() {
                discard(rest);
            }
            return Poll::Ready(Some(Err(BodyTooLarge { limit: self.limit }.into())));
        }
        self.remaining -= len;
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// Reads and drops what is left of a request body Airlock answered early
/// (up to [`DISCARD_BYTES`] for [`DISCARD_TIME`]), so the client, still sending,
/// is not reset before it reads the answer: a lingering close, as nginx does.
pub fn discard(body: Incoming) {
    if body.is_end_stream() {
        return;
    }
    tokio::spawn(async move {
        let drain = async {
            let mut body = body;
            let mut seen = 0u64;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                if seen > DISCARD_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
    });
}
