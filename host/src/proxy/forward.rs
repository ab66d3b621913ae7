//! Step 4 of the request path: send the request to a backend of the route's
//! pool and stream the answer back.
//!
//! Headers are rewritten the way a reverse proxy should: hop-by-hop headers
//! (and those named in `Connection`) are removed both ways, `X-Forwarded-For`,
//! `-Proto` and `-Host` and `Via` are set, and the client's `Host` is kept. An
//! idempotent request without a body whose exchange breaks before a response
//! head (connection refused, or a pooled connection that died) is retried once
//! on another backend; timeouts are not retried, so a slow backend's load is
//! not doubled. `Upgrade` requests (WebSocket) become a byte tunnel once the
//! backend answers 101.

use std::error::Error as _;
use std::time::Instant;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::body::{self, ProxyBody};
use super::hygiene::connection_tokens;
use super::{ConnectionInfo, ProxyError, Target};
use crate::balance::figures::InFlight;
use crate::balance::{Backend, Pool};
use crate::config::Limits;
use crate::telemetry::RequestTrace;
use crate::upstream::{self, Reply, UpstreamError};

/// Headers that describe one hop, never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    // The client's credentials for Airlock itself (identity.rs).
    header::PROXY_AUTHORIZATION,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// A request body on its way to the backend.
#[derive(Debug)]
pub enum RequestBody {
    /// Still arriving from the client: streamed through.
    Streaming(Incoming),
    /// Read whole while the request was held for approval.
    Held(bytes::Bytes),
}

/// Forwards `request` to `pool` and returns the backend's response.
pub async fn forward(
    pool: &Pool,
    conn: &ConnectionInfo,
    mut request: Request<RequestBody>,
    target: &Target,
    limits: &Limits,
    trace: Option<&RequestTrace>,
) -> Result<Response<ProxyBody>, ProxyError> {
    // HTTP/2 backends have no `Upgrade`: such a request goes as a plain one.
    let client_upgrade =
        (!pool.http2 && wants_upgrade(&request)).then(|| hyper::upgrade::on(&mut request));
    let (mut parts, incoming) = request.into_parts();
    rewrite_request_headers(
        &mut parts.headers,
        conn,
        target,
        parts.version,
        client_upgrade.is_some(),
    );
    parts.uri = Uri::from(target.path_and_query.clone());
    parts.version = Version::HTTP_11;
    // Most requests have no body: an empty one costs no allocation.
    let mut body = match incoming {
        RequestBody::Streaming(incoming) if incoming.is_end_stream() => body::empty(),
        RequestBody::Streaming(incoming) => {
            let limited = body::limited(incoming, limits.max_body_bytes);
            if target.method_field_guard {
                body::method_field_guarded(limited)
            } else {
                limited
            }
        }
        RequestBody::Held(bytes) if bytes.is_empty() => body::empty(),
        RequestBody::Held(bytes) => {
            if target.method_field_guard && body::has_method_field(&bytes) {
                return Err(ProxyError::BadRequest(body::MethodFieldRefused.to_string()));
            }
            body::full(bytes)
        }
    };
    let mut replayable = upstream::replayable(&parts, &body);
    let mut index = pool
        .pick(&parts, None)
        .ok_or_else(|| ProxyError::NoHealthyBackend {
            pool: pool.name.clone(),
        })?;

    loop {
        let backend = &pool.backends[index];
        let span = trace.map(|trace| {
            let method = parts.method.as_str();
            trace.upstream(
                method,
                &pool.name,
                backend.authority.as_str(),
                &mut parts.headers,
            )
        });
        let in_flight = backend.figures.start();
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            limits.request_timeout,
            pool.client.send(index, &backend.authority, &parts, body),
        )
        .await;
        let latency = started.elapsed();
        if let Some(span) = span {
            span.end(match &outcome {
                Ok(Ok(reply)) => Ok(reply.status().as_u16()),
                Ok(Err(_)) => Err("upstream_unavailable"),
                Err(_) => Err("upstream_timeout"),
            });
        }
        match outcome {
            Ok(Ok(reply)) => {
                pool.record_outcome(index, reply.status().is_server_error(), latency);
                return relay_response(reply, client_upgrade, in_flight, conn, pool, backend);
            }
            Ok(Err(error)) => {
                // A client that sent too much or went away says nothing about
                // the backend: only the backend's own failures count against it.
                let clients_fault = !error.is_backend_fault()
                    || caused_by::<body::BodyTooLarge>(&error)
                    || caused_by::<body::MethodFieldRefused>(&error);
                if !clients_fault {
                    pool.record_outcome(index, true, latency);
                }
                if caused_by::<body::BodyTooLarge>(&error) {
                    return Err(ProxyError::BodyTooLarge {
                        limit: limits.max_body_bytes,
                    });
                }
                if caused_by::<body::MethodFieldRefused>(&error) {
                    return Err(ProxyError::BadRequest(body::MethodFieldRefused.to_string()));
                }
                // The client's body broke (bad chunked framing, cut short):
                // the client's fault, not the backend's.
                if let UpstreamError::RequestBody(cause) = &error {
                    return Err(ProxyError::BadRequest(format!(
                        "the request body could not be read: {cause}"
                    )));
                }
                // An idempotent request without a body may be sent again
                // (RFC 9110 9.2.2) when the exchange broke before a response
                // head, whether the connection failed to open or a pooled one
                // died under it; only if another backend is there to try.
                if std::mem::take(&mut replayable) {
                    if let Some(other) = pool.pick(&parts, Some(index)) {
                        tracing::debug!(pool = %pool.name, backend = %backend.authority, error = %error, "exchange failed; retrying on another backend");
                        (body, index) = (body::empty(), other);
                        continue;
                    }
                }
                return Err(ProxyError::Upstream {
                    pool: pool.name.clone(),
                    backend: backend.authority.to_string(),
                    source: error,
                });
            }
            Err(_elapsed) => {
                pool.record_outcome(index, true, latency);
                return Err(ProxyError::UpstreamTimeout {
                    pool: pool.name.clone(),
                    backend: backend.authority.to_string(),
                    timeout: limits.request_timeout,
                });
            }
        }
    }
}

/// An HTTP/1.1 `Upgrade` request (WebSocket and kin).
fn wants_upgrade<B>(request: &Request<B>) -> bool {
    request.version() == Version::HTTP_11
        && request.headers().contains_key(header::UPGRADE)
        && connection_tokens(request.headers()).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers, and those `Connection` names.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::try_from(t).ok())
        .collect();
    for name in named.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
}

fn rewrite_request_headers(
    headers: &mut HeaderMap,
    conn: &ConnectionInfo,
    target: &Target,
    version: Version,
    upgrade: bool,
) {
    let upgrade_protocol = if upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    remove_hop_by_hop(headers);
    if let Some(protocol) = upgrade_protocol {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    if let Some(host) = &target.host_header {
        headers.insert(header::HOST, host.clone());
    }

    let forwarded_for = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        // Present only on trusted listeners: hygiene stripped it otherwise.
        Some(earlier) => HeaderValue::try_from(format!("{earlier}, {}", conn.remote.ip())).ok(),
        None => Some(conn.forwarded_for.clone()),
    };
    if let Some(value) = forwarded_for {
        headers.insert(X_FORWARDED_FOR, value);
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(if conn.tls { "https" } else { "http" }),
        );
    }
    if !headers.contains_key(&X_FORWARDED_HOST) {
        if let Some(host) = &target.host_header {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
    }
    append_via(headers, version);
}

/// Adds this hop to `Via` (RFC 9110 7.6.3).
fn append_via(headers: &mut HeaderMap, version: Version) {
    let hop = match version {
        Version::HTTP_10 => "1.0 airlock",
        Version::HTTP_2 => "2 airlock",
        _ => "1.1 airlock",
    };
    let value = match headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(earlier) => HeaderValue::try_from(format!("{earlier}, {hop}")).ok(),
        None => Some(HeaderValue::from_static(hop)),
    };
    if let Some(value) = value {
        headers.insert(header::VIA, value);
    }
}

/// Turns the backend's response into the client's: headers cleaned, `Via`
/// added, the body streamed with the in-flight count held until its end, and
/// a 101 answer to an upgrade request joined into a tunnel.
fn relay_response(
    reply: Reply,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    in_flight: InFlight,
    conn: &ConnectionInfo,
    pool: &Pool,
    backend: &Backend,
) -> Result<Response<ProxyBody>, ProxyError> {
    match reply {
        Reply::Response(response) => {
            let version = response.version();
            let (mut parts, body) = response.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            append_via(&mut parts.headers, version);
            Ok(Response::from_parts(parts, body::counted(body, in_flight)))
        }
        Reply::Switched(mut parts, tunnel) => {
            let Some(client) = client_upgrade else {
                return Err(ProxyError::Upstream {
                    pool: pool.name.clone(),
                    backend: backend.authority.to_string(),
                    source: UpstreamError::Protocol(
                        "101 Switching Protocols to a request that asked for no upgrade".into(),
                    ),
                });
            };
            let remote = conn.remote;
            tokio::spawn(async move {
                let _in_flight = in_flight;
                match client.await {
                    Ok(client) => {
                        let (mut client, mut tunnel) = (TokioIo::new(client), tunnel);
                        if let Err(e) =
                            tokio::io::copy_bidirectional(&mut client, &mut tunnel).await
                        {
                            tracing::debug!(%remote, error = %e, "upgraded connection ended");
                        }
                    }
                    Err(e) => tracing::debug!(%remote, error = %e, "upgrade did not complete"),
                }
            });
            append_via(&mut parts.headers, parts.version);
            Ok(Response::from_parts(parts, body::empty()))
        }
    }
}

/// Whether the client's body grew over the limit while it was being sent.
/// Whether `T` is among the causes of `error` (through HTTP/1.1's and
/// hyper's wrappings alike).
fn caused_by<T: std::error::Error + 'static>(error: &UpstreamError) -> bool {
    let mut cause = error.source();
    while let Some(e) = cause {
        if e.is::<T>() {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            "keep-alive, x-secret-hop".parse().unwrap(),
        );
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert(header::ACCEPT, "*/*".parse().unwrap());
        remove_hop_by_hop(&mut h);
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            vec!["accept"]
        );
    }

    #[test]
    fn via_is_appended() {
        let mut h = HeaderMap::new();
        append_via(&mut h, Version::HTTP_2);
        assert_eq!(h[header::VIA], "2 airlock");
        append_via(&mut h, Version::HTTP_11);
        assert_eq!(h[header::VIA], "2 airlock, 1.1 airlock");
    }
}
