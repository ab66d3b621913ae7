//! The pooled keep-alive client a pool uses to reach its backends: hyper-util's
//! connection pool over plain TCP or rustls, HTTP/1.1 by default and HTTP/2
//! where the pool asks for it (prior knowledge in clear text, ALPN over TLS).

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, Error as ClientError};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::ProxyBody;
use crate::config::{Limits, PoolConfig, UpstreamTls};
use crate::tls::{self, TlsError};

/// A pool's client. Cheap to clone; clones share connections.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    inner: Client<HttpsConnector<HttpConnector>, ProxyBody>,
}

impl UpstreamClient {
    /// Builds the client for one pool.
    pub fn build(pool: &PoolConfig, limits: &Limits) -> Result<Self, TlsError> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(limits.connect_timeout));
        tcp.set_keepalive(Some(std::time::Duration::from_secs(60)));

        let tls_settings = pool.tls.clone().unwrap_or_default();
        let tls_config = tls::upstream_client_config(&tls_settings)?;
        let builder = HttpsConnectorBuilder::new()
            .with_tls_config(tls_config)
            .https_or_http();
        let builder = match server_name(&tls_settings) {
            Some(name) => builder.with_server_name_resolver(FixedServerNameResolver::new(name)),
            None => builder,
        };
        let connector = if pool.http2 {
            builder.enable_http2().wrap_connector(tcp)
        } else {
            builder.enable_http1().wrap_connector(tcp)
        };

        let inner = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(limits.upstream_idle_timeout)
            .http2_only(pool.http2)
            .http2_adaptive_window(true)
            .build(connector);
        Ok(Self { inner })
    }

    /// Sends a request (absolute URI) and waits for the response head.
    pub async fn request(
        &self,
        request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, ClientError> {
        self.inner.request(request).await
    }
}

fn server_name(tls: &UpstreamTls) -> Option<rustls::pki_types::ServerName<'static>> {
    // Validated by the config loader.
    tls.server_name
        .as_deref()
        .and_then(|n| rustls::pki_types::ServerName::try_from(n.to_owned()).ok())
}
