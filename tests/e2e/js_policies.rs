//! JavaScript policies through the real binary, built with ComponentizeJS
//! (`airlock policy build` runs `npm ci` where a package lacks its
//! `node_modules`; Node 20+ and npm come from `tests/run`): the SDK's and the
//! ports' native tests, the ports passing the Rust policies' own case
//! tables, and the author's loop from `airlock policy new --lang js`.
//!
//! The tests that install into the repository's packages take
//! [`REPOSITORY_PACKAGES`] first: `npm ci` empties a `node_modules` that
//! another test may be building from, and a port's install packs the SDK's
//! directory.

use std::path::Path;
use std::sync::Mutex;

use crate::policy::{
    airlock_policy, build, native_tests, ports_pass_the_rust_case_tables, repository,
};

/// Held while `sdk/js` and `policies/*-js` are installed or built from.
static REPOSITORY_PACKAGES: Mutex<()> = Mutex::new(());

/// `npm ci` (or `npm install` without a lockfile), then `npm test`, in
/// `directory`; panics with npm's output if either fails.
fn npm_test(directory: &Path) {
    let npm = std::ffi::OsStr::new("npm");
    let install = if directory.join("package-lock.json").exists() {
        "ci"
    } else {
        "install"
    };
    native_tests(directory, npm, &[install, "--no-audit", "--no-fund"], "npm");
    native_tests(directory, npm, &["test"], "Node.js 20+");
}

/// The SDK's own tests (strict parameters, matching, time windows, the
/// component glue) and the ports' unit tests, natively.
#[test]
fn the_js_sdk_and_the_ports_pass_their_node_tests() {
    let _installing = REPOSITORY_PACKAGES
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    for package in [
        "sdk/js",
        "policies/approval-rules-js",
        "policies/business-hours-js",
    ] {
        npm_test(&repository(package));
    }
}

#[test]
fn the_js_ports_pass_the_rust_policies_case_tables() {
    let _building = REPOSITORY_PACKAGES
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    ports_pass_the_rust_case_tables(&["policies/approval-rules-js", "policies/business-hours-js"]);
}

/// What a new author does, from the README: scaffold, test natively,
/// build, and test against the cases.
#[test]
fn a_scaffolded_js_policy_builds_and_passes_its_own_tests() {
    let dir = tempfile::tempdir().unwrap();
    let package = dir.path().join("hold-deletes");
    let (ok, text) = airlock_policy(&["new", package.to_str().unwrap(), "--lang", "js"]);
    assert!(ok, "{text}");
    assert!(text.contains("npm install && npm test"), "{text}");
    npm_test(&package);
    let output = dir.path().join("hold-deletes.wasm");
    let built = build(&package, &output);
    assert!(built.contains("built hold-deletes 0.1.0"), "{built}");
    let (ok, text) = airlock_policy(&[
        "test",
        output.to_str().unwrap(),
        package.join("cases.toml").to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("3 passed, 0 failed"), "{text}");
}
