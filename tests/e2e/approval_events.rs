//! Who hears of approvals, and how: webhooks (signed, retried, Slack), the
//! server-sent event stream, the OpenAPI document and the `airlock
//! approvals` CLI, all against a running node.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::approvals::*;
use crate::harness::*;

/// A webhook receiver that records each delivery (headers, body) and
/// refuses the first `refuse` of them with 500.
pub(crate) struct Receiver {
    pub(crate) addr: std::net::SocketAddr,
    deliveries: Arc<Mutex<Vec<(http::HeaderMap, Bytes)>>>,
}

impl Receiver {
    pub(crate) async fn start(refuse: usize) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let deliveries: Arc<Mutex<Vec<(http::HeaderMap, Bytes)>>> = Arc::default();
        let seen = deliveries.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let mut seen = seen.lock().unwrap();
                            seen.push((parts.headers, body));
                            let status = if seen.len() <= refuse { 500 } else { 200 };
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { addr, deliveries }
    }

    pub(crate) fn deliveries(&self) -> Vec<(http::HeaderMap, Bytes)> {
        self.deliveries.lock().unwrap().clone()
    }

    /// Wait for at least `count` deliveries.
    pub(crate) async fn wait_for(&self, count: usize) -> Vec<(http::HeaderMap, Bytes)> {
        let arrived = eventually(Duration::from_secs(20), || async {
            self.deliveries.lock().unwrap().len() >= count
        })
        .await;
        assert!(
            arrived,
            "expected {count} deliveries, got {:?}",
            self.deliveries()
        );
        self.deliveries()
    }
}

const KEY: &str = "a webhook key nobody else has";

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_are_signed_retried_and_carry_no_body_preview() {
    let up = Upstream::start("a").await;
    let generic = Receiver::start(1).await;
    let slack = Receiver::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("webhook.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let hooks = format!(
        "[approvals]\nlink_base = \"https://airlock.example.com\"\n\n[[webhook]]\nurl = \"http://{}/hook\"\nsecret_file = {:?}\n\n[[webhook]]\nurl = \"http://{}/slack\"\nformat = \"slack\"\n",
        generic.addr,
        key_file.display().to_string(),
        slack.addr
    );
    let (airlock, _folder) = node(&up, DELETES_NEED_ONCALL, None, &hooks);
    let mut request = from("client", "DELETE", &airlock.url("/x"), "secret payload");
    request.headers_mut().insert(
        "traceparent",
        format!("00-{TRACE}-00f067aa0ba902b7-01").parse().unwrap(),
    );
    let waiting = held(request);
    let id = pending(&airlock, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    vote(&airlock, "bob", &id, "approve", "").await;
    assert_eq!(
        waiting.await.unwrap().status,
        200,
        "a webhook never delays a decision"
    );

    // The first delivery was refused (500) and retried; every event arrives.
    let deliveries = generic.wait_for(2).await;
    let mut events = Vec::new();
    for (headers, body) in &deliveries[1..] {
        let timestamp = headers["airlock-timestamp"].to_str().unwrap();
        let signature = headers["airlock-signature"].to_str().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        // The documented receiver check passes now ...
        airlock::approvals::notify::verify(KEY.as_bytes(), timestamp, signature, body, now)
            .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(body)));
        // ... rejects the same delivery replayed six minutes later, and a
        // wrong key.
        assert!(airlock::approvals::notify::verify(
            KEY.as_bytes(),
            timestamp,
            signature,
            body,
            now + 360
        )
        .is_err());
        assert!(
            airlock::approvals::notify::verify(b"guess", timestamp, signature, body, now).is_err()
        );
        let text = String::from_utf8_lossy(body);
        assert!(!text.contains("secret payload"), "no body preview: {text}");
        assert!(!text.contains("body_preview"), "{text}");
        let json: Value = serde_json::from_slice(body).unwrap();
        for event in json["events"].as_array().unwrap() {
            assert_eq!(event["approval"]["trace"], TRACE, "{event}");
        }
        events.extend(json["events"].as_array().unwrap().iter().map(|event| {
            (
                event["event"].as_str().unwrap().to_owned(),
                event["approval"]["id"].as_str().unwrap().to_owned(),
            )
        }));
    }
    if events.len() < 2 {
        // Created was retried alone; resolved came in its own delivery.
        for (_, body) in generic.wait_for(3).await.iter().skip(deliveries.len()) {
            let json: Value = serde_json::from_slice(body).unwrap();
            for event in json["events"].as_array().unwrap() {
                events.push((
                    event["event"].as_str().unwrap().to_owned(),
                    event["approval"]["id"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    assert_eq!(
        events,
        [
            ("created".to_owned(), id.clone()),
            ("resolved".to_owned(), id.clone())
        ]
    );

    let slack = slack.wait_for(1).await;
    let text: String = slack
        .iter()
        .map(|(_, body)| {
            serde_json::from_slice::<Value>(body).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains(&format!(
            "<https://airlock.example.com/v1/approvals/{id}|{id}>"
        )),
        "{text}"
    );
    assert!(!text.contains("secret payload"), "{text}");
    assert!(text.contains(&format!("trace {TRACE}")), "{text}");
}

/// The caller's trace id on the held request of the webhook test.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Read from an SSE response until `wanted` (an event name) arrives; the
/// event's data.
async fn next_event(stream: &mut tokio::net::TcpStream, seen: &mut String, wanted: &str) -> Value {
    let marker = format!("event: {wanted}\ndata: ");
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(start) = seen.find(&marker) {
            let rest = &seen[start + marker.len()..];
            if let Some(end) = rest.find('\n') {
                let data: Value = serde_json::from_str(&rest[..end]).unwrap();
                *seen = rest[end..].to_owned();
                return data;
            }
        }
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .expect("an event within 10s")
            .unwrap();
        assert!(read > 0, "stream closed; saw {seen}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
}

async fn open_stream(airlock: &Airlock, subject: &str) -> (tokio::net::TcpStream, String) {
    let mut stream = tokio::net::TcpStream::connect(airlock.admin())
        .await
        .unwrap();
    let request = format!(
        "GET /v1/approvals/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\r\n",
        token(subject)
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = String::new();
    let mut buffer = [0u8; 4096];
    while !seen.contains("\r\n\r\n") {
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(read > 0);
        seen.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(seen.contains("text/event-stream"), "{seen}");
    (stream, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_stream_shows_each_caller_what_it_may_see() {
    let up = Upstream::start("a").await;
    let (airlock, _folder) = node(&up, DELETES_NEED_ONCALL, None, "");
    let (mut bob, mut bob_seen) = open_stream(&airlock, "bob").await;
    let (mut carol, mut carol_seen) = open_stream(&airlock, "carol").await;
    // No token, no stream.
    let refused = api(&airlock, None, "GET", "/v1/approvals/stream", "").await;
    assert_eq!(refused.status, 401);

    let waiting = held(from(
        "client",
        "DELETE",
        &airlock.url("/x"),
        "secret payload",
    ));
    let created = next_event(&mut bob, &mut bob_seen, "created").await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["state"], "pending");
    assert!(created["body_preview"].is_null(), "{created}");
    vote(&airlock, "alice", &id, "approve", "").await;
    let resolved = next_event(&mut bob, &mut bob_seen, "resolved").await;
    assert_eq!(resolved["id"], id.as_str());
    assert_eq!(resolved["state"], "approved");
    assert_eq!(waiting.await.unwrap().status, 200);

    // carol (security) is not asked, so her stream stays silent.
    let mut buffer = [0u8; 4096];
    let quiet = tokio::time::timeout(Duration::from_millis(500), carol.read(&mut buffer)).await;
    if let Ok(Ok(read)) = quiet {
        carol_seen.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    assert!(!carol_seen.contains(&id), "{carol_seen}");
    let hidden = api(
        &airlock,
        Some("carol"),
        "GET",
        &format!("/v1/approvals/{id}"),
        "",
    )
    .await;
    assert_eq!(hidden.status, 404, "{}", hidden.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_is_served_and_each_path_in_it_answers() {
    let up = Upstream::start("a").await;
    let (airlock, _folder) = node(&up, DELETES_NEED_ONCALL, None, "");
    let doc = api(&airlock, None, "GET", "/v1/openapi.json", "").await;
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        if path.ends_with("/stream") {
            continue;
        }
        for method in operations.as_object().unwrap().keys() {
            let concrete = path.replace("{id}", "apr_0");
            let reply = api(
                &airlock,
                Some("erin"),
                &method.to_uppercase(),
                &concrete,
                "",
            )
            .await;
            // Each documented route exists: it answers, or refuses in the
            // API's own `{"error", "detail"}` shape (the admin listener's
            // unknown-path answer has a `message` instead).
            assert!(reply.status < 500, "{method} {path}: {}", reply.text());
            assert!(
                reply.status == 200 || reply.json()["detail"].is_string(),
                "{method} {path}: {}",
                reply.text()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_lists_shows_and_approves() {
    let up = Upstream::start("a").await;
    let (airlock, _folder) = node(&up, DELETES_NEED_ONCALL, None, "");
    let (waiting, id) = client_delete_held(&airlock).await;
    let server = format!("http://{}", airlock.admin());
    let cli = |args: &[&str], subject: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
            .arg("approvals")
            .args(args)
            .args(["--server", &server])
            .env("AIRLOCK_TOKEN", token(subject))
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, listed, _) = cli(&["list", "--state", "pending"], "bob");
    assert!(ok);
    assert!(
        listed.contains(&id) && listed.contains("DELETE"),
        "{listed}"
    );
    let (ok, shown, _) = cli(&["show", &id], "bob");
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&shown).unwrap()["id"],
        id.as_str()
    );
    // Refusals exit non-zero and say why.
    let (ok, _, error) = cli(&["approve", &id], "carol");
    assert!(!ok);
    assert!(error.contains("403 forbidden"), "{error}");
    let (ok, voted, _) = cli(&["approve", &id, "--comment", "go"], "bob");
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&voted).unwrap()["state"],
        "approved"
    );
    assert_eq!(waiting.await.unwrap().status, 200);
}
