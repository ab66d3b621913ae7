//! The one body type that flows through Airlock in both directions (a
//! client's request body on its way up, a backend's response on its way
//! down), and the constructors for bodies Airlock writes itself. The proxy
//! wraps these (`crate::proxy::body`); the upstream client sends and
//! receives them.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};

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
