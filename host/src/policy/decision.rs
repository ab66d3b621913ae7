//! What a policy answered, checked: the contract's `decision` turned into a
//! [`Verdict`] with HTTP types, or refused as invalid. A policy is untrusted
//! code, so every string and number it returns is bounded here before it can
//! reach a client, a log line or the audit trail. (The bytes copied out of the
//! sandbox at all are bounded earlier, by the store's hostcall fuel.)
//!
//! Free text (reasons, grant scopes) is cut to length and stripped of control
//! characters rather than refused: a policy that quotes a client's 2 KiB path
//! in its reason must still deny, not fail.

use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};

use super::bindings::{Decision, Header, Metadata};
use crate::headers::is_owned_by_airlock;

/// Longest reason or grant scope kept; longer ones are cut.
pub const MAX_REASON_BYTES: usize = 1024;
/// Longest header value a policy may set.
pub const MAX_HEADER_VALUE_BYTES: usize = 4096;
/// Most headers one decision may set, remove or add to a response.
pub const MAX_HEADERS: usize = 32;
/// Most approver groups one hold may name.
pub const MAX_GROUPS: usize = 16;
/// Largest quorum a hold may ask for.
pub const MAX_QUORUM: u32 = 64;
/// Longest a hold may wait.
pub const MAX_HOLD_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest grant a hold may open.
pub const MAX_GRANT_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// Response headers a deny may add: about retrying and authenticating, and
/// the application's own `x-` headers. Nothing that frames the response,
/// sets cookies, or speaks for the whole origin.
const DENY_RESPONSE_HEADERS: [&str; 4] =
    ["retry-after", "www-authenticate", "cache-control", "link"];

/// One policy's checked decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allow(HeaderEdits),
    Deny(Refusal),
    Hold(HoldRequest),
}

/// Request header changes, in the order they are applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeaderEdits {
    pub edits: Vec<HeaderEdit>,
}

/// One request header change.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderEdit {
    Set(HeaderName, HeaderValue),
    Remove(HeaderName),
}

impl HeaderEdits {
    /// Apply every edit, in order.
    pub fn apply(self, headers: &mut http::HeaderMap) {
        for edit in self.edits {
            match edit {
                HeaderEdit::Set(name, value) => {
                    headers.insert(name, value);
                }
                HeaderEdit::Remove(name) => {
                    headers.remove(name);
                }
            }
        }
    }

    /// Append `later`'s edits after these.
    pub fn extend(&mut self, later: HeaderEdits) {
        self.edits.extend(later.edits);
    }

    /// The values set, as `(name, value)` text pairs, for display.
    pub fn set_headers(&self) -> impl Iterator<Item = (&str, String)> {
        self.edits.iter().filter_map(|edit| match edit {
            HeaderEdit::Set(name, value) => Some((
                name.as_str(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )),
            HeaderEdit::Remove(_) => None,
        })
    }
}

/// A `deny`: what the client gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// A `hold`: who must approve, how many, and for how long the action waits.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldRequest {
    pub reason: String,
    pub approver_groups: Vec<String>,
    pub quorum: u32,
    pub timeout: Duration,
    pub grant: Option<GrantRequest>,
}

/// After approval, the same principal's actions of `scope` pass for `lifetime`.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantRequest {
    pub scope: String,
    pub lifetime: Duration,
}

impl Verdict {
    /// `allow`, `deny` or `hold`.
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Allow(_) => "allow",
            Verdict::Deny(_) => "deny",
            Verdict::Hold(_) => "hold",
        }
    }
}

/// Check a policy's decision against the contract's rules and the host's bounds.
///
/// # Errors
/// A message saying which part is invalid.
pub fn check(decision: Decision) -> Result<Verdict, String> {
    match decision {
        Decision::Allow(allow) => {
            bounded_count("set-headers", allow.set_headers.len())?;
            bounded_count("remove-headers", allow.remove_headers.len())?;
            // One policy's removes come before its sets: "replace x" is
            // remove-then-set, never the reverse.
            let removes = allow
                .remove_headers
                .iter()
                .map(|name| changeable_header_name(name).map(HeaderEdit::Remove));
            let sets = allow.set_headers.iter().map(|header| {
                Ok(HeaderEdit::Set(
                    changeable_header_name(&header.name)?,
                    header_value(header)?,
                ))
            });
            let edits = removes.chain(sets).collect::<Result<_, String>>()?;
            Ok(Verdict::Allow(HeaderEdits { edits }))
        }
        Decision::Deny(deny) => {
            let status = StatusCode::from_u16(deny.status)
                .ok()
                .filter(|status| status.is_client_error() || status.is_server_error())
                .ok_or_else(|| format!("deny status {} is not a 4xx or 5xx", deny.status))?;
            bounded_count("deny headers", deny.headers.len())?;
            let headers = deny
                .headers
                .iter()
                .map(|header| Ok((deny_header_name(&header.name)?, header_value(header)?)))
                .collect::<Result<_, String>>()?;
            Ok(Verdict::Deny(Refusal {
                status,
                reason: printable(deny.reason, MAX_REASON_BYTES),
                headers,
            }))
        }
        Decision::Hold(hold) => {
            if hold.approver_groups.is_empty() || hold.approver_groups.len() > MAX_GROUPS {
                return Err(format!(
                    "a hold must name 1 to {MAX_GROUPS} approver groups, not {}",
                    hold.approver_groups.len()
                ));
            }
            if let Some(group) = hold
                .approver_groups
                .iter()
                .find(|group| !is_plain_name(group))
            {
                return Err(format!(
                    "approver group {:?} is not a plain name",
                    truncated(group, 64)
                ));
            }
            if hold.quorum == 0 || hold.quorum > MAX_QUORUM {
                return Err(format!(
                    "hold quorum {} is outside 1 to {MAX_QUORUM}",
                    hold.quorum
                ));
            }
            let timeout = Duration::from_millis(hold.timeout_ms);
            if timeout.is_zero() || timeout > MAX_HOLD_TIMEOUT {
                return Err(format!(
                    "hold timeout {timeout:?} is outside 1ms to {MAX_HOLD_TIMEOUT:?}"
                ));
            }
            let grant = match hold.grant {
                Some(grant) => {
                    let lifetime = Duration::from_millis(grant.lifetime_ms);
                    if lifetime.is_zero() || lifetime > MAX_GRANT_LIFETIME {
                        return Err(format!(
                            "grant lifetime {lifetime:?} is outside 1ms to {MAX_GRANT_LIFETIME:?}"
                        ));
                    }
                    Some(GrantRequest {
                        scope: printable(grant.scope, MAX_REASON_BYTES),
                        lifetime,
                    })
                }
                None => None,
            };
            Ok(Verdict::Hold(HoldRequest {
                reason: printable(hold.reason, MAX_REASON_BYTES),
                approver_groups: hold.approver_groups,
                quorum: hold.quorum,
                timeout,
                grant,
            }))
        }
    }
}

/// Check what `describe()` returned.
///
/// # Errors
/// A message naming the bad field.
pub fn check_metadata(metadata: &Metadata) -> Result<(), String> {
    if !is_plain_name(&metadata.name) {
        return Err(format!(
            "name {:?} is not a plain name",
            truncated(&metadata.name, 64)
        ));
    }
    if metadata.version.is_empty()
        || metadata.version.len() > 64
        || metadata.version.chars().any(char::is_control)
    {
        return Err("version must be 1 to 64 printable characters".to_owned());
    }
    if metadata.judges == super::bindings::ActionKinds::empty() {
        return Err("it judges no kind of action".to_owned());
    }
    Ok(())
}

/// Letters, digits, `-`, `_`, `.`, 1 to 64 of them: names that are safe in
/// logs, URLs and JSON without escaping surprises.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
}

fn bounded_count(what: &str, count: usize) -> Result<(), String> {
    if count > MAX_HEADERS {
        return Err(format!("{count} {what}, more than {MAX_HEADERS}"));
    }
    Ok(())
}

/// Free text from a policy, made safe to show and log: control characters
/// become spaces, and it is cut at `max` bytes (marked with `…`).
pub(crate) fn printable(text: String, max: usize) -> String {
    // Control characters are C0, DEL and C1 (`0xC2 0x80..=0x9F` in UTF-8):
    // text without those bytes (all of it, usually) is kept as it came,
    // with no copy.
    let may_have_controls = text
        .bytes()
        .any(|byte| byte < 0x20 || byte == 0x7f || byte == 0xc2);
    let mut bounded = if may_have_controls {
        text.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    } else {
        text
    };
    if bounded.len() > max {
        bounded.truncate(truncated(&bounded, max - '…'.len_utf8()).len());
        bounded.push('…');
    }
    bounded
}

fn changeable_header_name(name: &str) -> Result<HeaderName, String> {
    let parsed = header_name(name)?;
    if is_owned_by_airlock(&parsed) {
        return Err(format!("header {parsed} may not be changed by a policy"));
    }
    Ok(parsed)
}

fn deny_header_name(name: &str) -> Result<HeaderName, String> {
    let parsed = header_name(name)?;
    let allowed = DENY_RESPONSE_HEADERS.contains(&parsed.as_str())
        || (parsed.as_str().starts_with("x-") && !is_owned_by_airlock(&parsed));
    if !allowed {
        return Err(format!(
            "a deny may not set response header {parsed} (allowed: {}, x-*)",
            DENY_RESPONSE_HEADERS.join(", ")
        ));
    }
    Ok(parsed)
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{:?} is not a valid header name", truncated(name, 64)))
}

fn header_value(header: &Header) -> Result<HeaderValue, String> {
    if header.value.len() > MAX_HEADER_VALUE_BYTES {
        return Err(format!(
            "header {} has a value over {MAX_HEADER_VALUE_BYTES} bytes",
            truncated(&header.name, 64)
        ));
    }
    HeaderValue::from_str(&header.value).map_err(|_| {
        format!(
            "header {} has an invalid value",
            truncated(&header.name, 64)
        )
    })
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
pub(crate) fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::super::bindings::{Allow, Deny, Grant, Hold};
    use super::*;

    fn header(name: &str, value: &str) -> Header {
        Header {
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }

    fn hold(groups: &[&str], quorum: u32, timeout_ms: u64) -> Decision {
        Decision::Hold(Hold {
            reason: "needs a look".to_owned(),
            approver_groups: groups.iter().map(|group| (*group).to_owned()).collect(),
            quorum,
            timeout_ms,
            grant: None,
        })
    }

    #[test]
    fn free_text_loses_control_characters_and_is_cut() {
        let clean = "DELETE /orders/8812 needs approval from oncall (é, 日本)".to_owned();
        assert_eq!(printable(clean.clone(), 1024), clean);
        for (dirty, shown) in [
            ("a\nb\rc\td", "a b c d"),
            ("a\u{7f}b", "a b"),
            ("a\u{85}b\u{9f}c", "a b c"),
            ("\u{0}", " "),
        ] {
            assert_eq!(printable(dirty.to_owned(), 1024), shown, "{dirty:?}");
        }
        let cut = printable("é".repeat(10), 7);
        assert_eq!(cut, "éé…", "cut at a character boundary, marked");
    }

    fn allow(set: &[(&str, &str)], remove: &[&str]) -> Decision {
        Decision::Allow(Allow {
            set_headers: set
                .iter()
                .map(|(name, value)| header(name, value))
                .collect(),
            remove_headers: remove.iter().map(|name| (*name).to_owned()).collect(),
        })
    }

    fn deny(status: u16, reason: &str, headers: &[(&str, &str)]) -> Decision {
        Decision::Deny(Deny {
            status,
            reason: reason.to_owned(),
            headers: headers
                .iter()
                .map(|(name, value)| header(name, value))
                .collect(),
        })
    }

    #[test]
    fn an_allow_removes_then_sets_in_order() {
        let Verdict::Allow(edits) = check(allow(
            &[("x-team", "payments"), ("X-Tier", "gold")],
            &["x-tier"],
        ))
        .unwrap() else {
            panic!("not an allow")
        };
        let mut headers = http::HeaderMap::new();
        headers.insert("x-tier", "silver".parse().unwrap());
        edits.apply(&mut headers);
        assert_eq!(headers["x-tier"], "gold");
        assert_eq!(headers["x-team"], "payments");
    }

    #[test]
    fn headers_airlock_owns_cannot_be_changed() {
        for name in [
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
            "upgrade",
            "x-forwarded-for",
            "forwarded",
            "x-http-method-override",
            "airlock-ticket",
            "via",
        ] {
            let error = check(allow(&[(name, "1")], &[])).unwrap_err();
            assert!(error.contains("may not be changed"), "{name}: {error}");
            assert!(check(allow(&[], &[name])).is_err(), "{name}");
        }
    }

    #[test]
    fn a_deny_needs_an_error_status_and_only_safe_response_headers() {
        assert!(check(deny(
            403,
            "no",
            &[("retry-after", "60"), ("x-why", "rule 7")]
        ))
        .is_ok());
        assert!(check(deny(200, "no", &[]))
            .unwrap_err()
            .contains("not a 4xx or 5xx"));
        assert!(check(deny(99, "no", &[])).is_err());
        for name in [
            "content-length",
            "set-cookie",
            "transfer-encoding",
            "x-forwarded-for",
            "location",
        ] {
            let error = check(deny(403, "no", &[(name, "1")])).unwrap_err();
            assert!(
                error.contains("may not set response header"),
                "{name}: {error}"
            );
        }
    }

    #[test]
    fn long_or_unprintable_reasons_are_cut_and_cleaned_not_refused() {
        let Verdict::Deny(refusal) = check(deny(403, &"é".repeat(MAX_REASON_BYTES), &[])).unwrap()
        else {
            panic!("not a deny")
        };
        assert!(refusal.reason.len() <= MAX_REASON_BYTES);
        assert!(refusal.reason.ends_with('…'));
        let Verdict::Deny(refusal) = check(deny(403, "line\r\nInjected: yes", &[])).unwrap() else {
            panic!("not a deny")
        };
        assert_eq!(refusal.reason, "line  Injected: yes");
    }

    #[test]
    fn a_hold_is_bounded_in_groups_quorum_timeout_and_grant() {
        assert!(check(hold(&["oncall"], 1, 60_000)).is_ok());
        assert!(check(hold(&[], 1, 60_000))
            .unwrap_err()
            .contains("approver groups"));
        assert!(check(hold(&["on call"], 1, 60_000))
            .unwrap_err()
            .contains("plain name"));
        assert!(check(hold(&["oncall"], 0, 60_000))
            .unwrap_err()
            .contains("quorum"));
        assert!(check(hold(&["oncall"], 1, 0))
            .unwrap_err()
            .contains("timeout"));
        let Decision::Hold(mut with_grant) = hold(&["oncall"], 2, 60_000) else {
            unreachable!()
        };
        with_grant.grant = Some(Grant {
            scope: "DELETE /x".into(),
            lifetime_ms: u64::MAX,
        });
        assert!(check(Decision::Hold(with_grant))
            .unwrap_err()
            .contains("grant lifetime"));
    }
}
