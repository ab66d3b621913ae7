//! Traces through the real binary into a real OTLP receiver: a held and
//! approved request is one trace inside the caller's, with the spans of its
//! steps in order; the backend sees Airlock's span as its parent; sampling
//! keeps what was not simply allowed; spans are flushed at shutdown.

use std::time::Duration;

use crate::approvals::{from, held, node, pending, vote, DELETES_NEED_ONCALL};
use crate::harness::*;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// Stop `airlock` gracefully (which flushes its spans) and return what the
/// receiver got.
fn stop_and_collect(mut airlock: Airlock, receiver: &OtlpReceiver) -> Vec<ReceivedSpan> {
    airlock.terminate();
    assert_eq!(
        airlock.wait(Duration::from_secs(20)),
        Some(true),
        "{}",
        airlock.log()
    );
    receiver.spans()
}

fn one<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one `{name}` span expected in {spans:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_and_approved_request_is_one_trace_inside_the_callers_with_each_step() {
    let receiver = OtlpReceiver::grpc().await;
    let up = Upstream::start("a").await;
    let tracing = format!(
        "[tracing]\notlp_endpoint = \"{}\"\nservice_name = \"airlock-e2e\"\n",
        receiver.endpoint()
    );
    let (airlock, _folder) = node(&up, DELETES_NEED_ONCALL, None, &tracing);
    let (mut parts, body) = from("client", "DELETE", &airlock.url("/items/7"), "").into_parts();
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    parts
        .headers
        .insert("traceparent", traceparent.parse().unwrap());
    parts
        .headers
        .insert("tracestate", "vendor=kept".parse().unwrap());
    let waiting = held(http::Request::from_parts(parts, body));
    let approval = pending(&airlock, 1).await.remove(0);
    let approval_id = approval["id"].as_str().unwrap().to_owned();
    vote(&airlock, "bob", &approval_id, "approve", "").await;
    let reply = waiting.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());

    // The backend's parent is Airlock's upstream span, in the caller's trace.
    let seen = reply.json()["headers"]["traceparent"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let fields: Vec<&str> = seen.split('-').collect();
    assert_eq!(
        (fields[0], fields[1], fields[3]),
        ("00", CLIENT_TRACE, "01"),
        "{seen}"
    );
    assert_ne!(
        fields[2], CLIENT_SPAN,
        "Airlock's own span is the backend's parent"
    );
    assert_eq!(reply.json()["headers"]["tracestate"][0], "vendor=kept");

    let spans = stop_and_collect(airlock, &receiver);
    let ours: Vec<ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == CLIENT_TRACE)
        .cloned()
        .collect();
    assert!(ours.iter().all(|s| s.service == "airlock-e2e"), "{ours:#?}");

    let request = ours
        .iter()
        .find(|s| s.kind == 2)
        .unwrap_or_else(|| panic!("no server span in {ours:#?}"));
    assert!(request.name.starts_with("DELETE "), "{}", request.name);
    assert_eq!(request.parent_span_id, CLIENT_SPAN);
    assert_eq!(request.attribute("http.request.method"), "DELETE");
    assert_eq!(request.attribute("url.path"), "/items/7");
    assert_eq!(request.attribute("airlock.decision"), "hold");
    assert_eq!(request.attribute("airlock.principal"), "client");
    assert_eq!(request.attribute("http.response.status_code"), "200");

    let route = one(&ours, "route match");
    let policy = one(&ours, "policy");
    let commit = one(&ours, "audit commit");
    let wait = one(&ours, "approval wait");
    let upstream = ours
        .iter()
        .find(|s| s.kind == 3)
        .unwrap_or_else(|| panic!("no client span in {ours:#?}"));
    for child in [route, policy, commit, wait, upstream] {
        assert_eq!(child.parent_span_id, request.span_id, "{child:#?}");
        assert!(
            request.start_ns <= child.start_ns && child.end_ns <= request.end_ns,
            "{child:#?} outside {request:#?}"
        );
    }
    assert_eq!(policy.attribute("airlock.policy.name"), "approval-rules");
    assert_eq!(policy.attribute("airlock.policy.decision"), "hold");
    assert_eq!(
        policy.attribute("airlock.policy.hash").len(),
        64,
        "{policy:#?}"
    );
    assert_eq!(wait.attribute("airlock.approval.id"), approval_id);
    assert_eq!(wait.attribute("airlock.approval.outcome"), "approved");
    assert_eq!(wait.attribute("airlock.approval.approvers"), "bob");
    assert_eq!(
        upstream.span_id, fields[2],
        "the backend's parent is this span"
    );
    assert_eq!(upstream.attribute("server.address"), up.addr.to_string());
    assert_eq!(upstream.attribute("http.response.status_code"), "200");
    // The steps in the order they happened.
    assert!(route.end_ns <= policy.start_ns, "route, then policy");
    assert!(policy.end_ns <= commit.start_ns, "policy, then the commit");
    assert!(commit.end_ns <= wait.start_ns, "commit, then the wait");
    assert!(wait.end_ns <= upstream.start_ns, "approved, then forwarded");
    assert!(
        wait.end_ns - wait.start_ns >= 1_000_000,
        "the wait lasted until the vote: {wait:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn at_a_zero_ratio_only_what_was_not_simply_allowed_is_traced_over_http() {
    let receiver = OtlpReceiver::http().await;
    let up = Upstream::start("a").await;
    let folder = policy_folder(&[("deny-list", "rules = [{ methods = [\"DELETE\"] }]\n")]);
    let config = format!(
        "[tracing]\notlp_endpoint = \"{}\"\nprotocol = \"http/protobuf\"\nsample_ratio = 0.0\n\n\
         [policies]\ndirectory = {:?}\n\n{PUBLIC_LISTENER}\n{}\n[[route]]\npool = \"web\"\npolicies = [\"deny-list\"]\n",
        receiver.endpoint(),
        folder.path().display().to_string(),
        pool("web", &[&up], ""),
    );
    let airlock = Airlock::start(&config);
    let client = Client::http1();
    for _ in 0..3 {
        assert_eq!(client.get(&airlock.url("/fine")).await.status, 200);
    }
    // A caller that did not sample: no span, its traceparent goes on as it was.
    let unsampled = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-00");
    let request = http::Request::get(airlock.url("/fine"))
        .header("traceparent", &unsampled)
        .body(full(""))
        .unwrap();
    let reply = client.send(request).await;
    assert_eq!(
        reply.json()["headers"]["traceparent"][0],
        unsampled.as_str()
    );
    let request = http::Request::delete(airlock.url("/users/7"))
        .body(full(""))
        .unwrap();
    assert_eq!(client.send(request).await.status, 403);

    let spans = stop_and_collect(airlock, &receiver);
    let servers: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.kind == 2).collect();
    assert_eq!(servers.len(), 1, "only the denied request: {spans:#?}");
    let denied = servers[0];
    assert_eq!(denied.attribute("http.request.method"), "DELETE");
    assert_eq!(denied.attribute("airlock.decision"), "deny");
    assert_eq!(denied.attribute("error.type"), "denied");
    assert_eq!(denied.attribute("http.response.status_code"), "403");
    assert_eq!(denied.service, "airlock", "the default service name");
    let policy = one(&spans, "policy");
    assert_eq!(policy.parent_span_id, denied.span_id);
    assert_eq!(policy.attribute("airlock.policy.decision"), "deny");
    assert!(
        spans.iter().all(|s| s.kind != 3),
        "a denied request never reaches a backend: {spans:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operators_change_is_a_span_with_its_policies_whatever_the_ratio() {
    let receiver = OtlpReceiver::grpc().await;
    let (stable, canary) = (
        Upstream::start("stable").await,
        Upstream::start("canary").await,
    );
    let folder = policy_folder(&[("change-freeze", crate::control::ALWAYS_FROZEN)]);
    let tracing = format!(
        "[tracing]\notlp_endpoint = \"{}\"\nsample_ratio = 0.0\n\n",
        receiver.endpoint()
    );
    let config = crate::control::config(&stable, &canary, &folder, true, "");
    let airlock = Airlock::start(&format!("{tracing}{config}"));
    let shift = serde_json::json!({"op": "shift_traffic", "route": "shop", "to_pool": "canary", "percent": 10});
    let held = crate::control::change(&airlock, "erin", shift).await;
    assert_eq!(held.status, 202, "{}", held.text());

    let spans = stop_and_collect(airlock, &receiver);
    let change = one(&spans, "change");
    assert_eq!(change.parent_span_id, "", "a change starts its own trace");
    assert_eq!(change.attribute("airlock.decision"), "hold");
    assert_eq!(change.attribute("airlock.principal"), "erin");
    assert!(
        change.attribute("airlock.action").contains("shift_traffic"),
        "{change:#?}"
    );
    let policy = one(&spans, "policy");
    assert_eq!(policy.parent_span_id, change.span_id);
    assert_eq!(policy.attribute("airlock.policy.name"), "change-freeze");
    assert_eq!(policy.attribute("airlock.policy.decision"), "hold");
}
