//! Go policies through the real binary, built from source with the Go
//! toolchain (`GO` or `go` on the `PATH`; `tests/run` installs it): the
//! author's loop from `airlock policy new --lang go`, the Go ports passing
//! the Rust policies' own case tables, and a Go policy hot-reloaded into a
//! running node.

use std::path::Path;
use std::process::Command;

use crate::harness::*;
use crate::policy::{
    airlock_policy, build, native_tests, ports_pass_the_rust_case_tables, repository,
};

#[test]
fn a_scaffolded_go_policy_builds_and_passes_its_own_tests() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("hold-deletes");
    let (ok, text) = airlock_policy(&["new", module.to_str().unwrap(), "--lang", "go"]);
    assert!(ok, "{text}");
    assert!(text.contains("go test ./..."), "{text}");
    go_test(&module);
    let output = dir.path().join("hold-deletes.wasm");
    let built = build(&module, &output);
    assert!(built.contains("built hold-deletes 0.1.0"), "{built}");
    let (ok, text) = airlock_policy(&[
        "test",
        output.to_str().unwrap(),
        module.join("cases.toml").to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("3 passed, 0 failed"), "{text}");
}

/// `go test ./...` in `directory`; panics with Go's output if it fails.
fn go_test(directory: &Path) {
    let go = std::env::var_os("GO").unwrap_or_else(|| "go".into());
    native_tests(directory, &go, &["test", "./..."], "Go");
}

/// The SDK's own tests (the canonical-ABI layouts, strict parameters,
/// matching, time windows) and the ports' unit tests, natively.
#[test]
fn the_go_sdk_and_the_ports_pass_their_go_tests() {
    for module in [
        "sdk/go",
        "policies/approval-rules-go",
        "policies/business-hours-go",
    ] {
        go_test(&repository(module));
    }
}

#[test]
fn the_go_ports_pass_the_rust_policies_case_tables() {
    ports_pass_the_rust_case_tables(&["policies/approval-rules-go", "policies/business-hours-go"]);
}

#[test]
fn policy_build_says_what_is_wrong_with_the_go_toolchain() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("p");
    assert!(airlock_policy(&["new", module.to_str().unwrap(), "--lang", "go"]).0);
    let output = dir.path().join("p.wasm");
    for (go, expected) in [
        (
            "/nonexistent/go",
            "no Go toolchain (`/nonexistent/go` not found)",
        ),
        ("/bin/false", "Go policies need Go 1.24 or newer"),
    ] {
        let built = Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(["policy", "build"])
            .arg(&module)
            .arg("-o")
            .arg(&output)
            .env("GO", go)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&built.stderr);
        assert!(!built.status.success());
        assert!(text.contains(expected), "GO={go}: {text}");
        assert!(!output.exists(), "nothing is written");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_go_policy_dropped_into_the_folder_replaces_the_rust_one() {
    let up = Upstream::start("a").await;
    let rules = "[[rules]]\nmethods = [\"DELETE\"]\napprovers = { groups = [\"oncall\"] }\n";
    let folder = policy_folder(&[("approval-rules", rules)]);
    // A fresh Go instance takes over a millisecond on a quiet machine and
    // can pass the default 10 ms deadline beside a parallel test run: this
    // test is about the swap, not the deadline.
    let config = format!(
        "[policies]\ndirectory = {:?}\ndeadline = \"2s\"\n\n{PUBLIC_LISTENER}\n{}\n[[route]]\npool = \"web\"\npolicies = [\"approval-rules\"]\n",
        folder.path().display().to_string(),
        pool("web", &[&up], ""),
    );
    let airlock = Airlock::start(&config);
    let built_dir = tempfile::tempdir().unwrap();
    let go_component = built_dir.path().join("approval-rules.wasm");
    let built = build(&repository("policies/approval-rules-go"), &go_component);
    let go_hash = built
        .trim()
        .rsplit("sha256 ")
        .next()
        .unwrap()
        .trim_end_matches(')')
        .to_owned();
    // As a deployment tool would: a temporary name, then a rename.
    let staging = folder.path().join("approval-rules.staging");
    std::fs::copy(&go_component, &staging).unwrap();
    std::fs::rename(&staging, folder.path().join("approval-rules.wasm")).unwrap();

    let reloaded = eventually(std::time::Duration::from_secs(20), || async {
        let (_, body) = airlock.admin_json("/v1/policies").await;
        body["policies"][0]["hash"] == go_hash.as_str()
    })
    .await;
    assert!(
        reloaded,
        "the Go build ({go_hash}) did not replace the Rust one"
    );
    // The Go policy judges now: reads pass, its parameters still apply.
    assert_eq!(Client::http1().get(&airlock.url("/x")).await.status, 200);
    let (_, trail) = airlock.admin_json("/v1/audit?kind=policy_loaded").await;
    assert!(
        trail.to_string().contains(&go_hash),
        "the reload is in the trail: {trail}"
    );
}
