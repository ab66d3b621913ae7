//! The headers whose meaning Airlock owns, in one table: request hygiene
//! refuses or strips them (`crate::proxy::hygiene`), and a policy may not
//! set or remove them (`crate::policy::decision`). A leaf: it depends on
//! nothing else in Airlock.

use http::header::HeaderName;

/// Headers that would make a backend run another method than the one judged.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Headers some frameworks read as the URL to serve instead of the
/// request line's.
pub const URL_REWRITE_HEADERS: [&str; 4] = [
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-envoy-original-path",
];

/// Forwarding headers a client could forge; kept only on trusted listeners.
pub const FORWARDING_HEADERS: [&str; 6] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-prefix",
    "x-real-ip",
];

/// Prefix of headers only Airlock sets.
pub const AIRLOCK_HEADER_PREFIX: &str = "airlock-";

/// Headers whose meaning Airlock owns: the ones hygiene refuses or strips
/// (method overrides, forwarding headers, `Airlock-*`), those that frame the
/// message or name its target, and `Via`. A policy may not set or remove
/// them: the backend would then receive something other than what was judged.
pub fn is_owned_by_airlock(name: &HeaderName) -> bool {
    const FRAMING: [&str; 12] = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-connection",
        "expect",
        "via",
        "content-encoding",
    ];
    let name = name.as_str();
    FRAMING.contains(&name)
        || METHOD_OVERRIDE_HEADERS.contains(&name)
        || URL_REWRITE_HEADERS.contains(&name)
        || FORWARDING_HEADERS.contains(&name)
        || name.starts_with(AIRLOCK_HEADER_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn airlock_owns_framing_forwarding_and_override_headers() {
        for owned in [
            "host",
            "content-length",
            "x-forwarded-for",
            "x-http-method-override",
            "airlock-ticket",
            "via",
        ] {
            assert!(
                is_owned_by_airlock(&HeaderName::from_static(owned)),
                "{owned}"
            );
        }
        assert!(!is_owned_by_airlock(&HeaderName::from_static("x-team")));
    }
}
