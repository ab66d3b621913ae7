//! The admin API fuzzed from its own OpenAPI document with schemathesis
//! (PyPI; `tests/run` installs it), against the real binary with the
//! change-freeze policy on the control plane: every documented operation,
//! as an admin, with every check (no 5xx, every response on the schema,
//! schema-valid requests accepted and invalid ones refused, and each
//! protected operation refusing a caller without credentials).

use crate::approvals::token;
use crate::control::{config, ALWAYS_FROZEN};
use crate::harness::*;
use crate::policy::native_tests;

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_keeps_to_its_openapi_document_under_schemathesis() {
    let (stable, canary) = (
        Upstream::start("stable").await,
        Upstream::start("canary").await,
    );
    let folder = policy_folder(&[("change-freeze", ALWAYS_FROZEN)]);
    let airlock = Airlock::start(&config(&stable, &canary, &folder, true, ""));
    let authorization = format!("Authorization: Bearer {}", token("erin"));
    let schema = format!("http://{}/v1/openapi.json", airlock.admin());
    native_tests(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
        std::ffi::OsStr::new("schemathesis"),
        &[
            "run",
            &schema,
            "--header",
            &authorization,
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--workers",
            "1",
            "--seed",
            "1",
            "--no-color",
        ],
        "schemathesis",
    );
    drop(folder);
}
