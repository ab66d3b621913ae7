//! The audit trail through the real binary: the demo's decisions show up in
//! `GET /v1/audit` and `airlock audit query`, the chain verifies online and
//! offline, and a `kill -9` under load loses no decision of a risky request
//! a client got an answer for.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use serde_json::Value;

use crate::harness::*;

fn airlock_audit(args: &[&str], data_dir: &Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("audit")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (
        output.status.success(),
        format!("{}{stderr}", String::from_utf8_lossy(&output.stdout)),
    )
}

/// `airlock audit keygen FILE`; returns the public key.
fn keygen(file: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["audit", "keygen"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// `airlock audit verify` of `data_dir` against the signed heads in
/// `heads`, which `public_key` must have signed.
fn verify_against_heads(data_dir: &Path, heads: &Path, public_key: &str) -> (bool, String) {
    airlock_audit(
        &[
            "verify",
            "--heads",
            heads.to_str().unwrap(),
            "--public-key",
            public_key,
        ],
        data_dir,
    )
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demos_decisions_are_in_the_trail_and_it_verifies() {
    let mut demo = Airlock::demo();
    let client = Client::http1();
    assert_eq!(client.get(&demo.url("/x")).await.status, 200);
    let delete = Request::delete(demo.url("/x")).body(full("")).unwrap();
    let waiting = tokio::spawn(async move { Client::http1().send(delete).await });

    // The held DELETE was recorded durably, with its approval, while it waits.
    let hold_query = "/v1/audit?kind=request_decision&decision=hold";
    assert!(
        eventually(Duration::from_secs(5), || async {
            let (_, page) = demo.admin_json(hold_query).await;
            page["entries"]
                .as_array()
                .is_some_and(|entries| !entries.is_empty())
        })
        .await
    );
    let (status, held) = demo.admin_json(hold_query).await;
    assert_eq!(status, 200, "{held}");
    let entries = held["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{held}");
    let approval = entries[0]["approval"].as_str().unwrap();
    let denied = client
        .send(
            Request::post(format!(
                "http://{}/v1/approvals/{approval}/deny",
                demo.admin()
            ))
            .header("authorization", "Bearer demo-alice-token")
            .body(full(""))
            .unwrap(),
        )
        .await;
    assert_eq!(denied.status, 200, "{}", denied.text());
    assert_eq!(waiting.await.unwrap().status, 403);
    assert_eq!(entries[0]["request"]["method"], "DELETE");
    assert_eq!(entries[0]["request"]["path"], "/x");
    assert_eq!(entries[0]["policies"][0]["name"], "approval-rules");
    assert_eq!(entries[0]["actor"], "anonymous");

    // The allowed GET is batched: it shows within a few milliseconds.
    let allowed_query = "/v1/audit?decision=allow&route=everything";
    assert!(
        eventually(Duration::from_secs(2), || async {
            let (_, page) = demo.admin_json(allowed_query).await;
            page["entries"]
                .as_array()
                .is_some_and(|entries| !entries.is_empty())
        })
        .await
    );
    let allowed = demo.admin_json(allowed_query).await.1;
    let request_id = allowed["entries"][0]["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let outcome = demo
        .admin_json(&format!(
            "/v1/audit?kind=request_outcome&request={request_id}"
        ))
        .await
        .1;
    assert_eq!(outcome["entries"][0]["outcome"]["status"], 200, "{outcome}");

    // An entry as the API shows it is the stored encoding: it hashes as documented.
    let raw = demo.admin_get("/v1/audit?decision=hold").await.text();
    let stored = airlock::audit::decode(
        serde_json::to_string(&held["entries"][0])
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    assert!(
        raw.contains(&String::from_utf8(airlock::audit::encode(&stored)).unwrap()),
        "{raw}"
    );

    let (_, verified) = demo.admin_json("/v1/audit/verify").await;
    assert_eq!(verified["ok"], true, "{verified}");
    assert!(verified["entries"].as_u64().unwrap() >= 4, "{verified}");

    let (status, bad) = demo.admin_json("/v1/audit?limit=0").await;
    assert_eq!(status, 400);
    assert!(bad["detail"].as_str().unwrap().contains("limit"), "{bad}");

    // Offline, with Airlock stopped: the same trail, plus the stop.
    demo.terminate();
    assert_eq!(demo.wait(Duration::from_secs(10)), Some(true));
    let data_dir = demo.config_path.parent().unwrap().to_owned();
    let (ok, text) = airlock_audit(&["verify"], &data_dir);
    assert!(ok, "{text}");
    let (ok, text) = airlock_audit(&["query", "--decision", "hold"], &data_dir);
    assert!(ok, "{text}");
    let lines = json_lines(&text);
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["request"]["method"], "DELETE");
    let (_, text) = airlock_audit(&["query", "--kind", "node_stopped"], &data_dir);
    assert_eq!(json_lines(&text).len(), 1, "{text}");

    // Export round-trip: the JSON lines are the stored entries, so the chain
    // can be checked from the export alone; the CSV has a row for each.
    let (ok, jsonl) = airlock_audit(&["export", "--format", "jsonl"], &data_dir);
    assert!(ok, "{jsonl}");
    let mut prev = airlock::audit::GENESIS_HASH.to_owned();
    for line in jsonl.lines() {
        let entry = airlock::audit::decode(line.as_bytes()).unwrap();
        assert_eq!(entry.prev_hash, prev, "entry {}", entry.seq);
        assert_eq!(entry.compute_hash(), entry.hash, "entry {}", entry.seq);
        assert_eq!(
            String::from_utf8(airlock::audit::encode(&entry)).unwrap(),
            line
        );
        prev = entry.hash;
    }
    let (ok, csv) = airlock_audit(&["export", "--format", "csv"], &data_dir);
    assert!(ok, "{csv}");
    assert_eq!(csv.lines().count(), jsonl.lines().count() + 1);
    assert!(csv.starts_with("seq,time_ms,node,kind,"), "{csv}");
}

/// kill -9 while clients send POSTs: every POST a client got an answer for
/// has its decision entry (durable before forwarding), and the chain verifies.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_under_load_loses_no_answered_risky_request() {
    let up = Upstream::start("a").await;
    let airlock = Airlock::start(&simple_config(&[&up], ""));
    let answered = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let mut clients = Vec::new();
    for worker in 0..8 {
        let (url, answered) = (airlock.url(""), answered.clone());
        clients.push(tokio::spawn(async move {
            let client = Client::http1();
            for n in 0.. {
                let path = format!("/crash/{worker}-{n}");
                let request = Request::post(format!("{url}{path}"))
                    .body(full("x"))
                    .unwrap();
                match client.try_send(request).await {
                    Ok(reply) if reply.status == 200 => {
                        answered.lock().unwrap().insert(path);
                    }
                    _ => return,
                }
            }
        }));
    }
    // Let the load run, then crash the node mid-flight.
    assert!(
        eventually(Duration::from_secs(20), || async {
            answered.lock().unwrap().len() >= 200
        })
        .await,
        "too few requests were answered"
    );
    Command::new("kill")
        .args(["-KILL", &airlock.pid().to_string()])
        .status()
        .unwrap();
    for client in clients {
        let _ = client.await;
    }
    let data_dir = airlock.dir.path().join("airlock-data");
    let (ok, text) = airlock_audit(&["verify"], &data_dir);
    assert!(ok, "after kill -9 the chain must verify: {text}");
    let (ok, text) = airlock_audit(&["query", "--kind", "request_decision"], &data_dir);
    assert!(ok, "{text}");
    let recorded: HashSet<String> = json_lines(&text)
        .iter()
        .map(|entry| entry["request"]["path"].as_str().unwrap().to_owned())
        .collect();
    let answered = answered.lock().unwrap();
    let lost: Vec<_> = answered
        .iter()
        .filter(|path| !recorded.contains(*path))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} answered POSTs have no decision entry: {lost:?}",
        lost.len(),
        answered.len()
    );
}

/// The disk fills up (a file size limit: writes fail with EFBIG, as on a
/// full disk): risky requests fail closed with 503 and never reach the backend.
#[tokio::test(flavor = "multi_thread")]
async fn when_the_trail_cannot_be_written_risky_requests_fail_closed_and_the_node_exits() {
    let up = Upstream::start("a").await;
    // redb starts at about 1 MiB; a few hundred entries later it must grow.
    let mut airlock = Airlock::start_with_file_size_limit(&simple_config(&[&up], ""), 1536);
    let client = Client::http1();
    let mut refused = None;
    for n in 0..20_000 {
        let reply = client
            .send(
                Request::post(airlock.url(&format!("/w/{n}")))
                    .body(full("x"))
                    .unwrap(),
            )
            .await;
        if reply.status != 200 {
            refused = Some(reply);
            break;
        }
    }
    let refused = refused.expect("the store never filled up");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["error"], "audit_unavailable");
    let served = up.requests();
    // redb refuses every write after an I/O error until it is opened
    // again: the node exits with 75 for its supervisor to restart it,
    // carrying out nothing more meanwhile.
    for n in 0..20 {
        let reply = client
            .try_send(
                Request::delete(airlock.url(&format!("/after/{n}")))
                    .body(full(""))
                    .unwrap(),
            )
            .await;
        // A 503 while it goes, then no answer at all.
        if let Ok(reply) = reply {
            assert_eq!(reply.status, 503, "{}", reply.text());
        }
    }
    assert_eq!(
        up.requests(),
        served,
        "a request was carried out unrecorded"
    );
    assert_eq!(
        airlock.wait_status(Duration::from_secs(10)),
        Some(75),
        "{}",
        airlock.log()
    );
    let log = airlock.log();
    assert!(log.contains("audit commit failed"), "{log}");
    assert!(log.contains("exiting with status 75"), "{log}");
}

/// A node in front of `up` that signs its heads with a fresh key, with
/// `audit` added to its `[audit]` table. Returns the node, the directory
/// holding the key, the heads file and the public key.
fn signing_node(
    up: &Upstream,
    audit: &str,
) -> (Airlock, tempfile::TempDir, std::path::PathBuf, String) {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("audit.key");
    let public_key = keygen(&key);
    let heads = keys.path().join("heads.jsonl");
    let airlock = Airlock::start(&format!(
        "[audit]\nsigning_key = {:?}\nheads_file = {:?}\n{audit}\n{}",
        key.display().to_string(),
        heads.display().to_string(),
        simple_config(&[up], "")
    ));
    (airlock, keys, heads, public_key)
}

/// Signed heads catch what the chain alone cannot: a cut tail. The test-only
/// tamper tool removes the newest entries of a stopped node's store.
#[tokio::test(flavor = "multi_thread")]
async fn signed_heads_reveal_a_cut_tail() {
    let up = Upstream::start("a").await;
    let (mut airlock, keys, heads, public_key) = signing_node(&up, "sign_interval = \"50ms\"");
    let client = Client::http1();
    for n in 0..5 {
        client
            .send(
                Request::post(airlock.url(&format!("/p/{n}")))
                    .body(full("x"))
                    .unwrap(),
            )
            .await;
    }
    airlock.terminate();
    assert_eq!(airlock.wait(Duration::from_secs(10)), Some(true));
    let data_dir = airlock.dir.path().join("airlock-data");
    let (ok, text) = verify_against_heads(&data_dir, &heads, &public_key);
    assert!(ok, "{text}");

    // Cut the last three entries: the chain that is left is still a chain...
    let store = data_dir.join(airlock::store::RedbStore::FILE);
    let mut last = 0;
    airlock::store::blocks::rewrite(&store, |entries| {
        last = entries.last().unwrap().0;
        entries.truncate(entries.len() - 3);
    })
    .unwrap();
    let (ok, text) = airlock_audit(&["verify"], &data_dir);
    assert!(ok, "without heads a cut tail looks whole: {text}");
    // ...but not the chain that was signed.
    let (ok, text) = verify_against_heads(&data_dir, &heads, &public_key);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("entry {last} was signed as the head but is gone")),
        "{text}"
    );
    // Heads signed by another key are not trusted.
    let other_key = keygen(&keys.path().join("other.key"));
    let (ok, text) = verify_against_heads(&data_dir, &heads, &other_key);
    assert!(!ok);
    assert!(text.contains("signed by another key"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pruned_trail_still_verifies_against_its_signed_heads() {
    let up = Upstream::start("a").await;
    let (mut airlock, _keys, heads, public_key) =
        signing_node(&up, "sign_interval = \"20ms\"\nsegment_entries = 5");
    let client = Client::http1();
    for n in 0..30 {
        let post = Request::post(airlock.url(&format!("/p/{n}")))
            .body(full("x"))
            .unwrap();
        assert_eq!(client.send(post).await.status, 200);
        if n % 10 == 0 {
            // Let the head be signed somewhere inside what will be pruned.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    airlock.terminate();
    assert_eq!(airlock.wait(Duration::from_secs(10)), Some(true));
    let data_dir = airlock.dir.path().join("airlock-data");
    let segments = std::fs::read_dir(data_dir.join("audit")).unwrap().count();
    assert!(
        segments >= 2,
        "the running node sealed {segments} segment(s)"
    );

    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let tomorrow = today.tomorrow().unwrap().to_string();
    let (ok, text) = airlock_audit(&["prune", "--before", &tomorrow], &data_dir);
    assert!(ok, "{text}");
    let pruned = json_lines(&text);
    assert_eq!(pruned[0]["segments"], segments, "{text}");
    let first_kept = pruned[0]["first_kept"].as_u64().unwrap();
    assert!(first_kept > 1, "{text}");
    assert_eq!(
        std::fs::read_dir(data_dir.join("audit")).unwrap().count(),
        0
    );

    let (ok, text) = verify_against_heads(&data_dir, &heads, &public_key);
    assert!(ok, "{text}");
    assert_eq!(json_lines(&text)[0]["first"], first_kept, "{text}");
    let (ok, text) = airlock_audit(&["query", "--kind", "checkpoint"], &data_dir);
    assert!(ok, "{text}");
    let checkpoints = json_lines(&text);
    assert_eq!(checkpoints.len(), 1, "{text}");
    assert_eq!(checkpoints[0]["checkpoint"]["first_kept"], first_kept);

    // A bad date changes nothing and says why.
    let (ok, text) = airlock_audit(&["prune", "--before", "last tuesday"], &data_dir);
    assert!(!ok);
    assert!(text.contains("--before"), "{text}");
}

/// Without any signing settings, a node signs its heads with a key it makes
/// at first start, beside (not in) its data dir; an entry changed in place
/// with every later hash recomputed still verifies as a chain, but the node
/// refuses to start over it and says where to look.
#[tokio::test(flavor = "multi_thread")]
async fn a_trail_rewritten_with_recomputed_hashes_is_refused_at_startup() {
    let up = Upstream::start("a").await;
    let mut airlock = Airlock::start(&simple_config(&[&up], ""));
    let client = Client::http1();
    for n in 0..5 {
        let post = Request::post(airlock.url(&format!("/p/{n}")))
            .body(full("x"))
            .unwrap();
        assert_eq!(client.send(post).await.status, 200);
    }
    let (_, verified) = airlock.admin_json("/v1/audit/verify").await;
    assert_eq!(verified["ok"], true, "{verified}");
    assert_eq!(verified["checked_from"], 1, "{verified}");
    assert_eq!(verified["heads_checked"], true, "{verified}");
    let public_key = verified["public_key"].as_str().unwrap().to_owned();
    assert_eq!(public_key.len(), 64, "{verified}");
    // The next walk goes on from where this one ended; full=true walks all.
    let post = Request::post(airlock.url("/p/more"))
        .body(full("x"))
        .unwrap();
    assert_eq!(client.send(post).await.status, 200);
    let (_, again) = airlock.admin_json("/v1/audit/verify").await;
    let walked_to = verified["first"].as_u64().unwrap() + verified["entries"].as_u64().unwrap();
    assert_eq!(again["checked_from"], walked_to, "{again}");
    assert!(
        again["entries"].as_u64() > verified["entries"].as_u64(),
        "{again}"
    );
    let (_, whole) = airlock.admin_json("/v1/audit/verify?full=true").await;
    assert_eq!(whole["checked_from"], 1, "{whole}");
    assert_eq!(whole["head"], again["head"], "{whole}");
    let (status, _) = airlock.admin_json("/v1/audit/verify?ful=1").await;
    assert_eq!(status, 400);
    airlock.terminate();
    assert_eq!(airlock.wait(Duration::from_secs(10)), Some(true));

    let data_dir = airlock.dir.path().join("airlock-data");
    let keys = airlock.dir.path().join("airlock-data.keys");
    assert!(keys.join("audit.key").exists());
    let heads = keys.join("heads.jsonl");
    let (ok, text) = verify_against_heads(&data_dir, &heads, &public_key);
    assert!(ok, "{text}");

    // Entry 3 now names someone else; every later entry is sealed again.
    let store = data_dir.join(airlock::store::RedbStore::FILE);
    airlock::store::blocks::rewrite(&store, |entries| {
        let mut prev_hash = String::new();
        for (seq, bytes) in entries.iter_mut() {
            let mut entry = airlock::audit::decode(bytes).unwrap();
            if *seq == 3 {
                entry.actor = "mallory".to_owned();
            }
            if *seq >= 3 {
                *bytes = entry.seal(*seq, &prev_hash);
            }
            prev_hash = entry.hash;
        }
    })
    .unwrap();
    let (ok, text) = airlock_audit(&["verify"], &data_dir);
    assert!(ok, "the chain alone is fooled: {text}");

    let (started, stderr) = run_until_exit(&airlock.config_path, Duration::from_secs(20));
    assert!(!started, "started over a rewritten trail: {stderr}");
    assert!(stderr.contains("refusing to start"), "{stderr}");
    assert!(stderr.contains("rewritten"), "{stderr}");
}

/// A trail removed whole (its files deleted, the signed heads kept) is not
/// a fresh start: the node refuses and says how to start anew on purpose.
#[tokio::test(flavor = "multi_thread")]
async fn a_removed_trail_is_refused_at_startup() {
    let up = Upstream::start("a").await;
    let mut airlock = Airlock::start(&simple_config(&[&up], ""));
    let post = Request::post(airlock.url("/p")).body(full("x")).unwrap();
    assert_eq!(Client::http1().send(post).await.status, 200);
    airlock.terminate();
    assert_eq!(airlock.wait(Duration::from_secs(10)), Some(true));
    let data_dir = airlock.dir.path().join("airlock-data");
    for name in std::fs::read_dir(&data_dir).unwrap() {
        let path = name.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
    let (started, stderr) = run_until_exit(&airlock.config_path, Duration::from_secs(20));
    assert!(!started, "started over a removed trail: {stderr}");
    assert!(stderr.contains("the trail is empty"), "{stderr}");
    assert!(stderr.contains("aside"), "{stderr}");
}
