//! How a policy crate becomes a component: one `cargo build` invocation,
//! shared by `build.rs` (the bundled policies and the test fixtures) and by
//! `airlock policy build`, so both produce the same kind of artifact.
//!
//! Policies are built for `wasm32-unknown-unknown` and linked by
//! `wasm-component-ld` (shipped with rustup) with no WASI adapter: the result
//! is a component that imports only the contract's `host` interface. The
//! release profile is overridden for size and so that a panic traps.
//!
//! Standard library only: `build.rs` includes this file by path.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The compilation target of every policy.
pub const TARGET: &str = "wasm32-unknown-unknown";

/// Settings passed with `--config`, so a policy crate needs no
/// `.cargo/config.toml` of its own. A 64 KiB shadow stack (instead of Rust's
/// 1 MiB default) makes each fresh instance cheaper to set up and reset.
const CARGO_CONFIG: [&str; 8] = [
    "target.wasm32-unknown-unknown.linker=\"wasm-component-ld\"",
    "target.wasm32-unknown-unknown.rustflags=[\"-C\", \"link-arg=--wasi-adapter=none\", \"-C\", \"link-arg=-zstack-size=65536\"]",
    "profile.release.opt-level=\"s\"",
    "profile.release.lto=true",
    "profile.release.codegen-units=1",
    "profile.release.panic=\"abort\"",
    "profile.release.strip=true",
    "profile.release.debug=false",
];

/// Environment a parent cargo (running a build script) sets that must not
/// leak into the policy build: it would retarget or reflag it.
const PARENT_CARGO_ENV: [&str; 6] = [
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
];

/// `cargo build` of `packages` from `manifest` into `target_dir`.
pub fn cargo_build(cargo: &Path, manifest: &Path, packages: &[&str], target_dir: &Path) -> Command {
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir);
    for setting in CARGO_CONFIG {
        command.arg("--config").arg(setting);
    }
    for package in packages {
        command.arg("--package").arg(package);
    }
    for variable in PARENT_CARGO_ENV {
        command.env_remove(variable);
    }
    command
}

/// Where `cargo_build` leaves the component of crate `package`.
pub fn artifact(target_dir: &Path, package: &str) -> PathBuf {
    target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{}.wasm", package.replace('-', "_")))
}

/// Add the target to a rustup toolchain that lacks it (a fresh machine has
/// only the host's standard library, and rustup adds the targets
/// `rust-toolchain.toml` names only when it installs the toolchain itself).
/// `rustc` is the compiler the build uses. Returns what was done, to be
/// reported; `None` when the target was there. Where rustup is missing or
/// fails, the build goes on and fails with [`MISSING_TARGET_HINT`].
pub fn add_missing_target(rustc: &Path) -> Option<String> {
    let output = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()?;
    let libdir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || Path::new(&libdir).is_dir() {
        return None;
    }
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .is_ok_and(|status| status.success());
    Some(if added {
        format!("installed the {TARGET} target with `rustup target add {TARGET}`")
    } else {
        format!("{TARGET} is missing and `rustup target add {TARGET}` failed")
    })
}

/// What to tell someone whose toolchain lacks the target.
pub const MISSING_TARGET_HINT: &str =
    "policies are built for wasm32-unknown-unknown; if it is missing, run `rustup target add wasm32-unknown-unknown`";
