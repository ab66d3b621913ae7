//! High availability through the real binary: two `airlock run` nodes (a
//! and b) sharing a real three-member etcd cluster ([`EtcdCluster`]), each
//! with its own data dir and audit trail. A request held on one node is
//! released by votes through the other; votes that race count once; the
//! death of an etcd member or of a node loses nothing and releases nothing
//! twice; membership, audit anchors and pushed policies are shared.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use http::Request;
use serde_json::Value;

use crate::approvals::{api, from, principals, show, vote};
use crate::etcd_cluster::{exclusive, EtcdCluster};
use crate::harness::*;

/// Each node's membership lease.
const LEASE_TTL: Duration = Duration::from_secs(10);
/// What a surviving node may take, past the lease, to notice a dead one.
const NOTICE_MARGIN: Duration = Duration::from_secs(10);

/// DELETEs wait for `quorum` oncall approvers (alice, bob).
fn deletes_need(quorum: u32) -> String {
    format!("[[rules]]\nmethods = [\"DELETE\"]\napprovers = {{ groups = [\"oncall\"], quorum = {quorum}, timeout_seconds = 60 }}\n")
}

/// The etcd cluster, one upstream, and nodes a and b in front of it.
struct Cluster {
    a: Airlock,
    b: Airlock,
    up: Upstream,
    etcd: EtcdCluster,
    /// Each node's policy folder.
    folders: Vec<tempfile::TempDir>,
}

impl Cluster {
    /// Starts etcd, an upstream, and both nodes with `rules` for
    /// approval-rules; with `gate`, each route first runs a policy named
    /// `gate` (allow-all at start), for pushes to replace.
    async fn start(test: &str, rules: &str, gate: bool) -> Cluster {
        let etcd = EtcdCluster::start().await;
        let up = Upstream::start("up").await;
        let prefix = format!("/airlock-e2e/{test}-{}", std::process::id());
        let (a, folder_a) = start_node("a", &etcd, &prefix, &up, rules, gate);
        let (b, folder_b) = start_node("b", &etcd, &prefix, &up, rules, gate);
        Cluster {
            a,
            b,
            up,
            etcd,
            folders: vec![folder_a, folder_b],
        }
    }
}

fn start_node(
    node: &str,
    etcd: &EtcdCluster,
    prefix: &str,
    up: &Upstream,
    rules: &str,
    gate: bool,
) -> (Airlock, tempfile::TempDir) {
    let folder = policy_folder(&[("approval-rules", rules)]);
    let mut chain = vec!["\"approval-rules\""];
    if gate {
        std::fs::copy(built_policy("allow-all"), folder.path().join("gate.wasm")).unwrap();
        chain.insert(0, "\"gate\"");
    }
    let endpoints: Vec<String> = etcd.endpoints().iter().map(|e| format!("{e:?}")).collect();
    let config = format!(
        "[server]\ndata_dir = \"node-{node}\"\n\n\
         [audit]\nnode = \"{node}\"\n\n\
         [storage]\nbackend = \"etcd\"\nendpoints = [{}]\nprefix = \"{prefix}\"\ntimeout = \"10s\"\nlease_ttl = \"{}s\"\n\n\
         [policies]\ndirectory = {:?}\n\n\
         {PUBLIC_LISTENER}\n{}\n[[route]]\npool = \"web\"\npolicies = [{}]\n\n{}",
        endpoints.join(", "),
        LEASE_TTL.as_secs(),
        folder.path().display().to_string(),
        pool("web", &[up], ""),
        chain.join(", "),
        principals()
    );
    (Airlock::start(&config), folder)
}

/// SIGKILL, like a crashed machine, and reap it.
fn kill(node: &mut Airlock) {
    let status = Command::new("kill")
        .args(["-KILL", &node.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        node.wait(Duration::from_secs(10)).is_some(),
        "node did not die"
    );
}

/// `future`, or a panic naming `what` after `within`.
async fn within<T>(
    within: Duration,
    what: &str,
    future: impl std::future::Future<Output = T>,
) -> T {
    tokio::time::timeout(within, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {within:?}"))
}

/// Send `request` in the background; an error (a killed node) is kept.
fn send_held(
    request: Request<BoxBody>,
) -> tokio::task::JoinHandle<Result<Reply, hyper_util::client::legacy::Error>> {
    tokio::spawn(async move { Client::http1().try_send(request).await })
}

async fn reply_of(
    waiting: tokio::task::JoinHandle<Result<Reply, hyper_util::client::legacy::Error>>,
    what: &str,
) -> Reply {
    within(Duration::from_secs(30), what, waiting)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{what}: request failed: {e:?}"))
}

/// The pending approvals `node` lists, or None while it cannot list them.
async fn pending_on(node: &Airlock) -> Option<Vec<Value>> {
    let reply = api(node, Some("dave"), "GET", "/v1/approvals?state=pending", "").await;
    if reply.status != 200 {
        return None;
    }
    serde_json::from_slice::<Value>(&reply.body).ok()?["approvals"]
        .as_array()
        .cloned()
}

/// The id of the pending approval of `DELETE path` as `node` lists it
/// (waiting up to `wait` for it to show).
async fn pending_for(node: &Airlock, path: &str, wait: Duration) -> String {
    let deadline = Instant::now() + wait;
    let mut last = None;
    loop {
        last = pending_on(node).await.or(last);
        let found = last.iter().flatten().find(|approval| {
            approval["action"]["path"] == path && approval["action"]["method"] == "DELETE"
        });
        if let Some(approval) = found {
            return approval["id"].as_str().unwrap().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no pending approval of DELETE {path} within {wait:?}; listed: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The approval as `node` shows it.
async fn approval(node: &Airlock, id: &str) -> Value {
    let shown = show(node, id).await;
    assert_eq!(shown.status, 200, "{}", shown.text());
    shown.json()
}

/// Subjects of an approval's votes, each as often as it was counted.
fn voters(approval: &Value) -> Vec<String> {
    let mut voters: Vec<String> = approval["votes"]
        .as_array()
        .unwrap_or_else(|| panic!("no votes: {approval}"))
        .iter()
        .map(|vote| vote["subject"].as_str().unwrap().to_owned())
        .collect();
    voters.sort();
    voters
}

/// `subject` approves `id` through `node`, again while the store is
/// unavailable (503) for up to 20 s; the reply that settled it (200, or 409
/// when the approval was decided meanwhile).
async fn approve_retrying(node: &Airlock, subject: &str, id: &str) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let reply = vote(node, subject, id, "approve", "").await;
        if matches!(reply.status, 200 | 409) {
            return reply;
        }
        seen.push(format!("{} {}", reply.status, reply.text()));
        assert!(
            Instant::now() < deadline,
            "{subject}'s vote on {id} never went through: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `node`'s trail entries for `query`, as an admin reads them.
async fn entries(node: &Airlock, query: &str) -> Vec<Value> {
    let reply = api(node, Some("erin"), "GET", &format!("/v1/audit?{query}"), "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn kinds(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|entry| entry["kind"].as_str().unwrap_or_default())
        .collect()
}

/// `GET /v1/cluster` on `node`.
async fn cluster_view(node: &Airlock) -> Reply {
    api(node, Some("dave"), "GET", "/v1/cluster", "").await
}

/// The members `node` lists, by node id.
async fn members(node: &Airlock) -> BTreeSet<String> {
    let reply = cluster_view(node).await;
    if reply.status != 200 {
        return BTreeSet::new();
    }
    serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .and_then(|body| body["members"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|member| member["node"].as_str().map(str::to_owned))
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn with_header(request: Request<BoxBody>, name: &str, value: &str) -> Request<BoxBody> {
    let (mut parts, body) = request.into_parts();
    parts.headers.insert(
        http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
        value.parse().unwrap(),
    );
    Request::from_parts(parts, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_held_on_b_is_released_by_a_vote_through_a() {
    let _one_at_a_time = exclusive().await;
    let cluster = Cluster::start("hold-b-approve-a", &deletes_need(1), false).await;
    let (a, b) = (&cluster.a, &cluster.b);
    let waiting = send_held(from("client", "DELETE", &b.url("/items/7"), "payload"));

    let id = pending_for(b, "/items/7", Duration::from_secs(10)).await;
    let seen_on_a = pending_for(a, "/items/7", Duration::from_secs(10)).await;
    assert_eq!(seen_on_a, id, "both nodes list the same approval");
    let shown = approval(a, &id).await;
    assert_eq!(shown["principal"], "client", "{shown}");
    assert_eq!(shown["node"], "b", "the node whose request waits: {shown}");
    assert_eq!(cluster.up.requests(), 0, "nothing passes while held");

    let voted = vote(a, "alice", &id, "approve", r#"{"comment": "via a"}"#).await;
    assert_eq!(voted.status, 200, "{}", voted.text());
    assert_eq!(voted.json()["state"], "approved", "{}", voted.text());
    let reply = reply_of(waiting, "the held request through b").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["backend"], "up");
    assert_eq!(reply.json()["body_len"], 7, "forwarded with its body");
    assert_eq!(cluster.up.requests(), 1);
    assert_eq!(approval(b, &id).await["state"], "approved");
    let late = vote(b, "bob", &id, "approve", "").await;
    assert_eq!(
        late.status,
        409,
        "decided on a, closed on b: {}",
        late.text()
    );

    // Each node's own trail has its own part.
    let on_b = entries(b, &format!("approval={id}")).await;
    let hold = on_b
        .iter()
        .find(|entry| entry["kind"] == "request_decision")
        .unwrap_or_else(|| panic!("no hold decision on b: {on_b:?}"));
    assert_eq!(hold["decision"], "hold", "{hold}");
    assert_eq!(hold["node"], "b", "{hold}");
    assert!(!kinds(&on_b).contains(&"approval_vote"), "{on_b:?}");
    let on_a = entries(a, &format!("approval={id}")).await;
    assert_eq!(kinds(&on_a), ["approval_vote"], "{on_a:?}");
    assert_eq!(on_a[0]["actor"], "alice", "{on_a:?}");
    assert_eq!(on_a[0]["node"], "a", "{on_a:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn votes_cast_at_once_through_both_nodes_each_count_once() {
    let _one_at_a_time = exclusive().await;
    let cluster = Cluster::start("simultaneous-votes", &deletes_need(2), false).await;
    let (a, b) = (&cluster.a, &cluster.b);
    const ROUNDS: usize = 4;
    for round in 0..ROUNDS {
        let holder = if round % 2 == 0 { a } else { b };
        let path = format!("/items/{round}");
        let waiting = send_held(from("client", "DELETE", &holder.url(&path), ""));
        let id = pending_for(holder, &path, Duration::from_secs(10)).await;
        // Seen through the other node too, so both votes race on the record.
        pending_for(
            if round % 2 == 0 { b } else { a },
            &path,
            Duration::from_secs(10),
        )
        .await;

        let (alice, bob) = tokio::join!(
            vote(a, "alice", &id, "approve", ""),
            vote(b, "bob", &id, "approve", "")
        );
        assert_eq!(alice.status, 200, "round {round}: {}", alice.text());
        assert_eq!(bob.status, 200, "round {round}: {}", bob.text());
        let states = [alice.json()["state"].clone(), bob.json()["state"].clone()];
        assert!(
            states.contains(&Value::from("approved")),
            "round {round}: one of the two votes completes the quorum: {states:?}"
        );
        let reply = reply_of(waiting, "the held request").await;
        assert_eq!(reply.status, 200, "round {round}: {}", reply.text());
        for node in [a, b] {
            let shown = approval(node, &id).await;
            assert_eq!(shown["state"], "approved", "round {round}: {shown}");
            assert_eq!(voters(&shown), ["alice", "bob"], "round {round}: {shown}");
        }
    }
    assert_eq!(cluster.up.requests(), ROUNDS);

    // alice voting through both nodes at once is one vote.
    let waiting = send_held(from("client", "DELETE", &b.url("/items/twice"), ""));
    let id = pending_for(a, "/items/twice", Duration::from_secs(10)).await;
    pending_for(b, "/items/twice", Duration::from_secs(10)).await;
    let (first, second) = tokio::join!(
        vote(a, "alice", &id, "approve", ""),
        vote(b, "alice", &id, "approve", "")
    );
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(second.status, 200, "{}", second.text());
    for reply in [&first, &second] {
        assert_eq!(reply.json()["state"], "pending", "{}", reply.text());
    }
    let shown = approval(b, &id).await;
    assert_eq!(shown["state"], "pending", "{shown}");
    assert_eq!(voters(&shown), ["alice"], "counted once: {shown}");
    assert_eq!(
        cluster.up.requests(),
        ROUNDS,
        "one approver is not a quorum of two"
    );
    let bob = vote(b, "bob", &id, "approve", "").await;
    assert_eq!(bob.json()["state"], "approved", "{}", bob.text());
    assert_eq!(reply_of(waiting, "the held request").await.status, 200);
    // a learns of bob's vote through its watch, a moment later.
    let both_on_a = eventually(Duration::from_secs(5), || async {
        voters(&approval(a, &id).await) == ["alice", "bob"]
    })
    .await;
    assert!(both_on_a, "{}", approval(a, &id).await);
    assert_eq!(cluster.up.requests(), ROUNDS + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_etcd_leader_mid_stream_loses_no_request_and_releases_none_twice() {
    let _one_at_a_time = exclusive().await;
    let cluster = Cluster::start("kill-etcd-leader", &deletes_need(2), false).await;
    let (a, b) = (&cluster.a, &cluster.b);
    const REQUESTS: usize = 6;
    const KILL_AFTER: usize = 2;
    let mut waiting = Vec::new();
    let mut ids = Vec::new();
    let mut killed = None;
    for i in 0..REQUESTS {
        let holder = if i % 2 == 0 { b } else { a };
        let path = format!("/items/{i}");
        waiting.push(send_held(from("client", "DELETE", &holder.url(&path), "")));
        // Holds made during the election may take a while to show.
        let id = pending_for(holder, &path, Duration::from_secs(20)).await;
        if i == KILL_AFTER {
            let leader = cluster.etcd.leader().await;
            cluster.etcd.kill(leader);
            killed = Some(Instant::now());
        }
        // Both approvers at once, each through another node, during the
        // election for the requests right after the kill.
        let (alice, bob) = tokio::join!(
            approve_retrying(a, "alice", &id),
            approve_retrying(b, "bob", &id)
        );
        for reply in [&alice, &bob] {
            assert!(
                reply.status == 200 || reply.json()["state"] == "approved",
                "request {i}: {}",
                reply.text()
            );
        }
        ids.push(id);
    }
    eprintln!(
        "cluster: {} requests approved {:?} after the etcd leader was killed",
        REQUESTS - KILL_AFTER,
        killed.map(|k| k.elapsed())
    );
    for (i, reply) in waiting.into_iter().enumerate() {
        let reply = reply_of(reply, &format!("held request {i}")).await;
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
    }
    assert_eq!(cluster.up.requests(), REQUESTS, "each released once");
    for (i, id) in ids.iter().enumerate() {
        let shown = approval(a, id).await;
        assert_eq!(shown["state"], "approved", "request {i}: {shown}");
        assert_eq!(voters(&shown), ["alice", "bob"], "request {i}: {shown}");
    }
    assert_eq!(pending_on(a).await, Some(Vec::new()));
    // Nothing is released late either.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cluster.up.requests(), REQUESTS, "each released once");
    let (_, verified) = a.admin_json("/v1/audit/verify").await;
    assert_eq!(verified["ok"], true, "{verified}");
}

#[tokio::test(flavor = "multi_thread")]
async fn when_b_dies_a_cancels_its_held_request_and_its_async_approval_is_redeemed_through_a() {
    let _one_at_a_time = exclusive().await;
    let mut cluster = Cluster::start("kill-node-b", &deletes_need(1), false).await;
    let waiting = send_held(from("client", "DELETE", &cluster.b.url("/items/sync"), ""));
    let asked = Client::http1()
        .send(with_header(
            from(
                "client",
                "DELETE",
                &cluster.b.url("/items/async"),
                "payload",
            ),
            "prefer",
            "respond-async",
        ))
        .await;
    assert_eq!(asked.status, 202, "{}", asked.text());
    let ticket = asked.json()["ticket"].as_str().unwrap().to_owned();
    let async_id = asked.json()["approval"].as_str().unwrap().to_owned();
    let held_id = pending_for(&cluster.a, "/items/sync", Duration::from_secs(10)).await;
    pending_for(&cluster.a, "/items/async", Duration::from_secs(10)).await;

    let killed = Instant::now();
    kill(&mut cluster.b);
    let a = &cluster.a;
    // The held request's client lost its connection with b.
    let lost = within(Duration::from_secs(10), "the held request", waiting)
        .await
        .unwrap();
    assert!(lost.is_err(), "{lost:?}");

    let bound = LEASE_TTL + NOTICE_MARGIN;
    let cancelled = eventually(bound, || async {
        approval(a, &held_id).await["state"] == "cancelled"
    })
    .await;
    assert!(
        cancelled,
        "not cancelled within {bound:?}: {}",
        approval(a, &held_id).await
    );
    eprintln!(
        "cluster: a cancelled b's hold {:?} after b was killed",
        killed.elapsed()
    );
    let late = vote(a, "alice", &held_id, "approve", "").await;
    assert_eq!(late.status, 409, "{}", late.text());

    // An async approval waits on no connection: it outlives b.
    let shown = approval(a, &async_id).await;
    assert_eq!(shown["state"], "pending", "{shown}");
    let voted = vote(a, "alice", &async_id, "approve", "").await;
    assert_eq!(voted.status, 200, "{}", voted.text());
    assert_eq!(voted.json()["state"], "approved", "{}", voted.text());
    let redeem = || {
        with_header(
            from("client", "DELETE", &a.url("/items/async"), "payload"),
            "airlock-ticket",
            &ticket,
        )
    };
    let passed = Client::http1().send(redeem()).await;
    assert_eq!(passed.status, 200, "{}", passed.text());
    assert_eq!(passed.json()["body_len"], 7);
    let reused = Client::http1().send(redeem()).await;
    assert_eq!(reused.status, 403, "{}", reused.text());
    assert!(reused.text().contains("already used"), "{}", reused.text());
    assert_eq!(cluster.up.requests(), 1, "only the redeemed request passed");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_view_lists_both_nodes_until_one_dies() {
    let _one_at_a_time = exclusive().await;
    let mut cluster = Cluster::start("membership", &deletes_need(1), false).await;
    let both = eventually(Duration::from_secs(10), || async {
        members(&cluster.a).await == set(&["a", "b"])
    })
    .await;
    let view = cluster_view(&cluster.a).await;
    assert!(both, "{} {}", view.status, view.text());
    let body = view.json();
    assert_eq!(body["node"], "a", "{body}");
    assert_eq!(body["backend"], "etcd", "{body}");
    for member in body["members"].as_array().unwrap() {
        let node = if member["node"] == "a" {
            &cluster.a
        } else {
            &cluster.b
        };
        assert_eq!(member["admin"], node.admin().to_string(), "{body}");
        assert!(
            member["started_ms"].as_i64().is_some_and(|ms| ms > 0),
            "{body}"
        );
    }
    assert_eq!(members(&cluster.b).await, set(&["a", "b"]));
    let anonymous = api(&cluster.a, None, "GET", "/v1/cluster", "").await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());

    let killed = Instant::now();
    kill(&mut cluster.b);
    let bound = LEASE_TTL + NOTICE_MARGIN;
    let only_a = eventually(bound, || async { members(&cluster.a).await == set(&["a"]) }).await;
    assert!(
        only_a,
        "b still listed {bound:?} after it died: {}",
        cluster_view(&cluster.a).await.text()
    );
    eprintln!(
        "cluster: b left the view {:?} after it was killed",
        killed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_node_verifies_its_trail_against_its_anchor_in_etcd() {
    let _one_at_a_time = exclusive().await;
    let cluster = Cluster::start("audit-verify", &deletes_need(1), false).await;
    let (a, b) = (&cluster.a, &cluster.b);
    // Entries on both: a hold on b, a vote on a, plain requests on each.
    for node in [a, b] {
        let reply = Client::http1()
            .send(from("client", "GET", &node.url("/plain"), ""))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let waiting = send_held(from("client", "DELETE", &b.url("/items/1"), ""));
    let id = pending_for(a, "/items/1", Duration::from_secs(10)).await;
    let voted = vote(a, "bob", &id, "approve", "").await;
    assert_eq!(voted.status, 200, "{}", voted.text());
    assert_eq!(reply_of(waiting, "the held request").await.status, 200);

    for node in [a, b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reply = api(node, Some("erin"), "GET", "/v1/audit/verify", "").await;
            let verified = reply.status == 200
                && serde_json::from_slice::<Value>(&reply.body)
                    .is_ok_and(|body| body["ok"] == true && body["anchor_checked"] == true);
            if verified {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} {}",
                reply.status,
                reply.text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_policy_reaches_every_node_with_the_same_hash() {
    let _one_at_a_time = exclusive().await;
    let cluster = Cluster::start("policy-push", &deletes_need(1), true).await;
    let (a, b) = (&cluster.a, &cluster.b);
    for node in [a, b] {
        assert_eq!(Client::http1().get(&node.url("/blocked")).await.status, 200);
    }
    let component = built_policy("deny-list");
    let parameters = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    std::fs::write(&parameters, "[[rules]]\npaths = [\"/blocked\"]\n").unwrap();
    let pushed = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["policy", "push"])
        .arg(&component)
        .arg("-c")
        .arg(&a.config_path)
        .args(["--name", "gate", "--parameters"])
        .arg(&*parameters)
        .output()
        .unwrap();
    assert!(
        pushed.status.success(),
        "airlock policy push: {}\n{}",
        String::from_utf8_lossy(&pushed.stdout),
        String::from_utf8_lossy(&pushed.stderr)
    );
    let expected = sha256_file(&component);

    let mut statuses = Vec::new();
    for node in [a, b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        let gate = loop {
            let reply = api(node, Some("erin"), "GET", "/v1/policies", "").await;
            let body: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
            let gate = body["policies"]
                .as_array()
                .and_then(|list| list.iter().find(|p| p["name"] == "gate").cloned())
                .unwrap_or_default();
            if gate["hash"] == expected.as_str() {
                break gate;
            }
            assert!(
                Instant::now() < deadline,
                "the pushed gate ({expected}) not loaded: {} {}",
                reply.status,
                reply.text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        statuses.push(gate);
    }
    assert_eq!(statuses[0]["hash"], statuses[1]["hash"]);
    assert_eq!(
        statuses[0]["parameters_sha256"], statuses[1]["parameters_sha256"],
        "{statuses:?}"
    );
    for (i, node) in [a, b].into_iter().enumerate() {
        let blocked = eventually(Duration::from_secs(5), || async {
            Client::http1().get(&node.url("/blocked")).await.status == 403
        })
        .await;
        assert!(
            blocked,
            "node {i} does not deny /blocked with the pushed gate"
        );
        assert_eq!(Client::http1().get(&node.url("/open")).await.status, 200);
        let written = cluster.folders[i].path().join("gate.wasm");
        assert_eq!(sha256_file(&written), expected, "{}", written.display());
    }
}

fn sha256_file(path: &std::path::Path) -> String {
    use sha2::Digest as _;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
