//! Policy hot reload through the real binary: files dropped into the
//! watched folder change decisions while a client keeps sending, and bad,
//! half-written or still-needed files change nothing.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;

fn deny_path(path: &str) -> String {
    format!("[[rules]]\npaths = [\"{path}\"]\n")
}

/// A node whose catch-all route runs deny-list from a watched folder.
fn node(up: &Upstream, denied: &str) -> (Airlock, tempfile::TempDir) {
    let folder = policy_folder(&[("deny-list", &deny_path(denied))]);
    let config = format!(
        "[policies]\ndirectory = {:?}\n\n{PUBLIC_LISTENER}\n{}\n[[route]]\npool = \"web\"\npolicies = [\"deny-list\"]\n",
        folder.path().display().to_string(),
        pool("web", &[up], ""),
    );
    (Airlock::start(&config), folder)
}

async fn status(airlock: &Airlock, path: &str) -> u16 {
    Client::http1().get(&airlock.url(path)).await.status
}

/// Wait until `path` answers `expected`.
async fn answers(airlock: &Airlock, path: &str, expected: u16) -> bool {
    eventually(Duration::from_secs(10), || async {
        status(airlock, path).await == expected
    })
    .await
}

async fn policy_status(airlock: &Airlock) -> serde_json::Value {
    let (_, body) = airlock.admin_json("/v1/policies").await;
    body["policies"][0].clone()
}

/// Wait until `GET /v1/policies` shows a refused file's error.
async fn refusal_shown(airlock: &Airlock) -> bool {
    eventually(Duration::from_secs(10), || async {
        policy_status(airlock).await["last_error"].is_string()
    })
    .await
}

/// Write `bytes` to `file` through a temporary name and a rename, as a
/// deployment tool would.
fn replace(file: &Path, bytes: &[u8]) {
    let staging = file.with_extension("staging");
    std::fs::write(&staging, bytes).unwrap();
    std::fs::rename(&staging, file).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_swaps_under_load_change_decisions_without_a_failed_request() {
    let up = Upstream::start("a").await;
    let (airlock, folder) = node(&up, "/one");
    assert_eq!(status(&airlock, "/one").await, 403);
    let parameters = folder.path().join("deny-list.toml");
    let before = policy_status(&airlock).await["parameters_sha256"].clone();
    assert!(before.is_string());

    // A client keeps sending; every answer must be a decision (200 or 403).
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let first_failure = Arc::new(std::sync::Mutex::new(String::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, failures, first_failure, sent, url) = (
            stop.clone(),
            failures.clone(),
            first_failure.clone(),
            sent.clone(),
            airlock.url("/one"),
        );
        tokio::spawn(async move {
            let client = Client::http1();
            while !stop.load(Ordering::Relaxed) {
                let request = http::Request::get(&url).body(full("")).unwrap();
                let what = match client.try_send(request).await {
                    Ok(reply) if matches!(reply.status, 200 | 403) => None,
                    Ok(reply) => Some(format!("{}: {}", reply.status, reply.text())),
                    Err(error) => Some(format!("no answer: {error}")),
                };
                if let Some(what) = what {
                    failures.fetch_add(1, Ordering::Relaxed);
                    let mut first = first_failure.lock().unwrap();
                    if first.is_empty() {
                        *first = what;
                    }
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    for round in 0..100 {
        let (denied, allowed) = if round % 2 == 0 {
            ("/two", "/one")
        } else {
            ("/one", "/two")
        };
        replace(&parameters, deny_path(denied).as_bytes());
        assert!(
            answers(&airlock, denied, 403).await,
            "round {round}: {denied} denied"
        );
        assert_eq!(status(&airlock, allowed).await, 200, "round {round}");
        if round == 0 {
            let after = policy_status(&airlock).await["parameters_sha256"].clone();
            assert_ne!(after, before, "the new parameters show in /v1/policies");
        }
    }
    // After an even number of swaps the parameters are the first ones again.
    assert_eq!(policy_status(&airlock).await["parameters_sha256"], before);
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "of {} requests; the first: {}",
        sent.load(Ordering::Relaxed),
        first_failure.lock().unwrap()
    );
    assert!(sent.load(Ordering::Relaxed) > 100);

    let (_, trail) = airlock
        .admin_json("/v1/audit?kind=policy_loaded&limit=200")
        .await;
    assert_eq!(
        trail["entries"].as_array().unwrap().len(),
        101,
        "one at start, one per swap"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_or_half_written_file_is_refused_and_the_old_version_keeps_serving() {
    let up = Upstream::start("a").await;
    let (airlock, folder) = node(&up, "/one");
    let component = folder.path().join("deny-list.wasm");
    let good = std::fs::read(&component).unwrap();
    let serving = policy_status(&airlock).await["hash"].clone();

    // Half of the component, as a slow copy leaves it.
    std::fs::write(&component, &good[..good.len() / 2]).unwrap();
    let refused = refusal_shown(&airlock).await;
    assert!(refused, "{}", policy_status(&airlock).await);
    assert_eq!(
        status(&airlock, "/one").await,
        403,
        "the old version still judges"
    );
    assert_eq!(policy_status(&airlock).await["hash"], serving);
    let (_, trail) = airlock.admin_json("/v1/audit?kind=policy_rejected").await;
    assert_eq!(
        trail["entries"][0]["policies"][0]["name"], "deny-list",
        "{trail}"
    );

    // The copy finishes: the same component loads, the error clears.
    std::fs::write(&component, &good).unwrap();
    let loaded = eventually(Duration::from_secs(10), || async {
        policy_status(&airlock).await["last_error"].is_null()
    })
    .await;
    assert!(loaded, "{}", policy_status(&airlock).await);
    assert_eq!(
        policy_status(&airlock).await["routes"],
        serde_json::json!(["*/"])
    );

    // Removing a policy a route names is refused, fail closed.
    std::fs::remove_file(&component).unwrap();
    let refused = eventually(Duration::from_secs(10), || async {
        policy_status(&airlock).await["last_error"]
            .as_str()
            .is_some_and(|error| error.contains("still names it"))
    })
    .await;
    assert!(refused, "{}", policy_status(&airlock).await);
    assert_eq!(status(&airlock, "/one").await, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_reloads_a_policy_dropped_into_its_folder() {
    let airlock = Airlock::demo();
    let folder = airlock.config_path.parent().unwrap().join("policies");
    // Take the DELETE rule out of the demo's approval rules.
    replace(
        &folder.join("approval-rules.toml"),
        b"[[rules]]\npaths = [\"/admin\", \"/admin/**\"]\napprovers = { groups = [\"oncall\"], quorum = 1 }\n",
    );
    let passes = eventually(Duration::from_secs(10), || async {
        let request = http::Request::delete(airlock.url("/hello"))
            .header("proxy-authorization", "Bearer demo-client-token")
            .body(full(""))
            .unwrap();
        // Still held by the old rules: give up on this one and try again.
        let client = Client::http1();
        let sent = tokio::time::timeout(Duration::from_millis(300), client.try_send(request));
        matches!(sent.await, Ok(Ok(reply)) if reply.status == 200)
    })
    .await;
    assert!(
        passes,
        "a DELETE passes once the new rules are loaded; log:\n{}",
        airlock.log()
    );
    let (_, policies) = airlock.admin_json("/v1/policies").await;
    let rules = policies["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|policy| policy["name"] == "approval-rules")
        .cloned()
        .unwrap();
    assert_eq!(
        rules["routes"],
        serde_json::json!(["everything"]),
        "{policies}"
    );
    assert!(rules["last_error"].is_null(), "{policies}");
}

/// A misspelled key in a hot-reloaded parameters file (`method` for
/// `methods`) is refused with its file and line: the previous rules keep
/// judging, and not one request fails while it is tried. Under contract 0.1
/// this was logged as "policy reloaded" and every request got a 500.
#[tokio::test(flavor = "multi_thread")]
async fn a_misspelled_parameter_is_refused_and_no_request_fails() {
    let up = Upstream::start("a").await;
    let (airlock, folder) = node(&up, "/denied");
    let serving = policy_status(&airlock).await["parameters_sha256"].clone();

    // Requests in a loop, counted, for as long as the bad file is tried.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (url, stop, sent, failed) = (
            airlock.url("/ok"),
            stop.clone(),
            sent.clone(),
            failed.clone(),
        );
        tokio::spawn(async move {
            let client = Client::http1();
            while !stop.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
                if client.get(&url).await.status != 200 {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    replace(
        &folder.path().join("deny-list.toml"),
        b"# a typo on line 3\n[[rules]]\nmethod = [\"GET\"]\n",
    );
    let refused = refusal_shown(&airlock).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let status = policy_status(&airlock).await;
    assert!(refused, "{status}");
    let error = status["last_error"].as_str().unwrap();
    assert!(
        error.contains("deny-list.toml:3:rules[0].method: unknown field `method`"),
        "{error}"
    );
    assert_eq!(status["parameters_sha256"], serving, "the old rules serve");
    assert!(sent.load(Ordering::Relaxed) > 10);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "{} sent",
        sent.load(Ordering::Relaxed)
    );
    assert_eq!(
        Client::http1().get(&airlock.url("/denied")).await.status,
        403
    );
    let (_, trail) = airlock.admin_json("/v1/audit?kind=policy_rejected").await;
    assert!(
        trail["entries"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown field")
            || trail.to_string().contains("unknown field"),
        "{trail}"
    );

    // The fix applies: the new rule judges.
    replace(
        &folder.path().join("deny-list.toml"),
        b"[[rules]]\nmethods = [\"GET\"]\npaths = [\"/ok\"]\n",
    );
    assert!(
        answers(&airlock, "/ok", 403).await,
        "{}",
        policy_status(&airlock).await
    );
    assert!(policy_status(&airlock).await["last_error"].is_null());
}

/// A policy version whose parameters the `[control]` chain's overrides no
/// longer fit is refused like any bad file: the change chain keeps the
/// version that accepts them (before, the reload went through and every
/// change and balancer event failed from then on).
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_the_control_overrides_do_not_fit_is_refused() {
    let up = Upstream::start("a").await;
    let folder = policy_folder(&[("hostile", "")]);
    let config = format!(
        "[policies]\ndirectory = {:?}\n\n[control]\npolicies = [\"hostile\"]\n[control.parameters.hostile]\nmode = \"edit-headers\"\n\n{PUBLIC_LISTENER}\n{}\n[[route]]\npool = \"web\"\n",
        folder.path().display().to_string(),
        pool("web", &[&up], ""),
    );
    let airlock = Airlock::start(&config);
    let serving = policy_status(&airlock).await["parameters_sha256"].clone();
    // Fine alone (no mode), refused with the control chain's `mode`.
    replace(
        &folder.path().join("hostile.toml"),
        b"refuse_any_mode = true\n",
    );
    let refused = refusal_shown(&airlock).await;
    let status = policy_status(&airlock).await;
    assert!(refused, "{status}");
    let error = status["last_error"].as_str().unwrap();
    assert!(
        error.contains("[control]") && error.contains("refuse_any_mode"),
        "{error}"
    );
    assert_eq!(
        status["parameters_sha256"], serving,
        "the old version serves"
    );
}
