//! The policy author's tools: `airlock policy new NAME [--lang go|python|js]`
//! scaffolds a Rust policy crate (or a Go module, a Python project, a
//! JavaScript package) that builds and passes its own tests; `airlock
//! policy build DIR` builds any of them into a component and checks it
//! against the contract before writing it out.

use std::path::{Path, PathBuf};

use super::engine::{EngineSettings, PolicyEngine};
use super::guest_build;

/// Where a new policy keeps its copy of the SDK: the binary writes it
/// there, so a policy builds wherever Airlock was installed from (no path
/// into Airlock's source tree, no registry).
const SDK_DIRECTORY: &str = "airlock-sdk";

/// The contract this binary speaks, which every SDK copy builds against.
const CONTRACT: &str = include_str!("../../../wit/policy.wit");

/// The Rust SDK's sources, and the contract its bindings are generated
/// from (read from `wit/` beside them in the copy).
const RUST_SDK: [(&str, &str); 6] = [
    ("src/lib.rs", include_str!("../../../sdk/rust/src/lib.rs")),
    ("src/host.rs", include_str!("../../../sdk/rust/src/host.rs")),
    (
        "src/matching.rs",
        include_str!("../../../sdk/rust/src/matching.rs"),
    ),
    (
        "src/testing.rs",
        include_str!("../../../sdk/rust/src/testing.rs"),
    ),
    ("src/time.rs", include_str!("../../../sdk/rust/src/time.rs")),
    ("wit/policy.wit", CONTRACT),
];

/// The copy's manifest: the SDK's own (`sdk/rust/Cargo.toml`) inherits
/// from Airlock's workspace; these are the same dependencies, spelled out.
const RUST_SDK_MANIFEST: &str = r#"[package]
name = "airlock-sdk"
version = "0.2.0"
edition = "2021"
description = "Airlock's policy SDK, as `airlock policy new` wrote it"

[dependencies]
serde = { version = "1", features = ["derive"] }
serde_json = "1"
serde_path_to_error = "0.1"
wit-bindgen = "0.63.0"

[target.'cfg(not(target_arch = "wasm32"))'.dependencies]
jiff = { version = "=0.2.43", default-features = false, features = ["std", "tzdb-bundle-always"] }
"#;

/// The Go SDK's sources (not its tests).
const GO_SDK: [(&str, &str); 11] = [
    ("go.mod", include_str!("../../../sdk/go/go.mod")),
    ("abi.go", include_str!("../../../sdk/go/abi.go")),
    (
        "component_wasm.go",
        include_str!("../../../sdk/go/component_wasm.go"),
    ),
    ("contract.go", include_str!("../../../sdk/go/contract.go")),
    ("host.go", include_str!("../../../sdk/go/host.go")),
    ("matching.go", include_str!("../../../sdk/go/matching.go")),
    (
        "parameters.go",
        include_str!("../../../sdk/go/parameters.go"),
    ),
    ("policy.go", include_str!("../../../sdk/go/policy.go")),
    ("testhost.go", include_str!("../../../sdk/go/testhost.go")),
    ("types.go", include_str!("../../../sdk/go/types.go")),
    ("window.go", include_str!("../../../sdk/go/window.go")),
];

/// The Python SDK's sources, its build script (which `airlock policy
/// build` runs from a copy) and the contract it builds against.
const PYTHON_SDK: [(&str, &str); 10] = [
    (
        "airlock/__init__.py",
        include_str!("../../../sdk/python/airlock/__init__.py"),
    ),
    (
        "airlock/_component.py",
        include_str!("../../../sdk/python/airlock/_component.py"),
    ),
    (
        "airlock/host.py",
        include_str!("../../../sdk/python/airlock/host.py"),
    ),
    (
        "airlock/matching.py",
        include_str!("../../../sdk/python/airlock/matching.py"),
    ),
    (
        "airlock/parameters.py",
        include_str!("../../../sdk/python/airlock/parameters.py"),
    ),
    (
        "airlock/testing.py",
        include_str!("../../../sdk/python/airlock/testing.py"),
    ),
    (
        "airlock/types.py",
        include_str!("../../../sdk/python/airlock/types.py"),
    ),
    (
        "airlock/window.py",
        include_str!("../../../sdk/python/airlock/window.py"),
    ),
    ("build.py", include_str!("../../../sdk/python/build.py")),
    ("wit/policy.wit", CONTRACT),
];

/// The JavaScript SDK: its package and lockfile (the lockfile pins
/// componentize-js for `npm ci` in the SDK itself; a new policy's own
/// `npm install` pins only the SDK's direct dependencies), its build
/// script, its sources and the contract it builds against.
const JS_SDK: [(&str, &str); 13] = [
    ("package.json", include_str!("../../../sdk/js/package.json")),
    (
        "package-lock.json",
        include_str!("../../../sdk/js/package-lock.json"),
    ),
    ("build.mjs", include_str!("../../../sdk/js/build.mjs")),
    (
        "src/action.js",
        include_str!("../../../sdk/js/src/action.js"),
    ),
    (
        "src/decision.js",
        include_str!("../../../sdk/js/src/decision.js"),
    ),
    ("src/host.js", include_str!("../../../sdk/js/src/host.js")),
    ("src/index.js", include_str!("../../../sdk/js/src/index.js")),
    (
        "src/matching.js",
        include_str!("../../../sdk/js/src/matching.js"),
    ),
    (
        "src/parameters.js",
        include_str!("../../../sdk/js/src/parameters.js"),
    ),
    (
        "src/policy.js",
        include_str!("../../../sdk/js/src/policy.js"),
    ),
    (
        "src/testing.js",
        include_str!("../../../sdk/js/src/testing.js"),
    ),
    ("src/time.js", include_str!("../../../sdk/js/src/time.js")),
    ("wit/policy.wit", CONTRACT),
];

/// The componentize-py the Python SDK is built and tested with; `airlock
/// policy build` installs it (from PyPI, into a cached venv) if missing.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The languages a policy is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Language {
    #[default]
    Rust,
    Go,
    Python,
    Js,
}

/// Why a tool failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthorError {
    #[error("{0}")]
    Usage(String),
    #[error("{}: {cause}", .path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cargo build failed ({})", guest_build::MISSING_TARGET_HINT)]
    Build,
    #[error(transparent)]
    Go(#[from] super::go::GoBuildError),
    #[error("{0}")]
    Python(String),
    #[error("{0}")]
    Js(String),
    #[error("{}: {cause}", .path.display())]
    Contract {
        path: PathBuf,
        cause: super::LoadError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuthorError + '_ {
    move |cause| AuthorError::Io {
        path: path.to_owned(),
        cause,
    }
}

/// Create `directory/` holding a new policy named after it, in `language`.
///
/// # Errors
/// When the name is not a valid crate name or the directory exists.
pub fn new_policy(directory: &Path, language: Language) -> Result<String, AuthorError> {
    let name = directory
        .file_name()
        .and_then(|name| name.to_str())
        .filter(|name| {
            name.chars()
                .next()
                .is_some_and(|first| first.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
        .ok_or_else(|| {
            AuthorError::Usage(format!(
                "{}: a policy name is lower-case letters, digits and `-`, starting with a letter",
                directory.display()
            ))
        })?
        .to_owned();
    if directory.exists() {
        return Err(AuthorError::Usage(format!(
            "{} already exists",
            directory.display()
        )));
    }
    let sdk = |relative: &str| format!("{SDK_DIRECTORY}/{relative}");
    let mut files = match language {
        Language::Rust => vec![
            ("Cargo.toml".to_owned(), scaffold_manifest(&name)),
            (
                "src/lib.rs".to_owned(),
                SCAFFOLD_LIB.replace("{{name}}", &name),
            ),
            ("cases.toml".to_owned(), SCAFFOLD_CASES.to_owned()),
            (sdk("Cargo.toml"), RUST_SDK_MANIFEST.to_owned()),
        ],
        Language::Go => vec![
            (
                "go.mod".to_owned(),
                SCAFFOLD_GO_MOD.replace("{{name}}", &name),
            ),
            (
                "main.go".to_owned(),
                SCAFFOLD_GO_MAIN.replace("{{name}}", &name),
            ),
            ("main_test.go".to_owned(), SCAFFOLD_GO_TEST.to_owned()),
            ("cases.toml".to_owned(), SCAFFOLD_CASES.to_owned()),
        ],
        Language::Python => {
            let module = name.replace('-', "_");
            let fill = |text: &str| {
                text.replace("{{name}}", &name)
                    .replace("{{module}}", &module)
            };
            vec![
                (
                    "pyproject.toml".to_owned(),
                    fill(include_str!("../../../sdk/python/template/pyproject.toml")),
                ),
                (
                    format!("{module}.py"),
                    fill(include_str!("../../../sdk/python/template/policy.py")),
                ),
                (
                    format!("test_{module}.py"),
                    fill(include_str!("../../../sdk/python/template/test_policy.py")),
                ),
                ("cases.toml".to_owned(), SCAFFOLD_CASES.to_owned()),
            ]
        }
        Language::Js => {
            let fill = |text: &str| text.replace("{{name}}", &name);
            vec![
                (
                    "package.json".to_owned(),
                    fill(include_str!("../../../sdk/js/template/package.json")),
                ),
                (
                    "policy.js".to_owned(),
                    fill(include_str!("../../../sdk/js/template/policy.js")),
                ),
                (
                    "policy.test.js".to_owned(),
                    fill(include_str!("../../../sdk/js/template/policy.test.js")),
                ),
                ("cases.toml".to_owned(), SCAFFOLD_CASES.to_owned()),
            ]
        }
    };
    let sources = match language {
        Language::Rust => &RUST_SDK[..],
        Language::Go => &GO_SDK[..],
        Language::Python => &PYTHON_SDK[..],
        Language::Js => &JS_SDK[..],
    };
    for (relative, text) in sources {
        // The copy reads the contract beside itself, not from Airlock's tree.
        let text = text.replace(r#"path: "../../wit""#, r#"path: "wit""#);
        files.push((sdk(relative), text));
    }
    write_files(directory, files)?;
    Ok(name)
}

fn scaffold_manifest(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"

[lib]
# cdylib: the component; rlib: so `cargo test` can unit-test it natively.
crate-type = ["cdylib", "rlib"]

[dependencies]
# The SDK as this Airlock wrote it (`{SDK_DIRECTORY}/`).
airlock-sdk = {{ path = "{SDK_DIRECTORY}" }}
serde = {{ version = "1", features = ["derive"] }}

# A standalone crate, not part of any enclosing workspace.
[workspace]
"#
    )
}

const SCAFFOLD_LIB: &str = r##"//! {{name}}: holds deletes (any case of the method) for approval by the
//! groups in its parameters (`{{name}}.toml`, default `oncall`), allows
//! everything else.
//!
//! Build: `airlock policy build .`   Test: `cargo test` and
//! `airlock policy test {{name}}.wasm cases.toml`.

use airlock_sdk::{matching, Action, Approvers, Decision, Metadata, ParameterError, Policy};

/// `{{name}}.toml`, checked once when Airlock loads the policy: an unknown
/// key is refused with its line, and the previous version keeps serving.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    #[serde(default = "oncall")]
    groups: Vec<String>,
}

fn oncall() -> Vec<String> {
    vec!["oncall".to_owned()]
}

pub struct ThisPolicy {
    approvers: Approvers,
}

impl Policy for ThisPolicy {
    type Parameters = Parameters;

    fn describe() -> Metadata {
        Metadata::requests("{{name}}", env!("CARGO_PKG_VERSION"))
    }

    fn setup(parameters: Parameters) -> Result<Self, ParameterError> {
        let groups: Vec<&str> = parameters.groups.iter().map(String::as_str).collect();
        let approvers = Approvers::groups(&groups);
        approvers.check("")?;
        Ok(ThisPolicy { approvers })
    }

    fn evaluate(&self, action: Action) -> Decision {
        match action.request() {
            Some(request) if matching::method("DELETE", &request.method) => self
                .approvers
                .hold(format!("DELETE {} needs approval", request.path), "DELETE"),
            _ => Decision::allow(),
        }
    }
}

airlock_sdk::export!(ThisPolicy);

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_sdk::set_up;
    use airlock_sdk::testing::{request, TestHost};

    #[test]
    fn deletes_are_held_in_any_case_and_reads_pass() {
        let policy = set_up::<ThisPolicy>("{}").unwrap();
        TestHost::new().run(|| {
            assert_eq!(policy.evaluate(request("DELETE", "/x")).kind(), "hold");
            assert_eq!(policy.evaluate(request("delete", "/x")).kind(), "hold");
            assert_eq!(policy.evaluate(request("GET", "/x")), Decision::allow());
        });
    }

    #[test]
    fn unknown_keys_are_refused() {
        let refusal = set_up::<ThisPolicy>(r#"{"group": ["oncall"]}"#).err().unwrap();
        assert_eq!(refusal.key, "group");
    }
}
"##;

const SCAFFOLD_GO_MOD: &str = r#"module {{name}}

go 1.24

require airlock.example/sdk v0.0.0

// The SDK as this Airlock wrote it (no module proxy needed).
replace airlock.example/sdk => ./airlock-sdk
"#;

const SCAFFOLD_GO_MAIN: &str = r#"// {{name}}: holds deletes (any case of the method) for approval by the
// groups in its parameters ({{name}}.toml, default oncall), allows
// everything else.
//
// Build: `airlock policy build .`   Test: `go test ./...` and
// `airlock policy test {{name}}.wasm cases.toml`.
package main

import "airlock.example/sdk"

// main is never called: the policy is a library the host calls into.
func main() {}

func init() { airlock.Register(airlock.Requests("{{name}}", "0.1.0"), setup) }

// parameters is {{name}}.toml, checked once when Airlock loads the policy:
// an unknown key is refused with its line, and the previous version keeps
// serving.
type parameters struct {
	Groups []string `json:"groups,omitempty"` // optional: oncall when absent
}

type thisPolicy struct{ groups []string }

func setup(p parameters) (airlock.Policy, error) {
	if p.Groups == nil {
		p.Groups = []string{"oncall"}
	}
	if len(p.Groups) == 0 {
		return nil, airlock.BadParameter("groups", "needs at least one group")
	}
	return &thisPolicy{groups: p.Groups}, nil
}

func (p *thisPolicy) Evaluate(action airlock.Action) airlock.Decision {
	if request := action.Request(); request != nil && airlock.MethodMatches("DELETE", request.Method) {
		// Quorum 1, waiting at most 15 minutes.
		return airlock.NewHold("DELETE "+request.Path+" needs approval", p.groups, 1, 15*60*1000)
	}
	return airlock.Allow{}
}
"#;

const SCAFFOLD_GO_TEST: &str = r#"//go:build !wasip1

package main

import (
	"testing"

	"airlock.example/sdk"
)

func TestDeletesAreHeldInAnyCaseAndReadsPass(t *testing.T) {
	host := &airlock.TestHost{}
	policy, refusal := host.Setup("{}")
	if refusal != nil {
		t.Fatalf("setup: %v", refusal)
	}
	for method, want := range map[string]string{"DELETE": "hold", "delete": "hold", "GET": "allow"} {
		if kind := host.Evaluate(policy, airlock.TestRequest(method, "/x")).Kind(); kind != want {
			t.Errorf("%s: %s, want %s", method, kind, want)
		}
	}
}

func TestUnknownKeysAreRefused(t *testing.T) {
	host := &airlock.TestHost{}
	if _, refusal := host.Setup(`{"group": ["oncall"]}`); refusal == nil || refusal.Key != "group" {
		t.Errorf("refusal %v, want one at key group", refusal)
	}
}
"#;

const SCAFFOLD_CASES: &str = r#"# Run with: airlock policy test <policy>.wasm cases.toml
[[case]]
name = "reads pass"
request = { method = "GET", path = "/x" }
expect = "allow"

[[case]]
name = "deletes wait for oncall"
request = { method = "DELETE", path = "/x" }
expect = { decision = "hold", groups = ["oncall"], quorum = 1 }

[[case]]
name = "a lower-case delete waits too"
request = { method = "delete", path = "/x" }
expect = { decision = "hold", groups = ["oncall"], quorum = 1 }
"#;

/// Build the policy in `directory` (a Rust crate; a Go module if it has a
/// `go.mod`; a Python project if it has a `pyproject.toml`, a JavaScript
/// package if it has a `package.json`, and no `Cargo.toml`) into a
/// component, check it against the contract, and
/// write it to `output` (default `./NAME.wasm`). The toolchain's progress
/// goes to stderr as usual.
///
/// # Errors
/// When it does not build or the component does not fit the contract.
pub fn build_policy(directory: &Path, output: Option<&Path>) -> Result<BuiltPolicy, AuthorError> {
    let (name, artifact, wasm) = if directory.join("go.mod").exists() {
        build_go(directory)?
    } else if directory.join("Cargo.toml").exists() {
        build_rust(directory)?
    } else if directory.join("pyproject.toml").exists() {
        build_python(directory)?
    } else if directory.join("package.json").exists() {
        build_js(directory)?
    } else {
        build_rust(directory)?
    };
    let engine = PolicyEngine::new(EngineSettings {
        max_instances: 2,
        ..EngineSettings::default()
    })
    .map_err(|cause| AuthorError::Contract {
        path: artifact.clone(),
        cause,
    })?;
    // Compiled and checked against the contract; its parameters are checked
    // when it is loaded, by `airlock policy test` and `airlock check`.
    let policy = engine
        .compile(&wasm)
        .map_err(|cause| AuthorError::Contract {
            path: artifact.clone(),
            cause,
        })?;
    let output = output.map_or_else(|| PathBuf::from(format!("{name}.wasm")), Path::to_owned);
    std::fs::write(&output, &wasm).map_err(io(&output))?;
    Ok(BuiltPolicy {
        output,
        bytes: wasm.len(),
        name: policy.metadata().name.clone(),
        version: policy.metadata().version.clone(),
        hash: policy.hash().to_owned(),
    })
}

/// A Rust crate, built with cargo for wasm32: its package name, the
/// artifact's path and bytes.
fn build_rust(directory: &Path) -> Result<(String, PathBuf, Vec<u8>), AuthorError> {
    let manifest = directory.join("Cargo.toml");
    let manifest_text = std::fs::read_to_string(&manifest).map_err(io(&manifest))?;
    let package = toml::from_str::<toml::Table>(&manifest_text)
        .ok()
        .and_then(|table| {
            table
                .get("package")?
                .get("name")?
                .as_str()
                .map(str::to_owned)
        })
        .ok_or_else(|| AuthorError::Usage(format!("{}: no [package] name", manifest.display())))?;
    // Like cargo: CARGO_TARGET_DIR if set, else the crate's own target/.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| directory.join("target"), PathBuf::from);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    if let Some(done) = guest_build::add_missing_target(Path::new("rustc")) {
        eprintln!("airlock: {done}");
    }
    let status = guest_build::cargo_build(Path::new(&cargo), &manifest, &[], &target_dir)
        .status()
        .map_err(io(Path::new(&cargo)))?;
    if !status.success() {
        return Err(AuthorError::Build);
    }
    let artifact = guest_build::artifact(&target_dir, &package);
    let wasm = std::fs::read(&artifact).map_err(io(&artifact))?;
    Ok((package, artifact, wasm))
}

/// A Go module, built with `go build` for wasip1 and componentized here:
/// named after its directory.
fn build_go(directory: &Path) -> Result<(String, PathBuf, Vec<u8>), AuthorError> {
    let (directory, name) = named_after(directory)?;
    let wasm = super::go::build(&directory, &super::go::toolchain())?;
    Ok((name, directory, wasm))
}

/// A Python project, built by the SDK's `build.py` (written out from this
/// binary, so the SDK matches the contract this Airlock speaks) with
/// componentize-py: named after its directory.
fn build_python(directory: &Path) -> Result<(String, PathBuf, Vec<u8>), AuthorError> {
    let (directory, name) = named_after(directory)?;
    let staging = tempfile::Builder::new()
        .prefix("airlock-python-sdk-")
        .tempdir()
        .map_err(io(&std::env::temp_dir()))?;
    write_files(staging.path(), PYTHON_SDK)?;
    let python = python_with_componentize_py()?;
    let output = staging.path().join(format!("{name}.wasm"));
    let status = std::process::Command::new(&python)
        .arg(staging.path().join("build.py"))
        .arg(&directory)
        .arg("-o")
        .arg(&output)
        .arg("--quiet")
        .status()
        .map_err(io(&python))?;
    if !status.success() {
        return Err(AuthorError::Python(format!(
            "{}: the Python build failed (its output is above)",
            directory.display()
        )));
    }
    let wasm = std::fs::read(&output).map_err(io(&output))?;
    Ok((name, directory, wasm))
}

/// A JavaScript package, built by the SDK's `build.mjs` (ComponentizeJS)
/// against this binary's contract, after `npm ci` (or `npm install`
/// without a lockfile) where its `node_modules` lacks the SDK: named after
/// its directory.
fn build_js(directory: &Path) -> Result<(String, PathBuf, Vec<u8>), AuthorError> {
    let (directory, name) = named_after(directory)?;
    let node = std::env::var_os("NODE").map_or_else(|| "node".into(), PathBuf::from);
    let node_ok = succeeds(
        &node,
        &[
            "-e",
            "process.exit(+process.versions.node.split('.')[0] >= 20 ? 0 : 1)",
        ],
    );
    if !node_ok {
        return Err(AuthorError::Js(format!(
            "JavaScript policies need Node.js 20 or newer as `{}` (set NODE to another)",
            node.display()
        )));
    }
    let build = directory.join("node_modules/airlock-policy-sdk/build.mjs");
    if !build.exists() {
        let install = if directory.join("package-lock.json").exists() {
            "ci"
        } else {
            "install"
        };
        let installed = std::process::Command::new("npm")
            .args([install, "--no-audit", "--no-fund"])
            .current_dir(&directory)
            .status()
            .is_ok_and(|status| status.success());
        if !installed || !build.exists() {
            return Err(AuthorError::Js(format!(
                "{}: `npm {install}` did not install airlock-policy-sdk (its output is above)",
                directory.display()
            )));
        }
    }
    let staging = tempfile::Builder::new()
        .prefix("airlock-js-build-")
        .tempdir()
        .map_err(io(&std::env::temp_dir()))?;
    write_files(staging.path(), [("wit/policy.wit", CONTRACT)])?;
    let output = staging.path().join(format!("{name}.wasm"));
    let status = std::process::Command::new(&node)
        .arg(&build)
        .arg(&directory)
        .arg("-o")
        .arg(&output)
        .arg("--wit")
        .arg(staging.path().join("wit"))
        .status()
        .map_err(io(&node))?;
    if !status.success() {
        return Err(AuthorError::Js(format!(
            "{}: the JavaScript build failed (its output is above)",
            directory.display()
        )));
    }
    let wasm = std::fs::read(&output).map_err(io(&output))?;
    Ok((name, directory, wasm))
}

/// `directory` made absolute, and the policy name it gives (its last
/// component).
fn named_after(directory: &Path) -> Result<(PathBuf, String), AuthorError> {
    let directory = directory.canonicalize().map_err(io(directory))?;
    let name = directory
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("policy")
        .to_owned();
    Ok((directory, name))
}

/// Write each `(relative path, text)` under `root`, making directories.
fn write_files<P: AsRef<Path>, T: AsRef<[u8]>>(
    root: &Path,
    files: impl IntoIterator<Item = (P, T)>,
) -> Result<(), AuthorError> {
    for (relative, text) in files {
        let path = root.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    Ok(())
}

/// Whether `program arguments` runs and exits 0 (its output discarded).
fn succeeds(program: &Path, arguments: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(arguments)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A Python to run `build.py` with: `AIRLOCK_PYTHON` or `python3` if
/// componentize-py is on the `PATH`, else the venv kept in the user's
/// cache, created and filled from PyPI the first time.
fn python_with_componentize_py() -> Result<PathBuf, AuthorError> {
    let python = std::env::var_os("AIRLOCK_PYTHON").map_or_else(|| "python3".into(), PathBuf::from);
    if !succeeds(
        &python,
        &["-c", "import sys; assert sys.version_info >= (3, 11)"],
    ) {
        return Err(AuthorError::Python(format!(
            "Python policies need Python 3.11 or newer as `{}` (set AIRLOCK_PYTHON to another)",
            python.display()
        )));
    }
    if succeeds(Path::new("componentize-py"), &["--version"]) {
        return Ok(python);
    }
    // The user's own cache, never a shared directory such as /tmp, where
    // another user could plant the programs this runs.
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|home| home.is_absolute())
                .map(|home| home.join(".cache"))
        })
        .ok_or_else(|| {
            AuthorError::Python(format!(
                "componentize-py is not on the PATH and there is no HOME to install it under: `pip install {COMPONENTIZE_PY}`"
            ))
        })?
        .join("airlock")
        .join(COMPONENTIZE_PY.replace("==", "-"));
    // build.py runs the componentize-py beside the Python that runs it.
    let venv_python = cache.join("bin").join("python");
    if succeeds(&cache.join("bin").join("componentize-py"), &["--version"]) {
        return Ok(venv_python);
    }
    eprintln!(
        "installing {COMPONENTIZE_PY} from PyPI into {} (once)",
        cache.display()
    );
    let created = succeeds(&python, &["-m", "venv", &cache.to_string_lossy()])
        && std::process::Command::new(&venv_python)
            .args(["-m", "pip", "install", "--quiet", COMPONENTIZE_PY])
            .status()
            .is_ok_and(|status| status.success());
    if !created {
        return Err(AuthorError::Python(format!(
            "could not install {COMPONENTIZE_PY} into {}: install it yourself (`pip install {COMPONENTIZE_PY}`) and build again",
            cache.display()
        )));
    }
    Ok(venv_python)
}

/// What `build_policy` wrote.
#[derive(Debug)]
pub struct BuiltPolicy {
    pub output: PathBuf,
    pub bytes: usize,
    pub name: String,
    pub version: String,
    pub hash: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(directory: &str, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(directory);
        let mut names: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| keep(name))
            .collect();
        names.sort();
        names
    }

    /// A source file added to an SDK reaches new policies too.
    #[test]
    fn new_policies_get_every_source_of_their_sdk() {
        let mut go: Vec<String> = GO_SDK.iter().map(|(name, _)| (*name).to_owned()).collect();
        go.sort();
        let expected = sources("sdk/go", |name| {
            name == "go.mod" || (name.ends_with(".go") && !name.ends_with("_test.go"))
        });
        assert_eq!(go, expected);
        let mut rust: Vec<String> = RUST_SDK
            .iter()
            .filter_map(|(name, _)| name.strip_prefix("src/").map(str::to_owned))
            .collect();
        rust.sort();
        assert_eq!(rust, sources("sdk/rust/src", |_| true));
        let mut python: Vec<String> = PYTHON_SDK
            .iter()
            .filter_map(|(name, _)| name.strip_prefix("airlock/").map(str::to_owned))
            .collect();
        python.sort();
        assert_eq!(
            python,
            sources("sdk/python/airlock", |name| name.ends_with(".py"))
        );
        let mut js: Vec<String> = JS_SDK
            .iter()
            .filter_map(|(name, _)| name.strip_prefix("src/").map(str::to_owned))
            .collect();
        js.sort();
        assert_eq!(js, sources("sdk/js/src", |name| name.ends_with(".js")));
    }

    /// The copy's manifest asks for the versions Airlock's workspace pins.
    #[test]
    fn the_rust_sdk_copy_uses_the_workspaces_dependency_versions() {
        let workspace: toml::Table = toml::from_str(include_str!("../../../Cargo.toml")).unwrap();
        let pinned = &workspace["workspace"]["dependencies"];
        let copy: toml::Table = toml::from_str(RUST_SDK_MANIFEST).unwrap();
        let wanted = copy["dependencies"].as_table().unwrap().iter().chain(
            copy["target"]["cfg(not(target_arch = \"wasm32\"))"]["dependencies"]
                .as_table()
                .unwrap(),
        );
        for (name, spec) in wanted {
            let version = |spec: &toml::Value| match spec {
                toml::Value::String(version) => version.clone(),
                table => table["version"].as_str().unwrap().to_owned(),
            };
            assert_eq!(version(spec), version(&pinned[name]), "{name}");
        }
    }

    #[test]
    fn a_new_policy_points_nowhere_outside_itself() {
        let dir = tempfile::tempdir().unwrap();
        for (language, name) in [
            (Language::Rust, "rusty"),
            (Language::Go, "gopher"),
            (Language::Python, "snake-charmer"),
            (Language::Js, "script-kiddie"),
        ] {
            let directory = dir.path().join(name);
            new_policy(&directory, language).unwrap();
            let sdk = directory.join(SDK_DIRECTORY);
            let mut stack = vec![directory];
            while let Some(next) = stack.pop() {
                for entry in std::fs::read_dir(&next).unwrap() {
                    let path = entry.unwrap().path();
                    if path.is_dir() {
                        stack.push(path);
                        continue;
                    }
                    let text = std::fs::read_to_string(&path).unwrap();
                    assert!(
                        !text.contains(env!("CARGO_MANIFEST_DIR"))
                            && !text.contains("../../wit")
                            && !text.contains("../../sdk"),
                        "{} points into the source tree",
                        path.display()
                    );
                    // The scaffold's own files have every `{{hole}}` filled.
                    assert!(
                        path.starts_with(&sdk) || !text.contains("{{"),
                        "{} has a hole",
                        path.display()
                    );
                }
            }
        }
    }
}
