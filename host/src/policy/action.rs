//! The action a request becomes before its route's policies judge it: the
//! normalized target, the headers with credentials redacted, who is asking,
//! and the live figures of the pool it would go to.

use std::net::IpAddr;

use http::{header, HeaderMap, HeaderName, Method};

use super::bindings::{Action, Authentication, Header, Principal, Request, Subject};
use super::engine::HeaderSource;

/// What a redacted header's value becomes: the policy sees that it was there.
pub const REDACTED: &str = "[redacted]";

/// Credentials that never reach a policy or the audit trail.
const ALWAYS_REDACTED: [HeaderName; 3] = [
    header::AUTHORIZATION,
    header::COOKIE,
    header::PROXY_AUTHORIZATION,
];

/// Which request headers are redacted: the credentials above plus the
/// operator's `[policies] redact_headers`.
#[derive(Debug, Clone, Default)]
pub struct Redaction {
    extra: std::sync::Arc<[HeaderName]>,
}

impl Redaction {
    /// Redact `extra` as well as the standard credential headers.
    ///
    /// # Errors
    /// The first entry that is not a valid header name.
    pub fn new(extra: &[String]) -> Result<Self, String> {
        let extra = extra
            .iter()
            .map(|name| {
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("`{name}` is not a header name"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Redaction {
            extra: extra.into(),
        })
    }

    fn hides(&self, name: &HeaderName) -> bool {
        ALWAYS_REDACTED.contains(name) || self.extra.contains(name)
    }

    /// The headers as a policy sees them: lower-case names, credentials replaced.
    pub fn headers(&self, headers: &HeaderMap) -> Vec<Header> {
        headers
            .iter()
            .map(|(name, value)| Header {
                name: name.as_str().to_owned(),
                value: self.value(name, value),
            })
            .collect()
    }

    fn value(&self, name: &HeaderName, value: &http::HeaderValue) -> String {
        if self.hides(name) {
            REDACTED.to_owned()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        }
    }

    /// `headers` as a policy may ask for them, redacted when asked: one
    /// clone of the map (its values are shared, not copied), and a string
    /// only for a header a policy reads.
    pub fn source(&self, headers: &HeaderMap) -> std::sync::Arc<dyn HeaderSource> {
        std::sync::Arc::new(RedactedHeaders {
            headers: headers.clone(),
            redaction: self.clone(),
        })
    }
}

/// A request's headers behind [`Redaction`], read on demand.
struct RedactedHeaders {
    headers: HeaderMap,
    redaction: Redaction,
}

impl HeaderSource for RedactedHeaders {
    fn header(&self, name: &str) -> Option<String> {
        let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
        let value = self.headers.get(&name)?;
        Some(self.redaction.value(&name, value))
    }

    fn headers(&self) -> Vec<Header> {
        self.redaction.headers(&self.headers)
    }
}

/// The facts of one request, gathered by the proxy after hygiene and routing.
#[derive(Debug)]
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    pub tls: bool,
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub client: IpAddr,
    pub route: &'a str,
    pub pool: &'a str,
    pub principal: Principal,
}

/// The `request` action for `facts` (its headers and its pool's figures
/// are asked for through the host, not carried).
pub fn request_action(facts: RequestFacts<'_>) -> Action {
    let headers = facts.headers;
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    Action {
        subject: Subject::Request(Request {
            method: facts.method.as_str().to_owned(),
            scheme: if facts.tls { "https" } else { "http" }.to_owned(),
            host: facts.host.to_owned(),
            path: facts.path.to_owned(),
            query: facts.query.map(str::to_owned),
            client_address: facts.client.to_string(),
            route: facts.route.to_owned(),
            pool: facts.pool.to_owned(),
            body_size: text(header::CONTENT_LENGTH).and_then(|length| length.parse().ok()),
            content_type: text(header::CONTENT_TYPE),
        }),
        principal: facts.principal,
    }
}

/// The name of a verified client certificate: its leaf's first DNS name
/// (`certificate-without-dns-name` if it has none); none without one.
pub fn certificate_name(
    client_certificates: Option<&[rustls::pki_types::CertificateDer<'static>]>,
) -> Option<String> {
    let leaf = client_certificates?.first()?;
    Some(
        webpki::EndEntityCert::try_from(leaf)
            .ok()
            .and_then(|cert| cert.valid_dns_names().next().map(str::to_owned))
            .unwrap_or_else(|| "certificate-without-dns-name".to_owned()),
    )
}

/// A client identified by a bearer token.
pub fn token_holder(identity: &crate::identity::Identity) -> Principal {
    Principal {
        id: identity.subject.clone(),
        groups: identity.groups.clone(),
        authenticated_by: Authentication::Token,
    }
}

/// An unauthenticated client.
pub fn anonymous() -> Principal {
    Principal {
        id: "anonymous".to_owned(),
        groups: Vec::new(),
        authenticated_by: Authentication::None,
    }
}

/// The balancer itself, the principal of events.
pub fn balancer() -> Principal {
    Principal {
        id: "airlock".to_owned(),
        groups: Vec::new(),
        authenticated_by: Authentication::Balancer,
    }
}

pub use crate::config::UNMAPPED_CERTIFICATE_PREFIX;

/// A client identified by a verified TLS certificate no `[[principal]]`
/// maps: `cert:` and the certificate's name.
pub fn certificate_holder(name: &str) -> Principal {
    Principal {
        id: format!("{UNMAPPED_CERTIFICATE_PREFIX}{name}"),
        groups: Vec::new(),
        authenticated_by: Authentication::Mtls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted_but_visible_as_present() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer secret".parse().unwrap());
        headers.insert(header::COOKIE, "session=secret".parse().unwrap());
        headers.insert("x-api-key", "secret".parse().unwrap());
        headers.insert("x-team", "payments".parse().unwrap());
        let seen = Redaction::new(&["X-Api-Key".to_owned()])
            .unwrap()
            .headers(&headers);
        let value = |name: &str| {
            seen.iter()
                .find(|h| h.name == name)
                .map(|h| h.value.as_str())
        };
        assert_eq!(value("authorization"), Some(REDACTED));
        assert_eq!(value("cookie"), Some(REDACTED));
        assert_eq!(value("x-api-key"), Some(REDACTED));
        assert_eq!(value("x-team"), Some("payments"));
        assert!(!format!("{seen:?}").contains("secret"));
    }

    #[test]
    fn a_bad_redaction_name_is_refused() {
        assert!(Redaction::new(&["bad header".to_owned()])
            .unwrap_err()
            .contains("bad header"));
    }
}
