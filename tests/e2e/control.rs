//! The control plane through the real binary: operators' routing changes
//! judged by policies, held and approved, applied, kept across restarts,
//! rolled back when they go bad; config reloads that apply or change nothing.

use std::time::Duration;

use serde_json::{json, Value};

use crate::approval_events::Receiver;
use crate::approvals::{api, pending, principals, vote};
use crate::harness::*;

/// Every change is inside this freeze window (all week, UTC).
pub(crate) const ALWAYS_FROZEN: &str = "zone = \"UTC\"\nwindows = [\"Mon,Tue,Wed,Thu,Fri,Sat,Sun 00:00-24:00\"]\napprovers = { groups = [\"oncall\"], quorum = 1, timeout_seconds = 60 }\n";

/// Pools `web` (`stable`) and `canary`, route `shop` on `web`; `control`
/// adds to `[control]`, with change-freeze as its policy if `frozen`.
pub(crate) fn config(
    stable: &Upstream,
    canary: &Upstream,
    folder: &tempfile::TempDir,
    frozen: bool,
    control: &str,
) -> String {
    let policies = if frozen {
        "policies = [\"change-freeze\"]\n"
    } else {
        ""
    };
    format!(
        "[policies]\ndirectory = {:?}\n\n[control]\n{policies}{control}\n{PUBLIC_LISTENER}\n{}\n{}\n[[route]]\nname = \"shop\"\npool = \"web\"\n\n{}",
        folder.path().display().to_string(),
        pool("web", &[stable], ""),
        pool("canary", &[canary], ""),
        principals()
    )
}

pub(crate) async fn change(airlock: &Airlock, subject: &str, body: Value) -> Reply {
    api(
        airlock,
        Some(subject),
        "POST",
        "/v1/changes",
        &body.to_string(),
    )
    .await
}

async fn overlay(airlock: &Airlock) -> Vec<Value> {
    api(airlock, Some("erin"), "GET", "/v1/routing", "")
        .await
        .json()["overlay"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Backends that served `n` requests to `/`.
async fn served_by(airlock: &Airlock, n: usize) -> Vec<String> {
    let client = Client::http1();
    let mut backends = Vec::new();
    for _ in 0..n {
        backends.push(client.get(&airlock.url("/")).await.backend());
    }
    backends
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_traffic_shift_is_applied_once_approved_and_rolled_back_when_it_goes_bad() {
    let (stable, canary) = (
        Upstream::start("stable").await,
        Upstream::start("canary").await,
    );
    let folder = policy_folder(&[("change-freeze", ALWAYS_FROZEN)]);
    let slack = Receiver::start(0).await;
    let airlock = Airlock::start(&format!(
        "{}\n[[webhook]]\nurl = \"http://{}/slack\"\nformat = \"slack\"\n",
        config(
            &stable,
            &canary,
            &folder,
            true,
            "watch_window = \"30s\"\nrollback_error_rate = 0.3\n",
        ),
        slack.addr
    ));
    let shift = json!({"op": "shift_traffic", "route": "shop", "to_pool": "canary", "percent": 50});

    // Only admins ask; bad changes are 400 before anything judges them.
    assert_eq!(change(&airlock, "bob", shift.clone()).await.status, 403);
    let bad = change(
        &airlock,
        "erin",
        json!({"op": "shift_traffic", "route": "cart", "to_pool": "canary", "percent": 5}),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.json()["detail"]
        .as_str()
        .unwrap()
        .contains("no route named `cart`"));

    let held = change(&airlock, "erin", shift.clone()).await;
    assert_eq!(held.status, 202, "{}", held.text());
    let id = held.json()["approval"]["id"].as_str().unwrap().to_owned();
    assert_eq!(pending(&airlock, 1).await[0]["action"]["kind"], "change");
    assert!(
        served_by(&airlock, 10).await.iter().all(|b| b == "stable"),
        "not applied while held"
    );

    let voted = vote(&airlock, "bob", &id, "approve", "").await;
    assert_eq!(voted.json()["state"], "approved", "{}", voted.text());
    let applied = eventually(Duration::from_secs(10), || async {
        overlay(&airlock).await.len() == 1
    })
    .await;
    assert!(applied);
    assert_eq!(overlay(&airlock).await[0]["approval"], id.as_str());
    assert_eq!(overlay(&airlock).await[0]["approved_by"], json!(["bob"]));
    let carried_out = crate::approvals::show(&airlock, &id).await.json();
    assert!(
        carried_out["redeemed_ms"].is_i64(),
        "marked carried out: {carried_out}"
    );
    let backends = served_by(&airlock, 20).await;
    let to_canary = backends.iter().filter(|b| *b == "canary").count();
    assert_eq!(to_canary, 10, "half of 20: {backends:?}");

    // The canary goes bad: the shift is rolled back by itself.
    canary.force_status(500);
    let _ = served_by(&airlock, 40).await;
    let rolled_back = eventually(Duration::from_secs(10), || async {
        overlay(&airlock).await.is_empty()
    })
    .await;
    assert!(rolled_back, "{:?}", overlay(&airlock).await);
    assert!(served_by(&airlock, 10).await.iter().all(|b| b == "stable"));
    let (_, trail) = airlock
        .admin_json("/v1/audit?kind=change_rolled_back")
        .await;
    let reason = trail["entries"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("pool `canary`:"), "{trail}");
    // ... and says so on the webhooks.
    let told = eventually(Duration::from_secs(10), || async {
        slack
            .deliveries()
            .iter()
            .any(|(_, body)| String::from_utf8_lossy(body).contains("Rolled back by itself"))
    })
    .await;
    assert!(told, "{:?}", slack.deliveries());
    let (_, applied) = airlock.admin_json("/v1/audit?kind=change_applied").await;
    assert_eq!(applied["entries"][0]["actor"], "erin");
    assert_eq!(applied["entries"][0]["approval"], id.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_change_is_not_applied() {
    let (stable, canary) = (
        Upstream::start("stable").await,
        Upstream::start("canary").await,
    );
    let folder = policy_folder(&[("change-freeze", ALWAYS_FROZEN)]);
    let airlock = Airlock::start(&config(&stable, &canary, &folder, true, ""));
    let held = change(
        &airlock,
        "erin",
        json!({"op": "shift_traffic", "route": "shop", "to_pool": "canary", "percent": 100}),
    )
    .await;
    let id = held.json()["approval"]["id"].as_str().unwrap().to_owned();
    vote(&airlock, "bob", &id, "deny", "").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(overlay(&airlock).await.is_empty());
    assert!(served_by(&airlock, 5).await.iter().all(|b| b == "stable"));
}

/// During a freeze, an approved change cannot be undone around the
/// policies: a reset or reload over the API is a change like any other,
/// held by the freeze, recorded, and carried out only once approved; a
/// held reload loads the file it was judged on, or nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_reset_or_reload_during_a_freeze_is_held_until_approved() {
    let (stable, canary) = (
        Upstream::start("stable").await,
        Upstream::start("canary").await,
    );
    let folder = policy_folder(&[("change-freeze", ALWAYS_FROZEN)]);
    let airlock = Airlock::start(&config(&stable, &canary, &folder, true, ""));
    let held = change(
        &airlock,
        "erin",
        json!({"op": "shift_traffic", "route": "shop", "to_pool": "canary", "percent": 100}),
    )
    .await;
    let id = held.json()["approval"]["id"].as_str().unwrap().to_owned();
    assert_eq!(vote(&airlock, "bob", &id, "approve", "").await.status, 200);
    assert!(
        eventually(Duration::from_secs(10), || async {
            overlay(&airlock).await.len() == 1
        })
        .await
    );

    let reset = api(&airlock, Some("erin"), "DELETE", "/v1/routing/overlay", "").await;
    assert_eq!(reset.status, 202, "held: {}", reset.text());
    let reset = reset.json()["approval"].clone();
    let shift_id = overlay(&airlock).await[0]["id"].clone();
    assert_eq!(
        reset["action"]["change"],
        json!({"op": "reset_overlay", "changes": 1, "ids": [shift_id]})
    );
    assert!(
        reset["holds"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("reset-overlay dropping 1 change(s)"),
        "{reset}"
    );
    let reload = api(&airlock, Some("erin"), "POST", "/v1/reload", "").await;
    assert_eq!(reload.status, 202, "held: {}", reload.text());
    let reload = reload.json()["approval"].clone();
    let text = std::fs::read_to_string(&airlock.config_path).unwrap();
    let judged_sha256 = reload["action"]["change"]["sha256"].as_str().unwrap();
    assert_eq!(judged_sha256.len(), 64, "{reload}");
    assert_eq!(
        reload["action"]["change"]["summary"],
        "no change to pools or routes"
    );
    assert_eq!(
        overlay(&airlock).await.len(),
        1,
        "nothing undone while held"
    );
    assert!(served_by(&airlock, 5).await.iter().all(|b| b == "canary"));

    // The file changes after the reload was judged: approving it loads
    // nothing, rather than a file nobody judged.
    std::fs::write(
        &airlock.config_path,
        text.replace("pool = \"web\"\n\n", "pool = \"canary\"\n\n"),
    )
    .unwrap();
    let reload_id = reload["id"].as_str().unwrap();
    assert_eq!(
        vote(&airlock, "bob", reload_id, "approve", "").await.status,
        200
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, reloads) = airlock.admin_json("/v1/audit?kind=config_reloaded").await;
    assert_eq!(reloads["entries"], json!([]), "{reloads}");
    std::fs::write(&airlock.config_path, &text).unwrap();

    // The approved reset is carried out, once, naming its approval.
    let reset_id = reset["id"].as_str().unwrap();
    assert_eq!(
        vote(&airlock, "bob", reset_id, "approve", "").await.status,
        200
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            overlay(&airlock).await.is_empty()
        })
        .await
    );
    assert!(served_by(&airlock, 5).await.iter().all(|b| b == "stable"));
    let carried_out = crate::approvals::show(&airlock, reset_id).await.json();
    assert!(carried_out["redeemed_ms"].is_i64(), "{carried_out}");
    let (_, trail) = airlock
        .admin_json("/v1/audit?kind=change_decision&decision=hold")
        .await;
    let held: Vec<&str> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["change"]["op"].as_str().unwrap())
        .collect();
    assert_eq!(
        held,
        ["shift_traffic", "reset_overlay", "reload_config"],
        "{trail}"
    );
    let (_, resets) = airlock
        .admin_json("/v1/audit?kind=change_rolled_back")
        .await;
    assert_eq!(resets["entries"][0]["approval"], reset_id, "{resets}");
}

/// A held reset drops exactly the changes it was judged on: when the one it
/// named was rolled back and another applied while it waited, approving it
/// drops nothing (before: the count matched, and the other change went).
#[tokio::test(flavor = "multi_thread")]
async fn an_approved_reset_does_not_drop_a_change_applied_while_it_waited() {
    let (stable, canary) = (
        Upstream::start("stable").await,
        Upstream::start("canary").await,
    );
    let folder = policy_folder(&[("change-freeze", ALWAYS_FROZEN)]);
    let airlock = Airlock::start(&config(
        &stable,
        &canary,
        &folder,
        true,
        "watch_window = \"30s\"\nrollback_error_rate = 0.3\n",
    ));
    let approved = |body: Value| {
        let airlock = &airlock;
        async move {
            let held = change(airlock, "erin", body).await;
            assert_eq!(held.status, 202, "{}", held.text());
            let id = held.json()["approval"]["id"].as_str().unwrap().to_owned();
            assert_eq!(vote(airlock, "bob", &id, "approve", "").await.status, 200);
        }
    };
    approved(json!({"op": "shift_traffic", "route": "shop", "to_pool": "canary", "percent": 100}))
        .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            overlay(&airlock).await.len() == 1
        })
        .await
    );
    let reset = api(&airlock, Some("erin"), "DELETE", "/v1/routing/overlay", "").await;
    assert_eq!(reset.status, 202, "{}", reset.text());
    let reset_id = reset.json()["approval"]["id"].as_str().unwrap().to_owned();

    // The shift goes bad and is rolled back by itself; another change is
    // approved and applied meanwhile.
    canary.force_status(500);
    let _ = served_by(&airlock, 40).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            overlay(&airlock).await.is_empty()
        })
        .await
    );
    approved(json!({"op": "set_weights", "pool": "web", "weights": [{"backend": stable.addr.to_string(), "weight": 5}]}))
        .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            overlay(&airlock).await.len() == 1
        })
        .await
    );

    assert_eq!(
        vote(&airlock, "bob", &reset_id, "approve", "").await.status,
        200
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kept = overlay(&airlock).await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["change"]["op"], "set_weights");
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_survive_a_restart_until_reset_and_reloads_keep_them() {
    let (stable, canary) = (
        Upstream::start("stable").await,
        Upstream::start("canary").await,
    );
    let folder = policy_folder(&[]);
    let mut airlock = Airlock::start(&config(&stable, &canary, &folder, false, ""));
    let applied = change(
        &airlock,
        "erin",
        json!({"op": "shift_traffic", "route": "shop", "to_pool": "canary", "percent": 100}),
    )
    .await;
    assert_eq!(
        applied.status,
        200,
        "no control policies: applied at once: {}",
        applied.text()
    );
    assert!(served_by(&airlock, 3).await.iter().all(|b| b == "canary"));

    airlock.terminate();
    assert_eq!(airlock.wait(Duration::from_secs(15)), Some(true));
    airlock.restart();
    assert!(
        served_by(&airlock, 3).await.iter().all(|b| b == "canary"),
        "kept across the restart"
    );

    // A reload of a valid file keeps the overlay on top of it; a broken
    // file changes nothing and names file, line and key.
    let text = std::fs::read_to_string(&airlock.config_path).unwrap();
    std::fs::write(
        &airlock.config_path,
        text.replace(
            "name = \"shop\"",
            "name = \"shop\"\npath = \"/\"\nhost = \"*\"",
        ),
    )
    .unwrap();
    // A reload pinned to another file (its SHA-256) is a conflict, not a
    // bad request: the file changed since; nothing is loaded.
    let pinned = change(
        &airlock,
        "erin",
        json!({"op": "reload_config", "sha256": "0".repeat(64)}),
    )
    .await;
    assert_eq!(pinned.status, 409, "{}", pinned.text());
    assert_eq!(pinned.json()["error"], "changed", "{}", pinned.text());
    let reloaded = api(&airlock, Some("erin"), "POST", "/v1/reload", "").await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    assert!(served_by(&airlock, 3).await.iter().all(|b| b == "canary"));
    std::fs::write(
        &airlock.config_path,
        text.replace("pool = \"web\"\n\n", "pool = 7\n\n"),
    )
    .unwrap();
    // `airlock reload` says why, exits non-zero, and nothing changes.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["reload", "--server", &format!("http://{}", airlock.admin())])
        .env("AIRLOCK_TOKEN", crate::approvals::token("erin"))
        .output()
        .unwrap();
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        error.contains("400 bad_request") && error.contains("airlock.toml:"),
        "{error}"
    );
    assert!(served_by(&airlock, 3).await.iter().all(|b| b == "canary"));

    let reset = api(&airlock, Some("erin"), "DELETE", "/v1/routing/overlay", "").await;
    assert_eq!(reset.json()["dropped"], 1, "{}", reset.text());
    assert!(served_by(&airlock, 3).await.iter().all(|b| b == "stable"));
    drop(folder);
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_routes_from_the_file() {
    let (stable, canary) = (
        Upstream::start("stable").await,
        Upstream::start("canary").await,
    );
    let folder = policy_folder(&[]);
    let airlock = Airlock::start(&config(&stable, &canary, &folder, false, ""));
    assert!(served_by(&airlock, 2).await.iter().all(|b| b == "stable"));
    let text = std::fs::read_to_string(&airlock.config_path).unwrap();
    std::fs::write(
        &airlock.config_path,
        text.replace(
            "name = \"shop\"\npool = \"web\"",
            "name = \"shop\"\npool = \"canary\"",
        ),
    )
    .unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &airlock.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let moved = eventually(Duration::from_secs(10), || async {
        served_by(&airlock, 1).await == ["canary"]
    })
    .await;
    assert!(moved);
    let (_, trail) = airlock.admin_json("/v1/audit?kind=config_reloaded").await;
    assert_eq!(
        trail["entries"][0]["reason"], "route `shop` changed",
        "{trail}"
    );
}

/// A call to the demo's admin API with one of its well-known tokens.
async fn demo_call(airlock: &Airlock, token: &str, method: &str, path: &str, body: &str) -> Reply {
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", airlock.admin()))
        .header("authorization", format!("Bearer {token}"))
        .body(full(body.to_owned()))
        .unwrap();
    Client::http1().send(request).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_holds_a_traffic_shift_applies_it_once_approved_and_rolls_it_back() {
    let airlock = Airlock::demo();
    let shift = r#"{"op":"shift_traffic","route":"everything","to_pool":"canary","percent":50}"#;
    let held = demo_call(&airlock, "demo-ops-token", "POST", "/v1/changes", shift).await;
    assert_eq!(
        held.status,
        202,
        "the demo's change freeze holds it: {}",
        held.text()
    );
    let id = held.json()["approval"]["id"].as_str().unwrap().to_owned();
    let approve = format!("/v1/approvals/{id}/approve");
    let voted = demo_call(&airlock, "demo-alice-token", "POST", &approve, "").await;
    assert_eq!(voted.json()["state"], "approved", "{}", voted.text());
    let shifted = eventually(Duration::from_secs(10), || async {
        served_by(&airlock, 4).await.iter().any(|b| b == "canary-1")
    })
    .await;
    assert!(shifted, "half the traffic reaches canary-1 once approved");

    // The canary's checkout is broken: the shift is rolled back by itself.
    let client = Client::http1();
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(client.get(&airlock.url("/checkout")).await.status);
    }
    assert!(statuses.contains(&500), "{statuses:?}");
    let rolled_back = eventually(Duration::from_secs(10), || async {
        served_by(&airlock, 6)
            .await
            .iter()
            .all(|b| b.starts_with("demo-"))
    })
    .await;
    assert!(rolled_back);
    assert_eq!(client.get(&airlock.url("/checkout")).await.status, 200);
}

const FAILOVER_GUARD: &str =
    "approvers = { groups = [\"oncall\"], quorum = 1, timeout_seconds = 60 }\n";
/// Health-checked, and never ejected passively (so that a failing backend
/// stays in and only its error rate shows it).
const CHECKED: &str = "health_check = { path = \"/healthz\", interval = \"100ms\", timeout = \"500ms\", healthy_threshold = 1, unhealthy_threshold = 1 }\npassive_health = { consecutive_failures = 1000 }";

/// Route `shop` on pool `web` (`primary`, health-checked) with backup pool
/// `dr`, failovers judged by failover-guard; `control` adds to `[control]`.
fn failover_node(
    primary: &Upstream,
    backup: &Upstream,
    control: &str,
) -> (Airlock, tempfile::TempDir) {
    let folder = policy_folder(&[("failover-guard", FAILOVER_GUARD)]);
    let config = format!(
        "[policies]\ndirectory = {:?}\n\n[control]\npolicies = [\"failover-guard\"]\n{control}\n{PUBLIC_LISTENER}\n{}\n{}\n[[route]]\nname = \"shop\"\npool = \"web\"\nbackup_pool = \"dr\"\n\n{}",
        folder.path().display().to_string(),
        pool("web", &[primary], CHECKED),
        pool("dr", &[backup], ""),
        principals()
    );
    (Airlock::start(&config), folder)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failover_waits_for_approval_then_moves_and_fails_back_when_the_pool_recovers() {
    let (primary, backup) = (
        Upstream::start("primary").await,
        Upstream::start("dr").await,
    );
    let (airlock, _folder) = failover_node(&primary, &backup, "");
    assert_eq!(served_by(&airlock, 1).await, ["primary"]);

    // The primary fails every request but passes its health checks:
    // failover-guard holds the failover (the pool still has a healthy
    // backend), and meanwhile the route stays put.
    primary.force_status(500);
    let _ = served_by(&airlock, 20).await;
    let approval = pending(&airlock, 1).await.remove(0);
    assert_eq!(approval["action"]["kind"], "event");
    assert_eq!(approval["principal"], "airlock");
    assert_eq!(approval["action"]["change"]["to_pool"], "dr");
    let reply = Client::http1().get(&airlock.url("/")).await;
    assert_eq!(reply.status, 500, "while held, nothing moves");

    let id = approval["id"].as_str().unwrap();
    assert_eq!(vote(&airlock, "bob", id, "approve", "").await.status, 200);
    let moved = eventually(Duration::from_secs(10), || async {
        Client::http1().get(&airlock.url("/")).await.backend() == "dr"
    })
    .await;
    assert!(moved, "approved: failed over to dr");

    // The primary is fixed; once its figures have decayed (no traffic),
    // the route fails back by itself.
    primary.force_status(0);
    let back = eventually(Duration::from_secs(30), || async {
        Client::http1().get(&airlock.url("/")).await.backend() == "primary"
    })
    .await;
    assert!(back);
    let (_, trail) = airlock.admin_json("/v1/audit?kind=balancer_event").await;
    let reasons: Vec<&str> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            entry["reason"]
                .as_str()
                .unwrap_or(entry["decision"].as_str().unwrap_or_default())
        })
        .collect();
    assert_eq!(reasons.len(), 3, "{trail}");
    assert_eq!(reasons[1], "approval approved");
    assert!(reasons[2].contains("moved back"), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_while_held_fail_over_a_denied_failover_fails_back() {
    let (primary, backup) = (
        Upstream::start("primary").await,
        Upstream::start("dr").await,
    );
    let (airlock, _folder) = failover_node(&primary, &backup, "while_held = \"fail_over\"\n");
    primary.force_status(500);
    let _ = served_by(&airlock, 20).await;
    let id = pending(&airlock, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The approval is listed as soon as it is made; the move follows it.
    let moved = eventually(Duration::from_secs(10), || async {
        served_by(&airlock, 1).await == ["dr"]
    })
    .await;
    assert!(moved, "moved while held");
    vote(&airlock, "bob", &id, "deny", "").await;
    let back = eventually(Duration::from_secs(10), || async {
        Client::http1().get(&airlock.url("/")).await.status == 500
    })
    .await;
    assert!(back, "denied: back on the failing pool");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_that_is_down_fails_over_at_once_when_the_policy_allows_it() {
    let (primary, backup) = (
        Upstream::start("primary").await,
        Upstream::start("dr").await,
    );
    let (airlock, _folder) = failover_node(&primary, &backup, "");
    primary.set_healthy(false);
    let moved = eventually(Duration::from_secs(10), || async {
        Client::http1().get(&airlock.url("/")).await.backend() == "dr"
    })
    .await;
    assert!(
        moved,
        "failover-guard allows a failover of a pool with no backend up"
    );
    let (_, trail) = airlock.admin_json("/v1/audit?kind=balancer_event").await;
    assert_eq!(trail["entries"][0]["decision"], "allow", "{trail}");
    assert_eq!(trail["entries"][0]["actor"], "airlock");
}

/// Pools `web` (`backends`, ejected after 2 failures) and `burst`; route
/// `shop` on `web` spills to `burst`; `control` and `policies` as given.
fn events_node(
    backends: &[&Upstream],
    burst: &Upstream,
    control: &str,
    policies: &[(&str, &str)],
) -> (Airlock, tempfile::TempDir) {
    let folder = policy_folder(policies);
    let config = format!(
        "[policies]\ndirectory = {:?}\n\n[control]\n{control}\n{PUBLIC_LISTENER}\n{}\n{}\n[[route]]\nname = \"shop\"\npool = \"web\"\noverflow_pool = \"burst\"\n\n{}",
        folder.path().display().to_string(),
        pool("web", backends, "passive_health = { consecutive_failures = 2, ejection_time = \"60s\" }"),
        pool("burst", &[burst], ""),
        principals()
    );
    (Airlock::start(&config), folder)
}

/// The balancer events in the trail: (event, decision or reason).
async fn balancer_events(airlock: &Airlock) -> Vec<(String, String)> {
    let (_, trail) = airlock.admin_json("/v1/audit?kind=balancer_event").await;
    trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["change"]["event"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                entry["decision"]
                    .as_str()
                    .or(entry["reason"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ejection_is_judged_and_undone_when_its_policy_fails() {
    let (good, bad, burst) = (
        Upstream::start("good").await,
        Upstream::start("bad").await,
        Upstream::start("burst").await,
    );
    bad.force_status(500);
    // No control policies: the ejection stands, and is recorded.
    let (airlock, _folder) = events_node(&[&good, &bad], &burst, "", &[]);
    let _ = served_by(&airlock, 6).await;
    let judged = eventually(Duration::from_secs(10), || async {
        balancer_events(&airlock)
            .await
            .contains(&("eject_outlier".to_owned(), "allow".to_owned()))
    })
    .await;
    assert!(judged, "{:?}", balancer_events(&airlock).await);
    assert!(
        served_by(&airlock, 4).await.iter().all(|b| b == "good"),
        "the ejection stands"
    );

    // A control policy that fails: the balancer's own action does not
    // happen (fail closed), so the ejection is undone.
    let (airlock, _folder) = events_node(
        &[&good, &bad],
        &burst,
        "policies = [\"hostile\"]\n[control.parameters.hostile]\nmode = \"panic\"\n",
        &[("hostile", "")],
    );
    let _ = served_by(&airlock, 6).await;
    let undone = eventually(Duration::from_secs(10), || async {
        balancer_events(&airlock)
            .await
            .iter()
            .any(|(_, what)| what == "policy failed: undone")
    })
    .await;
    assert!(undone, "{:?}", balancer_events(&airlock).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_surge_spills_to_the_overflow_pool_and_stops_when_it_calms() {
    let (web, burst) = (Upstream::start("web").await, Upstream::start("burst").await);
    let (airlock, _folder) = events_node(
        &[&web],
        &burst,
        "spill_in_flight = 3\nspill_percent = 50\n",
        &[],
    );
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let url = airlock.url("/slow/3000");
            tokio::spawn(async move { Client::http1().get(&url).await })
        })
        .collect();
    let spilled = eventually(Duration::from_secs(10), || async {
        served_by(&airlock, 2).await.iter().any(|b| b == "burst")
    })
    .await;
    assert!(spilled, "half the requests go to burst during the surge");
    for request in slow {
        request.await.unwrap();
    }
    let calmed = eventually(Duration::from_secs(10), || async {
        served_by(&airlock, 4).await.iter().all(|b| b == "web")
    })
    .await;
    assert!(calmed);
    let events = balancer_events(&airlock).await;
    assert_eq!(
        events[0],
        ("spill_surge".to_owned(), "allow".to_owned()),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_whose_file_no_longer_fits_the_stored_changes_serves_the_file() {
    let (stable, canary) = (
        Upstream::start("stable").await,
        Upstream::start("canary").await,
    );
    let folder = policy_folder(&[]);
    let mut airlock = Airlock::start(&config(&stable, &canary, &folder, false, ""));
    let shift =
        json!({"op": "shift_traffic", "route": "shop", "to_pool": "canary", "percent": 100});
    assert_eq!(change(&airlock, "erin", shift).await.status, 200);
    airlock.terminate();
    assert_eq!(airlock.wait(Duration::from_secs(15)), Some(true));
    // The file drops the canary pool the stored shift names.
    let text = std::fs::read_to_string(&airlock.config_path).unwrap();
    let without_canary = text.replace(&pool("canary", &[&canary], ""), "");
    assert_ne!(text, without_canary);
    std::fs::write(&airlock.config_path, without_canary).unwrap();
    airlock.restart();
    assert!(served_by(&airlock, 2).await.iter().all(|b| b == "stable"));
    assert!(
        airlock.log().contains("no longer fit the config file"),
        "{}",
        airlock.log()
    );
    let reset = api(&airlock, Some("erin"), "DELETE", "/v1/routing/overlay", "").await;
    assert_eq!(reset.json()["dropped"], 1, "the stored change is dropped");
    let (_, trail) = airlock
        .admin_json("/v1/audit?kind=change_rolled_back")
        .await;
    assert!(
        trail["entries"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("reset"),
        "{trail}"
    );
    drop(folder);
}
