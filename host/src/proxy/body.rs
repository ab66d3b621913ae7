//! The one body type that flows through the proxy in both directions, and the
//! small constructors for bodies Airlock writes itself.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::Incoming;

use crate::balance::figures::InFlight;

/// An error from a body stream (client, upstream, or a limit).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming body: a client's request body on its way up, or a backend's
/// response body on its way down, or one Airlock wrote.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// A body with nothing in it.
pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A body of known bytes.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A backend's response body that keeps its request counted as in flight
/// until the last byte has gone to the client (or the client went away).
pub fn counted(body: Incoming, in_flight: InFlight) -> ProxyBody {
    Counted {
        body,
        _in_flight: in_flight,
    }
    .boxed()
}

struct Counted {
    body: Incoming,
    _in_flight: InFlight,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body)
            .poll_frame(cx)
            .map_err(BoxError::from)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
