//! Webhooks: every `[[webhook]]` hears of each approval created and
//! resolved. Each has its own task reading the approvals' event stream, so
//! a slow or dead receiver never delays a decision; events that arrive
//! while a delivery is under way are coalesced into the next one (one POST
//! for a burst). A failed delivery is retried with exponential backoff
//! (1s, 2s, 4s, ... at most 60s) up to `attempts` times, then dropped and
//! logged. Bodies never carry the body preview or the ticket hash.
//!
//! ## `generic`: signed JSON
//!
//! `{"events": [{"event": "created"|"resolved", "approval": {...}}]}` (and
//! `{"event": "rolled_back", "change": {...}, "reason": ...}` when the
//! continuity check undoes a routing change) with
//! `Airlock-Timestamp: UNIX_SECONDS` and `Airlock-Signature: v1=HEX`, where
//! `HEX` is the HMAC-SHA256, under the webhook's key, of
//! `TIMESTAMP + "." + BODY`. A receiver recomputes it, compares in constant
//! time, and rejects a timestamp more than [`MAX_AGE_SECS`] from its clock
//! (so a captured delivery cannot be replayed later): [`verify`].
//!
//! ## `slack`: an incoming-webhook message
//!
//! `{"text": ...}`, one line per event, linking to the approval in the
//! admin API (`[approvals] link_base`) and naming the action's trace id. The link is a GET, which changes
//! nothing, so a chat unfurler or mail scanner that fetches it is harmless;
//! approvers act with a POST and their token.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{header, Request};
use http_body_util::Full;
use sha2::Sha256;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::{ApprovalEvent, ApprovalState, Approvals};
use crate::config::{WebhookConfig, WebhookFormat};
use crate::http_client::HttpClient;

/// Receivers reject signatures older (or newer) than this.
pub const MAX_AGE_SECS: i64 = 300;
/// Most events in one delivery.
const MAX_EVENTS: usize = 100;
/// One delivery attempt's time limit.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A webhook ready to deliver.
#[derive(Debug)]
struct Webhook {
    url: http::Uri,
    format: WebhookFormat,
    key: Vec<u8>,
    attempts: u32,
    link_base: String,
}

/// Why the webhooks could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("webhook {url}: {detail}")]
    Webhook { url: String, detail: String },
}

/// Start one delivery task per webhook, fed by `approvals`' events.
///
/// # Errors
/// An unreadable key file or a bad URL.
pub fn start(
    webhooks: &[WebhookConfig],
    approvals: &Arc<Approvals>,
    link_base: &str,
) -> Result<Vec<tokio::task::JoinHandle<()>>, NotifyError> {
    let mut tasks = Vec::new();
    for config in webhooks {
        let failed = |detail: String| NotifyError::Webhook {
            url: config.url.clone(),
            detail,
        };
        let key = match &config.secret_file {
            Some(file) => std::fs::read_to_string(file)
                .map_err(|error| failed(format!("{}: {error}", file.display())))?
                .trim()
                .as_bytes()
                .to_vec(),
            None => Vec::new(),
        };
        let webhook = Webhook {
            url: config
                .url
                .parse()
                .map_err(|error: http::uri::InvalidUri| failed(error.to_string()))?,
            format: config.format,
            key,
            attempts: config.attempts,
            link_base: link_base.trim_end_matches('/').to_owned(),
        };
        let client = HttpClient::new(CALL_TIMEOUT).map_err(|error| failed(error.to_string()))?;
        tasks.push(tokio::spawn(deliver(
            webhook,
            client,
            approvals.subscribe_own(),
        )));
    }
    Ok(tasks)
}

/// Deliver events until the approvals are gone.
async fn deliver(
    webhook: Webhook,
    client: HttpClient,
    mut events: tokio::sync::broadcast::Receiver<ApprovalEvent>,
) {
    loop {
        let first = match events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(url = %webhook.url, missed, "webhook fell behind; events dropped");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_EVENTS {
            match events.try_recv() {
                Ok(event) => batch.push(event),
                Err(TryRecvError::Lagged(missed)) => {
                    tracing::warn!(url = %webhook.url, missed, "webhook fell behind; events dropped");
                }
                Err(_) => break,
            }
        }
        send_with_retries(&webhook, &client, &batch).await;
    }
}

async fn send_with_retries(webhook: &Webhook, client: &HttpClient, batch: &[ApprovalEvent]) {
    let body = Bytes::from(match webhook.format {
        WebhookFormat::Generic => generic_body(batch),
        WebhookFormat::Slack => slack_body(batch, &webhook.link_base),
    });
    for attempt in 0..webhook.attempts {
        if attempt > 0 {
            tokio::time::sleep(backoff(attempt)).await;
        }
        let mut request = Request::post(webhook.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "airlock-webhook");
        if webhook.format == WebhookFormat::Generic {
            let timestamp = crate::audit::now_ms() / 1000;
            request = request
                .header("airlock-timestamp", timestamp.to_string())
                .header("airlock-signature", sign(&webhook.key, timestamp, &body));
        }
        let Ok(request) = request.body(Full::new(body.clone())) else {
            return;
        };
        match client.call(request).await {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => tracing::warn!(
                url = %webhook.url, attempt, status = response.status().as_u16(),
                "webhook refused the delivery"
            ),
            Err(error) => {
                tracing::warn!(url = %webhook.url, attempt, "webhook unreachable: {error}")
            }
        }
    }
    tracing::error!(url = %webhook.url, events = batch.len(), "webhook delivery given up");
}

/// The wait before retry `attempt` (1, 2, ...): 1s doubling, at most 60s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

fn generic_body(batch: &[ApprovalEvent]) -> Vec<u8> {
    // Plain structs of strings and numbers always serialize.
    serde_json::to_vec(&serde_json::json!({ "events": batch })).unwrap_or_default()
}

fn slack_body(batch: &[ApprovalEvent], link_base: &str) -> Vec<u8> {
    let link = |approval: &super::Approval| {
        format!("<{link_base}/v1/approvals/{}|{}>", approval.id, approval.id)
    };
    let line = |event: &ApprovalEvent| match event {
        ApprovalEvent::Created { approval } => format!(
            "Approval wanted: `{}` by {}: {} ({}{})",
            approval.action.describe(),
            approval.principal,
            approval.reason,
            link(approval),
            approval
                .trace
                .as_ref()
                .map(|trace| format!(", trace {trace}"))
                .unwrap_or_default()
        ),
        ApprovalEvent::Resolved { approval } if approval.state == ApprovalState::Denied => format!(
            "Denied by {}: `{}` ({})",
            approval.denied_by.as_deref().unwrap_or("?"),
            approval.action.describe(),
            link(approval)
        ),
        ApprovalEvent::Resolved { approval } => format!(
            "{}: `{}` ({})",
            capitalized(approval.state.name()),
            approval.action.describe(),
            link(approval)
        ),
        ApprovalEvent::RolledBack { change, reason } => {
            format!("Rolled back by itself: `{change}`: {reason}")
        }
    };
    let lines: Vec<String> = batch.iter().map(line).collect();
    serde_json::to_vec(&serde_json::json!({ "text": lines.join("\n") })).unwrap_or_default()
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The `Airlock-Signature` value for `body` sent at `timestamp`:
/// `v1=` and the HMAC-SHA256 of `TIMESTAMP.BODY` under `key`, in hex.
pub fn sign(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    let digest = signature_mac(key, timestamp, body).finalize().into_bytes();
    format!("v1={}", hex::encode(digest))
}

/// The HMAC over `TIMESTAMP.BODY`, ready to finalize or verify.
fn signature_mac(key: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Why a receiver rejects a delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Airlock-Timestamp header is not a number")]
    BadTimestamp,
    #[error("signed {0}s away from now; more than 300s")]
    Stale(i64),
    #[error("the signature does not match")]
    Mismatch,
}

/// The receiver's check: `signature` (the `Airlock-Signature` header) is
/// `key`'s signature of `body` at `timestamp` (the `Airlock-Timestamp`
/// header), and that time is within [`MAX_AGE_SECS`] of `now_secs`.
///
/// # Errors
/// Which part failed.
pub fn verify(
    key: &[u8],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now_secs: i64,
) -> Result<(), SignatureError> {
    let sent: i64 = timestamp
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    let age = now_secs.saturating_sub(sent);
    if age.abs() > MAX_AGE_SECS {
        return Err(SignatureError::Stale(age));
    }
    let presented = signature
        .strip_prefix("v1=")
        .and_then(|digest| hex::decode(digest).ok())
        .ok_or(SignatureError::Mismatch)?;
    signature_mac(key, sent, body)
        .verify_slice(&presented)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_checks_out_only_fresh_and_unaltered() {
        let key = b"webhook key";
        let body = br#"{"events":[]}"#;
        let now = 1_800_000_000;
        let signature = sign(key, now - 10, body);
        assert_eq!(
            verify(key, &(now - 10).to_string(), &signature, body, now),
            Ok(())
        );
        assert_eq!(
            verify(key, &(now - 10).to_string(), &signature, b"{}", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other key", &(now - 10).to_string(), &signature, body, now),
            Err(SignatureError::Mismatch)
        );
        // The same delivery replayed six minutes later.
        assert_eq!(
            verify(key, &(now - 10).to_string(), &signature, body, now + 360),
            Err(SignatureError::Stale(370))
        );
        // A timestamp moved forward to look fresh no longer matches.
        assert_eq!(
            verify(key, &(now + 350).to_string(), &signature, body, now + 360),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(key, "soon", &signature, body, now),
            Err(SignatureError::BadTimestamp)
        );
    }

    /// Receivers check signatures with their own HMAC code: the format is
    /// a contract, checked against Python's `hmac.new(key, b"1700000000."
    /// + body, hashlib.sha256).hexdigest()`.
    #[test]
    fn a_signature_is_v1_and_the_hex_hmac_of_timestamp_dot_body() {
        assert_eq!(
            sign(b"whsec-test", 1_700_000_000, br#"{"events":[]}"#),
            "v1=f6508d728f59e4a4c30a839747614dc39926dae93caf45c8e91908c852f5ce5d"
        );
        // A prefix of the right signature is not a signature.
        let truncated = "v1=f6508d728f59e4a4c30a839747614dc3";
        assert_eq!(
            verify(
                b"whsec-test",
                "1700000000",
                truncated,
                br#"{"events":[]}"#,
                1_700_000_000
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn retries_back_off_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|attempt| backoff(attempt).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
