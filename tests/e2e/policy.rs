//! Policies on the request path, through the real binary: the demo's rules,
//! denies with their status and headers, hostile policies contained with
//! a short code, fail-open routes, credentials redacted; and the policy
//! author's tools (`airlock policy test`, `new`, `build`).

use std::path::{Path, PathBuf};
use std::process::Command;

use http::Request;

use crate::harness::*;

/// The README's tour: a DELETE waits until an oncall approver approves it.
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_holds_a_delete_until_alice_approves_it_and_passes_reads() {
    let demo = Airlock::demo();
    let client = Client::http1();

    let read = client.get(&demo.url("/x")).await;
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.json()["path"], "/x");
    // `/administrator` is not under `/admin`.
    assert_eq!(client.get(&demo.url("/administrator")).await.status, 200);

    let delete = Request::delete(demo.url("/x"))
        .header("proxy-authorization", "Bearer demo-client-token")
        .body(full(""))
        .unwrap();
    let waiting = tokio::spawn(async move { Client::http1().send(delete).await });
    let api = |method: &str, path: &str| {
        Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", demo.admin()))
            .header("authorization", "Bearer demo-alice-token")
            .body(full(""))
            .unwrap()
    };
    let mut pending = Vec::new();
    for _ in 0..100 {
        pending = client
            .send(api("GET", "/v1/approvals?state=pending"))
            .await
            .json()["approvals"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !pending.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["principal"], "client");
    assert_eq!(pending[0]["holds"][0]["policy"], "approval-rules");
    assert_eq!(
        pending[0]["holds"][0]["groups"],
        serde_json::json!(["oncall"])
    );
    assert_eq!(pending[0]["holds"][0]["quorum"], 1);
    let id = pending[0]["id"].as_str().unwrap();
    let approved = client
        .send(api("POST", &format!("/v1/approvals/{id}/approve")))
        .await;
    assert_eq!(approved.status, 200, "{}", approved.text());
    let released = waiting.await.unwrap();
    assert_eq!(released.status, 200, "{}", released.text());
    assert_eq!(released.json()["method"], "DELETE");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deny_answers_with_the_policys_status_and_reason_and_nothing_reaches_the_backend() {
    let up = Upstream::start("a").await;
    let folder = policy_folder(&[(
        "deny-list",
        "[[rules]]\npaths = [\"/internal/**\"]\nstatus = 451\nreason = \"internal paths stay inside\"\n",
    )]);
    let airlock = Airlock::start(&format!(
        "[policies]\ndirectory = {:?}\n{PUBLIC_LISTENER}\n{}\n[[route]]\npool = \"web\"\npolicies = [\"deny-list\"]\non_policy_error = \"allow\"\n",
        folder.path().display().to_string(),
        pool("web", &[&up], "")
    ));
    let client = Client::http1();
    let denied = client.get(&airlock.url("/internal/metrics")).await;
    assert_eq!(denied.status, 451);
    assert_eq!(denied.json()["error"], "denied");
    assert_eq!(denied.json()["message"], "internal paths stay inside");
    assert_eq!(denied.json()["policy"], "deny-list");
    // Path normalization happens before judging: no way around the rule.
    let sneaky = client
        .get(&airlock.url("/public/../internal/./metrics"))
        .await;
    assert_eq!(sneaky.status, 451);
    // A path long enough to overflow the reason still denies (the reason is
    // cut), even on this fail-open route.
    let long = client
        .get(&airlock.url(&format!("/internal/{}", "a".repeat(2048))))
        .await;
    assert_eq!(long.status, 451, "{}", long.text());
    assert_eq!(
        up.connections(),
        0,
        "a denied request must not reach the backend"
    );
    assert_eq!(client.get(&airlock.url("/public")).await.status, 200);
}

fn hostile_config(folder: &Path, up: &Upstream, mode: &str, on_error: &str) -> String {
    format!(
        "[policies]\ndirectory = {:?}\ndeadline = \"50ms\"\nmemory_limit = \"4MiB\"\n{PUBLIC_LISTENER}\n{}\n\
         [[route]]\npath = \"/guarded\"\npool = \"web\"\npolicies = [\"hostile\"]\non_policy_error = \"{on_error}\"\n\
         [route.parameters.hostile]\nmode = \"{mode}\"\n\
         [[route]]\npath = \"/open\"\npool = \"web\"\n",
        folder.display().to_string(),
        pool("web", &[up], "")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_policy_fails_closed_with_a_short_code_and_the_proxy_keeps_serving() {
    let up = Upstream::start("a").await;
    let folder = policy_folder(&[("hostile", "")]);
    for (mode, code) in [
        ("loop", "policy_timeout"),
        ("allocate", "policy_memory"),
        ("panic", "policy_trap"),
    ] {
        let airlock = Airlock::start(&hostile_config(folder.path(), &up, mode, "deny"));
        let client = Client::http1();
        let reply = client.get(&airlock.url("/guarded")).await;
        assert_eq!(reply.status, 500, "{mode}: {}", reply.text());
        let body = reply.json();
        assert_eq!(body["error"], code, "{mode}");
        assert_eq!(body["policy"], "hostile");
        assert!(
            !reply.text().contains("wasm"),
            "internals leaked to the client: {}",
            reply.text()
        );
        // Contained: the next request on another route, and the same route
        // again, are served.
        assert_eq!(
            client.get(&airlock.url("/open")).await.status,
            200,
            "{mode}"
        );
        assert_eq!(
            client.get(&airlock.url("/guarded")).await.json()["error"],
            code
        );
        let log = airlock.log();
        assert!(
            log.contains("policy failed") && log.contains(code),
            "{mode}: the log must say why: {log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allow_sets_and_removes_request_headers() {
    let up = Upstream::start("a").await;
    let folder = policy_folder(&[("hostile", "")]);
    let airlock = Airlock::start(&hostile_config(folder.path(), &up, "edit-headers", "deny"));
    let request = Request::get(airlock.url("/guarded"))
        .header("x-debug", "1")
        .header("x-checked-by", "forged")
        .body(full(""))
        .unwrap();
    let reply = Client::http1().send(request).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let headers = &reply.json()["headers"];
    assert_eq!(headers["x-checked-by"], serde_json::json!(["hostile"]));
    assert!(headers.get("x-debug").is_none(), "{headers}");
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_reach_the_policy_only_as_redacted() {
    let up = Upstream::start("a").await;
    let folder = policy_folder(&[("hostile", "")]);
    let airlock = Airlock::start(&hostile_config(
        folder.path(),
        &up,
        "show-credentials",
        "deny",
    ));
    let request = Request::get(airlock.url("/guarded"))
        .header("authorization", "Bearer s3cret")
        .header("cookie", "session=s3cret")
        .body(full(""))
        .unwrap();
    let reply = Client::http1().send(request).await;
    assert_eq!(
        reply.json()["message"],
        "authorization=[redacted] cookie=[redacted]"
    );
    assert!(!airlock.log().contains("s3cret"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fail_open_route_forwards_when_its_policy_fails() {
    let up = Upstream::start("a").await;
    let folder = policy_folder(&[("hostile", "")]);
    let airlock = Airlock::start(&hostile_config(folder.path(), &up, "loop", "allow"));
    let reply = Client::http1().get(&airlock.url("/guarded")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// `airlock COMMAND -c FILE` with `config` in FILE (`airlock.toml`): did it
/// succeed, and what did it print on stderr.
fn airlock_with_config(command: &str, config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("airlock.toml");
    std::fs::write(&file, config).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args([command, "-c"])
        .arg(&file)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_route_naming_a_missing_policy_is_a_config_error_with_its_line() {
    let folder = policy_folder(&[]);
    let (ok, stderr) = airlock_with_config(
        "check",
        &format!(
            "[policies]\ndirectory = {:?}\n\n[[pool]]\nname = \"web\"\nbackends = [{{ address = \"127.0.0.1:1\" }}]\n\n[[route]]\npool = \"web\"\npolicies = [\"nope\"]\n",
            folder.path().display().to_string()
        ),
    );
    assert!(!ok);
    assert!(
        stderr.contains("airlock.toml:10:route[0].policies[0]: no policy `nope`"),
        "{stderr}"
    );
}

/// A route's parameter override the policy refuses is a config error at
/// its own key and line, for `check` and for `run` alike.
#[test]
fn a_route_override_the_policy_refuses_is_a_config_error_with_its_line() {
    let folder = policy_folder(&[("deny-list", "[[rules]]\npaths = [\"/x\"]\n")]);
    let config = format!(
        "[policies]\ndirectory = {:?}\n\n[[pool]]\nname = \"web\"\nbackends = [{{ address = \"127.0.0.1:1\" }}]\n\n[[route]]\npool = \"web\"\npolicies = [\"deny-list\"]\n\n[route.parameters.deny-list]\nrules = [\n  {{ paths = [\"/y\"] }},\n  {{ status = 200 }},\n]\n",
        folder.path().display().to_string()
    );
    for command in ["check", "run"] {
        let (ok, stderr) = airlock_with_config(command, &config);
        assert!(!ok, "{command}");
        assert!(
            stderr.contains(
                "airlock.toml:15:route[0].parameters.deny-list.rules[1].status: 200 is not a 4xx or 5xx status"
            ),
            "{command}: {stderr}"
        );
    }
}

#[test]
fn a_bad_component_in_the_folder_stops_startup_with_its_name() {
    let folder = policy_folder(&[]);
    std::fs::write(folder.path().join("broken.wasm"), b"not wasm").unwrap();
    let (ok, stderr) = airlock_with_config(
        "run",
        &format!(
            "[policies]\ndirectory = {:?}\n",
            folder.path().display().to_string()
        ),
    );
    assert!(!ok);
    assert!(
        stderr.contains("broken.wasm: not a WebAssembly component"),
        "{stderr}"
    );
}

/// `airlock policy build DIR -o OUT`; panics with the tools' output if it fails.
pub(crate) fn build(directory: &Path, output: &Path) -> String {
    let built = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["policy", "build"])
        .arg(directory)
        .arg("-o")
        .arg(output)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&built.stdout).into_owned();
    assert!(
        built.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&built.stderr)
    );
    text
}

pub(crate) fn repository(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// `program args` in `directory`: a language's own test runner (`needs`
/// says what `tests/run` installs for it). Panics with its output if it fails.
pub(crate) fn native_tests(
    directory: &Path,
    program: &std::ffi::OsStr,
    args: &[&str],
    needs: &str,
) {
    let tested = Command::new(program)
        .args(args)
        .current_dir(directory)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "{}: {error} ({needs} is needed: tests/run installs it)",
                program.to_string_lossy()
            )
        });
    assert!(
        tested.status.success(),
        "{} {} in {}: {}{}",
        program.to_string_lossy(),
        args.join(" "),
        directory.display(),
        String::from_utf8_lossy(&tested.stdout),
        String::from_utf8_lossy(&tested.stderr)
    );
}

/// Build each port (`policies/NAME-LANG`) and run its Rust twin's case
/// table (`policies/NAME/cases.toml`) against it, unchanged.
pub(crate) fn ports_pass_the_rust_case_tables(ports: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    for port in ports {
        let twin = port.rsplit_once('-').unwrap().0;
        let table = repository(&format!("{twin}/cases.toml"));
        let output = dir.path().join("port.wasm");
        build(&repository(port), &output);
        let (ok, text) =
            airlock_policy(&["test", output.to_str().unwrap(), table.to_str().unwrap()]);
        assert!(ok, "{port} against {}:\n{text}", table.display());
        assert!(text.contains(" passed, 0 failed"), "{text}");
    }
}

pub(crate) fn airlock_policy(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("policy")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn every_bundled_policy_passes_its_case_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, _) in airlock::policy::bundled::BUNDLED {
        let cases = root.join("policies").join(name).join("cases.toml");
        let (ok, text) = airlock_policy(&[
            "test",
            built_policy(name).to_str().unwrap(),
            cases.to_str().unwrap(),
        ]);
        assert!(ok, "{name}:\n{text}");
        assert!(text.contains(" 0 failed"), "{name}:\n{text}");
    }
}

#[test]
fn the_hostile_fixture_is_contained_case_by_case() {
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/policies/hostile/cases.toml");
    let (ok, text) = airlock_policy(&[
        "test",
        built_policy("hostile").to_str().unwrap(),
        cases.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
}

#[test]
fn a_failing_case_shows_what_differed_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.toml");
    std::fs::write(
        &cases,
        "[defaults]\nparameters = { rules = [{ methods = [\"DELETE\"], approvers = { groups = [\"oncall\"] } }] }\n\
         [[case]]\nname = \"deletes should pass (they do not)\"\nrequest = { method = \"DELETE\", path = \"/x\" }\nexpect = \"allow\"\n\
         [[case]]\nname = \"reads pass\"\nrequest = { path = \"/x\" }\nexpect = \"allow\"\n",
    )
    .unwrap();
    let (ok, text) = airlock_policy(&[
        "test",
        built_policy("approval-rules").to_str().unwrap(),
        cases.to_str().unwrap(),
    ]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("FAIL  deletes should pass (they do not)"),
        "{text}"
    );
    assert!(
        text.contains("decision: expected allow, got hold"),
        "{text}"
    );
    assert!(text.contains("ok    reads pass"), "{text}");
    assert!(text.contains("1 of 2 cases failed"), "{text}");
}

#[test]
fn a_malformed_case_table_is_refused_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.toml");
    std::fs::write(
        &cases,
        "[[case]]\nname = \"x\"\nrequest = { method = \"GET\" }\nexpect = \"maybe\"\n",
    )
    .unwrap();
    let (ok, text) = airlock_policy(&[
        "test",
        built_policy("allow-all").to_str().unwrap(),
        cases.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        text.contains("expect \"maybe\": use one of allow, deny, hold"),
        "{text}"
    );
}

/// The author's loop from scratch: scaffold, unit-test natively, build the
/// component, run its case table. Slow (it compiles a crate twice), so one test.
#[test]
fn a_scaffolded_policy_builds_and_passes_its_own_tests() {
    let dir = tempfile::tempdir().unwrap();
    let crate_dir = dir.path().join("hold-deletes");
    let (ok, text) = airlock_policy(&["new", crate_dir.to_str().unwrap()]);
    assert!(ok, "{text}");
    // Share compiled dependencies with the build of the bundled policies.
    let shared_target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/scaffold");
    let native = Command::new(env!("CARGO"))
        .args(["test", "--quiet"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", &shared_target)
        .output()
        .unwrap();
    assert!(
        native.status.success(),
        "cargo test in the scaffold: {}",
        String::from_utf8_lossy(&native.stderr)
    );
    let output = dir.path().join("hold-deletes.wasm");
    let built = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["policy", "build"])
        .arg(&crate_dir)
        .arg("-o")
        .arg(&output)
        .env("CARGO_TARGET_DIR", &shared_target)
        .output()
        .unwrap();
    let built_text = String::from_utf8_lossy(&built.stdout);
    assert!(
        built.status.success(),
        "{built_text}{}",
        String::from_utf8_lossy(&built.stderr)
    );
    assert!(
        built_text.contains("built hold-deletes 0.1.0"),
        "{built_text}"
    );
    let (ok, text) = airlock_policy(&[
        "test",
        output.to_str().unwrap(),
        crate_dir.join("cases.toml").to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
}
