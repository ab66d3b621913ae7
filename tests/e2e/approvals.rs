//! Just-in-time approvals through the real binary: held requests wait on a
//! real socket until approvers vote over the admin API, and each rule of who
//! may vote, and each way a hold ends, shows in what the client gets.

use std::time::Duration;

use http::Request;
use serde_json::Value;

use crate::harness::*;

/// alice and bob approve for oncall, carol for security, dave only views;
/// client only sends requests.
const PEOPLE: [(&str, &str, &str); 5] = [
    ("alice", "oncall", "approver"),
    ("bob", "oncall", "approver"),
    ("carol", "security", "approver"),
    ("dave", "oncall", "viewer"),
    ("client", "", ""),
];

fn token(subject: &str) -> String {
    format!("{subject}-secret-token")
}

fn principals() -> String {
    PEOPLE
        .iter()
        .map(|(subject, group, role)| {
            let hash = sha256_hex(&token(subject));
            let groups = if group.is_empty() { String::new() } else { format!("\"{group}\"") };
            let roles = if role.is_empty() { String::new() } else { format!("\"{role}\"") };
            format!("[[principal]]\nsubject = \"{subject}\"\ntoken_sha256 = \"{hash}\"\ngroups = [{groups}]\nroles = [{roles}]\n\n")
        })
        .collect()
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A node whose route runs approval-rules with `rules` (and, if given, a
/// second copy of it, `second-rules`, with `second`), plus `extra` config.
fn node(
    up: &Upstream,
    rules: &str,
    second: Option<&str>,
    extra: &str,
) -> (Airlock, tempfile::TempDir) {
    let mut policies = vec![("approval-rules", rules)];
    if second.is_some() {
        policies.push(("approval-rules", ""));
    }
    let folder = policy_folder(&policies[..1]);
    let mut names = vec!["\"approval-rules\"".to_owned()];
    if let Some(second) = second {
        std::fs::copy(
            built_policy("approval-rules"),
            folder.path().join("second-rules.wasm"),
        )
        .unwrap();
        std::fs::write(folder.path().join("second-rules.toml"), second).unwrap();
        names.push("\"second-rules\"".to_owned());
    }
    let config = format!(
        "{extra}\n[policies]\ndirectory = {:?}\n\n{PUBLIC_LISTENER}\n{}\n[[route]]\npool = \"web\"\npolicies = [{}]\n\n{}",
        folder.path().display().to_string(),
        pool("web", &[up], ""),
        names.join(", "),
        principals()
    );
    (Airlock::start(&config), folder)
}

const DELETES_NEED_ONCALL: &str = "[[rules]]\nmethods = [\"DELETE\"]\napprovers = { groups = [\"oncall\"], quorum = 1, timeout_seconds = 30 }\n";

/// A request from `subject` (by its proxy token), with `body`.
fn from(subject: &str, method: &str, url: &str, body: &str) -> Request<BoxBody> {
    Request::builder()
        .method(method)
        .uri(url)
        .header("proxy-authorization", format!("Bearer {}", token(subject)))
        .body(full(body.to_owned()))
        .unwrap()
}

/// An admin API call as `subject` (no token if `None`).
async fn api(
    airlock: &Airlock,
    subject: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", airlock.admin()));
    if let Some(subject) = subject {
        request = request.header("authorization", format!("Bearer {}", token(subject)));
    }
    Client::http1()
        .send(request.body(full(body.to_owned())).unwrap())
        .await
}

/// `subject` votes (`approve` or `deny`) on approval `id`.
async fn vote(airlock: &Airlock, subject: &str, id: &str, verdict: &str, body: &str) -> Reply {
    let path = format!("/v1/approvals/{id}/{verdict}");
    api(airlock, Some(subject), "POST", &path, body).await
}

/// Approval `id` as a viewer sees it.
async fn show(airlock: &Airlock, id: &str) -> Reply {
    api(
        airlock,
        Some("dave"),
        "GET",
        &format!("/v1/approvals/{id}"),
        "",
    )
    .await
}

/// Wait for `count` pending approvals and return them.
async fn pending(airlock: &Airlock, count: usize) -> Vec<Value> {
    let mut found = Vec::new();
    for _ in 0..200 {
        let reply = api(
            airlock,
            Some("dave"),
            "GET",
            "/v1/approvals?state=pending",
            "",
        )
        .await;
        found = reply.json()["approvals"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if found.len() == count {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected {count} pending approvals, saw {found:?}");
}

/// Send `request` in the background; the reply arrives when it is decided.
fn held(request: Request<BoxBody>) -> tokio::task::JoinHandle<Reply> {
    tokio::spawn(async move { Client::http1().send(request).await })
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approved_request_is_forwarded_with_its_body_and_the_trail_has_every_step() {
    let up = Upstream::start("a").await;
    let (airlock, _folder) = node(&up, DELETES_NEED_ONCALL, None, "");
    let waiting = held(from(
        "alice",
        "DELETE",
        &airlock.url("/items/7?force=1"),
        "payload",
    ));
    let approval = pending(&airlock, 1).await.remove(0);
    let id = approval["id"].as_str().unwrap().to_owned();
    assert_eq!(approval["principal"], "alice");
    assert_eq!(approval["action"]["method"], "DELETE");
    assert_eq!(approval["action"]["path"], "/items/7");
    assert_eq!(approval["action"]["query"], "force=1");
    assert_eq!(approval["action"]["body_sha256"], sha256_hex("payload"));
    assert_eq!(
        approval["holds"][0]["groups"],
        serde_json::json!(["oncall"])
    );
    assert_eq!(up.requests(), 0, "nothing reaches the backend while held");

    // Nobody votes on their own action; the body preview is for viewers.
    let own = vote(&airlock, "alice", &id, "approve", "").await;
    assert_eq!(own.status, 403, "{}", own.text());
    let shown = show(&airlock, &id).await;
    assert_eq!(shown.json()["body_preview"], "payload");
    // A viewer may not vote.
    let viewer = vote(&airlock, "dave", &id, "approve", "").await;
    assert_eq!(viewer.status, 403, "{}", viewer.text());

    let voted = vote(
        &airlock,
        "bob",
        &id,
        "approve",
        r#"{"comment": "ticket 42"}"#,
    )
    .await;
    assert_eq!(voted.status, 200, "{}", voted.text());
    assert_eq!(voted.json()["state"], "approved");
    let reply = waiting.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["body_len"], 7, "forwarded with its body");
    assert_eq!(reply.json()["query"], "force=1");
    assert_eq!(up.requests(), 1);

    // A resolved approval takes no more votes.
    let late = vote(&airlock, "bob", &id, "deny", "").await;
    assert_eq!(late.status, 409, "{}", late.text());

    let (_, trail) = airlock
        .admin_json(&format!("/v1/audit?approval={id}"))
        .await;
    let kinds: Vec<&str> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["request_decision", "approval_vote"], "{trail}");
    assert_eq!(trail["entries"][1]["actor"], "bob");
    let (_, verified) = airlock.admin_json("/v1/audit/verify").await;
    assert_eq!(verified["ok"], true, "{verified}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deny_answers_403_naming_the_approval_and_who_and_bad_calls_change_nothing() {
    let up = Upstream::start("a").await;
    let (airlock, _folder) = node(&up, DELETES_NEED_ONCALL, None, "");
    let waiting = held(from("client", "DELETE", &airlock.url("/x"), ""));
    let id = pending(&airlock, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let approve = format!("/v1/approvals/{id}/approve");

    let cases = [
        (None, approve.as_str(), "", 401),
        (Some("carol"), approve.as_str(), "", 403),
        (Some("bob"), approve.as_str(), "{not json", 400),
        (Some("bob"), approve.as_str(), r#"{"comment": 7}"#, 400),
        (Some("bob"), "/v1/approvals/apr_nope/approve", "", 404),
    ];
    for (subject, path, body, status) in cases {
        let reply = api(&airlock, subject, "POST", path, body).await;
        assert_eq!(
            reply.status,
            status,
            "{subject:?} {path} {body}: {}",
            reply.text()
        );
        assert!(reply.json()["error"].is_string(), "{}", reply.text());
        assert!(reply.json()["detail"].is_string(), "{}", reply.text());
    }
    // None of them changed anything.
    assert_eq!(
        pending(&airlock, 1).await[0]["votes"],
        serde_json::json!([])
    );

    let denied = vote(
        &airlock,
        "bob",
        &id,
        "deny",
        r#"{"comment": "not during the sale"}"#,
    )
    .await;
    assert_eq!(denied.status, 200, "{}", denied.text());
    let reply = waiting.await.unwrap();
    assert_eq!(reply.status, 403, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["error"], "approval_denied");
    assert_eq!(body["approval"], id.as_str());
    assert_eq!(body["denied_by"], "bob");
    assert_eq!(body["comment"], "not during the sale");
    assert_eq!(up.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_undecided_hold_expires_with_the_configured_status() {
    let up = Upstream::start("a").await;
    let rules = DELETES_NEED_ONCALL.replace("timeout_seconds = 30", "timeout_seconds = 1");
    let (airlock, _folder) = node(&up, &rules, None, "[approvals]\nexpired_status = 408\n");
    let reply = Client::http1()
        .send(from("client", "DELETE", &airlock.url("/x"), ""))
        .await;
    assert_eq!(reply.status, 408, "{}", reply.text());
    assert_eq!(reply.json()["error"], "approval_expired");
    let id = reply.json()["approval"].as_str().unwrap().to_owned();
    let shown = show(&airlock, &id).await;
    assert_eq!(shown.json()["state"], "expired");
    assert_eq!(up.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_holds_each_need_their_own_quorum() {
    let up = Upstream::start("a").await;
    let oncall_two = DELETES_NEED_ONCALL.replace("quorum = 1", "quorum = 2");
    let security_one = DELETES_NEED_ONCALL.replace("oncall", "security");
    let (airlock, _folder) = node(&up, &oncall_two, Some(&security_one), "");
    let waiting = held(from("client", "DELETE", &airlock.url("/x"), ""));
    let approval = pending(&airlock, 1).await.remove(0);
    assert_eq!(approval["holds"].as_array().unwrap().len(), 2, "{approval}");
    let id = approval["id"].as_str().unwrap().to_owned();
    let approve = format!("/v1/approvals/{id}/approve");
    for (voter, state) in [
        ("alice", "pending"),
        ("alice", "pending"),
        ("carol", "pending"),
        ("bob", "approved"),
    ] {
        let reply = api(&airlock, Some(voter), "POST", &approve, "").await;
        assert_eq!(reply.status, 200, "{voter}: {}", reply.text());
        assert_eq!(
            reply.json()["state"],
            state,
            "after {voter}: {}",
            reply.text()
        );
    }
    assert_eq!(waiting.await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_pending_limit_a_principal_gets_429_with_retry_after() {
    let up = Upstream::start("a").await;
    let (airlock, _folder) = node(
        &up,
        DELETES_NEED_ONCALL,
        None,
        "[approvals]\nmax_pending_per_principal = 1\n",
    );
    let first = held(from("client", "DELETE", &airlock.url("/a"), ""));
    pending(&airlock, 1).await;
    let second = Client::http1()
        .send(from("client", "DELETE", &airlock.url("/b"), ""))
        .await;
    assert_eq!(second.status, 429, "{}", second.text());
    assert_eq!(second.json()["error"], "too_many_held");
    assert_eq!(second.headers["retry-after"], "60");
    // Another principal is not limited by the first one's holds.
    let other = held(from("dave", "DELETE", &airlock.url("/c"), ""));
    pending(&airlock, 2).await;
    first.abort();
    other.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_proxy_token_is_401_and_reaches_nothing() {
    let up = Upstream::start("a").await;
    let (airlock, _folder) = node(&up, DELETES_NEED_ONCALL, None, "");
    let reply = Client::http1()
        .send(from("mallory", "GET", &airlock.url("/x"), ""))
        .await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(up.requests(), 0);
    // The token is Airlock's: it never reaches the backend.
    let passed = Client::http1()
        .send(from("client", "GET", &airlock.url("/x"), ""))
        .await;
    assert_eq!(passed.status, 200);
    assert!(
        passed.json()["headers"]["proxy-authorization"].is_null(),
        "{}",
        passed.text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_keeps_approvals_and_cancels_the_holds_whose_requests_died() {
    let up = Upstream::start("a").await;
    let (mut airlock, folder) = node(&up, DELETES_NEED_ONCALL, None, "");
    let waiting = held(from("client", "DELETE", &airlock.url("/x"), ""));
    let id = pending(&airlock, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    airlock.terminate();
    assert_eq!(airlock.wait(Duration::from_secs(15)), Some(true));
    // The held request was answered by the shutdown, not forwarded.
    assert_eq!(waiting.await.unwrap().status, 503);
    airlock.restart();
    let shown = show(&airlock, &id).await;
    assert_eq!(shown.status, 200, "{}", shown.text());
    assert_eq!(shown.json()["state"], "cancelled");
    assert_eq!(up.requests(), 0);
    drop(folder);
}
