//! Test fixture: a policy that misbehaves on purpose, so tests can check that
//! Airlock contains it. The parameter `mode` picks the misbehaviour; with no
//! mode it allows, so the same component also proves the host still serves.
//! Modes `setup-*` misbehave in `setup`, at load; `remember` keeps the
//! request's `x-secret` header in memory and denies if it finds one kept by
//! an earlier evaluation.

// Natively (cargo test) nothing is exported, so nothing is used.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use std::hint::black_box;
use std::sync::Mutex;

use airlock_sdk::{
    host, Action, ActionKinds, Allow, Decision, Deny, Header, Level, Metadata, ParameterError,
    Policy,
};

struct Hostile {
    mode: String,
}

#[derive(serde::Deserialize, Default)]
struct Parameters {
    #[serde(default)]
    mode: String,
    /// Refuse any non-empty mode: parameters the policy accepts alone but
    /// refuses with a chain's override of `mode`.
    #[serde(default)]
    refuse_any_mode: bool,
}

/// What `remember` keeps between evaluations, if anything does.
static REMEMBERED: Mutex<Option<String>> = Mutex::new(None);

impl Policy for Hostile {
    type Parameters = Parameters;

    fn describe() -> Metadata {
        Metadata::judging("hostile", "0.1.0", ActionKinds::all())
    }

    fn setup(parameters: Parameters) -> Result<Self, ParameterError> {
        if parameters.refuse_any_mode && !parameters.mode.is_empty() {
            return Err(ParameterError::at(
                "mode",
                "refused: refuse_any_mode is set",
            ));
        }
        match parameters.mode.as_str() {
            "setup-loop" => loop {
                black_box(0);
            },
            "setup-panic" => panic!("hostile policy panics in setup on purpose"),
            "setup-refuse" => Err(ParameterError::at("mode", "refused on purpose")),
            _ => Ok(Hostile {
                mode: parameters.mode,
            }),
        }
    }

    fn evaluate(&self, action: Action) -> Decision {
        match self.mode.as_str() {
            "remember" => {
                let mut remembered = REMEMBERED.lock().unwrap();
                if let Some(secret) = remembered.as_ref() {
                    return Decision::deny(403, format!("an earlier evaluation left {secret}"));
                }
                *remembered = action
                    .request()
                    .and_then(|request| request.header("x-secret"));
                Decision::allow()
            }
            "loop" => loop {
                black_box(0);
            },
            "allocate" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    black_box(&hoard);
                }
            }
            "recurse" => Decision::deny(403, format!("depth {}", recurse(black_box(1)))),
            "panic" => panic!("hostile policy panics on purpose"),
            "huge-reason" => Decision::deny(403, "x".repeat(1 << 20)),
            "bad-status" => Decision::deny(200, "a deny that says OK"),
            "bad-header" => Decision::Deny(Deny {
                status: 403,
                reason: "bad header".to_owned(),
                headers: vec![Header {
                    name: "bad header\n".to_owned(),
                    value: "x".to_owned(),
                }],
            }),
            // 20,000 headers of 64 bytes: over the bytes an answer may carry.
            "huge-answer" => Decision::Deny(Deny {
                status: 403,
                reason: "many headers".to_owned(),
                headers: vec![
                    Header {
                        name: "x-a".to_owned(),
                        value: "v".repeat(64)
                    };
                    20_000
                ],
            }),
            "zero-quorum" => Decision::hold("nobody needs to approve", &["oncall"], 0, 1000),
            // Not hostile: shows what a policy sees of the credentials.
            "show-credentials" => {
                let request = action.request();
                let seen = |name| {
                    request
                        .and_then(|r| r.header(name))
                        .unwrap_or_else(|| "absent".to_owned())
                };
                Decision::deny(
                    403,
                    format!(
                        "authorization={} cookie={}",
                        seen("authorization"),
                        seen("cookie")
                    ),
                )
            }
            // Not hostile: with edit-headers, shows edits apply in chain order.
            "remove-checked" => Decision::Allow(Allow {
                set_headers: Vec::new(),
                remove_headers: vec!["x-checked-by".to_owned()],
            }),
            // Not hostile: shows header edits reach the backend.
            "edit-headers" => Decision::Allow(Allow {
                set_headers: vec![Header {
                    name: "x-checked-by".to_owned(),
                    value: "hostile".to_owned(),
                }],
                remove_headers: vec!["x-debug".to_owned()],
            }),
            _ => {
                host::log(Level::Info, "hostile policy in peaceful mode");
                Decision::allow()
            }
        }
    }
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 64]);
    recurse(frame[0] + 1) + frame[63]
}

airlock_sdk::export!(Hostile);
