//! What a policy answered, checked: the contract's `decision` turned into a
//! [`Verdict`] with HTTP types, or refused as invalid. A policy is untrusted
//! code, so every string and number it returns is bounded here before it can
//! reach a client, a log line or the audit trail.

use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};

use super::bindings::{Decision, Header, Metadata};

/// Longest reason a policy may give; longer is an invalid decision.
pub const MAX_REASON_BYTES: usize = 1024;
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

/// Request headers no policy may set or remove: they frame the message or
/// name its target, and changing them would forward something other than
/// what was judged.
const PROTECTED_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

/// One policy's checked decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allow(HeaderEdits),
    Deny(Refusal),
    Hold(HoldRequest),
}

/// Request header changes an `allow` asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeaderEdits {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
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
            let set = allow
                .set_headers
                .iter()
                .map(request_header)
                .collect::<Result<_, _>>()?;
            let remove = allow
                .remove_headers
                .iter()
                .map(|name| changeable_header_name(name))
                .collect::<Result<_, _>>()?;
            Ok(Verdict::Allow(HeaderEdits { set, remove }))
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
                .map(|header| Ok((header_name(&header.name)?, header_value(header)?)))
                .collect::<Result<_, String>>()?;
            Ok(Verdict::Deny(Refusal {
                status,
                reason: bounded_reason(deny.reason)?,
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
                    truncated(group)
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
                        scope: bounded_reason(grant.scope)?,
                        lifetime,
                    })
                }
                None => None,
            };
            Ok(Verdict::Hold(HoldRequest {
                reason: bounded_reason(hold.reason)?,
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
            truncated(&metadata.name)
        ));
    }
    if metadata.version.is_empty() || metadata.version.len() > 64 {
        return Err("version must be 1 to 64 characters".to_owned());
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

fn bounded_reason(reason: String) -> Result<String, String> {
    if reason.len() > MAX_REASON_BYTES {
        return Err(format!(
            "a reason of {} bytes, more than {MAX_REASON_BYTES}",
            reason.len()
        ));
    }
    if reason.chars().any(char::is_control) {
        return Err(format!(
            "reason {:?} contains control characters",
            truncated(&reason)
        ));
    }
    Ok(reason)
}

fn request_header(header: &Header) -> Result<(HeaderName, HeaderValue), String> {
    Ok((changeable_header_name(&header.name)?, header_value(header)?))
}

fn changeable_header_name(name: &str) -> Result<HeaderName, String> {
    let parsed = header_name(name)?;
    if PROTECTED_HEADERS.contains(&parsed.as_str()) {
        return Err(format!("header {parsed} may not be changed by a policy"));
    }
    Ok(parsed)
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{:?} is not a valid header name", truncated(name)))
}

fn header_value(header: &Header) -> Result<HeaderValue, String> {
    if header.value.len() > MAX_REASON_BYTES {
        return Err(format!(
            "header {} has a value over {MAX_REASON_BYTES} bytes",
            truncated(&header.name)
        ));
    }
    HeaderValue::from_str(&header.value)
        .map_err(|_| format!("header {} has an invalid value", truncated(&header.name)))
}

fn truncated(text: &str) -> &str {
    let mut end = text.len().min(64);
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
    fn an_allow_keeps_its_header_edits_in_order() {
        let verdict = check(Decision::Allow(Allow {
            set_headers: vec![header("x-team", "payments"), header("X-Tier", "gold")],
            remove_headers: vec!["x-debug".to_owned()],
        }))
        .unwrap();
        let Verdict::Allow(edits) = verdict else {
            panic!("not an allow")
        };
        assert_eq!(edits.set[1].0.as_str(), "x-tier");
        assert_eq!(edits.remove[0].as_str(), "x-debug");
    }

    #[test]
    fn framing_headers_cannot_be_changed() {
        for name in ["host", "content-length", "transfer-encoding"] {
            let error = check(Decision::Allow(Allow {
                set_headers: vec![header(name, "1")],
                remove_headers: Vec::new(),
            }))
            .unwrap_err();
            assert!(error.contains("may not be changed"), "{error}");
        }
        assert!(check(Decision::Allow(Allow {
            set_headers: vec![],
            remove_headers: vec!["Host".into()]
        }))
        .is_err());
    }

    #[test]
    fn a_deny_needs_an_error_status_and_a_bounded_reason() {
        let deny = |status, reason: &str| {
            Decision::Deny(Deny {
                status,
                reason: reason.to_owned(),
                headers: vec![],
            })
        };
        assert!(check(deny(403, "no")).is_ok());
        assert!(check(deny(200, "no"))
            .unwrap_err()
            .contains("not a 4xx or 5xx"));
        assert!(check(deny(99, "no")).is_err());
        assert!(check(deny(403, &"x".repeat(MAX_REASON_BYTES + 1)))
            .unwrap_err()
            .contains("more than"));
        assert!(check(deny(403, "line\r\nInjected: yes"))
            .unwrap_err()
            .contains("control characters"));
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
