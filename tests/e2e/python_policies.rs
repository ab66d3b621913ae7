//! Python policies through the real binary, built with componentize-py
//! (`tests/run` installs it and pytest; `airlock policy build` installs
//! componentize-py into a cached venv where it is missing): the SDK's and
//! the ports' native tests, the ports passing the Rust policies' own case
//! tables, and the author's loop from `airlock policy new --lang python` to
//! a hot-reloaded policy holding a request.

use std::path::Path;

use crate::harness::*;
use crate::policy::{
    airlock_policy, build, native_tests, ports_pass_the_rust_case_tables, repository,
};

/// `python3 -m pytest` in `directory` (`AIRLOCK_PYTHON` instead of
/// `python3` if set); panics with pytest's output if it fails.
fn pytest(directory: &Path) {
    let python = std::env::var_os("AIRLOCK_PYTHON").unwrap_or_else(|| "python3".into());
    let args = ["-m", "pytest", "-q", "-p", "no:cacheprovider"];
    native_tests(directory, &python, &args, "Python 3.11+ with pytest");
}

/// The SDK's own tests (types against the bindings componentize-py
/// generates, strict parameters, matching, time windows, the component
/// glue) and the ports' unit tests, natively.
#[test]
fn the_python_sdk_and_the_ports_pass_their_pytest_tests() {
    for project in [
        "sdk/python",
        "policies/approval-rules-py",
        "policies/business-hours-py",
    ] {
        pytest(&repository(project));
    }
}

#[test]
fn the_python_ports_pass_the_rust_policies_case_tables() {
    ports_pass_the_rust_case_tables(&["policies/approval-rules-py", "policies/business-hours-py"]);
}

/// What a new author does, from the README: scaffold, test natively,
/// build, test against the cases, drop it into a running node's folder,
/// and see it hold a request.
#[tokio::test(flavor = "multi_thread")]
async fn a_scaffolded_python_policy_builds_passes_its_tests_and_holds_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("hold-deletes");
    let (ok, text) = airlock_policy(&["new", project.to_str().unwrap(), "--lang", "python"]);
    assert!(ok, "{text}");
    assert!(text.contains("python3 -m pytest"), "{text}");
    pytest(&project);
    let output = dir.path().join("hold-deletes.wasm");
    let built = build(&project, &output);
    assert!(built.contains("built hold-deletes 0.1.0"), "{built}");
    let (ok, text) = airlock_policy(&[
        "test",
        output.to_str().unwrap(),
        project.join("cases.toml").to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("3 passed, 0 failed"), "{text}");

    let up = Upstream::start("a").await;
    let folder = policy_folder(&[]);
    let config = format!(
        "[policies]\ndirectory = {:?}\ndeadline = \"2s\"\n\n{PUBLIC_LISTENER}\n{}\n[[route]]\npool = \"web\"\npolicies = [\"hold-deletes\"]\n\n{}",
        folder.path().display().to_string(),
        pool("web", &[&up], ""),
        crate::approvals::principals(),
    );
    // Until the Python build is dropped in, `hold-deletes` is allow-all.
    std::fs::copy(
        built_policy("allow-all"),
        folder.path().join("hold-deletes.wasm"),
    )
    .unwrap();
    let airlock = Airlock::start(&config);
    let (_, before) = airlock.admin_json("/v1/policies").await;
    let allow_all_hash = before["policies"][0]["hash"].clone();
    std::fs::copy(&output, folder.path().join("hold-deletes.staging")).unwrap();
    std::fs::rename(
        folder.path().join("hold-deletes.staging"),
        folder.path().join("hold-deletes.wasm"),
    )
    .unwrap();
    let loaded = eventually(std::time::Duration::from_secs(120), || async {
        let (_, body) = airlock.admin_json("/v1/policies").await;
        let hash = &body["policies"][0]["hash"];
        hash.is_string() && *hash != allow_all_hash
    })
    .await;
    assert!(loaded, "the Python policy was not loaded");
    assert_eq!(Client::http1().get(&airlock.url("/x")).await.status, 200);
    let (deleting, id) = crate::approvals::client_delete_held(&airlock).await;
    let held = crate::approvals::show(&airlock, &id).await.json();
    assert_eq!(held["holds"][0]["groups"], serde_json::json!(["oncall"]));
    crate::approvals::vote(&airlock, "bob", &id, "approve", "").await;
    assert_eq!(
        deleting.await.unwrap().status,
        200,
        "approved, the delete goes through"
    );
}
