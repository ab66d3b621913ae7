//! The one outbound HTTP client for what is not proxying: webhook
//! deliveries and the CLI's calls to the admin API. HTTP/1.1, `http://` or
//! `https://` verified against the Web PKI roots, with a timeout per call.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::UpstreamTls;

/// A client for small JSON calls.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

/// A call that got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Failed(String),
}

impl HttpClient {
    /// A client whose calls give up after `timeout`.
    ///
    /// # Errors
    /// When the TLS configuration cannot be built.
    pub fn new(timeout: Duration) -> Result<HttpClient, crate::tls::TlsError> {
        let tls = crate::tls::upstream_client_config(&UpstreamTls {
            ca: None,
            server_name: None,
        })?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(HttpClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        })
    }

    /// Send `request`; the whole answer, body read.
    ///
    /// # Errors
    /// No connection, no answer in time, or a broken answer.
    pub async fn call(&self, request: Request<Full<Bytes>>) -> Result<Response<Bytes>, CallError> {
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| CallError::Failed(error.to_string()))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|error| CallError::Failed(error.to_string()))?
                .to_bytes();
            Ok(Response::from_parts(parts, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| CallError::Timeout(self.timeout))?
    }
}

/// The OTLP/HTTP trace exporter sends through this client too.
impl opentelemetry_http::HttpClient for HttpClient {
    fn send_bytes<'client, 'call>(
        &'client self,
        request: Request<Bytes>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<Response<Bytes>, opentelemetry_http::HttpError>>
                + Send
                + 'call,
        >,
    >
    where
        'client: 'call,
        Self: 'call,
    {
        Box::pin(async move { Ok(self.call(request.map(Full::new)).await?) })
    }
}
