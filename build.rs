//! Builds the bundled policies (embedded in the binary for `airlock demo`)
//! and the test fixtures (hostile policies, found by tests through
//! `AIRLOCK_TEST_POLICIES`) with a nested cargo into `target/policies`, its
//! own target dir so it never waits on this build's lock.

#[path = "host/src/policy/guest_build.rs"]
#[allow(dead_code, unreachable_pub)]
mod guest_build;

use std::fmt::Write as _;
use std::path::PathBuf;

/// Bundled policies, embedded in the binary.
const BUNDLED: [&str; 7] = [
    "allow-all",
    "deny-list",
    "approval-rules",
    "change-freeze",
    "business-hours",
    "canary-guard",
    "failover-guard",
];

/// Test fixtures, only built and pointed to.
const FIXTURES: [&str; 2] = ["hostile", "other-version"];

fn main() {
    let root = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cargo = PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for watched in [
        "wit",
        "sdk/rust/src",
        "sdk/rust/Cargo.toml",
        "policies",
        "tests/policies",
        "host/src/policy/guest_build.rs",
    ] {
        println!("cargo:rerun-if-changed={watched}");
    }

    let rustc = PathBuf::from(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()));
    if let Some(done) = guest_build::add_missing_target(&rustc) {
        println!("cargo:warning={done}");
    }

    let target_dir = root.join("target").join("policies");
    let packages: Vec<&str> = BUNDLED.iter().chain(FIXTURES.iter()).copied().collect();
    let output = guest_build::cargo_build(&cargo, &root.join("Cargo.toml"), &packages, &target_dir)
        .output()
        .expect("cannot run cargo to build the policies");
    if !output.status.success() {
        panic!(
            "building the bundled policies failed ({}):\n{}",
            guest_build::MISSING_TARGET_HINT,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let policies_dir = out_dir.join("policies");
    std::fs::create_dir_all(&policies_dir).expect("create OUT_DIR/policies");
    let mut bundled = String::from("/// The bundled policies: (name, component bytes).\npub const BUNDLED: &[(&str, &[u8])] = &[\n");
    for package in &packages {
        let built = guest_build::artifact(&target_dir, package);
        let copy = policies_dir.join(format!("{package}.wasm"));
        std::fs::copy(&built, &copy)
            .unwrap_or_else(|error| panic!("copy {}: {error}", built.display()));
        if BUNDLED.contains(package) {
            writeln!(
                bundled,
                "    ({package:?}, include_bytes!({:?})),",
                copy.display().to_string()
            )
            .expect("write to a String");
        }
    }
    bundled.push_str("];\n");
    std::fs::write(out_dir.join("bundled_policies.rs"), bundled)
        .expect("write bundled_policies.rs");
    println!(
        "cargo:rustc-env=AIRLOCK_TEST_POLICIES={}",
        policies_dir.display()
    );
}
