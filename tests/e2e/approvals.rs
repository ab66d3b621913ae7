//! Just-in-time approvals through the real binary: held requests wait on a
//! real socket until approvers vote over the admin API, and each rule of who
//! may vote, and each way a hold ends, shows in what the client gets.

use std::time::Duration;

use http::Request;
use serde_json::Value;

use crate::harness::*;

/// alice and bob approve for oncall, carol for security, dave only views,
/// erin administers; client only sends requests.
const PEOPLE: [(&str, &str, &str); 6] = [
    ("alice", "oncall", "approver"),
    ("bob", "oncall", "approver"),
    ("carol", "security", "approver"),
    ("dave", "oncall", "viewer"),
    ("erin", "", "admin"),
    ("client", "", ""),
];

pub(crate) fn token(subject: &str) -> String {
    format!("{subject}-secret-token")
}

pub(crate) fn principals() -> String {
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

pub(crate) fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A node whose route runs approval-rules with `rules` (and, if given, a
/// second copy of it, `second-rules`, with `second`), plus `extra` config.
pub(crate) fn node(
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

pub(crate) const DELETES_NEED_ONCALL: &str = "[[rules]]\nmethods = [\"DELETE\"]\napprovers = { groups = [\"oncall\"], quorum = 1, timeout_seconds = 30 }\n";

/// A request from `subject` (by its proxy token), with `body`.
pub(crate) fn from(subject: &str, method: &str, url: &str, body: &str) -> Request<BoxBody> {
    Request::builder()
        .method(method)
        .uri(url)
        .header("proxy-authorization", format!("Bearer {}", token(subject)))
        .body(full(body.to_owned()))
        .unwrap()
}

/// An admin API call as `subject` (no token if `None`).
pub(crate) async fn api(
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
pub(crate) async fn vote(
    airlock: &Airlock,
    subject: &str,
    id: &str,
    verdict: &str,
    body: &str,
) -> Reply {
    let path = format!("/v1/approvals/{id}/{verdict}");
    api(airlock, Some(subject), "POST", &path, body).await
}

/// Approval `id` as a viewer sees it.
pub(crate) async fn show(airlock: &Airlock, id: &str) -> Reply {
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
pub(crate) async fn pending(airlock: &Airlock, count: usize) -> Vec<Value> {
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

/// client's `DELETE /x`, held: its reply to come, and its approval's id.
pub(crate) async fn client_delete_held(
    airlock: &Airlock,
) -> (tokio::task::JoinHandle<Reply>, String) {
    let waiting = held(from("client", "DELETE", &airlock.url("/x"), ""));
    let id = pending(airlock, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (waiting, id)
}

/// Send `request` in the background; the reply arrives when it is decided.
pub(crate) fn held(request: Request<BoxBody>) -> tokio::task::JoinHandle<Reply> {
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

    // A resolved approval takes no more votes; one who may not vote on it
    // is told so, not what became of it.
    let late = vote(&airlock, "bob", &id, "deny", "").await;
    assert_eq!(late.status, 409, "{}", late.text());
    let outsider = vote(&airlock, "carol", &id, "deny", "").await;
    assert_eq!(outsider.status, 403, "{}", outsider.text());
    assert!(!outsider.text().contains("approved"), "{}", outsider.text());

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
    let (waiting, id) = client_delete_held(&airlock).await;
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
async fn a_vote_cannot_be_changed_but_may_be_repeated() {
    let up = Upstream::start("a").await;
    let rules = DELETES_NEED_ONCALL.replace("quorum = 1", "quorum = 2");
    let (airlock, _folder) = node(&up, &rules, None, "");
    let (waiting, id) = client_delete_held(&airlock).await;
    assert_eq!(
        vote(&airlock, "alice", &id, "approve", "").await.status,
        200
    );
    // The same vote again is a safe retry.
    let again = vote(&airlock, "alice", &id, "approve", "").await;
    assert_eq!(again.status, 200, "{}", again.text());
    // The other verdict is refused, not silently dropped.
    let changed = vote(&airlock, "alice", &id, "deny", "").await;
    assert_eq!(changed.status, 409, "{}", changed.text());
    assert_eq!(changed.json()["error"], "already_voted");
    let approval = pending(&airlock, 1).await.remove(0);
    assert_eq!(approval["votes"].as_array().unwrap().len(), 1, "{approval}");
    assert_eq!(vote(&airlock, "bob", &id, "approve", "").await.status, 200);
    assert_eq!(waiting.await.unwrap().status, 200);
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
    let (waiting, id) = client_delete_held(&airlock).await;
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

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_hangs_up_cancels_its_approval() {
    use tokio::io::AsyncWriteExt as _;
    let up = Upstream::start("a").await;
    let (airlock, _folder) = node(&up, DELETES_NEED_ONCALL, None, "");
    let mut stream = tokio::net::TcpStream::connect(airlock.proxy())
        .await
        .unwrap();
    let request = format!(
        "DELETE /x HTTP/1.1\r\nHost: app\r\nProxy-Authorization: Bearer {}\r\nContent-Length: 0\r\n\r\n",
        token("client")
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let id = pending(&airlock, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(stream);
    let cancelled = eventually(Duration::from_secs(10), || async {
        show(&airlock, &id).await.json()["state"] == "cancelled"
    })
    .await;
    assert!(cancelled, "{}", show(&airlock, &id).await.text());
    let late = vote(&airlock, "bob", &id, "approve", "").await;
    assert_eq!(late.status, 409, "{}", late.text());
    assert_eq!(up.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_requests_held_at_once_are_all_released() {
    const HELD: usize = 200;
    let up = Upstream::start("a").await;
    let (airlock, _folder) = node(
        &up,
        DELETES_NEED_ONCALL,
        None,
        "[approvals]\nmax_pending_per_principal = 500\nmax_created_per_minute = 500\n",
    );
    let waiting: Vec<_> = (0..HELD)
        .map(|i| {
            held(from(
                "client",
                "DELETE",
                &airlock.url(&format!("/items/{i}")),
                "x",
            ))
        })
        .collect();
    let approvals = pending(&airlock, HELD).await;
    let mut votes = tokio::task::JoinSet::new();
    // One address may hold 64 admin connections at once: vote 32 at a time.
    let turns = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    for approval in approvals {
        let id = approval["id"].as_str().unwrap().to_owned();
        let admin = airlock.admin();
        let turns = turns.clone();
        votes.spawn(async move {
            let _turn = turns.acquire().await.unwrap();
            let request = Request::post(format!("http://{admin}/v1/approvals/{id}/approve"))
                .header("authorization", format!("Bearer {}", token("bob")))
                .body(full(""))
                .unwrap();
            Client::http1().send(request).await.status
        });
    }
    while let Some(status) = votes.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    for reply in waiting {
        assert_eq!(reply.await.unwrap().status, 200);
    }
    assert_eq!(up.requests(), HELD);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_creation_rate_and_held_bytes_limits_answer_429_and_change_nothing() {
    let up = Upstream::start("a").await;
    let (airlock, _folder) = node(
        &up,
        DELETES_NEED_ONCALL,
        None,
        "[approvals]\nmax_created_per_minute = 2\nmax_held_bytes = 16\n",
    );
    // A body larger than all held bytes together: 429, no approval.
    let large = Client::http1()
        .send(from(
            "alice",
            "DELETE",
            &airlock.url("/big"),
            "0123456789abcdefXYZ",
        ))
        .await;
    assert_eq!(large.status, 429, "{}", large.text());
    assert_eq!(large.headers["retry-after"], "60");
    assert!(
        large.text().contains("held request bodies"),
        "{}",
        large.text()
    );

    let first = held(from("client", "DELETE", &airlock.url("/a"), ""));
    let second = held(from("client", "DELETE", &airlock.url("/b"), ""));
    pending(&airlock, 2).await;
    let third = Client::http1()
        .send(from("client", "DELETE", &airlock.url("/c"), ""))
        .await;
    assert_eq!(third.status, 429, "{}", third.text());
    assert!(
        third.text().contains("in the last minute"),
        "{}",
        third.text()
    );
    pending(&airlock, 2).await;
    first.abort();
    second.abort();
    assert_eq!(up.requests(), 0);
}

/// `/metrics` as (series, value): every line that is not a comment must be
/// `name{labels} value`, or `name value`.
async fn metrics(airlock: &Airlock) -> Vec<(String, f64)> {
    let reply = airlock.admin_get("/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(reply.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    reply
        .text()
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample: {line}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {line}"));
            (series.to_owned(), value)
        })
        .collect()
}

fn sample(samples: &[(String, f64)], series: &str) -> f64 {
    samples
        .iter()
        .find(|(name, _)| name == series)
        .map(|(_, value)| *value)
        .unwrap_or_else(|| panic!("no {series} in {samples:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_as_prometheus_text_and_move_with_traffic() {
    let up = Upstream::start("a").await;
    let (airlock, _folder) = node(&up, DELETES_NEED_ONCALL, None, "");
    assert_eq!(Client::http1().get(&airlock.url("/x")).await.status, 200);
    let (waiting, id) = client_delete_held(&airlock).await;
    assert_eq!(
        sample(&metrics(&airlock).await, "airlock_approvals_pending"),
        1.0
    );
    vote(&airlock, "bob", &id, "approve", "").await;
    assert_eq!(waiting.await.unwrap().status, 200);

    let samples = metrics(&airlock).await;
    assert_eq!(
        sample(
            &samples,
            "airlock_requests_total{route=\"*/\",decision=\"allow\",status=\"200\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &samples,
            "airlock_requests_total{route=\"*/\",decision=\"hold\",status=\"200\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &samples,
            "airlock_policy_evaluation_seconds_count{policy=\"approval-rules\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(
            &samples,
            "airlock_approval_wait_seconds_count{outcome=\"approved\"}"
        ),
        1.0
    );
    assert!(sample(&samples, "airlock_audit_commit_seconds_count") >= 2.0);
    assert_eq!(sample(&samples, "airlock_approvals_pending"), 0.0);
    let backend = format!("airlock_backend_up{{pool=\"web\",backend=\"{}\"}}", up.addr);
    assert_eq!(sample(&samples, &backend), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_callers_trace_id_links_its_approval_and_entries_and_reaches_the_backend() {
    let up = Upstream::start("a").await;
    let (airlock, _folder) = node(&up, DELETES_NEED_ONCALL, None, "");
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (mut parts, body) = from("client", "DELETE", &airlock.url("/x"), "").into_parts();
    parts
        .headers
        .insert("traceparent", traceparent.parse().unwrap());
    let waiting = held(Request::from_parts(parts, body));
    let approval = pending(&airlock, 1).await.remove(0);
    assert_eq!(
        approval["trace"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "{approval}"
    );
    vote(
        &airlock,
        "bob",
        approval["id"].as_str().unwrap(),
        "approve",
        "",
    )
    .await;
    let reply = waiting.await.unwrap();
    assert_eq!(
        reply.json()["headers"]["traceparent"][0],
        traceparent,
        "{}",
        reply.text()
    );
    // The decision and, once recorded (batched), the outcome.
    let mut kinds = Vec::new();
    for _ in 0..100 {
        let (_, trail) = airlock
            .admin_json("/v1/audit?trace=4bf92f3577b34da6a3ce929d0e0e4736")
            .await;
        kinds = trail["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["kind"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>();
        if kinds.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(kinds, ["request_decision", "request_outcome"]);
}
