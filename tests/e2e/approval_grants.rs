//! Grants and async tickets through the real binary: what an approval lets
//! through afterwards, for whom, how often, and until when.

use std::time::Duration;

use http::Request;
use serde_json::Value;

use crate::approvals::*;
use crate::harness::*;

const DELETES_GRANT_TEN_MINUTES: &str = "[[rules]]\nmethods = [\"DELETE\"]\napprovers = { groups = [\"oncall\"], quorum = 1, timeout_seconds = 30, grant_seconds = 600 }\n";

fn id_of(approval: &Value) -> String {
    approval["id"].as_str().unwrap().to_owned()
}

fn anonymous(method: &str, url: &str) -> Request<BoxBody> {
    Request::builder()
        .method(method)
        .uri(url)
        .body(full(""))
        .unwrap()
}

/// Hold `request`, have bob approve it, and return its reply and approval.
async fn approved(airlock: &Airlock, request: Request<BoxBody>) -> (Reply, Value) {
    let waiting = held(request);
    let id = id_of(&pending(airlock, 1).await[0]);
    let voted = vote(airlock, "bob", &id, "approve", "").await;
    assert_eq!(voted.status, 200, "{}", voted.text());
    (waiting.await.unwrap(), voted.json())
}

async fn entries(airlock: &Airlock, query: &str) -> Vec<Value> {
    let (_, page) = airlock.admin_json(&format!("/v1/audit?{query}")).await;
    page["entries"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_lets_the_same_action_through_until_an_admin_revokes_it() {
    let up = Upstream::start("a").await;
    let (airlock, _folder) = node(&up, DELETES_GRANT_TEN_MINUTES, None, "");
    let (reply, approval) =
        approved(&airlock, from("client", "DELETE", &airlock.url("/x"), "")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let grant_id = approval["grants"][0].as_str().unwrap().to_owned();

    // The same principal, policy and scope: passes without asking.
    let again = Client::http1()
        .send(from("client", "DELETE", &airlock.url("/x"), ""))
        .await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(up.requests(), 2);
    // Another scope (path or host), or another principal: still held.
    let other_path = held(from("client", "DELETE", &airlock.url("/y"), ""));
    let mut other_host = from("client", "DELETE", &airlock.url("/x"), "");
    other_host
        .headers_mut()
        .insert("host", "internal.example".parse().unwrap());
    let other_host = held(other_host);
    let other_principal = held(from("alice", "DELETE", &airlock.url("/x"), ""));
    pending(&airlock, 3).await;
    other_path.abort();
    other_host.abort();
    other_principal.abort();

    let grants = api(&airlock, Some("erin"), "GET", "/v1/grants", "").await;
    let listed = &grants.json()["grants"][0];
    assert_eq!(listed["id"], grant_id.as_str(), "{}", grants.text());
    assert_eq!(listed["subject"], "client");
    assert_eq!(listed["scope"], "DELETE 127.0.0.1/x");
    let lifetime = listed["expires_ms"].as_i64().unwrap() - listed["created_ms"].as_i64().unwrap();
    assert_eq!(lifetime, 600_000);
    let passed = entries(&airlock, &format!("grant={grant_id}")).await;
    let kinds: Vec<&str> = passed.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["grant_created", "request_decision"], "{passed:?}");
    assert_eq!(passed[1]["decision"], "allow");

    // Only an admin revokes; then the next one is held again.
    let path = format!("/v1/grants/{grant_id}");
    assert_eq!(
        api(&airlock, Some("bob"), "DELETE", &path, "").await.status,
        403
    );
    let revoked = api(&airlock, Some("erin"), "DELETE", &path, "").await;
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    assert_eq!(
        api(&airlock, Some("erin"), "DELETE", &path, "")
            .await
            .status,
        404
    );
    let after = held(from("client", "DELETE", &airlock.url("/x"), ""));
    let held_again = eventually(Duration::from_secs(10), || async {
        api(
            &airlock,
            Some("dave"),
            "GET",
            "/v1/approvals?state=pending",
            "",
        )
        .await
        .json()["approvals"]
            .as_array()
            .is_some_and(|list| list.iter().any(|a| a["principal"] == "client"))
    })
    .await;
    assert!(held_again, "after revocation the request is held again");
    after.abort();
    assert_eq!(up.requests(), 2);
    let ended = entries(&airlock, "kind=grant_revoked").await;
    assert_eq!(ended[0]["actor"], "erin");
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_are_capped_and_survive_a_restart() {
    let up = Upstream::start("a").await;
    let (mut airlock, folder) = node(
        &up,
        DELETES_GRANT_TEN_MINUTES,
        None,
        "[approvals]\nmax_grant_lifetime = \"2m\"\n",
    );
    let (reply, _) = approved(&airlock, from("client", "DELETE", &airlock.url("/x"), "")).await;
    assert_eq!(reply.status, 200);
    let grants = api(&airlock, Some("erin"), "GET", "/v1/grants", "")
        .await
        .json();
    let grant = &grants["grants"][0];
    let lifetime = grant["expires_ms"].as_i64().unwrap() - grant["created_ms"].as_i64().unwrap();
    assert_eq!(lifetime, 120_000, "capped by max_grant_lifetime");

    airlock.terminate();
    assert_eq!(airlock.wait(Duration::from_secs(15)), Some(true));
    airlock.restart();
    let again = Client::http1()
        .send(from("client", "DELETE", &airlock.url("/x"), ""))
        .await;
    assert_eq!(
        again.status,
        200,
        "the grant outlived the restart: {}",
        again.text()
    );
    // The requester sees its own grant; bob has none.
    let own = api(&airlock, Some("bob"), "GET", "/v1/grants", "")
        .await
        .json();
    assert_eq!(own["grants"], serde_json::json!([]));
    drop(folder);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_anonymous_requester_gets_no_grant() {
    let up = Upstream::start("a").await;
    let (airlock, _folder) = node(&up, DELETES_GRANT_TEN_MINUTES, None, "");
    let (reply, approval) = approved(&airlock, anonymous("DELETE", &airlock.url("/x"))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(approval["grants"].is_null(), "{approval}");
    assert!(approval["holds"][0]["grant"].is_null(), "{approval}");
    let grants = api(&airlock, Some("erin"), "GET", "/v1/grants", "")
        .await
        .json();
    assert_eq!(grants["grants"], serde_json::json!([]));
    let again = held(anonymous("DELETE", &airlock.url("/x")));
    pending(&airlock, 1).await;
    again.abort();
}

/// `subject`'s request with `Prefer: respond-async` or an `Airlock-Ticket`.
pub(crate) fn with_header(request: Request<BoxBody>, name: &str, value: &str) -> Request<BoxBody> {
    let (mut parts, body) = request.into_parts();
    parts.headers.insert(
        http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
        value.parse().unwrap(),
    );
    Request::from_parts(parts, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_async_ticket_passes_once_and_only_for_the_approved_request() {
    let up = Upstream::start("a").await;
    let (airlock, _folder) = node(&up, DELETES_NEED_ONCALL, None, "");
    let url = airlock.url("/items/7?force=1");
    let asked = Client::http1()
        .send(with_header(
            from("client", "DELETE", &url, "payload"),
            "prefer",
            "respond-async",
        ))
        .await;
    assert_eq!(asked.status, 202, "{}", asked.text());
    assert_eq!(asked.headers["preference-applied"], "respond-async");
    let ticket = asked.json()["ticket"].as_str().unwrap().to_owned();
    let id = asked.json()["approval"].as_str().unwrap().to_owned();
    assert!(ticket.len() >= 32, "{ticket}");
    assert_eq!(up.requests(), 0);

    // The ticket is never shown again: not in lists, not to approvers.
    let listed = api(&airlock, Some("erin"), "GET", "/v1/approvals", "").await;
    let shown = show(&airlock, &id).await;
    for text in [listed.text(), shown.text()] {
        assert!(!text.contains(&ticket), "{text}");
        assert!(!text.contains("ticket_sha256"), "{text}");
    }
    assert_eq!(shown.json()["respond_async"], true);

    let redeem = |subject: &str, method: &str, url: &str, body: &str| {
        with_header(from(subject, method, url, body), "airlock-ticket", &ticket)
    };
    let early = Client::http1()
        .send(redeem("client", "DELETE", &url, "payload"))
        .await;
    assert_eq!(early.status, 403, "not approved yet: {}", early.text());
    assert_eq!(early.json()["error"], "ticket_refused");

    let voted = vote(&airlock, "bob", &id, "approve", "").await;
    assert_eq!(voted.json()["state"], "approved", "{}", voted.text());
    assert!(voted.json()["redeem_by_ms"].is_i64(), "{}", voted.text());

    // Each binding: another path, query, body, method or principal.
    let mismatches = [
        (
            "client",
            "DELETE",
            airlock.url("/items/8?force=1"),
            "payload",
            "path",
        ),
        (
            "client",
            "DELETE",
            airlock.url("/items/7?force=0"),
            "payload",
            "query",
        ),
        ("client", "DELETE", url.clone(), "other", "body"),
        ("alice", "DELETE", url.clone(), "payload", "principal"),
    ];
    for (subject, method, url, body, field) in mismatches {
        let reply = Client::http1()
            .send(redeem(subject, method, &url, body))
            .await;
        assert_eq!(reply.status, 403, "{field}: {}", reply.text());
        assert!(reply.text().contains(field), "{field}: {}", reply.text());
    }
    // The headers and the Host's port are bound too: a backend credential
    // or role added, or another port named, is another request.
    for (name, value, field) in [
        ("authorization", "Bearer backend-superuser", "headers"),
        ("x-role", "admin", "headers"),
        ("baggage", "role=admin", "headers"),
        ("upgrade", "websocket", "headers"),
        ("host", "127.0.0.1:9999", "host and port"),
    ] {
        let reply = Client::http1()
            .send(with_header(
                redeem("client", "DELETE", &url, "payload"),
                name,
                value,
            ))
            .await;
        assert_eq!(reply.status, 403, "{name}: {}", reply.text());
        assert!(reply.text().contains(field), "{name}: {}", reply.text());
    }
    assert_eq!(up.requests(), 0);

    let passed = Client::http1()
        .send(redeem("client", "DELETE", &url, "payload"))
        .await;
    assert_eq!(passed.status, 200, "{}", passed.text());
    assert_eq!(passed.json()["body_len"], 7);
    assert!(
        passed.json()["headers"]["airlock-ticket"].is_null(),
        "the ticket never reaches the backend: {}",
        passed.text()
    );
    let reused = Client::http1()
        .send(redeem("client", "DELETE", &url, "payload"))
        .await;
    assert_eq!(reused.status, 403, "{}", reused.text());
    assert!(reused.text().contains("already used"), "{}", reused.text());
    assert_eq!(up.requests(), 1);

    // The redeemed request's decision entry carries the approval.
    let trail = entries(&airlock, &format!("approval={id}")).await;
    let kinds: Vec<&str> = trail.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["request_decision", "approval_vote", "request_decision"],
        "{trail:?}"
    );
    assert_eq!(trail[2]["decision"], "allow");
    assert!(show(&airlock, &id).await.json()["redeemed_ms"].is_i64());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_async_approval_survives_a_restart_and_anonymous_clients_wait_instead() {
    let up = Upstream::start("a").await;
    let (mut airlock, folder) = node(&up, DELETES_NEED_ONCALL, None, "");
    let url = airlock.url("/x");
    // The ticket binds the Host, port included: the restarted node listens
    // on another ephemeral port, so the client keeps naming the first.
    let host = airlock.proxy().to_string();
    let asked = Client::http1()
        .send(with_header(
            from("client", "DELETE", &url, ""),
            "prefer",
            "respond-async",
        ))
        .await;
    assert_eq!(asked.status, 202, "{}", asked.text());
    let ticket = asked.json()["ticket"].as_str().unwrap().to_owned();
    let id = asked.json()["approval"].as_str().unwrap().to_owned();

    airlock.terminate();
    assert_eq!(airlock.wait(Duration::from_secs(15)), Some(true));
    airlock.restart();
    let url = airlock.url("/x");
    assert_eq!(show(&airlock, &id).await.json()["state"], "pending");
    let voted = vote(&airlock, "bob", &id, "approve", "").await;
    assert_eq!(voted.json()["state"], "approved", "{}", voted.text());
    let passed = Client::http1()
        .send(with_header(
            with_header(from("client", "DELETE", &url, ""), "host", &host),
            "airlock-ticket",
            &ticket,
        ))
        .await;
    assert_eq!(passed.status, 200, "{}", passed.text());

    // No async mode without a principal: the request simply waits.
    let waiting = held(with_header(
        anonymous("DELETE", &url),
        "prefer",
        "respond-async",
    ));
    let approval = pending(&airlock, 1).await.remove(0);
    assert!(approval["respond_async"].is_null(), "{approval}");
    vote(&airlock, "bob", &id_of(&approval), "approve", "").await;
    assert_eq!(waiting.await.unwrap().status, 200);
    drop(folder);
}
